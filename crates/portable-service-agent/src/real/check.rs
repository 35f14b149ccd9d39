//! Health commands: run in a process group of their own, so that at their time limit the
//! command and everything it started are killed together, and reaped.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rustix::process::{kill_process_group, Pid, Signal};

/// How often a running command is looked at.
const POLL: Duration = Duration::from_millis(100);

/// Runs `command` (a program and its arguments) within `limit`: whether it exited 0.
pub fn run(command: &[String], limit: Duration) -> anyhow::Result<bool> {
    let Some((program, args)) = command.split_first() else {
        bail!("health check: no command");
    };
    let shown = command.join(" ");
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .process_group(0)
        .spawn()
        .with_context(|| format!("{shown}: could not start"))?;
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().with_context(|| format!("{shown}: wait"))? {
            return Ok(status.success());
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        std::thread::sleep(POLL.min(deadline - now));
    }
    // Not yet reaped: its pid, and so its group's id, can't have been reused.
    let group = Pid::from_child(&child);
    let _ = kill_process_group(group, Signal::KILL);
    let _ = child.kill();
    let _ = child.wait();
    // ran and didn't answer in time: the check failed (an error would say it couldn't run)
    eprintln!("{shown}: no answer in {} s: killed", limit.as_secs_f64());
    Ok(false)
}
