//! Builds real images with the host's mksquashfs from a store made in a temporary directory, and
//! reads them back with unsquashfs: the tree, modes, symlinks, os-release, tricky names, identical
//! bytes over rebuilds, and the errors that must leave no output.

use camino::{Utf8Path, Utf8PathBuf};
use portable_service_builder::attrs::{Attrs, ClosureEntry, Symlink, Unit};
use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A store in a temporary directory, and the attrs of an image of it.
struct Fixture {
    dir: tempfile::TempDir,
    attrs: Attrs,
}

/// `program` as PATH finds it: nothing but PATH is sure to be there, not even /bin/sh (Nix's
/// sandbox has none unless the Nix was built to bind one).
fn on_path(program: &str) -> Utf8PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .map(|dir| Utf8Path::new(dir).join(program))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| panic!("{program} is not on PATH (tests/setup.sh installs it)"))
}

fn mksquashfs() -> Utf8PathBuf {
    on_path("mksquashfs")
}

#[path = "support/store_place.rs"]
mod store_place;

/// Where the fixture's store goes (see `store_place`). Where there is no such place, build.rs
/// has marked the tests that need one ignored, so a test that gets here without one was
/// compiled elsewhere and fails rather than pass untried.
fn store_parent() -> PathBuf {
    store_place::store_parent(Path::new(env!("CARGO_TARGET_TMPDIR")))
        .unwrap_or_else(|why| panic!("no place for a test store: {why}"))
}

fn hash(i: usize) -> String {
    format!("{i:0>32}")
}

impl Fixture {
    /// A store with a unit file and a package holding every kind of entry a store can hold.
    fn new() -> Fixture {
        let dir = tempfile::tempdir_in(store_parent()).unwrap();
        let root = Utf8Path::from_path(dir.path()).unwrap();
        let store = root.join("store");
        fs::create_dir(&store).unwrap();

        let unit = store.join(format!("{}-demo.service", hash(1)));
        fs::write(
            &unit,
            "[Service]\nExecStart=/bin/sh -c true\nStateDirectory=demo\n",
        )
        .unwrap();

        let pkg = store.join(format!("{}-tricky-1.0", hash(2)));
        make_tricky_tree(pkg.as_std_path());

        let attrs = Attrs {
            outputs: [("out".to_owned(), root.join("out"))].into(),
            store_dir: store.clone(),
            pname: "demo".into(),
            version: "1.0".into(),
            description: Some(r#"it's "quoted" $HOME \ `x`"#.into()),
            homepage: Some("https://example.org".into()),
            units: vec![Unit {
                name: "demo.service".into(),
                file: unit.clone(),
            }],
            symlinks: vec![
                Symlink {
                    symlink: "/bin/sh".into(),
                    object: pkg.join("bin/tool"),
                },
                Symlink {
                    symlink: "usr/share/nowhere".into(),
                    object: pkg.join("does-not-exist"),
                },
            ],
            contents: vec![pkg.clone()],
            mksquashfs: mksquashfs(),
            squash_compression: "xz -Xdict-size 100%".into(),
            squash_block_size: "1M".into(),
            closure: vec![
                ClosureEntry {
                    path: unit,
                    references: vec![],
                },
                ClosureEntry {
                    path: pkg,
                    references: vec![],
                },
            ],
            ..Attrs::default()
        };
        Fixture { dir, attrs }
    }

    fn root(&self) -> &Utf8Path {
        Utf8Path::from_path(self.dir.path()).unwrap()
    }

    fn build(&self) -> anyhow::Result<Utf8PathBuf> {
        portable_service_builder::build_image(&self.attrs, None)
    }

    /// Adds a store path `<hash(i)>-<name>` holding `data`, `size` bytes of incompressible
    /// noise, to the image's contents and closure; returns the file's path.
    fn add_noise(&mut self, i: usize, name: &str, size: usize) -> Utf8PathBuf {
        let path = self.root().join(format!("store/{}-{name}", hash(i)));
        fs::create_dir(&path).unwrap();
        let mut bytes = vec![0u8; size];
        let mut x: u64 = 0x9e3779b97f4a7c15 ^ i as u64;
        for b in bytes.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        fs::write(path.join("data"), bytes).unwrap();
        self.attrs.contents.push(path.clone());
        self.attrs.closure.push(ClosureEntry {
            path: path.clone(),
            references: vec![],
        });
        path.join("data")
    }

    fn store_path(&self, i: usize) -> PathBuf {
        self.attrs.closure[i].path.clone().into_std_path_buf()
    }
}

/// Names with spaces, newlines, non-UTF-8 bytes and over 100 bytes, symlinks to nowhere, empty
/// files and directories, a read-only directory, hard links and an executable.
fn make_tricky_tree(pkg: &Path) {
    let bin = pkg.join("bin");
    fs::create_dir_all(&bin).unwrap();
    fs::write(bin.join("tool"), "#!/bin/sh\necho tool\n").unwrap();
    fs::set_permissions(bin.join("tool"), fs::Permissions::from_mode(0o555)).unwrap();
    let names = pkg.join("names");
    fs::create_dir(&names).unwrap();
    fs::write(names.join("with space"), "space").unwrap();
    fs::write(names.join("new\nline"), "newline").unwrap();
    fs::write(names.join(OsStr::from_bytes(b"latin1-\xe9t\xe9")), "bytes").unwrap();
    let long = "l".repeat(180);
    fs::write(names.join(&long), "long name").unwrap();
    let deep = names.join("d".repeat(90)).join("e".repeat(90));
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("f".repeat(90)), "long path").unwrap();
    symlink("/nowhere/at/all", names.join("dangling")).unwrap();
    symlink("t".repeat(200), names.join("long-target")).unwrap();
    symlink("../bin/tool", names.join("relative")).unwrap();
    fs::write(names.join("empty"), "").unwrap();
    fs::create_dir(names.join("empty-dir")).unwrap();
    fs::write(names.join("hard-a"), "same content").unwrap();
    fs::hard_link(names.join("hard-a"), names.join("hard-b")).unwrap();
    for entry in walk(pkg) {
        let meta = fs::symlink_metadata(&entry).unwrap();
        if meta.is_file() && meta.mode() & 0o111 == 0 {
            fs::set_permissions(&entry, fs::Permissions::from_mode(0o444)).unwrap();
        }
    }
    // Read-only directories, as in a real store, deepest first.
    for entry in walk(pkg).into_iter().rev() {
        if fs::symlink_metadata(&entry).unwrap().is_dir() {
            fs::set_permissions(&entry, fs::Permissions::from_mode(0o555)).unwrap();
        }
    }
}

/// Every path below `root` (itself included), sorted.
fn walk(root: &Path) -> Vec<PathBuf> {
    let mut all = vec![root.to_owned()];
    let mut i = 0;
    while i < all.len() {
        let p = all[i].clone();
        if fs::symlink_metadata(&p).unwrap().is_dir() {
            let mut children: Vec<PathBuf> = fs::read_dir(&p)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            children.sort();
            all.extend(children);
        }
        i += 1;
    }
    all.sort();
    all
}

/// Extracts `image` with unsquashfs into a new directory.
fn extract(image: &Utf8Path, into: &Path) -> PathBuf {
    let dest = into.join("extracted");
    let out = Command::new("unsquashfs")
        .args(["-no-progress", "-d"])
        .arg(&dest)
        .arg(image)
        .output()
        .expect("unsquashfs runs");
    assert!(
        out.status.success(),
        "unsquashfs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dest
}

/// `unsquashfs -lln` lines: mode, owner, size, date, time, path.
fn listing(image: &Utf8Path) -> String {
    let out = Command::new("unsquashfs")
        .args(["-lln"])
        .arg(image)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts that `copy` holds exactly what `original` holds: kinds, modes, contents, targets.
fn assert_same_tree(original: &Path, copy: &Path) {
    let a: Vec<PathBuf> = walk(original)
        .iter()
        .map(|p| p.strip_prefix(original).unwrap().to_owned())
        .collect();
    let b: Vec<PathBuf> = walk(copy)
        .iter()
        .map(|p| p.strip_prefix(copy).unwrap().to_owned())
        .collect();
    assert_eq!(a, b, "the same names under {}", original.display());
    for rel in a {
        let under = |root: &Path| {
            if rel.as_os_str().is_empty() {
                root.to_owned()
            } else {
                root.join(&rel)
            }
        };
        let (x, y) = (under(original), under(copy));
        let (mx, my) = (
            fs::symlink_metadata(&x).unwrap(),
            fs::symlink_metadata(&y).unwrap(),
        );
        assert_eq!(mx.file_type(), my.file_type(), "kind of {rel:?}");
        if !mx.is_symlink() {
            assert_eq!(mx.mode() & 0o7777, my.mode() & 0o7777, "mode of {rel:?}");
        }
        if mx.is_file() {
            assert_eq!(fs::read(&x).unwrap(), fs::read(&y).unwrap(), "{rel:?}");
        }
        if mx.is_symlink() {
            assert_eq!(fs::read_link(&x).unwrap(), fs::read_link(&y).unwrap());
        }
    }
}

#[cfg_attr(
    no_test_store,
    ignore = "no place for a test store (see the build's warning)"
)]
#[test]
fn the_image_holds_the_root_portabled_needs() {
    let f = Fixture::new();
    let image = f.build().unwrap();
    assert_eq!(image, f.root().join("out/demo_1.0.raw"));
    let root = extract(&image, f.dir.path());

    for dir in [
        "dev",
        "proc",
        "sys",
        "run",
        "tmp",
        "var/tmp",
        "var/lib",
        "var/cache",
        "var/log",
        "var/lib/demo",
    ] {
        let meta = fs::symlink_metadata(root.join(dir)).unwrap();
        assert!(meta.is_dir(), "{dir}");
        assert_eq!(meta.mode() & 0o7777, 0o755, "{dir}");
        let expected = usize::from(dir == "var/lib"); // var/lib/demo, for StateDirectory=
        assert_eq!(
            fs::read_dir(root.join(dir)).unwrap().count(),
            expected,
            "{dir}"
        );
    }
    for file in ["etc/machine-id", "etc/resolv.conf"] {
        assert_eq!(fs::read(root.join(file)).unwrap(), b"", "{file}");
    }
    assert_eq!(
        fs::read_to_string(root.join("etc/os-release")).unwrap(),
        "ID=nixos\nPRETTY_NAME=NixOS\nBUILD_ID=rolling\nPORTABLE_ID=demo\n\
         PORTABLE_PREFIXES=demo\nIMAGE_ID=demo\nIMAGE_VERSION=\"1.0\"\n\
         PORTABLE_PRETTY_NAME=\"it's \\\"quoted\\\" \\$HOME \\\\ \\`x\\`\"\n\
         HOME_URL=\"https://example.org\"\n"
    );
    assert_eq!(
        fs::read_dir(root.join("etc/systemd/system"))
            .unwrap()
            .count(),
        1
    );
    let unit = root.join("etc/systemd/system/demo.service");
    assert_eq!(fs::read(&unit).unwrap(), fs::read(f.store_path(0)).unwrap());
    assert_eq!(fs::symlink_metadata(&unit).unwrap().mode() & 0o7777, 0o644);

    let in_image = |p: &Path| root.join(p.strip_prefix("/").unwrap());
    assert_eq!(
        fs::read_link(root.join("bin/sh")).unwrap(),
        f.store_path(1).join("bin/tool")
    );
    assert_eq!(
        fs::read_link(root.join("usr/share/nowhere")).unwrap(),
        f.store_path(1).join("does-not-exist")
    );
    // the whole closure, exactly as in the store, and nothing else in the store directory
    for i in 0..2 {
        let p = f.store_path(i);
        assert_same_tree(&p, &in_image(&p));
    }
    let store_in_image = in_image(f.attrs.store_dir.as_std_path());
    assert_eq!(fs::read_dir(store_in_image).unwrap().count(), 2);
    // the store lives below usr/ (where extensions are overlaid); the first component of the
    // store directory is a symlink to it
    let top = f.attrs.store_dir.components().nth(1).unwrap().as_str();
    assert_eq!(
        fs::read_link(root.join(top)).unwrap(),
        Path::new("usr").join(top)
    );
    assert!(root
        .join("usr")
        .join(f.attrs.store_dir.as_str().trim_start_matches('/'))
        .is_dir());

    // root directory 0755, every entry owned by root, one fixed time
    let list = listing(&image);
    let first = list.lines().find(|l| l.ends_with("squashfs-root")).unwrap();
    assert!(first.starts_with("drwxr-xr-x 0/0"), "{first}");
    for line in list.lines().filter(|l| l.contains("squashfs-root")) {
        assert!(line.contains(" 0/0 "), "{line}");
        assert!(line.contains("1970-01-01 00:00"), "{line}");
    }
}

#[cfg_attr(
    no_test_store,
    ignore = "no place for a test store (see the build's warning)"
)]
#[test]
fn rebuilds_give_identical_bytes_even_from_a_hard_linked_store() {
    let f = Fixture::new();
    let first = fs::read(f.build().unwrap()).unwrap();
    fs::remove_dir_all(f.root().join("out")).unwrap();
    let second = fs::read(f.build().unwrap()).unwrap();
    assert!(first == second, "two builds differ");

    // An optimised store links equal files together; the image must not change.
    let names = f.store_path(1).join("names");
    fs::set_permissions(&names, fs::Permissions::from_mode(0o755)).unwrap();
    fs::remove_file(names.join("hard-b")).unwrap();
    fs::copy(names.join("hard-a"), names.join("hard-b")).unwrap();
    fs::set_permissions(names.join("hard-b"), fs::Permissions::from_mode(0o444)).unwrap();
    fs::set_permissions(&names, fs::Permissions::from_mode(0o555)).unwrap();
    fs::remove_dir_all(f.root().join("out")).unwrap();
    let unlinked = fs::read(f.build().unwrap()).unwrap();
    assert!(first == unlinked, "hard links changed the image");
}

#[cfg_attr(
    no_test_store,
    ignore = "no place for a test store (see the build's warning)"
)]
#[test]
fn compression_and_block_size_reach_mksquashfs() {
    let mut f = Fixture::new();
    f.attrs.squash_compression = "zstd -Xcompression-level 3".into();
    f.attrs.squash_block_size = "128K".into();
    let image = f.build().unwrap();
    let out = Command::new("unsquashfs")
        .arg("-s")
        .arg(&image)
        .output()
        .unwrap();
    let stats = String::from_utf8_lossy(&out.stdout);
    assert!(stats.contains("Compression zstd"), "{stats}");
    assert!(stats.contains("compression-level 3"), "{stats}");
    assert!(stats.contains("Block size 131072"), "{stats}");
}

#[cfg_attr(
    no_test_store,
    ignore = "no place for a test store (see the build's warning)"
)]
#[test]
fn a_file_of_several_gib_comes_out_whole() {
    let mut f = Fixture::new();
    let big = f.root().join(format!("store/{}-big", hash(3)));
    fs::create_dir(&big).unwrap();
    // Over 8 GiB needs the tar size in base-256; sparse, so the test is quick.
    let size = 9 * (1u64 << 30) + 12345;
    let file = fs::File::create(big.join("data")).unwrap();
    file.set_len(size).unwrap();
    drop(file);
    fs::write(big.join("after"), "after the big file").unwrap();
    f.attrs.contents.push(big.clone());
    f.attrs.closure.push(ClosureEntry {
        path: big.clone(),
        references: vec![],
    });
    f.attrs.squash_compression = "lz4".into();
    let image = f.build().unwrap();
    let list = listing(&image);
    let line = list.lines().find(|l| l.ends_with("-big/data")).unwrap();
    assert!(line.contains(&format!(" {size} ")), "{line}");
    let out = Command::new("unsquashfs")
        .arg("-cat")
        .arg(&image)
        // the store is below usr/ in the image; unsquashfs doesn't follow the symlink to it
        .arg(Utf8Path::new("usr").join(big.join("after").as_str().trim_start_matches('/')))
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"after the big file");
}

/// Builds with the binary, as Nix runs it, and returns (success, stderr).
fn run_binary(f: &Fixture) -> (bool, String) {
    let attrs_file = f.root().join("attrs.json");
    fs::write(&attrs_file, attrs_json(&f.attrs)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_portable-service-builder"))
        .arg(&attrs_file)
        .env_remove("NIX_ATTRS_JSON_FILE")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn attrs_json(a: &Attrs) -> String {
    let units: Vec<_> = a
        .units
        .iter()
        .map(|u| serde_json::json!({ "name": u.name, "file": u.file }))
        .collect();
    let symlinks: Vec<_> = a
        .symlinks
        .iter()
        .map(|s| serde_json::json!({ "symlink": s.symlink, "object": s.object }))
        .collect();
    let closure: Vec<_> = a
        .closure
        .iter()
        .map(|c| serde_json::json!({ "path": c.path, "references": c.references, "narSize": 1 }))
        .collect();
    serde_json::json!({
        "outputs": a.outputs, "storeDir": a.store_dir, "pname": a.pname, "version": a.version,
        "description": a.description, "homepage": a.homepage, "units": units,
        "symlinks": symlinks, "contents": a.contents, "mksquashfs": a.mksquashfs,
        "squash-compression": a.squash_compression, "squash-block-size": a.squash_block_size,
        "closure": closure, "name": "demo-img-1.0", "system": "x86_64-linux",
    })
    .to_string()
}

#[cfg_attr(
    no_test_store,
    ignore = "no place for a test store (see the build's warning)"
)]
#[test]
fn the_binary_logs_what_it_builds() {
    let f = Fixture::new();
    let (ok, log) = run_binary(&f);
    assert!(ok, "{log}");
    assert!(log.contains("from 1 units and 2 store paths"), "{log}");
    assert!(log.contains("-comp xz -Xdict-size 100%"), "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("wrote ") && l.contains(" files (")),
        "{log}"
    );
}

#[cfg_attr(
    no_test_store,
    ignore = "no place for a test store (see the build's warning)"
)]
#[test]
fn a_failing_mksquashfs_fails_the_build_with_its_message_and_no_output() {
    let mut f = Fixture::new();
    f.attrs.squash_compression = "xz -Xbogus-option".into();
    let (ok, log) = run_binary(&f);
    assert!(!ok);
    assert!(
        log.contains("-Xbogus-option"),
        "mksquashfs's own message: {log}"
    );
    assert!(
        log.contains("mksquashfs failed (exit status: 1); its last output:"),
        "{log}"
    );
    assert!(!f.root().join("out").exists(), "no output is left");
}

/// A shell script standing in for mksquashfs in `f`'s store.
fn fake_mksquashfs(f: &mut Fixture, script: &str) {
    let fake = f.root().join("fake-mksquashfs");
    fs::write(&fake, format!("#!{}\n{script}", on_path("sh"))).unwrap();
    fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).unwrap();
    f.attrs.mksquashfs = fake;
}

#[cfg_attr(
    no_test_store,
    ignore = "no place for a test store (see the build's warning)"
)]
#[test]
fn a_builder_killed_after_mksquashfs_leaves_no_image() {
    let mut f = Fixture::new();
    f.attrs.verity = true;
    // the real mksquashfs writes the whole image, then the builder is killed before it is done
    let real = f.attrs.mksquashfs.clone();
    fake_mksquashfs(
        &mut f,
        &format!(
            "[ \"$1\" = -version ] && exec {real} -version\n{real} \"$@\" || exit\n\
             kill -9 $PPID\nsleep 5\n"
        ),
    );
    let (ok, _) = run_binary(&f);
    assert!(!ok, "the builder was killed");
    let left: Vec<String> = fs::read_dir(f.root().join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !left
            .iter()
            .any(|n| n.ends_with(".raw") || n.ends_with(".verity") || n.ends_with(".roothash")),
        "a killed build left {left:?}"
    );
    assert_eq!(
        left,
        ["demo_1.0.raw.partial"],
        "the image under its partial name only"
    );
}

#[cfg_attr(
    no_test_store,
    ignore = "no place for a test store (see the build's warning)"
)]
#[test]
fn a_mksquashfs_that_cannot_start_is_reported_in_its_own_words() {
    let mut f = Fixture::new();
    // what the dynamic loader says when a library is missing
    fake_mksquashfs(
        &mut f,
        "echo 'mksquashfs: error while loading shared libraries: liblzo2.so.2: \
         cannot open shared object file: No such file or directory' >&2\nexit 127\n",
    );
    let (ok, log) = run_binary(&f);
    assert!(!ok);
    assert!(
        log.contains("exit status: 127")
            && log.contains("liblzo2.so.2: cannot open shared object file"),
        "{log}"
    );
    assert!(!f.root().join("out").exists());
}

#[cfg_attr(
    no_test_store,
    ignore = "no place for a test store (see the build's warning)"
)]
#[test]
fn a_mksquashfs_too_old_for_tar_streams_is_refused() {
    let mut f = Fixture::new();
    fake_mksquashfs(
        &mut f,
        "echo 'mksquashfs version 4.4 (2019/08/29)'\nexit 0\n",
    );
    let (ok, log) = run_binary(&f);
    assert!(!ok);
    assert!(
        log.contains("is version 4.4") && log.contains("needs squashfs-tools 4.5 or newer"),
        "{log}"
    );
    assert!(!f.root().join("out").exists());
}

#[cfg_attr(
    no_test_store,
    ignore = "no place for a test store (see the build's warning)"
)]
#[test]
fn bad_input_is_named_and_leaves_no_output() {
    type Change = Box<dyn Fn(&mut Attrs)>;
    let cases: Vec<(&str, Change)> = vec![
        (
            "attribute `units[0].file` = ",
            Box::new(|a: &mut Attrs| a.units[0].file = "/etc/passwd".into()),
        ),
        (
            "attribute `symlinks[0].symlink` = \"/etc/os-release\" collides",
            Box::new(|a: &mut Attrs| a.symlinks[0].symlink = "/etc/os-release".into()),
        ),
        (
            "attribute `symlinks[1].symlink` = \"/bin/sh\" collides with /bin/sh, which is symlink /bin/sh",
            Box::new(|a: &mut Attrs| a.symlinks[1].symlink = "/bin/sh".into()),
        ),
        (
            "attribute `units[1].name` = \"demo.service\": two units of one name",
            Box::new(|a: &mut Attrs| a.units.push(a.units[0].clone())),
        ),
        (
            "is a directory, not a regular file",
            Box::new(|a: &mut Attrs| {
                a.units[0].file = a.closure[1].path.clone();
            }),
        ),
        (
            "attribute `squash-compression` = \"brotli\"",
            Box::new(|a: &mut Attrs| a.squash_compression = "brotli".into()),
        ),
    ];
    for (expected, change) in cases {
        let mut f = Fixture::new();
        change(&mut f.attrs);
        let (ok, log) = run_binary(&f);
        assert!(!ok, "{expected}");
        assert!(log.contains(expected), "expected {expected:?} in {log}");
        assert!(!f.root().join("out").exists(), "{expected}: no output");
    }

    let f = Fixture::new();
    let attrs_file = f.root().join("attrs.json");
    let mut value: serde_json::Value = serde_json::from_str(&attrs_json(&f.attrs)).unwrap();
    value["symlinks"][0]
        .as_object_mut()
        .unwrap()
        .remove("object");
    fs::write(&attrs_file, value.to_string()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_portable-service-builder"))
        .arg(&attrs_file)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        log.contains("attribute `symlinks[0]`: missing field `object`"),
        "{log}"
    );
}

/// A small tmpfs mounted for one test and unmounted when dropped.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(at: PathBuf, size: &str) -> SmallDisk {
        fs::create_dir_all(&at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&at)
            .status()
            .unwrap();
        assert!(ok.success(), "mounting a tmpfs (the tests run as root)");
        SmallDisk(at)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[cfg_attr(
    no_test_store,
    ignore = "no place for a test store (see the build's warning)"
)]
#[test]
fn a_full_disk_fails_the_build_and_leaves_nothing() {
    let mut f = Fixture::new();
    let disk = SmallDisk::mount(f.dir.path().join("small-disk"), "64k");
    // incompressible, so the image can't fit in 64 KiB
    f.add_noise(4, "noise", 1 << 20);
    let out = Utf8PathBuf::from_path_buf(disk.0.join("out")).unwrap();
    f.attrs.outputs.insert("out".into(), out.clone());
    let (ok, log) = run_binary(&f);
    assert!(!ok, "{log}");
    assert!(
        log.contains("No space left on device"),
        "mksquashfs's message: {log}"
    );
    assert!(
        log.contains("mksquashfs failed (exit status: 1); its last output:"),
        "{log}"
    );
    assert!(!out.exists(), "no output is left");
}

/// Asserts that the build failed, naming `path` and `why`, and left no output.
fn assert_failed_naming(f: &Fixture, (ok, log): (bool, String), path: &Utf8Path, why: &str) {
    assert!(!ok, "{log}");
    let error = log
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("an error line in {log}"));
    assert!(error.contains(path.as_str()), "{path} in {error}");
    assert!(error.contains(why), "{why} in {error}");
    assert!(!error.contains("Broken pipe"), "{error}");
    assert!(!f.root().join("out").exists(), "no output is left");
}

#[cfg_attr(
    no_test_store,
    ignore = "no place for a test store (see the build's warning)"
)]
#[test]
fn a_store_path_that_is_gone_is_named() {
    let mut f = Fixture::new();
    let data = f.add_noise(5, "gone", 10);
    let gone = data.parent().unwrap().to_owned();
    fs::remove_dir_all(&gone).unwrap();
    assert_failed_naming(&f, run_binary(&f), &gone, "No such file or directory");
}

#[cfg_attr(
    no_test_store,
    ignore = "no place for a test store (see the build's warning)"
)]
#[test]
fn a_store_file_removed_while_streaming_is_named() {
    let mut f = Fixture::new();
    // One store path holding a big file and, sorted after it, one that goes away once the
    // stream is inside the big one: listed, then gone when its turn comes.
    let big = f.add_noise(5, "pkg", 8 << 20);
    let late = big.parent().unwrap().join("late");
    fs::write(&late, "late").unwrap();
    let plan = portable_service_builder::plan::Plan::new(&f.attrs, |p: &Utf8Path| {
        portable_service_builder::read_unit_file(p)
    })
    .unwrap();
    let (mut reader, writer) = std::io::pipe().unwrap();
    let remove = late.clone();
    let drain = std::thread::spawn(move || {
        let mut first = vec![0; 4 << 20];
        reader.read_exact(&mut first).unwrap();
        fs::remove_file(&remove).unwrap();
        std::io::copy(&mut reader, &mut std::io::sink()).unwrap();
    });
    let e = portable_service_builder::tar_stream::write(&plan, writer).unwrap_err();
    drain.join().unwrap();
    let e = format!("{e:#}");
    assert!(e.contains(late.as_str()), "{e}");
    assert!(e.contains("No such file or directory"), "{e}");
}

#[cfg_attr(
    no_test_store,
    ignore = "no place for a test store (see the build's warning)"
)]
#[test]
fn a_store_file_that_cannot_be_read_is_named() {
    let mut f = Fixture::new();
    let secret = f.add_noise(5, "secret", 10);
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o000)).unwrap();
    // root reads any file: the builder runs without the capabilities that let it
    let attrs_file = f.root().join("attrs.json");
    fs::write(&attrs_file, attrs_json(&f.attrs)).unwrap();
    let out = Command::new("setpriv")
        .args(["--bounding-set=-dac_override,-dac_read_search"])
        .arg(env!("CARGO_BIN_EXE_portable-service-builder"))
        .arg(&attrs_file)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_failed_naming(
        &f,
        (out.status.success(), log),
        &secret,
        "Permission denied",
    );
}

/// `format = "ddi"`: one GPT disk whose root partition is the very file system a naked build
/// writes, its root-verity partition the hash tree `veritysetup verify` accepts, typed for the
/// system's architecture, read-only, with UUIDs from the root hash; the same bytes on a rebuild.
#[cfg_attr(
    no_test_store,
    ignore = "no place for a test store (see the build's warning)"
)]
#[test]
fn a_disk_image_holds_the_file_system_and_its_hash_tree_as_partitions() {
    use portable_service_rules::ddi::{self, Designator};
    let mut f = Fixture::new();
    let naked = fs::read(f.build().unwrap()).unwrap();
    fs::remove_dir_all(f.root().join("out")).unwrap();
    f.attrs.format = portable_service_builder::attrs::Format::Ddi;
    f.attrs.system = "x86_64-linux".into();
    let image = f.build().unwrap();
    let names: Vec<String> = fs::read_dir(f.root().join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        sorted(names),
        ["demo_1.0.raw", "demo_1.0.roothash"],
        "the hash tree is inside"
    );
    let disk = fs::read(&image).unwrap();
    let table = ddi::read_table(&image).unwrap();
    let root = table.find(Designator::Root).unwrap();
    let verity = table.find(Designator::RootVerity).unwrap();
    assert!(table.find(Designator::RootVeritySig).is_none());
    assert_eq!(table.partitions.len(), 2);
    let range = |p: &ddi::Partition| p.range.start as usize..p.range.end as usize;

    // the file system, written in place at 1 MiB, is byte for byte the naked image's
    assert_eq!(root.range.start, 1 << 20);
    assert_eq!(
        &disk[range(root)],
        &naked[..],
        "the root partition is the naked image"
    );
    // (and the builder's tree, byte for byte, the one veritysetup accepts)
    let work = tempfile::tempdir().unwrap();
    let (data, tree) = (work.path().join("root"), work.path().join("verity"));
    fs::write(&data, &disk[range(root)]).unwrap();
    fs::write(&tree, &disk[range(verity)]).unwrap();
    let root_hash = fs::read_to_string(f.root().join("out/demo_1.0.roothash")).unwrap();
    let verified = Command::new("veritysetup")
        .arg("verify")
        .arg(&data)
        .arg(&tree)
        .arg(&root_hash)
        .output()
        .unwrap();
    assert!(verified.status.success(), "veritysetup: {verified:?}");

    let x86_64 = ddi::architecture_of_system("x86_64-linux").unwrap();
    for (p, designator, label) in [
        (root, Designator::Root, "root-x86-64"),
        (verity, Designator::RootVerity, "root-x86-64-verity"),
    ] {
        assert_eq!(p.designator, Some((designator, x86_64)));
        assert_eq!(p.label, label);
        assert!(p.read_only(), "{label} carries GPT's read-only flag");
    }
    assert_eq!(
        ddi::uuid_string(&root.type_uuid),
        "4f68bce3-e8cd-4db1-96e7-fbcaf984b709"
    );
    assert_eq!(
        format!(
            "{}{}",
            portable_service_rules::verity::hex(&root.uuid),
            portable_service_rules::verity::hex(&verity.uuid)
        ),
        root_hash,
        "the partitions' UUIDs are the root hash's halves"
    );
    // the file system plus the tree plus at most 2 MiB
    let overhead = disk.len() - naked.len() - range(verity).len();
    assert!(
        overhead <= 2 << 20,
        "{overhead} bytes more than fs and tree"
    );

    fs::remove_dir_all(f.root().join("out")).unwrap();
    assert!(
        fs::read(f.build().unwrap()).unwrap() == disk,
        "a rebuild differs"
    );

    // for arm64, the same bytes but the types, labels and the table's checksums
    fs::remove_dir_all(f.root().join("out")).unwrap();
    f.attrs.system = "aarch64-linux".into();
    let arm = ddi::read_table(&f.build().unwrap()).unwrap();
    assert_eq!(arm.find(Designator::Root).unwrap().label, "root-arm64");
    assert_eq!(
        ddi::uuid_string(&arm.find(Designator::RootVerity).unwrap().type_uuid),
        "df3300ce-d69f-4c92-978c-9bfb0f38d820"
    );
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}
