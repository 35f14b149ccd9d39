//! Discoverable Disk Images: one GPT disk file holding the image's file system (the root
//! partition), its dm-verity hash tree (root-verity) and, once signed, the root hash's signature
//! (root-verity-sig), as the UAPI group's Discoverable Partitions Specification types them and
//! systemd's dissect code reads them. The builder writes the table, `sign` adds the signature
//! partition to it, `check` reads it: all three through this module.
//!
//! The layout is fixed so that a rebuild gives the same bytes: 512-byte sectors, the table of 128
//! entries, the root partition at 1 MiB, the hash tree right after it, then 16 KiB kept free for
//! the signature (what systemd-repart gives it), then the backup table. Every partition carries
//! GPT's read-only flag (systemd 262 refuses a DDI without it: `../shared/notes/ddi.md`). The
//! root and verity partitions' UUIDs are the first and last 128 bits of the root hash, which is
//! how systemd pairs them with a root hash; the disk's GUID and the signature partition's UUID are
//! derived from the root hash and the signature. The table itself is `gptman`'s.

use anyhow::{bail, ensure, Context, Result};
use camino::Utf8Path;
use gptman::{GPTHeader, GPTPartitionEntry, GPT};
use sha2::{Digest, Sha256};
use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::Range;

pub const SECTOR: u64 = 512;
/// Where the root partition starts, as partitioning tools align the first one.
pub const FIRST_PARTITION: u64 = 1 << 20;
/// The room kept for the signature partition: its JSON with a PKCS#7 signature of one signer
/// is 1 to 3 KiB; systemd-repart makes this partition 16 KiB.
pub const SIGNATURE_ROOM: u64 = 16 * 1024;
/// Partitions start and end on 4096 bytes: dm-verity's block.
const ALIGN: u64 = 4096;
/// The smallest DDI written here: libblkid before util-linux 2.38 takes a device of 1440 KiB or
/// less for a floppy and looks for no GPT on it, so a systemd linked with it finds no partition
/// table in a smaller DDI (measured: 249 on Debian 11's libblkid 2.36.1 refused a 1 MiB
/// extension, "Couldn't identify a suitable partition table or file system"; Debian 12's 2.38.1
/// reads it). A smaller image gets free space before its backup table.
pub const MIN_SIZE: u64 = 1440 * 1024 + ALIGN;
/// The table's entries (128 of 128 bytes) and the header after them.
const TABLE_SECTORS: u64 = 128 * 128 / SECTOR;
/// GPT attribute bit 60: read-only.
pub const READ_ONLY: u64 = 1 << 60;

/// A UUID in the order it is written as a string (the GPT stores its first three fields
/// little-endian: see [`to_disk`]).
pub type Uuid = [u8; 16];

/// The three partition types of one architecture, and the name systemd gives the architecture
/// (its labels are `root-<name>`, `root-<name>-verity`, `root-<name>-verity-sig`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Architecture {
    pub name: &'static str,
    /// The Nix system whose images are for this architecture.
    pub nix_system: &'static str,
    pub root: Uuid,
    pub verity: Uuid,
    pub signature: Uuid,
}

const fn uuid(s: &str) -> Uuid {
    let b = s.as_bytes();
    let mut out = [0u8; 16];
    let (mut i, mut n) = (0, 0);
    while i < b.len() {
        if b[i] != b'-' {
            let hi = hex_digit(b[i]);
            let lo = hex_digit(b[i + 1]);
            out[n] = hi * 16 + lo;
            n += 1;
            i += 1;
        }
        i += 1;
    }
    assert!(n == 16);
    out
}

const fn hex_digit(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => panic!("not a lower-case hex digit"),
    }
}

const fn arch(name: &'static str, nix_system: &'static str, types: [&str; 3]) -> Architecture {
    Architecture {
        name,
        nix_system,
        root: uuid(types[0]),
        verity: uuid(types[1]),
        signature: uuid(types[2]),
    }
}

/// The architectures of the specification that Nix builds for (nix/rules.nix holds the same
/// systems; a test compares them). Types: root, root-verity, root-verity-sig.
#[rustfmt::skip]
pub const ARCHITECTURES: [Architecture; 9] = [
    arch("x86-64", "x86_64-linux", ["4f68bce3-e8cd-4db1-96e7-fbcaf984b709", "2c7357ed-ebd2-46d9-aec1-23d437ec2bf5", "41092b05-9fc8-4523-994f-2def0408b176"]),
    arch("arm64", "aarch64-linux", ["b921b045-1df0-41c3-af44-4c6f280d3fae", "df3300ce-d69f-4c92-978c-9bfb0f38d820", "6db69de6-29f4-4758-a7a5-962190f00ce3"]),
    arch("x86", "i686-linux", ["44479540-f297-41b2-9af7-d131d5f0458a", "d13c5d3b-b5d1-422a-b29f-9454fdc89d76", "5996fc05-109c-48de-808b-23fa0830b676"]),
    arch("arm", "armv7l-linux", ["69dad710-2ce4-4e3c-b16c-21a1d49abed3", "7386cdf2-203c-47a9-a498-f2ecce45a2d6", "42b0455f-eb11-491d-98d3-56145ba9d037"]),
    arch("arm", "armv6l-linux", ["69dad710-2ce4-4e3c-b16c-21a1d49abed3", "7386cdf2-203c-47a9-a498-f2ecce45a2d6", "42b0455f-eb11-491d-98d3-56145ba9d037"]),
    arch("riscv64", "riscv64-linux", ["72ec70a6-cf74-40e6-bd49-4bda08e8f224", "b6ed5582-440b-4209-b8da-5ff7c419ea3d", "efe0f087-ea8d-4469-821a-4c2a96a8386a"]),
    arch("ppc64-le", "powerpc64le-linux", ["c31c45e6-3f39-412e-80fb-4809c4980599", "906bd944-4589-4aae-a4e4-dd983917446a", "d4a236e7-e873-4c07-bf1d-bf6cf7f1c3c6"]),
    arch("s390x", "s390x-linux", ["5eead9a9-fe09-4a1e-a1d7-520d00531306", "b325bfbe-c7be-4ab8-8357-139e652d2f6b", "c80187a5-73a3-491a-901a-017c3fa953e9"]),
    arch("loongarch64", "loongarch64-linux", ["77055800-792c-4f94-b39a-98c91b762bb6", "f3393b22-e9af-4613-a948-9d3bfbd0c535", "5afb67eb-ecc8-4f85-ae8e-ac1e7c50e7d0"]),
];

/// The architecture of a Nix system, if the specification has partition types for it.
pub fn architecture_of_system(system: &str) -> Option<&'static Architecture> {
    ARCHITECTURES.iter().find(|a| a.nix_system == system)
}

/// What a partition is to systemd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Designator {
    Root,
    RootVerity,
    RootVeritySig,
}

impl Designator {
    /// The name systemd-dissect shows (and the label's start).
    pub fn name(self) -> &'static str {
        match self {
            Designator::Root => "root",
            Designator::RootVerity => "root-verity",
            Designator::RootVeritySig => "root-verity-sig",
        }
    }

    /// The label systemd-repart writes, which we write too.
    pub fn label(self, arch: &Architecture) -> String {
        match self {
            Designator::Root => format!("root-{}", arch.name),
            Designator::RootVerity => format!("root-{}-verity", arch.name),
            Designator::RootVeritySig => format!("root-{}-verity-sig", arch.name),
        }
    }

    fn type_in(self, arch: &Architecture) -> Uuid {
        match self {
            Designator::Root => arch.root,
            Designator::RootVerity => arch.verity,
            Designator::RootVeritySig => arch.signature,
        }
    }
}

/// The partition type a GPT type UUID is, if it is one of [`ARCHITECTURES`]'.
pub fn designator_of(type_uuid: &Uuid) -> Option<(Designator, &'static Architecture)> {
    ARCHITECTURES.iter().find_map(|a| {
        [
            Designator::Root,
            Designator::RootVerity,
            Designator::RootVeritySig,
        ]
        .into_iter()
        .find(|d| d.type_in(a) == *type_uuid)
        .map(|d| (d, a))
    })
}

/// A UUID as the GPT stores it: the first three fields little-endian.
pub fn to_disk(u: &Uuid) -> [u8; 16] {
    let mut d = *u;
    d[..4].reverse();
    d[4..6].reverse();
    d[6..8].reverse();
    d
}

/// [`to_disk`] undone (it is its own inverse).
pub fn from_disk(d: &[u8; 16]) -> Uuid {
    to_disk(d)
}

pub fn uuid_string(u: &Uuid) -> String {
    let h = crate::verity::hex(u);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// A UUID made by this project's own rule from `seed` (RFC 9562 version 8).
fn derived_uuid(what: &str, seed: &[u8]) -> Uuid {
    let mut h = Sha256::new();
    h.update(b"portable-service ddi ");
    h.update(what.as_bytes());
    h.update(b"\0");
    h.update(seed);
    let mut u: Uuid = h.finalize()[..16].try_into().unwrap();
    u[6] = (u[6] & 0x0f) | 0x80;
    u[8] = (u[8] & 0x3f) | 0x80;
    u
}

/// The root and verity partitions' UUIDs: the root hash's first and last 128 bits (the
/// specification's rule, by which systemd pairs partitions with a root hash).
pub fn uuids_of_root_hash(root_hash: &[u8; 32]) -> (Uuid, Uuid) {
    (
        root_hash[..16].try_into().unwrap(),
        root_hash[16..].try_into().unwrap(),
    )
}

pub fn align_up(n: u64) -> u64 {
    n.div_ceil(ALIGN) * ALIGN
}

/// Where each part of a DDI is, in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub root: Range<u64>,
    pub verity: Range<u64>,
    /// The room for the signature partition (a partition only once signed).
    pub signature: Range<u64>,
    /// The file's size: the backup table ends it.
    pub size: u64,
}

impl Layout {
    /// The layout for a file system of `root_len` bytes and a hash tree of `verity_len` bytes
    /// (each rounded up to 4096).
    pub fn new(root_len: u64, verity_len: u64) -> Layout {
        let root = FIRST_PARTITION..FIRST_PARTITION + align_up(root_len);
        let verity = root.end..root.end + align_up(verity_len);
        let signature = verity.end..verity.end + SIGNATURE_ROOM;
        let size = Layout::tight_size(&signature).max(MIN_SIZE);
        Layout {
            root,
            verity,
            signature,
            size,
        }
    }

    /// The size without [`MIN_SIZE`]'s room, which DDIs built before 2026-12-05 have.
    fn tight_size(signature: &Range<u64>) -> u64 {
        signature.end + (TABLE_SECTORS + 1) * SECTOR
    }
}

/// One partition as read from a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// The partition's number (1-based, as systemd-dissect and the kernel count).
    pub number: u32,
    pub type_uuid: Uuid,
    /// `None`: a type this module doesn't know (systemd ignores it, or it is for another use).
    pub designator: Option<(Designator, &'static Architecture)>,
    pub uuid: Uuid,
    pub label: String,
    pub flags: u64,
    /// Bytes, in the file.
    pub range: Range<u64>,
}

impl Partition {
    pub fn read_only(&self) -> bool {
        self.flags & READ_ONLY != 0
    }

    pub fn is(&self, d: Designator) -> bool {
        matches!(self.designator, Some((found, _)) if found == d)
    }
}

/// A DDI's partition table.
#[derive(Debug, Clone)]
pub struct Table {
    pub disk_guid: Uuid,
    pub partitions: Vec<Partition>,
}

/// The partitions a host runs of a DDI: a root partition, and the hash tree and signature of
/// the same architecture.
#[derive(Debug, Clone, Copy)]
pub struct Chosen<'t> {
    pub arch: &'static Architecture,
    pub root: &'t Partition,
    pub verity: Option<&'t Partition>,
    pub signature: Option<&'t Partition>,
}

/// The architecture systemd falls back to when an image has no root partition for the host's
/// own (its `ARCHITECTURE_SECONDARY`: 32-bit code on a 64-bit CPU that runs it).
fn secondary(host: &str) -> Option<&'static str> {
    match host {
        "x86-64" => Some("x86"),
        "arm64" => Some("arm"),
        _ => None,
    }
}

impl Table {
    /// The first partition of `designator`, whatever its architecture (tests read tables they
    /// made with it); what a host runs is [`Table::for_host`]'s.
    pub fn find(&self, designator: Designator) -> Option<&Partition> {
        self.partitions.iter().find(|p| p.is(designator))
    }

    /// The partitions of `designator` for architecture `arch`.
    fn of(&self, designator: Designator, arch: &str) -> Vec<&Partition> {
        self.partitions
            .iter()
            .filter(|p| matches!(p.designator, Some((d, a)) if d == designator && a.name == arch))
            .collect()
    }

    /// The one partition of `designator` for `arch`, if any. Two are refused: systemd takes
    /// the root whose label has the newest version, and its versions differ in how they compare
    /// labels; a check that guessed could judge one partition while hosts run another.
    fn one(&self, designator: Designator, arch: &str) -> Result<Option<&Partition>> {
        match self.of(designator, arch)[..] {
            [] => Ok(None),
            [p] => Ok(Some(p)),
            [a, b, ..] => bail!(
                "partitions {} and {} are both {} partitions for {arch}: which one a host runs \
                 depends on their labels and its systemd's version; a DDI meant to run has one",
                a.number,
                b.number,
                designator.name()
            ),
        }
    }

    /// What a host of architecture `host` (systemd's name: `x86-64`, `arm64`) runs, as
    /// systemd's dissect code chooses it: the root partition for its own architecture, or, when
    /// there is none, for its secondary one (x86 on x86-64, arm on arm64), and the root-verity
    /// and root-verity-sig partitions of the same architecture. Partitions of other
    /// architectures are not looked at.
    pub fn for_host(&self, host: &str) -> Result<Chosen<'_>> {
        let candidates = std::iter::once(host).chain(secondary(host));
        for arch in candidates {
            if let Some(root) = self.one(Designator::Root, arch)? {
                let (_, arch) = root.designator.expect("a root partition has a designator");
                return Ok(Chosen {
                    arch,
                    root,
                    verity: self.one(Designator::RootVerity, arch.name)?,
                    signature: self.one(Designator::RootVeritySig, arch.name)?,
                });
            }
        }
        let others: Vec<&str> = self
            .partitions
            .iter()
            .filter_map(|p| match p.designator {
                Some((Designator::Root, a)) => Some(a.name),
                _ => None,
            })
            .collect();
        if others.is_empty() {
            bail!("it has no root partition systemd knows")
        }
        bail!(
            "it has no root partition for {host}{}, only for {}: a host of {host} finds \
             nothing to run",
            secondary(host)
                .map(|s| format!(" or {s}"))
                .unwrap_or_default(),
            others.join(", ")
        )
    }

    /// The partitions of a DDI that holds one architecture's: what `sign` signs. A DDI with
    /// root partitions of several architectures is refused, since the hash tree signed would be
    /// one of them and hosts of the others would run theirs.
    pub fn single(&self) -> Result<Chosen<'_>> {
        let mut archs: Vec<&str> = self
            .partitions
            .iter()
            .filter_map(|p| p.designator.map(|(_, a)| a.name))
            .collect();
        archs.sort_unstable();
        archs.dedup();
        match archs[..] {
            [arch] => self.for_host(arch),
            [] => bail!("it has no partition systemd knows"),
            _ => bail!(
                "it holds partitions for {}: hosts of each architecture run their own root \
                 partition, and one signature can't cover them all",
                archs.join(" and ")
            ),
        }
    }
}

/// Whether `path` starts like a GPT disk (a protective MBR and "EFI PART" in the second
/// sector), rather than like a naked file system.
pub fn is_ddi(path: &Utf8Path) -> Result<bool> {
    let mut head = [0u8; 520];
    let mut file = std::fs::File::open(path).with_context(|| format!("cannot open {path}"))?;
    let n = read_up_to(&mut file, &mut head).with_context(|| format!("cannot read {path}"))?;
    Ok(n >= 520 && head[510..512] == [0x55, 0xaa] && &head[512..520] == b"EFI PART")
}

fn read_up_to(file: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// The kernel, which makes the partition devices systemd mounts, reads only 128-byte entries
/// (its efi.c refuses others) and an entry array of at most 4 MiB (its allocation limit on
/// x86-64); a table beyond either gives systemd no partitions.
const ENTRY_SIZE: u32 = 128;
const MAX_ENTRY_ARRAY: u64 = 4 << 20;

/// `lba`'s byte offset, if it and the `len` bytes from it lie inside a file of `size` bytes.
fn inside(lba: u64, len: u64, size: u64) -> Option<u64> {
    let at = lba.checked_mul(SECTOR)?;
    (at.checked_add(len)? <= size).then_some(at)
}

/// The GPT header at `lba` of `file` (`size` bytes) and its entries, every field that sizes a
/// read checked against the file before anything is read or allocated by it.
fn read_gpt(
    file: &mut (impl Read + Seek),
    lba: u64,
    size: u64,
    damaged: &dyn Fn(String) -> anyhow::Error,
) -> Result<(GPTHeader, Vec<GPTPartitionEntry>)> {
    let at = inside(lba, SECTOR, size)
        .ok_or_else(|| damaged(format!("its header at sector {lba} lies outside the file")))?;
    file.seek(SeekFrom::Start(at))?;
    let header = GPTHeader::read_from(file).map_err(|e| damaged(e.to_string()))?;
    let (count, entry_size) = (
        header.number_of_partition_entries,
        header.size_of_partition_entry,
    );
    if entry_size != ENTRY_SIZE {
        return Err(damaged(format!(
            "its entries are {entry_size} bytes: the kernel reads only {ENTRY_SIZE}-byte \
             entries, and systemd would find no partition"
        )));
    }
    let array = u64::from(count) * u64::from(ENTRY_SIZE);
    if array > MAX_ENTRY_ARRAY {
        return Err(damaged(format!(
            "it claims {count} partition entries ({array} bytes): the kernel reads at most \
             {MAX_ENTRY_ARRAY} bytes of entries"
        )));
    }
    if inside(header.partition_entry_lba, array, size).is_none() {
        return Err(damaged(format!(
            "its {count} entries at sector {} lie outside the file",
            header.partition_entry_lba
        )));
    }
    let entries = header
        .read_partitions(file, SECTOR)
        .map_err(|e| damaged(e.to_string()))?;
    Ok((header, entries))
}

/// Reads a DDI's table. Both the primary and the backup table must be whole: a damaged one is
/// refused with what is wrong, rather than passed over (systemd's libblkid would fall back to the
/// backup, but a file that needs it is not one to sign or ship). Nothing is allocated by what
/// the file claims before it is checked against the file's size.
pub fn read_table(path: &Utf8Path) -> Result<Table> {
    let mut file = std::fs::File::open(path).with_context(|| format!("cannot open {path}"))?;
    read_table_from(&mut file, path.as_str())
}

/// [`read_table`] of a disk read through `file`, named `path` in messages.
pub fn read_table_from(file: &mut (impl Read + Seek), path: &str) -> Result<Table> {
    let size = file
        .seek(SeekFrom::End(0))
        .with_context(|| format!("cannot read {path}"))?;
    let damaged = |which: &'static str| {
        move |why: String| {
            anyhow::anyhow!("{path}: the {which} GPT partition table is damaged: {why}")
        }
    };
    let (primary, entries) = read_gpt(file, 1, size, &damaged("primary"))?;
    let (backup, backup_entries) = read_gpt(file, primary.backup_lba, size, &damaged("backup"))?;
    ensure!(
        backup_entries == entries && backup.disk_guid == primary.disk_guid,
        "{path}: the backup GPT partition table differs from the primary one"
    );
    let mut partitions = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        if e.is_unused() {
            continue;
        }
        let range = (e.starting_lba <= e.ending_lba)
            .then(|| {
                let start = inside(e.starting_lba, 0, size)?;
                let end = inside(e.ending_lba.checked_add(1)?, 0, size)?;
                Some(start..end)
            })
            .flatten()
            .with_context(|| {
                format!(
                    "{path}: partition {} (sectors {} to {}) lies outside the file ({size} bytes)",
                    i + 1,
                    e.starting_lba,
                    e.ending_lba
                )
            })?;
        let type_uuid = from_disk(&e.partition_type_guid);
        partitions.push(Partition {
            number: i as u32 + 1,
            type_uuid,
            designator: designator_of(&type_uuid),
            uuid: from_disk(&e.unique_partition_guid),
            label: e.partition_name.as_str().to_owned(),
            flags: e.attribute_bits,
            range,
        });
    }
    Ok(Table {
        disk_guid: from_disk(&primary.disk_guid),
        partitions,
    })
}

fn entry(d: Designator, arch: &Architecture, uuid: &Uuid, range: &Range<u64>) -> GPTPartitionEntry {
    GPTPartitionEntry {
        partition_type_guid: to_disk(&d.type_in(arch)),
        unique_partition_guid: to_disk(uuid),
        starting_lba: range.start / SECTOR,
        ending_lba: range.end / SECTOR - 1,
        attribute_bits: READ_ONLY,
        partition_name: d.label(arch).as_str().into(),
    }
}

/// Writes the protective MBR and both tables of a DDI laid out as `layout` into `file` (already
/// `layout.size` bytes long, its partitions' contents in place): the root and verity partitions,
/// and the signature partition when `signature` (its bytes, already written in
/// `layout.signature`) is given.
pub fn write_table(
    file: &mut std::fs::File,
    arch: &Architecture,
    layout: &Layout,
    root_hash: &[u8; 32],
    signature: Option<&[u8]>,
) -> Result<()> {
    let size = file.seek(SeekFrom::End(0))?;
    ensure!(
        size == layout.size,
        "the disk image is {size} bytes, its layout {}",
        layout.size
    );
    let disk_guid = derived_uuid("disk", root_hash);
    let mut gpt = GPT::new_from(file, SECTOR, to_disk(&disk_guid))?;
    let (root_uuid, verity_uuid) = uuids_of_root_hash(root_hash);
    gpt[1] = entry(Designator::Root, arch, &root_uuid, &layout.root);
    gpt[2] = entry(Designator::RootVerity, arch, &verity_uuid, &layout.verity);
    if let Some(sig) = signature {
        let uuid = derived_uuid("signature", sig);
        gpt[3] = entry(Designator::RootVeritySig, arch, &uuid, &layout.signature);
    }
    gpt.write_into(file)
        .and_then(|_| GPT::write_protective_mbr_into(file, SECTOR))
        .context("cannot write the partition table")?;
    file.flush()?;
    Ok(())
}

/// Makes the file system written at [`FIRST_PARTITION`] of `image` (by `mksquashfs -offset`) a
/// Discoverable Disk Image in place: pads it to a whole number of blocks, writes its hash tree
/// after it and the partition table around both. The file system is neither moved nor copied.
pub fn finish(image: &Utf8Path, arch: &Architecture) -> Result<(crate::verity::Tree, Layout)> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(image)
        .with_context(|| format!("cannot open {image}"))?;
    let written = file.metadata()?.len();
    ensure!(
        written > FIRST_PARTITION,
        "{image} holds no file system at byte {FIRST_PARTITION}"
    );
    let fs_len = written - FIRST_PARTITION;
    let root = Layout::new(fs_len, 0).root;
    file.set_len(root.end)?;
    let (tree, hash_device) = crate::verity::tree(image, Some(&root))?;
    let layout = Layout::new(fs_len, hash_device.len() as u64);
    file.set_len(layout.size)?;
    file.seek(SeekFrom::Start(layout.verity.start))?;
    file.write_all(&hash_device)
        .with_context(|| format!("cannot write the hash tree into {image}"))?;
    write_table(&mut file, arch, &layout, &tree.root_hash, None)
        .with_context(|| format!("cannot write the partition table of {image}"))?;
    Ok((tree, layout))
}

/// The layout of a DDI this module wrote, from its table: the root and verity partitions where
/// [`Layout::new`] puts them for their sizes, and the file's size. Anything else (another tool's
/// DDI, a table changed by hand) is refused, since `sign` must not move what it doesn't own.
pub fn layout_of(table: &Table, size: u64) -> Result<(Layout, &'static Architecture)> {
    let chosen = table.single()?;
    let (root, arch) = (chosen.root, chosen.arch);
    let verity = chosen.verity.context("there is no root-verity partition")?;
    let mut layout = Layout::new(
        root.range.end - root.range.start,
        verity.range.end - verity.range.start,
    );
    if size == Layout::tight_size(&layout.signature) {
        layout.size = size;
    }
    if layout.root != root.range || layout.verity != verity.range || layout.size != size {
        bail!(
            "its partitions are not where portableService puts them (root at {:?}, verity at \
             {:?}, {size} bytes; expected {:?}, {:?}, {} bytes): it was not built by \
             portableService with format = \"ddi\"",
            root.range,
            verity.range,
            layout.root,
            layout.verity,
            layout.size
        );
    }
    Ok((layout, arch))
}

/// Reads `range` of `path`.
pub fn read_range(path: &Utf8Path, range: &Range<u64>) -> Result<Vec<u8>> {
    let mut file = std::fs::File::open(path).with_context(|| format!("cannot open {path}"))?;
    file.seek(SeekFrom::Start(range.start))?;
    let mut buf = vec![0u8; (range.end - range.start) as usize];
    file.read_exact(&mut buf)
        .with_context(|| format!("cannot read bytes {range:?} of {path}"))?;
    Ok(buf)
}
