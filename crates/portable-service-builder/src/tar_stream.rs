//! Writes the image plan as an uncompressed tar stream, the input of `mksquashfs -tar`.
//!
//! Nothing is staged: store files go straight from the store into the stream. A large file's
//! data is spliced from the file into the pipe (rustix's `splice`: the pipe takes references to
//! the file's pages, so its bytes never pass through this process; std's `io::copy` won't splice
//! a file into a pipe, since the file could change later, which a store file can't); small
//! files are read into one reused buffer.
//! Determinism is made here and only here: entries in plan order (store paths walked with their
//! entries sorted by byte name), owner 0:0, one fixed mtime, no hard links (an optimised store
//! hard-links files differently on every machine; mksquashfs finds duplicate content itself),
//! no extended attributes. Names and symlink targets are raw bytes, so names with newlines,
//! non-UTF-8 bytes or over 100 bytes go through as GNU tar long-name entries.
//! How far the stream is goes to the build log every [`PROGRESS_EVERY`] (a clock read per
//! file, nothing in the stream).

use crate::plan::{Plan, Source};
use anyhow::{bail, Context, Result};
use camino::Utf8Path;
use rustix::pipe::{splice, SpliceFlags};
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tar::{EntryType, Header};
use walkdir::WalkDir;

/// Every inode of the image gets this time: the mtime of every file in a Nix store.
pub const MTIME: u64 = 1;

/// Files from this size on are spliced; smaller ones are cheaper read into the buffer, which
/// then never grows past this size: memory stays bounded whatever the closure's size.
const SPLICE_FROM: u64 = 256 << 10;
/// Buffer between the tar writer and the pipe, so headers and small files leave in few writes.
const WRITE_BUFFER: usize = 1 << 20;

/// How often a long stream says in the build log how far it is: a closure of gigabytes
/// otherwise shows nothing for minutes between "running mksquashfs" and "wrote".
pub const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// What the stream held, for the build log.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub directories: u64,
    pub files: u64,
    pub symlinks: u64,
    pub bytes: u64,
}

/// Writes every entry of `plan` to the pipe `out` as a tar archive, and finishes it.
pub fn write<W: Write + AsFd>(plan: &Plan, out: W) -> Result<Stats> {
    write_saying_progress(plan, out, PROGRESS_EVERY)
}

/// [`write`], saying how far it is every `every` (the tests say it at every file).
fn write_saying_progress<W: Write + AsFd>(plan: &Plan, out: W, every: Duration) -> Result<Stats> {
    let mut stream = Stream {
        tar: tar::Builder::new(BufWriter::with_capacity(WRITE_BUFFER, out)),
        stats: Stats::default(),
        small: Vec::new(),
        every,
        last_said: Instant::now(),
    };
    for (path, entry) in &plan.entries {
        let path = Path::new(path.as_str());
        match &entry.source {
            Source::Directory => stream.directory(path, entry.mode)?,
            Source::Data(data) => stream.file(path, entry.mode, data.len() as u64, &data[..])?,
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

struct Stream<W: Write + AsFd> {
    tar: tar::Builder<BufWriter<W>>,
    stats: Stats,
    /// The content of the small file being streamed.
    small: Vec<u8>,
    every: Duration,
    last_said: Instant,
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

impl<W: Write + AsFd> Stream<W> {
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
        if self.last_said.elapsed() >= self.every {
            self.last_said = Instant::now();
            tracing::info!(
                "streamed {} files ({} MiB) into mksquashfs so far, now /{}",
                self.stats.files,
                self.stats.bytes >> 20,
                path.display()
            );
        }
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

    fn store_file(&mut self, path: &Path, mode: u32, size: u64, from: &Path) -> Result<()> {
        let mut file = File::open(from)?;
        if size < SPLICE_FROM {
            let mut small = std::mem::take(&mut self.small);
            small.resize(size as usize, 0);
            file.read_exact(&mut small)?;
            self.file(path, mode, size, &small[..])?;
            self.small = small;
            return Ok(());
        }
        // The tar writer writes the header alone (and a long-name entry if needed: it pads only
        // the data it copies, here none); the data and its padding to 512 bytes follow here.
        self.file(path, mode, size, io::empty())?;
        let out = self.tar.get_mut();
        out.flush()?;
        let mut left = size;
        while left > 0 {
            let chunk = usize::try_from(left).unwrap_or(usize::MAX).min(1 << 30);
            let moved = splice(&file, None, out.get_ref(), None, chunk, SpliceFlags::MOVE)
                .map_err(io::Error::from)?;
            if moved == 0 {
                bail!("it ended {left} bytes before its size {size}");
            }
            left -= moved as u64;
        }
        let padding = (512 - size % 512) % 512;
        out.write_all(&[0; 512][..padding as usize])?;
        Ok(())
    }

    /// Walks one store path without following symlinks, entries sorted by byte name. A store
    /// path that is itself a symlink (`ln -s ... $out`) is one symlink in the image, as in the
    /// store: following it would stream what it points to, the build machine's `/etc` for
    /// `ln -s /etc $out`.
    fn store_path(&mut self, image_path: &Path, store_path: &Utf8Path) -> Result<()> {
        let walk = WalkDir::new(store_path)
            .follow_links(false)
            .follow_root_links(false)
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
                self.store_file(&path, mode, meta.size(), item.path())
                    .with_context(|| format!("cannot stream {}", item.path().display()))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Entry;
    use camino::Utf8PathBuf;
    use std::collections::BTreeMap;

    /// Entries read back from a stream: path, kind, mode, mtime, owner, content or target.
    fn read_back(bytes: &[u8]) -> Vec<(String, char, u32, u64, u64, Vec<u8>)> {
        let mut archive = tar::Archive::new(bytes);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let h = e.header().clone();
                let kind = match h.entry_type() {
                    EntryType::Directory => 'd',
                    EntryType::Symlink => 'l',
                    EntryType::Regular => 'f',
                    other => panic!("unexpected {other:?}"),
                };
                let mut data = Vec::new();
                if kind == 'l' {
                    data = e.link_name_bytes().unwrap().into_owned();
                } else {
                    e.read_to_end(&mut data).unwrap();
                }
                let path = String::from_utf8_lossy(&e.path_bytes()).into_owned();
                (
                    path,
                    kind,
                    h.mode().unwrap(),
                    h.mtime().unwrap(),
                    h.uid().unwrap(),
                    data,
                )
            })
            .collect()
    }

    fn store_path_entry(from: &Utf8Path) -> Entry {
        Entry {
            mode: 0,
            source: Source::StorePath(from.to_owned()),
            what: "store path".into(),
        }
    }

    /// The plan streamed through a pipe, as into mksquashfs: its stats and the bytes.
    fn stream(plan: &Plan) -> (Stats, Vec<u8>) {
        let (mut reader, writer) = io::pipe().unwrap();
        let drain = std::thread::spawn(move || {
            let mut out = Vec::new();
            reader.read_to_end(&mut out).unwrap();
            out
        });
        let stats = write(plan, writer).unwrap();
        (stats, drain.join().unwrap())
    }

    /// Saying progress at every file changes no byte of the stream.
    #[test]
    fn progress_in_the_log_leaves_the_stream_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let store = Utf8PathBuf::from_path_buf(dir.path().join("abc-pkg")).unwrap();
        std::fs::create_dir_all(store.join("bin")).unwrap();
        std::fs::write(store.join("bin/tool"), "#!/bin/sh\n").unwrap();
        std::fs::write(store.join("big"), vec![7u8; SPLICE_FROM as usize + 3]).unwrap();
        let mut plan = Plan::default();
        plan.entries.insert(
            Utf8PathBuf::from("nix/store/abc-pkg"),
            store_path_entry(&store),
        );
        let saying = |every| {
            let (mut reader, writer) = io::pipe().unwrap();
            let drain = std::thread::spawn(move || {
                let mut out = Vec::new();
                reader.read_to_end(&mut out).unwrap();
                out
            });
            let stats = write_saying_progress(&plan, writer, every).unwrap();
            (stats, drain.join().unwrap())
        };
        assert_eq!(saying(Duration::ZERO), stream(&plan));
    }

    #[test]
    fn streams_small_and_spliced_files_whole_in_sorted_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Utf8PathBuf::from_path_buf(dir.path().join("pkg")).unwrap();
        std::fs::create_dir_all(store.join("b")).unwrap();
        let big: Vec<u8> = (0..SPLICE_FROM as usize * 2 + 77)
            .map(|i| (i % 251) as u8)
            .collect();
        std::fs::write(store.join("b/big"), &big).unwrap();
        std::fs::write(store.join("a-small"), b"small").unwrap();
        std::os::unix::fs::symlink("b/big", store.join("c-link")).unwrap();
        let long = "x".repeat(150);
        std::fs::write(store.join(&long), b"long").unwrap();
        let mut entries = BTreeMap::new();
        entries.insert(
            Utf8PathBuf::from("etc/os-release"),
            Entry {
                mode: 0o644,
                source: Source::Data(b"ID=nixos\n".to_vec()),
                what: "os-release".into(),
            },
        );
        entries.insert(Utf8PathBuf::from("nix/store/pkg"), store_path_entry(&store));
        let plan = Plan {
            entries,
            store_paths: vec![store.clone()],
        };
        let (stats, out) = stream(&plan);
        assert_eq!(stats.files, 4);
        assert_eq!(stats.bytes, 9 + 5 + big.len() as u64 + 4);

        let back = read_back(&out);
        let paths: Vec<&str> = back.iter().map(|e| e.0.as_str()).collect();
        let long_path = format!("nix/store/pkg/{long}");
        assert_eq!(
            paths,
            [
                "etc/os-release",
                "nix/store/pkg",
                "nix/store/pkg/a-small",
                "nix/store/pkg/b",
                "nix/store/pkg/b/big",
                "nix/store/pkg/c-link",
                long_path.as_str(),
            ]
        );
        let get = |p: &str| back.iter().find(|e| e.0 == p).unwrap();
        assert_eq!(get("nix/store/pkg/b/big").5, big);
        assert_eq!(get("nix/store/pkg/a-small").5, b"small");
        assert_eq!(get("nix/store/pkg/c-link").5, b"b/big");
        assert_eq!(get(&long_path).5, b"long");
        for e in &back {
            assert_eq!((e.3, e.4), (MTIME, 0), "{}: fixed time and owner", e.0);
        }
    }

    #[test]
    fn a_store_path_that_is_a_symlink_stays_one() {
        let dir = tempfile::tempdir().unwrap();
        let root = Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap();
        std::fs::create_dir(root.join("target")).unwrap();
        std::fs::write(root.join("target/secret"), b"of the build machine").unwrap();
        let link = root.join("link");
        std::os::unix::fs::symlink(root.join("target"), &link).unwrap();
        let mut entries = BTreeMap::new();
        entries.insert(Utf8PathBuf::from("nix/store/link"), store_path_entry(&link));
        let plan = Plan {
            entries,
            store_paths: vec![link],
        };
        let (stats, out) = stream(&plan);
        let back = read_back(&out);
        assert_eq!(stats.files, 0);
        assert_eq!(back.len(), 1, "{back:?}");
        assert_eq!(back[0].0, "nix/store/link");
        assert_eq!(back[0].1, 'l');
        assert_eq!(back[0].5, root.join("target").as_str().as_bytes());
    }
}
