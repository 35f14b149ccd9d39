//! Two extracted or mounted trees compared in Rust, not with `diff -r` or `find`: the tools
//! package's check phase runs these tests in Nix's sandbox, whose PATH has neither.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Every entry under `root`, sorted: kind and mode, owner, group, size (a directory's left out:
/// it depends on where the inodes lie), time, path and symlink target.
pub fn listing(root: &Path) -> Vec<String> {
    let mut lines: Vec<String> = walk(root)
        .iter()
        .map(|p| {
            let m = fs::symlink_metadata(p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let size = if m.is_dir() {
                "-".to_owned()
            } else {
                m.len().to_string()
            };
            let target = if m.file_type().is_symlink() {
                fs::read_link(p).unwrap().display().to_string()
            } else {
                String::new()
            };
            format!(
                "{:o} {} {} {size} {} /{rel} {target}",
                m.mode(),
                m.uid(),
                m.gid(),
                m.mtime()
            )
        })
        .collect();
    lines.sort();
    lines
}

/// Asserts that two trees hold the same entries ([`listing`]) and the same file contents.
pub fn assert_same_tree(a: &Path, b: &Path) {
    let (la, lb) = (listing(a), listing(b));
    let first = la.iter().zip(&lb).position(|(x, y)| x != y);
    assert!(
        la.len() == lb.len() && first.is_none(),
        "{} and {} differ ({} and {} entries), first at {:?} / {:?}",
        a.display(),
        b.display(),
        la.len(),
        lb.len(),
        first.map(|i| &la[i]),
        first.map(|i| &lb[i])
    );
    for p in walk(a) {
        if fs::symlink_metadata(&p).unwrap().is_file() {
            let rel = p.strip_prefix(a).unwrap();
            let same = fs::read(&p).unwrap() == fs::read(b.join(rel)).unwrap();
            assert!(same, "{} differs", rel.display());
        }
    }
}

/// Whether the tests run as root (a file they create is root's): merge_edges.rs mounts then.
#[allow(dead_code)]
pub fn is_root() -> bool {
    let f = tempfile::NamedTempFile::new().unwrap();
    f.as_file().metadata().unwrap().uid() == 0
}

fn walk(root: &Path) -> Vec<PathBuf> {
    let mut all = vec![root.to_owned()];
    let mut i = 0;
    while i < all.len() {
        let p = all[i].clone();
        if fs::symlink_metadata(&p).unwrap().is_dir() {
            all.extend(fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
        i += 1;
    }
    all
}
