//! systemd built from its own sources for the guests of versions no Debian on the mirror ships
//! (239 as RHEL 8 bases on, 245 as Ubuntu 20.04, 249 as Ubuntu 22.04 and SLES 15): the last
//! release of each stable branch, compiled in a Debian 11 build root and installed over Debian
//! 11's own systemd in a guest root (README: "Old hosts").
//!
//! The sources are a clone of systemd's stable repository (`systemd/systemd-stable`, which has
//! the tags) named by `PORTABLE_SERVICE_SYSTEMD_SOURCES`; tests/old-hosts.sh sets it, cloning
//! where the internet is reached. Each version's build is cached beside the guest disks,
//! keyed by the commit it was built from and the recipe here; the build root too.
//!
//! What differs from a distribution's build of the same version: upstream sources without a
//! distribution's patches (RHEL 8's 239 carries hundreds of backports), only what portabled and
//! a boot need (no networkd, resolved, homed, importd, PAM, SELinux, EFI), and Debian 11's
//! userland around it (its libsystemd, udev rules and dbus stay: programs built against
//! Debian's libsystemd keep it, and systemd's own programs use their private shared library).
//! The cgroup hierarchy is each version's own default: hybrid for 239 (RHEL 8 builds it
//! legacy), unified from 243 on.

use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;

/// What the build root installs: the compiler, meson and ninja, and the libraries behind the
/// features portabled uses (libmount, libblkid and libcryptsetup for images and dm-verity,
/// libseccomp for the profiles' `SystemCallFilter=`, libkmod, libacl), m4 and gettext (239
/// and 245 need them), jinja2 (249 renders its units with it).
const BUILD_PACKAGES: &str = "gcc,libc6-dev,pkg-config,meson,ninja-build,gperf,m4,gettext,\
python3,python3-jinja2,libcap-dev,libmount-dev,libblkid-dev,libcryptsetup-dev,libseccomp-dev,\
libkmod-dev,libacl1-dev,git,ca-certificates";

/// The meson options of the build: a `-D` is passed only where the version's
/// meson_options.txt has it (the names came and went between 239 and 249).
const OPTIONS: [(&str, &str); 55] = [
    ("mode", "release"),
    ("portabled", "true"),
    ("libcryptsetup", "true"),
    ("seccomp", "true"),
    ("blkid", "true"),
    ("kmod", "true"),
    ("acl", "true"),
    ("tests", "false"),
    ("slow-tests", "false"),
    ("fuzz-tests", "false"),
    ("install-tests", "false"),
    ("man", "false"),
    ("html", "false"),
    ("translations", "false"),
    ("networkd", "false"),
    ("resolve", "false"),
    ("timesyncd", "false"),
    ("homed", "false"),
    ("userdb", "false"),
    ("importd", "false"),
    ("remote", "false"),
    ("microhttpd", "false"),
    ("machined", "true"),
    ("oomd", "false"),
    ("repart", "false"),
    ("coredump", "false"),
    ("pstore", "false"),
    ("efi", "false"),
    ("gnu-efi", "false"),
    ("polkit", "false"),
    ("pam", "false"),
    ("pwquality", "false"),
    ("selinux", "false"),
    ("apparmor", "false"),
    ("smack", "false"),
    ("audit", "false"),
    ("ima", "false"),
    ("qrencode", "false"),
    ("gcrypt", "false"),
    ("gnutls", "false"),
    ("openssl", "false"),
    ("p11kit", "false"),
    ("libfido2", "false"),
    ("tpm2", "false"),
    ("elfutils", "false"),
    ("xkbcommon", "false"),
    ("pcre2", "false"),
    ("glib", "false"),
    ("dbus", "false"),
    ("idn", "false"),
    ("libidn", "false"),
    ("libidn2", "false"),
    ("libcurl", "false"),
    ("libiptc", "false"),
    ("nss-mymachines", "false"),
];

/// Where each version's distribution puts systemd: RHEL 8 builds 239 for `/usr` alone; Ubuntu
/// builds 245 and 249 as Debian does, split (`/lib/systemd`, `/bin/systemctl`), which also
/// makes portabled look for units in an image's `/lib/systemd/system` before
/// `/usr/lib/systemd/system`. The guest's root has `/usr` merged either way, as those
/// distributions install it.
fn layout(tag: &str) -> [(&'static str, &'static str); 3] {
    if tag.starts_with("v239") {
        [
            ("split-usr", "false"),
            ("rootprefix", "/usr"),
            ("rootlibdir", "/usr/lib/x86_64-linux-gnu"),
        ]
    } else {
        [
            ("split-usr", "true"),
            ("rootprefix", "/"),
            ("rootlibdir", "/lib/x86_64-linux-gnu"),
        ]
    }
}

/// meson's own settings: Debian's directories (its multiarch library directory, which meson
/// finds only with dpkg-dev), and the optimisation distributions build with.
const MESON_SETUP: &str = "--prefix=/usr --sysconfdir=/etc --localstatedir=/var \
--libdir=lib/x86_64-linux-gnu -Doptimization=2 -Ddebug=false";

/// What is left out of the build's install: the client libraries and modules Debian's
/// programs load (they keep Debian's newer ones).
const KEEP_DEBIAN_S: [&str; 4] = [
    "usr/lib/x86_64-linux-gnu",
    "lib/x86_64-linux-gnu",
    "usr/include",
    "usr/share/pkgconfig",
];

/// The top directories a split build installs into, which are links into `/usr` in the guest.
const SPLIT: [&str; 3] = ["bin", "sbin", "lib"];

/// The tests' `portablectl` on 239, which installs it as `/usr/lib/systemd/portablectl` only
/// (240 put it on PATH) and has no `--now` or `--enable` (245): it does what a user of 239
/// does by hand. An attach is the real one, then `systemctl enable`/`start` of the units it
/// attached (its "Copied /run/systemd/system/UNIT." lines: 239 attaches among the host's own
/// units, 245 into system.attached; templates can't be started); a
/// detach stops and disables the units attached from the image (their drop-in's
/// `Environment=PORTABLE=NAME.raw`) first. An attach, inspect or `--now` start that lost 239's
/// race with udev is tried again. An attach that names no profile is made with
/// `--profile trusted`, as check tells a user of 239 to (every other profile's
/// `PrivateDevices=yes` runs a service from the host's root there). Everything else goes to the
/// real one as it is.
const PORTABLECTL_239: &str = r#"#!/bin/sh
real=/usr/lib/systemd/portablectl
now= enable= runtime= verb= image= profile= value=
for a; do
  shift
  case $value:$a in
  1:*) value= ;;
  *:--now) now=1; continue ;;
  *:--enable) enable=1; continue ;;
  *:--runtime) runtime=--runtime ;;
  *:--profile) profile=1 value=1 ;;
  *:--profile=*) profile=1 ;;
  *:-*) ;;
  *) if [ -z "$verb" ]; then verb=$a; else image=$a; fi ;;
  esac
  set -- "$@" "$a"
done
[ "$verb" != attach ] || [ -n "$profile" ] || set -- --profile trusted "$@"
# 239 mounts an image of one file system through /dev/block/MAJ:MIN, which udev may not have
# made yet (245.7 waits for it): the attach fails saying the image "lacks os-release data".
# What a user does: try again (said on standard error, so that the tests' logs show it).
again() {
  out=$(past-udev "lacks os-release data" "$real" "$@")
  rc=$?
}
if [ -z "$now$enable" ]; then
  case $verb in
  attach | inspect)
    again "$@"
    if [ $rc -eq 0 ]; then printf '%s\n' "$out"; else printf '%s\n' "$out" >&2; fi
    exit $rc
    ;;
  esac
  exec "$real" "$@"
fi
name=${image##*/}
name=${name%.raw}
case $verb in
attach)
  again "$@"
  printf '%s\n' "$out" >&2
  [ $rc -eq 0 ] || exit $rc
  units=$(printf '%s\n' "$out" |
    sed -n 's,^Copied .*/system[.a-z]*/\([^/ ]*\)\.$,\1,p; s,^Created symlink [^ ]*/system[.a-z]*/\([^/ ]*\) .*,\1,p' |
    grep -v '@\.' | sort -u)
  [ -z "$enable" ] || [ -z "$units" ] || systemctl enable $runtime $units || exit
  [ -z "$now" ] || [ -z "$units" ] || start-past-udev $units || exit
  ;;
detach)
  units=$(grep -lx -e "Environment=PORTABLE=$name.raw" -e "Environment=PORTABLE=$name" \
    /etc/systemd/system/*.d/20-portable.conf /run/systemd/system/*.d/20-portable.conf 2>/dev/null |
    sed 's,.*/\([^/]*\)\.d/20-portable\.conf$,\1,' | grep -v '@\.' | sort -u)
  [ -z "$now" ] || [ -z "$units" ] || systemctl stop $units
  [ -z "$enable" ] || [ -z "$units" ] || systemctl disable $runtime $units
  exec "$real" "$@"
  ;;
*) exec "$real" "$@" ;;
esac
"#;

/// The tests' `systemctl start` on 239, `start-past-udev UNIT...`: 239 mounts a service's image
/// of one file system through /dev/block/MAJ:MIN too, before udev need have made that link, and
/// the start fails now and then (226/NAMESPACE, "Failed to set up mount namespacing: No such
/// file or directory"; measured: 3 of the portabled scenarios' starts in one run). What a user
/// does: start it again (said on standard error). A simple service's start job has succeeded by
/// the time it fails, so the journal decides.
const START_239: &str = r#"#!/bin/sh
for u; do
  tries=1
  while :; do
    cursor=$(journalctl -n 0 --show-cursor --no-pager | sed -n 's/^-- cursor: //p')
    systemctl start "$u"
    rc=$?
    sleep 1
    journalctl --after-cursor "$cursor" -u "$u" --no-pager -o cat |
      grep -q "Failed to set up mount namespacing: No such file or directory" || break
    [ $tries -lt 5 ] || break
    echo "start-past-udev: 239 lost its race with udev starting $u, trying again" >&2
    systemctl stop "$u"
    systemctl reset-failed "$u"
    tries=$((tries + 1))
  done
  [ $rc -eq 0 ] || exit $rc
done
"#;

/// `past-udev TEXT COMMAND...` in the 239 guest: runs COMMAND, and again (at most 5 times in
/// all, said on standard error) while it fails saying TEXT, the sign of 239's race with udev;
/// then prints what it said (standard output and error) and exits as it did.
const PAST_UDEV_239: &str = r#"#!/bin/sh
sign=$1
shift
tries=1
while :; do
  out=$("$@" 2>&1)
  rc=$?
  case $rc:$out in
  0:*) break ;;
  *"$sign"*) [ $tries -lt 5 ] || break ;;
  *) break ;;
  esac
  echo "${1##*/}: 239 lost its race with udev, trying again" >&2
  tries=$((tries + 1))
done
printf '%s\n' "$out"
exit $rc
"#;

/// The tests' systemd-dissect on 239, which loses the same race: "Failed to acquire image
/// metadata: Protocol error" (measured).
const DISSECT_239: &str = r#"#!/bin/sh
exec past-udev "Failed to acquire image metadata: Protocol error" /usr/lib/systemd/systemd-dissect "$@"
"#;

/// Later commits of systemd's own that a version gets, taken from the sources' clone, as its
/// distributions carry them: `(tag prefix, commit)`. 241's rework of `FOREACH_STRING()`
/// (systemd issue 11394): 239's macro iterates over a compound literal past its lifetime,
/// which gcc 10 compiles into a loop that never runs, so 239 found no os-release in any image
/// ("lacks os-release data", measured); gcc 8 and RHEL 8, which carries the commit, don't.
const BACKPORTS: [(&str, &str); 1] = [("v239", "66a64081f82dfad90f2f9394a477820a2e3e6510")];

/// The Debian 11 packages whose files the build replaces.
const REPLACED: [&str; 3] = ["systemd", "systemd-container", "udev"];

/// The directory of systemd's sources, from `PORTABLE_SERVICE_SYSTEMD_SOURCES`.
pub fn sources() -> PathBuf {
    let dir = std::env::var_os("PORTABLE_SERVICE_SYSTEMD_SOURCES").expect(
        "PORTABLE_SERVICE_SYSTEMD_SOURCES is not set: the guests of systemd 239, 245 and 249 \
         are built from a clone of systemd-stable (run tests/old-hosts.sh)",
    );
    PathBuf::from(dir)
}

/// The commit `tag` names in the sources.
pub fn commit(tag: &str) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(sources())
        .args(["rev-parse", "--verify", &format!("{tag}^{{commit}}")])
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "{} has no tag {tag} (a clone of systemd/systemd-stable has it): {}",
        sources().display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The files of `commit` whose contents the clone lacks.
fn absent_files(commit: &str) -> Vec<String> {
    let git = |args: &[&str], input: Option<&str>| {
        let mut cmd = Command::new("git");
        cmd.arg("-C").arg(sources()).args(args);
        if input.is_some() {
            cmd.stdin(std::process::Stdio::piped());
        }
        cmd.stdout(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("git runs");
        if let Some(input) = input {
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            let input = input.to_owned();
            std::thread::spawn(move || stdin.write_all(input.as_bytes()));
        }
        let out = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let tree = git(&["ls-tree", "-r", commit], None);
    let blobs: Vec<(&str, &str)> = tree
        .lines()
        .filter_map(|l| {
            let (meta, path) = l.split_once('\t')?;
            let object = meta.split_whitespace().nth(2)?;
            meta.contains(" blob ").then_some((object, path))
        })
        .collect();
    let input: String = blobs.iter().map(|(o, _)| format!("{o}\n")).collect();
    let said = git(&["cat-file", "--batch-check"], Some(&input));
    let missing: Vec<&str> = said
        .lines()
        .filter_map(|l| l.strip_suffix(" missing"))
        .collect();
    blobs
        .iter()
        .filter(|(o, _)| missing.contains(o))
        .map(|(_, p)| p.to_string())
        .collect()
}

/// Changed whenever [`install`] changes: it is part of the old guests' disks' recipe.
const INSTALL_STEPS: u32 = 3;

/// What [`install`] does, for the recipe of the old guests' disks.
pub fn install_recipe() -> (u32, &'static str) {
    (INSTALL_STEPS, PORTABLECTL_239)
}

/// A hash of what goes into the build of `tag`, for the names of what is cached.
pub fn recipe(tag: &str) -> u64 {
    let mut h = DefaultHasher::new();
    (
        BUILD_PACKAGES,
        MESON_SETUP,
        OPTIONS,
        layout(tag),
        KEEP_DEBIAN_S,
        REPLACED,
        SPLIT,
        BACKPORTS,
    )
        .hash(&mut h);
    h.finish()
}

/// The Debian 11 root the builds run in (chroot), made once.
fn build_root(cache: &Path, mirror: &str, debootstrap: impl Fn() -> Command) -> PathBuf {
    let mut h = DefaultHasher::new();
    BUILD_PACKAGES.hash(&mut h);
    let root = cache.join(format!("build-bullseye-{:016x}", h.finish()));
    if !root.join(".made").exists() {
        let _ = fs::remove_dir_all(&root);
        eprintln!("making the build root of old systemd versions: debootstrap bullseye");
        super::guest::must(
            debootstrap()
                .args([
                    "--variant=minbase",
                    &format!("--include={BUILD_PACKAGES}"),
                    "bullseye",
                ])
                .arg(&root)
                .arg(mirror),
            "debootstrap of the build root",
        );
        fs::write(root.join(".made"), "").unwrap();
    }
    root
}

/// systemd `tag` compiled and installed into a directory of its own (cached): what goes over
/// Debian 11's systemd in the guest.
pub fn build(tag: &str, cache: &Path, mirror: &str, debootstrap: impl Fn() -> Command) -> PathBuf {
    let commit = commit(tag);
    let out = cache.join(format!(
        "systemd-{tag}-{}-{:016x}",
        &commit[..12],
        recipe(tag)
    ));
    if out.join(".made").exists() {
        return out;
    }
    // one build at a time, in one build root: each takes both cores
    let lock = fs::File::create(cache.join("old-systemd-build.lock")).unwrap();
    lock.lock().unwrap();
    if out.join(".made").exists() {
        return out;
    }
    let root = build_root(cache, mirror, debootstrap);
    let src = root.join(format!("src/systemd-{tag}"));
    let _ = fs::remove_dir_all(&src);
    fs::create_dir_all(&src).unwrap();
    eprintln!("building systemd {tag} ({commit}) in {}", root.display());
    // a clone may lack blobs (a partial one): the hardware database's OUI list
    // (hwdb.d/ma-large.txt, 3 MB) was absent from the one these tests were made with, and
    // only the database's own update scripts read it
    let absent = absent_files(&commit);
    if !absent.is_empty() {
        eprintln!("systemd {tag}: left out, absent from the clone: {absent:?}");
    }
    let excludes: Vec<String> = absent.iter().map(|p| format!(":(exclude){p}")).collect();
    super::guest::must(
        Command::new("bash")
            .arg("-c")
            .arg("git -C \"$0\" archive --format=tar \"$2\" -- . \"${@:3}\" | tar -x -C \"$1\"")
            .arg(sources())
            .arg(&src)
            .arg(&commit)
            .args(&excludes),
        &format!("unpacking systemd {tag}"),
    );
    // Debian 11's tools on old sources: meson 0.56 reserves the option name `debug` (taken
    // from 0.45 on), which 239 has and 240 renamed `debug-extra`, as this does; format
    // warnings are errors there, and gcc 10 warns of a null `%s` in a debug message of 239's
    // load-fragment.c that gcc 8 (RHEL 8's) did not see
    let replace = |file: &str, from: &str, to: &str| {
        let path = src.join(file);
        let text = fs::read_to_string(&path).unwrap();
        fs::write(&path, text.replace(from, to)).unwrap();
    };
    let known = fs::read_to_string(src.join("meson_options.txt")).unwrap();
    if known.contains("option('debug',") {
        replace(
            "meson_options.txt",
            "option('debug',",
            "option('debug-extra',",
        );
        replace(
            "meson.build",
            "get_option('debug')",
            "get_option('debug-extra')",
        );
    }
    replace("meson.build", "'-Werror=format=2',", "'-Wformat=2',");
    for (_, backport) in BACKPORTS.iter().filter(|(t, _)| tag.starts_with(t)) {
        // with one line of context: the lines around the change moved between the versions
        super::guest::must(
            Command::new("bash")
                .arg("-c")
                .arg("git -C \"$0\" show --format= \"$1\" | git apply -C1")
                .arg(sources())
                .arg(backport)
                .current_dir(&src),
            &format!("applying systemd's {backport} to {tag}"),
        );
    }
    let known = fs::read_to_string(src.join("meson_options.txt")).unwrap();
    let options: Vec<String> = OPTIONS
        .iter()
        .chain(layout(tag).iter())
        .filter(|(name, _)| known.contains(&format!("option('{name}'")))
        .map(|(name, value)| format!("-D{name}={value}"))
        .collect();
    let inside = format!("/src/systemd-{tag}");
    let script = format!(
        "set -e; cd {inside}; rm -rf build /out; \
         meson setup build {MESON_SETUP} {} >/src/{tag}.setup.log 2>&1 \
           || {{ tail -40 /src/{tag}.setup.log; exit 1; }}; \
         ninja -C build >/src/{tag}.build.log 2>&1 || {{ tail -60 /src/{tag}.build.log; exit 1; }}; \
         DESTDIR=/out ninja -C build install >/src/{tag}.install.log 2>&1 \
           || {{ tail -40 /src/{tag}.install.log; exit 1; }}",
        options.join(" ")
    );
    let started = std::time::Instant::now();
    super::guest::must(
        Command::new("chroot")
            .arg(&root)
            .args(["sh", "-c", &script])
            .env("LANG", "C.UTF-8"),
        &format!("building systemd {tag}"),
    );
    eprintln!(
        "built systemd {tag} in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let _ = fs::remove_dir_all(&out);
    super::guest::must(
        Command::new("cp").arg("-a").arg(root.join("out")).arg(&out),
        "keeping the build",
    );
    for dir in KEEP_DEBIAN_S {
        let _ = fs::remove_dir_all(out.join(dir));
    }
    fs::remove_dir_all(root.join("out")).unwrap();
    fs::remove_dir_all(&src).unwrap();
    fs::write(out.join(".made"), "").unwrap();
    out
}

/// Replaces Debian 11's systemd in the guest root `tree` with the build `built`: the files of
/// Debian's systemd packages go (units 239 doesn't have would otherwise be loaded), the
/// build's come in.
pub fn install(tag: &str, tree: &Path, built: &Path) {
    let out = Command::new("chroot")
        .arg(tree)
        .arg("dpkg")
        .arg("-L")
        .args(REPLACED)
        .output()
        .expect("chroot dpkg runs");
    assert!(out.status.success(), "dpkg -L in the guest root: {out:?}");
    for path in String::from_utf8_lossy(&out.stdout).lines() {
        let file = tree.join(path.trim_start_matches('/'));
        // followed: `/lib` is listed, and is the link of the merged `/usr`
        let is_dir = fs::metadata(&file).is_ok_and(|m| m.is_dir());
        if !is_dir && !path.starts_with("/etc/") && !path.contains("/lib/x86_64-linux-gnu/") {
            let _ = fs::remove_file(&file);
        }
    }
    let copy = |from: &Path, to: &Path| {
        super::guest::must(
            Command::new("cp")
                .args(["-a", "--remove-destination", "--no-target-directory"])
                .arg(from)
                .arg(to),
            "installing the built systemd into the guest root",
        )
    };
    for entry in fs::read_dir(built).unwrap() {
        let name = entry.unwrap().file_name();
        let name = name.to_str().unwrap();
        if name == ".made" {
            continue;
        }
        let into = if SPLIT.contains(&name) {
            tree.join("usr").join(name)
        } else {
            tree.join(name)
        };
        copy(&built.join(name), &into);
    }
    if !tree.join("usr/bin/portablectl").exists() {
        assert!(
            tag.starts_with("v239"),
            "systemd {tag} installed no portablectl"
        );
        use std::os::unix::fs::PermissionsExt;
        for (name, script) in [
            ("portablectl", PORTABLECTL_239),
            ("start-past-udev", START_239),
            ("systemd-dissect", DISSECT_239),
            ("past-udev", PAST_UDEV_239),
        ] {
            let wrapper = tree.join("usr/local/bin").join(name);
            fs::write(&wrapper, script).unwrap();
            fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
}
