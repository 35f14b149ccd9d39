//! `check --image-policy` on hand-made images, naked (with the dm-verity files beside them) and
//! Discoverable Disk Images: the gate `--cert CERT --image-policy root=signed` refuses an
//! unsigned image that `--cert` alone passes, takes one signed by CERT, and says why in the
//! report and its JSON; what systemd uses of an image depends on its version; a policy systemd
//! wouldn't take, or one that wants a signature without certificates to judge it by, is a usage
//! error.

mod common;

use camino::{Utf8Path, Utf8PathBuf};
use portable_service_rules::{ddi, verity};
use std::fs;
use std::process::{Command, Output};

/// A small portable service's root in `dir/root`.
fn root(dir: &Utf8Path) -> Utf8PathBuf {
    let root = dir.join("root");
    for d in [
        "dev",
        "proc",
        "sys",
        "run",
        "tmp",
        "var/tmp",
        "etc/systemd/system",
    ] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::write(root.join("etc/machine-id"), "").unwrap();
    fs::write(root.join("etc/resolv.conf"), "").unwrap();
    let release = "ID=test\nPORTABLE_PREFIXES=svc\n";
    fs::write(root.join("etc/os-release"), release).unwrap();
    let unit = "[Service]\nExecStart=-/bin/true\n";
    fs::write(root.join("etc/systemd/system/svc.service"), unit).unwrap();
    root
}

/// `dir/svc_1.raw`, a squashfs written at `offset`.
fn squashfs(dir: &Utf8Path, offset: u64) -> Utf8PathBuf {
    let image = dir.join("svc_1.raw");
    let ok = Command::new("mksquashfs")
        .arg(root(dir))
        .arg(&image)
        .args(["-noappend", "-all-root", "-quiet", "-no-progress"])
        .args(["-offset", &offset.to_string()])
        .status()
        .expect("mksquashfs runs (tests/setup.sh installs it)");
    assert!(ok.success());
    image
}

/// A naked image with its hash tree and root hash beside it.
fn naked_with_verity(dir: &Utf8Path) -> Utf8PathBuf {
    let image = squashfs(dir, 0);
    let tree = verity::format(&image, &image.with_extension("verity")).unwrap();
    fs::write(image.with_extension("roothash"), tree.root_hash_hex()).unwrap();
    image
}

/// A DDI for x86-64 as the builder makes it, unsigned.
fn disk(dir: &Utf8Path) -> Utf8PathBuf {
    let image = squashfs(dir, ddi::FIRST_PARTITION);
    ddi::finish(&image, ddi::architecture_of_system("x86_64-linux").unwrap()).unwrap();
    image
}

fn keys(dir: &Utf8Path, name: &str) -> (Utf8PathBuf, Utf8PathBuf) {
    common::key_and_cert(dir, name, common::RSA, &format!("/CN={name}"))
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_portable-service"))
        .args(args)
        .output()
        .unwrap()
}

/// `check IMAGE ARGS` on x86-64 hosts: (exit status, report).
fn check(image: &Utf8Path, args: &[&str]) -> (i32, String) {
    let mut all = vec!["check", image.as_str(), "--architecture", "x86-64"];
    all.extend(args);
    let out = run(&all);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap(), said)
}

fn sign(keys: &(Utf8PathBuf, Utf8PathBuf), image: &Utf8Path) {
    let out = run(&[
        "sign",
        "--key",
        keys.0.as_str(),
        "--cert",
        keys.1.as_str(),
        image.as_str(),
    ]);
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn the_gate_refuses_an_unsigned_image_that_cert_alone_passes() {
    let dir = tempfile::tempdir().unwrap();
    let dir = Utf8Path::from_path(dir.path()).unwrap();
    let fleet = keys(dir, "fleet");
    let image = squashfs(dir, 0);
    let cert = fleet.1.as_str();

    let (status, report) = check(&image, &["--cert", cert]);
    assert_eq!(status, 0, "--cert alone reports: {report}");
    let (status, report) = check(&image, &["--cert", cert, "--image-policy", "root=signed"]);
    assert_eq!(status, 1, "{report}");
    assert!(
        report.contains(&format!(
            "error (image-policy): {image}: root is unprotected (no dm-verity), and the \
             policy's `root=signed` wants it signed"
        )),
        "{report}"
    );
    assert!(report.contains("verdict: refused"), "{report}");

    // the same image with its hash tree, signed by the fleet's key: through the gate
    fs::remove_file(&image).unwrap();
    let image = naked_with_verity(dir);
    common::sign(&fleet.0, &fleet.1, &image);
    let (status, report) = check(&image, &["--cert", cert, "--image-policy", "root=signed"]);
    assert_eq!(status, 0, "{report}");
    assert!(report.contains("root signed ✓"), "{report}");

    // signed by a key the hosts don't trust: no signature the gate counts
    let stranger = keys(dir, "stranger");
    let args = [
        "--cert",
        stranger.1.as_str(),
        "--image-policy",
        "root=signed",
    ];
    let (status, report) = check(&image, &args);
    assert_eq!(status, 1, "{report}");
    assert!(
        report.contains("root has a signature not verified against the hosts' certificates"),
        "{report}"
    );
}

#[test]
fn the_json_report_lists_what_was_judged_and_the_violations() {
    let dir = tempfile::tempdir().unwrap();
    let dir = Utf8Path::from_path(dir.path()).unwrap();
    let image = naked_with_verity(dir);
    let policy = "root=verity+read-only-on";
    let args = ["--systemd", "257", "--image-policy", policy, "--json"];
    let (status, out) = check(&image, &args);
    assert_eq!(status, 1, "{out}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let judged = &json["image_policy"];
    assert_eq!(judged["policy"], policy);
    let partitions = &judged["images"][0]["partitions"];
    assert_eq!(partitions[0]["designator"], "root");
    assert_eq!(partitions[0]["protection"], "verity");
    // one file system has no GPT flags: systemd takes read-only as off
    let violations = judged["images"][0]["violations"].as_array().unwrap();
    assert_eq!(violations.len(), 1, "{out}");
    assert!(violations[0]
        .as_str()
        .unwrap()
        .contains("read-only flag off"));
    let errors = json["errors"].as_array().unwrap();
    assert!(errors.iter().any(|e| e["stage"] == "image-policy"), "{out}");
}

#[test]
fn what_systemd_uses_of_an_image_depends_on_its_version() {
    let dir = tempfile::tempdir().unwrap();
    let dir = Utf8Path::from_path(dir.path()).unwrap();
    let image = naked_with_verity(dir);
    let (status, report) = check(
        &image,
        &["--systemd", "257", "--image-policy", "root=verity"],
    );
    assert_eq!(status, 0, "{report}");
    // 245 reads no hash tree beside an image, and takes no policy itself
    let (status, report) = check(
        &image,
        &["--systemd", "245", "--image-policy", "root=verity"],
    );
    assert_eq!(status, 1, "{report}");
    assert!(
        report.contains("root is unprotected (no dm-verity) (systemd 245 reads no hash tree"),
        "{report}"
    );
    assert!(
        report.contains("systemd 245 takes no image policy (from 254 on"),
        "{report}"
    );
    // a hash tree to be signed after the build is judged as signed
    let args = ["--signed-later", "--image-policy", "root=signed"];
    let (status, report) = check(&image, &args);
    assert!(report.contains("to be signed after the build"), "{report}");
    assert!(!report.contains("error (image-policy)"), "{report}");
    assert_eq!(status, 0, "{report}");
}

#[test]
fn a_disk_is_judged_by_its_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let dir = Utf8Path::from_path(dir.path()).unwrap();
    let image = disk(dir);
    // unsigned, 257 mounts it without dm-verity; 262 with, the root hash from the UUIDs
    let (status, report) = check(
        &image,
        &["--systemd", "257", "--image-policy", "root=verity"],
    );
    assert_eq!(status, 1, "{report}");
    assert!(report.contains("mounts it without dm-verity"), "{report}");
    let (status, report) = check(
        &image,
        &["--systemd", "262", "--image-policy", "root=verity"],
    );
    assert!(!report.contains("error (image-policy)"), "{report}");
    assert_eq!(status, 0, "{report}");

    let fleet = keys(dir, "fleet");
    sign(&fleet, &image);
    let cert = fleet.1.as_str();
    let gate = ["--cert", cert, "--image-policy", "root=signed+read-only-on"];
    let (status, report) = check(&image, &gate);
    assert_eq!(status, 0, "{report}");
    assert!(
        report.contains("root signed read-only, root-verity unprotected read-only"),
        "{report}"
    );
    let args = ["--cert", cert, "--image-policy", "root=signed:usr=verity"];
    let (status, report) = check(&image, &args);
    assert_eq!(status, 1, "{report}");
    assert!(
        report.contains("usr is absent, and the policy's `usr=verity` wants it with dm-verity"),
        "{report}"
    );
}

#[test]
fn a_policy_check_cant_judge_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let dir = Utf8Path::from_path(dir.path()).unwrap();
    let image = squashfs(dir, 0);
    let (status, said) = check(&image, &["--image-policy", "root=signed"]);
    assert_eq!(status, 64, "{said}");
    assert!(
        said.contains("--image-policy root=signed") && said.contains("--cert"),
        "{said}"
    );
    // a hash tree or a signature will do: no certificate needed to judge it
    let (status, said) = check(&image, &["--image-policy", "root=verity+signed"]);
    assert_eq!(status, 1, "{said}");
    for (policy, part) in [
        ("root=grbl", "unknown partition policy flag `grbl`"),
        ("wowza=signed", "unknown partition designator `wowza`"),
        ("root=verity:root=signed", "`root` is given more than once"),
    ] {
        let (status, said) = check(&image, &["--image-policy", policy]);
        assert_eq!(status, 64, "{policy}: {said}");
        assert!(said.contains(part), "{policy}: {said}");
    }
}
