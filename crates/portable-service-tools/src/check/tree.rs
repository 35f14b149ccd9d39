//! An image as `check` sees it: every entry of its file system (kind, mode, symlink target) and
//! a way to read a file's content, whatever wrote the image. [`Image::open`] reads a squashfs
//! file, or a disk image's root partition, with the `backhand` crate; tests build trees by hand.
//!
//! [`View`] is what a service sees: a base image with extensions overlaid on it, and path
//! resolution inside that view (symlinks followed the way the kernel follows them, relative to
//! the image's root, never to the host's).

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use portable_service_rules::ddi;
use portable_service_rules::dissect::{self, Kind};
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

/// One entry of an image's file system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Dir,
    File {
        mode: u32,
    },
    Symlink(PathBuf),
    /// A device, FIFO or socket.
    Other,
}

/// An image file: its name (as portabled names it) and its tree.
pub struct Image {
    pub path: Utf8PathBuf,
    /// The file name without `.raw`.
    pub name: String,
    /// Paths relative to the root (the root itself is the empty path).
    pub nodes: BTreeMap<PathBuf, Node>,
    /// A Discoverable Disk Image's partition table; `None` for a naked file system.
    pub disk: Option<ddi::Table>,
    /// What systemd mounts of it (for a disk: the partitions it chose).
    pub used: Vec<dissect::Mount>,
    contents: Box<ReadFile>,
}

/// Gives a file's content by its path in the image.
type ReadFile = dyn Fn(&Path) -> Result<Vec<u8>>;

/// The most check reads of one file of an image (a unit or release file).
pub const MAX_READ: u64 = 4 << 20;

/// A file of an image larger than [`MAX_READ`]: the image can't be judged (exit 2), which is
/// not the verdict that systemd refuses it.
#[derive(Debug)]
pub struct TooLarge(pub String);

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TooLarge {}

impl Image {
    /// An image from a tree and a function giving a file's content (tests).
    pub fn from_tree(
        path: &Utf8Path,
        nodes: BTreeMap<PathBuf, Node>,
        contents: impl Fn(&Path) -> Result<Vec<u8>> + 'static,
    ) -> Image {
        let name = path.file_name().unwrap_or_default();
        Image {
            path: path.to_owned(),
            name: name.strip_suffix(".raw").unwrap_or(name).to_owned(),
            nodes,
            disk: None,
            used: Vec::new(),
            contents: Box::new(contents),
        }
    }

    /// [`Image::open_as`] by systemd 252's rules of dissecting.
    pub fn open(path: &Utf8Path, arch: &str) -> Result<Image> {
        Image::open_as(path, arch, 252)
    }

    /// Reads a squashfs image, or the squashfs root partition of a Discoverable Disk Image.
    /// backhand reads it in this process, names and all (no listing to parse), with the
    /// compressors mksquashfs writes; see BENCHMARKS.md for its cost.
    /// What is read is what systemd `systemd` mounts on a host of architecture `arch` (systemd's
    /// name), as [`dissect`] decides it: a file libblkid takes for a file system is that file
    /// system whatever table follows it; a disk's root partition is the one systemd chooses.
    /// An image of which systemd would mount anything else is refused, saying what.
    pub fn open_as(path: &Utf8Path, arch: &str, systemd: u32) -> Result<Image> {
        let mut file = std::fs::File::open(path).with_context(|| format!("cannot open {path}"))?;
        let dissected = match dissect::dissect(&mut file, dissect::Rules::of(systemd), arch) {
            Ok(d) => d,
            // no image at all: backhand's reader says what the file is instead
            Err(dissect::Refusal::NoImage) => dissect::Dissected::default(),
            Err(why) => bail!("{path}: {why}"),
        };
        let (offset, disk) = if dissected.whole || dissected.mounts.is_empty() {
            if dissected.whole {
                root_of(path, &dissected)?;
            }
            (0, None)
        } else {
            let root = root_of(path, &dissected)?;
            dissect::vouch(&mut file, &dissected)
                .map_err(|why| anyhow::anyhow!("{path}: {why}"))?;
            let table = ddi::read_table(path)?;
            root_fits(&mut file, path, root)?;
            (root.range.start, Some(table))
        };
        let used = dissected.mounts.clone();
        super::squashfs::check_metadata_of(path, offset)?;
        let file = std::fs::File::open(path).with_context(|| format!("cannot open {path}"))?;
        let unreadable = |e| anyhow::anyhow!(super::squashfs::why_unreadable(path, offset, &e));
        let tables =
            backhand::Squashfs::from_reader_with_offset(std::io::BufReader::new(file), offset)
                .map_err(unreadable)?;
        super::squashfs::check_tree(&tables)
            .with_context(|| format!("{path} is not a squashfs image check can read"))?;
        let fs = tables.into_filesystem_reader().map_err(unreadable)?;
        let mut nodes = BTreeMap::new();
        for node in fs.files() {
            let rel = node
                .fullpath
                .strip_prefix("/")
                .unwrap_or(&node.fullpath)
                .to_owned();
            let entry = match &node.inner {
                backhand::InnerNode::Dir(_) => Node::Dir,
                backhand::InnerNode::File(_) => Node::File {
                    mode: u32::from(node.header.permissions),
                },
                backhand::InnerNode::Symlink(link) => Node::Symlink(link.link.clone()),
                _ => Node::Other,
            };
            nodes.insert(rel, entry);
        }
        let image_path = path.to_owned();
        let contents = move |p: &Path| -> Result<Vec<u8>> {
            // found by a walk of backhand's own list rather than a map of our own: a map would
            // be a third copy of every path, and check reads a few dozen files
            let node = fs
                .files()
                .find(|n| n.fullpath.strip_prefix("/").is_ok_and(|rel| rel == p))
                .with_context(|| format!("{} is not a file of {image_path}", p.display()))?;
            let backhand::InnerNode::File(file) = &node.inner else {
                bail!("{} is not a file", p.display());
            };
            // the size a file claims is checked before it is read: squashfs holds sparse files
            // of up to 2 TiB in a few bytes
            let len = file.file_len() as u64;
            if len > MAX_READ {
                return Err(TooLarge(format!(
                    "/{} in {image_path} is {len} bytes: check reads unit and release files of up \
                     to {MAX_READ} bytes (systemd's are a few KiB), and judges no image with a \
                     larger one",
                    p.display()
                ))
                .into());
            }
            let mut data = Vec::with_capacity(len as usize);
            std::io::Read::read_to_end(
                &mut std::io::Read::take(fs.file(file).reader(), MAX_READ),
                &mut data,
            )
            .with_context(|| format!("cannot read {} in {image_path}", p.display()))?;
            Ok(data)
        };
        let mut image = Image::from_tree(path, nodes, contents);
        image.disk = disk;
        image.used = used;
        Ok(image)
    }

    /// The content of the file at `path` (relative to the root, no symlink followed).
    pub fn read(&self, path: &Path) -> Result<Vec<u8>> {
        (self.contents)(path)
    }
}

/// The root file system systemd mounts of `dissected`, which check reads: a squashfs, and no
/// usr partition beside it (portableService makes none; one would be mounted over the root's
/// /usr, unread here).
fn root_of<'d>(path: &Utf8Path, dissected: &'d dissect::Dissected) -> Result<&'d dissect::Mount> {
    if let Some(other) = dissected
        .mounts
        .iter()
        .find(|m| matches!(m.kind, Kind::Other(_) | Kind::Usr) && m.designator == m.kind.name())
    {
        if other.kind != Kind::Usr {
            bail!(
                "{path}: systemd also mounts its {} partition {} into the service's tree, \
                 unprotected by the root's hash tree or signature: check judges disks that hold \
                 the root, its hash tree and signature only, as portableService builds them",
                other.designator,
                other.number.unwrap_or(0)
            );
        }
    }
    if let Some(usr) = dissected.get(Kind::Usr) {
        bail!(
            "{path}: systemd mounts its usr partition {} over the root's /usr: check reads \
             images whose root partition holds the service, as portableService builds them",
            usr.number.unwrap_or(0)
        );
    }
    let root = dissected
        .get(Kind::Root)
        .context("systemd finds no root in it")?;
    match root.fstype.as_deref() {
        Some("squashfs") => Ok(root),
        other => {
            let what = other.map_or("no file system libblkid knows".to_owned(), |t| {
                format!("a {t} file system")
            });
            let part = root.number.map_or("it is".to_owned(), |n| {
                format!("its root partition {n} holds")
            });
            bail!("{path}: {part} {what}: check reads squashfs images")
        }
    }
}

/// A root partition's squashfs must end inside the partition: the kernel reads the partition's
/// device, and a file system running past its end fails to mount.
fn root_fits(file: &mut std::fs::File, path: &Utf8Path, root: &dissect::Mount) -> Result<()> {
    let head = dissect::blkid::head(file, root.range.start, root.range.end)?;
    let room = root.range.end - root.range.start;
    match dissect::blkid::squashfs_len(&head) {
        Some(len) if len > room => bail!(
            "{path}: the squashfs file system of root partition {} is {len} bytes, its \
             partition {room}: systemd fails to mount it",
            root.number.unwrap_or(0)
        ),
        // what follows the file system in its partition is padding, zeros as mksquashfs and
        // portableService write it: a hash tree need not cover a partial last block, and
        // bytes there could hold what libblkid finds
        Some(len) => {
            let tail = root.range.start + len..root.range.end;
            if let Some(x) = dissect::first_non_zero(file, tail)? {
                bail!(
                    "{path}: byte {x}, after the squashfs file system in root partition {}, is \
                     not zero: check judges partitions whose padding is zeros",
                    root.number.unwrap_or(0)
                );
            }
            Ok(())
        }
        None => Ok(()),
    }
}

/// The tree a service sees: the base, with each extension overlaid on the one directory its
/// kind reaches (`usr` for a system extension, `etc` for a configuration extension).
pub struct View<'a> {
    /// Top layer first; `None`: the whole tree (the base).
    layers: Vec<(&'a Image, Option<&'static str>)>,
}

/// Where a resolution ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// The path exists; the node it ended on and which image holds it.
    Found(PathBuf, Node),
    /// `missing` (a path relative to the root) is not there.
    Missing(PathBuf),
    /// Too many symlinks (a loop).
    Loop,
}

const MAX_SYMLINKS: usize = 40;

impl<'a> View<'a> {
    pub fn new(base: &'a Image) -> View<'a> {
        View {
            layers: vec![(base, None)],
        }
    }

    /// Adds an extension on top, reaching only below `below`.
    pub fn overlay(&mut self, ext: &'a Image, below: &'static str) {
        self.layers.insert(0, (ext, Some(below)));
    }

    /// The node at `path` (relative, no symlink followed), from the top layer that has it.
    pub fn node(&self, path: &Path) -> Option<(&'a Image, &'a Node)> {
        self.layers.iter().find_map(|(image, below)| {
            let visible = below.is_none_or(|b| path.starts_with(b) && path != Path::new(b));
            visible
                .then(|| image.nodes.get(path).map(|n| (*image, n)))
                .flatten()
        })
    }

    /// Follows `path` (absolute inside the image, or relative to its root) through symlinks.
    pub fn resolve(&self, path: &Path) -> Resolved {
        let mut done = PathBuf::new();
        let mut hops = 0;
        // the components still to walk, the next one last
        let mut rest: Vec<std::ffi::OsString> = Vec::new();
        push_components(&mut rest, path);
        while let Some(c) = rest.pop() {
            if c == ".." {
                done.pop();
                continue;
            }
            let next = done.join(&c);
            match self.node(&next) {
                None => {
                    let mut missing = next;
                    while let Some(c) = rest.pop() {
                        missing.push(c);
                    }
                    return Resolved::Missing(missing);
                }
                Some((_, Node::Symlink(target))) => {
                    hops += 1;
                    if hops > MAX_SYMLINKS {
                        return Resolved::Loop;
                    }
                    if target.is_absolute() {
                        done = PathBuf::new();
                    }
                    push_components(&mut rest, target);
                }
                Some((_, node)) => {
                    if rest.is_empty() {
                        return Resolved::Found(next, node.clone());
                    }
                    done = next;
                }
            }
        }
        Resolved::Found(done, Node::Dir)
    }

    /// The content of the file `path` ends on, symlinks followed.
    pub fn read(&self, path: &Path) -> Result<Vec<u8>> {
        match self.resolve(path) {
            Resolved::Found(found, Node::File { .. }) => {
                let (image, _) = self.node(&found).expect("found in a layer");
                image.read(&found)
            }
            Resolved::Found(found, _) => bail!("{} is not a file", found.display()),
            Resolved::Missing(m) => bail!("/{} is missing", m.display()),
            Resolved::Loop => bail!("{} is a symlink loop", path.display()),
        }
    }
}

/// Pushes the normal components of `path` onto `stack` so that the first is popped first.
fn push_components(stack: &mut Vec<std::ffi::OsString>, path: &Path) {
    let parts: Vec<std::ffi::OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_owned()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    stack.extend(parts.into_iter().rev());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(name: &str, entries: &[(&str, Node)]) -> Image {
        let nodes = entries
            .iter()
            .map(|(p, n)| (PathBuf::from(p), n.clone()))
            .collect();
        Image::from_tree(Utf8Path::new(name), nodes, |p| {
            Ok(p.to_string_lossy().into_owned().into_bytes())
        })
    }

    fn file() -> Node {
        Node::File { mode: 0o755 }
    }

    fn link(t: &str) -> Node {
        Node::Symlink(t.into())
    }

    #[test]
    fn symlinks_resolve_inside_the_image_never_on_the_host() {
        let base = image(
            "/x/base_1.raw",
            &[
                ("nix", link("usr/nix")),
                ("usr", Node::Dir),
                ("usr/nix", Node::Dir),
                ("usr/nix/store", Node::Dir),
                ("usr/nix/store/a-pkg", Node::Dir),
                ("usr/nix/store/a-pkg/bin", Node::Dir),
                ("usr/nix/store/a-pkg/bin/tool", file()),
                ("usr/nix/store/a-pkg/bin/up", link("../bin/./tool")),
                ("bin", Node::Dir),
                ("bin/sh", link("/nix/store/a-pkg/bin/up")),
                ("bin/loop", link("loop")),
                ("bin/out", link("../../../../etc/passwd")),
            ],
        );
        assert_eq!(base.name, "base_1");
        let v = View::new(&base);
        assert_eq!(
            v.resolve(Path::new("/bin/sh")),
            Resolved::Found("usr/nix/store/a-pkg/bin/tool".into(), file())
        );
        assert_eq!(v.resolve(Path::new("bin/loop")), Resolved::Loop);
        // `..` stops at the image's root
        assert_eq!(
            v.resolve(Path::new("bin/out")),
            Resolved::Missing("etc/passwd".into())
        );
        assert_eq!(
            v.resolve(Path::new("/nix/store/b-gone/bin/x")),
            Resolved::Missing("usr/nix/store/b-gone/bin/x".into())
        );
        assert_eq!(
            v.read(Path::new("bin/sh")).unwrap(),
            b"usr/nix/store/a-pkg/bin/tool"
        );
    }

    #[test]
    fn an_extension_is_seen_only_below_the_tree_it_is_overlaid_on() {
        let base = image("/b.raw", &[("usr", Node::Dir), ("etc", Node::Dir)]);
        let ext = image(
            "/e.raw",
            &[
                ("usr", Node::Dir),
                ("usr/app", file()),
                ("etc", Node::Dir),
                ("etc/app.conf", file()),
            ],
        );
        let mut v = View::new(&base);
        v.overlay(&ext, "usr");
        assert!(matches!(
            v.resolve(Path::new("usr/app")),
            Resolved::Found(..)
        ));
        assert_eq!(
            v.resolve(Path::new("etc/app.conf")),
            Resolved::Missing("etc/app.conf".into())
        );
    }
}
