//! What backhand unpacks into memory when it opens a squashfs file system, counted from the file
//! system's own headers before backhand is given it. backhand reads the whole inode table, the
//! whole directory table and the fragment table at once, each a run of metadata blocks of up to
//! 8 KiB unpacked; a block of zeros packs into 31 bytes, so a file of 1.3 MB asked for 316 MiB
//! (a hostile image the fuzzer's slow inputs led to). A file system whose metadata exceeds
//! [`MAX_METADATA_BLOCKS`] is refused here, naming the numbers.
//!
//! When backhand can't read a file, [`why_unreadable`] says why in a user's words: what the
//! file is instead (text, nothing, other bytes), or what is wrong with the squashfs file system
//! it starts as (cut short, a compressor backhand isn't built with); backhand's own reason only
//! for a file system damaged inside.

use anyhow::{bail, ensure, Context, Result};
use camino::Utf8Path;
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

/// Why backhand can't read the squashfs file system at `offset` of `path` (a disk image's root
/// partition when `offset` isn't 0), from the bytes themselves: backhand's own reason
/// (`_error`) is in its parser's words, never the user's.
pub fn why_unreadable(path: &Utf8Path, offset: u64, _error: &dyn std::fmt::Display) -> String {
    let subject = match offset {
        0 => path.to_string(),
        _ => format!("the root partition of {path} (at byte {offset})"),
    };
    let (head, size) = match head_of(path, offset) {
        Ok(read) => read,
        Err(e) => return format!("cannot read {subject}: {e}"),
    };
    if !head.starts_with(b"hsqs") {
        let what = what_it_is(&head, size);
        return match offset {
            0 => format!(
                "{path} is not a portable service image: it is neither a squashfs file system \
                 nor a disk image ({what})"
            ),
            _ => format!("{subject} is not a squashfs file system ({what})"),
        };
    }
    if head.len() < 96 {
        return format!(
            "{subject} is a squashfs file system cut short: {size} bytes, less than its \
             superblock's 96"
        );
    }
    let used = u64_at(&head, 40);
    if size < used {
        return format!(
            "{subject} is a squashfs file system cut short: it says it is {used} bytes long, the \
             file holds {size} (an interrupted copy or download?)"
        );
    }
    match u16_at(&head, 20) {
        2 => format!("{subject} is compressed with lzma, which check can't read (use xz)"),
        3 => format!(
            "{subject} is compressed with lzo, which check can't read (gzip, xz, lz4 and zstd it \
             can)"
        ),
        // backhand's and deku's words (`Parse("Could not match enum variant")`) are its
        // parser's, not the user's: what the superblock says is what can be named
        id @ (0 | 7..) => format!(
            "{subject} is a damaged squashfs file system: its superblock names compressor {id}, \
             which squashfs doesn't have"
        ),
        _ => match u16_at(&head, 28) {
            4 => format!(
                "{subject} is a damaged squashfs file system: a table its superblock points \
                     to can't be read"
            ),
            major => format!(
                "{subject} is a squashfs file system of version {major}, which systemd's \
                     kernels don't mount (they read version 4)"
            ),
        },
    }
}

/// The first bytes at `offset` of `path` (up to 512) and how many bytes there are from it.
fn head_of(path: &Utf8Path, offset: u64) -> std::io::Result<(Vec<u8>, u64)> {
    let mut file = std::fs::File::open(path)?;
    let size = file.metadata()?.len().saturating_sub(offset);
    file.seek(SeekFrom::Start(offset))?;
    let mut head = Vec::new();
    file.take(512).read_to_end(&mut head)?;
    Ok((head, size))
}

/// What bytes that aren't squashfs are, as a user would tell: nothing, text, or other bytes.
fn what_it_is(head: &[u8], size: u64) -> String {
    if size == 0 {
        return "it is empty".to_owned();
    }
    // (a character cut at the 512th byte is still text)
    let valid = match std::str::from_utf8(head) {
        Ok(t) => Some(t),
        Err(e) if e.error_len().is_none() => std::str::from_utf8(&head[..e.valid_up_to()]).ok(),
        Err(_) => None,
    };
    let text = valid.is_some_and(|t| {
        t.chars()
            .all(|c| !c.is_control() || c.is_ascii_whitespace())
    });
    if text {
        return "its first bytes are text".to_owned();
    }
    let shown: Vec<String> = head.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!(
        "its first bytes are {}, where squashfs starts with 68 73 71 73 (\"hsqs\")",
        shown.join(" ")
    )
}
