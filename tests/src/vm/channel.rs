//! The command channel: a root shell on the guest's virtio serial port, one command a line, each
//! answered by one line with its exit status and its output in base64; a command that outlives
//! its timeout is killed in the guest, a guest that stops answering is marked broken.

use crate::guest::Systemd;
use base64::Engine as _;
use portable_service_tools::check::{rules_of, SYSTEMD_VERSIONS};
use std::fs;
use std::io::{BufRead, Write as _};
use std::os::unix::process::ExitStatusExt as _;
use std::process::{ExitStatus, Output};
use std::time::{Duration, Instant};

use super::qemu::BOOT_TIMEOUT;
use super::{quote, tail, text, Vm};

/// How long to wait for the channel's first line before asking for it again (boots take 40 to
/// 75 s under TCG).
const POKE_AFTER: Duration = Duration::from_secs(120);

/// How long one command may run in the guest before it is killed there.
pub(super) const COMMAND_TIMEOUT: Duration = Duration::from_secs(180);

impl Vm {
    /// Waits for the command channel and the end of the boot, then readies the guest.
    pub(super) fn come_up(&mut self, started: Instant) -> Result<(), String> {
        // The shell's first line was once lost (the 252 guest silent for 600 s with its channel
        // service started, when the channel was a virtio console, which drops what the host
        // doesn't take at once): ask it again now and then.
        let ready = loop {
            let deadline = (Instant::now() + POKE_AFTER).min(started + BOOT_TIMEOUT);
            match self.read_line_until(deadline) {
                Ok(line) => break line,
                Err(_) if started.elapsed() < BOOT_TIMEOUT => {
                    let poke = self
                        .channel
                        .borrow_mut()
                        .get_mut()
                        .write_all(b"echo @@@ready\n");
                    poke.map_err(|e| format!("writing to the command channel: {e}"))?;
                }
                Err(e) => return Err(e),
            }
        };
        if !ready.trim().ends_with("@@@ready") {
            return Err(format!("the command channel began with {ready:?}"));
        }
        let channel_at = started.elapsed();
        // 239 has no --wait (it came in 240) and answers at once: asked again while the boot
        // goes on, as it does longer after a power cut (measured: "starting" at the channel)
        let state = loop {
            let state = self.exec(&["systemctl", "is-system-running", "--wait"], BOOT_TIMEOUT);
            let state = text(&state);
            let booting = state.starts_with("starting") || state.starts_with("initializing");
            if !booting || started.elapsed() > BOOT_TIMEOUT {
                break state;
            }
            std::thread::sleep(Duration::from_secs(1));
        };
        if !(state.starts_with("running") || state.starts_with("degraded")) {
            return Err(format!("the guest did not finish booting: {state}"));
        }
        let up_at = started.elapsed();
        let line = self.exec(&["systemctl", "--version"], COMMAND_TIMEOUT);
        self.version_line = String::from_utf8_lossy(&line.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .to_owned();
        self.version = self
            .version_line
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("systemctl --version said {:?}", self.version_line))?;
        let setup = self.exec(
            &[
                "sh",
                "-c",
                "mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000 host /host && \
                 { [ -e /etc/tests-var-lib ] || \
                   ls -d /var/lib/* /var/lib/private/* >/etc/tests-var-lib 2>/dev/null; }; true",
            ],
            COMMAND_TIMEOUT,
        );
        if !setup.status.success() {
            return Err(format!("mounting the host's share: {}", text(&setup)));
        }
        let failed = self.exec(&["systemctl", "--failed", "--no-legend"], COMMAND_TIMEOUT);
        // Said on the real stderr, past the test harness's capture: how long boots take, and
        // which systemd the moving suite has.
        let mut note = format!(
            "{} ({}{}) booted {} under {}: channel after {:.0?}, up after {:.0?}",
            self.systemd.name(),
            self.systemd.suite(),
            if self.systemd == Systemd::V254 {
                " with backports"
            } else {
                ""
            },
            self.version_line,
            std::env::var("PORTABLE_SERVICE_TESTS_ACCEL").unwrap_or("tcg".into()),
            channel_at,
            up_at,
        );
        let failed = String::from_utf8_lossy(&failed.stdout);
        if !failed.trim().is_empty() {
            note += &format!("; failed units: {}", failed.trim());
        }
        if self.systemd.expected().is_none() && !SYSTEMD_VERSIONS.contains(&self.version) {
            note += &format!(
                "; NOTE: systemd {} has not been measured: its scenarios apply the rules of {}",
                self.version,
                rules_of(self.version)
            );
        }
        let _ = writeln!(std::io::stderr(), "{note}");
        Ok(())
    }

    /// Sends `line` to the guest's shell without waiting for an answer (one that resets the
    /// guest never gives one).
    pub(super) fn send(&self, line: &str) -> Result<(), String> {
        self.channel
            .borrow_mut()
            .get_mut()
            .write_all(format!("{line}\n").as_bytes())
            .map_err(|e| format!("writing to the command channel: {e}"))
    }

    pub(super) fn read_line_until(&self, deadline: Instant) -> Result<String, String> {
        let mut channel = self.channel.borrow_mut();
        let mut line = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "the guest did not answer in time (read so far: {:?})",
                    String::from_utf8_lossy(&line)
                ));
            }
            channel.get_ref().set_read_timeout(Some(left)).unwrap();
            match channel.read_until(b'\n', &mut line) {
                Ok(0) => return Err("the command channel closed (did the guest stop?)".into()),
                Ok(_) if line.ends_with(b"\n") => {
                    return Ok(String::from_utf8_lossy(&line).into_owned())
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(format!("reading the command channel: {e}")),
            }
        }
    }

    /// Runs `args` in the guest (as root, stdin empty) and waits for it: its status and output.
    /// A command still running after `timeout` is killed there (status 124); a guest that
    /// doesn't answer at all is marked broken.
    pub(super) fn exec(&self, args: &[&str], timeout: Duration) -> Output {
        self.exec_reading_after(args, timeout, Duration::ZERO)
    }

    /// [`Vm::exec`], with this side away for `away` before it reads the answer: the channel's
    /// own test, of a test process starved while the guest answers.
    pub(super) fn exec_reading_after(
        &self,
        args: &[&str],
        timeout: Duration,
        away: Duration,
    ) -> Output {
        if let Some(why) = self.broken.borrow().as_ref() {
            panic!("the {} guest is broken: {why}", self.systemd.name());
        }
        let command: Vec<String> = args.iter().map(|a| quote(a)).collect();
        // The lengths go first, so that an answer that lost bytes on the way is told from one
        // that is short. A program started costs 50 to 70 ms under TCG, a third of a command's
        // time when each length took its own: one `stat` for both, and none for what is empty.
        let line = format!(
            "timeout -k 5 {} {} </dev/null >/tmp/.out 2>/tmp/.err; c=$?; n='0 0 '; o=; e=; \
             if [ -s /tmp/.out ] || [ -s /tmp/.err ]; then \
             n=$(stat --printf='%s ' /tmp/.out /tmp/.err); fi; \
             [ -s /tmp/.out ] && o=$(base64 -w0 /tmp/.out); \
             [ -s /tmp/.err ] && e=$(base64 -w0 /tmp/.err); \
             echo \"@@@ $c $n$o $e\"\n",
            timeout.as_secs(),
            command.join(" ")
        );
        let sent = self
            .channel
            .borrow_mut()
            .get_mut()
            .write_all(line.as_bytes());
        std::thread::sleep(away);
        let answer = sent
            .map_err(|e| format!("writing to the command channel: {e}"))
            .and_then(|()| loop {
                let got =
                    self.read_line_until(Instant::now() + timeout + Duration::from_secs(60))?;
                if let Some(rest) = got.strip_prefix("@@@ ") {
                    break Ok(rest.trim_end_matches('\n').to_owned());
                }
            });
        let answer = match answer {
            Ok(a) => a,
            Err(e) => {
                let why = format!("`{}`: {e}", args.join(" "));
                *self.broken.borrow_mut() = Some(why.clone());
                panic!(
                    "the {} guest stopped answering: {why}\n--- console (end)\n{}",
                    self.systemd.name(),
                    self.console_tail()
                );
            }
        };
        let mut fields = answer.splitn(5, ' ');
        let mut next = || fields.next().unwrap_or("");
        let code: i32 = next().parse().unwrap_or(255);
        let (out_len, err_len) = (next().to_owned(), next().to_owned());
        let mut decoded = |len: &str, name: &str| {
            let b64 = next().trim();
            let bytes = base64::engine::general_purpose::STANDARD.decode(b64);
            match bytes {
                Ok(bytes) if bytes.len().to_string() == len => bytes,
                _ => panic!(
                    "the command channel of the {} guest garbled the {name} of `{}`: {len} \
                     bytes sent, {} base64 characters came",
                    self.systemd.name(),
                    args.join(" "),
                    b64.len()
                ),
            }
        };
        let stdout = decoded(&out_len, "output");
        let mut stderr = decoded(&err_len, "error output");
        if code == 124 {
            stderr.extend(format!("\n(killed after {timeout:?} in the guest)\n").bytes());
        }
        Output {
            status: ExitStatus::from_raw(code << 8),
            stdout,
            stderr,
        }
    }

    pub(super) fn console_tail(&self) -> String {
        tail(
            &fs::read_to_string(self.dir.join("console.log")).unwrap_or_default(),
            40,
        )
    }
}
