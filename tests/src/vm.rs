//! A real host for the acceptance tests: a qemu virtual machine with Debian's kernel and a guest
//! root of [`crate::guest`], one per systemd version, booted once per test run and shared by the
//! scenarios of that version one at a time ([`Host`]).
//!
//! The interface is small, after nixpkgs' NixOS test driver: boot, run a command and get its
//! status and output, wait for a unit or a journal line, copy an image in; the console is kept
//! (`target/vm/<name>/console.log`) and every failure says what the guest said. Commands go
//! through a root shell on a virtio console (a unix socket here); images go in through a
//! read-only 9p share of `target/vm/<name>/share` and are copied onto the guest's own disk.
//!
//! qemu emulates the CPU (TCG), so no KVM is needed; `PORTABLE_SERVICE_TESTS_ACCEL=kvm` asks for
//! KVM where it works. Every qemu is started by one long-lived thread of the test process with
//! `PR_SET_PDEATHSIG`: when the test process ends, passed, failed or killed, the kernel kills its
//! VMs by their own process id. Between scenarios, [`Host`]'s drop detaches whatever a scenario
//! attached, so the next starts from a clean guest.

use crate::guest::{self, Systemd};
// One list of measured versions for check and the tests: the scenarios assert what check knows.
use base64::Engine as _;
use portable_service_tools::check::{rules_of, SYSTEMD_VERSIONS};
use std::cell::RefCell;
use std::fs;
use std::io::{BufRead, BufReader, Write as _};
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{mpsc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// How long a boot may take, to the command channel: about a minute alone under TCG on 2
/// cores, longer with other guests booting beside it.
const BOOT_TIMEOUT: Duration = Duration::from_secs(600);
/// How long one command may run in the guest before it is killed there.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(180);

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
    qemu: Child,
    channel: RefCell<BufReader<UnixStream>>,
    dir: PathBuf,
    /// Why the guest can't be used any more (a command that hung, a reset that failed).
    broken: RefCell<Option<String>>,
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

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `'...'` for the guest's shell.
fn quote(arg: &str) -> String {
    format!("'{}'", arg.replace('\'', r"'\''"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
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
        let _ = fs::remove_dir_all(&share);
        let _ = fs::remove_file(&socket);
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
            .args(["-device", "virtconsole,chardev=channel"])
            .args(["-device", "virtio-rng-pci", "-nic", "none"])
            .args(["-display", "none", "-vga", "none", "-monitor", "none"])
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

    /// Waits for the command channel and the end of the boot, then readies the guest.
    fn come_up(&mut self, started: Instant) -> Result<(), String> {
        let ready = self.read_line_until(started + BOOT_TIMEOUT)?;
        if ready.trim() != "@@@ready" {
            return Err(format!("the command channel began with {ready:?}"));
        }
        let channel_at = started.elapsed();
        let state = self.exec(&["systemctl", "is-system-running", "--wait"], BOOT_TIMEOUT);
        let state = text(&state);
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
                 ls -d /var/lib/* /var/lib/private/* >/run/tests-var-lib 2>/dev/null; true",
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

    fn read_line_until(&self, deadline: Instant) -> Result<String, String> {
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
    fn exec(&self, args: &[&str], timeout: Duration) -> Output {
        if let Some(why) = self.broken.borrow().as_ref() {
            panic!("the {} guest is broken: {why}", self.systemd.name());
        }
        let command: Vec<String> = args.iter().map(|a| quote(a)).collect();
        let line = format!(
            "timeout -k 5 {} {} </dev/null >/tmp/.out 2>/tmp/.err; \
             echo \"@@@ $? $(base64 -w0 /tmp/.out) $(base64 -w0 /tmp/.err)\"\n",
            timeout.as_secs(),
            command.join(" ")
        );
        let sent = self
            .channel
            .borrow_mut()
            .get_mut()
            .write_all(line.as_bytes());
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
        let mut fields = answer.splitn(3, ' ');
        let code: i32 = fields.next().unwrap_or("").parse().unwrap_or(255);
        let decode = |f: Option<&str>| {
            base64::engine::general_purpose::STANDARD
                .decode(f.unwrap_or("").trim())
                .unwrap_or_default()
        };
        let stdout = decode(fields.next());
        let mut stderr = decode(fields.next());
        if code == 124 {
            stderr.extend(format!("\n(killed after {timeout:?} in the guest)\n").bytes());
        }
        Output {
            status: ExitStatus::from_raw(code << 8),
            stdout,
            stderr,
        }
    }

    fn console_tail(&self) -> String {
        tail(
            &fs::read_to_string(self.dir.join("console.log")).unwrap_or_default(),
            40,
        )
    }
}

/// The guest of each version, booted on first use; a boot that failed stays failed, so every
/// scenario of that version says why at once.
fn shared(systemd: Systemd) -> &'static Mutex<Vm> {
    static VMS: [OnceLock<Result<Mutex<Vm>, String>>; 4] =
        [const { OnceLock::new() }; Systemd::ALL.len()];
    static PREPARE: std::sync::Once = std::sync::Once::new();
    PREPARE.call_once(|| {
        // The root disks are made by debootstrap, which waits on the network more than on the
        // CPU: make every one now, beside the first boots, rather than each before its own.
        for other in Systemd::ALL {
            std::thread::spawn(move || guest::root_disk(other, &guest::Kernel::find()));
        }
    });
    let index = Systemd::ALL.iter().position(|s| *s == systemd).unwrap();
    match VMS[index].get_or_init(|| Vm::boot_again_if_qemu_crashed(systemd).map(Mutex::new)) {
        Ok(vm) => vm,
        Err(e) => panic!("the {} guest did not boot: {e}", systemd.name()),
    }
}

/// Puts the guest back as it booted: stops and removes what was attached (units of templates
/// too), the images, the state units left, failed units.
const RESET: &str = r#"
units=$(ls /etc/systemd/system.attached /run/systemd/system.attached 2>/dev/null |
  grep -E '\.(service|socket|target|timer|path)$' | sort -u)
for u in $units; do
  case $u in
    *@.service) systemctl stop "${u%@.service}@*.service" ;;
    *) systemctl stop "$u" ;;
  esac
done
rm -rf /etc/systemd/system.attached /run/systemd/system.attached /etc/portables \
  /run/portables /images/* /etc/verity.d
systemctl daemon-reload
systemctl reset-failed
for d in /var/lib/* /var/lib/private/*; do
  [ -e "$d" ] && ! grep -qxF "$d" /run/tests-var-lib && rm -rf "$d"
done
attached=$(ls /etc/systemd/system.attached /run/systemd/system.attached 2>/dev/null)
[ -z "$attached" ] || { echo "still attached: $attached"; exit 1; }
"#;

/// A scenario's hold on the guest of one systemd version: it has the guest to itself until it
/// is dropped, which resets the guest (also when the scenario failed).
pub struct Host {
    vm: MutexGuard<'static, Vm>,
    /// Where the scenario's journal begins (see [`Host::journal_from_now`]).
    cursor: RefCell<String>,
    /// The certificates installed in the guest's /etc/verity.d/ (see [`Host::trust`]).
    certs: RefCell<Vec<PathBuf>>,
}

impl Host {
    /// The guest of `systemd`, booted if it isn't yet, after asserting that it runs the
    /// systemd version the tests expect of it.
    pub fn open(systemd: Systemd) -> Host {
        let vm = shared(systemd)
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(expected) = systemd.expected() {
            assert_eq!(
                vm.version,
                expected,
                "{} booted another systemd: {}",
                systemd.suite(),
                vm.version_line
            );
        } else {
            assert!(
                vm.version >= 257,
                "sid booted an older systemd than trixie's: {}",
                vm.version_line
            );
        }
        let host = Host {
            vm,
            cursor: RefCell::new(String::new()),
            certs: RefCell::new(Vec::new()),
        };
        host.journal_from_now();
        host
    }

    /// From now on, [`Host::wait_for_journal`] and the diagnostics read only what the journal
    /// gets from now on (a scenario starts so; a part of a scenario may too).
    pub fn journal_from_now(&self) {
        let cursor = self.ok(&["journalctl", "-q", "-n", "0", "--show-cursor"]);
        *self.cursor.borrow_mut() = cursor
            .trim()
            .strip_prefix("-- cursor: ")
            .unwrap_or_else(|| panic!("journalctl --show-cursor said {cursor:?}"))
            .to_owned();
    }

    fn after_cursor(&self) -> String {
        format!("--after-cursor={}", self.cursor.borrow())
    }

    /// The systemd version the guest runs.
    pub fn version(&self) -> u32 {
        self.vm.version
    }

    /// Whose measured behaviour the guest's systemd has (see [`rules_of`]): 252, 254,
    /// 257 or 262.
    pub fn rules(&self) -> u32 {
        rules_of(self.vm.version)
    }

    fn share(&self) -> PathBuf {
        self.vm.dir.join("share")
    }

    /// Copies an image into the guest's /images (`name` may hold a directory: `v2/app.raw`),
    /// with the dm-verity files beside it, renamed after `name`; its path there.
    pub fn add_image(&self, image: &Path, name: &str) -> String {
        let to = self.share().join(name);
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        let inside = format!("/images/{name}");
        let dir = Path::new(&inside).parent().unwrap().to_str().unwrap();
        self.ok(&["mkdir", "-p", dir]);
        for copied in crate::copy_with_sidecars(image, &to) {
            let name = copied.strip_prefix(self.share()).unwrap().to_str().unwrap();
            self.ok(&["cp", &format!("/host/{name}"), &format!("/images/{name}")]);
        }
        inside
    }

    /// Installs a certificate as the guest's trusted signer of root hashes
    /// (/etc/verity.d/NAME.crt), and gives it to [`Host::check`].
    pub fn trust(&self, cert: &Path, name: &str) {
        let to = self.share().join(format!("{name}.crt"));
        fs::copy(cert, &to).unwrap();
        self.ok(&["mkdir", "-p", "/etc/verity.d"]);
        self.ok(&[
            "cp",
            &format!("/host/{name}.crt"),
            &format!("/etc/verity.d/{name}.crt"),
        ]);
        self.certs.borrow_mut().push(cert.to_owned());
    }

    /// The host's copy of an image of the guest's /images.
    pub fn host_copy(&self, inside: &str) -> PathBuf {
        let name = inside
            .strip_prefix("/images/")
            .unwrap_or_else(|| panic!("{inside} is not below /images"));
        self.share().join(name)
    }

    /// `portablectl VERB FLAGS IMAGE` in the default profile. An attach or reattach is first
    /// checked by `portable-service check`, which must accept what portabled accepts.
    pub fn portablectl(&self, verb: &str, flags: &[&str], image: &str) -> String {
        if matches!(verb, "attach" | "reattach") {
            self.assert_check_accepts(image, &[], &[]);
        }
        let mut args = vec!["portablectl", verb];
        args.extend(flags);
        args.push(image);
        self.ok(&args)
    }

    /// `portable-service check` (the static build tests/setup.sh makes) on images of
    /// the guest (`/images/...`), with the rules of the guest's systemd version:
    /// (accepted, report).
    pub fn check(&self, image: &str, extensions: &[&str], matches: &[&str]) -> (bool, String) {
        let mut cmd = Command::new(crate::tools());
        cmd.arg("check").arg(self.host_copy(image));
        for ext in extensions {
            cmd.arg("--extension").arg(self.host_copy(ext));
        }
        for m in matches {
            cmd.args(["--prefix", m]);
        }
        for cert in self.certs.borrow().iter() {
            cmd.arg("--cert").arg(cert);
        }
        let out = cmd
            .args(["--systemd", &self.version().to_string()])
            .output()
            .expect("portable-service check runs (tests/setup.sh builds it)");
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "check failed to run: {}",
            text(&out)
        );
        (out.status.success(), text(&out))
    }

    /// Panics unless `check` accepts the images, as portabled is about to.
    pub fn assert_check_accepts(&self, image: &str, extensions: &[&str], matches: &[&str]) {
        let (accepted, report) = self.check(image, extensions, matches);
        assert!(
            accepted,
            "check refuses what systemd {} is asked to attach:\n{report}",
            self.version()
        );
    }

    /// Runs a command in the guest; whatever it gives.
    pub fn run(&self, args: &[&str]) -> Output {
        self.vm.exec(args, COMMAND_TIMEOUT)
    }

    /// Runs a command in the guest that must succeed; its standard output. On failure, panics
    /// with the command's output and the guest's recent journal.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        if !out.status.success() {
            panic!(
                "`{}` failed ({}) in the {} guest:\n{}\n{}",
                args.join(" "),
                out.status,
                self.vm.version_line,
                text(&out),
                self.diagnostics()
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Whether a path exists in the guest.
    pub fn exists(&self, path: &str) -> bool {
        self.run(&["test", "-e", path]).status.success()
    }

    /// Panics with diagnostics unless `unit` is active.
    pub fn assert_active(&self, unit: &str) {
        let state = text(&self.run(&["systemctl", "is-active", unit]));
        if state.trim() != "active" {
            panic!(
                "{unit} is {state:?}, not active:\n{}\n{}",
                text(&self.run(&["systemctl", "status", "--no-pager", unit])),
                self.diagnostics()
            );
        }
    }

    /// The messages of this scenario's journal entries that match `filter`: `FIELD=value`,
    /// `-u UNIT` (the unit's own lines and systemd's about it) and `--grep TEXT` (a plain
    /// substring of the message). The filtering is done here: systemd 252's journalctl finds
    /// nothing when `--after-cursor` is combined with a field match.
    pub fn journal(&self, filter: &[&str]) -> Vec<String> {
        let after = self.after_cursor();
        let out = self.ok(&["journalctl", "--no-pager", "-o", "json", &after]);
        let mut fields: Vec<(&str, &str)> = Vec::new();
        let mut units: Vec<&str> = Vec::new();
        let mut grep: Option<&str> = None;
        let mut args = filter.iter();
        while let Some(arg) = args.next() {
            match *arg {
                "-u" => units.push(args.next().expect("-u UNIT")),
                "--grep" => grep = Some(args.next().expect("--grep TEXT")),
                other => fields.push(
                    other
                        .split_once('=')
                        .unwrap_or_else(|| panic!("not a journal filter: {other}")),
                ),
            }
        }
        out.lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|e| {
                let field = |k: &str| e.get(k).and_then(|v| v.as_str()).unwrap_or("").to_owned();
                fields.iter().all(|(k, v)| field(k) == *v)
                    && (units.is_empty()
                        || units
                            .iter()
                            .any(|u| field("_SYSTEMD_UNIT") == *u || field("UNIT") == *u))
                    && grep.is_none_or(|g| field("MESSAGE").contains(g))
            })
            .map(|e| e["MESSAGE"].as_str().unwrap_or("").to_owned())
            .collect()
    }

    /// Waits until the journal entries of this scenario matching `filter` (see
    /// [`Host::journal`]) hold `needle`.
    pub fn wait_for_journal(&self, filter: &[&str], needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            seen = self.journal(filter);
            if seen.iter().any(|m| m.contains(needle)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        panic!(
            "the journal ({}) never said {needle:?}; it said:\n{}\n{}",
            filter.join(" "),
            seen.join("\n"),
            self.diagnostics()
        );
    }

    /// Connects to a unix socket in the guest and returns what it answers; `None` when nothing
    /// listens there.
    pub fn try_ask(&self, socket: &str) -> Option<String> {
        // socat's stdin ends at once; -t is how long it then waits for the answer. The service
        // closing its end ends socat sooner, so a long wait costs nothing when it answers; a
        // loaded host once took more than 10 s to start the instance that answers.
        let out = self.run(&["socat", "-t", "90", "-", &format!("UNIX-CONNECT:{socket}")]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Connects to a unix socket in the guest and returns what it answers.
    pub fn ask(&self, socket: &str) -> String {
        self.try_ask(socket)
            .unwrap_or_else(|| panic!("nothing answers on {socket}:\n{}", self.diagnostics()))
    }

    /// What a reader of a failed run needs: the guest's systemd, attached images, failed units,
    /// the scenario's journal.
    pub fn diagnostics(&self) -> String {
        let list = self.run(&["portablectl", "list", "--no-pager"]);
        let failed = self.run(&["systemctl", "--failed", "--no-pager"]);
        let after = self.after_cursor();
        let journal = self.run(&["journalctl", "--no-pager", &after]);
        format!(
            "--- guest: {} ({})\n--- portablectl list\n{}--- systemctl --failed\n{}\
             --- journal of the scenario (its last 80 lines)\n{}",
            self.vm.version_line,
            self.vm.systemd.suite(),
            text(&list),
            text(&failed),
            tail(&text(&journal), 80)
        )
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if self.vm.broken.borrow().is_some() {
            return;
        }
        // the share's contents only: the guest's 9p mount holds the directory itself
        for entry in fs::read_dir(self.share()).into_iter().flatten().flatten() {
            let _ = fs::remove_dir_all(entry.path()).or_else(|_| fs::remove_file(entry.path()));
        }
        let out = self.vm.exec(&["bash", "-c", RESET], COMMAND_TIMEOUT);
        if !out.status.success() {
            *self.vm.broken.borrow_mut() = Some(format!(
                "resetting it after a scenario failed: {}",
                text(&out)
            ));
        }
    }
}

/// One `#[test]` per scenario and systemd version: `on_every_systemd!(a, b)` makes
/// `a::systemd_252`, `a::systemd_254`, `a::systemd_257`, `a::systemd_newest`, ... each calling
/// `a(Systemd::V252)` (and so on). Named scenario first, so that the test threads, taking tests
/// in name order, work on different guests at once.
#[macro_export]
macro_rules! on_every_systemd {
    ($($scenario:ident),* $(,)?) => {
        $(
            mod $scenario {
                use $crate::guest::Systemd;
                #[test] fn systemd_252() { super::$scenario(Systemd::V252) }
                #[test] fn systemd_254() { super::$scenario(Systemd::V254) }
                #[test] fn systemd_257() { super::$scenario(Systemd::V257) }
                #[test] fn systemd_newest() { super::$scenario(Systemd::Newest) }
            }
        )*
    };
}
