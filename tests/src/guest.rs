//! The guests the acceptance tests boot: which systemd versions ([`Systemd`]), the kernel they
//! run (Debian's, from the host's `/boot`), and their root disks.
//!
//! A root disk is a Debian tree made by debootstrap from the mirror the machine's apt uses, with
//! the few kernel modules portabled needs copied in, a command channel for the tests (a root
//! shell on a virtio serial port) and nothing that slows a boot down; it is written
//! into an ext4 file with `mkfs.ext4 -d` (no root mounts, no loop devices) and cached. A VM boots
//! it with writes going to a throwaway overlay, so the cached disk never changes.

use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The systemd versions the acceptance tests run on: each a Debian release's own, and the
/// old versions no Debian on the mirror ships, built from systemd's sources into a Debian 11
/// root ([`crate::old_systemd`]; their tests run by tests/old-hosts.sh, not the test command).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Systemd {
    /// systemd v239 from its sources: RHEL 8's version (without its backports).
    V239,
    /// v245.9, the last of 245-stable: Ubuntu 20.04's version.
    V245,
    /// v249.17, the last of 249-stable: Ubuntu 22.04's and SLES 15's version.
    V249,
    /// Debian 11 (bullseye): systemd 247, the oldest Debian on the mirror (README: "Old
    /// hosts" for the versions of other distributions).
    V247,
    /// Debian 12 (bookworm): systemd 252.
    V252,
    /// Debian 12 with bookworm-backports' systemd: 254.
    V254,
    /// Debian 13 (trixie): systemd 257.
    V257,
    /// Debian sid: the newest systemd Debian has (262 in 2026-11); found at boot.
    Newest,
}

impl Systemd {
    pub const ALL: [Systemd; 8] = [
        Systemd::V239,
        Systemd::V245,
        Systemd::V249,
        Systemd::V247,
        Systemd::V252,
        Systemd::V254,
        Systemd::V257,
        Systemd::Newest,
    ];

    /// The stable tag of systemd's sources this guest is built from; `None` for Debian's own.
    pub fn tag(self) -> Option<&'static str> {
        match self {
            Systemd::V239 => Some("v239"),
            Systemd::V245 => Some("v245.9"),
            Systemd::V249 => Some("v249.17"),
            _ => None,
        }
    }

    pub fn suite(self) -> &'static str {
        match self {
            Systemd::V239 | Systemd::V245 | Systemd::V249 | Systemd::V247 => "bullseye",
            Systemd::V252 | Systemd::V254 => "bookworm",
            Systemd::V257 => "trixie",
            Systemd::Newest => "sid",
        }
    }

    /// The packages debootstrap installs.
    fn packages(self) -> String {
        match self {
            Systemd::V239 | Systemd::V245 | Systemd::V249 | Systemd::V247 | Systemd::V252 => {
                PACKAGES.to_owned()
            }
            Systemd::V254 => format!("{PACKAGES},{UPDATER_BOOKWORM}"),
            Systemd::V257 | Systemd::Newest => format!("{PACKAGES},{UPDATER}"),
        }
    }

    /// The suite whose systemd replaces the release's own.
    fn backports(self) -> Option<&'static str> {
        (self == Systemd::V254).then_some("bookworm-backports")
    }

    /// The version the guest must boot; `None` for sid, whose version moves.
    pub fn expected(self) -> Option<u32> {
        match self {
            Systemd::V239 => Some(239),
            Systemd::V245 => Some(245),
            Systemd::V249 => Some(249),
            Systemd::V247 => Some(247),
            Systemd::V252 => Some(252),
            Systemd::V254 => Some(254),
            Systemd::V257 => Some(257),
            Systemd::Newest => None,
        }
    }

    /// A name for files and messages: `systemd-252`, ..., `systemd-newest`.
    pub fn name(self) -> String {
        match self.expected() {
            Some(v) => format!("systemd-{v}"),
            None => "systemd-newest".to_owned(),
        }
    }
}

/// Packages of every guest root: systemd with portablectl (systemd-container), udev (without
/// udevd no device unit appears and every boot waits out timeouts), kmod (systemd loads modules
/// through it), dmsetup and libcryptsetup (dm-verity), socat (the tests' client of the
/// services' sockets).
const PACKAGES: &str =
    "systemd,systemd-sysv,systemd-container,dbus,udev,kmod,dmsetup,libcryptsetup12,socat";

/// What systemd-sysupdate needs beyond systemd-container, which ships it (from
/// bookworm-backports' 254 on) and only suggests these: libcurl (without it every download
/// fails: "Failed to allocate puller") and gpg (the feed's signature). trixie renamed libcurl4.
const UPDATER: &str = "libcurl4t64,gpg";
const UPDATER_BOOKWORM: &str = "libcurl4,gpg";

/// What a backports guest takes from the backports suite.
const BACKPORTED: [&str; 4] = ["systemd", "systemd-sysv", "systemd-container", "udev"];

/// Kernel modules the guest needs beyond what the initrd loads (with their dependencies):
/// images on loop devices, squashfs, overlayfs for extensions, dm-verity, 9p for the host's
/// share, the virtio console of the command channel.
const MODULES: [&str; 9] = [
    "loop",
    "squashfs",
    "overlay",
    "dm_verity",
    "9p",
    "9pnet_virtio",
    "virtio_console",
    "virtio_rng",
    "autofs4",
];

/// The command channel: a root shell reading commands from, and answering on, the virtio
/// serial port named `tests` (a unix socket on the host). A port, not a virtio console: qemu
/// drops what a console writes while the host's socket is full (its virtio-console.c says so),
/// and once 16,896 bytes of a 219,597-byte answer went (CI, 2026-12-04); a port holds the
/// writer back instead. It finds the port's node in sysfs itself rather than wait for udev's
/// `/dev/virtio-ports/tests`: on a loaded host udev once took longer than a device job's 90 s;
/// the host's boot timeout bounds the wait instead. `@@@ready` tells the host it is there; a
/// port reads as ended while no host is connected, so the shell comes back.
const CHANNEL_UNIT: &str = "[Unit]
Description=Command channel of the tests: a root shell on the virtio port tests
StartLimitIntervalSec=0

[Service]
Environment=LANG=C.UTF-8 SYSTEMD_PAGER=cat SYSTEMD_COLORS=0 TERM=dumb
ExecStart=/bin/bash --norc --noprofile -c 'until port=$$(grep -lx tests /sys/class/virtio-ports/*/name) && port=/dev/$$(basename $$(dirname $$port)) && [ -c $$port ]; do sleep 0.2; done; exec 0<>$$port 1>&0 2>/dev/null; echo @@@ready; exec bash --norc --noprofile'
Restart=always
RestartSec=1
";

/// Units that have no business in a test guest: gettys, logins, the first-boot prompts and
/// chores (the caches they rebuild are fresh from debootstrap), and timers that would compete
/// for the emulated CPU.
const MASKED: [&str; 14] = [
    "serial-getty@ttyS0.service",
    "getty@tty1.service",
    "systemd-logind.service",
    "systemd-firstboot.service",
    "ldconfig.service",
    "systemd-journal-catalog-update.service",
    "systemd-hwdb-update.service",
    "systemd-update-done.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "e2scrub_all.timer",
    "e2scrub_reap.service",
    "fstrim.timer",
];

const CACHE: &str = "/var/cache/portable-service-tests/vm";

/// Debian's kernel on the host (package linux-image-amd64): the newest with its initrd and
/// modules.
pub struct Kernel {
    pub version: String,
    pub vmlinuz: PathBuf,
    pub initrd: PathBuf,
}

impl Kernel {
    pub fn find() -> Kernel {
        let mut versions: Vec<String> = fs::read_dir("/boot")
            .into_iter()
            .flatten()
            .filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                let version = name.strip_prefix("vmlinuz-")?.to_owned();
                let complete = Path::new(&format!("/boot/initrd.img-{version}")).is_file()
                    && Path::new(&format!("/lib/modules/{version}")).is_dir();
                complete.then_some(version)
            })
            .collect();
        versions.sort_by_key(|v| numbers(v));
        let version = versions.pop().expect(
            "no Debian kernel in /boot with its initrd and modules: tests/setup.sh installs \
             linux-image-amd64",
        );
        Kernel {
            vmlinuz: format!("/boot/vmlinuz-{version}").into(),
            initrd: format!("/boot/initrd.img-{version}").into(),
            version,
        }
    }
}

/// `6.1.0-56-amd64` -> [6, 1, 0, 56]: kernel versions compare by their numbers.
fn numbers(version: &str) -> Vec<u64> {
    version
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect()
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

/// Runs a command of the root's making; panics with its output if it fails.
pub(crate) fn must(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e} (run tests/setup.sh)"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The cached root disk of `systemd`'s guest for `kernel`, made first if it isn't there. Its
/// name holds a hash of everything that goes into it, so a change of recipe or kernel makes a
/// new one.
pub fn root_disk(systemd: Systemd, kernel: &Kernel) -> PathBuf {
    let mut recipe = DefaultHasher::new();
    if let Some(tag) = systemd.tag() {
        (
            crate::old_systemd::commit(tag),
            crate::old_systemd::recipe(tag),
            crate::old_systemd::install_recipe(),
        )
            .hash(&mut recipe);
    }
    (
        systemd.suite(),
        systemd.backports(),
        systemd.packages(),
        BACKPORTED,
        MODULES,
        CHANNEL_UNIT,
        MASKED,
        &kernel.version,
    )
        .hash(&mut recipe);
    let cache = Path::new(CACHE);
    fs::create_dir_all(cache).unwrap();
    let disk = cache.join(format!("{}-{:016x}.ext4", systemd.name(), recipe.finish()));
    let lock = fs::File::create(disk.with_extension("lock")).unwrap();
    lock.lock().unwrap(); // one maker a disk, across test threads and processes
    if !disk.exists() {
        make_root_disk(systemd, kernel, &disk);
        // the disks of earlier recipes of this guest are no use any more
        for old in fs::read_dir(cache).unwrap().flatten() {
            let name = old.file_name().to_string_lossy().into_owned();
            if name.starts_with(&format!("{}-", systemd.name())) && old.path() != disk {
                let _ = fs::remove_file(old.path());
            }
        }
    }
    disk
}

fn make_root_disk(systemd: Systemd, kernel: &Kernel, disk: &Path) {
    let suite = systemd.suite();
    let tree = disk.with_extension("tree");
    let _ = fs::remove_dir_all(&tree);
    let mirror = debian_mirror();
    let proxy = apt_proxy().filter(|_| std::env::var_os("http_proxy").is_none());
    eprintln!(
        "making the {} guest: debootstrap {suite} from {mirror}",
        systemd.name()
    );
    let debootstrap = || {
        let mut cmd = Command::new("debootstrap");
        if let Some(proxy) = &proxy {
            cmd.env("http_proxy", proxy);
        }
        cmd
    };
    // the old versions' build first: it is what takes long, and what fails if anything does
    let built = systemd.tag().map(|tag| {
        let out = crate::old_systemd::build(tag, Path::new(CACHE), &mirror, debootstrap);
        (tag, out)
    });
    must(
        debootstrap()
            .args([
                "--variant=minbase",
                &format!("--include={}", systemd.packages()),
                suite,
            ])
            .arg(&tree)
            .arg(&mirror),
        &format!("debootstrap of {suite} from {mirror}"),
    );
    if let Some(backports) = systemd.backports() {
        fs::write(
            tree.join("etc/apt/sources.list.d/backports.list"),
            format!("deb {mirror} {backports} main\n"),
        )
        .unwrap();
        let apt = |args: &[&str]| {
            let mut cmd = Command::new("chroot");
            cmd.arg(&tree)
                .args(["apt-get", "-q", "-y"])
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive");
            if let Some(proxy) = &proxy {
                cmd.env("http_proxy", proxy);
            }
            cmd
        };
        must(
            &mut apt(&["update"]),
            &format!("apt-get update for {backports}"),
        );
        must(
            apt(&["install", "-t", backports]).args(BACKPORTED),
            &format!("installing systemd from {backports}"),
        );
        must(&mut apt(&["clean"]), "apt-get clean");
    }
    if let Some((tag, built)) = built {
        crate::old_systemd::install(tag, &tree, &built);
    }
    configure(&tree, kernel);
    let tmp = disk.with_extension("tmp");
    let file = fs::File::create(&tmp).unwrap();
    file.set_len(4 << 30).unwrap(); // sparse: only what the tree holds takes room
    must(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "guest", "-d"])
            .arg(&tree)
            .arg(&tmp),
        "mkfs.ext4 of the guest root",
    );
    fs::rename(&tmp, disk).unwrap();
    fs::remove_dir_all(&tree).unwrap();
}

/// Makes a debootstrapped tree a test guest: modules, the command channel, masked units, a
/// volatile journal, a machine id (an empty one would start first-boot prompts).
fn configure(tree: &Path, kernel: &Kernel) {
    let modules = Path::new("/lib/modules").join(&kernel.version);
    let mut files = Vec::new();
    for module in MODULES {
        let out = Command::new("modprobe")
            .args(["--show-depends", "-S", &kernel.version, module])
            .output()
            .expect("modprobe runs (kmod)");
        assert!(
            out.status.success(),
            "kernel {} has no module {module}: {}",
            kernel.version,
            String::from_utf8_lossy(&out.stderr)
        );
        files.extend(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| l.strip_prefix("insmod "))
                .map(|p| PathBuf::from(p.trim())),
        );
    }
    let into = |p: &Path| tree.join(p.strip_prefix("/").unwrap());
    for file in files {
        fs::create_dir_all(into(&file).parent().unwrap()).unwrap();
        fs::copy(&file, into(&file)).unwrap();
    }
    for name in [
        "modules.order",
        "modules.builtin",
        "modules.builtin.modinfo",
    ] {
        let _ = fs::copy(modules.join(name), into(&modules.join(name)));
    }
    must(
        Command::new("depmod")
            .arg("-b")
            .arg(tree)
            .arg(&kernel.version),
        "depmod for the guest",
    );

    let units = tree.join("etc/systemd/system");
    fs::write(units.join("test-channel.service"), CHANNEL_UNIT).unwrap();
    let wants = units.join("multi-user.target.wants");
    fs::create_dir_all(&wants).unwrap();
    std::os::unix::fs::symlink(
        "../test-channel.service",
        wants.join("test-channel.service"),
    )
    .unwrap();
    for unit in MASKED {
        let _ = fs::remove_file(units.join(unit));
        std::os::unix::fs::symlink("/dev/null", units.join(unit)).unwrap();
    }
    let journald = tree.join("etc/systemd/journald.conf.d");
    fs::create_dir_all(&journald).unwrap();
    fs::write(
        journald.join("volatile.conf"),
        "[Journal]\nStorage=volatile\n",
    )
    .unwrap();
    fs::write(tree.join("etc/hostname"), "guest\n").unwrap();
    for dir in ["host", "images"] {
        fs::create_dir_all(tree.join(dir)).unwrap();
    }
    let uuid = fs::read_to_string("/proc/sys/kernel/random/uuid").unwrap();
    fs::write(
        tree.join("etc/machine-id"),
        uuid.trim().replace('-', "") + "\n",
    )
    .unwrap();
}
