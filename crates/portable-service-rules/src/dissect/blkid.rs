//! libblkid's side of dissecting a file, read from util-linux 2.38.1 (Debian 12, systemd 252)
//! and 2.41 (systemd 262's hosts): which file system superblock it finds at an offset, and the
//! GPT partition table it reads. Facts and their sources: `../shared/notes/dissect-rules.md`.
//!
//! Superblocks: the file systems this project meets or that a polyglot is made of (squashfs,
//! erofs, ext2/3/4) and the short magics a GPT's own bytes can hit by chance (minix's two bytes
//! fall on the first partition's UUID) are decided as libblkid's probers decide them; any other magic libblkid probes is reported as
//! [`Found::Unsure`], since whether its prober takes the bytes needs the prober's full checks:
//! a caller refuses to judge such a file rather than guess.

use super::Rules;
use std::io::{Read, Seek, SeekFrom};

/// What libblkid makes of the superblocks at one offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    Nothing,
    /// One file system (or encrypted volume) systemd would mount there: its TYPE.
    FileSystem(&'static str),
    /// Signatures libblkid takes for a RAID member, or several file systems at once: it reports
    /// no partition table, or fails (systemd: "no suitable partition table or file system").
    Refused(String),
    /// A magic of a type whose prober isn't modelled here.
    Unsure(&'static str),
}

/// How much of a file the probers here read: btrfs's superblock at 64 KiB is the farthest.
pub const PROBE_BYTES: usize = 0x10040 + 4096;

/// A magic libblkid probes: type, whether it is a file system or crypto (what systemd mounts
/// whole), the smallest device it's probed on, and each (offset, bytes) it looks for.
struct Magic {
    name: &'static str,
    mounted: bool,
    raid: bool,
    min_size: u64,
    at: &'static [(usize, &'static [u8])],
}

const fn m(name: &'static str, min_size: u64, at: &'static [(usize, &'static [u8])]) -> Magic {
    Magic {
        name,
        mounted: true,
        raid: false,
        min_size,
        at,
    }
}

/// The magics of libblkid 2.38.1's probers that lie in [`PROBE_BYTES`] and that this module
/// doesn't decide itself (squashfs, erofs, minix and ext are in [`probe_at`]). RAID and LVM members
/// make libblkid ignore partition tables.
#[rustfmt::skip]
const MAGICS: &[Magic] = &[
    m("xfs", 0, &[(0, b"XFSB")]),
    m("btrfs", 1 << 20, &[(0x10040, b"_BHRfS_M")]),
    m("f2fs", 0, &[(0x400, b"\x10\x20\xf5\xf2")]),
    m("vfat", 0, &[(0x52, b"MSWIN"), (0x52, b"FAT32   "), (0x36, b"MSDOS"), (0x36, b"FAT16   "), (0x36, b"FAT12   "), (0x36, b"FAT     ")]),
    m("iso9660", 0, &[(0x8001, b"CD001"), (0x8009, b"CDROM")]),
    m("udf", 0, &[(0x8001, b"BEA01"), (0x8001, b"BOOT2"), (0x8001, b"CDW02"), (0x8001, b"NSR02"), (0x8001, b"NSR03"), (0x8001, b"TEA01")]),
    m("crypto_LUKS", 0, &[(0, b"LUKS\xba\xbe"), (0x4000, b"SKUL\xba\xbe")]),
    m("DM_verity_hash", 0, &[(0, b"verity\0\0")]),
    m("DM_integrity", 0, &[(0, b"integrt\0")]),
    m("BitLocker", 0, &[(3, b"-FVE-FS-")]),
    m("exfat", 0, &[(3, b"EXFAT   ")]),
    m("ntfs", 0, &[(3, b"NTFS    ")]),
    m("apfs", 0, &[(32, b"NXSB")]),
    m("bfs", 0, &[(0, b"\xce\xfa\xad\x1b")]),
    m("cramfs", 0, &[(0, b"\x45\x3d\xcd\x28"), (0, b"\x28\xcd\x3d\x45")]),
    m("romfs", 0, &[(0, b"-rom1fs-")]),
    m("exfs", 0, &[(0, b"EXFS")]),
    m("ubifs", 0, &[(0, b"\x31\x18\x10\x06")]),
    m("ReFS", 0, &[(0, b"\0\0\0ReFS\0")]),
    m("oracleasm", 0, &[(32, b"ORCLDISK")]),
    m("hfsplus", 0, &[(0x400, b"BD"), (0x400, b"H+"), (0x400, b"HX")]),
    m("befs", 1440 << 10, &[(32, b"BFS1"), (32, b"1SFB"), (0x220, b"BFS1"), (0x220, b"1SFB")]),
    m("hpfs", 0, &[(0x2000, b"\x49\xe8\x95\xf9")]),
    m("vxfs", 0, &[(0x400, b"\xf5\xfc\x01\xa5"), (0x2000, b"\xa5\x01\xfc\xf5")]),
    m("xenix", 0, &[(0x7f8, b"\x2b\x55\x44"), (0x7f8, b"\x44\x55\x2b")]),
    m("nss", 0, &[(0x1000, b"SPB5")]),
    m("reiserfs", 128 << 10, &[(0x2034, b"ReIsErFs"), (0x10034, b"ReIsEr2Fs"), (0x10034, b"ReIsEr3Fs"), (0x10034, b"ReIsErFs"), (0x2014, b"ReIsErFs")]),
    m("reiser4", 128 << 10, &[(0x10000, b"ReIsEr4")]),
    m("jfs", 16 << 20, &[(0x8000, b"JFS1")]),
    m("drbdproxy_datalog", 16 << 10, &[(0, b"DRBDdlh*")]),
    Magic { name: "LVM2_member", mounted: false, raid: true, min_size: 0, at: &[(0x218, b"LVM2 001"), (0x018, b"LVM2 001"), (0x418, b"LVM2 001"), (0x618, b"LVM2 001")] },
    Magic { name: "LVM1_member", mounted: false, raid: true, min_size: 0, at: &[(0, b"HM")] },
    Magic { name: "ubi", mounted: false, raid: true, min_size: 0, at: &[(0, b"UBI#")] },
    Magic { name: "VMFS_volume_member", mounted: false, raid: true, min_size: 0, at: &[(0x100000, b"\x0d\xd0\x01\xc0")] },
];

/// The file systems systemd 262 lets libblkid look for (its `probe_blkid_filter()`).
const PROBED_BY_262: [&str; 9] = [
    "btrfs",
    "erofs",
    "ext4",
    "f2fs",
    "squashfs",
    "vfat",
    "xfs",
    "crypto_LUKS",
    "swap",
];

fn u16_le(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_le(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_le(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

pub fn has(head: &[u8], at: usize, magic: &[u8]) -> bool {
    head.get(at..at + magic.len()) == Some(magic)
}

/// squashfs and squashfs3: "hsqs" (little-endian) at 0 is squashfs from version 4 on and
/// squashfs3 before; "sqsh" (big-endian) is squashfs3.
fn squashfs(head: &[u8]) -> Option<&'static str> {
    if head.len() < 96 {
        return None;
    }
    if has(head, 0, b"hsqs") {
        return Some(if u16_le(head, 28) >= 4 {
            "squashfs"
        } else {
            "squashfs3"
        });
    }
    let major_be = u16::from_be_bytes([head[28], head[29]]);
    (has(head, 0, b"sqsh") && major_be < 4).then_some("squashfs3")
}

/// minix's superblock at 1 KiB, by libblkid's sanity checks (its magic is two bytes, which a
/// random partition UUID matches one time in 16,384).
fn minix(head: &[u8]) -> bool {
    let Some(sb) = head.get(0x400..0x420) else {
        return false;
    };
    let v12 = |m: u16| matches!(m, 0x137f | 0x138f | 0x2468 | 0x2478);
    let magic = u16_le(sb, 16);
    let (swap, version) = if v12(magic) {
        (false, if magic >= 0x2468 { 2 } else { 1 })
    } else if v12(magic.swap_bytes()) {
        (true, if magic.swap_bytes() >= 0x2468 { 2 } else { 1 })
    } else if u16_le(sb, 24) == 0x4d5a {
        (false, 3)
    } else {
        return false;
    };
    let r16 = |at: usize| {
        let v = u16_le(sb, at);
        u64::from(if swap { v.swap_bytes() } else { v })
    };
    let r32 = |at: usize| {
        let v = u32_le(sb, at);
        u64::from(if swap { v.swap_bytes() } else { v })
    };
    let (zones, ninodes, imaps, zmaps, firstz, log_zone) = if version == 3 {
        (r32(20), r32(0), r16(6), r16(8), r16(10), r16(12))
    } else {
        let state = r16(18);
        if state & 3 != state {
            return false;
        }
        let zones = if version == 2 { r32(20) } else { r16(2) };
        (zones, r16(0), r16(4), r16(6), r16(8), r16(10))
    };
    log_zone == 0
        && ninodes != 0
        && ninodes != u64::from(u32::MAX)
        && imaps * 8192 > ninodes
        && firstz <= zones
        && zmaps * 8192 > zones - firstz
        && !has(head, 0x438, b"\x53\xef")
}

/// The ext file systems libblkid's five ext probers find in `head` (jbd, an external journal,
/// is no file system systemd mounts): they share the magic and tell ext2, ext3, ext4 and
/// ext4dev apart by their feature flags; 2.41 (262's hosts) also checks the superblock's
/// checksum when it has one.
fn ext(head: &[u8], rules: Rules) -> Vec<&'static str> {
    let Some(sb) = head.get(0x400..0x800) else {
        return Vec::new();
    };
    if u16_le(sb, 0x38) != 0xef53 {
        return Vec::new();
    }
    let (compat, incompat, ro) = (u32_le(sb, 0x5c), u32_le(sb, 0x60), u32_le(sb, 0x64));
    const METADATA_CSUM: u32 = 0x400;
    const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);
    if rules == Rules::V262
        && ro & METADATA_CSUM != 0
        && !CRC32C.checksum(&sb[..0x3fc]) != u32_le(sb, 0x3fc)
    {
        return Vec::new();
    }
    // features ext2 and ext3 know (sparse_super, large_file, btree_dir; filetype, meta_bg, and
    // ext3's recover)
    let ro_beyond = ro & !0x7 != 0;
    let beyond_ext2 = incompat & !0x12 != 0;
    let beyond_ext3 = incompat & !0x16 != 0;
    let (journal_dev, test_fs, journal) = (
        incompat & 0x8 != 0,
        u32_le(sb, 0x160) & 0x4 != 0,
        compat & 0x4 != 0,
    );
    let mut found = Vec::new();
    if !journal_dev && test_fs {
        found.push("ext4dev");
    }
    if !journal_dev && !test_fs && (ro_beyond || beyond_ext3) {
        found.push("ext4");
    }
    if journal && !ro_beyond && !beyond_ext3 {
        found.push("ext3");
    }
    if !journal && !ro_beyond && !beyond_ext2 {
        found.push("ext2");
    }
    found
}

/// What libblkid finds in `head`, the first bytes of a device of `size` bytes (a whole file, or
/// a partition), probing as systemd's `rules` have it probe.
pub fn probe_at(head: &[u8], size: u64, rules: Rules) -> Found {
    let probed = |name: &str| rules == Rules::V252 || PROBED_BY_262.contains(&name);
    let mut found: Vec<&'static str> = Vec::new();
    if let Some(t) = squashfs(head).filter(|t| probed(t)) {
        found.push(t);
    }
    if has(head, 0x400, b"\xe2\xe1\xf5\xe0") && probed("erofs") {
        found.push("erofs");
    }
    if minix(head) && probed("minix") {
        found.push("minix");
    }
    found.extend(ext(head, rules).into_iter().filter(|t| probed(t)));
    let mut unsure = None;
    for magic in MAGICS {
        let hit = size >= magic.min_size && magic.at.iter().any(|(at, b)| has(head, *at, b));
        if !hit || !probed(magic.name) || !(magic.mounted || magic.raid) {
            continue;
        }
        if magic.raid {
            return Found::Refused(format!(
                "it carries a {} signature, for which libblkid ignores partition tables",
                magic.name
            ));
        }
        unsure.get_or_insert(magic.name);
    }
    // beside a file system decided here, a magic only its full prober would confirm can at
    // worst make libblkid call the file ambivalent, which systemd refuses to use: fail-safe
    match found[..] {
        [] => unsure.map_or(Found::Nothing, Found::Unsure),
        [one] => Found::FileSystem(one),
        _ => Found::Refused(format!(
            "it is at once a {} file system: libblkid calls that ambivalent",
            found.join(" and a ")
        )),
    }
}

/// Reads up to [`PROBE_BYTES`] of `file` from `at`, no further than `end`.
pub fn head(file: &mut (impl Read + Seek), at: u64, end: u64) -> std::io::Result<Vec<u8>> {
    let len = end.saturating_sub(at).min(PROBE_BYTES as u64);
    let mut buf = Vec::with_capacity(len as usize);
    file.seek(SeekFrom::Start(at))?;
    file.take(len).read_to_end(&mut buf)?;
    Ok(buf)
}

/// The squashfs file system's length (its superblock's bytes_used), if `head` starts one.
pub fn squashfs_len(head: &[u8]) -> Option<u64> {
    (squashfs(head) == Some("squashfs")).then(|| u64_le(head, 40))
}
