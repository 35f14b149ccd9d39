//! What systemd's dissect code (systemd-dissect, and portabled when it attaches an image) mounts
//! from an image file, decided from the file's bytes by the same rules, so that `check` and
//! `sign` judge the partition a host runs and not another: libblkid's first ([`blkid`]: a file
//! system it finds at the file's start makes the whole file that file system, whatever table
//! follows; [`gpt`]: which table it reads), then systemd's choice of partitions ([`choose`]).
//!
//! Two sets of rules, 252's and 262's (`../shared/notes/dissect-rules.md`); versions before 252
//! are judged by 252's. Where this module can't know what systemd does, it says so
//! ([`Refusal::Unsure`]) rather than guess. Proven against systemd-dissect itself by
//! tests/tests/dissect.rs.

pub mod blkid;
mod choose;
pub mod gpt;
pub mod types;

use crate::ddi::Uuid;
use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
pub use types::Kind;

/// Whose rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rules {
    V252,
    V262,
}

impl Rules {
    pub fn of(systemd: u32) -> Rules {
        if systemd >= 262 {
            Rules::V262
        } else {
            Rules::V252
        }
    }
}

/// One thing systemd mounts (or sets up) of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub kind: Kind,
    /// systemd-dissect's name for it: the kind's, or for a partition of another architecture
    /// left over, its slot's ("root-other-verity"), which systemd doesn't use.
    pub designator: String,
    /// The partition's number; `None` for a file that is one file system.
    pub number: Option<u32>,
    pub arch: Option<&'static str>,
    /// What libblkid finds in it (for verity and signature partitions, systemd's name).
    pub fstype: Option<String>,
    pub rw: bool,
    pub growfs: bool,
    pub uuid: Option<Uuid>,
    pub label: Option<String>,
    /// Bytes, in the file.
    pub range: Range<u64>,
}

/// Why an image gets no verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// systemd refuses the image too (or mounts nothing of it).
    Systemd(String),
    /// What systemd does with it isn't known here.
    Unsure(String),
    /// No file system libblkid knows and no partition table: no image at all.
    NoImage,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Refusal::Systemd(why) => write!(f, "systemd refuses it: {why}"),
            Refusal::Unsure(why) => write!(f, "what systemd makes of it can't be told here: {why}"),
            Refusal::NoImage => write!(
                f,
                "it holds no file system libblkid knows and no partition table"
            ),
        }
    }
}

/// An image as systemd dissects it.
#[derive(Debug, Clone, Default)]
pub struct Dissected {
    /// The whole file is one file system (systemd's "single file system" image).
    pub whole: bool,
    /// What systemd mounts: the root or usr partition, their verity and signature partitions.
    pub mounts: Vec<Mount>,
    /// Every partition libblkid lists (for a disk image).
    pub entries: Vec<gpt::Entry>,
}

impl Dissected {
    /// What systemd uses as `kind`.
    pub fn get(&self, kind: Kind) -> Option<&Mount> {
        self.mounts
            .iter()
            .find(|m| m.kind == kind && m.designator == kind.name())
    }
}

/// The sector libblkid reads a GPT in (252; see [`gpt::larger_sector`] for 262).
const SECTOR: u64 = 512;

/// The kernel's limit on partition numbers (its `DISK_MAX_PARTS`): systemd 252 adds every
/// partition libblkid lists with BLKPG, and one numbered past it fails the image (measured).
const MAX_PARTITIONS: u32 = 256;

/// Signatures libblkid looks for at offsets past the first bytes: LUKS2's second header at each
/// of its places (then the whole file is an encrypted volume), and VMFS's volume header (a RAID
/// member: no partition table).
const FAR: [(u64, &[u8], &str); 9] = [
    (0x8000, b"SKUL\xba\xbe", "crypto_LUKS"),
    (0x10000, b"SKUL\xba\xbe", "crypto_LUKS"),
    (0x20000, b"SKUL\xba\xbe", "crypto_LUKS"),
    (0x40000, b"SKUL\xba\xbe", "crypto_LUKS"),
    (0x80000, b"SKUL\xba\xbe", "crypto_LUKS"),
    (0x100000, b"SKUL\xba\xbe", "crypto_LUKS"),
    (0x200000, b"SKUL\xba\xbe", "crypto_LUKS"),
    (0x400000, b"SKUL\xba\xbe", "crypto_LUKS"),
    (0x100000, b"\x0d\xd0\x01\xc0", "VMFS_volume_member"),
];

/// A far signature of `file` (`size` bytes), if one is there.
fn far_signature(
    file: &mut (impl Read + Seek),
    size: u64,
) -> std::io::Result<Option<&'static str>> {
    for (at, magic, name) in FAR {
        if at + magic.len() as u64 > size {
            continue;
        }
        let mut buf = vec![0u8; magic.len()];
        file.seek(SeekFrom::Start(at))?;
        file.read_exact(&mut buf)?;
        if buf == magic {
            return Ok(Some(name));
        }
    }
    Ok(None)
}

/// Partition tables libblkid looks for before GPT, each of which systemd refuses.
const OTHER_TABLES: [(usize, &[u8], &str); 3] = [
    (0, b"\x0b\xe5\xa9\x41", "SGI"),
    (0, b"\xc9\xc2\xd4\xc1", "AIX"),
    (508, b"\xda\xbe", "Sun"),
];

/// Dissects the image read through `file` as systemd's `rules` do on a host of `host`
/// (systemd's name of its architecture: x86-64, arm64, ...).
pub fn dissect(
    file: &mut (impl Read + Seek),
    rules: Rules,
    host: &str,
) -> Result<Dissected, Refusal> {
    let io = |e: std::io::Error| Refusal::Unsure(format!("it can't be read: {e}"));
    let size = file.seek(SeekFrom::End(0)).map_err(io)?;
    let head = blkid::head(file, 0, size).map_err(io)?;
    match blkid::probe_at(&head, size, rules) {
        blkid::Found::FileSystem(fstype) => return Ok(whole(fstype, size)),
        blkid::Found::Refused(why) => return Err(Refusal::Systemd(why)),
        blkid::Found::Unsure(t) => {
            return Err(Refusal::Unsure(format!(
                "it holds a {t} signature where libblkid looks for one; were it a {t} file \
                 system, systemd would mount the whole file as one"
            )))
        }
        blkid::Found::Nothing => {}
    }
    if let Some(t) = far_signature(file, size).map_err(io)? {
        return Err(Refusal::Unsure(format!(
            "it holds a {t} signature where libblkid looks for one; were it one, systemd would \
             not read its partitions"
        )));
    }
    if let Some((_, _, name)) = OTHER_TABLES
        .iter()
        .find(|(at, m, _)| blkid::has(&head, *at, m))
    {
        return Err(Refusal::Unsure(format!(
            "it starts like a{} {name} partition table, which libblkid reads before GPT",
            if *name == "AIX" { "n" } else { "" }
        )));
    }
    if rules == Rules::V262 {
        if let Some(sector) = gpt::larger_sector(&head) {
            return Err(Refusal::Unsure(format!(
                "its GPT is one of {sector}-byte sectors, which systemd 262 reads (it probes the \
                 sector size) and which isn't modelled here"
            )));
        }
    }
    let entries = match gpt::read(file, size) {
        gpt::Table::Gpt { entries, .. } => entries,
        gpt::Table::NotGpt { mbr: true } => {
            return Err(Refusal::Unsure(
                "it has an MBR partition table without a GPT: check reads GPT disks".into(),
            ))
        }
        gpt::Table::NotGpt { mbr: false } => return Err(Refusal::NoImage),
        gpt::Table::Damaged => {
            return Err(Refusal::Systemd(
                "both its GPT headers are damaged: libblkid reports only a protective MBR".into(),
            ))
        }
        gpt::Table::Broken(why) => return Err(Refusal::Systemd(why)),
    };
    if let Some(e) = entries.iter().find(|e| e.number >= MAX_PARTITIONS) {
        return Err(Refusal::Systemd(format!(
            "it lists partition {}: the kernel makes no device past partition {}, and systemd \
             adds one for every partition",
            e.number,
            MAX_PARTITIONS - 1
        )));
    }
    overlaps(&entries)?;
    let mut mounts = choose::choose(&entries, rules, host)?;
    for m in &mut mounts {
        if m.fstype.is_none() {
            let head = blkid::head(file, m.range.start, m.range.end).map_err(io)?;
            m.fstype = match blkid::probe_at(&head, m.range.end - m.range.start, rules) {
                blkid::Found::FileSystem(t) => Some(t.to_owned()),
                _ => None,
            };
        }
        // a file system that is read-only by its kind is mounted so, and never grown
        if matches!(m.fstype.as_deref(), Some(t) if read_only_kind(t)) {
            m.rw = false;
        }
        m.growfs &= m.rw;
    }
    Ok(Dissected {
        whole: false,
        mounts,
        entries,
    })
}

fn whole(fstype: &'static str, size: u64) -> Dissected {
    Dissected {
        whole: true,
        mounts: vec![Mount {
            kind: Kind::Root,
            designator: "root".into(),
            number: None,
            arch: None,
            fstype: Some(fstype.to_owned()),
            rw: !read_only_kind(fstype),
            growfs: false,
            uuid: None,
            label: None,
            range: 0..size,
        }],
        entries: Vec::new(),
    }
}

/// File systems that can't be written (systemd's `fstype_is_ro()`).
fn read_only_kind(fstype: &str) -> bool {
    matches!(fstype, "squashfs" | "squashfs3" | "erofs" | "iso9660")
}

/// Partitions that overlap, one of them of a kind systemd uses: systemd adds each partition's
/// device itself and takes the refusal of an overlapping one for the kernel having added it
/// first; whether its device then exists depends on that race (measured on 252: "Failed to
/// dissect image: No such file or directory" when the kernel hadn't).
fn overlaps(entries: &[gpt::Entry]) -> Result<(), Refusal> {
    for (i, a) in entries.iter().enumerate() {
        for b in &entries[i + 1..] {
            let used = |e: &gpt::Entry| types::kind_of(&e.type_uuid).is_some();
            if a.range.start < b.range.end && b.range.start < a.range.end && (used(a) || used(b)) {
                return Err(Refusal::Unsure(format!(
                    "its partitions {} and {} overlap: whether systemd finds the second's device \
                     depends on a race with the kernel",
                    a.number, b.number
                )));
            }
        }
    }
    Ok(())
}

/// What check and sign ask of a disk beyond systemd's rules, so that what they judge is all
/// libblkid and the kernel can find in it: its two GPTs agree (the kernel, whose partition
/// devices systemd may take, reads a table by other rules than libblkid), and every byte
/// outside the tables and the partitions systemd mounts is zero, as portableService writes
/// them: signatures libblkid finds anywhere in a file (a FAT boot sector in the MBR, nilfs2's
/// backup superblock at the end, zfs's labels) would make systemd mount the whole file instead,
/// and only some are modelled here. A naked file system needs neither.
pub fn vouch(file: &mut (impl Read + Seek), d: &Dissected) -> Result<(), Refusal> {
    if d.whole {
        return Ok(());
    }
    let io = |e: std::io::Error| Refusal::Unsure(format!("it can't be read: {e}"));
    let size = file.seek(SeekFrom::End(0)).map_err(io)?;
    let unsure = |why: String| Refusal::Unsure(why);
    let agreed = gpt::agreeing(file, size).map_err(unsure)?;
    let mounted: Vec<&Mount> = d
        .mounts
        .iter()
        .filter(|m| m.designator == m.kind.name())
        .collect();
    // the protective MBR's first entry and its signature, both 92-byte headers, and in each
    // entry array the entries of the partitions systemd mounts: every other byte must be zero
    let mut kept = vec![446..462, 510..512, SECTOR..SECTOR + 92];
    kept.push(agreed.backup_header..agreed.backup_header + 92);
    for m in &mounted {
        let n = u64::from(m.number.unwrap_or(1) - 1);
        for array in agreed.arrays {
            let at = array + n * 128;
            kept.push(at..at + 128);
            let mut entry = [0u8; 128];
            file.seek(SeekFrom::Start(at)).map_err(io)?;
            file.read_exact(&mut entry).map_err(io)?;
            if !gpt::plain_name(&entry[56..]) {
                return Err(Refusal::Unsure(format!(
                    "partition {}'s name is not plain ASCII: a name is signed by nothing, and \
                     other text can spell a file system signature libblkid probes for",
                    n + 1
                )));
            }
        }
        kept.push(m.range.clone());
    }
    kept.sort_by_key(|r| r.start);
    let mut at = 0;
    for r in kept.iter().chain(std::iter::once(&(size..size))) {
        if r.start > at {
            if let Some(x) = first_non_zero(file, at..r.start).map_err(io)? {
                return Err(Refusal::Unsure(format!(
                    "byte {x} lies outside its partition tables and the partitions systemd \
                     mounts and is not zero: libblkid may find a file system signature there \
                     (then systemd mounts the whole file as one), which check can't rule out"
                )));
            }
        }
        at = at.max(r.end);
    }
    Ok(())
}

/// The offset of the first byte in `range` of `file` that isn't zero.
pub fn first_non_zero(
    file: &mut (impl Read + Seek),
    range: Range<u64>,
) -> std::io::Result<Option<u64>> {
    let mut buf = vec![0u8; 64 << 10];
    file.seek(SeekFrom::Start(range.start))?;
    let mut at = range.start;
    while at < range.end {
        let n = (range.end - at).min(buf.len() as u64) as usize;
        file.read_exact(&mut buf[..n])?;
        if let Some(i) = buf[..n].iter().position(|b| *b != 0) {
            return Ok(Some(at + i as u64));
        }
        at += n as u64;
    }
    Ok(None)
}
