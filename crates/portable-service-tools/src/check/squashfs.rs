//! What backhand unpacks into memory when it opens a squashfs file system, counted from the file
//! system's own headers before backhand is given it, in two steps.
//!
//! First the tables: backhand reads the whole inode table, the whole directory table and the
//! fragment table at once, each a run of metadata blocks of up to 8 KiB unpacked; a block of
//! zeros packs into 31 bytes, so a file of 1.3 MB asked for 316 MiB (a hostile image the
//! fuzzer's slow inputs led to). A file system whose metadata exceeds [`MAX_METADATA_BLOCKS`],
//! or that claims more than [`MAX_NODES`] inodes, is refused by [`check_metadata`], naming the
//! numbers.
//!
//! Then the tree: from those tables backhand makes one node per directory entry, each with its
//! full path and a copy of its file's block list, recursing once per directory level. So an
//! 8 KiB image of a sparse 1 GiB file with 400 hard links asked for 405 MiB, and one of a
//! directory 30,000 levels deep overflowed the stack. [`check_tree`] walks the tables backhand
//! has read (without recursion) and counts what that tree would hold: entries, depth, path bytes
//! and block-list entries, each bounded so that `check` stays under 64 MiB on any input.
//!
//! When backhand can't read a file, [`why_unreadable`] says why in a user's words: what the
//! file is instead (text, nothing, other bytes), or what is wrong with the squashfs file system
//! it starts as (cut short, a compressor backhand isn't built with); backhand's own reason only
//! for a file system damaged inside.

use anyhow::{bail, ensure, Context, Result};
use camino::Utf8Path;
use std::io::{Read, Seek, SeekFrom};

/// The most metadata blocks (8 KiB each unpacked) `check` lets backhand unpack: 12 MiB. backhand
/// holds the inode table unpacked while it parses it, and a file's block list parsed is as large
/// as in the table, so this can take twice its size beside the inodes ([`MAX_NODES`]); 48 MiB,
/// the bound before, let that alone pass 64 MiB. An image of 51,162 files has 430 blocks, one of
/// 101,000 files with 100-byte paths 720 (BENCHMARKS.md).
pub const MAX_METADATA_BLOCKS: u64 = 1536;

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
    ensure!(
        u64::from(inode_count) <= MAX_NODES,
        "it has {inode_count} inodes: check reads at most {MAX_NODES} (its memory grows with \
         each)"
    );
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
         them (about 175,000 files)",
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

/// The most entries (files, directories, links, each hard link counted again) and the most
/// inodes `check` lets backhand expand. backhand keeps about 150 bytes for each inode it
/// parses and 104 bytes for each entry of its tree (`Node`), and [`super::tree::Image`] about
/// 100 more for its own map, each beside the entry's path: measured, `check` took 64 MiB on an
/// image of 101,000 files with 100-byte paths before its own copies were cut, and an image at
/// this bound and [`MAX_PATH_BYTES`] stays under 64 MiB (BENCHMARKS.md). Real images are far
/// below it: the 200 MB benchmark closure has 50,071 files, a NixOS system's /usr/share 51,162.
pub const MAX_NODES: u64 = 1 << 17;

/// The deepest directory `check` lets backhand read, in levels below the root. backhand
/// recurses once per level (under 1 KiB of stack each: 16,384 levels overflowed the main
/// thread's 8 MiB, 8,192 didn't), so this takes under 1 MiB of stack. A real tree is some 10
/// to 20 levels deep (/usr/share: 11); 2,048 levels of one-letter names already make
/// a path longer than PATH_MAX (4,096 bytes), which no program can open whole.
pub const MAX_DEPTH: u64 = 1024;

/// The most bytes all entries' full paths add up to, which backhand and `check` each keep a
/// copy of. A deep tree makes this grow with the square of its depth (1,024 levels of
/// one-letter names: 1 MiB) and long names multiply it; real images are a few MiB (51,144
/// entries of /usr/share: 2.1 MiB; 101,000 of a Nix-like closure: 10 MiB).
pub const MAX_PATH_BYTES: u64 = 12 << 20;

/// The most block-list entries (4 bytes each, one per data block of a file) backhand copies
/// into its tree: a file's whole list once for each of its names, so 400 hard links to a sparse
/// 1 GiB file of 4 KiB blocks asked for 400 MiB. 2^20 entries (4 MiB) hold the lists of 128 GiB
/// of files in mksquashfs's default 128 KiB blocks, 1 TiB in our 1 MiB ones, 4 GiB in the
/// smallest (4 KiB).
pub const MAX_BLOCK_ENTRIES: u64 = 1 << 20;

/// What backhand's tree of a file system would hold, as [`check_tree`] counts it.
#[derive(Debug, Default)]
struct Counted {
    entries: u64,
    deepest: u64,
    path_bytes: u64,
    block_entries: u64,
}

/// One entry of a directory listing, as backhand reads it: the inode number it names, its
/// kind (the listing's own basic type: 1 directory, 2 file, ...) and its name's length.
struct Entry {
    inode: u32,
    kind: u16,
    name_len: u64,
}

/// Counts the tree backhand would make of `fs` (its tables read, its tree not yet made:
/// [`backhand::Squashfs::into_filesystem_reader`]) and refuses it, naming the numbers, if any
/// count passes its bound. The walk is a loop over a stack of directories, never recursion, and
/// stops at the first bound passed; each directory is walked once, as backhand refuses a
/// directory reached twice. Entries backhand would refuse (no such inode, the wrong kind) are
/// left to it.
pub fn check_tree(fs: &backhand::Squashfs) -> Result<()> {
    ensure!(
        fs.inodes.len() as u64 <= MAX_NODES,
        "it has {} inodes: check reads at most {MAX_NODES}",
        fs.inodes.len()
    );
    let mut counted = Counted::default();
    let mut walked = std::collections::HashSet::new();
    // directories still to walk: (their inode, their depth, their path's length)
    let mut to_walk = vec![(&fs.root_inode, 0u64, 0u64)];
    walked.insert(fs.root_inode.header.inode_number);
    while let Some((dir, depth, path_len)) = to_walk.pop() {
        for entry in listing(fs, dir) {
            let Some(inode) = fs.inodes.get(&entry.inode) else {
                continue;
            };
            let path = path_len + 1 + entry.name_len;
            counted.entries += 1;
            counted.path_bytes += path;
            counted.deepest = counted.deepest.max(depth + 1);
            match &inode.inner {
                backhand::v4::inode::InodeInner::BasicFile(f) if entry.kind == 2 => {
                    counted.block_entries += f.block_sizes.len() as u64;
                }
                backhand::v4::inode::InodeInner::ExtendedFile(f) if entry.kind == 2 => {
                    counted.block_entries += f.block_sizes.len() as u64;
                }
                _ if entry.kind == 1 && walked.insert(entry.inode) => {
                    to_walk.push((inode, depth + 1, path));
                }
                _ => {}
            }
            within_bounds(&counted, fs.superblock.block_size)?;
        }
    }
    Ok(())
}

/// Refuses `counted` if it passed a bound, naming it and the bound.
fn within_bounds(counted: &Counted, block_size: u32) -> Result<()> {
    ensure!(
        counted.entries <= MAX_NODES,
        "it has more than {MAX_NODES} files, directories and links (each hard link counted \
         again): check reads at most {MAX_NODES}"
    );
    ensure!(
        counted.deepest <= MAX_DEPTH,
        "it has directories more than {MAX_DEPTH} levels deep: check reads at most \
         {MAX_DEPTH} (a real tree is some 10 to 20)"
    );
    ensure!(
        counted.path_bytes <= MAX_PATH_BYTES,
        "its {} entries' paths add up to more than {MAX_PATH_BYTES} bytes: check reads at most \
         {MAX_PATH_BYTES}",
        counted.entries
    );
    ensure!(
        counted.block_entries <= MAX_BLOCK_ENTRIES,
        "its files list more than {MAX_BLOCK_ENTRIES} data blocks of {block_size} bytes, each \
         hard link's counted again (after {} of its entries): check reads at most \
         {MAX_BLOCK_ENTRIES}",
        counted.entries
    );
    Ok(())
}

/// The entries of directory `dir` as backhand reads them from `fs`'s directory table: headers
/// of up to 257 entries each, read until one doesn't parse (whose entries backhand drops too).
fn listing(fs: &backhand::Squashfs, dir: &backhand::Inode) -> Vec<Entry> {
    use backhand::v4::inode::InodeInner;
    let (block, offset, size) = match &dir.inner {
        InodeInner::BasicDirectory(d) => (d.block_index, d.block_offset, u32::from(d.file_size)),
        InodeInner::ExtendedDirectory(d) => (d.block_index, d.block_offset, d.file_size),
        _ => return Vec::new(),
    };
    let (blocks, bytes) = &fs.dir_blocks;
    let Some(start) = blocks.get(&u64::from(block)) else {
        return Vec::new();
    };
    let from = *start as usize + usize::from(offset);
    let Some(b) = (size >= 4)
        .then(|| bytes.get(from..from + size as usize - 3))
        .flatten()
    else {
        return Vec::new();
    };
    let mut entries = Vec::new();
    let mut at = 0;
    while let Some(header) = b.get(at..at + 12) {
        let (count, base) = (u32_at(header, 0), u32_at(header, 8));
        if count > 256 {
            break;
        }
        let mut next = at + 12;
        let mut these = Vec::new();
        for _ in 0..=count {
            let Some(e) = b.get(next..next + 8) else {
                break;
            };
            let (delta, kind, name_size) = (u16_at(e, 2) as i16, u16_at(e, 4), u16_at(e, 6));
            next += 8 + usize::from(name_size) + 1;
            if !(1..=14).contains(&kind) || next > b.len() {
                break;
            }
            let inode = base.wrapping_add_signed(i32::from(delta));
            these.push(Entry {
                inode,
                kind: if kind > 7 { kind - 7 } else { kind },
                name_len: u64::from(name_size) + 1,
            });
        }
        if these.len() as u64 != u64::from(count) + 1 {
            break;
        }
        entries.append(&mut these);
        at = next;
    }
    entries
}
