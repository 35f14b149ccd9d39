//! Reading a part: a squashfs file system mksquashfs wrote with uncompressed inode, directory and
//! id tables (`-noI`), into a tree whose files still point at the part's compressed blocks.
//!
//! The data and fragment blocks are never decompressed: only the fragment table is, one small
//! metadata table (mksquashfs compresses it whatever `-noI` says), by [`super::codec`].

use super::codec::decompress;
use super::{Dir, FileData, Leaf, Meta, Node, Superblock, NO_FRAGMENT};
use anyhow::{bail, ensure, Context, Result};
use camino::Utf8Path;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

/// How deep directories may nest in a part. Reading, joining and writing a tree recurse once a
/// level; [`super::merge`] runs them on a stack made for this depth.
pub const MAX_DEPTH: usize = 4096;

/// What the merge needs of one part: its tree and where its blocks lie.
pub struct Part {
    pub sb: Superblock,
    /// The compressor options block, as it is (empty without one).
    pub compressor_options: Vec<u8>,
    /// The part's blocks (data and fragments): from after the superblock and compressor options
    /// to the inode table.
    pub blocks: std::ops::Range<u64>,
    /// Fragment table entries: (start, size word).
    pub fragments: Vec<(u64, u32)>,
    pub root: Dir,
}

/// A metadata table read whole: the bytes of its blocks one after another, and where each
/// block starts in the file (relative to the table) and in those bytes.
struct Table {
    bytes: Vec<u8>,
    blocks: BTreeMap<u64, usize>,
}

impl Table {
    fn read(file: &mut File, start: u64, end: u64, what: &str) -> Result<Table> {
        let mut raw = vec![0; usize::try_from(end.saturating_sub(start))?];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut raw)
            .with_context(|| format!("cannot read the {what} table"))?;
        let (mut bytes, mut blocks, mut at) = (Vec::new(), BTreeMap::new(), 0usize);
        while at < raw.len() {
            ensure!(
                at + 2 <= raw.len(),
                "the {what} table ends inside a block header"
            );
            let header = u16::from_le_bytes([raw[at], raw[at + 1]]);
            ensure!(
                header & 0x8000 != 0,
                "the {what} table is compressed: the part was not written with mksquashfs -noI"
            );
            let len = usize::from(header & 0x7fff);
            let block = raw
                .get(at + 2..at + 2 + len)
                .with_context(|| format!("the {what} table ends inside a block"))?;
            blocks.insert(at as u64, bytes.len());
            bytes.extend_from_slice(block);
            at += 2 + len;
        }
        Ok(Table { bytes, blocks })
    }

    /// The bytes from a metadata reference (block start, offset in the block) on.
    fn at(&self, block: u64, offset: u16) -> Result<&[u8]> {
        let start = self
            .blocks
            .get(&block)
            .with_context(|| format!("no metadata block starts at {block}"))?;
        self.bytes
            .get(start + usize::from(offset)..)
            .context("a metadata reference points past its table")
    }
}

/// Little-endian fields read in order, failing at the end of the bytes.
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N]> {
        ensure!(self.0.len() >= N, "a record ends early");
        let (head, rest) = self.0.split_at(N);
        self.0 = rest;
        Ok(head.try_into().expect("split at N"))
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.take()?))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take()?))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take()?))
    }
    fn bytes(&mut self, n: usize) -> Result<Vec<u8>> {
        ensure!(self.0.len() >= n, "a record ends early");
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head.to_vec())
    }
}

impl Part {
    pub fn read(path: &Utf8Path) -> Result<Part> {
        let mut file = File::open(path).with_context(|| format!("cannot open {path}"))?;
        Part::from_file(&mut file).with_context(|| format!("cannot read the part {path}"))
    }

    fn from_file(file: &mut File) -> Result<Part> {
        let mut head = [0; 96];
        file.read_exact(&mut head)
            .context("shorter than a superblock")?;
        let sb = Superblock::parse(&head)?;
        check_bounds(&sb, file.metadata()?.len())?;
        let compressor_options = read_compressor_options(file, &sb)?;
        let blocks = 96 + compressor_options.len() as u64..sb.inode_table;
        ensure!(
            blocks.start <= blocks.end,
            "the inode table starts inside the header"
        );
        let ids = read_index(file, &sb, sb.id_table, usize::from(sb.id_count), 4, "id")?;
        let ids: Vec<u32> = ids
            .chunks(4)
            .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect();
        let count = sb.fragment_count as usize;
        let fragments = read_index(file, &sb, sb.fragment_table, count, 16, "fragment")?
            .chunks(16)
            .map(|c| {
                let mut f = Fields(c);
                Ok((f.u64()?, f.u32()?))
            })
            .collect::<Result<_>>()?;
        let dir_end = directory_table_end(file, &sb)?;
        let inodes = Table::read(file, sb.inode_table, sb.directory_table, "inode")?;
        let dirs = Table::read(file, sb.directory_table, dir_end, "directory")?;
        let reader = Reader {
            inodes: &inodes,
            dirs: &dirs,
            ids: &ids,
            block_size: sb.block_size,
            seen: RefCell::new(HashSet::new()),
        };
        let Node::Dir(root) = reader.node(sb.root_inode, 0)? else {
            bail!("the root is not a directory");
        };
        Ok(Part {
            sb,
            compressor_options,
            blocks,
            fragments,
            root,
        })
    }
}

/// What is read is allocated: bounds it by the file's length `len`, not by what a corrupt part
/// says.
fn check_bounds(sb: &Superblock, len: u64) -> Result<()> {
    ensure!(
        sb.bytes_used <= len,
        "{} bytes used, in a file of {len}",
        sb.bytes_used
    );
    ensure!(
        sb.id_table < sb.bytes_used
            && (sb.fragment_count == 0 || sb.fragment_table < sb.bytes_used),
        "tables past the bytes used"
    );
    // each fragment is a block of its own in the data, at least one byte
    ensure!(
        u64::from(sb.fragment_count) <= sb.inode_table,
        "{} fragments in {} bytes",
        sb.fragment_count,
        sb.inode_table
    );
    Ok(())
}

/// The compressor options block after the superblock, as it is (empty without one).
fn read_compressor_options(file: &mut File, sb: &Superblock) -> Result<Vec<u8>> {
    if sb.flags & super::FLAG_COMPRESSOR_OPTIONS == 0 {
        return Ok(Vec::new());
    }
    let mut header = [0; 2];
    file.read_exact(&mut header)?;
    let len = usize::from(u16::from_le_bytes(header) & 0x7fff);
    let mut options = header.to_vec();
    options.resize(2 + len, 0);
    file.read_exact(&mut options[2..])?;
    Ok(options)
}

/// Where the directory table ends: where the first table after it starts.
fn directory_table_end(file: &mut File, sb: &Superblock) -> Result<u64> {
    Ok([sb.fragment_table, sb.id_table]
        .into_iter()
        .chain(first_block(file, sb, sb.fragment_table, sb.fragment_count)?)
        .chain(first_block(file, sb, sb.id_table, u32::from(sb.id_count))?)
        .filter(|&at| at >= sb.directory_table)
        .min()
        .unwrap_or(sb.bytes_used))
}

/// Where the first metadata block of an indexed table (fragments, ids) lies, if it has entries.
fn first_block(file: &mut File, sb: &Superblock, index: u64, count: u32) -> Result<Option<u64>> {
    if count == 0 || index >= sb.bytes_used {
        return Ok(None);
    }
    let mut at = [0; 8];
    file.seek(SeekFrom::Start(index))?;
    file.read_exact(&mut at)?;
    Ok(Some(u64::from_le_bytes(at)))
}

/// The entries of an indexed table (`count` of `size` bytes), whose metadata blocks the index at
/// `index` lists; compressed blocks are decompressed with the part's compressor.
fn read_index(
    file: &mut File,
    sb: &Superblock,
    index: u64,
    count: usize,
    size: usize,
    what: &str,
) -> Result<Vec<u8>> {
    let want = count * size;
    let mut out = Vec::new();
    let blocks = want.div_ceil(super::METADATA_SIZE);
    ensure!(
        (blocks as u64) * 8 <= sb.bytes_used.saturating_sub(index),
        "the {what} table's index runs past the bytes used"
    );
    let mut pointers = vec![0; blocks * 8];
    file.seek(SeekFrom::Start(index))?;
    file.read_exact(&mut pointers)
        .with_context(|| format!("cannot read the {what} table's index"))?;
    for pointer in pointers.chunks(8) {
        let at = u64::from_le_bytes(pointer.try_into().expect("8 bytes"));
        let mut header = [0; 2];
        file.seek(SeekFrom::Start(at))?;
        file.read_exact(&mut header)?;
        let header = u16::from_le_bytes(header);
        let mut block = vec![0; usize::from(header & 0x7fff)];
        file.read_exact(&mut block)?;
        if header & 0x8000 == 0 {
            block = decompress(sb.compression, &block)
                .with_context(|| format!("cannot decompress the {what} table"))?;
        }
        out.extend_from_slice(&block);
    }
    ensure!(
        out.len() >= want,
        "the {what} table is shorter than its count"
    );
    out.truncate(want);
    Ok(out)
}

struct Reader<'a> {
    inodes: &'a Table,
    dirs: &'a Table,
    ids: &'a [u32],
    block_size: u32,
    /// The inodes read: a part has no hard links, so a second entry for one is corrupt (a
    /// directory listing itself or an ancestor would recurse, two entries for one directory
    /// would double the work at every level).
    seen: RefCell<HashSet<u64>>,
}

impl Reader<'_> {
    fn id(&self, index: u16) -> Result<u32> {
        self.ids
            .get(usize::from(index))
            .copied()
            .with_context(|| format!("id index {index} is past the id table"))
    }

    /// The node an inode reference names; `depth` bounds the recursion of a hostile part.
    fn node(&self, reference: u64, depth: usize) -> Result<Node> {
        ensure!(
            depth < MAX_DEPTH,
            "directories nest deeper than {MAX_DEPTH}"
        );
        ensure!(
            self.seen.borrow_mut().insert(reference),
            "the inode at {reference:#x} is listed twice"
        );
        let mut f = Fields(self.inodes.at(reference >> 16, reference as u16)?);
        let kind = f.u16()?;
        let meta = Meta {
            mode: f.u16()?,
            uid: self.id(f.u16()?)?,
            gid: self.id(f.u16()?)?,
            mtime: f.u32()?,
        };
        let _number = f.u32()?;
        let leaf = match kind {
            1 | 8 => return Ok(Node::Dir(self.dir(kind, meta, &mut f, depth)?)),
            2 => {
                let (start, fragment, offset, size) = (f.u32()?, f.u32()?, f.u32()?, f.u32()?);
                file(
                    &mut f,
                    self.block_size,
                    start.into(),
                    size.into(),
                    0,
                    fragment,
                    offset,
                    1,
                    false,
                )?
            }
            9 => {
                let (start, size, sparse, nlink) = (f.u64()?, f.u64()?, f.u64()?, f.u32()?);
                let (fragment, offset, _xattr) = (f.u32()?, f.u32()?, f.u32()?);
                file(
                    &mut f,
                    self.block_size,
                    start,
                    size,
                    sparse,
                    fragment,
                    offset,
                    nlink,
                    true,
                )?
            }
            3 | 10 => {
                let nlink = f.u32()?;
                let len = f.u32()? as usize;
                ensure!(
                    nlink == 1,
                    "a symlink with {nlink} links (parts have no hard links)"
                );
                Leaf::Symlink(f.bytes(len)?)
            }
            4 | 5 | 11 | 12 => {
                let nlink = f.u32()?;
                ensure!(
                    nlink == 1,
                    "a device with {nlink} links (parts have no hard links)"
                );
                Leaf::Device {
                    kind: (kind - 1) % 7 + 1,
                    rdev: f.u32()?,
                }
            }
            6 | 7 | 13 | 14 => Leaf::Ipc {
                kind: (kind - 1) % 7 + 1,
            },
            other => bail!("unknown inode type {other}"),
        };
        Ok(Node::Leaf(meta, leaf))
    }

    fn dir(&self, kind: u16, meta: Meta, f: &mut Fields, depth: usize) -> Result<Dir> {
        let (block, size, offset) = if kind == 1 {
            let (block, _nlink, size, offset) = (f.u32()?, f.u32()?, f.u16()?, f.u16()?);
            (block, u32::from(size), offset)
        } else {
            let (_nlink, size, block, _parent) = (f.u32()?, f.u32()?, f.u32()?, f.u32()?);
            let (_index_count, offset) = (f.u16()?, f.u16()?);
            (block, size, offset)
        };
        // a listing's size counts 3 bytes more than its entries ("." and "..")
        let len = (size as usize).saturating_sub(3);
        let mut listing = Fields(
            self.dirs
                .at(block.into(), offset)?
                .get(..len)
                .context("a directory's listing runs past the directory table")?,
        );
        let mut children = BTreeMap::new();
        while !listing.0.is_empty() {
            let (count, start, _base) = (listing.u32()?, listing.u32()?, listing.u32()?);
            for _ in 0..=count {
                let (offset, _delta, _kind) = (listing.u16()?, listing.u16()?, listing.u16()?);
                let name_len = usize::from(listing.u16()?) + 1;
                let name = listing.bytes(name_len)?;
                let child = self.node(u64::from(start) << 16 | u64::from(offset), depth + 1)?;
                ensure!(
                    children.insert(name.clone(), child).is_none(),
                    "{} is listed twice",
                    String::from_utf8_lossy(&name)
                );
            }
        }
        Ok(Dir { meta, children })
    }
}

/// A regular file's inode after its fixed fields: its block sizes follow, one per whole block
/// (and one for the tail when it has no fragment).
#[allow(clippy::too_many_arguments)]
fn file(
    f: &mut Fields,
    block_size: u32,
    start: u64,
    size: u64,
    sparse: u64,
    fragment: u32,
    offset: u32,
    nlink: u32,
    extended: bool,
) -> Result<Leaf> {
    ensure!(
        nlink == 1,
        "a file with {nlink} links (parts have no hard links)"
    );
    let fragment = (fragment != NO_FRAGMENT).then_some((fragment, offset));
    let whole = size / u64::from(block_size);
    let count = if fragment.is_some() || size.is_multiple_of(u64::from(block_size)) {
        whole
    } else {
        whole + 1
    };
    ensure!(count <= 1 << 32, "a file of {size} bytes");
    let blocks = (0..count).map(|_| f.u32()).collect::<Result<_>>()?;
    Ok(Leaf::File(FileData {
        start,
        size,
        sparse,
        fragment,
        blocks,
        extended,
    }))
}
