//! Images built with `verity = true` and signed with `portable-service sign` (a
//! throwaway key made per scenario) on a real kernel with dm-verity, on every systemd version
//! but 254 (as in portabled.rs). The certificate goes where systemd looks for it, /etc/verity.d/NAME.crt:
//! Debian's kernel refuses the signature itself on every version ("Root hash verification
//! failed (-ENOKEY)": its keyrings take only keys signed by keys it already trusts), and each
//! systemd then checks it against /etc/verity.d.
//!
//! Measured: portabled attaches every one of these images; what differs is whether their
//! services start. 247, 252, 254 and 257 run an unsigned hash tree; 262 refuses it. A signature
//! whose certificate the host lacks, or has only in DER form, is refused by all; 247 refuses
//! every signature, since it checks them in the kernel only (/etc/verity.d/ came in 250); a
//! changed block fails its read on all. Before 247 (245, built from its sources) neither the
//! hash tree nor the signature beside the image is read: it runs unchecked.

use portable_service_tests::guest::Systemd;
use portable_service_tests::on_every_systemd_but_254;
use portable_service_tests::vm::Host;
use portable_service_tests::*;
use std::path::{Path, PathBuf};

on_every_systemd_but_254!(
    a_signed_image_runs_where_its_certificate_is_trusted,
    a_changed_image_fails_its_read,
    an_unsigned_hash_tree_runs_before_262_only,
    an_extension_with_verity_runs_over_a_base_with_verity,
);

const SIGNER: &str = "portable-service-tests";

fn verity_demo(c: &Host) -> PathBuf {
    raw_file(&build(&c.demo("extra = { verity = true; };")))
}

/// `portablectl attach --runtime` without starting, for images whose service must then fail
/// to start (`Host::portablectl` would first have check accept them).
fn attach_only(c: &Host, image: &str) {
    c.ok(&["portablectl", "attach", "--runtime", image]);
}

/// Waits for the scenario's journal to say `why`, from any sender: the unit's process logs
/// device-mapper's error and exits at once, and journald, reading the sender's cgroup after
/// it is gone, may not tie the line to the unit.
fn assert_refused_because(c: &Host, why: &str) {
    c.wait_for_journal(&[], why);
}

fn a_signed_image_runs_where_its_certificate_is_trusted(systemd: Systemd) {
    let c = Host::open(systemd);
    let key = SigningKey::new(SIGNER);
    let work = tempfile::tempdir().unwrap();
    let signed = key.sign_copy(&verity_demo(&c), work.path());
    let image = c.add_image(&signed, "demo_1.0.raw");
    if c.rules() < 247 {
        return beside_the_image_is_unread(&c, &image);
    }

    // without the certificate on the host, every version refuses to set the image up
    attach_only(&c, &image);
    c.start_and_fail("demo.service");
    assert_refused_because(
        &c,
        if c.rules() >= 262 {
            "Destination address required"
        } else {
            "Required key not available"
        },
    );
    c.ok(&["portablectl", "detach", "--runtime", "demo_1.0"]);
    c.ok(&["systemctl", "reset-failed"]);
    if c.rules() < 252 {
        return signatures_go_to_the_kernel_only(&c, &key, &image);
    }

    // in DER form the certificate is not read (systemd reads PEM): refused the same, and check
    // says why
    let der = work.path().join("signer.der");
    let converted = std::process::Command::new("openssl")
        .arg("x509")
        .arg("-in")
        .arg(key.cert())
        .args(["-outform", "der", "-out"])
        .arg(&der)
        .output()
        .unwrap();
    assert!(converted.status.success(), "{converted:?}");
    c.trust(&der, SIGNER);
    let (accepted, report) = c.check(&image, &[], &[]);
    assert!(
        !accepted && report.contains("is DER: systemd reads"),
        "{report}"
    );
    attach_only(&c, &image);
    c.start_and_fail("demo.service");
    c.ok(&["portablectl", "detach", "--runtime", "demo_1.0"]);
    c.ok(&["systemctl", "reset-failed"]);
    c.distrust(SIGNER);

    // with it in /etc/verity.d, the service runs from a dm-verity device; check names the signer
    c.trust(&key.cert(), SIGNER);
    let (_, report) = c.check(&image, &[], &[]);
    assert!(
        report.contains(&format!("verity: signed by {}", key.subject)),
        "{report}"
    );
    c.journal_from_now();
    c.portablectl("attach", &["--now", "--runtime"], &image);
    c.assert_active("demo.service");
    c.wait_for_journal(&["PORTABLE=demo_1.0.raw"], "demo 1.0 started");
    assert_eq!(c.verity_devices(), 1, "{}", c.diagnostics());
    c.ok(&["portablectl", "detach", "--now", "--runtime", "demo_1.0"]);

    // a plain image on the same host is unaffected
    let plain = c.add_image(&raw_file(&build(&c.demo(""))), "plain/demo_1.0.raw");
    c.portablectl("attach", &["--now", "--runtime"], &plain);
    c.assert_active("demo.service");
    assert_eq!(c.verity_devices(), 0, "{}", c.diagnostics());
}

/// 247 hands the signature to the kernel, whose keyring doesn't hold the signer: with the
/// certificate in /etc/verity.d/ too the service fails as without it, and check says why.
fn signatures_go_to_the_kernel_only(c: &Host, key: &SigningKey, image: &str) {
    c.trust(&key.cert(), SIGNER);
    let (accepted, report) = c.check(image, &[], &[]);
    assert!(
        !accepted && report.contains("checks it against the kernel's keyring only"),
        "{report}"
    );
    c.journal_from_now();
    attach_only(c, image);
    c.start_and_fail("demo.service");
    assert_refused_because(c, "Required key not available");
    let status = c.property("demo.service", "ExecMainStatus");
    assert_eq!(status, "226", "226/NAMESPACE");
}

/// Before 247 systemd reads neither the hash tree nor the signature beside an image: the
/// service runs without dm-verity, no certificate trusted, and check says so.
fn beside_the_image_is_unread(c: &Host, image: &str) {
    let (_, report) = c.check(image, &[], &[]);
    assert!(
        report.contains("reads no hash tree beside an image"),
        "{report}"
    );
    c.journal_from_now();
    c.portablectl("attach", &["--now", "--runtime"], image);
    c.assert_active("demo.service");
    c.wait_for_journal(&["PORTABLE=demo_1.0.raw"], "demo 1.0 started");
    assert_eq!(c.verity_devices(), 0, "{}", c.diagnostics());
}

/// A copy of a signed image (with its sidecars) with 8 bytes changed in the middle of a data
/// block halfway through the image (busybox's data), as an image changed on disk would be.
fn changed(signed: &Path, into: &Path) -> PathBuf {
    let copy = into.join(signed.file_name().unwrap());
    assert_eq!(
        copy_with_sidecars(signed, &copy).len(),
        4,
        "a signed image has three files"
    );
    let mut bytes = std::fs::read(&copy).unwrap();
    let at = bytes.len() / 2 / 4096 * 4096 + 2048;
    for b in &mut bytes[at..at + 8] {
        *b ^= 0x5a;
    }
    std::fs::remove_file(&copy).unwrap();
    std::fs::write(&copy, bytes).unwrap();
    copy
}

fn a_changed_image_fails_its_read(systemd: Systemd) {
    let c = Host::open(systemd);
    let key = SigningKey::new(SIGNER);
    let work = tempfile::tempdir().unwrap();
    let signed = key.sign_copy(&verity_demo(&c), work.path());
    let changed_dir = tempfile::tempdir().unwrap();
    let changed = changed(&signed, changed_dir.path());
    if c.rules() < 252 {
        // 247 refuses every signed image (above): the hash tree alone, which it uses
        std::fs::remove_file(
            portable_service_rules::verity::sidecars(
                camino::Utf8Path::from_path(&changed).unwrap(),
            )[2]
            .as_std_path(),
        )
        .unwrap();
    }
    let image = c.add_image(&changed, "demo_1.0.raw");
    if c.rules() >= 252 {
        c.trust(&key.cert(), SIGNER);
    }

    let (accepted, report) = c.check(&image, &[], &[]);
    assert!(!accepted && report.contains("was changed"), "{report}");

    // portabled attaches it (it reads the image without its hash tree); the kernel fails the
    // read of the changed block when the service runs, and the service dies of it
    attach_only(&c, &image);
    let said = c.start_and_fail("demo.service");
    assert!(
        !said.iter().any(|l| l.contains("demo 1.0 started")),
        "{said:?}"
    );
    if c.rules() < 247 {
        // no dm-verity: the changed block reaches squashfs, whose decompression fails
        assert_eq!(c.verity_devices(), 0, "{}", c.diagnostics());
        c.wait_for_journal(&["_TRANSPORT=kernel"], "SQUASHFS error");
        return;
    }
    let kernel = c.journal(&["--grep", "is corrupted"]);
    assert!(
        kernel
            .iter()
            .any(|l| l.starts_with("device-mapper: verity:") && l.contains("data block")),
        "the kernel said nothing of a corrupted block: {kernel:?}\n{}",
        c.diagnostics()
    );
}

fn an_unsigned_hash_tree_runs_before_262_only(systemd: Systemd) {
    let c = Host::open(systemd);
    let image = c.add_image(&verity_demo(&c), "demo_1.0.raw");
    let (accepted, report) = c.check(&image, &[], &[]);
    if c.rules() < 262 {
        assert!(accepted, "{report}");
        c.portablectl("attach", &["--now", "--runtime"], &image);
        c.assert_active("demo.service");
        c.wait_for_journal(&["PORTABLE=demo_1.0.raw"], "demo 1.0 started");
        // from 247 on the hash tree is used: the kernel checks each block read
        let expected = if c.rules() < 247 { 0 } else { 1 };
        assert_eq!(c.verity_devices(), expected, "{}", c.diagnostics());
    } else {
        assert!(!accepted && report.contains("no signature"), "{report}");
        attach_only(&c, &image);
        // systemd 262's image policy for portable services wants a signed hash tree; the
        // errno it fails with reads oddly
        c.start_and_fail("demo.service");
        assert_refused_because(&c, "Operation not possible due to RF-kill");
    }
}

fn an_extension_with_verity_runs_over_a_base_with_verity(systemd: Systemd) {
    let c = Host::open(systemd);
    let key = SigningKey::new(SIGNER);
    let work = tempfile::tempdir().unwrap();
    let base = key.sign_copy(&verity_demo(&c), work.path());
    let app = key.sign_copy(
        &raw_file(&build("ext.app { extra = { verity = true; }; }")),
        work.path(),
    );
    c.trust(&key.cert(), SIGNER);
    let base = c.add_image(&base, "demo_1.0.raw");
    // (252 refuses a versioned extension file name: app.raw, as extensions.rs does)
    let app = c.add_image(&app, "ext/app.raw");
    if !c.attaches_extensions(&base, &[&app], &["app"]) {
        return;
    }
    if c.rules() < 252 {
        // 249 hands the signatures to the kernel, as 247 does (measured above): refused
        let (accepted, report) = c.check(&base, &[&app], &["app"]);
        assert!(
            !accepted && report.contains("checks it against the kernel's keyring only"),
            "{report}"
        );
        c.ok(&[
            "portablectl",
            "attach",
            "--runtime",
            "--extension",
            &app,
            &base,
            "app",
        ]);
        c.start_and_fail("app.service");
        return;
    }
    c.assert_check_accepts(&base, &[&app], &["app"]);
    let (_, report) = c.check(&base, &[&app], &["app"]);
    assert_eq!(
        report
            .matches(&format!("verity: signed by {}", key.subject))
            .count(),
        2,
        "{report}"
    );
    c.ok(&[
        "portablectl",
        "attach",
        "--now",
        "--runtime",
        "--extension",
        &app,
        &base,
        "app",
    ]);
    c.assert_active("app.service");
    c.wait_for_journal(&["-u", "app.service"], "app 1.0 runs with BusyBox");
}
