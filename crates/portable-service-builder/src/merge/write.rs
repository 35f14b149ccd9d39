//! The merged image's tables: inodes, directory listings, fragments and ids, as metadata blocks
//! of the image's compressor, laid out from a given position.
//!
//! Inodes are numbered in pre-order (a directory before what it holds, children by name) and
//! written in post-order (a directory's listing names its children's inodes, so they come
//! first). Both orders follow the tree alone, so the same tree gives the same bytes.

use super::codec::Encoder;
use super::{Dir, FileData, Leaf, Meta, Node, METADATA_SIZE, NO_FRAGMENT};
use anyhow::{ensure, Result};
use std::collections::BTreeMap;

/// The tables' bytes and where each starts (relative to the file system's start).
pub struct Tables {
    pub bytes: Vec<u8>,
    pub inodes: u32,
    pub ids: u16,
    pub root: u64,
    pub directory_table: u64,
    pub fragment_table: u64,
    pub id_table: u64,
}

pub fn tables(
    root: &Dir,
    fragments: &[(u64, u32)],
    at: u64,
    compression: Encoder,
) -> Result<Tables> {
    let total = count_dir(root);
    ensure!(total < u32::MAX as u64, "{total} inodes");
    let mut w = Writer {
        inodes: Blocks::new(compression),
        dirs: Blocks::new(compression),
        ids: Vec::new(),
        id_index: BTreeMap::new(),
    };
    let (root_ref, _) = w.dir(root, 1, total as u32 + 1)?;
    let mut bytes = w.inodes.finish();
    let directory_table = at + bytes.len() as u64;
    bytes.extend(w.dirs.finish());
    let fragment_entries: Vec<u8> = fragments
        .iter()
        .flat_map(|&(start, size)| [start.to_le_bytes(), (u64::from(size)).to_le_bytes()])
        .flatten()
        .collect();
    let fragment_table = indexed(&mut bytes, at, &fragment_entries, compression);
    let ids: Vec<u8> = w.ids.iter().flat_map(|id| id.to_le_bytes()).collect();
    let id_table = indexed(&mut bytes, at, &ids, compression);
    Ok(Tables {
        bytes,
        inodes: total as u32,
        ids: u16::try_from(w.ids.len())?,
        root: root_ref,
        directory_table,
        fragment_table,
        id_table,
    })
}

/// How many inodes a tree has.
fn count(node: &Node) -> u64 {
    match node {
        Node::Dir(d) => count_dir(d),
        Node::Leaf(..) => 1,
    }
}

fn count_dir(dir: &Dir) -> u64 {
    1 + dir.children.values().map(count).sum::<u64>()
}

/// Appends `entries` as metadata blocks and then their index (each block's position); returns
/// the index's position.
fn indexed(bytes: &mut Vec<u8>, at: u64, entries: &[u8], compression: Encoder) -> u64 {
    let mut index = Vec::new();
    for chunk in entries.chunks(METADATA_SIZE) {
        index.extend((at + bytes.len() as u64).to_le_bytes());
        bytes.extend(compression.block(chunk));
    }
    let position = at + bytes.len() as u64;
    bytes.extend(index);
    position
}

/// A metadata table written as it grows: each 8 KiB compressed as it fills, so that the
/// reference of what starts now (the compressed block's start, the offset in it) is known now.
struct Blocks {
    compression: Encoder,
    done: Vec<u8>,
    block: Vec<u8>,
}

impl Blocks {
    fn new(compression: Encoder) -> Blocks {
        Blocks {
            compression,
            done: Vec::new(),
            block: Vec::with_capacity(METADATA_SIZE),
        }
    }

    fn reference(&self) -> u64 {
        (self.done.len() as u64) << 16 | self.block.len() as u64
    }

    fn extend(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let n = bytes.len().min(METADATA_SIZE - self.block.len());
            self.block.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.block.len() == METADATA_SIZE {
                self.flush();
            }
        }
    }

    fn flush(&mut self) {
        if !self.block.is_empty() {
            self.done.extend(self.compression.block(&self.block));
            self.block.clear();
        }
    }

    fn finish(mut self) -> Vec<u8> {
        self.flush();
        self.done
    }
}

struct Writer {
    inodes: Blocks,
    dirs: Blocks,
    ids: Vec<u32>,
    id_index: BTreeMap<u32, u16>,
}

/// A written child, as its directory lists it.
struct Written {
    reference: u64,
    number: u32,
    kind: u16,
}

impl Writer {
    fn id(&mut self, id: u32) -> Result<u16> {
        if let Some(&i) = self.id_index.get(&id) {
            return Ok(i);
        }
        let i = u16::try_from(self.ids.len())?;
        self.ids.push(id);
        self.id_index.insert(id, i);
        Ok(i)
    }

    /// Starts an inode: returns its reference.
    fn header(&mut self, kind: u16, meta: &Meta, number: u32) -> Result<u64> {
        let reference = self.inodes.reference();
        let (uid, gid) = (self.id(meta.uid)?, self.id(meta.gid)?);
        for v in [kind, meta.mode, uid, gid] {
            self.inodes.extend(&v.to_le_bytes());
        }
        self.inodes.extend(&meta.mtime.to_le_bytes());
        self.inodes.extend(&number.to_le_bytes());
        Ok(reference)
    }

    fn put(&mut self, values: &[u32]) {
        for v in values {
            self.inodes.extend(&v.to_le_bytes());
        }
    }

    /// Writes a directory's children, its listing and itself; returns its reference and kind.
    fn dir(&mut self, dir: &Dir, number: u32, parent: u32) -> Result<(u64, u16)> {
        let mut next = number + 1;
        let mut written = Vec::with_capacity(dir.children.len());
        let mut subdirs = 0u32;
        for (name, child) in &dir.children {
            let child_number = next;
            next += count(child) as u32;
            let (reference, kind) = match child {
                Node::Dir(d) => {
                    subdirs += 1;
                    self.dir(d, child_number, number)?
                }
                Node::Leaf(meta, leaf) => (self.leaf(meta, leaf, child_number)?, leaf.kind()),
            };
            written.push((
                name,
                Written {
                    reference,
                    number: child_number,
                    kind,
                },
            ));
        }
        let listing_at = self.dirs.reference();
        let size = self.listing(&written) + 3;
        let (block, offset) = (listing_at >> 16, listing_at & 0xffff);
        let nlink = 2 + subdirs;
        if let Ok(size) = u16::try_from(size) {
            let reference = self.header(1, &dir.meta, number)?;
            self.put(&[block as u32, nlink]);
            self.inodes.extend(&size.to_le_bytes());
            self.inodes.extend(&(offset as u16).to_le_bytes());
            self.put(&[parent]);
            Ok((reference, 1))
        } else {
            let reference = self.header(8, &dir.meta, number)?;
            self.put(&[nlink, u32::try_from(size)?, block as u32, parent]);
            self.inodes.extend(&0u16.to_le_bytes());
            self.inodes.extend(&(offset as u16).to_le_bytes());
            self.put(&[u32::MAX]);
            Ok((reference, 1))
        }
    }

    /// A listing: runs of at most 256 entries whose inodes share a metadata block and lie
    /// within ±32767 of the run's first inode number, each run behind a header. Returns its
    /// length.
    fn listing(&mut self, entries: &[(&Vec<u8>, Written)]) -> usize {
        let mut out = Vec::new();
        let mut rest = entries;
        while let Some((_, first)) = rest.first() {
            let block = first.reference >> 16;
            let run = rest
                .iter()
                .take(256)
                .take_while(|(_, w)| {
                    w.reference >> 16 == block
                        && (i64::from(w.number) - i64::from(first.number)).abs() <= 32767
                })
                .count();
            for v in [run as u32 - 1, block as u32, first.number] {
                out.extend(v.to_le_bytes());
            }
            for (name, w) in &rest[..run] {
                let delta = (i64::from(w.number) - i64::from(first.number)) as i16;
                out.extend((w.reference as u16).to_le_bytes());
                out.extend(delta.to_le_bytes());
                out.extend(w.kind.to_le_bytes());
                out.extend((name.len() as u16 - 1).to_le_bytes());
                out.extend_from_slice(name);
            }
            rest = &rest[run..];
        }
        self.dirs.extend(&out);
        out.len()
    }

    fn leaf(&mut self, meta: &Meta, leaf: &Leaf, number: u32) -> Result<u64> {
        match leaf {
            Leaf::File(f) => self.file(meta, f, number),
            Leaf::Symlink(target) => {
                let reference = self.header(3, meta, number)?;
                self.put(&[1, u32::try_from(target.len())?]);
                self.inodes.extend(target);
                Ok(reference)
            }
            Leaf::Device { kind, rdev } => {
                let reference = self.header(*kind, meta, number)?;
                self.put(&[1, *rdev]);
                Ok(reference)
            }
            Leaf::Ipc { kind } => {
                let reference = self.header(*kind, meta, number)?;
                self.put(&[1]);
                Ok(reference)
            }
        }
    }

    fn file(&mut self, meta: &Meta, f: &FileData, number: u32) -> Result<u64> {
        let (fragment, offset) = f.fragment.unwrap_or((NO_FRAGMENT, 0));
        let basic = (u32::try_from(f.start), u32::try_from(f.size));
        let reference = match basic {
            (Ok(start), Ok(size)) if !f.extended => {
                let reference = self.header(2, meta, number)?;
                self.put(&[start, fragment, offset, size]);
                reference
            }
            _ => {
                let reference = self.header(9, meta, number)?;
                for v in [f.start, f.size, f.sparse] {
                    self.inodes.extend(&v.to_le_bytes());
                }
                self.put(&[1, fragment, offset, u32::MAX]);
                reference
            }
        };
        self.put(&f.blocks);
        Ok(reference)
    }
}

impl Leaf {
    /// The inode type a directory entry gives it (the basic one).
    fn kind(&self) -> u16 {
        match self {
            Leaf::File(_) => 2,
            Leaf::Symlink(_) => 3,
            Leaf::Device { kind, .. } | Leaf::Ipc { kind } => *kind,
        }
    }
}
