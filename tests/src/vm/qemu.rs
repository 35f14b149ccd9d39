//! Starting the guests: one qemu per systemd version (TCG, Debian's kernel, the guest's root disk
//! as a throwaway overlay, a read-only 9p share, the command port as a unix socket), tied to the test
//! process so that the kernel kills it when the process ends; booted on first use and kept.

use crate::guest::{self, Systemd};
use std::cell::RefCell;
use std::fs;
use std::io::{BufReader, Write as _};
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::tail;

/// How long a boot may take, to the command channel: about a minute alone under TCG on 2
/// cores, longer with other guests booting beside it.
pub(super) const BOOT_TIMEOUT: Duration = Duration::from_secs(600);

/// Starts `cmd` from a thread that lives as long as the test process, with the parent-death
/// signal set: the kernel kills the child when that thread, so the process, ends.
fn spawn_tied_to_this_process(cmd: Command) -> std::io::Result<Child> {
    type Request = (Command, mpsc::Sender<std::io::Result<Child>>);
    static LAUNCHER: OnceLock<mpsc::Sender<Request>> = OnceLock::new();
    let launcher = LAUNCHER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("vm-launcher".into())
            .spawn(move || {
                // never ends: the sender lives in a static
                for (mut cmd, reply) in rx {
                    // SAFETY: prctl is async-signal-safe, and nothing else runs after fork.
                    unsafe {
                        cmd.pre_exec(|| {
                            rustix::process::set_parent_process_death_signal(Some(
                                rustix::process::Signal::KILL,
                            ))?;
                            Ok(())
                        });
                    }
                    let _ = reply.send(cmd.spawn());
                }
            })
            .unwrap();
        tx
    });
    let (reply, answer) = mpsc::channel();
    launcher.send((cmd, reply)).unwrap();
    answer.recv().unwrap()
}

/// One booted guest.
pub struct Vm {
    pub systemd: Systemd,
    /// `systemctl --version`'s first line.
    pub version_line: String,
    /// The systemd version it booted.
    pub version: u32,
    pub(super) qemu: Child,
    pub(super) channel: RefCell<BufReader<UnixStream>>,
    pub(super) dir: PathBuf,
    /// Why the guest can't be used any more (a command that hung, a reset that failed).
    pub(super) broken: RefCell<Option<String>>,
    /// Held while the VM lives: one test process at a time uses `dir`.
    _lock: fs::File,
}

/// How a boot's error begins when qemu died of a signal (an abort, a crash) rather than exited.
const QEMU_CRASHED: &str = "qemu crashed";

/// Why qemu ended, with its own last words.
fn qemu_ended(status: ExitStatus, dir: &Path) -> String {
    let log = tail(
        &fs::read_to_string(dir.join("qemu.log")).unwrap_or_default(),
        10,
    );
    match status.signal() {
        Some(signal) => format!("{QEMU_CRASHED} (signal {signal}): {log}"),
        None => format!("qemu exited ({status}): {log}"),
    }
}

impl Vm {
    fn boot(systemd: Systemd) -> Result<Vm, String> {
        let kernel = guest::Kernel::find();
        let disk = guest::root_disk(systemd, &kernel);
        let dir = crate::repo().join("target/vm").join(systemd.name());
        fs::create_dir_all(&dir).unwrap();
        let lock = fs::File::create(dir.with_extension("lock")).unwrap();
        lock.lock().unwrap();
        let share = dir.join("share");
        let socket = dir.join("channel.sock");
        let qmp = dir.join("qmp.sock");
        let _ = fs::remove_dir_all(&share);
        let _ = fs::remove_file(&socket);
        let _ = fs::remove_file(&qmp);
        fs::create_dir_all(&share).unwrap();
        let console = dir.join("console.log");

        let accel = std::env::var("PORTABLE_SERVICE_TESTS_ACCEL").unwrap_or("tcg".into());
        let cpu = if accel == "tcg" { "max" } else { "host" };
        let mut qemu = Command::new("qemu-system-x86_64");
        qemu.args(["-accel", &accel, "-cpu", cpu, "-smp", "2", "-m", "1536"])
            .arg("-kernel")
            .arg(&kernel.vmlinuz)
            .arg("-initrd")
            .arg(&kernel.initrd)
            .args([
                "-append",
                "root=/dev/vda rw console=ttyS0 loglevel=4 panic=-1 noresume systemd.getty_auto=0",
            ])
            .arg("-drive")
            .arg(format!(
                "file={},format=raw,if=virtio,snapshot=on",
                disk.display()
            ))
            .arg("-virtfs")
            .arg(format!(
                "local,path={},mount_tag=host,security_model=none,readonly=on",
                share.display()
            ))
            .args(["-device", "virtio-serial", "-chardev"])
            .arg(format!(
                "socket,id=channel,path={},server=on,wait=off",
                socket.display()
            ))
            .args(["-device", "virtserialport,chardev=channel,name=tests"])
            .args(["-device", "virtio-rng-pci", "-nic", "none"])
            .args(["-display", "none", "-vga", "none", "-monitor", "none"])
            // to let a reset reboot the guest while a scenario cuts its power (Vm::on_reset)
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", qmp.display()))
            .arg("-serial")
            .arg(format!("file:{}", console.display()))
            .arg("-no-reboot")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.join("qemu.log")).unwrap());
        let mut qemu = spawn_tied_to_this_process(qemu)
            .map_err(|e| format!("cannot start qemu-system-x86_64 (tests/setup.sh): {e}"))?;

        let started = Instant::now();
        let stream = loop {
            if let Ok(Some(status)) = qemu.try_wait() {
                return Err(qemu_ended(status, &dir));
            }
            if let Ok(stream) = UnixStream::connect(&socket) {
                break stream;
            }
            if started.elapsed() > Duration::from_secs(30) {
                let _ = qemu.kill();
                return Err(format!("qemu made no socket {}", socket.display()));
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut vm = Vm {
            systemd,
            version_line: String::new(),
            version: 0,
            qemu,
            channel: RefCell::new(BufReader::new(stream)),
            dir,
            broken: RefCell::new(None),
            _lock: lock,
        };
        match vm.come_up(started) {
            Ok(()) => Ok(vm),
            Err(e) => {
                let console = vm.console_tail();
                // a closed channel can come a moment before qemu's end is seen
                let deadline = Instant::now() + Duration::from_secs(2);
                let ended = loop {
                    match vm.qemu.try_wait() {
                        Ok(Some(status)) => break qemu_ended(status, &vm.dir) + "\n",
                        _ if Instant::now() < deadline => {
                            std::thread::sleep(Duration::from_millis(100))
                        }
                        _ => break String::new(),
                    }
                };
                let _ = vm.qemu.kill();
                let _ = vm.qemu.wait();
                Err(format!("{ended}{e}\n--- console (end)\n{console}"))
            }
        }
    }

    /// Boots the guest, and once more if the emulator itself crashed (trixie's qemu 10 once
    /// aborted at start: "iotlb_to_section: Assertion ... failed", TCG with two vCPUs), which
    /// says nothing of the guest or of systemd.
    fn boot_again_if_qemu_crashed(systemd: Systemd) -> Result<Vm, String> {
        match Vm::boot(systemd) {
            Err(e) if e.starts_with(QEMU_CRASHED) => {
                // past the test harness's capture, as the boot line: a run's reader sees it
                let _ = writeln!(
                    std::io::stderr(),
                    "{}: {e}; booting it again",
                    systemd.name()
                );
                Vm::boot(systemd)
            }
            booted => booted,
        }
    }
}

impl Vm {
    /// What qemu does when the guest resets: `"reset"` reboots it with its disk as it is (a
    /// power cut's return), `"shutdown"` ends qemu (as `-no-reboot` says at start, so that a
    /// kernel panic ends the run at once).
    pub(super) fn on_reset(&self, action: &str) -> Result<(), String> {
        let socket = self.dir.join("qmp.sock");
        let stream = UnixStream::connect(&socket)
            .map_err(|e| format!("connecting to {}: {e}", socket.display()))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut said = Vec::new();
        let mut line = String::new();
        // the greeting, then one answer per command
        for command in [
            r#"{"execute":"qmp_capabilities"}"#.to_owned(),
            format!(r#"{{"execute":"set-action","arguments":{{"reboot":"{action}"}}}}"#),
        ] {
            line.clear();
            std::io::BufRead::read_line(&mut reader, &mut line).map_err(|e| e.to_string())?;
            said.push(line.clone());
            (&stream)
                .write_all(format!("{command}\n").as_bytes())
                .map_err(|e| e.to_string())?;
        }
        line.clear();
        std::io::BufRead::read_line(&mut reader, &mut line).map_err(|e| e.to_string())?;
        if line.contains("\"return\"") {
            Ok(())
        } else {
            Err(format!("qmp set-action said {line:?} (after {said:?})"))
        }
    }
}

/// The guest of each version, booted on first use; a boot that failed stays failed, so every
/// scenario of that version says why at once.
pub(super) fn shared(systemd: Systemd) -> &'static Mutex<Vm> {
    static VMS: [OnceLock<Result<Mutex<Vm>, String>>; Systemd::ALL.len()] =
        [const { OnceLock::new() }; Systemd::ALL.len()];
    static PREPARE: std::sync::Once = std::sync::Once::new();
    PREPARE.call_once(|| {
        // The root disks are made by debootstrap, which waits on the network more than on the
        // CPU: make every one now, beside the first boots, rather than each before its own;
        // those of Debian's versions, or those built from sources (tests/old-hosts.sh), as the
        // first guest asked for is.
        let family = |s: Systemd| s.tag().is_some();
        for other in Systemd::ALL
            .into_iter()
            .filter(|&o| family(o) == family(systemd))
        {
            std::thread::spawn(move || guest::root_disk(other, &guest::Kernel::find()));
        }
    });
    let index = Systemd::ALL.iter().position(|s| *s == systemd).unwrap();
    match VMS[index].get_or_init(|| Vm::boot_again_if_qemu_crashed(systemd).map(Mutex::new)) {
        Ok(vm) => vm,
        Err(e) => panic!("the {} guest did not boot: {e}", systemd.name()),
    }
}
