//! `portable-service publish` and `transfers`: a feed as systemd-sysupdate reads it (checked
//! here with `sha256sum -c` and `gpg --verify` against the exported public key, as a host
//! does), versions kept and dropped, and every refusal naming its value and leaving the feed as
//! it was. (The VM tests in tests/tests/acceptance/sysupdate.rs update real hosts from such
//! feeds.)

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn tool() -> Command {
    Command::new(env!("CARGO_BIN_EXE_portable-service"))
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A throwaway ed25519 key made by gpg in a temporary home, exported armored.
struct Key {
    dir: tempfile::TempDir,
}

impl Key {
    fn new(name: &str) -> Key {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir(&home).unwrap();
        std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        let gpg = |args: &[&str]| {
            let out = Command::new("gpg")
                .arg("--homedir")
                .arg(&home)
                .args(["--batch", "--quiet", "--passphrase", ""])
                .args(args)
                .output()
                .expect("gpg runs (tests/setup.sh installs it)");
            assert!(out.status.success(), "gpg {args:?}: {}", text(&out));
            out.stdout
        };
        gpg(&[
            "--quick-gen-key",
            &format!("{name} <{name}@example.org>"),
            "ed25519",
            "sign",
            "never",
        ]);
        let secret = gpg(&["--armor", "--export-secret-keys"]);
        let _ = Command::new("gpgconf")
            .arg("--homedir")
            .arg(&home)
            .args(["--kill", "all"])
            .output();
        std::fs::remove_dir_all(&home).unwrap();
        std::fs::write(dir.path().join("key.asc"), secret).unwrap();
        Key { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("key.asc")
    }
}

/// An image file `name` of 8 KiB made from `seed`, with the given dm-verity files beside it,
/// made as `verity = true` and `portable-service sign` make them (the signer a throwaway P-256
/// key whose certificate is `dir/signer.crt`).
fn image(dir: &Path, name: &str, seed: u8, sidecars: &[&str]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let raw = dir.join(name);
    // a squashfs's magic, then bytes of its own: publish reads no further
    let mut bytes = b"hsqs".to_vec();
    bytes.resize(8192, seed);
    std::fs::write(&raw, bytes).unwrap();
    let stem = name.strip_suffix(".raw").unwrap();
    if sidecars.contains(&".verity") {
        let utf8 = |p: PathBuf| camino::Utf8PathBuf::from_path_buf(p).unwrap();
        let tree = portable_service_rules::verity::format(
            &utf8(raw.clone()),
            &utf8(dir.join(format!("{stem}.verity"))),
        )
        .unwrap();
        std::fs::write(
            dir.join(format!("{stem}.roothash")),
            tree.root_hash_hex() + "\n",
        )
        .unwrap();
    }
    if sidecars.contains(&".roothash.p7s") {
        let (key, cert) = (dir.join("signer.key"), dir.join("signer.crt"));
        if !cert.exists() {
            common::key_and_cert_in(dir, "signer", common::P256, "/CN=feed-test");
        }
        let out = common::sign(&key, &cert, &raw);
        assert!(out.status.success(), "sign: {}", text(&out));
    }
    raw
}

fn publish(feed: &Path, key: &Key, args: &[&str], images: &[&Path]) -> std::process::Output {
    tool()
        .arg("publish")
        .arg("--feed")
        .arg(feed)
        .arg("--key")
        .arg(key.path())
        .args(args)
        .args(images)
        .output()
        .unwrap()
}

/// Every file of a directory and its bytes (a symbolic link: where it leads; a directory: that
/// it is one).
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| {
                let e = e.unwrap();
                let bytes = match std::fs::read_link(e.path()) {
                    Ok(to) => format!("-> {}", to.display()).into_bytes(),
                    Err(_) if e.path().is_dir() => b"(a directory)".to_vec(),
                    Err(_) => std::fs::read(e.path()).unwrap(),
                };
                (e.file_name().into_string().unwrap(), bytes)
            })
            .collect()
        })
        .unwrap_or_default()
}

fn listed(feed: &Path) -> Vec<String> {
    std::fs::read_to_string(feed.join("SHA256SUMS"))
        .unwrap()
        .lines()
        .map(|l| l.split_once("  ").unwrap().1.to_owned())
        .collect()
}

/// The SHA-256 of no bytes, which a `BEST-BEFORE-` line carries.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// The list's `BEST-BEFORE-` lines.
fn best_before_lines(feed: &Path) -> Vec<String> {
    std::fs::read_to_string(feed.join("SHA256SUMS"))
        .unwrap()
        .lines()
        .filter(|l| l.contains("  BEST-BEFORE-"))
        .map(str::to_owned)
        .collect()
}

/// What a host checks: the signature against the public key alone, each file against the list
/// (a `BEST-BEFORE-` line names no file: sha256sum is given the others, as the README says).
fn assert_a_host_accepts(feed: &Path, public: &Path) {
    let home = tempfile::tempdir().unwrap();
    let out = Command::new("gpg")
        .arg("--homedir")
        .arg(home.path())
        .args(["--batch", "--no-default-keyring", "--keyring"])
        .arg(public)
        .args(["--verify", "SHA256SUMS.gpg", "SHA256SUMS"])
        .current_dir(feed)
        .output()
        .unwrap();
    let _ = Command::new("gpgconf")
        .arg("--homedir")
        .arg(home.path())
        .args(["--kill", "all"])
        .output();
    assert!(out.status.success(), "gpg --verify: {}", text(&out));
    let list = std::fs::read_to_string(feed.join("SHA256SUMS")).unwrap();
    let files: String = list
        .lines()
        .filter(|l| !l.contains("  BEST-BEFORE-"))
        .map(|l| format!("{l}\n"))
        .collect();
    for line in best_before_lines(feed) {
        assert!(line.starts_with(&format!("{EMPTY_SHA256}  ")), "{line}");
    }
    let mut check = Command::new("sha256sum")
        .args(["-c", "--strict", "-"])
        .current_dir(feed)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut check.stdin.take().unwrap(), files.as_bytes()).unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(out.status.success(), "sha256sum -c: {}", text(&out));
}

#[test]
fn publish_adds_versions_signs_the_list_and_keeps_the_newest() {
    let key = Key::new("feed");
    let work = tempfile::tempdir().unwrap();
    let feed = work.path().join("feed");
    let public = work.path().join("import-pubring.pgp");
    let verity = [".verity", ".roothash", ".roothash.p7s"];
    let v1 = image(&work.path().join("1"), "demo_1.9.raw", 1, &verity);
    let v2 = image(&work.path().join("2"), "demo_1.10.raw", 2, &verity);
    let v3 = image(&work.path().join("3"), "demo_2.raw", 3, &verity);

    let out = publish(
        &feed,
        &key,
        &["--keep", "2", "--public-key", public.to_str().unwrap()],
        &[&v1],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        listed(&feed),
        [
            "demo_1.9.raw",
            "demo_1.9.roothash.p7s",
            "demo_1.9.roothash.txt",
            "demo_1.9.verity"
        ]
    );
    // the root hash travels as .roothash.txt, byte for byte
    assert_eq!(
        std::fs::read(feed.join("demo_1.9.roothash.txt")).unwrap(),
        std::fs::read(work.path().join("1/demo_1.9.roothash")).unwrap()
    );
    assert_a_host_accepts(&feed, &public);

    // 1.10 is newer than 1.9 (as systemd orders versions), and 2 than both: 1.9 goes
    let out = publish(&feed, &key, &["--keep", "2"], &[&v3, &v2]);
    assert!(out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("removed"), "{said}");
    let names = listed(&feed);
    assert!(
        names.iter().all(|n| !n.starts_with("demo_1.9.")),
        "{names:?}"
    );
    assert_eq!(names.len(), 8, "{names:?}");
    let on_disk: Vec<String> = snapshot(&feed).into_keys().collect();
    assert_eq!(on_disk.len(), 10, "{on_disk:?}"); // and SHA256SUMS(.gpg)
    assert_a_host_accepts(&feed, &public);
}

#[test]
fn publishing_the_same_bytes_again_changes_nothing() {
    let key = Key::new("feed");
    let work = tempfile::tempdir().unwrap();
    let feed = work.path().join("feed");
    let v1 = image(work.path(), "demo_1.raw", 1, &[]);
    assert!(publish(&feed, &key, &[], &[&v1]).status.success());
    let before = snapshot(&feed);
    let out = publish(&feed, &key, &[], &[&v1]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("unchanged"), "{}", text(&out));
    assert_eq!(snapshot(&feed), before, "the feed was rewritten");
    // and as JSON, for a script: nothing added, the one file unchanged, no new signature
    let out = publish(&feed, &key, &["--json"], &[&v1]);
    assert!(out.status.success(), "{}", text(&out));
    let said: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(said["schema"], 1, "{said}");
    assert_eq!(said["feed"], feed.to_str().unwrap(), "{said}");
    assert_eq!(said["added"], serde_json::json!([]), "{said}");
    assert_eq!(
        said["unchanged"],
        serde_json::json!(["demo_1.raw"]),
        "{said}"
    );
    assert_eq!(said["signer"], "", "{said}");
    assert_eq!(snapshot(&feed), before, "the feed was rewritten");
}

#[test]
fn an_extension_in_its_nix_output_is_published_with_its_version() {
    let key = Key::new("feed");
    let work = tempfile::tempdir().unwrap();
    let output = work
        .path()
        .join("0123456789abcdfghijklmnpqrsvwxyz-app-sysext-2.0");
    let app = image(&output, "app.raw", 7, &[]);
    let feed = work.path().join("feed");
    // through a link, as `nix build` leaves `result`
    let result = work.path().join("result");
    std::os::unix::fs::symlink(&output, &result).unwrap();
    let out = publish(&feed, &key, &[], &[&result]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(listed(&feed), ["app_2.0.raw"]);
    assert_eq!(
        std::fs::read(feed.join("app_2.0.raw")).unwrap(),
        std::fs::read(app).unwrap()
    );
}

/// Each bad input: publish fails naming `names`, and the feed is byte for byte as it was.
#[test]
fn bad_inputs_are_refused_naming_the_value_and_leave_the_feed_as_it_was() {
    let key = Key::new("feed");
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let feed = w.join("feed");
    let v1 = image(&w.join("a"), "demo_1.raw", 1, &[]);
    let v2 = image(&w.join("a"), "demo_2.raw", 2, &[]);
    assert!(publish(&feed, &key, &["--keep", "2"], &[&v1, &v2])
        .status
        .success());

    let other_v1 = image(&w.join("b"), "demo_1.raw", 9, &[]);
    let v4 = image(&w.join("b"), "demo_4.raw", 4, &[]);
    let other_v4 = image(&w.join("c"), "demo_4.raw", 8, &[]);
    let v3 = image(&w.join("a"), "demo_3.raw", 3, &[]);
    let unversioned = image(&w.join("a"), "demo.raw", 4, &[]);
    let bad_version = image(&w.join("a"), "demo_1~rc1.raw", 5, &[]);
    let v0 = image(&w.join("a"), "demo_0.raw", 6, &[]);
    let not_a_key = w.join("not-a-key.asc");
    std::fs::write(&not_a_key, "hello\n").unwrap();
    let junk = w.join("a/junk_1.raw");
    std::fs::write(&junk, "not an image\n").unwrap();

    // (case, images, extra arguments, what the error must name)
    type Case<'a> = (&'a str, Vec<&'a Path>, Vec<&'a str>, Vec<String>);
    let cases: Vec<Case> = vec![
        (
            "bytes that are no image (hosts would fetch what they can't attach)",
            vec![&junk],
            vec![],
            vec!["junk_1.raw is not a portable service image".into()],
        ),
        (
            "a version published with other bytes",
            vec![&other_v1],
            vec![],
            vec!["demo_1.raw was published with other bytes".into()],
        ),
        (
            "two images of one version with different bytes",
            vec![&v3, &v4, &other_v4],
            vec![],
            vec!["are both demo_4.raw".into()],
        ),
        (
            "a name without a version",
            vec![&unversioned],
            vec![],
            vec!["\"demo.raw\" carries no version".into()],
        ),
        (
            "a version sysupdate refuses",
            vec![&bad_version],
            vec![],
            vec!["\"demo_1~rc1.raw\" carries no version".into()],
        ),
        (
            "a version older than those kept",
            vec![&v0],
            vec!["--keep", "2"],
            vec!["version 0 of demo is older than the 2 newest".into()],
        ),
        (
            "a key that is none",
            vec![&v3],
            vec!["--key", not_a_key.to_str().unwrap()],
            vec![not_a_key.display().to_string()],
        ),
    ];
    for (case, images, args, needles) in cases {
        let before = snapshot(&feed);
        let mut cmd = tool();
        cmd.arg("publish").arg("--feed").arg(&feed);
        if !args.contains(&"--key") {
            cmd.arg("--key").arg(key.path());
        }
        let out = cmd.args(&args).args(&images).output().unwrap();
        let said = text(&out);
        assert!(!out.status.success(), "{case}: accepted\n{said}");
        for n in needles {
            assert!(said.contains(&n), "{case}: expected {n:?} in\n{said}");
        }
        assert_eq!(snapshot(&feed), before, "{case}: the feed changed");
    }

    // feeds that aren't what their list says
    let stray = w.join("stray");
    std::fs::create_dir(&stray).unwrap();
    std::fs::write(stray.join("notes.txt"), "x").unwrap();
    let unlisted = w.join("unlisted");
    let changed = w.join("changed");
    for dir in [&unlisted, &changed] {
        assert!(publish(dir, &key, &[], &[&v1]).status.success());
    }
    std::fs::write(unlisted.join("demo_9.raw"), "x").unwrap();
    std::fs::write(changed.join("demo_1.raw"), "x").unwrap();
    for (dir, needle) in [
        (
            &stray,
            "is not a feed: it has files (notes.txt) but no SHA256SUMS",
        ),
        (&unlisted, "demo_9.raw is not listed in SHA256SUMS"),
        (&changed, "demo_1.raw does not match its hash in SHA256SUMS"),
    ] {
        let before = snapshot(dir);
        let out = publish(dir, &key, &[], &[&v3]);
        let said = text(&out);
        assert!(!out.status.success(), "{needle}: accepted");
        assert!(said.contains(needle), "expected {needle:?} in\n{said}");
        assert!(said.contains(dir.to_str().unwrap()), "{said}");
        assert_eq!(snapshot(dir), before, "{needle}: the feed changed");
    }
}

/// What a feed's web root may suffer, and what publish then does: a file slipped in with its
/// line added to the list is refused (the list is no longer as the key signed it), so is a
/// feed another key signed, unless --new-key says the feed changes keys; sidecars that don't
/// belong to their image are refused before anything is written.
#[test]
fn publish_trusts_only_a_list_its_key_signed_and_sidecars_that_match() {
    let key = Key::new("feed");
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let v1 = image(&w.join("a"), "demo_1.raw", 1, &[]);
    let v2 = image(&w.join("a"), "demo_2.raw", 2, &[]);

    // a file slipped into the web root, its line added to SHA256SUMS: refused, nothing written
    let feed = w.join("slipped");
    assert!(publish(&feed, &key, &[], &[&v1]).status.success());
    std::fs::write(feed.join("demo_9.raw"), "evil").unwrap();
    let line = format!(
        "{}  demo_9.raw\n",
        "a4ff9e1f2d0a0b3ac1a2b9ae4bd3a1d0c1d71ac5b7e3b4ab8e6d4e3ac7f0e0b1"
    );
    let mut sums = std::fs::read_to_string(feed.join("SHA256SUMS")).unwrap();
    sums.push_str(&line);
    std::fs::write(feed.join("SHA256SUMS"), sums).unwrap();
    let before = snapshot(&feed);
    let out = publish(&feed, &key, &[], &[&v2]);
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("SHA256SUMS is not as")
            && said.contains("it was changed after it was published"),
        "{said}"
    );
    assert_eq!(snapshot(&feed), before);

    // a feed another key signed: refused, then taken over with --new-key
    let feed = w.join("other-key");
    let other = Key::new("other");
    assert!(publish(&feed, &other, &[], &[&v1]).status.success());
    let out = publish(&feed, &key, &[], &[&v2]);
    assert!(
        !out.status.success() && text(&out).contains("--new-key"),
        "{}",
        text(&out)
    );
    let out = publish(&feed, &key, &["--new-key"], &[&v2]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(listed(&feed), ["demo_1.raw", "demo_2.raw"]);

    // sidecars: another image's hash tree and root hash, a signature of another root hash, a
    // signature by a certificate the hosts don't trust
    let verity = [".verity", ".roothash", ".roothash.p7s"];
    let good = image(&w.join("s"), "demo_5.raw", 5, &verity);
    let swapped = image(&w.join("t"), "demo_5.raw", 6, &verity);
    for ext in [".verity", ".roothash"] {
        std::fs::copy(
            w.join(format!("s/demo_5{ext}")),
            w.join(format!("t/demo_5{ext}")),
        )
        .unwrap();
    }
    let resigned = image(&w.join("u"), "demo_5.raw", 5, &verity);
    image(&w.join("v"), "demo_5.raw", 7, &verity);
    std::fs::copy(
        w.join("v/demo_5.roothash.p7s"),
        w.join("u/demo_5.roothash.p7s"),
    )
    .unwrap();
    let feed = w.join("sidecars");
    for (case, img, args, needle) in [
        ("a tree of another image", &swapped, vec![], "don't match"),
        (
            "a signature of another root hash",
            &resigned,
            vec![
                "--cert".to_owned(),
                w.join("v/signer.crt").to_str().unwrap().to_owned(),
            ],
            "not a signature of the root hash",
        ),
        (
            "a signer the hosts don't trust",
            &good,
            vec![
                "--cert".to_owned(),
                w.join("u/signer.crt").to_str().unwrap().to_owned(),
            ],
            "not a signature of the root hash",
        ),
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = publish(&feed, &key, &args, &[img]);
        let said = text(&out);
        assert!(!out.status.success(), "{case}: accepted\n{said}");
        assert!(
            said.contains(needle),
            "{case}: expected {needle:?} in\n{said}"
        );
        assert!(!feed.join("SHA256SUMS").exists(), "{case}: written");
    }
    let trusted = w.join("s/signer.crt");
    let out = publish(
        &feed,
        &key,
        &["--cert", trusted.to_str().unwrap()],
        &[&good],
    );
    assert!(out.status.success(), "{}", text(&out));
}

/// A publish cut short (aborted, as a kill or a power cut ends it) at each of its points leaves
/// a feed the next publish goes on from without cleaning by hand: as it was, or as the cut one
/// meant it; then the feed is whole (a host accepts it) and holds what was published.
#[test]
fn a_publish_cut_short_anywhere_is_finished_or_undone_by_the_next() {
    let key = Key::new("feed");
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let public = w.join("import-pubring.pgp");
    let v1 = image(&w.join("a"), "demo_1.raw", 1, &[]);
    let v2 = image(&w.join("a"), "demo_2.raw", 2, &[]);
    let v3 = image(&w.join("a"), "demo_3.raw", 3, &[]);
    for point in ["staged", "renamed-one", "signature", "list", "removed-one"] {
        let feed = w.join(point);
        let out = publish(
            &feed,
            &key,
            &["--public-key", public.to_str().unwrap()],
            &[&v1],
        );
        assert!(out.status.success(), "{}", text(&out));
        // --keep 1: version 1 goes, so the cut may come among the removals too; its GnuPG
        // home goes in a directory of the test's, since an aborted publish leaves its agent
        let gnupg_tmp = tempfile::tempdir().unwrap();
        let out = tool()
            .env("PORTABLE_SERVICE_PUBLISH_CUT_AT", point)
            .env("TMPDIR", gnupg_tmp.path())
            .arg("publish")
            .arg("--feed")
            .arg(&feed)
            .arg("--key")
            .arg(key.path())
            .args(["--keep", "1"])
            .arg(&v2)
            .output()
            .unwrap();
        for home in std::fs::read_dir(gnupg_tmp.path()).unwrap() {
            let _ = Command::new("gpgconf")
                .arg("--homedir")
                .arg(home.unwrap().path())
                .args(["--kill", "all"])
                .output();
        }
        assert!(!out.status.success(), "{point}: not cut short");
        let out = publish(&feed, &key, &["--keep", "1"], &[&v3]);
        let said = text(&out);
        assert!(out.status.success(), "{point}: {said}");
        assert!(said.contains("cut short"), "{point}: {said}");
        assert_a_host_accepts(&feed, &public);
        assert_eq!(listed(&feed), ["demo_3.raw"], "{point}");
        let mut files: Vec<String> = snapshot(&feed).into_keys().collect();
        files.sort();
        assert_eq!(
            files,
            ["SHA256SUMS", "SHA256SUMS.gpg", "demo_3.raw"],
            "{point}"
        );
    }
}

/// Whoever can write in the feed's directory (its web root) can put a symbolic link there: at a
/// listed file's name (to a copy outside with the same bytes, or to any file), at the name a
/// publish stages a file under (to a file outside, which publish would write through), or
/// make the feed's directory itself a link. Each is refused, naming the link, before anything
/// is written: the feed and the file outside are as they were.
#[test]
fn symbolic_links_in_or_as_the_feed_are_refused_and_not_followed() {
    let key = Key::new("feed");
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let public = w.join("import-pubring.pgp");
    let v1 = image(&w.join("a"), "demo_1.raw", 1, &[]);
    let v2 = image(&w.join("a"), "demo_2.raw", 2, &[]);
    let feed = w.join("feed");
    let out = publish(
        &feed,
        &key,
        &["--public-key", public.to_str().unwrap()],
        &[&v1],
    );
    assert!(out.status.success(), "{}", text(&out));
    let victim = w.join("victim");
    std::fs::write(&victim, "not the feed's\n").unwrap();
    let copy = w.join("copy-of-demo_1.raw");
    std::fs::copy(feed.join("demo_1.raw"), &copy).unwrap();
    let outside = snapshot(w);

    // (case, the link's name in the feed, where it leads)
    let cases = [
        ("a listed file, the same bytes", "demo_1.raw", &copy),
        ("an unlisted name", "demo_9.raw", &victim),
        (
            "the name demo_2.raw is staged under",
            ".demo_2.raw.publishing",
            &victim,
        ),
        (
            "the name the list is staged under",
            ".SHA256SUMS.publishing",
            &victim,
        ),
        (
            "the name the signature is staged under",
            ".SHA256SUMS.gpg.publishing",
            &victim,
        ),
    ];
    for (case, name, to) in cases {
        let link = feed.join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(to, &link).unwrap();
        let before = snapshot(&feed);
        let out = publish(&feed, &key, &[], &[&v2]);
        let said = text(&out);
        assert!(!out.status.success(), "{case}: accepted\n{said}");
        let needle = format!(
            "{} is a symbolic link: a feed holds regular files only",
            link.display()
        );
        assert!(
            said.contains(&needle),
            "{case}: expected {needle:?} in\n{said}"
        );
        assert_eq!(snapshot(&feed), before, "{case}: the feed changed");
        assert_eq!(
            std::fs::read(&victim).unwrap(),
            b"not the feed's\n",
            "{case}: written through"
        );
        assert_eq!(snapshot(w), outside, "{case}: a file made outside");
        std::fs::remove_file(&link).unwrap();
        if name == "demo_1.raw" {
            std::fs::copy(&copy, &link).unwrap();
        }
    }

    // the feed's directory itself a link (with and without a trailing slash)
    let link = w.join("link-to-feed");
    std::os::unix::fs::symlink(&feed, &link).unwrap();
    let before = snapshot(&feed);
    for given in [link.clone(), PathBuf::from(format!("{}/", link.display()))] {
        let out = publish(&given, &key, &[], &[&v2]);
        let said = text(&out);
        assert!(!out.status.success(), "{given:?}: accepted\n{said}");
        let needle = format!("{} is a symbolic link", given.display());
        assert!(said.contains(&needle), "expected {needle:?} in\n{said}");
        assert_eq!(snapshot(&feed), before, "{given:?}: the feed changed");
    }

    // the links gone, the feed is whole and takes the new version
    let out = publish(&feed, &key, &[], &[&v2]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(listed(&feed), ["demo_1.raw", "demo_2.raw"]);
    assert_a_host_accepts(&feed, &public);
}

/// `--valid-for DAYS`: one `BEST-BEFORE-` line, the first midnight (UTC) at least DAYS days on,
/// replaced (never added to) by each publish that names another day, kept when nothing
/// changes, removed by a publish without the option; the list still verifies as a host checks
/// it. The clock is PORTABLE_SERVICE_NOW, so the day is known.
#[test]
fn valid_for_marks_the_list_fresh_until_a_day() {
    let key = Key::new("feed");
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let feed = w.join("feed");
    let public = w.join("import-pubring.pgp");
    let v1 = image(&w.join("a"), "demo_1.raw", 1, &[]);
    let v2 = image(&w.join("a"), "demo_2.raw", 2, &[]);
    // 2023-11-14 22:13:20 UTC, and whole days later
    let day = |n: u64| (1_700_000_000 + n * 86_400).to_string();
    let at = |now: &str, args: &[&str], images: &[&Path]| {
        tool()
            .env("PORTABLE_SERVICE_NOW", now)
            .arg("publish")
            .arg("--feed")
            .arg(&feed)
            .arg("--key")
            .arg(key.path())
            .arg("--public-key")
            .arg(&public)
            .args(args)
            .args(images)
            .output()
            .unwrap()
    };

    let out = at(&day(0), &["--valid-for", "30"], &[&v1]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    // 30 days on is 2023-12-14 22:13:20: fresh until the midnight after
    assert_eq!(
        best_before_lines(&feed),
        [format!("{EMPTY_SHA256}  BEST-BEFORE-2023-12-15")]
    );
    assert!(said.contains("fresh until 2023-12-15 00:00 UTC"), "{said}");
    assert_eq!(listed(&feed), ["BEST-BEFORE-2023-12-15", "demo_1.raw"]);
    assert_a_host_accepts(&feed, &public);

    // the same images the same day: nothing changes
    let before = snapshot(&feed);
    let out = at(&day(0), &["--valid-for", "30"], &[&v1]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(snapshot(&feed), before, "the feed was rewritten");

    // a day later, a new version: one line still, the new day
    let out = at(&day(1), &["--valid-for", "30"], &[&v2]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        listed(&feed),
        ["BEST-BEFORE-2023-12-16", "demo_1.raw", "demo_2.raw"]
    );
    assert_a_host_accepts(&feed, &public);

    // the same images a day later: the day moves on, the list signed again
    let signature = std::fs::read(feed.join("SHA256SUMS.gpg")).unwrap();
    let out = at(&day(2), &["--valid-for", "1"], &[&v2]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        best_before_lines(&feed),
        [format!("{EMPTY_SHA256}  BEST-BEFORE-2023-11-18")]
    );
    assert_ne!(
        std::fs::read(feed.join("SHA256SUMS.gpg")).unwrap(),
        signature
    );
    assert_a_host_accepts(&feed, &public);

    // without --valid-for: no line
    let out = publish(&feed, &key, &[], &[&v2]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(best_before_lines(&feed), Vec::<String>::new());
    assert_eq!(listed(&feed), ["demo_1.raw", "demo_2.raw"]);
    assert_a_host_accepts(&feed, &public);

    // days out of 1..=3650: refused naming the option and the value, the feed as it was
    let before = snapshot(&feed);
    for bad in ["0", "3651", "thirty"] {
        let out = at(&day(0), &["--valid-for", bad], &[&v2]);
        let said = text(&out);
        assert!(!out.status.success(), "{bad}: accepted\n{said}");
        assert!(
            said.contains("--valid-for") && said.contains(&format!("'{bad}'")),
            "{bad}: {said}"
        );
        assert_eq!(snapshot(&feed), before, "{bad}: the feed changed");
    }
}

/// Two publishes into one feed: the second waits for the first (the directory's lock).
#[test]
fn one_publish_at_a_time() {
    let key = Key::new("feed");
    let work = tempfile::tempdir().unwrap();
    let feed = work.path().join("feed");
    let v1 = image(&work.path().join("a"), "demo_1.raw", 1, &[]);
    assert!(publish(&feed, &key, &[], &[&v1]).status.success());
    let v2 = image(&work.path().join("a"), "demo_2.raw", 2, &[]);
    // another publish holds the lock
    let held = std::fs::File::open(&feed).unwrap();
    held.lock().unwrap();
    let mut waiting = tool()
        .arg("publish")
        .arg("--feed")
        .arg(&feed)
        .arg("--key")
        .arg(key.path())
        .arg(&v2)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(waiting.try_wait().unwrap().is_none(), "it did not wait");
    assert_eq!(listed(&feed), ["demo_1.raw"]);
    held.unlock().unwrap();
    let out = waiting.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("waiting for another publish"),
        "{}",
        text(&out)
    );
    assert_eq!(listed(&feed), ["demo_1.raw", "demo_2.raw"]);
}

/// `transfers --out DIR ARGS`, with a stand-in for the agent (`--agent`): whether it
/// succeeded, what it said, DIR.
fn transfers(args: &[&str]) -> (bool, String, tempfile::TempDir) {
    let out_dir = tempfile::tempdir().unwrap();
    let agent = out_dir.path().with_extension("agent");
    std::fs::write(&agent, b"#!/bin/sh\n").unwrap();
    let out = tool()
        .arg("transfers")
        .arg("--out")
        .arg(out_dir.path().join("result"))
        .arg("--agent")
        .arg(&agent)
        .args(args)
        .output()
        .unwrap();
    std::fs::remove_file(&agent).unwrap();
    (out.status.success(), text(&out), out_dir)
}

/// The agent's configuration for `name` below a transfers output.
fn agent_config(out: &Path, name: &str) -> serde_json::Value {
    let file = out.join(format!("result/portable-service-agent/{name}.json"));
    serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap()
}

#[test]
fn transfers_bind_a_version_s_files_and_keep_what_rollback_needs() {
    let (ok, said, out) = transfers(&[
        "--name",
        "demo",
        "--url",
        "https://updates.example.org/demo",
        "--verity",
        "--signed",
        "--keep",
        "3",
    ]);
    assert!(ok, "{said}");
    let result = out.path().join("result");
    let dir = result.join("sysupdate.demo.d");
    let mut names: Vec<String> = snapshot(&dir).into_keys().collect();
    names.sort();
    assert_eq!(
        names,
        [
            "10-demo-raw.conf",
            "10-demo-raw.transfer",
            "20-demo-verity.conf",
            "20-demo-verity.transfer",
            "30-demo-roothash.conf",
            "30-demo-roothash.transfer",
            "40-demo-roothash-p7s.conf",
            "40-demo-roothash-p7s.transfer",
        ]
    );
    let read = |n: &str| std::fs::read_to_string(dir.join(n)).unwrap();
    assert_eq!(
        read("30-demo-roothash.conf"),
        read("30-demo-roothash.transfer")
    );
    let roothash = read("30-demo-roothash.transfer");
    for line in [
        "Path=https://updates.example.org/demo/",
        "MatchPattern=demo_@v.roothash.txt",
        "MatchPattern=demo_@v.roothash\n",
        "Path=/var/lib/portables",
        "InstancesMax=6",
    ] {
        assert!(roothash.contains(line), "{line} in\n{roothash}");
    }
    assert!(read("10-demo-raw.transfer").contains("InstancesMax=3"));
    // a URL's % is a specifier to systemd: written %% in what it reads
    let (ok, said, escaped) = transfers(&["--name", "demo", "--url", "https://x/a%20b/"]);
    assert!(ok, "{said}");
    let raw = std::fs::read_to_string(
        escaped
            .path()
            .join("result/sysupdate.demo.d/10-demo-raw.transfer"),
    )
    .unwrap();
    assert!(raw.contains("Path=https://x/a%%20b/\n"), "{raw}");
    // the agent, and what it is told of the image: the feed, the four files of a version and
    // the health rules (steady 10 s unless said)
    assert!(result
        .join("portable-service-agent/bin/portable-service-agent")
        .is_file());
    let config = agent_config(out.path(), "demo");
    assert_eq!(config["url"], "https://updates.example.org/demo");
    assert_eq!(config["keep"], 3);
    assert_eq!(config["target"], "/var/lib/portables");
    assert_eq!(config["files"].as_array().unwrap().len(), 4);
    assert_eq!(config["files"][2][1], ".roothash.txt");
    assert_eq!(config["health"]["steady"], 10);
    assert_eq!(config["health"]["timeout"], 90);
    assert_eq!(config["prefixes"], serde_json::json!(["demo"]));
    for unit in [
        "demo-update.service",
        "demo-rollback.service",
        "demo-recover.service",
        "demo-update.timer",
        // enabled as copied: a switch the host went down in is finished at the next boot
        "multi-user.target.wants/demo-recover.service",
    ] {
        assert!(result.join("systemd/system").join(unit).is_file(), "{unit}");
    }
    let unit = |u: &str| std::fs::read_to_string(result.join("systemd/system").join(u)).unwrap();
    for (u, verb) in [
        ("demo-update.service", "update"),
        ("demo-rollback.service", "rollback"),
        ("demo-recover.service", "recover"),
    ] {
        let text = unit(u);
        assert!(
            text.contains(&format!(
                "ExecStart=/etc/portable-service-agent/bin/portable-service-agent {verb} demo\n"
            )) && text.contains("TimeoutStartSec="),
            "{text}"
        );
    }

    // an extension's: attached over the newest base, whose own feed it fetches when given,
    // with a health command and a profile
    let (ok, said, out) = transfers(&[
        "--name",
        "app",
        "--url",
        "http://x/",
        "--base",
        "demo",
        "--base-url",
        "http://x/demo/",
        "--health-command",
        "/usr/bin/curl",
        "--health-command",
        "-f",
        "--profile",
        "trusted",
    ]);
    assert!(ok, "{said}");
    let config = agent_config(out.path(), "app");
    assert_eq!(config["base"]["name"], "demo");
    assert_eq!(config["base"]["url"], "http://x/demo/");
    assert_eq!(config["prefixes"], serde_json::json!(["app"]));
    assert_eq!(
        config["health"]["command"],
        serde_json::json!(["/usr/bin/curl", "-f"])
    );
    assert_eq!(config["profile"], "trusted");

    for (args, needle) in [
        (
            vec!["--name", "demo", "--url", "ftp://example.org/"],
            "url \"ftp://example.org/\"",
        ),
        (
            vec!["--name", "demo", "--url", "https://x/", "--keep", "1"],
            "keep = 1",
        ),
        (
            vec![
                "--name",
                "demo",
                "--url",
                "https://x/",
                "--target",
                "portables",
            ],
            "target \"portables\"",
        ),
        // what would run as root on every host, or add lines to the transfer files
        (
            vec![
                "--name",
                "demo",
                "--url",
                "https://x/",
                "--target",
                "/var/lib/p$(touch /x)",
            ],
            "target \"/var/lib/p$(touch /x)\"",
        ),
        (
            vec![
                "--name",
                "demo",
                "--url",
                "https://x/",
                "--target",
                "/var/lib/p\nVerify=no",
            ],
            "target \"/var/lib/p\\nVerify=no\"",
        ),
        (
            vec!["--name", "demo", "--url", "https://x/'$(id)'"],
            "url \"https://x/'$(id)'\"",
        ),
        (
            vec![
                "--name",
                "demo",
                "--url",
                "https://x/",
                "--target",
                "/var/lib/../etc",
            ],
            "target \"/var/lib/../etc\"",
        ),
        (
            vec![
                "--name",
                "demo",
                "--url",
                "https://x/",
                "--health-command",
                "curl",
            ],
            "its program must be an absolute path",
        ),
        (
            vec!["--name", "demo", "--url", "https://x/", "--profile", "open"],
            "profile \"open\" is not one of portablectl's",
        ),
        (
            vec![
                "--name",
                "app",
                "--url",
                "https://x/",
                "--base",
                "demo",
                "--base-url",
                "ftp://x/",
            ],
            "base url \"ftp://x/\"",
        ),
    ] {
        let (ok, said, _) = transfers(&args);
        assert!(!ok && said.contains(needle), "{args:?}: {said}");
    }
}
