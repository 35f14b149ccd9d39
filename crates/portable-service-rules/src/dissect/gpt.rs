//! libblkid's GPT reader (partitions/gpt.c, the same in 2.38.1 and 2.41): the protective MBR,
//! the primary header at LBA 1 with every check libblkid makes, the backup header at the file's
//! last LBA when the primary fails them (not where the primary says its backup is), and the
//! entries inside the usable range. What it doesn't check (the revision, the backup's agreement
//! with a good primary, overlaps) it doesn't check here either: a file passes by libblkid's
//! rules, not by the specification's.

use crate::ddi::{from_disk, Uuid};
use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;

const SECTOR: u64 = 512;
const ENTRY_SIZE: u64 = 128;
/// What libblkid reads at most: its entry count times size must stay under `UINT32_MAX`.
const MAX_ENTRIES_BYTES: u64 = u32::MAX as u64 - 1;
const CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// One entry libblkid lists: the entry's number (from 1, counting unused entries too), its
/// fields, and its bytes in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub number: u32,
    pub type_uuid: Uuid,
    pub uuid: Uuid,
    pub flags: u64,
    /// `None` for an empty name (libblkid reports none).
    pub label: Option<String>,
    pub range: Range<u64>,
}

/// What libblkid reports of a file's partition table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Table {
    Gpt {
        /// Which header was used: the primary at LBA 1, or the backup at the last LBA.
        backup: bool,
        entries: Vec<Entry>,
    },
    /// No 0xEE entry in the MBR: libblkid reads it as a DOS table (or finds no table).
    NotGpt { mbr: bool },
    /// A protective MBR whose headers both fail: PTTYPE "PMBR", which systemd doesn't use.
    Damaged,
    /// A table systemd fails on, and why.
    Broken(String),
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn read_at(file: &mut (impl Read + Seek), at: u64, len: u64) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; usize::try_from(len).ok()?];
    file.seek(SeekFrom::Start(at)).ok()?;
    file.read_exact(&mut buf).ok()?;
    Some(buf)
}

/// The protective MBR libblkid wants: the boot signature and any of its four entries of type
/// 0xEE (a hybrid MBR passes too).
fn protective(mbr: &[u8]) -> bool {
    mbr.len() >= 512
        && mbr[510..512] == [0x55, 0xaa]
        && (0..4).any(|i| mbr[446 + 16 * i + 4] == 0xee)
}

/// The header at `lba` and its entry array, if they pass libblkid's checks on a file whose last
/// LBA is `last`.
fn header(file: &mut (impl Read + Seek), lba: u64, last: u64) -> Option<(Vec<u8>, Vec<u8>)> {
    let h = read_at(file, lba.checked_mul(SECTOR)?, SECTOR)?;
    let size = u64::from(u32_at(&h, 12));
    if &h[0..8] != b"EFI PART" || !(92..=SECTOR).contains(&size) {
        return None;
    }
    let mut zeroed = h[..size as usize].to_vec();
    zeroed[16..20].fill(0);
    let (first, last_usable) = (u64_at(&h, 40), u64_at(&h, 48));
    let ok = CRC32.checksum(&zeroed) == u32_at(&h, 16)
        && u64_at(&h, 24) == lba
        && last_usable >= first
        && first <= last
        && last_usable <= last
        && !(first < lba && lba < last_usable);
    let (count, entry_size) = (u64::from(u32_at(&h, 80)), u64::from(u32_at(&h, 84)));
    let bytes = count * entry_size;
    if !ok || entry_size != ENTRY_SIZE || bytes == 0 || bytes >= MAX_ENTRIES_BYTES {
        return None;
    }
    let entries = read_at(file, u64_at(&h, 72).checked_mul(SECTOR)?, bytes)?;
    (CRC32.checksum(&entries) == u32_at(&h, 88)).then_some((h, entries))
}

/// A GPT name (UTF-16LE, up to 36 units) as libblkid gives it: up to its first NUL.
fn label(raw: &[u8]) -> Option<String> {
    let units: Vec<u16> = raw
        .chunks(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|u| *u != 0)
        .collect();
    (!units.is_empty()).then(|| String::from_utf16_lossy(&units))
}

/// The entries libblkid lists: used ones (a type that isn't all zeros) inside the usable range.
/// An entry that ends before it starts passes libblkid's range check (its size wraps around),
/// and systemd then fails on its negative size: `Err`.
fn entries(h: &[u8], raw: &[u8]) -> Result<Vec<Entry>, String> {
    let (first, last) = (u64_at(h, 40), u64_at(h, 48));
    let mut out = Vec::new();
    for (i, e) in raw.chunks_exact(ENTRY_SIZE as usize).enumerate() {
        let (start, end) = (u64_at(e, 32), u64_at(e, 40));
        if e[0..16].iter().all(|b| *b == 0) || start < first || end > last {
            continue;
        }
        if end < start {
            return Err(format!(
                "partition {} ends (sector {end}) before it starts (sector {start})",
                i + 1
            ));
        }
        out.push(Entry {
            number: i as u32 + 1,
            type_uuid: from_disk(e[0..16].try_into().expect("16 bytes")),
            uuid: from_disk(e[16..32].try_into().expect("16 bytes")),
            flags: u64_at(e, 48),
            label: label(&e[56..128]),
            range: start * SECTOR..(end + 1) * SECTOR,
        });
    }
    Ok(out)
}

/// The partition table of a file of `size` bytes, as libblkid reads it.
pub fn read(file: &mut (impl Read + Seek), size: u64) -> Table {
    let Some(mbr) = read_at(file, 0, SECTOR.min(size)) else {
        return Table::NotGpt { mbr: false };
    };
    if !protective(&mbr) {
        let mbr = mbr.len() == 512 && mbr[510..512] == [0x55, 0xaa];
        return Table::NotGpt { mbr };
    }
    let last = (size / SECTOR).saturating_sub(1);
    let primary = header(file, 1, last).map(|h| (false, h));
    match primary.or_else(|| header(file, last, last).map(|h| (true, h))) {
        Some((backup, (h, raw))) => match entries(&h, &raw) {
            Ok(entries) => Table::Gpt { backup, entries },
            Err(why) => Table::Broken(why),
        },
        None => Table::Damaged,
    }
}

/// Where a disk's two tables lie, when they agree (see [`agreeing`]).
pub struct Agreed {
    /// The entry arrays' byte offsets, the primary's then the backup's.
    pub arrays: [u64; 2],
    /// The backup header's byte offset.
    pub backup_header: u64,
}

/// The byte offsets of a disk's tables, if libblkid reads its primary header, the backup at the
/// last LBA says the same, each names the other and both are 92 bytes (what every tool
/// writes): then the kernel, which makes the partition devices systemd may take, reads the
/// same table by its own rules. Otherwise why not.
pub fn agreeing(file: &mut (impl Read + Seek), size: u64) -> Result<Agreed, String> {
    let last = (size / SECTOR).saturating_sub(1);
    let (Some((p, pe)), Some((b, be))) = (header(file, 1, last), header(file, last, last)) else {
        return Err("one of its GPT headers fails libblkid's checks".into());
    };
    let same = pe == be
        && p[40..56] == b[40..56]
        && p[56..72] == b[56..72]
        && u64_at(&p, 32) == last
        && u64_at(&b, 32) == 1
        && u32_at(&p, 12) == 92
        && u32_at(&b, 12) == 92;
    if !same {
        return Err("its primary and backup GPT headers say different things".into());
    }
    Ok(Agreed {
        arrays: [u64_at(&p, 72) * SECTOR, u64_at(&b, 72) * SECTOR],
        backup_header: last * SECTOR,
    })
}

/// Whether a GPT entry's name (its 72 bytes) is plain: printable ASCII up to its first NUL,
/// then zeros. A name is not covered by any signature, and other text could spell a magic
/// libblkid probes for at that offset.
pub fn plain_name(raw: &[u8]) -> bool {
    let units: Vec<u16> = raw
        .chunks(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    let len = units.iter().position(|u| *u == 0).unwrap_or(units.len());
    units[..len].iter().all(|u| (0x20..0x7f).contains(u)) && units[len..].iter().all(|u| *u == 0)
}

/// The sector size other than 512 bytes whose LBA 1 holds a GPT header naming itself, as
/// systemd 262's `probe_sector_size()` looks for one in a file's first 8 KiB (252 reads
/// 512-byte sectors only).
pub fn larger_sector(head: &[u8]) -> Option<u64> {
    [1024u64, 2048, 4096].into_iter().find(|sz| {
        let at = *sz as usize;
        head.get(at..at + 92).is_some_and(|h| {
            &h[0..8] == b"EFI PART"
                && u32_at(h, 8) == 0x0001_0000
                && (92..=4096).contains(&u32_at(h, 12))
                && u64_at(h, 24) == 1
        })
    })
}
