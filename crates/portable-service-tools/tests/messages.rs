//! What a user sees when a command can't do its job: for each wrong input, the exit status
//! (docs/cli.md's table) and the first line on stderr, which names the file and says what is
//! wrong with it. And `sign` refuses an image inside the Nix store (`result/NAME.raw`), naming
//! the copy to sign, which then signs.

mod common;

use camino::{Utf8Path, Utf8PathBuf};
use portable_service_rules::{ddi, verity};
use std::fs;
use std::process::{Command, Output};

/// A working directory of inputs, run in as a user runs the commands (relative paths).
struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Dir {
        Dir(tempfile::tempdir().unwrap())
    }

    fn path(&self, name: &str) -> Utf8PathBuf {
        Utf8Path::from_path(self.0.path()).unwrap().join(name)
    }

    /// `portable-service ARGS` here, with NIX_STORE_DIR `store` here.
    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_portable-service"))
            .args(args)
            .current_dir(self.0.path())
            .env("NIX_STORE_DIR", self.path("store"))
            .output()
            .unwrap()
    }

    /// A squashfs image `name` of a service systemd would attach (check accepts it).
    fn image(&self, name: &str) -> Utf8PathBuf {
        let root = self.path(&format!("{name}.root"));
        for dir in [
            "dev",
            "proc",
            "sys",
            "run",
            "tmp",
            "var/tmp",
            "etc/systemd/system",
        ] {
            fs::create_dir_all(root.join(dir)).unwrap();
        }
        for (file, text) in [
            ("etc/machine-id", ""),
            ("etc/resolv.conf", ""),
            ("etc/os-release", "ID=test\nPORTABLE_PREFIXES=svc\n"),
            (
                "etc/systemd/system/svc.service",
                "[Service]\nExecStart=-/bin/true\n",
            ),
        ] {
            fs::write(root.join(file), text).unwrap();
        }
        let out = self.path(name);
        if let Some(parent) = out.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        mksquashfs(&root, &out, &[]);
        out
    }

    /// The image `name` with its hash tree and root hash beside it (`verity = true`).
    fn verity_image(&self, name: &str) -> Utf8PathBuf {
        let raw = self.image(name);
        let [tree, root, _] = verity::sidecars(&raw);
        let made = verity::format(&raw, &tree).unwrap();
        fs::write(root, made.root_hash_hex()).unwrap();
        raw
    }
}

fn mksquashfs(root: &Utf8Path, out: &Utf8Path, more: &[&str]) {
    let ok = Command::new("mksquashfs")
        .args([root.as_str(), out.as_str()])
        .args(["-noappend", "-all-root", "-quiet", "-no-progress"])
        .args(more)
        .status()
        .expect("mksquashfs runs (tests/setup.sh installs it)");
    assert!(ok.success());
}

fn first_line(out: &Output) -> String {
    let said = String::from_utf8_lossy(&out.stderr);
    said.lines().next().unwrap_or_default().to_owned()
}

#[test]
fn each_wrong_input_has_its_exit_status_and_says_what_is_wrong() {
    let d = Dir::new();
    fs::write(d.path("notes.txt"), "remember the milk\n").unwrap();
    fs::write(d.path("empty.raw"), "").unwrap();
    fs::create_dir(d.path("none")).unwrap();
    d.image("two/a_1.raw");
    d.image("two/b_1.raw");
    d.image("result/svc_1.raw");
    d.image("svc_1.raw");
    d.verity_image("signed_1.raw");
    common::key_and_cert(&d.path(""), "k", common::RSA, "/CN=k");
    common::key_and_cert(&d.path(""), "other", common::RSA, "/CN=other");
    fs::write(d.path("agent"), "").unwrap();

    let not_an_image = "is not a portable service image: it is neither a squashfs file system \
                        nor a disk image";
    let cases: &[(&[&str], i32, String)] = &[
        // check: 0 accepted (a `nix build` output taken as its image), 2 unreadable, 64 usage
        (&["check", "result"], 0, String::new()),
        (
            &["check", "notes.txt"],
            2,
            format!("error: notes.txt {not_an_image} (its first bytes are text)"),
        ),
        (
            &["check", "empty.raw"],
            2,
            format!("error: empty.raw {not_an_image} (it is empty)"),
        ),
        (
            &["check", "gone.raw"],
            2,
            "error: cannot read gone.raw: no such file or directory".into(),
        ),
        // the verdict's report can't be written: the job isn't done, and nothing is printed
        (
            &["check", "svc_1.raw", "--report", "gone/report.txt"],
            1,
            "error: cannot write gone/report.txt: No such file or directory".into(),
        ),
        (
            &["check", "none"],
            2,
            "error: none is a directory without an image: no *.raw file in it (an image's \
             `nix build` output holds one)"
                .into(),
        ),
        (
            &["check", "two"],
            2,
            "error: two is a directory of 2 images (a_1.raw, b_1.raw): name the one meant, as \
             two/a_1.raw"
                .into(),
        ),
        (
            &["check", "--extension", "notes.txt", "svc_1.raw"],
            2,
            format!("error: notes.txt {not_an_image} (its first bytes are text)"),
        ),
        (
            &["check", "--systemd", "200", "svc_1.raw"],
            64,
            "error: invalid value '200' for '--systemd <SYSTEMD>': systemd 200 is older than \
             portable services: they came with systemd 239, the oldest version check has rules \
             for"
            .into(),
        ),
        (
            &["check"],
            64,
            "error: the following required arguments were not provided:".into(),
        ),
        // sign: 0 signed, 1 refused, 2 unreadable, 64 usage
        (
            &["sign", "--key", "k.key", "--cert", "k.crt", "svc_1.raw"],
            2,
            "error: svc_1.raw has no root hash beside it: svc_1.roothash is missing (an image \
             built with `verity = true` has one)"
                .into(),
        ),
        (
            &["sign", "--key", "k.key", "--cert", "k.crt", "two"],
            2,
            "error: two is a directory of 2 images (a_1.raw, b_1.raw): name the one meant, as \
             two/a_1.raw"
                .into(),
        ),
        (
            &[
                "sign",
                "--key",
                "k.key",
                "--cert",
                "notes.txt",
                "signed_1.raw",
            ],
            2,
            "error: notes.txt is not an X.509 certificate: it is text, and a certificate in text \
             (PEM) starts with -----BEGIN CERTIFICATE-----"
                .into(),
        ),
        (
            &[
                "sign",
                "--key",
                "k.key",
                "--cert",
                "other.crt",
                "signed_1.raw",
            ],
            1,
            "error: the key k.key does not match the certificate other.crt (CN=other): its \
             public key is another"
                .into(),
        ),
        (
            &["sign", "--key", "k.key", "signed_1.raw"],
            64,
            "error: the following required arguments were not provided:".into(),
        ),
        // publish: 2 unreadable, 64 usage
        (
            &[
                "publish",
                "--feed",
                "feed",
                "--key",
                "gone.asc",
                "svc_1.raw",
            ],
            2,
            "error: gone.asc: no such key file".into(),
        ),
        (
            &[
                "publish",
                "--feed",
                "feed",
                "--key",
                "k.asc",
                "--valid-for",
                "0",
                "svc_1.raw",
            ],
            64,
            "error: invalid value '0' for '--valid-for <DAYS>': 0 days: a list is marked fresh \
             for 1 to 3650 days"
                .into(),
        ),
        // transfers: 1 refused, 64 usage
        (
            &[
                "transfers",
                "--out",
                "o",
                "--name",
                "svc",
                "--url",
                "ftp://x",
                "--agent",
                "agent",
            ],
            64,
            "error: url \"ftp://x\": systemd-sysupdate fetches feeds over http:// or https:// \
             only"
                .into(),
        ),
        (
            &[
                "transfers",
                "--out",
                "o",
                "--name",
                "svc",
                "--url",
                "https://x",
                "--agent",
                "gone-agent",
            ],
            2,
            "error: gone-agent: no such agent program".into(),
        ),
        (
            &[
                "transfers",
                "--out",
                "o",
                "--name",
                "svc",
                "--url",
                "https://x",
            ],
            64,
            "error: the following required arguments were not provided:".into(),
        ),
    ];
    for (args, status, first) in cases {
        let out = d.run(args);
        assert_eq!(
            (out.status.code(), first_line(&out)),
            (Some(*status), first.clone()),
            "portable-service {}",
            args.join(" ")
        );
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(
            !said.contains("deku") && !said.contains("os error"),
            "{said}"
        );
    }
    // no failed transfers left half a tree behind
    assert!(
        !d.path("o").exists(),
        "transfers wrote into --out and failed"
    );
}

/// `nix build` leaves `result`, a link into the store; the image there is signed in place (a
/// disk image) or beside (a naked one), which the store must never see.
#[test]
fn sign_refuses_an_image_in_the_nix_store_and_names_the_copy_that_signs() {
    let d = Dir::new();
    common::key_and_cert(&d.path(""), "k", common::RSA, "/CN=k");
    let output = d.path("store/0c7wkdmgpqnch9f84clfdjqxn7hznv2z-demo");
    d.verity_image("store/0c7wkdmgpqnch9f84clfdjqxn7hznv2z-demo/demo_1.raw");
    std::os::unix::fs::symlink(&output, d.path("result")).unwrap();
    let store_bytes = || {
        let mut names: Vec<_> = fs::read_dir(&output)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        names
    };
    let before = store_bytes();
    let copy = "cp --no-preserve=mode result/demo_1.raw result/demo_1.verity \
                result/demo_1.roothash . && portable-service sign --key k.key --cert k.crt \
                demo_1.raw";
    for image in ["result/demo_1.raw", "result"] {
        let out = d.run(&["sign", "--key", "k.key", "--cert", "k.crt", image]);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        assert_eq!(
            first_line(&out),
            format!(
                "error: result/demo_1.raw is in the Nix store ({output}/demo_1.raw), which must \
                 not change: sign writes demo_1.roothash.p7s beside it; work on a copy instead: \
                 {copy}"
            )
        );
        assert_eq!(store_bytes(), before, "nothing written in the store");
    }
}

/// The copy a store refusal names, run as a user pastes it (by `sh`), signs. (The tools
/// package's check phase skips it by name: the sandbox's sh is busybox's, whose own cp lacks
/// GNU's `--no-preserve`; the test command runs it.)
#[test]
fn the_copy_a_store_refusal_names_signs() {
    let d = Dir::new();
    common::key_and_cert(&d.path(""), "k", common::RSA, "/CN=k");
    let output = d.path("store/0c7wkdmgpqnch9f84clfdjqxn7hznv2z-demo");
    d.verity_image("store/0c7wkdmgpqnch9f84clfdjqxn7hznv2z-demo/demo_1.raw");
    std::os::unix::fs::symlink(&output, d.path("result")).unwrap();
    let out = d.run(&["sign", "--key", "k.key", "--cert", "k.crt", "result"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let line = first_line(&out);
    let (_, copy) = line
        .split_once("work on a copy instead: ")
        .unwrap_or_else(|| panic!("no copy named: {line}"));
    // with this build's program for `portable-service`
    let program = Utf8Path::new(env!("CARGO_BIN_EXE_portable-service"));
    let ok = Command::new("sh")
        .args(["-c", copy])
        .current_dir(d.path(""))
        // the caller's PATH for `cp` (a build sandbox has no /usr/bin)
        .env(
            "PATH",
            format!(
                "{}:{}",
                program.parent().unwrap(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .env("NIX_STORE_DIR", d.path("store"))
        .status()
        .unwrap();
    assert!(ok.success());
    assert!(d.path("demo_1.roothash.p7s").is_file());
}

#[test]
fn sign_refuses_a_disk_image_in_the_store_and_leaves_it_as_it_was() {
    let d = Dir::new();
    common::key_and_cert(&d.path(""), "k", common::RSA, "/CN=k");
    let output = d.path("store/0c7wkdmgpqnch9f84clfdjqxn7hznv2z-demo");
    fs::create_dir_all(&output).unwrap();
    let root = d.path("root");
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(root.join("etc/os-release"), "ID=test\n").unwrap();
    let disk = output.join("demo_1.raw");
    mksquashfs(
        &root,
        &disk,
        &["-offset", &ddi::FIRST_PARTITION.to_string()],
    );
    ddi::finish(&disk, ddi::architecture_of_system("x86_64-linux").unwrap()).unwrap();
    let before = fs::read(&disk).unwrap();
    // the store reached through a link: both paths are compared resolved
    std::os::unix::fs::symlink(d.path("store"), d.path("linked-store")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_portable-service"))
        .args(["sign", "--key", "k.key", "--cert", "k.crt", disk.as_str()])
        .current_dir(d.path(""))
        .env("NIX_STORE_DIR", d.path("linked-store"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        first_line(&out),
        format!(
            "error: {disk} is in the Nix store, which must not change: sign writes the \
             signature partition into it; work on a copy instead: cp --no-preserve=mode {disk} \
             . && portable-service sign --key k.key --cert k.crt demo_1.raw"
        )
    );
    assert_eq!(fs::read(&disk).unwrap(), before, "the disk image unchanged");
}

/// A hard link to a store image has no path in the store, yet signing it in place would change
/// the store's file: a disk image with a second name is refused too, and left as it was.
#[test]
fn sign_refuses_a_disk_image_with_another_name_and_leaves_it_as_it_was() {
    let d = Dir::new();
    common::key_and_cert(&d.path(""), "k", common::RSA, "/CN=k");
    let root = d.path("root");
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(root.join("etc/os-release"), "ID=test\n").unwrap();
    let disk = d.path("demo_1.raw");
    mksquashfs(
        &root,
        &disk,
        &["-offset", &ddi::FIRST_PARTITION.to_string()],
    );
    ddi::finish(&disk, ddi::architecture_of_system("x86_64-linux").unwrap()).unwrap();
    fs::hard_link(&disk, d.path("linked.raw")).unwrap();
    let before = fs::read(&disk).unwrap();
    let out = d.run(&["sign", "--key", "k.key", "--cert", "k.crt", "linked.raw"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        first_line(&out).starts_with(
            "error: linked.raw has 2 names (hard links), and one may be in the Nix store"
        ),
        "{out:?}"
    );
    assert_eq!(fs::read(&disk).unwrap(), before, "the disk image unchanged");
}

/// What a `nix build` output directory may hold besides its image: a directory or a dangling
/// link named `*.raw` is no image; a socket (as a pipe would) given as the image is refused,
/// not read forever; a
/// squashfs whose superblock names no compressor squashfs has is said so, in plain words.
#[test]
fn only_files_are_images() {
    let d = Dir::new();
    d.image("out/svc_1.raw");
    fs::create_dir(d.path("out/dir.raw")).unwrap();
    std::os::unix::fs::symlink("gone", d.path("out/dangling.raw")).unwrap();
    let out = d.run(&["check", "out"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let _socket = std::os::unix::net::UnixListener::bind(d.path("socket.raw")).unwrap();
    let out = d.run(&["check", "socket.raw"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(
        first_line(&out),
        "error: socket.raw is neither a file nor a directory"
    );
    let image = d.image("bad_1.raw");
    let mut bytes = fs::read(&image).unwrap();
    bytes[20..22].copy_from_slice(&9u16.to_le_bytes());
    fs::write(&image, bytes).unwrap();
    let out = d.run(&["check", "bad_1.raw"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(
        first_line(&out),
        "error: bad_1.raw is a damaged squashfs file system: its superblock names compressor \
         9, which squashfs doesn't have"
    );
}

/// `--json` says a failure as an object too, naming the file and the exit status.
#[test]
fn json_says_a_failure_as_an_error_object() {
    let d = Dir::new();
    fs::write(d.path("notes.txt"), "remember the milk\n").unwrap();
    for (args, file, status) in [
        (&["check", "--json", "notes.txt"][..], "notes.txt", 2),
        (
            &[
                "publish", "--json", "--feed", "f", "--key", "k.asc", "gone.raw",
            ][..],
            "k.asc",
            2,
        ),
    ] {
        let out = d.run(args);
        assert_eq!(out.status.code(), Some(status));
        let said: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(said["schema"], 1, "{said}");
        assert_eq!(said["error"]["file"], file, "{said}");
        assert_eq!(said["error"]["exit"], status, "{said}");
        let message = said["error"]["message"].as_str().unwrap();
        assert!(first_line(&out).ends_with(message), "{said}");
    }
}
