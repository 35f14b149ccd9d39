//! Discoverable Disk Images made as the builder makes them (mksquashfs at 1 MiB, then
//! `ddi::finish`): `sign` adds the signature partition without moving the file system or the
//! hash tree, the same bytes for the same key, and refuses, leaving the file as it was, a disk
//! signed already (unless `--resign`), one whose tree doesn't match its data, and one whose table
//! is damaged; `check` reads the partitions, the tree and the signature.

mod common;

use camino::{Utf8Path, Utf8PathBuf};
use common::{key_and_cert, openssl, RSA};
use portable_service_rules::ddi::{self, Designator};
use std::fs;
use std::process::{Command, Output};

struct Disk {
    dir: tempfile::TempDir,
}

impl Disk {
    fn path(&self, name: &str) -> Utf8PathBuf {
        Utf8Path::from_path(self.dir.path()).unwrap().join(name)
    }

    fn image(&self) -> Utf8PathBuf {
        self.path("svc_1.raw")
    }
}

/// A portable service image as a DDI for x86-64, unsigned.
fn disk() -> Disk {
    let d = Disk {
        dir: tempfile::tempdir().unwrap(),
    };
    let root = d.path("root");
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
    fs::write(root.join("etc/machine-id"), "").unwrap();
    fs::write(root.join("etc/resolv.conf"), "").unwrap();
    fs::write(
        root.join("etc/os-release"),
        "ID=test\nPORTABLE_PREFIXES=svc\n",
    )
    .unwrap();
    fs::write(
        root.join("etc/systemd/system/svc.service"),
        "[Service]\nExecStart=-/bin/true\n",
    )
    .unwrap();
    // enough data for a tree of two levels
    fs::write(
        root.join("data"),
        (0..600_000u32)
            .flat_map(|i| i.to_le_bytes())
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let ok = Command::new("mksquashfs")
        .arg(&root)
        .arg(d.image())
        .args([
            "-noappend",
            "-all-root",
            "-quiet",
            "-no-progress",
            "-comp",
            "gzip",
        ])
        .args(["-offset", &ddi::FIRST_PARTITION.to_string()])
        .status()
        .expect("mksquashfs runs (tests/setup.sh installs it)");
    assert!(ok.success());
    ddi::finish(
        &d.image(),
        ddi::architecture_of_system("x86_64-linux").unwrap(),
    )
    .unwrap();
    d
}

/// An RSA key and its self-signed certificate, `NAME.key` and `NAME.crt`.
fn key(d: &Disk, name: &str) -> (Utf8PathBuf, Utf8PathBuf) {
    key_and_cert(
        Utf8Path::from_path(d.dir.path()).unwrap(),
        name,
        RSA,
        &format!("/CN={name}"),
    )
}

fn tool(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_portable-service"))
        .args(args)
        .output()
        .unwrap()
}

fn sign(key: &(Utf8PathBuf, Utf8PathBuf), image: &Utf8Path, more: &[&str]) -> Output {
    let mut args = vec!["sign", "--key", key.0.as_str(), "--cert", key.1.as_str()];
    args.extend(more);
    args.push(image.as_str());
    tool(&args)
}

fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn check(image: &Utf8Path, args: &[&str]) -> (bool, String) {
    let out = tool(&[&["check", image.as_str()], args].concat());
    assert!(matches!(out.status.code(), Some(0 | 1)), "{}", said(&out));
    (out.status.success(), said(&out))
}

fn range(p: &ddi::Partition) -> std::ops::Range<usize> {
    p.range.start as usize..p.range.end as usize
}

#[test]
fn sign_adds_the_signature_partition_and_moves_nothing() {
    let d = disk();
    let fleet = key(&d, "fleet");
    let before = fs::read(d.image()).unwrap();
    let out = sign(&fleet, &d.image(), &[]);
    assert!(out.status.success(), "{}", said(&out));
    let after = fs::read(d.image()).unwrap();
    assert_eq!(before.len(), after.len(), "the file keeps its size");

    let table = ddi::read_table(&d.image()).unwrap();
    for designator in [Designator::Root, Designator::RootVerity] {
        let p = table.find(designator).unwrap();
        assert_eq!(
            before[range(p)],
            after[range(p)],
            "{designator:?} moved or changed"
        );
    }
    let sig = table
        .find(Designator::RootVeritySig)
        .expect("a signature partition");
    assert_eq!(sig.label, "root-x86-64-verity-sig");
    assert!(sig.read_only());
    assert_eq!(
        ddi::uuid_string(&sig.type_uuid),
        "41092b05-9fc8-4523-994f-2def0408b176"
    );

    // the JSON systemd reads, with a signature openssl verifies over the hex root hash
    let content = &after[range(sig)];
    let json: serde_json::Value =
        serde_json::from_slice(content.split(|b| *b == 0).next().unwrap()).unwrap();
    let root = table.find(Designator::Root).unwrap();
    let verity = table.find(Designator::RootVerity).unwrap();
    let root_hash = format!(
        "{}{}",
        portable_service_rules::verity::hex(&root.uuid),
        portable_service_rules::verity::hex(&verity.uuid)
    );
    assert_eq!(json["rootHash"], root_hash.as_str());
    assert_eq!(json["certificateFingerprint"].as_str().unwrap().len(), 64);
    use base64::Engine;
    let der = base64::engine::general_purpose::STANDARD
        .decode(json["signature"].as_str().unwrap())
        .unwrap();
    fs::write(d.path("sig.p7s"), der).unwrap();
    fs::write(d.path("roothash"), &root_hash).unwrap();
    openssl(&[
        "smime",
        "-verify",
        "-binary",
        "-inform",
        "der",
        "-nointern",
        "-in",
        d.path("sig.p7s").as_str(),
        "-content",
        d.path("roothash").as_str(),
        "-certfile",
        fleet.1.as_str(),
        "-CAfile",
        fleet.1.as_str(),
        "-out",
        "/dev/null",
    ]);
    let (accepted, report) = check(&d.image(), &["--cert", fleet.1.as_str()]);
    assert!(
        accepted && report.contains("verity: signed by CN=fleet"),
        "{report}"
    );
    assert!(
        report.contains("root-verity-sig x86-64 label root-x86-64-verity-sig"),
        "{report}"
    );

    // the same key gives the same bytes
    fs::write(d.path("again.raw"), &before).unwrap();
    assert!(sign(&fleet, &d.path("again.raw"), &[]).status.success());
    assert!(
        fs::read(d.path("again.raw")).unwrap() == after,
        "signing twice differs"
    );

    // signed already: only with --resign, and then by the new key
    let other = key(&d, "other");
    let out = sign(&other, &d.image(), &[]);
    assert!(
        !out.status.success() && said(&out).contains("--resign"),
        "{}",
        said(&out)
    );
    assert!(
        fs::read(d.image()).unwrap() == after,
        "a refused sign changed the file"
    );
    let out = sign(&other, &d.image(), &["--resign"]);
    assert!(out.status.success(), "{}", said(&out));
    let (accepted, report) = check(&d.image(), &["--cert", other.1.as_str()]);
    assert!(
        accepted && report.contains("signed by CN=other"),
        "{report}"
    );
    let (accepted, report) = check(&d.image(), &["--cert", fleet.1.as_str()]);
    assert!(
        !accepted,
        "the old key's certificate no longer verifies: {report}"
    );
}

#[test]
fn sign_refuses_a_changed_or_damaged_disk_and_leaves_it_as_it_was() {
    let d = disk();
    let fleet = key(&d, "fleet");
    let good = fs::read(d.image()).unwrap();
    let table = ddi::read_table(&d.image()).unwrap();
    let root = table.find(Designator::Root).unwrap();

    let changed_data = {
        let mut b = good.clone();
        b[range(root).start + 3 * 4096 + 100] ^= 1;
        b
    };
    let damaged_primary = {
        let mut b = good.clone();
        b[512 + 60] ^= 1; // inside the disk GUID: the header's checksum no longer holds
        b
    };
    let damaged_backup = {
        let mut b = good.clone();
        let last = b.len() - 512;
        b[last + 60] ^= 1;
        b
    };
    for (bytes, why) in [
        (&changed_data, "its hash tree does not match its data"),
        (
            &damaged_primary,
            "the primary GPT partition table is damaged",
        ),
        (&damaged_backup, "the backup GPT partition table is damaged"),
    ] {
        fs::write(d.image(), bytes).unwrap();
        let out = sign(&fleet, &d.image(), &[]);
        let text = said(&out);
        assert!(!out.status.success(), "{why}: signed");
        assert!(
            text.contains(why) && text.contains(d.image().as_str()),
            "{why}: {text}"
        );
        assert!(
            fs::read(d.image()).unwrap() == *bytes,
            "{why}: the file changed"
        );
    }
    // check says the same of a changed file system where systemd checks it: on 262, which
    // takes the root hash from the UUIDs; before, an unsigned DDI runs unchecked (measured)
    fs::write(d.image(), &changed_data).unwrap();
    let (accepted, report) = check(&d.image(), &[]);
    assert!(!accepted && report.contains("was changed"), "{report}");
    let (accepted, report) = check(&d.image(), &["--systemd", "257"]);
    assert!(
        accepted && report.contains("doesn't check it and runs it"),
        "{report}"
    );
}

#[test]
fn check_reads_an_unsigned_disk_and_its_partitions() {
    let d = disk();
    let (accepted, report) = check(&d.image(), &[]);
    assert!(accepted, "{report}");
    assert!(report.contains("attached: svc.service"), "{report}");
    assert!(
        report.contains("svc_1:1 root x86-64 label root-x86-64"),
        "{report}"
    );
    assert!(report.contains("svc_1:2 root-verity x86-64"), "{report}");
    assert!(
        report.contains("its root-verity partition matches"),
        "{report}"
    );
    assert!(report.contains("not signed"), "{report}");
    // certificates given, no signature: refused
    let fleet = key(&d, "fleet");
    let (accepted, report) = check(&d.image(), &["--cert", fleet.1.as_str()]);
    assert!(!accepted && report.contains("is not signed"), "{report}");
}

/// systemd 262 fails the services of a DDI whose partitions lack GPT's read-only flag
/// (../shared/notes/ddi.md); check refuses it under 262's rules.
#[test]
fn check_refuses_partitions_without_the_read_only_flag_for_262() {
    let d = disk();
    let mut file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(d.image())
        .unwrap();
    let mut gpt = gptman::GPT::read_from(&mut file, 512).unwrap();
    gpt[1].attribute_bits = 0;
    gpt.write_into(&mut file).unwrap();
    drop(file);
    let (accepted, report) = check(&d.image(), &["--systemd", "262"]);
    assert!(
        !accepted && report.contains("lacks GPT's read-only flag"),
        "{report}"
    );
    let (accepted, report) = check(&d.image(), &["--systemd", "257"]);
    assert!(accepted && report.contains("advice:"), "{report}");
}
