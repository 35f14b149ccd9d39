//! The merge at its edges: trees of odd shapes at the smallest block size with the compressors
//! whose metadata the kernel is strictest about (read back by unsquashfs and, where the test runs
//! as root with loop devices, by the kernel), trees deeper than a thread's stack allows a naive
//! recursion, and corrupt parts, which must be refused without a panic, an abort or a hang.

use camino::{Utf8Path, Utf8PathBuf};
use portable_service_builder::merge;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};

#[path = "support/trees.rs"]
mod trees;

fn output(cmd: &mut Command) -> Output {
    cmd.output().expect("runs")
}

fn run(cmd: &mut Command) -> String {
    let out = output(cmd);
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Bytes that compress a little, different for every seed.
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b"abcdefgh\n\0"[(x % 10) as usize]
        })
        .collect()
}

const BLOCK: usize = 4096;

/// A store path of odd things: files at and around block multiples, empty ones, a sparse one,
/// a duplicate, a directory of 400 entries (two listing headers and more), empty directories,
/// names of 255 bytes and of bytes that are no UTF-8, symlinks, odd modes.
fn odd_store_path(root: &Path, name: &str, seed: u64) {
    let p = root.join("usr/nix/store").join(name);
    fs::create_dir_all(p.join("sizes")).unwrap();
    fs::create_dir_all(p.join("empty/nested/deeper")).unwrap();
    let sizes = [
        0,
        1,
        BLOCK - 1,
        BLOCK,
        BLOCK + 1,
        2 * BLOCK,
        3 * BLOCK,
        3 * BLOCK + 7,
    ];
    for (i, len) in sizes.iter().enumerate() {
        fs::write(
            p.join(format!("sizes/s{len}")),
            bytes(seed * 31 + i as u64, *len),
        )
        .unwrap();
    }
    fs::write(p.join("sizes/dup"), bytes(seed * 31 + 6, 3 * BLOCK)).unwrap();
    // sparse: holes between a head and a tail
    let sparse = p.join("sizes/sparse");
    fs::write(&sparse, bytes(seed, 100)).unwrap();
    let f = fs::OpenOptions::new().write(true).open(&sparse).unwrap();
    f.set_len(40 * BLOCK as u64).unwrap();
    std::os::unix::fs::FileExt::write_at(&f, b"tail", 40 * BLOCK as u64).unwrap();
    fs::create_dir_all(p.join("many")).unwrap();
    for i in 0..400 {
        fs::write(p.join(format!("many/entry-{i:04}")), format!("{i}\n")).unwrap();
    }
    let names: [&[u8]; 4] = [&[b'n'; 255], b"\x01\x02\xff\xfe", b"new\nline", b"sp ace"];
    for n in names {
        let path = p.join(std::ffi::OsStr::from_bytes(n));
        fs::write(path, n).unwrap();
    }
    symlink("sizes/s4096", p.join("link")).unwrap();
    symlink(
        std::ffi::OsStr::from_bytes(&[b't'; 255]),
        p.join("long-link"),
    )
    .unwrap();
    // sticky, not setuid: Nix's sandbox refuses setuid and setgid bits (and the store has none)
    for (file, mode) in [("sizes/s1", 0o1755), ("sizes/s0", 0o600)] {
        fs::set_permissions(p.join(file), fs::Permissions::from_mode(mode)).unwrap();
    }
    fs::set_permissions(p.join("empty"), fs::Permissions::from_mode(0o700)).unwrap();
}

fn mksquashfs(input: &Path, out: &Utf8Path, comp: &[&str], part: bool, extra: &[&str]) {
    let mut cmd = Command::new("mksquashfs");
    cmd.arg(input).arg(out.as_str()).args([
        "-noappend",
        "-quiet",
        "-no-progress",
        "-all-root",
        "-no-xattrs",
        "-mkfs-time",
        "1",
        "-all-time",
        "1",
        "-b",
        "4K",
        "-comp",
    ]);
    cmd.args(comp).args(extra);
    if part {
        cmd.arg("-noI");
    }
    run(&mut cmd);
}

/// `unsquashfs -lln`, a directory's size (its listing's length) left out.
fn listing(image: &Utf8Path) -> Vec<String> {
    let text = run(Command::new("unsquashfs").args(["-lln", image.as_str()]));
    // a name with a newline continues on the next line
    let mut lines: Vec<String> = Vec::new();
    for l in text.lines() {
        match lines.last_mut() {
            Some(last) if l.split_whitespace().count() < 6 => {
                last.push('\n');
                last.push_str(l);
            }
            _ => lines.push(l.to_owned()),
        }
    }
    lines
        .iter()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let size = if l.starts_with('d') { "-" } else { f[2] };
            format!("{} {} {size} {}", f[0], f[1], f[3..].join(" "))
        })
        .collect()
}

fn diff(a: &Utf8Path, b: &Utf8Path) {
    trees::assert_same_tree(a.as_std_path(), b.as_std_path());
}

fn assert_same(whole: &Utf8Path, merged: &Utf8Path) {
    assert_eq!(listing(whole), listing(merged), "{whole} and {merged}");
    let (a, b) = (whole.with_extension("x"), merged.with_extension("x"));
    for (image, dir) in [(whole, &a), (merged, &b)] {
        let out = run(Command::new("unsquashfs").args([
            "-no-progress",
            "-d",
            dir.as_str(),
            image.as_str(),
        ]));
        assert!(!out.to_lowercase().contains("warn"), "{image}: {out}");
    }
    diff(&a, &b);
    kernel_same(whole, merged);
}

/// Unmounts on drop.
struct Mounted(Utf8PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.as_str()).status();
    }
}

/// Mounts `image` read-only on a loop device; `None` with mount's complaint if it can't.
fn mount(image: &Utf8Path) -> Result<Mounted, String> {
    let dir = image.with_extension("mnt");
    fs::create_dir_all(&dir).unwrap();
    let out = output(Command::new("mount").args(["-o", "loop,ro", image.as_str(), dir.as_str()]));
    if out.status.success() {
        Ok(Mounted(dir))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Loop mounts one at a time: tests mounting at once race for loop devices.
static MOUNTING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The kernel reads both images the same, where this test may mount (root, loop devices).
fn kernel_same(whole: &Utf8Path, merged: &Utf8Path) {
    if !trees::is_root() {
        eprintln!("not root: the kernel's reading left out");
        return;
    }
    let _one = MOUNTING.lock().unwrap_or_else(|e| e.into_inner());
    let a = match mount(whole) {
        Ok(a) => a,
        Err(why) => {
            eprintln!("no loop mount here ({why}): the kernel's reading left out");
            return;
        }
    };
    let b = mount(merged).unwrap_or_else(|why| panic!("the kernel refuses {merged}: {why}"));
    assert_eq!(
        trees::listing(a.0.as_std_path()),
        trees::listing(b.0.as_std_path())
    );
    diff(&a.0, &b.0);
}

/// One tree of odd store paths: compressed whole, and in parts (two store paths a part, the
/// rest alone) merged.
fn odd_pair(dir: &Utf8Path, comp: &[&str], part_options: &[&[&str]]) -> (Utf8PathBuf, Utf8PathBuf) {
    let all = dir.join("all");
    let names = ["aaaa-one", "bbbb-two", "cccc-three", "dddd-four"];
    for (i, name) in names.iter().enumerate() {
        odd_store_path(all.as_std_path(), name, i as u64);
    }
    fs::create_dir_all(all.join("etc/empty")).unwrap();
    fs::write(all.join("etc/os-release"), "ID=demo\n").unwrap();
    let whole = dir.join("whole.raw");
    mksquashfs(all.as_std_path(), &whole, comp, false, &[]);
    let mut parts = Vec::new();
    for (g, pair) in names.chunks(2).enumerate() {
        let root = dir.join(format!("part{g}"));
        fs::create_dir_all(root.join("usr/nix/store")).unwrap();
        for name in pair {
            let store = Utf8Path::new("usr/nix/store").join(name);
            fs::rename(all.join(&store), root.join(&store)).unwrap();
        }
        let part = dir.join(format!("part{g}.raw"));
        let extra = part_options[g % part_options.len()];
        mksquashfs(root.as_std_path(), &part, comp, true, extra);
        parts.push(part);
    }
    let rest = dir.join("rest.raw");
    mksquashfs(all.as_std_path(), &rest, comp, true, &[]);
    parts.push(rest);
    let merged = dir.join("merged.raw");
    let refs: Vec<&Utf8Path> = parts.iter().map(|p| p.as_path()).collect();
    merge::merge(&refs, &merged, 0).unwrap();
    let again = dir.join("again.raw");
    merge::merge(&refs, &again, 0).unwrap();
    assert!(fs::read(&merged).unwrap() == fs::read(&again).unwrap());
    (whole, merged)
}

fn tempdir() -> (tempfile::TempDir, Utf8PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let at = Utf8Path::from_path(dir.path()).unwrap().to_owned();
    (dir, at)
}

/// zstd: the kernel decodes with a window of the block size (at least 8 KiB) and refused the
/// metadata of a merge whose frames asked for 128 KiB.
#[test]
fn a_zstd_merge_of_4k_blocks_reads_back_as_the_whole() {
    let (_keep, dir) = tempdir();
    let (whole, merged) = odd_pair(&dir, &["zstd", "-Xcompression-level", "19"], &[&[]]);
    assert_same(&whole, &merged);
}

/// xz with a BCJ filter (x86: the kernel here may lack ARM's) at 4 KiB blocks: the compressor options say a 4 KiB dictionary, and the
/// kernel refused metadata compressed with an 8 KiB one.
#[test]
fn an_xz_bcj_merge_of_4k_blocks_reads_back_as_the_whole() {
    let (_keep, dir) = tempdir();
    let (whole, merged) = odd_pair(&dir, &["xz", "-Xbcj", "x86"], &[&[]]);
    assert_same(&whole, &merged);
}

/// Parts without fragments and parts of fragments only merge, and the superblock says what
/// holds of the merge.
#[test]
fn parts_with_and_without_fragments_merge() {
    let (_keep, dir) = tempdir();
    let (whole, merged) = odd_pair(
        &dir,
        &["gzip"],
        &[&["-no-fragments"], &["-always-use-fragments"]],
    );
    assert_same(&whole, &merged);
    let stats = run(Command::new("unsquashfs").args(["-s", merged.as_str()]));
    assert!(!stats.contains("Fragments are not stored"), "{stats}");
}

/// A tree 3,000 directories deep (through a tar stream, as the builder feeds mksquashfs):
/// reading, joining, writing and dropping it recurse a level at a time, on a stack of their own.
#[test]
fn a_tree_3000_directories_deep_merges() {
    let (_keep, dir) = tempdir();
    let tar = dir.join("deep.tar");
    let mut b = tar::Builder::new(fs::File::create(&tar).unwrap());
    let mut path = String::from("usr/nix/store/aaaa-deep");
    let add_dir = |b: &mut tar::Builder<fs::File>, path: &str| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        b.append_data(&mut h, path, std::io::empty()).unwrap();
    };
    for p in ["usr", "usr/nix", "usr/nix/store", &path.clone()] {
        add_dir(&mut b, p);
    }
    for _ in 0..3000 {
        path.push_str("/d");
        add_dir(&mut b, &path);
    }
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(7);
    b.append_data(&mut h, format!("{path}/bottom"), &b"bottom\n"[..])
        .unwrap();
    b.into_inner().unwrap();
    let (whole, part) = (dir.join("whole.raw"), dir.join("part.raw"));
    for (out, is_part) in [(&whole, false), (&part, true)] {
        let mut cmd = Command::new("mksquashfs");
        cmd.args([
            "-",
            out.as_str(),
            "-tar",
            "-noappend",
            "-quiet",
            "-no-progress",
        ])
        .args([
            "-all-root",
            "-no-xattrs",
            "-mkfs-time",
            "1",
            "-all-time",
            "1",
        ])
        .args(["-comp", "gzip"])
        .args(if is_part { &["-noI"][..] } else { &[][..] })
        .stdin(fs::File::open(&tar).unwrap());
        run(&mut cmd);
    }
    let merged = dir.join("merged.raw");
    merge::merge(&[&part], &merged, 0).unwrap();
    assert_eq!(listing(&whole), listing(&merged));
}

/// A part with a field of its superblock or a byte of its tables changed, or cut short: the
/// merge fails (or, where the change is harmless, succeeds), and never panics, aborts or loops.
#[test]
fn corrupt_parts_are_refused_without_a_panic_or_a_hang() {
    let (_keep, dir) = tempdir();
    let src = dir.join("src");
    let store = src.join("usr/nix/store/aaaa-a");
    fs::create_dir_all(store.join("a/b")).unwrap();
    fs::create_dir_all(store.join("c")).unwrap();
    for i in 0..300 {
        fs::write(store.join(format!("f{i}")), bytes(i, i as usize * 7)).unwrap();
    }
    fs::write(store.join("a/b/big"), bytes(1, 5 * BLOCK + 3)).unwrap();
    symlink("f1", store.join("l")).unwrap();
    let part = dir.join("part.raw");
    mksquashfs(src.as_std_path(), &part, &["xz"], true, &[]);
    let good = fs::read(&part).unwrap();
    let u64_at = |i: usize| u64::from_le_bytes(good[i..i + 8].try_into().unwrap());
    let (root, inode_table, directory_table) = (u64_at(32), u64_at(64), u64_at(72));
    let (bad, out) = (dir.join("bad.raw"), dir.join("out.raw"));
    let try_merge = |bytes: &[u8]| {
        fs::write(&bad, bytes).unwrap();
        merge::merge(&[&bad], &out, 0).map(|_| ())
    };
    try_merge(&good).unwrap();

    let set = |at: usize, value: &[u8]| {
        let mut b = good.clone();
        b[at..at + value.len()].copy_from_slice(value);
        b
    };
    let refused = [
        ("block_log", set(22, &40u16.to_le_bytes())),
        ("fragment count", set(16, &u32::MAX.to_le_bytes())),
        ("bytes used", set(40, &(1u64 << 50).to_le_bytes())),
        ("directory table", set(72, &(1u64 << 50).to_le_bytes())),
        ("id table", set(48, &(u64::MAX - 7).to_le_bytes())),
    ];
    for (what, bytes) in refused {
        assert!(try_merge(&bytes).is_err(), "{what}");
    }
    // every entry of the root's listing made to name the root: a cycle
    let mut cyclic = good.clone();
    let listing = usize::try_from(directory_table).unwrap() + 2;
    let mut at = listing;
    let mut found = false;
    while at + 12 <= cyclic.len() && !found {
        let count = u32::from_le_bytes(cyclic[at..at + 4].try_into().unwrap());
        cyclic[at + 4..at + 8].copy_from_slice(&((root >> 16) as u32).to_le_bytes());
        let mut entry = at + 12;
        for _ in 0..=count.min(1000) {
            if entry + 8 > cyclic.len() {
                break;
            }
            cyclic[entry..entry + 2].copy_from_slice(&(root as u16).to_le_bytes());
            cyclic[entry + 4..entry + 6].copy_from_slice(&1u16.to_le_bytes());
            let len = usize::from(u16::from_le_bytes([cyclic[entry + 6], cyclic[entry + 7]]));
            entry += 8 + len + 1;
        }
        at = entry;
        found = true;
    }
    let e = format!("{:#}", try_merge(&cyclic).unwrap_err());
    assert!(e.contains("listed twice"), "{e}");

    // mksquashfs pads to 4 KiB: what lies past the bytes used may go
    let used = usize::try_from(u64_at(40)).unwrap();
    for len in (0..used).step_by(used / 97).chain([used - 1]) {
        assert!(try_merge(&good[..len]).is_err(), "cut to {len}");
    }
    // byte flips in the superblock and the tables, from a fixed seed
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let tables = usize::try_from(inode_table).unwrap()..good.len();
    for _ in 0..400 {
        let mut b = good.clone();
        for _ in 0..1 + next() % 3 {
            let at = if next() % 4 == 0 {
                (next() % 96) as usize
            } else {
                tables.start + (next() as usize) % tables.len()
            };
            b[at] ^= 1 << (next() % 8);
        }
        let _ = try_merge(&b);
    }
}

/// A file over 4 GiB (sparse, so that it takes no room): an extended inode of 64-bit size whose
/// blocks are mostly holes. Slow (mksquashfs reads the holes): run with `--ignored`.
#[test]
#[ignore]
fn a_sparse_file_over_4_gib_reads_back_as_the_whole() {
    let (_keep, dir) = tempdir();
    let all = dir.join("all");
    let p = all.join("usr/nix/store/aaaa-big");
    fs::create_dir_all(&p).unwrap();
    let f = fs::File::create(p.join("big")).unwrap();
    f.set_len(5 << 30).unwrap();
    std::os::unix::fs::FileExt::write_at(&f, b"tail", 5 << 30).unwrap();
    fs::write(p.join("small"), b"small").unwrap();
    let (whole, part, merged) = (
        dir.join("whole.raw"),
        dir.join("part.raw"),
        dir.join("merged.raw"),
    );
    mksquashfs(all.as_std_path(), &whole, &["lz4"], false, &[]);
    mksquashfs(all.as_std_path(), &part, &["lz4"], true, &[]);
    merge::merge(&[&part], &merged, 0).unwrap();
    assert_eq!(listing(&whole), listing(&merged));
    let tail = |image: &Utf8Path| {
        let out = output(Command::new("unsquashfs").args([
            "-cat",
            image.as_str(),
            "usr/nix/store/aaaa-big/big",
        ]));
        assert!(out.status.success());
        (
            out.stdout.len(),
            out.stdout[out.stdout.len() - 8..].to_vec(),
        )
    };
    assert_eq!(tail(&whole), tail(&merged));
}
