//! What backhand unpacks into memory when it opens a squashfs file system, counted from the file
//! system's own headers before backhand is given it. backhand reads the whole inode table, the
//! whole directory table and the fragment table at once, each a run of metadata blocks of up to
//! 8 KiB unpacked; a block of zeros packs into 31 bytes, so a file of 1.3 MB asked for 316 MiB
//! (a hostile image the fuzzer's slow inputs led to). A file system whose metadata exceeds
//! [`MAX_METADATA_BLOCKS`] is refused here, naming the numbers.

use anyhow::{bail, ensure, Context, Result};
use std::io::{Read, Seek, SeekFrom};

/// The most metadata blocks (8 KiB each unpacked) `check` lets backhand unpack: 48 MiB, which
/// kept `check`'s peak memory under 64 MiB; an image of 51,162 files has 430 (BENCHMARKS.md).
pub const MAX_METADATA_BLOCKS: u64 = 6144;

/// What a metadata block unpacks to at most (squashfs' SQUASHFS_METADATA_SIZE).
const METADATA_SIZE: u64 = 8192;
/// A table start that is not set.
const NOT_SET: u64 = u64::MAX;
/// The superblock flag of an image with an NFS export table.
const EXPORTABLE: u16 = 0x0080;

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Checks that the squashfs file system at `offset` of `file` asks backhand to unpack no more
/// than [`MAX_METADATA_BLOCKS`]: the blocks of its inode and directory tables are counted by
/// walking their headers (never more of them than the bound), its fragment table's from the
/// fragment count. Tables that don't add up are left to backhand, which refuses them.
pub fn check_metadata<F: Read + Seek>(file: &mut F, offset: u64) -> Result<()> {
    let mut sb = [0u8; 96];
    file.seek(SeekFrom::Start(offset))?;
    if file.read_exact(&mut sb).is_err() || &sb[0..4] != b"hsqs" {
        return Ok(()); // not squashfs (v4, little-endian): backhand says so
    }
    let at = |field: usize| u64_at(&sb, field).checked_add(offset).unwrap_or(NOT_SET);
    let (inode_count, frag_count, flags) = (u32_at(&sb, 4), u32_at(&sb, 16), u16_at(&sb, 24));
    let (id_table, inode_table, dir_table) = (at(48), at(64), at(72));
    let (frag_table, export_table) = (at(80), at(88));

    // the directory table ends where the first table after it starts: backhand reads that
    // start from the first pointer of the fragment, export or id table
    let pointer_at = |file: &mut F, at: u64| -> Result<u64> {
        let mut p = [0u8; 8];
        file.seek(SeekFrom::Start(at))?;
        file.read_exact(&mut p)?;
        Ok(u64::from_le_bytes(p).saturating_add(offset))
    };
    let frags = frag_count != 0 && frag_table != NOT_SET;
    let dir_end = if frags {
        pointer_at(file, frag_table)
    } else if flags & EXPORTABLE != 0 && export_table != NOT_SET {
        pointer_at(file, export_table)
    } else {
        pointer_at(file, id_table)
    };
    let Ok(dir_end) = dir_end else {
        return Ok(()); // a table start outside the file: backhand says so
    };

    let frag_blocks = if frags {
        (u64::from(frag_count) * 16).div_ceil(METADATA_SIZE)
    } else {
        0
    };
    let mut blocks = frag_blocks;
    for (start, end) in [(inode_table, dir_table), (dir_table, dir_end)] {
        let mut pos = start;
        while pos < end && blocks <= MAX_METADATA_BLOCKS {
            let mut header = [0u8; 2];
            file.seek(SeekFrom::Start(pos))?;
            if file.read_exact(&mut header).is_err() {
                return Ok(()); // a table past the end of the file: backhand says so
            }
            pos += 2 + u64::from(u16::from_le_bytes(header) & 0x7fff);
            blocks += 1;
        }
    }
    ensure!(
        blocks <= MAX_METADATA_BLOCKS,
        "its inode, directory and fragment tables unpack to more than {} MiB (over \
         {MAX_METADATA_BLOCKS} metadata blocks of 8 KiB, {frag_blocks} of them for \
         {frag_count} fragments; {inode_count} inodes): check unpacks at most that much of \
         them (about 700,000 files)",
        (MAX_METADATA_BLOCKS * METADATA_SIZE) >> 20,
    );
    Ok(())
}

/// [`check_metadata`] of the file at `path`, its error naming the file.
pub fn check_metadata_of(path: &camino::Utf8Path, offset: u64) -> Result<()> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot open {path}"))?;
    if let Err(e) = check_metadata(&mut std::io::BufReader::new(file), offset) {
        bail!("{path} is not a squashfs image check can read: {e}");
    }
    Ok(())
}
