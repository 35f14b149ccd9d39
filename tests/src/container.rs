//! A real systemd in an nspawn container, for attaching images with portablectl: Debian 12's
//! systemd 252 or Debian 13's 257 ([`Systemd`]).
//!
//! Each root file system is made from Debian's packages by debootstrap once (from the mirror
//! the machine's apt uses) and cached; every container boots a fresh copy of it and is killed by
//! its own process id when dropped, pass or fail. Commands run inside with `nsenter`; a failing
//! command panics with what the container said (the command's output and the end of the
//! journal). [`Container::check`] runs `portable-service-builder check` on the container's
//! images with that systemd version's rules.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Packages of the container's root; changing them makes a new cached root.
const PACKAGES: &str = "systemd,systemd-sysv,systemd-container,dbus";
const CACHE: &str = "/var/cache/portable-service-tests";

/// The systemd versions the acceptance tests run on: Debian's, booted from its own root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Systemd {
    /// Debian 12 (bookworm): systemd 252.
    V252,
    /// Debian 13 (trixie): systemd 257.
    V257,
}

impl Systemd {
    pub fn suite(self) -> &'static str {
        match self {
            Systemd::V252 => "bookworm",
            Systemd::V257 => "trixie",
        }
    }

    pub fn version(self) -> u32 {
        match self {
            Systemd::V252 => 252,
            Systemd::V257 => 257,
        }
    }
}

/// One `#[test]` per scenario and systemd version: `on_every_systemd!(a, b)` makes
/// `systemd_252::a`, `systemd_257::a`, ... each calling `a(Systemd::V252)` (or `V257`).
#[macro_export]
macro_rules! on_every_systemd {
    ($($scenario:ident),* $(,)?) => {
        mod systemd_252 {
            $( #[test] fn $scenario() { super::$scenario($crate::container::Systemd::V252) } )*
        }
        mod systemd_257 {
            $( #[test] fn $scenario() { super::$scenario($crate::container::Systemd::V257) } )*
        }
    };
}

/// The Debian mirror this machine's apt uses: the first `URIs:` of a deb822 source, else the
/// first `deb` line of sources.list, leaving out the security archive. Users sit behind their
/// own mirrors and proxies, so no address is written into the tests.
pub fn debian_mirror() -> String {
    let mut found = Vec::new();
    let mut sources: Vec<PathBuf> = fs::read_dir("/etc/apt/sources.list.d")
        .map(|dir| dir.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    sources.sort();
    for file in sources
        .iter()
        .filter(|p| p.extension() == Some("sources".as_ref()))
    {
        let text = fs::read_to_string(file).unwrap_or_default();
        for line in text.lines() {
            if let Some(uris) = line.trim().strip_prefix("URIs:") {
                found.extend(uris.split_whitespace().map(str::to_owned));
            }
        }
    }
    let list = fs::read_to_string("/etc/apt/sources.list").unwrap_or_default();
    for line in list.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("deb") {
            continue;
        }
        // `deb [options] URI suite ...`
        if let Some(uri) = words.find(|w| !w.starts_with('[') && !w.ends_with(']')) {
            found.push(uri.to_owned());
        }
    }
    found
        .into_iter()
        .find(|uri| !uri.contains("security"))
        .expect("no Debian mirror in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list")
}

/// The proxy apt is configured with (`Acquire::http::Proxy`), if any: debootstrap only reads
/// `http_proxy` from its environment.
fn apt_proxy() -> Option<String> {
    let out = Command::new("apt-config")
        .args(["shell", "PROXY", "Acquire::http::Proxy"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let value = text
        .trim()
        .strip_prefix("PROXY=")?
        .trim_matches('\'')
        .to_owned();
    (!value.is_empty()).then_some(value)
}

/// The cached root file system of `systemd`'s Debian, made by debootstrap when it is not there
/// yet.
fn base_root(systemd: Systemd) -> PathBuf {
    let suite = systemd.suite();
    let cache = Path::new(CACHE);
    fs::create_dir_all(cache).unwrap();
    let root = cache.join(format!("{suite}-{}", PACKAGES.replace(',', "+")));
    let lock = fs::File::create(cache.join(format!("{suite}.lock"))).unwrap();
    lock.lock().unwrap(); // one debootstrap a suite at a time, across test threads and processes
    if !root.join("usr/bin/portablectl").exists() {
        let tmp = root.with_extension("tmp");
        let _ = fs::remove_dir_all(&tmp);
        let mirror = debian_mirror();
        eprintln!("making the container root with debootstrap ({suite} from {mirror}: {PACKAGES})");
        let mut debootstrap = Command::new("debootstrap");
        if let (Some(proxy), None) = (apt_proxy(), std::env::var_os("http_proxy")) {
            debootstrap.env("http_proxy", proxy);
        }
        let out = debootstrap
            .args(["--variant=minbase", &format!("--include={PACKAGES}"), suite])
            .arg(&tmp)
            .arg(&mirror)
            .output()
            .expect("debootstrap runs (tests/setup.sh installs it)");
        assert!(
            out.status.success(),
            "debootstrap of {suite} from {mirror} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        fs::rename(&tmp, &root).unwrap();
    }
    root
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub struct Container {
    pub systemd: Systemd,
    /// Whether the container's services can create user namespaces (see [`Container::profile`]).
    user_namespaces: bool,
    nspawn: Child,
    /// The container's systemd, as the host sees it.
    init: u32,
    dir: tempfile::TempDir,
}

impl Container {
    /// Boots a fresh copy of `systemd`'s cached root and waits until systemd is up.
    pub fn boot(name: &str, systemd: Systemd) -> Container {
        let base = base_root(systemd);
        let name = &format!("{name}-{}", systemd.version());
        let tmp = crate::repo().join("target/tmp");
        fs::create_dir_all(&tmp).unwrap();
        let dir = tempfile::Builder::new()
            .prefix("portabled-")
            .tempdir_in(tmp)
            .unwrap();
        let root = dir.path().join("root");
        let copied = Command::new("cp")
            .arg("-a")
            .arg(&base)
            .arg(&root)
            .status()
            .unwrap();
        assert!(copied.success(), "copying the container root");
        Command::new("systemd-machine-id-setup")
            .arg(format!("--root={}", root.display()))
            .output()
            .unwrap();
        // portabled needs loop devices; nodes made inside map to the host's (notes: binding the
        // host's nodes fails later with EBUSY).
        let loops: String = (0..32)
            .map(|i| format!("b /dev/loop{i} 0660 root disk - 7:{i}\n"))
            .collect();
        fs::write(root.join("etc/tmpfiles.d/loop.conf"), loops).unwrap();
        fs::create_dir_all(root.join("images")).unwrap();

        let log = fs::File::create(dir.path().join("console.log")).unwrap();
        let nspawn = Command::new("systemd-nspawn")
            .arg("-D")
            .arg(&root)
            .args([
                "--boot",
                "--register=no",
                "--keep-unit",
                "--console=pipe",
                "--bind=/dev/loop-control",
                "-M",
                name,
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("systemd-nspawn runs (tests/setup.sh installs systemd-container)");
        let mut container = Container {
            systemd,
            user_namespaces: false,
            init: 0,
            nspawn,
            dir,
        };
        container.init = container.find_init();
        container.wait_until_running();
        // The tests' names and version-specific assertions depend on this.
        let version = container.ok(&["systemctl", "--version"]);
        assert!(
            version.starts_with(&format!("systemd {} ", systemd.version())),
            "{} booted another systemd: {version}",
            systemd.suite()
        );
        if systemd == Systemd::V257 {
            // From 254 on, a service that gets the host's /run (the trusted profile binds it)
            // has systemd stage the host's os-release in /run/host/.os-release-stage. In nspawn,
            // /run/host is nspawn's read-only mount, and every image then fails with
            // 226/NAMESPACE (../shared/notes/systemd-portable.md). On a real host there is no
            // such mount: take it away, and the os-release file nspawn left beneath it, which
            // systemd replaces with a symlink into the stage.
            container.ok(&["umount", "--lazy", "/run/host"]);
            container.ok(&["rm", "-f", "/run/host/os-release"]);
        }
        container.user_namespaces = container
            .run(&[
                "systemd-run",
                "--wait",
                "--quiet",
                "unshare",
                "--user",
                "true",
            ])
            .status
            .success();
        container
    }

    /// The profile the tests attach with: portabled's `default`, or `trusted` where the
    /// container's services can't create user namespaces (said on stderr), as inside a chroot
    /// such as ../shared/tools/fresh-machine's: the kernel refuses them below a chroot, and the
    /// default profile sets PrivateUsers=yes. `PORTABLE_SERVICE_TESTS_FULL=1` (set by CI) makes
    /// that a failure instead, so CI always runs the default profile.
    pub fn profile(&self) -> &'static str {
        if self.user_namespaces {
            return "default";
        }
        assert!(
            std::env::var_os("PORTABLE_SERVICE_TESTS_FULL").is_none(),
            "user namespaces can't be created in the container (a chroot?): the default profile can't run"
        );
        eprintln!(
            "NOTE: user namespaces can't be created in the container (a chroot?): attaching with \
             the trusted profile instead of the default one (PrivateUsers=yes)"
        );
        "trusted"
    }

    /// The nspawn process's child once it has become systemd.
    fn find_init(&mut self) -> u32 {
        let pid = self.nspawn.id();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.nspawn.try_wait() {
                panic!("systemd-nspawn exited ({status}):\n{}", self.console());
            }
            let children =
                fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
            if let Some(child) = children.split_whitespace().next() {
                let comm = fs::read_to_string(format!("/proc/{child}/comm")).unwrap_or_default();
                if comm.trim() == "systemd" {
                    return child.parse().unwrap();
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the container's systemd did not start:\n{}", self.console());
    }

    fn wait_until_running(&self) {
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut state = String::new();
        while Instant::now() < deadline {
            state = text(&self.run(&["systemctl", "is-system-running"]));
            if state.starts_with("running") || state.starts_with("degraded") {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "the container did not finish booting (last state {state:?}):\n{}",
            self.diagnostics()
        );
    }

    fn console(&self) -> String {
        fs::read_to_string(self.dir.path().join("console.log")).unwrap_or_default()
    }

    /// The container's root as the host sees it.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// A path inside the container, reached from the host through the container's own root.
    pub fn host_path(&self, inside: &str) -> PathBuf {
        PathBuf::from(format!(
            "/proc/{}/root/{}",
            self.init,
            inside.trim_start_matches('/')
        ))
    }

    /// Copies an image into the container's /images (`name` may hold a directory: `v2/app.raw`).
    pub fn add_image(&self, image: &Path, name: &str) -> String {
        let to = self.root().join("images").join(name);
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::copy(image, to).unwrap();
        format!("/images/{name}")
    }

    /// `portablectl attach` (or another verb taking `--profile`) with the tests' [`profile`].
    /// An attach or reattach is first checked by `portable-service-builder check`, which must
    /// accept what portabled accepts.
    pub fn portablectl(&self, verb: &str, flags: &[&str], image: &str) -> String {
        if matches!(verb, "attach" | "reattach") {
            self.assert_check_accepts(image, &[], &[]);
        }
        let mut args = vec!["portablectl", verb, "--profile", self.profile()];
        args.extend(flags);
        args.push(image);
        self.ok(&args)
    }

    /// `portable-service-builder check` (the static build tests/setup.sh makes) on images of
    /// the container (`/images/...`), with this container's systemd version's rules:
    /// (accepted, report).
    pub fn check(&self, image: &str, extensions: &[&str], matches: &[&str]) -> (bool, String) {
        let host = |p: &str| self.root().join(p.trim_start_matches('/'));
        let mut cmd =
            Command::new(crate::repo().join("target/offline/builder/bin/portable-service-builder"));
        cmd.arg("check").arg(host(image));
        for ext in extensions {
            cmd.arg("--extension").arg(host(ext));
        }
        for m in matches {
            cmd.args(["--prefix", m]);
        }
        let out = cmd
            .args(["--systemd", &self.systemd.version().to_string()])
            .output()
            .expect("portable-service-builder check runs (tests/setup.sh builds it)");
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
            self.systemd.version()
        );
    }

    /// Runs a command inside; whatever it gives.
    pub fn run(&self, args: &[&str]) -> Output {
        // `-a` alone keeps the caller's root: under a chroot (as on a fresh machine) that is not
        // the container's, so `-r -w` take the container's root and working directory.
        Command::new("nsenter")
            .args(["-t", &self.init.to_string(), "-a", "-r", "-w"])
            .args(args)
            .output()
            .expect("nsenter runs")
    }

    /// Runs a command inside that must succeed; its standard output. On failure, panics with the
    /// command's output and the container's recent journal.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        if !out.status.success() {
            panic!(
                "`{}` failed ({}) in the container:\n{}\n{}",
                args.join(" "),
                out.status,
                text(&out),
                self.diagnostics()
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
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

    /// Waits until the journal entries matching `filter` (journalctl arguments) hold `needle`.
    pub fn wait_for_journal(&self, filter: &[&str], needle: &str) {
        let mut args = vec!["journalctl", "--no-pager", "-o", "cat"];
        args.extend(filter);
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut seen = String::new();
        while Instant::now() < deadline {
            seen = text(&self.run(&args));
            if seen.contains(needle) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "the journal ({}) never said {needle:?}; it said:\n{seen}\n{}",
            filter.join(" "),
            self.diagnostics()
        );
    }

    /// Connects to a unix socket inside and returns what it answers.
    pub fn ask(&self, socket: &str) -> String {
        let path = self.host_path(socket);
        let mut stream = std::os::unix::net::UnixStream::connect(&path)
            .unwrap_or_else(|e| panic!("cannot connect to {socket}: {e}\n{}", self.diagnostics()));
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap_or_else(|e| {
            panic!(
                "reading {socket}: {e} (got {answer:?})\n{}",
                self.diagnostics()
            )
        });
        answer
    }

    /// What a reader of a failed run needs: attached images, failed units, the journal's end.
    pub fn diagnostics(&self) -> String {
        let list = self.run(&["portablectl", "list", "--no-pager"]);
        let failed = self.run(&["systemctl", "--failed", "--no-pager"]);
        let journal = self.run(&["journalctl", "--no-pager", "-n", "80"]);
        format!(
            "--- portablectl list\n{}--- systemctl --failed\n{}--- journal (last 80 lines)\n{}",
            text(&list),
            text(&failed),
            text(&journal)
        )
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        // Killing the container's init ends every process of its PID namespace; nspawn then exits.
        if self.init != 0 {
            let _ = Command::new("kill")
                .args(["-KILL", &self.init.to_string()])
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.nspawn.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.nspawn.kill();
        let _ = self.nspawn.wait();
    }
}
