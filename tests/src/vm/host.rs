//! What a scenario sees of a guest: [`Host`], its hold on the guest of one systemd version
//! (portablectl, systemctl, the journal, images and certificates copied in, `check` beside every
//! attach), and the reset that puts the guest back as it booted when the scenario ends.

use crate::guest::Systemd;
use portable_service_tools::check::{
    rules_of, ATTACHES_EXTENSIONS, PRIVATE_DEVICES_IN_THE_IMAGE, PROFILES_SERVICES_ONLY,
    WAITS_FOR_UDEV,
};
use std::cell::RefCell;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use super::channel::COMMAND_TIMEOUT;
use super::qemu::shared;
use super::{tail, text, Vm};

/// Puts the guest back as it booted: stops and removes what was attached (units of templates
/// too), the images, the state units left, failed units. Attached units are those with
/// portabled's drop-in: in system.attached from 245 on, among the host's own units on 239.
const RESET: &str = r#"
attached_units() {
  for c in /etc/systemd/system.attached/*.d/20-portable.conf \
    /run/systemd/system.attached/*.d/20-portable.conf \
    /etc/systemd/system/*.d/20-portable.conf /run/systemd/system/*.d/20-portable.conf; do
    [ -e "$c" ] && echo "${c%.d/20-portable.conf}"
  done
}
for u in $(attached_units); do
  u=${u##*/}
  case $u in
    *@.service) systemctl stop "${u%@.service}@*.service" ;;
    *) systemctl stop "$u" ;;
  esac
done
for u in $(attached_units); do rm -rf "$u" "$u.d"; done
rm -rf /etc/systemd/system.attached /run/systemd/system.attached /etc/portables \
  /run/portables /images/* /etc/verity.d
# what the update scenarios install: the feed's server, the host's agent, its configuration,
# sysupdate files and units
systemctl stop test-feed.service '*-update.timer' 2>/dev/null
rm -rf /srv/feed /srv/busybox /etc/sysupdate.*.d /etc/systemd/import-pubring.* \
  /etc/portable-service-agent \
  /var/lib/portables/* /var/lib/portables/.[!.]* \
  /etc/systemd/system/*-update.service /etc/systemd/system/*-update.timer \
  /etc/systemd/system/*-rollback.service /etc/systemd/system/*-recover.service \
  /run/portable-service-update
# links that enabled attached units leave behind
find /etc/systemd/system -xtype l -delete
systemctl daemon-reload
systemctl reset-failed
for d in /var/lib/* /var/lib/private/*; do
  [ -e "$d" ] && ! grep -qxF "$d" /etc/tests-var-lib && rm -rf "$d"
done
attached=$(ls /etc/systemd/system.attached /run/systemd/system.attached 2>/dev/null; attached_units)
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

    /// Where the guest's systemd-dissect is: off PATH before 246, in systemd's own directory.
    pub fn systemd_dissect(&self) -> &'static str {
        if self.rules() < WAITS_FOR_UDEV {
            // the tests' wrapper, which tries again when 239 loses its race with udev
            "/usr/local/bin/systemd-dissect"
        } else if self.version() < 246 {
            "/usr/lib/systemd/systemd-dissect"
        } else {
            "systemd-dissect"
        }
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
            // a new file, never written over the old one: a loop device of an earlier image of
            // this name may still be on it
            self.ok(&[
                "cp",
                "--remove-destination",
                &format!("/host/{name}"),
                &format!("/images/{name}"),
            ]);
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

    /// Takes back [`Host::trust`]: removes /etc/verity.d/NAME.crt and the certificate `check`
    /// was given for it.
    pub fn distrust(&self, name: &str) {
        self.ok(&["rm", "-f", &format!("/etc/verity.d/{name}.crt")]);
        let share = self.share().join(format!("{name}.crt"));
        let gone = fs::read(&share).ok();
        self.certs.borrow_mut().retain(|c| fs::read(c).ok() != gone);
    }

    /// A fresh directory of the share for a scenario's files (emptied if it was there): its
    /// path here and in the guest.
    pub fn shared_dir(&self, name: &str) -> (PathBuf, String) {
        let dir = self.share().join(name);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        (dir, format!("/host/{name}"))
    }

    /// Runs a bash script in the guest (through the share, so it may be long), allowed to take
    /// `timeout`; whatever it gives.
    pub fn run_script(&self, script: &str, timeout: Duration) -> Output {
        let name = "script.sh";
        fs::write(self.share().join(name), script).unwrap();
        self.vm.exec(&["bash", &format!("/host/{name}")], timeout)
    }

    /// Puts the guest back as it booted (what dropping the [`Host`] does), for a scenario that
    /// attaches many images in batches.
    pub fn reset(&self) {
        let out = self.vm.exec(&["bash", "-c", RESET], COMMAND_TIMEOUT);
        assert!(out.status.success(), "resetting the guest: {}", text(&out));
    }

    /// Cuts the guest's power while `script` (bash, through the share) runs: the script ends
    /// in `echo b >/proc/sysrq-trigger` (an immediate reset: no sync, no unmount, what was not
    /// written is lost) wherever it wants the cut, and the guest boots again with its disk as
    /// the cut left it. Returns when the guest is up; the journal starts anew (it is volatile).
    pub fn power_cut_during(&mut self, script: &str) {
        fs::write(self.share().join("cut.sh"), script).unwrap();
        let boot = |h: &Host| h.ok(&["cat", "/proc/sys/kernel/random/boot_id"]);
        let before = boot(self);
        self.vm
            .on_reset("reset")
            .expect("letting a reset reboot the guest");
        let started = Instant::now();
        // the answer never comes: the guest resets before; what comes is the next boot's
        self.vm
            .send("bash /host/cut.sh </dev/null >/dev/null 2>&1")
            .unwrap();
        if let Err(e) = self.vm.come_up(started) {
            *self.vm.broken.borrow_mut() = Some(e.clone());
            panic!("the guest did not come back after the power cut: {e}");
        }
        self.vm
            .on_reset("shutdown")
            .expect("qemu's reset action back");
        assert_ne!(boot(self), before, "the script did not cut the power");
        eprintln!(
            "{}: power cut, up again after {:.0?}",
            self.vm.systemd.name(),
            started.elapsed()
        );
        self.journal_from_now();
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

    /// Whether portabled attaches services only (239: any other unit fails the attach).
    pub fn attaches_services_only(&self) -> bool {
        self.rules() < PROFILES_SERVICES_ONLY
    }

    /// The Nix expression of the demo image with `args` (tests/nix/demo.nix), for this guest:
    /// its services alone where systemd attaches nothing else (239).
    pub fn demo(&self, args: &str) -> String {
        if self.attaches_services_only() {
            format!("demo {{ socket = false; {args} }}")
        } else {
            format!("demo {{ {args} }}")
        }
    }

    /// The profile the scenarios attach with where they don't name one: `trusted` where every
    /// other runs a service from the host's root (239, as check says), else portablectl's
    /// default. The guest's 239 wrapper attaches with it.
    pub fn profile(&self) -> &'static str {
        if self.rules() < PRIVATE_DEVICES_IN_THE_IMAGE {
            "trusted"
        } else {
            "default"
        }
    }

    /// `portable-service check` (the static build tests/setup.sh makes) on images of
    /// the guest (`/images/...`), with the rules of the guest's systemd version and
    /// [`Host::profile`]: (accepted, report).
    pub fn check(&self, image: &str, extensions: &[&str], matches: &[&str]) -> (bool, String) {
        self.check_with(image, extensions, matches, self.profile())
    }

    /// [`Host::check`] with the profile `profile`.
    pub fn check_with(
        &self,
        image: &str,
        extensions: &[&str],
        matches: &[&str],
        profile: &str,
    ) -> (bool, String) {
        let mut cmd = Command::new(crate::tools());
        cmd.arg("check").arg(self.host_copy(image));
        cmd.args(["--profile", profile]);
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

    /// Whether the guest's portablectl attaches extensions (`--extension`: from 249, measured;
    /// 245 and 247 have no such option). Where it hasn't, asserts what a user sees with
    /// `extensions` over `base`: portablectl doesn't know the option, and check refuses the
    /// extensions saying so.
    pub fn attaches_extensions(&self, base: &str, extensions: &[&str], matches: &[&str]) -> bool {
        if self.rules() >= ATTACHES_EXTENSIONS {
            return true;
        }
        let mut args = vec!["portablectl", "attach", "--runtime"];
        for ext in extensions {
            args.extend(["--extension", ext]);
        }
        args.push(base);
        args.extend(matches);
        let out = self.run(&args);
        assert!(
            !out.status.success() && text(&out).contains("unrecognized option '--extension'"),
            "systemd {}: {}",
            self.version(),
            text(&out)
        );
        let (accepted, report) = self.check(base, extensions, matches);
        assert!(
            !accepted
                && report.contains(&format!(
                    "systemd {}'s portablectl has no --extension",
                    self.version()
                )),
            "{report}"
        );
        false
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

    /// Starts `unit` (as [`Host::try_start`]: past 239's race with udev) and waits for it to
    /// fail; its journal lines. (A simple service's start job succeeds before its process fails
    /// to set up.)
    pub fn start_and_fail(&self, unit: &str) -> Vec<String> {
        let _ = self.try_start(unit);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self
            .run(&["systemctl", "is-failed", "--quiet", unit])
            .status
            .success()
        {
            assert!(
                Instant::now() < deadline,
                "{unit} did not fail:\n{}",
                self.diagnostics()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
        self.journal(&["-u", unit])
    }

    /// How many dm-verity devices the guest has set up.
    pub fn verity_devices(&self) -> usize {
        self.ok(&["dmsetup", "table", "--target", "verity"])
            .lines()
            .filter(|l| l.contains(" verity "))
            .count()
    }

    /// Runs a command in the guest; whatever it gives.
    pub fn run(&self, args: &[&str]) -> Output {
        self.vm.exec(args, COMMAND_TIMEOUT)
    }

    /// [`Host::run`], with the test away for `away` before it reads the answer: the command
    /// channel's own test, of a test process starved while the guest answers.
    pub fn run_reading_after(&self, args: &[&str], away: Duration) -> Output {
        self.vm.exec_reading_after(args, COMMAND_TIMEOUT, away)
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

    /// `systemctl start UNIT`, which must succeed. On 239 through the guest's
    /// `start-past-udev`, which starts it again while it loses its race with udev
    /// (tests/src/old_systemd.rs).
    pub fn start(&self, unit: &str) -> String {
        self.ok(&self.start_command(unit))
    }

    /// [`Host::start`] of a unit that may fail: its output.
    pub fn try_start(&self, unit: &str) -> Output {
        self.run(&self.start_command(unit))
    }

    fn start_command<'a>(&self, unit: &'a str) -> Vec<&'a str> {
        if self.rules() < WAITS_FOR_UDEV {
            vec!["start-past-udev", unit]
        } else {
            vec!["systemctl", "start", unit]
        }
    }

    /// Whether a path exists in the guest.
    pub fn exists(&self, path: &str) -> bool {
        self.run(&["test", "-e", path]).status.success()
    }

    /// `unit`'s property `name`, as `systemctl show` gives it (`-p NAME --value`: 245 has no
    /// `-P`, measured).
    pub fn property(&self, unit: &str, name: &str) -> String {
        self.ok(&["systemctl", "show", "--value", "-p", name, unit])
            .trim()
            .to_owned()
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
        self.journal_entries(filter)
            .into_iter()
            .map(|(_, m)| m)
            .collect()
    }

    /// [`Host::journal`]'s entries with their times (seconds since the epoch, the guest's
    /// clock).
    pub fn journal_entries(&self, filter: &[&str]) -> Vec<(f64, String)> {
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
            .map(|e| {
                let us: f64 = e["__REALTIME_TIMESTAMP"]
                    .as_str()
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(0.0);
                (us / 1e6, e["MESSAGE"].as_str().unwrap_or("").to_owned())
            })
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
