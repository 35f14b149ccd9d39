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
    disk_for("x86_64-linux")
}

/// The same for the architecture of Nix system `system`.
fn disk_for(system: &str) -> Disk {
    disk_with(system, 600_000)
}

/// The same with `words` 4-byte words of data in it (0: a root of a few KiB).
fn disk_with(system: &str, words: u32) -> Disk {
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
        (0..words).flat_map(|i| i.to_le_bytes()).collect::<Vec<_>>(),
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
    ddi::finish(&d.image(), ddi::architecture_of_system(system).unwrap()).unwrap();
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

/// A DDI smaller than 1440 KiB is no disk to libblkid before util-linux 2.38 (systemd 249 on
/// Debian 11's found no partition table in a 1 MiB one, measured): a small image is padded past
/// it, its backup table at the new end; one built before, without the room, is still signed.
#[test]
fn a_small_disk_is_made_big_enough_for_old_libblkid() {
    let d = disk_with("x86_64-linux", 0);
    let size = fs::metadata(d.image()).unwrap().len();
    assert_eq!(size, ddi::MIN_SIZE);
    assert!(size > 1440 * 1024);
    let bytes = fs::read(d.image()).unwrap();
    let alternate = u64::from_le_bytes(bytes[512 + 32..512 + 40].try_into().unwrap());
    assert_eq!(alternate, size / 512 - 1, "the backup header ends the file");
    assert_eq!(&bytes[(size - 512) as usize..][..8], b"EFI PART");
    let (ok, report) = check(&d.image(), &[]);
    assert!(ok, "{report}");

    // the tight layout of before: the same partitions, the backup table right after the
    // signature's room
    let table = ddi::read_table(&d.image()).unwrap();
    let (mut layout, arch) = ddi::layout_of(&table, size).unwrap();
    let root = table.find(Designator::Root).unwrap();
    let verity = table.find(Designator::RootVerity).unwrap();
    let mut root_hash = [0u8; 32];
    root_hash[..16].copy_from_slice(&root.uuid);
    root_hash[16..].copy_from_slice(&verity.uuid);
    layout.size = layout.signature.end + 33 * 512;
    let mut file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(d.image())
        .unwrap();
    file.set_len(layout.size).unwrap();
    ddi::write_table(&mut file, arch, &layout, &root_hash, None).unwrap();
    drop(file);
    let out = sign(&key(&d, "fleet"), &d.image(), &[]);
    assert!(out.status.success(), "{}", said(&out));
    assert_eq!(fs::metadata(d.image()).unwrap().len(), layout.size);
    let (ok, report) = check(&d.image(), &[]);
    assert!(ok, "{report}");
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

/// The 92-byte GPT header at byte `at` of `bytes` changed by `edit`, its checksum made to hold
/// again: a hostile table is well-formed wherever a reader checks first.
fn edit_header(bytes: &mut [u8], at: usize, edit: impl FnOnce(&mut [u8])) {
    let header = &mut bytes[at..at + 92];
    edit(header);
    header[16..20].fill(0);
    let sum = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(header);
    header[16..20].copy_from_slice(&sum.to_le_bytes());
}

/// Both tables of the disk at `image` with their entries changed by `edit`, checksums made
/// right, and nothing of gptman's own checks on the way (they are what a hostile file skips).
fn edit_entries(image: &Utf8Path, edit: impl Fn(&mut Vec<gptman::GPTPartitionEntry>)) {
    use std::io::{Seek, SeekFrom};
    let mut file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(image)
        .unwrap();
    file.seek(SeekFrom::Start(512)).unwrap();
    let mut primary = gptman::GPTHeader::read_from(&mut file).unwrap();
    let mut entries = primary.read_partitions(&mut file, 512).unwrap();
    file.seek(SeekFrom::Start(primary.backup_lba * 512))
        .unwrap();
    let mut backup = gptman::GPTHeader::read_from(&mut file).unwrap();
    edit(&mut entries);
    primary.write_into(&mut file, 512, &entries).unwrap();
    backup.write_into(&mut file, 512, &entries).unwrap();
}

/// `check` and `sign` on tables a hostile file could hold: each is an error that says what is
/// wrong (exit 2 for check), never a panic, an abort or an allocation the file asks for; the
/// file is left as it was.
#[test]
fn hostile_partition_tables_are_errors_not_crashes() {
    let d = disk();
    let fleet = key(&d, "fleet");
    let good = fs::read(d.image()).unwrap();
    fn u32_at(h: &mut [u8], at: usize, v: u32) {
        h[at..at + 4].copy_from_slice(&v.to_le_bytes())
    }
    fn u64_at(h: &mut [u8], at: usize, v: u64) {
        h[at..at + 8].copy_from_slice(&v.to_le_bytes())
    }
    type HeaderEdit = Box<dyn Fn(&mut [u8])>;
    let headers: [(&str, HeaderEdit, &str); 4] = [
        // legal in GPT, not read by the kernel
        (
            "entries of 256 bytes",
            Box::new(|h| u32_at(h, 84, 256)),
            "its entries are 256 bytes",
        ),
        (
            "0xFFFFFFFF entries",
            Box::new(|h| u32_at(h, 80, u32::MAX)),
            "it claims 4294967295 partition entries",
        ),
        (
            "entries at sector 2^55",
            Box::new(|h| u64_at(h, 72, 1 << 55)),
            "entries at sector 36028797018963968 lie outside the file",
        ),
        (
            "a backup header past the end",
            Box::new(|h| u64_at(h, 32, u64::MAX / 2)),
            "the backup GPT partition table is damaged: its header at sector",
        ),
    ];
    for (what, edit, why) in headers {
        let mut bytes = good.clone();
        edit_header(&mut bytes, 512, edit);
        fs::write(d.image(), &bytes).unwrap();
        // check reads the table as libblkid does first: it falls back to the backup, and a
        // disk whose two headers don't agree is one check can't vouch for
        let out = tool(&["check", d.image().as_str()]);
        assert_eq!(out.status.code(), Some(2), "{what}: {}", said(&out));
        assert!(
            said(&out).contains(why)
                || said(&out).contains("one of its GPT headers fails libblkid's checks")
                || said(&out).contains("primary and backup GPT headers say different things"),
            "{what}: {}",
            said(&out)
        );
        let out = sign(&fleet, &d.image(), &[]);
        assert!(
            !out.status.success() && said(&out).contains(why),
            "{what}: {}",
            said(&out)
        );
        assert!(
            fs::read(d.image()).unwrap() == bytes,
            "{what}: the file changed"
        );
    }
    type EntriesEdit = Box<dyn Fn(&mut Vec<gptman::GPTPartitionEntry>)>;
    let entries: [(&str, EntriesEdit); 3] = [
        // wraps to a small range when multiplied by 512 in 64 bits
        (
            "a root partition at sector 2^55",
            Box::new(|e| {
                e[0].starting_lba = 1 << 55;
                e[0].ending_lba = (1 << 55) + 8;
            }),
        ),
        (
            "a root partition ending at the last sector there is",
            Box::new(|e| e[0].ending_lba = u64::MAX),
        ),
        (
            "a root partition ending before it starts",
            Box::new(|e| e[0].ending_lba = e[0].starting_lba - 1),
        ),
    ];
    for (what, edit) in entries {
        fs::write(d.image(), &good).unwrap();
        edit_entries(&d.image(), edit);
        let bytes = fs::read(d.image()).unwrap();
        // libblkid passes over an entry outside the usable range, and systemd then has a hash
        // tree without its root; one that ends before it starts it fails on
        let out = tool(&["check", d.image().as_str()]);
        assert_eq!(out.status.code(), Some(2), "{what}: {}", said(&out));
        assert!(
            said(&out).contains("systemd refuses it: it has a root-verity partition but no root")
                || said(&out).contains("partition 1 ends (sector"),
            "{what}: {}",
            said(&out)
        );
        let out = sign(&fleet, &d.image(), &[]);
        assert!(!out.status.success(), "{what}: signed");
        assert!(
            fs::read(d.image()).unwrap() == bytes,
            "{what}: the file changed"
        );
    }
}

/// A DDI whose first partitions are a properly signed arm64 root, verity and signature: an
/// x86-64 host takes the arm64 root, having no other, and check says so. With an x86-64 root
/// over the same bytes, check can't tell what systemd finds, and `sign` refuses a disk whose
/// partitions are for two architectures.
#[test]
fn the_partition_judged_is_the_one_the_host_runs() {
    let d = disk_for("aarch64-linux");
    let fleet = key(&d, "fleet");
    let out = sign(&fleet, &d.image(), &[]);
    assert!(out.status.success(), "{}", said(&out));
    let signed_for_arm64 = || {
        let (accepted, report) = check(
            &d.image(),
            &["--architecture", "arm64", "--cert", fleet.1.as_str()],
        );
        assert!(
            accepted && report.contains("signed by CN=fleet"),
            "{report}"
        );
    };
    signed_for_arm64();
    // on x86-64, systemd takes the arm64 root when there is no other (measured with
    // systemd-dissect 252: tests/tests/dissect.rs), so check judges it, and says whose it is
    let (_, report) = check(&d.image(), &["--architecture", "x86-64"]);
    assert!(
        report.contains("its root partition 1 is for arm64"),
        "{report}"
    );

    // an x86-64 root over the same bytes, unsigned and without a tree
    let x86_64 = ddi::architecture_of_system("x86_64-linux").unwrap();
    edit_entries(&d.image(), |e| {
        let mut extra = e[0].clone();
        extra.partition_type_guid = ddi::to_disk(&x86_64.root);
        extra.unique_partition_guid[0] ^= 0xff;
        extra.partition_name = "root-x86-64".into();
        e[3] = extra;
    });
    // two roots over the same bytes: systemd adds partition devices itself and finds the
    // second's only if the kernel was quicker (measured on 252): check can't tell, and says so
    let out = tool(&["check", d.image().as_str(), "--architecture", "x86-64"]);
    assert_eq!(out.status.code(), Some(2), "{}", said(&out));
    assert!(
        said(&out).contains("its partitions 1 and 4 overlap"),
        "{}",
        said(&out)
    );
    let bytes = fs::read(d.image()).unwrap();
    let out = sign(&fleet, &d.image(), &["--resign"]);
    assert!(!out.status.success(), "{}", said(&out));
    assert!(
        said(&out).contains("it holds partitions for arm64 and x86-64"),
        "{}",
        said(&out)
    );
    assert!(fs::read(d.image()).unwrap() == bytes, "the file changed");
}

/// What systemd mounts of a disk is what check judges and sign signs, each case measured with
/// systemd-dissect 252 (tests/tests/dissect.rs): a root partition with GPT's no-auto flag is
/// passed over (its hash tree then has no root: systemd refuses the disk), and a file that
/// starts as a squashfs file system is mounted whole, whatever partition table follows, so a
/// signed DDI whose first bytes are a squashfs superblock is no signed DDI to systemd.
#[test]
fn the_partitions_judged_are_the_ones_systemd_mounts() {
    let d = disk();
    let fleet = key(&d, "fleet");
    let good = fs::read(d.image()).unwrap();

    edit_entries(&d.image(), |e| e[0].attribute_bits |= 1 << 63);
    let out = tool(&["check", d.image().as_str(), "--cert", fleet.1.as_str()]);
    assert_eq!(out.status.code(), Some(2), "{}", said(&out));
    assert!(
        said(&out).contains("systemd refuses it: it has a root-verity partition but no root"),
        "{}",
        said(&out)
    );
    let out = sign(&fleet, &d.image(), &[]);
    assert!(!out.status.success(), "no-auto: signed");

    let mut polyglot = good.clone();
    let mut superblock = [0u8; 96];
    superblock[0..4].copy_from_slice(b"hsqs");
    superblock[28] = 4;
    polyglot[..96].copy_from_slice(&superblock);
    fs::write(d.image(), &polyglot).unwrap();
    let out = sign(&fleet, &d.image(), &[]);
    assert!(!out.status.success(), "polyglot: signed");
    assert!(
        said(&out).contains("would mount the whole file as one file system"),
        "{}",
        said(&out)
    );
    assert!(fs::read(d.image()).unwrap() == polyglot, "the file changed");

    // signed first, then made a polyglot: check judges the squashfs systemd would mount
    fs::write(d.image(), &good).unwrap();
    assert!(sign(&fleet, &d.image(), &[]).status.success());
    let mut signed = fs::read(d.image()).unwrap();
    signed[..96].copy_from_slice(&superblock);
    fs::write(d.image(), &signed).unwrap();
    let out = tool(&["check", d.image().as_str(), "--cert", fleet.1.as_str()]);
    assert_ne!(out.status.code(), Some(0), "{}", said(&out));
    assert!(!said(&out).contains("signed by"), "{}", said(&out));
}

/// What else a signed disk may hold that systemd would mount or take for another file system:
/// each refused by check (exit 2, saying why) and by sign, never "signed". From a review that
/// measured each with systemd-dissect 252: a FAT boot sector in the protective MBR (the whole
/// file mounted as vfat), a LUKS2 second header in the gap before the first partition (the
/// whole file an encrypted volume), 4 KiB appended (room for nilfs2's backup superblock at the
/// end), an unsigned var partition (mounted into the service's tree).
#[test]
fn what_else_a_signed_disk_holds_is_refused() {
    let d = disk();
    let fleet = key(&d, "fleet");
    let unsigned = fs::read(d.image()).unwrap();
    assert!(sign(&fleet, &d.image(), &[]).status.success());
    let signed = fs::read(d.image()).unwrap();
    type Edit = Box<dyn Fn(&mut Vec<u8>)>;
    let edits: [(&str, Edit, &str); 3] = [
        (
            "a FAT boot sector's jump in the MBR",
            Box::new(|b| b[0] = 0xeb),
            "byte 0 lies outside its partition tables",
        ),
        (
            "a LUKS2 second header at 32 KiB",
            Box::new(|b| b[0x8000..0x8006].copy_from_slice(b"SKUL\xba\xbe")),
            "crypto_LUKS signature",
        ),
        (
            "4 KiB appended",
            Box::new(|b| b.extend_from_slice(&[0x34; 4096])),
            "GPT headers",
        ),
    ];
    for (what, edit, why) in edits {
        for (start, signs) in [(&signed, false), (&unsigned, true)] {
            let mut bytes = start.clone();
            edit(&mut bytes);
            fs::write(d.image(), &bytes).unwrap();
            let out = tool(&["check", d.image().as_str(), "--cert", fleet.1.as_str()]);
            assert_eq!(out.status.code(), Some(2), "{what}: {}", said(&out));
            assert!(said(&out).contains(why), "{what}: {}", said(&out));
            if signs {
                let out = sign(&fleet, &d.image(), &[]);
                assert!(!out.status.success(), "{what}: signed");
                assert!(fs::read(d.image()).unwrap() == bytes, "{what}: changed");
            }
        }
    }

    // a var partition in the room a small disk has before its backup table, holding a file
    // system
    let d = disk_with("x86_64-linux", 0);
    assert!(sign(&fleet, &d.image(), &[]).status.success());
    let signed = fs::read(d.image()).unwrap();
    let size = signed.len();
    let table = ddi::read_table(&d.image()).unwrap();
    let end = table.partitions.iter().map(|p| p.range.end).max().unwrap();
    assert!(
        end + 8192 < size as u64 - 33 * 512,
        "room for a var partition"
    );
    let mut bytes = signed.clone();
    bytes[end as usize..end as usize + 4].copy_from_slice(b"hsqs");
    fs::write(d.image(), &bytes).unwrap();
    edit_entries(&d.image(), |e| {
        let mut var = e[0].clone();
        var.partition_type_guid =
            ddi::to_disk(&portable_service_rules::dissect::types::type_of_use("var").unwrap());
        var.unique_partition_guid[0] ^= 0x55;
        var.starting_lba = end / 512;
        var.ending_lba = end / 512 + 15;
        var.partition_name = "var".into();
        e[3] = var;
    });
    let out = tool(&["check", d.image().as_str(), "--cert", fleet.1.as_str()]);
    assert_eq!(out.status.code(), Some(2), "var: {}", said(&out));
    assert!(
        said(&out).contains("also mounts its var partition 4"),
        "var: {}",
        said(&out)
    );
}

/// A usr partition beside the signed root (systemd mounts it over the root's /usr, or with a
/// verity-protected root refuses the disk) and a root partition cut shorter than its squashfs
/// (the file system fails to mount): neither is judged signed.
#[test]
fn a_usr_partition_or_a_root_too_short_is_refused() {
    let d = disk_with("x86_64-linux", 0);
    let fleet = key(&d, "fleet");
    assert!(sign(&fleet, &d.image(), &[]).status.success());
    let signed = fs::read(d.image()).unwrap();
    let table = ddi::read_table(&d.image()).unwrap();
    let end = table.partitions.iter().map(|p| p.range.end).max().unwrap();

    let mut bytes = signed.clone();
    bytes[end as usize..end as usize + 4].copy_from_slice(b"hsqs");
    fs::write(d.image(), &bytes).unwrap();
    let usr = portable_service_rules::dissect::types::type_of(
        portable_service_rules::dissect::Kind::Usr,
        "x86-64",
    )
    .unwrap();
    edit_entries(&d.image(), |e| {
        let mut p = e[0].clone();
        p.partition_type_guid = ddi::to_disk(&usr);
        p.unique_partition_guid[0] ^= 0x55;
        p.starting_lba = end / 512;
        p.ending_lba = end / 512 + 15;
        p.partition_name = "usr-x86-64".into();
        e[3] = p;
    });
    let out = tool(&["check", d.image().as_str(), "--cert", fleet.1.as_str()]);
    assert_eq!(out.status.code(), Some(2), "usr: {}", said(&out));
    assert!(said(&out).contains("usr partition"), "usr: {}", said(&out));

    fs::write(d.image(), &signed).unwrap();
    // the partition ends a sector before its squashfs does
    let root = table.partitions.iter().find(|p| p.number == 1).unwrap();
    let at = root.range.start as usize + 40;
    let used = u64::from_le_bytes(signed[at..at + 8].try_into().unwrap());
    let last = (root.range.start + used).div_ceil(512) - 2;
    edit_entries(&d.image(), |e| e[0].ending_lba = last);
    let out = tool(&["check", d.image().as_str(), "--cert", fleet.1.as_str()]);
    assert_eq!(out.status.code(), Some(2), "short root: {}", said(&out));
    assert!(
        said(&out).contains("systemd fails to mount it")
            || said(&out).contains("lies outside its partition tables"),
        "short root: {}",
        said(&out)
    );
}

/// The table's own bytes, which no signature covers, from a second review measured with
/// systemd-dissect 252: a label spelling ufs's magic at 0x55c and a skipped entry holding a
/// nilfs2 superblock each made systemd mount the whole file as that file system, and bytes after
/// the signature's JSON make systemd refuse the signature. All refused.
#[test]
fn the_table_s_own_bytes_hold_nothing_else() {
    let d = disk();
    let fleet = key(&d, "fleet");
    assert!(sign(&fleet, &d.image(), &[]).status.success());
    let signed = fs::read(d.image()).unwrap();
    let refused = |what: &str, why: &str| {
        let out = tool(&["check", d.image().as_str(), "--cert", fleet.1.as_str()]);
        assert_eq!(out.status.code(), Some(2), "{what}: {}", said(&out));
        assert!(said(&out).contains(why), "{what}: {}", said(&out));
        fs::write(d.image(), &signed).unwrap();
    };
    edit_entries(&d.image(), |e| {
        e[2].partition_name = "root-x86-64-verity\u{119}\u{1954}ig".into();
    });
    refused("a label of other text", "name is not plain ASCII");

    edit_entries(&d.image(), |e| {
        let mut junk = e[0].clone();
        junk.partition_type_guid = [0x34; 16];
        junk.starting_lba = 1;
        junk.ending_lba = 1;
        e[5] = junk;
    });
    refused(
        "an entry libblkid passes over",
        "lies outside its partition tables",
    );

    let table = ddi::read_table(&d.image()).unwrap();
    let sig = table.partitions.iter().find(|p| p.number == 3).unwrap();
    let mut bytes = signed.clone();
    bytes[sig.range.end as usize - 10] = b'x';
    fs::write(d.image(), &bytes).unwrap();
    let out = tool(&["check", d.image().as_str(), "--cert", fleet.1.as_str()]);
    assert_ne!(out.status.code(), Some(0), "{}", said(&out));
    assert!(
        said(&out).contains("bytes after its JSON"),
        "{}",
        said(&out)
    );
}
