//! `portable-service check` on hand-made images (mksquashfs over small trees): a good
//! base and extension are accepted, and each rule broken alone is refused with its reason (or,
//! for advice, reported without failing).

mod common;
#[path = "support/metadata_blocks.rs"]
mod metadata_blocks;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Clone)]
enum E {
    Dir,
    File(&'static str, u32),
    Link(&'static str),
}

type Tree = BTreeMap<&'static str, E>;

fn base() -> Tree {
    let mut t = Tree::new();
    for d in ["dev", "proc", "sys", "run", "tmp", "var/tmp", "var/lib/svc"] {
        t.insert(d, E::Dir);
    }
    t.insert("etc/machine-id", E::File("", 0o644));
    t.insert("etc/resolv.conf", E::File("", 0o644));
    t.insert(
        "etc/os-release",
        E::File("ID=test\nPORTABLE_PREFIXES=svc\n", 0o644),
    );
    t.insert(
        "etc/systemd/system/svc.service",
        E::File(
            "[Service]\nStateDirectory=svc\nExecStart=/nix/store/0c7wkdmgpqnch9f84clfdjqxn7hznv2z-tool/bin/tool --flag\nExecStartPre=sh -c true\n",
            0o644,
        ),
    );
    t.insert(
        "usr/nix/store/0c7wkdmgpqnch9f84clfdjqxn7hznv2z-tool/bin/tool",
        E::File("#!/bin/sh\n", 0o555),
    );
    t.insert("nix", E::Link("usr/nix"));
    t.insert(
        "bin/sh",
        E::Link("/nix/store/0c7wkdmgpqnch9f84clfdjqxn7hznv2z-tool/bin/tool"),
    );
    // a symlink out of the image to what the host provides: normal
    t.insert("etc/ssl", E::Link("/etc/static/ssl"));
    t
}

fn extension(release_name: &str, release: &'static str) -> Tree {
    let mut t = Tree::new();
    let path: &'static str = Box::leak(
        format!("usr/lib/extension-release.d/extension-release.{release_name}").into_boxed_str(),
    );
    t.insert(path, E::File(release, 0o644));
    t.insert(
        "usr/lib/systemd/system/app.service",
        E::File(
            "[Service]\nExecStart=/nix/store/0c7wkdmgpqnch9f84clfdjqxn7hznv2z-tool/bin/tool app\n",
            0o644,
        ),
    );
    t
}

const APP_RELEASE: &str = "ID=test\nSYSEXT_SCOPE=portable\nPORTABLE_PREFIXES=app\n";

/// Makes `name` (a squashfs image) from `tree` in `dir`.
fn image(dir: &Path, name: &str, tree: &Tree) -> PathBuf {
    let root = dir.join(format!("{name}.root"));
    let _ = fs::remove_dir_all(&root);
    fs::create_dir_all(&root).unwrap();
    for (path, e) in tree {
        let p = root.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        match e {
            E::Dir => fs::create_dir_all(&p).unwrap(),
            E::File(text, mode) => {
                fs::write(&p, text).unwrap();
                fs::set_permissions(&p, fs::Permissions::from_mode(*mode)).unwrap();
            }
            E::Link(target) => symlink(target, &p).unwrap(),
        }
    }
    let out = dir.join(name);
    let ok = Command::new("mksquashfs")
        .arg(&root)
        .arg(&out)
        .args([
            "-noappend",
            "-all-root",
            "-quiet",
            "-no-progress",
            "-comp",
            "gzip",
        ])
        .status()
        .expect("mksquashfs runs (tests/setup.sh installs it)");
    assert!(ok.success());
    out
}

/// Runs `check` on images made from `base` (named `base_name`) and `extensions`, with `args`;
/// (accepted, report).
fn check(base_tree: &Tree, extensions: &[(&str, Tree)], args: &[&str]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let base = image(dir.path(), "svc_1.raw", base_tree);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_portable-service"));
    cmd.arg("check").arg(&base);
    for (name, tree) in extensions {
        cmd.arg("--extension").arg(image(dir.path(), name, tree));
    }
    let out = cmd.args(args).output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    let code = out.status.code();
    assert!(
        matches!(code, Some(0 | 1)),
        "exit {code:?}: {report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (code == Some(0), report)
}

fn refused(tree: &Tree, exts: &[(&str, Tree)], args: &[&str], why: &str) {
    let (ok, report) = check(tree, exts, args);
    assert!(!ok, "accepted, but should be refused for {why}:\n{report}");
    assert!(report.contains(why), "{why} in:\n{report}");
    assert!(report.contains("verdict: refused"), "{report}");
}

#[test]
fn a_good_image_and_extension_are_accepted() {
    let (ok, report) = check(&base(), &[], &[]);
    assert!(ok, "{report}");
    assert!(report.contains("✓ portable service"), "{report}");
    assert!(
        report.contains("attached: svc.service (svc_1:/etc/systemd/system/svc.service)"),
        "{report}"
    );
    assert!(!report.contains("advice"), "{report}");

    let (ok, report) = check(
        &base(),
        &[("app.raw", extension("app", APP_RELEASE))],
        &["--prefix", "app"],
    );
    assert!(ok, "{report}");
    assert!(
        report.contains("attached: app.service (app:/usr/lib/systemd/system/app.service)"),
        "{report}"
    );
    assert!(
        report.contains("systemd 252: accepted") && report.contains("systemd 257: accepted"),
        "{report}"
    );
    assert!(
        report.contains("✓ extension for portable service"),
        "{report}"
    );
}

#[test]
fn an_image_without_prefixes_is_accepted_with_advice() {
    let mut t = base();
    t.insert("etc/os-release", E::File("ID=test\n", 0o644));
    let (ok, report) = check(&t, &[], &[]);
    assert!(ok, "{report}");
    assert!(report.contains("✗ portable service"), "{report}");
    assert!(
        report.contains("advice: os-release has no PORTABLE_PREFIXES="),
        "{report}"
    );
}

/// What systemd 247 does differently, as measured in its VM (tests/tests/acceptance,
/// `::systemd_247`); 245 does the same (tests/old-hosts.sh).
#[test]
fn systemd_247_attaches_what_252_refuses_and_refuses_extensions() {
    // no ID=, and the name's match outside PORTABLE_PREFIXES: refused by 252, attached by 247
    let mut t = base();
    t.insert(
        "etc/os-release",
        E::File("PORTABLE_PREFIXES=other svc-x\n", 0o644),
    );
    let (ok, report) = check(&t, &[], &["--systemd", "252"]);
    assert!(!ok, "{report}");
    let (ok, report) = check(&t, &[], &["--systemd", "247"]);
    assert!(ok, "{report}");
    assert!(
        report.contains("image ") && report.contains("(systemd 247 rules)"),
        "{report}"
    );
    assert!(
        report
            .contains("systemd-dissect: names no use of an image before systemd 250 (this is 247)"),
        "{report}"
    );

    // an empty unit file of the prefix: 247 attaches it (masked, so nothing can start), 252
    // passes over it
    let mut t = base();
    t.remove("etc/systemd/system/svc.service");
    t.insert("etc/systemd/system/svc-empty.service", E::File("\n", 0o644));
    let (ok, report) = check(&t, &[], &["--systemd", "247"]);
    assert!(!ok && report.contains("empty: attached"), "{report}");
    refused(
        &t,
        &[],
        &["--systemd", "252"],
        "Couldn't find any matching unit files",
    );

    // a program named without a path: 245 looks it up on the host as it loads the unit (the
    // VM's host has no busybox: "bad-setting"), 247 in the image as it runs it
    refused(
        &base(),
        &[],
        &["--systemd", "245"],
        "svc.service: ExecStartPre=sh: systemd 245 looks `sh` up on the host",
    );
    let (ok, report) = check(&base(), &[], &["--systemd", "247"]);
    assert!(ok, "{report}");

    // no --extension before 249 (measured: 245, 247)
    for old in ["239", "245", "248"] {
        refused(
            &base(),
            &[("app.raw", extension("app", APP_RELEASE))],
            &["--prefix", "app", "--systemd", old],
            &format!("systemd {old}'s portablectl has no --extension"),
        );
    }
    let (_, report) = check(&base(), &[], &["--systemd", "240"]);
    assert!(
        report
            .contains("(systemd 240: the rules of 239, the newest measured version not above it)"),
        "{report}"
    );
    // below portable services, a usage error
    let out = Command::new(env!("CARGO_BIN_EXE_portable-service"))
        .args(["check", "x.raw", "--systemd", "238"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64), "{out:?}");
}

/// An empty unit file is a masked unit: 239 to 249 attach it all the same, so an image whose
/// only unit is empty attaches and nothing can start, which check refuses, naming the unit;
/// from 252 on portabled passes over it and refuses the image. Beside a unit that starts, an
/// empty one is masked on purpose: accepted on every version.
#[test]
fn an_image_whose_only_unit_is_empty_is_refused_on_every_version() {
    let mut only_empty = base();
    only_empty.remove("etc/systemd/system/svc.service");
    only_empty.insert("etc/systemd/system/svc-empty.service", E::File("\n", 0o644));
    let mut beside = base();
    beside.insert(
        "etc/systemd/system/svc-empty.service",
        E::File(" \n", 0o644),
    );
    for old in ["239", "245", "247", "249"] {
        let (ok, report) = check(&only_empty, &[], &["--systemd", old]);
        assert!(!ok, "{report}");
        assert!(
            report.contains(&format!(
                "error (run): svc-empty.service empty: systemd {old} attaches an empty unit file \
                 as a masked unit, which can't start"
            )),
            "{report}"
        );
        let (_, report) = check(&beside, &[], &["--systemd", old]);
        assert!(!report.contains("can't start"), "{report}");
    }
    for new in ["252", "257", "262"] {
        refused(
            &only_empty,
            &[],
            &["--systemd", new],
            "Couldn't find any matching unit files",
        );
        let (ok, report) = check(&beside, &[], &["--systemd", new]);
        assert!(
            ok,
            "systemd {new} passes over it and attaches svc.service: {report}"
        );
    }
    // 247 runs the base's services (its `sh` found in the image): the empty unit beside them
    // changes nothing
    let (ok, report) = check(&beside, &[], &["--systemd", "247"]);
    assert!(ok, "{report}");
}

/// What systemd 239 does differently, as measured in its VM (tests/old-hosts.sh): a socket
/// (any unit but a service) is refused, `/usr/lib` comes before `/lib`, and an image of one
/// file system may lose a race with udev.
#[test]
fn systemd_239_refuses_sockets_and_reads_usr_lib_first() {
    let mut t = base();
    t.insert(
        "etc/systemd/system/svc.socket",
        E::File("[Socket]\nListenStream=/run/svc.sock\n", 0o644),
    );
    refused(
        &t,
        &[],
        &["--systemd", "239"],
        "Failed to attach image: No such file or directory. (systemd 239 looks for a profile \
         drop-in for every unit it attaches, and the profiles have one for services only: it \
         refuses svc.socket",
    );
    let (ok, report) = check(&t, &[], &["--systemd", "247"]);
    assert!(ok, "{report}");
    // a socket masked by a link to /dev/null is looked up the same (measured)
    let mut t = base();
    t.insert("lib/systemd/system/svc.socket", E::Link("/dev/null"));
    let args = ["--systemd", "239", "--profile", "trusted"];
    refused(&t, &[], &args, "it refuses svc.socket");
    let (ok, report) = check(&t, &[], &["--systemd", "247"]);
    assert!(ok, "{report}");

    // one unit name in /usr/lib and /lib: 239 attaches /usr/lib's, 245 to 254 /lib's
    let mut t = base();
    t.remove("etc/systemd/system/svc.service");
    t.insert(
        "usr/lib/systemd/system/svc.service",
        E::File("[Service]\nExecStart=/bin/sh\n", 0o644),
    );
    t.insert(
        "lib/systemd/system/svc.service",
        E::File("[Service]\nExecStart=/no/such\n", 0o644),
    );
    let (ok, report) = check(&t, &[], &["--systemd", "239", "--profile", "trusted"]);
    assert!(ok, "{report}");
    assert!(
        report.contains("attached: svc.service (svc_1:/usr/lib/systemd/system/svc.service)"),
        "{report}"
    );
    let (ok, report) = check(&t, &[], &["--systemd", "249"]);
    assert!(!ok, "{report}");
    assert!(report.contains("/no/such"), "{report}");
    assert!(!report.contains("systemd 249 mounts"), "{report}");

    // the race: said, not refused
    let (_, report) = check(&t, &[], &["--systemd", "239", "--profile", "trusted"]);
    assert!(
        report.contains("systemd 239 mounts an image of one file system through /dev/block"),
        "{report}"
    );
}

#[test]
fn systemd_239_runs_a_service_with_private_devices_from_the_host_root() {
    let from_the_host = "ExecStart=/bin/sh: systemd 239 runs a service with PrivateDevices=yes";
    let mut t = base();
    t.insert(
        "etc/systemd/system/svc.service",
        E::File(
            "[Service]\nExecStart=/bin/sh\nExecStartPre=-/bin/sh\n",
            0o644,
        ),
    );
    // the default profile, and every other but trusted, sets PrivateDevices=yes
    for profile in ["default", "nonetwork", "strict"] {
        let (ok, report) = check(&t, &[], &["--systemd", "239", "--profile", profile]);
        assert!(!ok, "{profile}: {report}");
        assert!(report.contains(from_the_host), "{profile}: {report}");
        assert!(
            report.contains("attach with `--profile trusted`"),
            "{report}"
        );
        // `-`: a failure systemd ignores
        assert!(
            report.contains("ExecStartPre=-/bin/sh: systemd 239 runs") && report.contains("advice"),
            "{report}"
        );
    }
    let (ok, report) = check(&t, &[], &["--systemd", "239"]);
    assert!(!ok && report.contains(from_the_host), "{report}");
    let (ok, report) = check(&t, &[], &["--systemd", "239", "--profile", "trusted"]);
    assert!(ok, "{report}");
    assert!(
        report.contains("attached with --profile trusted"),
        "{report}"
    );
    // 245 runs it from the image, as every later version
    let (ok, report) = check(&t, &[], &["--systemd", "245"]);
    assert!(ok, "{report}");

    // under trusted the unit's own setting decides; under the others the profile's drop-in
    // overrides it
    t.insert(
        "etc/systemd/system/svc.service",
        E::File("[Service]\nExecStart=/bin/sh\nPrivateDevices=yes\n", 0o644),
    );
    let (ok, report) = check(&t, &[], &["--systemd", "239", "--profile", "trusted"]);
    assert!(!ok && report.contains(from_the_host), "{report}");
    t.insert(
        "etc/systemd/system/svc.service",
        E::File("[Service]\nExecStart=/bin/sh\nPrivateDevices=no\n", 0o644),
    );
    let (ok, report) = check(&t, &[], &["--systemd", "239"]);
    assert!(!ok && report.contains(from_the_host), "{report}");
    let (ok, report) = check(&t, &[], &["--systemd", "239", "--profile", "trusted"]);
    assert!(ok, "{report}");

    // a profile systemd doesn't ship is a usage error
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_portable-service"))
        .args(["check", "--profile", "mine"])
        .arg(image(dir.path(), "svc_1.raw", &base()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("'mine'"),
        "{out:?}"
    );
}

#[test]
fn each_broken_rule_is_refused_with_its_reason() {
    type Change = fn(&mut Tree);
    let cases: [(Change, &str); 14] = [
        (
            |t| {
                t.remove("etc/os-release");
            },
            "lacks os-release data, refusing",
        ),
        (
            |t| {
                t.insert("etc/os-release", E::File("PORTABLE_PREFIXES=svc\n", 0o644));
            },
            "os-release has no ID=",
        ),
        (
            |t| {
                let unit = t.remove("etc/systemd/system/svc.service").unwrap();
                t.insert("etc/systemd/system/other.service", unit);
            },
            "Couldn't find any matching unit files",
        ),
        (
            |t| {
                t.insert("etc/systemd/system/svc.service", E::File("\n", 0o644));
            },
            "empty: systemd takes an empty unit file for a masked unit",
        ),
        (
            |t| {
                t.remove("dev");
            },
            "mount point /dev is missing",
        ),
        (
            |t| {
                t.remove("etc/resolv.conf");
            },
            "mount point /etc/resolv.conf is missing",
        ),
        (
            |t| {
                t.remove("var/lib/svc");
            },
            "mount point /var/lib/svc (for svc.service) is missing",
        ),
        (
            |t| {
                t.insert(
                    "etc/systemd/system/svc.service",
                    E::File(
                        "[Service]\nConfigurationDirectory=svc-conf\nExecStart=/bin/sh\n",
                        0o644,
                    ),
                );
            },
            "mount point /etc/svc-conf (for svc.service) is missing",
        ),
        (
            |t| {
                t.remove("usr/nix/store/0c7wkdmgpqnch9f84clfdjqxn7hznv2z-tool/bin/tool");
            },
            "ExecStart=/nix/store/0c7wkdmgpqnch9f84clfdjqxn7hznv2z-tool/bin/tool: the image lacks",
        ),
        (
            |t| {
                t.insert(
                    "usr/nix/store/0c7wkdmgpqnch9f84clfdjqxn7hznv2z-tool/bin/tool",
                    E::File("x", 0o644),
                );
            },
            "bin/tool is not executable",
        ),
        (
            |t| {
                t.remove("bin/sh");
            },
            "ExecStartPre=sh: not found in /usr/local/sbin:",
        ),
        (
            |t| {
                t.insert(
                    "usr/share/doc",
                    E::Link("/nix/store/1c7wkdmgpqnch9f84clfdjqxn7hznv2z-docs/share/doc"),
                );
            },
            "the image lacks the store path /nix/store/1c7wkdmgpqnch9f84clfdjqxn7hznv2z-docs",
        ),
        (
            |t| {
                t.insert(
                    "usr/nix/store/0c7wkdmgpqnch9f84clfdjqxn7hznv2z-tool/lib",
                    E::Link("../2c7wkdmgpqnch9f84clfdjqxn7hznv2z-libs/lib"),
                );
            },
            "the image lacks the store path /nix/store/2c7wkdmgpqnch9f84clfdjqxn7hznv2z-libs",
        ),
        (
            |t| {
                // the program is the image's, but a socket's run on the host
                t.insert(
                    "etc/systemd/system/svc.socket",
                    E::File(
                        "[Socket]\nListenStream=/run/svc.sock\nExecStartPre=/nix/store/0c7wkdmgpqnch9f84clfdjqxn7hznv2z-tool/bin/tool\n",
                        0o644,
                    ),
                );
            },
            "svc.socket: ExecStartPre=/nix/store/0c7wkdmgpqnch9f84clfdjqxn7hznv2z-tool/bin/tool: \
             systemd runs a socket's programs from the host's file system",
        ),
    ];
    for (change, why) in cases {
        let mut t = base();
        change(&mut t);
        refused(&t, &[], &[], why);
    }
    // a program named outside [Service] is never run, so its absence is no matter
    let mut t = base();
    t.insert(
        "etc/systemd/system/svc.service",
        E::File(
            "[Unit]\nExecStart=/missing\n[Service]\nStateDirectory=svc\nExecStart=/bin/sh\n",
            0o644,
        ),
    );
    let (ok, report) = check(&t, &[], &[]);
    assert!(ok, "{report}");
    // `-` before a program: systemd ignores that it can't run
    let mut t = base();
    t.insert(
        "etc/systemd/system/svc.service",
        E::File(
            "[Service]\nStateDirectory=svc\nExecStart=-/missing\n",
            0o644,
        ),
    );
    let (ok, report) = check(&t, &[], &[]);
    assert!(ok, "{report}");
    assert!(report.contains("`-` makes systemd ignore that"), "{report}");
    // a masked unit leaves its name to the next directory's: this one lacks its program
    for masked in [E::File("", 0o644), E::Link("/dev/null")] {
        let mut t = base();
        t.insert("etc/systemd/system/svc.service", masked);
        t.insert(
            "usr/lib/systemd/system/svc.service",
            E::File("[Service]\nExecStart=/missing\n", 0o644),
        );
        refused(
            &t,
            &[],
            &[],
            "svc.service: ExecStart=/missing: the image lacks /missing",
        );
    }
    // an absolute link to a unit: 252, 254 and 257 pass over it, 262 follows it
    let mut t = base();
    let unit = t.remove("etc/systemd/system/svc.service").unwrap();
    t.insert("usr/share/svc/svc.service", unit);
    t.insert(
        "etc/systemd/system/svc.service",
        E::Link("/usr/share/svc/svc.service"),
    );
    for old in ["252", "254", "257"] {
        refused(
            &t,
            &[],
            &["--systemd", old],
            "Couldn't find any matching unit files",
        );
    }
    let (ok, report) = check(&t, &[], &["--systemd", "262"]);
    assert!(ok, "{report}");
    // ... and 252 takes the same name from a later directory instead
    t.insert(
        "usr/lib/systemd/system/svc.service",
        E::Link("../../../../usr/share/svc/svc.service"),
    );
    let (ok, report) = check(&t, &[], &["--systemd", "252"]);
    assert!(ok, "{report}");
    assert!(
        report.contains("attached: svc.service (svc_1:/usr/lib/systemd/system/svc.service)"),
        "{report}"
    );
    // one name in /lib and /usr/lib: Debian's 252 and 254 take /lib's, 257 on /usr/lib's
    let mut t = base();
    let unit = t.remove("etc/systemd/system/svc.service").unwrap();
    t.insert("usr/lib/systemd/system/svc.service", unit.clone());
    t.insert("lib/systemd/system/svc.service", unit);
    for (systemd, from) in [("254", "/lib/"), ("257", "/usr/lib/")] {
        let (ok, report) = check(&t, &[], &["--systemd", systemd]);
        assert!(ok, "{report}");
        let attached = format!("attached: svc.service (svc_1:{from}systemd/system/svc.service)");
        assert!(report.contains(&attached), "{attached} in {report}");
    }
    // a file name that can't be portablectl's default match attaches with matches given
    let dir = tempfile::tempdir().unwrap();
    let odd = image(dir.path(), "svc+x_1.raw", &base());
    let (ok, report) = check_path(&odd, &[]);
    assert!(!ok, "{report}");
    assert!(report.contains("the image name `svc+x`"), "{report}");
    let (ok, report) = check_path(&odd, &["--prefix", "svc"]);
    assert!(ok, "{report}");
    // a unit type portabled skips is reported, and the image still attaches
    let mut t = base();
    t.insert("etc/systemd/system/svc.mount", E::File("[Mount]\n", 0o644));
    let (ok, report) = check(&t, &[], &[]);
    assert!(ok, "{report}");
    assert!(report.contains("skipped: svc.mount (svc_1:/etc/systemd/system/svc.mount): portabled never attaches a .mount unit"), "{report}");
    // a match the image's prefixes don't allow
    refused(
        &base(),
        &[],
        &["--prefix", "other"],
        "Selected matches 'other' are not compatible",
    );
}

#[test]
fn extensions_must_match_their_base_and_be_named_as_each_systemd_reads_them() {
    let ext = |release| vec![("app.raw", extension("app", release))];
    refused(
        &base(),
        &ext("ID=other\nPORTABLE_PREFIXES=app\n"),
        &["--prefix", "app"],
        "does not match the root's: ID=other, the base's ID=test",
    );
    refused(
        &base(),
        &ext("ID=test\nSYSEXT_SCOPE=system\nPORTABLE_PREFIXES=app\n"),
        &["--prefix", "app"],
        "SYSEXT_SCOPE=system does not include `portable`",
    );
    // the base's version decides unless both say a level
    let mut versioned = base();
    versioned.insert(
        "etc/os-release",
        E::File("ID=test\nVERSION_ID=1\nPORTABLE_PREFIXES=svc\n", 0o644),
    );
    refused(
        &versioned,
        &ext("ID=test\nVERSION_ID=2\nPORTABLE_PREFIXES=app\n"),
        &["--prefix", "app"],
        "VERSION_ID=2, the base's VERSION_ID=1",
    );
    let mut leveled = base();
    leveled.insert(
        "etc/os-release",
        E::File(
            "ID=test\nVERSION_ID=1\nSYSEXT_LEVEL=7\nPORTABLE_PREFIXES=svc\n",
            0o644,
        ),
    );
    let (ok, report) = check(
        &leveled,
        &ext("ID=test\nVERSION_ID=2\nSYSEXT_LEVEL=7\nPORTABLE_PREFIXES=app\n"),
        &["--prefix", "app"],
    );
    assert!(ok, "{report}");
    // its units need its prefix among the matches
    let (ok, report) = check(&base(), &ext(APP_RELEASE), &[]);
    assert!(ok, "{report}");
    assert!(report.contains("skipped: app.service (app:/usr/lib/systemd/system/app.service): no match: the matches are svc"), "{report}");

    // a versioned file name: 252 looks for extension-release.app_2 and refuses; 257 takes it
    let versioned_name = vec![("app_2.raw", extension("app", APP_RELEASE))];
    refused(&base(), &versioned_name, &["--prefix", "app", "--systemd", "252"], "lacks extension-release data, refusing. (systemd 252 looks for /usr/lib/extension-release.d/extension-release.app_2)");
    let (ok, report) = check(
        &base(),
        &versioned_name,
        &["--prefix", "app", "--systemd", "257"],
    );
    assert!(ok, "{report}");
    assert!(report.contains("systemd 252: refused"), "{report}");

    // a configuration extension: 252 doesn't read /etc/extension-release.d
    let mut conf = Tree::new();
    conf.insert(
        "etc/extension-release.d/extension-release.conf",
        E::File(
            "ID=test\nCONFEXT_SCOPE=portable\nPORTABLE_PREFIXES=conf\n",
            0o644,
        ),
    );
    conf.insert(
        "etc/systemd/system/conf.service",
        E::File("[Service]\nExecStart=/bin/sh\n", 0o644),
    );
    let confs = vec![("conf.raw", conf)];
    refused(
        &base(),
        &confs,
        &["--prefix", "conf", "--systemd", "252"],
        "lacks extension-release data",
    );
    let (ok, report) = check(&base(), &confs, &["--prefix", "conf"]);
    assert!(ok, "{report}");
    assert!(
        report.contains("confext, /etc/extension-release.d/extension-release.conf"),
        "{report}"
    );

    // 249 (measured): extensions attach, matched by ID, level and VERSION_ID only; the scope
    // and the architecture don't count, and `_any` is an ID like any other
    let (ok, report) = check(
        &base(),
        &ext(APP_RELEASE),
        &["--prefix", "app", "--systemd", "249"],
    );
    assert!(ok, "{report}");
    for release in [
        "ID=test\nSYSEXT_SCOPE=system\nPORTABLE_PREFIXES=app\n",
        "ID=test\nARCHITECTURE=no-such-arch\nPORTABLE_PREFIXES=app\n",
    ] {
        let (ok, report) = check(
            &base(),
            &ext(release),
            &["--prefix", "app", "--systemd", "249"],
        );
        assert!(ok, "{report}");
        let (ok, report) = check(
            &base(),
            &ext(release),
            &["--prefix", "app", "--systemd", "252"],
        );
        assert!(!ok, "{report}");
    }
    let any = ext("ID=_any\nPORTABLE_PREFIXES=app\n");
    refused(
        &base(),
        &any,
        &["--prefix", "app", "--systemd", "249"],
        "ID=_any, the base's ID=test (systemd 249 takes `_any` for an ID like any other",
    );
    let (ok, report) = check(&base(), &any, &["--prefix", "app", "--systemd", "252"]);
    assert!(ok, "{report}");
    refused(
        &base(),
        &versioned_name,
        &["--prefix", "app", "--systemd", "249"],
        "(systemd 249 looks for /usr/lib/extension-release.d/extension-release.app_2)",
    );
    refused(
        &base(),
        &confs,
        &["--prefix", "conf", "--systemd", "249"],
        "lacks extension-release data",
    );

    // 254 (measured): a versioned name is taken, a configuration extension is not
    let (ok, report) = check(
        &base(),
        &versioned_name,
        &["--prefix", "app", "--systemd", "254"],
    );
    assert!(ok, "{report}");
    refused(
        &base(),
        &confs,
        &["--prefix", "conf", "--systemd", "254"],
        "lacks extension-release data, refusing. (systemd 254 looks for",
    );
    // a version between or after the measured ones: the rules of the newest not above it
    let (ok, report) = check(&base(), &confs, &["--prefix", "conf", "--systemd", "255"]);
    assert!(!ok, "{report}");
    assert!(
        report.contains("(systemd 255: the rules of 254, the newest measured version"),
        "{report}"
    );
    let (ok, report) = check(&base(), &confs, &["--prefix", "conf", "--systemd", "263"]);
    assert!(ok, "{report}");
    assert!(report.contains("the rules of 262"), "{report}");
    for v in ["252", "254", "257", "262"] {
        assert!(
            report.contains(&format!("  systemd {v}: ")),
            "{v}: {report}"
        );
    }
}

#[test]
fn json_says_the_same() {
    let mut t = base();
    t.remove("dev");
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), "svc_1.raw", &t);
    let out = Command::new(env!("CARGO_BIN_EXE_portable-service"))
        .args(["check", "--json"])
        .arg(&img)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["schema"], 1, "the fields' version, first");
    assert_eq!(v["accepted"], false);
    assert_eq!(v["missing_mount_points"], serde_json::json!(["/dev"]));
    assert_eq!(v["units"][0]["name"], "svc.service");
    assert_eq!(v["dissect"]["portable_service"], true);
    assert_eq!(v["errors"][0]["stage"], "run");
}

/// What `check IMAGE` says on stderr, where it must give no verdict (exit 2).
fn unjudgeable(image: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_portable-service"))
        .arg("check")
        .arg(image)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{}: {said}", image.display());
    said
}

#[test]
fn a_file_that_is_no_image_is_an_error_not_a_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let not_an_image = dir.path().join("svc_1.raw");
    fs::write(&not_an_image, "not squashfs").unwrap();
    let said = unjudgeable(&not_an_image);
    // what the file is, in the words of someone who opened it, not the reader's
    assert_eq!(
        said.lines().next().unwrap(),
        format!(
            "error: {} is not a portable service image: it is neither a squashfs file system \
             nor a disk image (its first bytes are text)",
            not_an_image.display()
        )
    );
    // a squashfs image cut short says so, with the sizes
    let whole = image(dir.path(), "whole.raw", &base());
    let bytes = fs::read(&whole).unwrap();
    // (its superblock whole, the tables it points to gone)
    fs::write(&not_an_image, &bytes[..100]).unwrap();
    let said = unjudgeable(&not_an_image);
    assert!(
        said.contains("is a squashfs file system cut short: it says it is")
            && !said.contains("deku"),
        "{said}"
    );
}

/// A unit or release file larger than check reads (squashfs holds sparse files of 2 TiB in a
/// few bytes) is an error naming it, exit 2: not read, not taken as missing.
#[test]
fn a_file_too_large_to_read_is_an_error_naming_it() {
    let big: &'static str = Box::leak("# padding\n".repeat(500_000).into_boxed_str());
    let os_release: &'static str =
        Box::leak(format!("ID=test\nPORTABLE_PREFIXES=svc\n{big}").into_boxed_str());
    let unit: &'static str =
        Box::leak(format!("[Service]\nExecStart=/bin/sh\n{big}").into_boxed_str());
    let release: &'static str =
        Box::leak(format!("ID=test\nSYSEXT_LEVEL=1\n{big}").into_boxed_str());
    let mut large_os_release = base();
    large_os_release.insert("etc/os-release", E::File(os_release, 0o644));
    let mut large_unit = base();
    large_unit.insert("etc/systemd/system/svc.service", E::File(unit, 0o644));
    let dir = tempfile::tempdir().unwrap();
    for (tree, exts, file) in [
        (&large_os_release, vec![], "/etc/os-release"),
        (&large_unit, vec![], "/etc/systemd/system/svc.service"),
        (
            &base(),
            vec![("app", extension("app", release))],
            "/usr/lib/extension-release.d/extension-release.app",
        ),
    ] {
        let sub = tempfile::tempdir_in(dir.path()).unwrap();
        let raw = image(sub.path(), "svc_1.raw", tree);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_portable-service"));
        cmd.arg("check").arg(&raw);
        for (name, ext) in &exts {
            cmd.arg("--extension")
                .arg(image(sub.path(), &format!("{name}_1.raw"), ext));
        }
        let out = cmd.output().unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{file}: {said}");
        assert!(
            said.contains(&format!("{file} in "))
                && said.contains("bytes: check reads unit and release files of up to"),
            "{file}: {said}"
        );
    }
}

/// A 4 KiB image whose unit file claims 20 GiB (a sparse file, as mksquashfs 4.5 keeps it:
/// `truncate -s 20G etc/systemd/system/svc.service`): an error naming it, nothing read.
#[test]
fn a_sparse_unit_file_of_20_gib_is_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("svc_1.raw");
    fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/unit-of-20-gib.raw"),
        &raw,
    )
    .unwrap();
    let said = unjudgeable(&raw);
    assert!(
        said.contains("/etc/systemd/system/svc.service in ") && said.contains("21474836480 bytes"),
        "{said}"
    );
}

#[test]
fn metadata_that_would_unpack_to_gigabytes_is_refused_before_it_is_unpacked() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let made = image(dir.path(), "made.raw", &base());
    // 8 KiB of zeros packs into a 29-byte zlib block: 40,000 of them, 1.2 MB, unpacked to
    // 312 MiB (backhand took 316 MiB of memory for them)
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(&[0; 8192]).unwrap();
    let zeros = z.finish().unwrap();
    let mut packed = Vec::new();
    for _ in 0..40_000 {
        packed.extend_from_slice(&(zeros.len() as u16).to_le_bytes());
        packed.extend_from_slice(&zeros);
    }
    // and blocks of one stored byte, each an entry of backhand's block map
    let stored: Vec<u8> = (0..7_000).flat_map(|_| [1, 0x80, 0]).collect();
    for (name, blocks) in [("packed", packed), ("stored", stored)] {
        let raw = dir.path().join("svc_1.raw");
        fs::write(
            &raw,
            metadata_blocks::with_inode_blocks(&fs::read(&made).unwrap(), &blocks),
        )
        .unwrap();
        let started = std::time::Instant::now();
        let said = unjudgeable(&raw);
        assert!(
            said.contains("is not a squashfs image check can read")
                && said.contains("unpack to more than 12 MiB"),
            "{name}: {said}"
        );
        assert!(
            started.elapsed().as_secs() < 5,
            "{name}: {:?}",
            started.elapsed()
        );
    }
    // the image as made is read
    let (ok, report) = check_path(&made, &["--prefix", "svc"]);
    assert!(ok, "{report}");
}

/// `check` on an image with dm-verity files beside it.
fn check_path(image: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_portable-service"))
        .arg("check")
        .arg(image)
        .args(args)
        .output()
        .unwrap();
    assert!(matches!(out.status.code(), Some(0 | 1)), "{out:?}");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn the_verity_files_beside_an_image_must_match_it() {
    use camino::Utf8PathBuf;
    use portable_service_rules::verity;
    let dir = tempfile::tempdir().unwrap();
    let raw = image(dir.path(), "svc_1.raw", &base());
    let raw8 = Utf8PathBuf::from_path_buf(raw.clone()).unwrap();
    let tree = verity::format(&raw8, &raw8.with_extension("verity")).unwrap();
    let root_file = dir.path().join("svc_1.roothash");
    fs::write(&root_file, tree.root_hash_hex()).unwrap();

    let (ok, report) = check_path(&raw, &["--systemd", "257"]);
    assert!(ok, "{report}");
    assert!(
        report.contains(&format!(
            "matches the image and the root hash {}",
            tree.root_hash_hex()
        )),
        "{report}"
    );
    assert!(
        report.contains("not signed: systemd 257 uses the hash tree"),
        "{report}"
    );
    // 262 wants it signed
    let (ok, report) = check_path(&raw, &[]);
    assert!(
        !ok && report.contains("has a hash tree but no signature"),
        "{report}"
    );
    assert!(
        report.contains("systemd 262 refuses to start its services"),
        "{report}"
    );
    // 245 reads no hash tree beside the image: it runs unchecked (measured), and check says
    // so (its verdict here is the base's `sh`, which 245 looks for on the host)
    let (_, report) = check_path(&raw, &["--systemd", "245"]);
    assert!(!report.contains("error (verity)"), "{report}");
    assert!(
        report.contains("systemd 245 reads no hash tree beside an image"),
        "{report}"
    );

    // 8 bytes of the image changed: the kernel would fail the read, check refuses (a
    // one-block image has no tree level: the root hash itself no longer matches)
    let mut bytes = fs::read(&raw).unwrap();
    for b in &mut bytes[100..108] {
        *b ^= 0xff;
    }
    fs::write(&raw, &bytes).unwrap();
    let (ok, report) = check_path(&raw, &["--systemd", "257"]);
    assert!(!ok, "{report}");
    assert!(
        report.contains("does not match") && report.contains("was changed"),
        "{report}"
    );

    // a hash tree without its root hash
    fs::remove_file(&root_file).unwrap();
    let (ok, report) = check_path(&raw, &["--systemd", "257"]);
    assert!(!ok, "{report}");
    assert!(
        report.contains(&format!("cannot read {}", root_file.display())),
        "{report}"
    );
}

#[test]
fn a_signature_is_checked_against_the_certificates_given() {
    use camino::Utf8PathBuf;
    use portable_service_rules::verity;
    let dir = tempfile::tempdir().unwrap();
    let raw = image(dir.path(), "svc_1.raw", &base());
    let raw8 = Utf8PathBuf::from_path_buf(raw.clone()).unwrap();
    let tree = verity::format(&raw8, &raw8.with_extension("verity")).unwrap();
    fs::write(dir.path().join("svc_1.roothash"), tree.root_hash_hex()).unwrap();
    let pair =
        |name: &str| common::key_and_cert_in(dir.path(), name, common::RSA, &format!("/CN={name}"));
    let (key, cert) = pair("fleet");
    let (_, stranger) = pair("stranger");
    let cert_arg = cert.to_str().unwrap();
    let stranger_arg = stranger.to_str().unwrap();

    // --cert for a plain image (reported, not refused), and for an image that is not signed
    let plain_dir = dir.path().join("plain");
    fs::create_dir(&plain_dir).unwrap();
    let plain = image(&plain_dir, "svc_1.raw", &base());
    let (ok, report) = check_path(&plain, &["--cert", cert_arg]);
    assert!(
        ok,
        "systemd runs a plain image beside /etc/verity.d: {report}"
    );
    assert!(
        report.contains("no hash tree") && report.contains("not signed"),
        "{report}"
    );
    let (ok, report) = check_path(&raw, &["--cert", cert_arg]);
    assert!(!ok && report.contains("is not signed"), "{report}");

    let signed = common::sign(&key, &cert, &raw);
    assert!(signed.status.success(), "{signed:?}");

    let (ok, report) = check_path(&raw, &["--cert", stranger_arg, "--cert", cert_arg]);
    assert!(ok, "{report}");
    assert!(report.contains("verity: signed by CN=fleet"), "{report}");

    let (ok, report) = check_path(&raw, &["--cert", stranger_arg]);
    assert!(!ok, "{report}");
    assert!(
        report.contains("not a signature of the root hash") && report.contains("issuer CN=fleet"),
        "{report}"
    );

    // without --cert: signed, by whom unknown, and what a host without the certificate does
    let (ok, report) = check_path(&raw, &[]);
    assert!(ok, "{report}");
    assert!(report.contains("by whom is not checked"), "{report}");

    // a certificate that can't be read is the check's own failure, naming the file
    let out = Command::new(env!("CARGO_BIN_EXE_portable-service"))
        .arg("check")
        .arg(&raw)
        .args(["--cert", "/nonexistent/fleet.crt"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent/fleet.crt"));
}

/// `check` on `image` with its address space limited to 64 MiB (`prlimit --as`, so its memory
/// can't pass that either): its exit code and what it said on stderr.
fn check_in_64_mib(image: &Path) -> (Option<i32>, String) {
    let out = Command::new("prlimit")
        .arg(format!("--as={}", 64 << 20))
        .arg(env!("CARGO_BIN_EXE_portable-service"))
        .arg("check")
        .arg(image)
        .output()
        .expect("prlimit runs (util-linux)");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// mksquashfs of `root` into `out` with `args`.
fn squash(root: &Path, out: &Path, args: &[&str]) {
    let ok = Command::new("mksquashfs")
        .arg(root)
        .arg(out)
        .args(["-noappend", "-all-root", "-quiet", "-no-progress"])
        .args(args)
        .status()
        .expect("mksquashfs runs (tests/setup.sh installs it)");
    assert!(ok.success());
}

/// A root with `etc/os-release` and a sparse 1 GiB file `big` with `links` more names.
fn hard_linked(dir: &Path, links: usize) -> PathBuf {
    let root = dir.join(format!("links-{links}"));
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(root.join("etc/os-release"), "ID=test\n").unwrap();
    fs::File::create(root.join("big"))
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    for i in 0..links {
        fs::hard_link(root.join("big"), root.join(format!("link-{i}"))).unwrap();
    }
    root
}

#[test]
fn hard_links_to_a_large_sparse_file_are_refused_before_backhand_copies_its_blocks() {
    let dir = tempfile::tempdir().unwrap();
    // 4 KiB blocks: a block list of 262,144 entries, 1 MiB, that backhand copied for each of
    // 401 names (405 MiB for an image of 8 KiB)
    let raw = dir.path().join("links_1.raw");
    squash(&hard_linked(dir.path(), 400), &raw, &["-b", "4096"]);
    assert!(fs::metadata(&raw).unwrap().len() < 64 << 10);
    let (code, said) = check_in_64_mib(&raw);
    assert_eq!(code, Some(2), "{said}");
    assert!(
        said.contains("links_1.raw is not a squashfs image check can read")
            && said.contains("data blocks of 4096 bytes, each hard link's counted again")
            && said.contains("check reads at most 1048576"),
        "{said}"
    );
    // three names of it are read (and judged: no unit, so refused by the rules, exit 1)
    squash(&hard_linked(dir.path(), 2), &raw, &["-b", "4096"]);
    let (code, said) = check_in_64_mib(&raw);
    assert_eq!(code, Some(1), "{said}");
}

#[test]
fn long_paths_named_by_thousands_of_links_are_refused_within_64_mib() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(root.join("etc/os-release"), "ID=test\n").unwrap();
    // 15 levels of 249-byte names, then 20,000 names of 200 bytes for one file: 80 MB of paths
    let mut deep = root.clone();
    for level in 0..15 {
        deep.push(format!("{level:02}").repeat(83) + "d");
    }
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("f"), "x").unwrap();
    for i in 0..20_000 {
        fs::hard_link(
            deep.join("f"),
            deep.join(format!("{i:06}{}", "l".repeat(194))),
        )
        .unwrap();
    }
    let raw = dir.path().join("paths_1.raw");
    squash(&root, &raw, &[]);
    let (code, said) = check_in_64_mib(&raw);
    assert_eq!(code, Some(2), "{said}");
    assert!(
        said.contains("paths add up to more than 12582912 bytes: check reads at most 12582912"),
        "{said}"
    );
}

#[test]
fn a_directory_deeper_than_1024_levels_is_refused_and_one_of_1000_is_read() {
    let dir = tempfile::tempdir().unwrap();
    for (levels, refused) in [(1025, true), (1000, false)] {
        let root = dir.path().join(format!("root-{levels}"));
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::write(root.join("etc/os-release"), "ID=test\n").unwrap();
        // 2 bytes a level: within PATH_MAX, as a tree on disk must be
        fs::create_dir_all(root.join(vec!["a"; levels].join("/"))).unwrap();
        let raw = dir.path().join(format!("deep-{levels}_1.raw"));
        squash(&root, &raw, &[]);
        let (code, said) = check_in_64_mib(&raw);
        if refused {
            assert_eq!(code, Some(2), "{said}");
            assert!(
                said.contains("directories more than 1024 levels deep: check reads at most 1024"),
                "{said}"
            );
        } else {
            assert_eq!(code, Some(1), "judged (no unit): {said}");
        }
    }
}
