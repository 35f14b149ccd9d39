//! The merge of parts against mksquashfs itself: a tree compressed whole and the same tree
//! compressed in parts and merged must read back the same with unsquashfs (names, kinds, modes,
//! owners, sizes, times, contents, targets), for every compressor the host's mksquashfs has, and
//! the merge must give the same bytes every time.

use camino::{Utf8Path, Utf8PathBuf};
use portable_service_builder::merge;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;

#[path = "support/trees.rs"]
mod trees;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("runs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Pseudo-random text of `len` bytes, so that blocks compress like files do.
fn text(seed: usize, len: usize) -> Vec<u8> {
    let words = [
        "nix ",
        "store ",
        "squashfs ",
        "portable ",
        "service ",
        "unit\n",
    ];
    let mut x = seed as u64 * 2_654_435_761 + 1;
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(words[(x % 6) as usize].as_bytes());
    }
    out.truncate(len);
    out
}

/// A store path `name` with files of many sizes (empty, in a fragment, whole blocks, blocks and
/// a tail), a nested directory, an empty one, symlinks and a file that duplicates another.
fn store_path(root: &Path, name: &str, seed: usize) {
    let p = root.join("usr/nix/store").join(name);
    fs::create_dir_all(p.join("lib/deep/er")).unwrap();
    fs::create_dir_all(p.join("empty")).unwrap();
    for (i, len) in [0, 1, 100, 8191, 8192, 8193, 9000, 20_000, 70_001]
        .iter()
        .enumerate()
    {
        fs::write(p.join(format!("lib/f{i}")), text(seed * 100 + i, *len)).unwrap();
    }
    fs::write(p.join("lib/deep/er/same"), text(seed * 100 + 6, 9000)).unwrap();
    fs::write(p.join("lib/deep/zeros"), vec![0; 12_288]).unwrap();
    symlink("lib/f3", p.join("link")).unwrap();
    symlink("/usr/nix/store/elsewhere", p.join("lib/abs")).unwrap();
    let mut perms = fs::metadata(p.join("lib/f2")).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o555);
    fs::set_permissions(p.join("lib/f2"), perms).unwrap();
}

fn mksquashfs(dir: &Path, out: &Utf8Path, comp: &[&str], parts: bool) {
    let mut cmd = Command::new("mksquashfs");
    cmd.arg(dir).arg(out.as_str()).args([
        "-noappend",
        "-quiet",
        "-no-progress",
        "-all-root",
        "-no-xattrs",
        "-no-exports",
        "-mkfs-time",
        "1",
        "-all-time",
        "1",
        "-b",
        "8K",
        "-comp",
    ]);
    cmd.args(comp);
    if parts {
        cmd.arg("-noI");
    }
    run(&mut cmd);
}

/// Two images of one tree: one by mksquashfs whole, one merged from a part per group of store
/// paths and a part for the rest.
struct Pair {
    _dir: tempfile::TempDir,
    whole: Utf8PathBuf,
    merged: Utf8PathBuf,
    parts: Vec<Utf8PathBuf>,
}

fn pair(comp: &[&str], groups: &[&[&str]]) -> Pair {
    let dir = tempfile::tempdir().unwrap();
    let at = Utf8Path::from_path(dir.path()).unwrap().to_owned();
    let all = at.join("all");
    let names: Vec<&str> = groups.iter().flat_map(|g| g.iter().copied()).collect();
    for (i, name) in names.iter().enumerate() {
        store_path(all.as_std_path(), name, i);
    }
    fs::create_dir_all(all.join("etc")).unwrap();
    fs::write(all.join("etc/os-release"), "ID=demo\n").unwrap();
    symlink("usr/nix", all.join("nix")).unwrap();
    let whole = at.join("whole.raw");
    mksquashfs(all.as_std_path(), &whole, comp, false);
    let mut parts = Vec::new();
    for (g, group) in groups.iter().enumerate() {
        let root = at.join(format!("part{g}"));
        fs::create_dir_all(root.join("usr/nix/store")).unwrap();
        for name in *group {
            let from = all.join("usr/nix/store").join(name);
            fs::rename(&from, root.join("usr/nix/store").join(name)).unwrap();
        }
        let part = at.join(format!("part{g}.raw"));
        mksquashfs(root.as_std_path(), &part, comp, true);
        parts.push(part);
    }
    // the rest: what is left of the tree
    let rest = at.join("rest.raw");
    mksquashfs(all.as_std_path(), &rest, comp, true);
    parts.push(rest);
    let merged = at.join("merged.raw");
    let refs: Vec<&Utf8Path> = parts.iter().map(|p| p.as_path()).collect();
    merge::merge(&refs, &merged, 0).unwrap();
    Pair {
        _dir: dir,
        whole,
        merged,
        parts,
    }
}

/// `unsquashfs -lln` lines (mode, owner, size, time, path), a directory's size left out: it is
/// the length of its listing, which depends on where the inodes lie, not on the tree.
fn listing(image: &Utf8Path) -> Vec<String> {
    let text = run(Command::new("unsquashfs").args(["-lln", image.as_str()]));
    text.lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let size = if l.starts_with('d') { "-" } else { f[2] };
            format!("{} {} {size} {}", f[0], f[1], f[3..].join(" "))
        })
        .collect()
}

fn assert_same_tree(pair: &Pair) {
    let (a, b) = (listing(&pair.whole), listing(&pair.merged));
    let first = a.iter().zip(&b).position(|(x, y)| x != y);
    assert!(
        a.len() == b.len() && first.is_none(),
        "listings differ ({} and {} lines), first at {first:?}: {:?} vs {:?}",
        a.len(),
        b.len(),
        first.map(|i| &a[i]),
        first.map(|i| &b[i])
    );
    let dir = pair.merged.parent().unwrap();
    let (a, b) = (dir.join("x-whole"), dir.join("x-merged"));
    run(Command::new("unsquashfs").args(["-no-progress", "-d", a.as_str(), pair.whole.as_str()]));
    run(Command::new("unsquashfs").args(["-no-progress", "-d", b.as_str(), pair.merged.as_str()]));
    trees::assert_same_tree(a.as_std_path(), b.as_std_path());
}

fn compressors() -> Vec<Vec<&'static str>> {
    let help = Command::new("mksquashfs").arg("-help").output().unwrap();
    let help =
        String::from_utf8_lossy(&help.stderr).into_owned() + &String::from_utf8_lossy(&help.stdout);
    let mut all = vec![
        vec!["xz", "-Xdict-size", "100%"],
        vec!["xz", "-Xbcj", "x86"],
    ];
    for c in ["gzip", "lz4", "zstd", "lzma"] {
        if help.contains(&format!("\t{c}")) {
            all.push(vec![c]);
        }
    }
    all
}

#[test]
fn merged_parts_read_back_as_the_whole_tree_with_every_compressor() {
    let names = ["aaaa-a", "bbbb-b", "cccc-c", "dddd-d", "eeee-e"];
    for comp in compressors() {
        let pair = pair(&comp, &[&names[..2], &names[2..3], &names[3..]]);
        assert_same_tree(&pair);
        println!(
            "{comp:?}: whole {} bytes, merged {} bytes",
            fs::metadata(&pair.whole).unwrap().len(),
            fs::metadata(&pair.merged).unwrap().len()
        );
    }
}

#[test]
fn a_merge_gives_the_same_bytes_every_time() {
    let pair = pair(&["xz"], &[&["aaaa-a"], &["bbbb-b", "cccc-c"]]);
    let again = pair.merged.with_extension("again");
    let refs: Vec<&Utf8Path> = pair.parts.iter().map(|p| p.as_path()).collect();
    merge::merge(&refs, &again, 0).unwrap();
    assert_eq!(fs::read(&pair.merged).unwrap(), fs::read(&again).unwrap());
}

#[test]
fn a_big_directory_and_many_parts_merge() {
    // 3,000 store paths: the store's listing outgrows a basic directory inode (64 KiB), its
    // entries span many metadata blocks and inode numbers far apart
    let names: Vec<String> = (0..3000).map(|i| format!("{i:0>32}-p{i}")).collect();
    let dir = tempfile::tempdir().unwrap();
    let at = Utf8Path::from_path(dir.path()).unwrap();
    let mut parts = Vec::new();
    let all = at.join("all");
    for (g, chunk) in names.chunks(1000).enumerate() {
        let root = at.join(format!("p{g}"));
        for (i, name) in chunk.iter().enumerate() {
            let p = root.join("usr/nix/store").join(name);
            fs::create_dir_all(&p).unwrap();
            fs::write(p.join("f"), text(g * 1000 + i, 300 + i)).unwrap();
            let q = all.join("usr/nix/store").join(name);
            fs::create_dir_all(&q).unwrap();
            fs::write(q.join("f"), text(g * 1000 + i, 300 + i)).unwrap();
        }
        let part = at.join(format!("p{g}.raw"));
        mksquashfs(root.as_std_path(), &part, &["gzip"], true);
        parts.push(part);
    }
    let whole = at.join("whole.raw");
    mksquashfs(all.as_std_path(), &whole, &["gzip"], false);
    let merged = at.join("merged.raw");
    let refs: Vec<&Utf8Path> = parts.iter().map(|p| p.as_path()).collect();
    merge::merge(&refs, &merged, 0).unwrap();
    let pair = Pair {
        _dir: dir,
        whole,
        merged,
        parts,
    };
    assert_same_tree(&pair);
}

#[test]
fn a_path_in_two_parts_and_a_part_with_compressed_inodes_are_refused() {
    let pair = pair(&["gzip"], &[&["aaaa-a"], &["bbbb-b"]]);
    let out = pair.merged.with_extension("twice");
    let twice = [pair.parts[0].as_path(), pair.parts[0].as_path()];
    let e = format!("{:#}", merge::merge(&twice, &out, 0).unwrap_err());
    assert!(
        e.contains("/usr/nix/store/aaaa-a/") && e.contains("is in two parts"),
        "{e}"
    );
    let e = format!("{:#}", merge::merge(&[&pair.whole], &out, 0).unwrap_err());
    assert!(e.contains("not written with mksquashfs -noI"), "{e}");
}
