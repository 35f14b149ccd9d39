//! Disk images generated from a seed for the differential test of
//! `portable_service_rules::dissect` against systemd-dissect (tests/tests/dissect.rs on this
//! machine, tests/tests/acceptance/ddi.rs in the newest guest): GPT headers and entries, flags,
//! types, architectures, labels, usable ranges, backup headers, and polyglots of a squashfs and
//! a table; and what each side says of one, in comparable words.

use portable_service_rules::ddi::{to_disk, Uuid};
use portable_service_rules::dissect::{self, types, Kind, Refusal, Rules};
use std::path::Path;
use std::process::Command;

const SECTOR: usize = 512;
/// Each generated disk: 5 MiB, its partitions in [`AREAS`] of 512 KiB from 1 MiB on.
const DISK: usize = 5 << 20;
const AREAS: u64 = 6;

/// What systemd-dissect says of an image it dissected but whose root (or usr) file system it
/// could not mount, and what the module says of one whose root holds no file system it knows.
const UNMOUNTABLE: &str = "no file system to mount";

/// What one side says is mounted, in comparable words; `Err` for a refusal.
type Verdict = Result<Vec<String>, String>;

pub fn dissect_binary() -> Option<String> {
    let out = Command::new("systemd-dissect")
        .arg("--version")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version: u32 = text.split_whitespace().nth(1)?.parse().ok()?;
    // the rules modelled: 252's and 262's; between them the module's answers aren't systemd's
    (version == 252 || version >= 262).then(|| version.to_string())
}

/// What systemd-dissect says. Without udev (CI's containers) a partition the kernel added
/// first may lack its /dev node for a moment, and systemd-dissect fails opening it: tried again.
pub fn systemd_says(path: &Path) -> Verdict {
    let mut tries = 0;
    let out = loop {
        let out = Command::new("systemd-dissect")
            .args(["--json=short", "--no-pager"])
            .arg(path)
            .output()
            .expect("systemd-dissect runs");
        let err = String::from_utf8_lossy(&out.stderr);
        tries += 1;
        if tries == 10 || !err.contains("Failed to dissect image") || !err.contains("No such file")
        {
            break out;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    parse_systemd(out.status.success(), &out.stdout, &out.stderr)
}

/// systemd-dissect's answer from its exit status, its JSON and its errors.
pub fn parse_systemd(success: bool, stdout: &[u8], stderr: &[u8]) -> Verdict {
    if !success {
        let err = String::from_utf8_lossy(stderr).trim().to_owned();
        if err.contains("Failed to acquire image metadata") {
            // dissected, then its file system could not be mounted
            return Ok(vec![UNMOUNTABLE.to_owned()]);
        }
        return Err(err);
    }
    let json: serde_json::Value = serde_json::from_slice(stdout).expect("its JSON");
    let mut mounts: Vec<String> = json["mounts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            format!(
                "{} #{} {} {} {} growfs={}",
                m["designator"].as_str().unwrap_or("?"),
                m["partno"],
                m["architecture"].as_str().unwrap_or("-"),
                m["fstype"].as_str().unwrap_or("-"),
                m["rw"].as_str().unwrap_or("?"),
                m["growfs"]
            )
        })
        .collect();
    mounts.sort();
    Ok(mounts)
}

/// The module's verdict; `None` when it can't tell.
pub fn we_say(path: &Path, rules: Rules) -> Option<Verdict> {
    let mut file = std::fs::File::open(path).unwrap();
    match dissect::dissect(&mut file, rules, "x86-64") {
        Ok(d) => {
            let mut mounts: Vec<String> = d
                .mounts
                .iter()
                .map(|m| {
                    format!(
                        "{} #{} {} {} {} growfs={}",
                        m.designator,
                        m.number.map_or("null".into(), |n| n.to_string()),
                        m.arch.unwrap_or("-"),
                        m.fstype.as_deref().unwrap_or("-"),
                        if m.rw { "rw" } else { "ro" },
                        m.growfs
                    )
                })
                .collect();
            mounts.sort();
            // systemd mounts the root and the usr partition: either without a file system fails
            let data = [d.get(Kind::Root), d.get(Kind::Usr)];
            if data.iter().flatten().any(|m| m.fstype.is_none()) {
                return Some(Ok(vec![UNMOUNTABLE.to_owned()]));
            }
            Some(Ok(mounts))
        }
        Err(Refusal::Systemd(why)) => Some(Err(why)),
        Err(Refusal::NoImage) => Some(Err("no image".into())),
        Err(Refusal::Unsure(_)) => None,
    }
}

/// A small squashfs file system, made once. `polyglot`: its first file's data (stored as it is)
/// spans bytes 96 to 64 KiB, which a partition table may then overwrite without harm to it.
pub fn squashfs(polyglot: bool) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    // a root's release file, and a usr partition's (its lib/ is the host's /usr/lib)
    for dir in ["usr/lib", "lib"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
        std::fs::write(root.join(dir).join("os-release"), "ID=test\n").unwrap();
    }
    if polyglot {
        std::fs::write(root.join("0pad"), vec![0xaa; 64 << 10]).unwrap();
    }
    let out = dir.path().join("fs.sqfs");
    let status = Command::new("mksquashfs")
        .arg(&root)
        .arg(&out)
        .args(["-quiet", "-noappend", "-all-root", "-noD", "-no-fragments"])
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::read(out).unwrap()
}

/// A seeded generator's choices.
struct Dice(fastrand::Rng);

impl Dice {
    fn pick<T: Copy>(&mut self, of: &[T]) -> T {
        of[self.0.usize(..of.len())]
    }
    fn chance(&mut self, one_in: u32) -> bool {
        self.0.u32(..one_in) == 0
    }
}

fn type_for(d: &mut Dice) -> Uuid {
    let archs = ["x86-64", "x86", "arm64", "riscv64"];
    let kinds = [
        Kind::Root,
        Kind::Root,
        Kind::Usr,
        Kind::RootVerity,
        Kind::UsrVerity,
    ];
    let uses = [
        "generic", "esp", "home", "srv", "var", "tmp", "swap", "xbootldr",
    ];
    match d.0.u32(..10) {
        0 => types::type_of_use(d.pick(&uses)).unwrap(),
        1 => [0x11; 16],
        _ => types::type_of(d.pick(&kinds), d.pick(&archs)).unwrap(),
    }
}

const CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// One GPT header at `lba` naming entries at `entries_lba`, its CRC made right.
fn header(lba: u64, other: u64, entries_lba: u64, usable: (u64, u64), entries_crc: u32) -> Vec<u8> {
    let mut h = vec![0u8; SECTOR];
    h[0..8].copy_from_slice(b"EFI PART");
    put_u32(&mut h, 8, 0x0001_0000);
    put_u32(&mut h, 12, 92);
    put_u64(&mut h, 24, lba);
    put_u64(&mut h, 32, other);
    put_u64(&mut h, 40, usable.0);
    put_u64(&mut h, 48, usable.1);
    h[56..72].copy_from_slice(&[0x42; 16]);
    put_u64(&mut h, 72, entries_lba);
    put_u32(&mut h, 80, 128);
    put_u32(&mut h, 84, 128);
    put_u32(&mut h, 88, entries_crc);
    let crc = CRC32.checksum(&h[..92]);
    put_u32(&mut h, 16, crc);
    h
}

/// The file systems a generated disk is made of: a squashfs for its partitions, and for its
/// start a squashfs that leaves room for a table ([`squashfs`]) or an ext4 of 1 MiB.
pub struct Parts {
    pub fs: Vec<u8>,
    pub polyglot: Vec<u8>,
    pub ext4: Vec<u8>,
}

impl Parts {
    pub fn new() -> Parts {
        Parts {
            fs: squashfs(false),
            polyglot: squashfs(true),
            ext4: ext4(),
        }
    }
}

impl Default for Parts {
    fn default() -> Self {
        Parts::new()
    }
}

/// An ext4 file system of 1 MiB holding a release file: its first KiB is free for a protective
/// MBR and a GPT header.
fn ext4() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("usr/lib")).unwrap();
    std::fs::write(root.join("usr/lib/os-release"), "ID=test\n").unwrap();
    let out = dir.path().join("fs.ext4");
    std::fs::File::create(&out)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let status = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-b", "4096", "-d"])
        .arg(&root)
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::read(out).unwrap()
}

/// A generated disk from `seed`, of `parts`.
pub fn disk(seed: u64, parts: &Parts) -> Vec<u8> {
    let (fs, polyglot) = (&parts.fs, &parts.polyglot);
    let mut d = Dice(fastrand::Rng::with_seed(seed));
    let mut img = vec![0u8; DISK];
    let sectors = (DISK / SECTOR) as u64;
    // the protective MBR
    img[446 + 4] = if d.chance(20) { 0x83 } else { 0xee };
    put_u32(&mut img, 446 + 8, 1);
    put_u32(&mut img, 446 + 12, (sectors - 1) as u32);
    img[510] = 0x55;
    img[511] = 0xaa;
    // entries: 1 to 5, each over an area of its own, now and then over another's (most
    // holding the file system)
    let mut entries = vec![0u8; 128 * 128];
    let labels = [
        "",
        "root-x86-64",
        "v1",
        "v2",
        "root_1.10",
        "root_1.9",
        "_empty",
    ];
    let flag_sets = [0u64, 1 << 60, 1 << 63, 1 << 59, (1 << 60) | (1 << 59)];
    let mut usable = (34u64, sectors - 34);
    if d.chance(8) {
        usable = (34 + 1024, sectors - 34); // the first area lies before the usable range
    }
    for slot in 0..d.0.usize(1..=5) {
        let e = &mut entries[slot * 128..slot * 128 + 128];
        e[0..16].copy_from_slice(&to_disk(&type_for(&mut d)));
        e[16..32].copy_from_slice(&d.0.u128(..).to_le_bytes());
        let area = if d.chance(12) {
            d.0.u64(0..AREAS)
        } else {
            slot as u64
        };
        put_u64(e, 32, 2048 + area * 1024);
        let end = if d.chance(15) {
            2048 + area * 1024 - 5
        } else {
            2048 + area * 1024 + 1023
        };
        put_u64(e, 40, end);
        put_u64(e, 48, d.pick(&flag_sets));
        for (i, u) in d.pick(&labels).encode_utf16().enumerate() {
            e[56 + 2 * i..58 + 2 * i].copy_from_slice(&u.to_le_bytes());
        }
    }
    for area in 0..AREAS {
        if !d.chance(4) {
            let at = (2048 + area * 1024) as usize * SECTOR;
            img[at..at + fs.len()].copy_from_slice(fs);
        }
    }
    let ecrc = CRC32.checksum(&entries);
    let mut primary = header(1, sectors - 1, 2, usable, ecrc);
    match d.0.u32(..12) {
        0 => put_u64(&mut primary, 24, 7), // my_lba wrong, CRC made right again
        1 => primary[16] ^= 1,             // CRC wrong
        2 => put_u32(&mut primary, 88, ecrc ^ 1),
        _ => {}
    }
    if primary[16..20] != [0; 4] && d.chance(3) {
        primary[16..20].fill(0);
        let crc = CRC32.checksum(&primary[..92]);
        put_u32(&mut primary, 16, crc);
    }
    img[SECTOR..2 * SECTOR].copy_from_slice(&primary);
    img[2 * SECTOR..2 * SECTOR + entries.len()].copy_from_slice(&entries);
    // the backup: the same, or naming other entries (a second table the primary hides)
    let mut backup_entries = entries.clone();
    if d.chance(3) {
        backup_entries[0..16]
            .copy_from_slice(&to_disk(&types::type_of(Kind::Root, "x86-64").unwrap()));
        put_u64(&mut backup_entries, 32, 2048 + 5 * 1024);
        put_u64(&mut backup_entries, 40, 2048 + 5 * 1024 + 1023);
    }
    let bcrc = CRC32.checksum(&backup_entries);
    let blba = sectors - 1 - 32;
    let backup = header(sectors - 1, 1, blba, usable, bcrc);
    let at = blba as usize * SECTOR;
    img[at..at + backup_entries.len()].copy_from_slice(&backup_entries);
    img[DISK - SECTOR..].copy_from_slice(&backup);
    // a polyglot: the file system at the start, the table inside its first file's data
    if d.chance(10) {
        let table = img[SECTOR..2 * SECTOR + entries.len()].to_vec();
        img[..polyglot.len()].copy_from_slice(polyglot);
        img[SECTOR..2 * SECTOR + entries.len()].copy_from_slice(&table);
        img[510] = 0x55;
        img[511] = 0xaa;
        img[446 + 4] = 0xee;
    } else if d.chance(10) {
        // an ext4 at the start: its superblock lies where entries usually do, so the primary
        // header names entries near the disk's end
        let mbr = img[..SECTOR].to_vec();
        img[..parts.ext4.len()].copy_from_slice(&parts.ext4);
        img[..SECTOR].copy_from_slice(&mbr);
        let elba = sectors - 1 - 64;
        let at = elba as usize * SECTOR;
        img[at..at + entries.len()].copy_from_slice(&entries);
        img[SECTOR..2 * SECTOR].copy_from_slice(&header(1, sectors - 1, elba, usable, ecrc));
    }
    img
}
