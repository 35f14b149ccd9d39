//! An image assembled from parts: squashfs file systems that mksquashfs compressed apart (each a
//! set of store paths, in a derivation of its own that Nix caches), merged into one without
//! compressing anything again.
//!
//! Every data and fragment block of every part is copied as it is; what is written anew is what
//! points at them: the inode, directory, fragment and id tables and the superblock. Parts are
//! written with uncompressed inode and directory tables (`mksquashfs -noI`), so reading them
//! needs no decompressor but for the fragment table; the merged image's tables are compressed
//! again with the image's compressor ([`codec`]).
//!
//! [`read`] reads a part into a [`Dir`] tree; [`write`] lays out the merged tree's tables. The
//! trees are joined here: directories present in several parts (`/`, `/usr`, the store) are one,
//! and must agree on owner, mode and time; anything else present twice is an error.

mod codec;
mod read;
mod write;

use anyhow::{bail, ensure, Context, Result};
use camino::Utf8Path;
use read::Part;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};

pub(crate) const METADATA_SIZE: usize = 8192;
pub(crate) const NO_FRAGMENT: u32 = 0xffff_ffff;
const MAGIC: u32 = 0x7371_7368;
pub(crate) const FLAG_UNCOMPRESSED_INODES: u16 = 0x0001;
const FLAG_UNCOMPRESSED_DATA: u16 = 0x0002;
const FLAG_UNCOMPRESSED_FRAGMENTS: u16 = 0x0008;
const FLAG_NO_FRAGMENTS: u16 = 0x0010;
const FLAG_ALWAYS_FRAGMENTS: u16 = 0x0020;
const FLAG_DUPLICATES: u16 = 0x0040;
const FLAG_EXPORTABLE: u16 = 0x0080;
pub(crate) const FLAG_COMPRESSOR_OPTIONS: u16 = 0x0400;
const FLAG_UNCOMPRESSED_IDS: u16 = 0x0800;

/// The fields of a squashfs 4.0 superblock the merge reads or writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superblock {
    pub inode_count: u32,
    pub mkfs_time: u32,
    pub block_size: u32,
    pub fragment_count: u32,
    pub compression: u16,
    pub block_log: u16,
    pub flags: u16,
    pub id_count: u16,
    pub root_inode: u64,
    pub bytes_used: u64,
    pub id_table: u64,
    pub xattr_table: u64,
    pub inode_table: u64,
    pub directory_table: u64,
    pub fragment_table: u64,
    pub export_table: u64,
}

impl Superblock {
    fn parse(b: &[u8; 96]) -> Result<Superblock> {
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        ensure!(u32_at(0) == MAGIC, "not a squashfs file system");
        ensure!(
            (u16_at(28), u16_at(30)) == (4, 0),
            "squashfs {}.{}, not 4.0",
            u16_at(28),
            u16_at(30)
        );
        let sb = Superblock {
            inode_count: u32_at(4),
            mkfs_time: u32_at(8),
            block_size: u32_at(12),
            fragment_count: u32_at(16),
            compression: u16_at(20),
            block_log: u16_at(22),
            flags: u16_at(24),
            id_count: u16_at(26),
            root_inode: u64_at(32),
            bytes_used: u64_at(40),
            id_table: u64_at(48),
            xattr_table: u64_at(56),
            inode_table: u64_at(64),
            directory_table: u64_at(72),
            fragment_table: u64_at(80),
            export_table: u64_at(88),
        };
        ensure!(
            sb.block_size.is_power_of_two()
                && (4096..=1 << 20).contains(&sb.block_size)
                && 1u32.checked_shl(sb.block_log.into()) == Some(sb.block_size),
            "block size {} (log {})",
            sb.block_size,
            sb.block_log
        );
        ensure!(
            sb.inode_table <= sb.directory_table && sb.directory_table <= sb.bytes_used,
            "tables out of order"
        );
        Ok(sb)
    }

    fn bytes(&self) -> [u8; 96] {
        let mut b = Vec::with_capacity(96);
        for v in [MAGIC, self.inode_count, self.mkfs_time, self.block_size] {
            b.extend(v.to_le_bytes());
        }
        b.extend(self.fragment_count.to_le_bytes());
        for v in [
            self.compression,
            self.block_log,
            self.flags,
            self.id_count,
            4,
            0,
        ] {
            b.extend(v.to_le_bytes());
        }
        for v in [
            self.root_inode,
            self.bytes_used,
            self.id_table,
            self.xattr_table,
            self.inode_table,
            self.directory_table,
            self.fragment_table,
            self.export_table,
        ] {
            b.extend(v.to_le_bytes());
        }
        b.try_into().expect("96 bytes")
    }
}

/// What every inode has: owner and group (ids, not indexes), mode bits, time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub mode: u16,
    pub uid: u32,
    pub gid: u32,
    pub mtime: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Dir(Dir),
    Leaf(Meta, Leaf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dir {
    pub meta: Meta,
    pub children: BTreeMap<Vec<u8>, Node>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leaf {
    File(FileData),
    Symlink(Vec<u8>),
    /// `kind`: 4 block, 5 character device.
    Device {
        kind: u16,
        rdev: u32,
    },
    /// `kind`: 6 fifo, 7 socket.
    Ipc {
        kind: u16,
    },
}

/// A regular file: where its blocks are, and its tail's fragment (index, offset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileData {
    pub start: u64,
    pub size: u64,
    pub sparse: u64,
    pub fragment: Option<(u32, u32)>,
    /// Each block's size word (compressed size, bit 24 set if stored uncompressed, 0 if sparse).
    pub blocks: Vec<u32>,
    pub extended: bool,
}

/// A fragment table entry: where the fragment block lies, and its size word.
pub type Fragment = (u64, u32);

/// What a merge wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Merged {
    pub inodes: u32,
    pub bytes: u64,
}

/// Merges `parts` (in this order: their blocks are laid out so) into the file `out`, the file
/// system starting at `offset` in it. The store paths of each part are its own; a path present
/// in two parts is refused.
pub fn merge(parts: &[&Utf8Path], out: &Utf8Path, offset: u64) -> Result<Merged> {
    on_deep_stack(|| merge_here(parts, out, offset))
}

/// The stack a tree [`read::MAX_DEPTH`] deep needs, read, joined, written and dropped (some KiB
/// a level in a debug build), with room to spare; only what is used is ever touched.
const STACK: usize = 256 << 20;

/// Runs `f` on a thread of its own whose stack is [`STACK`]: the merge recurses once a directory
/// level, and the caller's stack (2 MiB for a thread by default) overflows long before a
/// corrupt or odd part reaches `MAX_DEPTH`, aborting the process.
fn on_deep_stack<T: Send>(f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("merge".to_owned())
            .stack_size(STACK)
            .spawn_scoped(s, f)
            .context("cannot start the merge's thread")?
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

fn merge_here(parts: &[&Utf8Path], out: &Utf8Path, offset: u64) -> Result<Merged> {
    let read: Vec<Part> = parts.iter().map(|p| Part::read(p)).collect::<Result<_>>()?;
    check_alike(&read, parts)?;
    let (first, compressor_options) = (read[0].sb.clone(), read[0].compressor_options.clone());
    let mut file = File::create(out).with_context(|| format!("cannot create {out}"))?;
    let header = 96 + compressor_options.len() as u64;
    file.seek(SeekFrom::Start(offset + header))?;
    let flags = merged_flags(&read);
    let (root, fragments, at) = copy_parts(read, parts, header, &mut file)?;
    let encoder = codec::Encoder::new(first.compression, first.block_size, &compressor_options);
    let tables = write::tables(&root, &fragments, at, encoder)?;
    file.write_all(&tables.bytes)?;
    let end = at + tables.bytes.len() as u64;
    let sb = Superblock {
        inode_count: tables.inodes,
        fragment_count: u32::try_from(fragments.len())?,
        flags,
        id_count: tables.ids,
        root_inode: tables.root,
        bytes_used: end,
        id_table: tables.id_table,
        xattr_table: u64::MAX,
        inode_table: at,
        directory_table: tables.directory_table,
        fragment_table: tables.fragment_table,
        export_table: u64::MAX,
        ..first
    };
    file.seek(SeekFrom::Start(offset))?;
    file.write_all(&sb.bytes())?;
    file.write_all(&compressor_options)?;
    // padded to 4 KiB, as mksquashfs pads, so that a loop device sees every byte
    file.set_len(offset + end.div_ceil(4096) * 4096)?;
    file.sync_all()?;
    Ok(Merged {
        inodes: tables.inodes,
        bytes: end,
    })
}

/// The merge's superblock flags: what each part says of itself holds of the merge if it holds
/// of every part (no fragments, always fragments, duplicates found), or of one (uncompressed
/// data or fragments); its tables are compressed and it has no export table.
fn merged_flags(read: &[Part]) -> u16 {
    let (every, any) = read.iter().fold((0xffff, 0), |(every, any), p| {
        (every & p.sb.flags, any | p.sb.flags)
    });
    let described = (every & (FLAG_NO_FRAGMENTS | FLAG_ALWAYS_FRAGMENTS | FLAG_DUPLICATES))
        | (any & (FLAG_UNCOMPRESSED_DATA | FLAG_UNCOMPRESSED_FRAGMENTS));
    let described_here = FLAG_NO_FRAGMENTS
        | FLAG_ALWAYS_FRAGMENTS
        | FLAG_DUPLICATES
        | FLAG_UNCOMPRESSED_DATA
        | FLAG_UNCOMPRESSED_FRAGMENTS;
    let first = read.first().map_or(0, |p| p.sb.flags);
    first & !(FLAG_UNCOMPRESSED_INODES | FLAG_UNCOMPRESSED_IDS | FLAG_EXPORTABLE | described_here)
        | described
}

/// Refuses parts made with other compression, block size or time than the first, or with a
/// compressor the merge can't write.
fn check_alike(read: &[Part], parts: &[&Utf8Path]) -> Result<()> {
    let first = read.first().context("no parts to merge")?;
    ensure!(
        codec::supported(first.sb.compression),
        "parts can't be merged with compressor {} (lzo): choose another `squash-compression`",
        first.sb.compression
    );
    for (part, path) in read.iter().zip(parts) {
        let (a, b) = (&part.sb, &first.sb);
        let key = |sb: &Superblock, p: &Part| {
            (
                sb.compression,
                sb.block_size,
                sb.mkfs_time,
                p.compressor_options.clone(),
            )
        };
        ensure!(
            key(a, part) == key(b, first),
            "the part {path} was made with other mksquashfs options (compressor {}, block size \
             {}, time {}) than {} ({}, {}, {})",
            a.compression,
            a.block_size,
            a.mkfs_time,
            parts[0],
            b.compression,
            b.block_size,
            b.mkfs_time
        );
    }
    Ok(())
}

/// Copies every part's blocks to `file`, from `at` on, and joins the parts' trees with their
/// files moved to where their blocks now lie. Returns the tree, the fragment table and where the
/// blocks end.
fn copy_parts(
    read: Vec<Part>,
    parts: &[&Utf8Path],
    mut at: u64,
    file: &mut File,
) -> Result<(Dir, Vec<Fragment>, u64)> {
    let mut root: Option<Dir> = None;
    let mut fragments = Vec::new();
    for (part, path) in read.into_iter().zip(parts) {
        let moved = Moved::new(&part, at, fragments.len())?;
        copy_range(path, &part.blocks, file)
            .with_context(|| format!("cannot copy the blocks of {path}"))?;
        at += part.blocks.end - part.blocks.start;
        for &(start, size) in &part.fragments {
            fragments.push((moved.position(start, (size & 0xff_ffff).into())?, size));
        }
        let mut tree = part.root;
        moved.dir(&mut tree)?;
        root = Some(match root {
            None => tree,
            Some(mut into) => {
                join(&mut into, tree, &mut Vec::new())
                    .with_context(|| format!("cannot merge the part {path}"))?;
                into
            }
        });
    }
    Ok((root.context("no parts to merge")?, fragments, at))
}

/// The names in the directory `dir` (relative to the root) of the part `part`.
pub fn names_below(part: &Utf8Path, dir: &Utf8Path) -> Result<Vec<String>> {
    on_deep_stack(|| names_below_here(part, dir))
}

fn names_below_here(part: &Utf8Path, dir: &Utf8Path) -> Result<Vec<String>> {
    let read = Part::read(part)?;
    let mut at = &read.root;
    for name in dir.components() {
        match at.children.get(name.as_str().as_bytes()) {
            Some(Node::Dir(d)) => at = d,
            _ => bail!("the part {part} has no directory /{dir}"),
        }
    }
    at.children
        .keys()
        .map(|n| String::from_utf8(n.clone()).context("a name that is not UTF-8"))
        .collect()
}

/// Copies the bytes `range` of the file `from` to `to`'s position (the kernel's
/// copy_file_range where it can).
fn copy_range(from: &Utf8Path, range: &std::ops::Range<u64>, to: &mut File) -> Result<()> {
    let mut source = File::open(from)?;
    source.seek(SeekFrom::Start(range.start))?;
    let mut limited = std::io::Read::take(source, range.end - range.start);
    let copied = std::io::copy(&mut limited, to)?;
    ensure!(
        copied == range.end - range.start,
        "the part is shorter than its tables say"
    );
    Ok(())
}

/// Where one part's blocks moved to, and its fragments' first index in the merged table.
struct Moved {
    blocks: std::ops::Range<u64>,
    to: u64,
    fragment_base: u32,
    fragment_count: u32,
}

impl Moved {
    fn new(part: &Part, to: u64, fragment_base: usize) -> Result<Moved> {
        Ok(Moved {
            blocks: part.blocks.clone(),
            to,
            fragment_base: u32::try_from(fragment_base)?,
            fragment_count: part.sb.fragment_count,
        })
    }

    /// The new position of `len` bytes at `start` of the part, which must lie in its blocks.
    fn position(&self, start: u64, len: u64) -> Result<u64> {
        let end = start.checked_add(len).context("a block past 2^64")?;
        ensure!(
            start >= self.blocks.start && end <= self.blocks.end,
            "blocks at {start}..{end} lie outside the part's data ({:?})",
            self.blocks
        );
        Ok(start - self.blocks.start + self.to)
    }

    fn dir(&self, dir: &mut Dir) -> Result<()> {
        for child in dir.children.values_mut() {
            match child {
                Node::Dir(d) => self.dir(d)?,
                Node::Leaf(_, Leaf::File(f)) => {
                    let len: u64 = f.blocks.iter().map(|b| u64::from(b & 0xff_ffff)).sum();
                    f.start = if f.blocks.is_empty() {
                        self.to
                    } else {
                        self.position(f.start, len)?
                    };
                    if let Some((index, _)) = &mut f.fragment {
                        ensure!(
                            *index < self.fragment_count,
                            "fragment {index} past the table"
                        );
                        *index += self.fragment_base;
                    }
                }
                Node::Leaf(..) => {}
            }
        }
        Ok(())
    }
}

/// Joins the tree `from` into `into`: directories by name, recursively; `path` names where, for
/// errors.
fn join(into: &mut Dir, from: Dir, path: &mut Vec<Vec<u8>>) -> Result<()> {
    if into.meta != from.meta {
        bail!(
            "the directory /{} differs between parts ({:?} and {:?})",
            shown(path),
            into.meta,
            from.meta
        );
    }
    for (name, node) in from.children {
        path.push(name.clone());
        match (into.children.get_mut(&name), node) {
            (None, node) => {
                into.children.insert(name, node);
            }
            (Some(Node::Dir(a)), Node::Dir(b)) => join(a, b, path)?,
            (Some(_), _) => bail!("/{} is in two parts", shown(path)),
        }
        path.pop();
    }
    Ok(())
}

fn shown(path: &[Vec<u8>]) -> String {
    path.iter()
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect::<Vec<_>>()
        .join("/")
}
