//! Writes the image plan as an uncompressed tar stream, the input of `mksquashfs -tar`.
//!
//! Nothing is staged: store files are read once, straight from the store into the stream.
//! Determinism is made here and only here: entries in plan order (store paths walked with their
//! entries sorted by byte name), owner 0:0, one fixed mtime, no hard links (an optimised store
//! hard-links files differently on every machine; mksquashfs finds duplicate content itself),
//! no extended attributes. Names and symlink targets are raw bytes, so names with newlines,
//! non-UTF-8 bytes or over 100 bytes go through as GNU tar long-name entries.

use crate::plan::{Plan, Source};
use anyhow::{bail, Context, Result};
use camino::Utf8Path;
use std::fs::File;
use std::io::{self, BufReader, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use tar::{EntryType, Header};
use walkdir::WalkDir;

/// Every inode of the image gets this time: the mtime of every file in a Nix store.
pub const MTIME: u64 = 1;

/// Reads from store files are buffered in chunks this big, so that a large file costs few
/// system calls; memory stays bounded whatever the closure's size.
const READ_BUFFER: usize = 1 << 20;

/// What the stream held, for the build log.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub directories: u64,
    pub files: u64,
    pub symlinks: u64,
    pub bytes: u64,
}

/// Writes every entry of `plan` to `out` as a tar archive, and finishes it.
pub fn write<W: Write>(plan: &Plan, out: W) -> Result<Stats> {
    let mut stream = Stream {
        tar: tar::Builder::new(out),
        stats: Stats::default(),
    };
    for (path, entry) in &plan.entries {
        let path = Path::new(path.as_str());
        match &entry.source {
            Source::Directory => stream.directory(path, entry.mode)?,
            Source::Data(data) => stream.file(path, entry.mode, data.len() as u64, &data[..])?,
            Source::FileFrom(file) => {
                let content = std::fs::read(file)
                    .with_context(|| format!("cannot read {file} for /{}", path.display()))?;
                stream.file(path, entry.mode, content.len() as u64, &content[..])?;
            }
            Source::Symlink(target) => stream.symlink(path, Path::new(target.as_str()))?,
            Source::StorePath(store_path) => stream.store_path(path, store_path)?,
        }
    }
    stream
        .tar
        .finish()
        .context("cannot finish the tar stream")?;
    Ok(stream.stats)
}

struct Stream<W: Write> {
    tar: tar::Builder<W>,
    stats: Stats,
}

fn header(kind: EntryType, mode: u32, size: u64) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode & 0o7777);
    h.set_size(size);
    h.set_mtime(MTIME);
    h.set_uid(0);
    h.set_gid(0);
    h
}

impl<W: Write> Stream<W> {
    fn directory(&mut self, path: &Path, mode: u32) -> Result<()> {
        self.stats.directories += 1;
        self.tar
            .append_data(
                &mut header(EntryType::Directory, mode, 0),
                path,
                io::empty(),
            )
            .with_context(|| format!("cannot stream directory /{}", path.display()))
    }

    fn file(&mut self, path: &Path, mode: u32, size: u64, data: impl io::Read) -> Result<()> {
        self.stats.files += 1;
        self.stats.bytes += size;
        self.tar
            .append_data(&mut header(EntryType::Regular, mode, size), path, data)
            .with_context(|| format!("cannot stream file /{}", path.display()))
    }

    fn symlink(&mut self, path: &Path, target: &Path) -> Result<()> {
        self.stats.symlinks += 1;
        self.tar
            .append_link(&mut header(EntryType::Symlink, 0o777, 0), path, target)
            .with_context(|| format!("cannot stream symlink /{}", path.display()))
    }

    /// Walks one store path without following symlinks, entries sorted by byte name.
    fn store_path(&mut self, image_path: &Path, store_path: &Utf8Path) -> Result<()> {
        let walk = WalkDir::new(store_path)
            .follow_links(false)
            .sort_by(|a, b| a.file_name().cmp(b.file_name()));
        for item in walk {
            let item = item.with_context(|| format!("cannot read store path {store_path}"))?;
            let rel = item
                .path()
                .strip_prefix(store_path)
                .expect("walkdir yields paths below its root");
            let path: PathBuf = if rel.as_os_str().is_empty() {
                image_path.to_owned()
            } else {
                image_path.join(rel)
            };
            let meta = item
                .metadata()
                .with_context(|| format!("cannot stat {}", item.path().display()))?;
            let mode = meta.permissions().mode();
            let kind = item.file_type();
            if kind.is_dir() {
                self.directory(&path, mode)?;
            } else if kind.is_symlink() {
                let target = std::fs::read_link(item.path())
                    .with_context(|| format!("cannot read symlink {}", item.path().display()))?;
                self.symlink(&path, &target)?;
            } else if kind.is_file() {
                let file = File::open(item.path())
                    .with_context(|| format!("cannot open {}", item.path().display()))?;
                let reader = BufReader::with_capacity(READ_BUFFER, file);
                self.file(&path, mode, meta.size(), reader)?;
            } else {
                bail!(
                    "{} is neither a file, a directory nor a symlink; a Nix store holds no other kind",
                    item.path().display()
                );
            }
        }
        Ok(())
    }
}
