//! `parts` through Nix: an image built from parts is the image built without them (tree,
//! contents, no references), its parts' derivations don't depend on the rest of the image (so a
//! rebuild after a change elsewhere reuses them), DDI and verity images and extensions build on
//! them, and bad `parts` fail at evaluation, or at build time for what only the closure tells.

use portable_service_tests::*;
use std::path::Path;
use std::process::Command;

/// `unsquashfs -lln` lines with sizes, owners and times (directories' sizes left out: they
/// depend on where the inodes lie).
fn full_listing(image: &Path) -> Vec<String> {
    let out = Command::new("unsquashfs")
        .arg("-lln")
        .arg(image)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let size = if l.starts_with('d') { "-" } else { f[2] };
            format!("{} {} {size} {}", f[0], f[1], f[3..].join(" "))
        })
        .collect()
}

fn extract(image: &Path, to: &Path) {
    let out = Command::new("unsquashfs")
        .args(["-no-progress", "-d"])
        .arg(to)
        .arg(image)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The two images hold the same tree: listings with sizes, owners and times, and contents.
fn assert_same_image(a: &Path, b: &Path) {
    assert_eq!(full_listing(a), full_listing(b));
    let dir = tempfile::tempdir().unwrap();
    let (x, y) = (dir.path().join("a"), dir.path().join("b"));
    extract(a, &x);
    extract(b, &y);
    let diff = Command::new("diff")
        .args(["-r", "--no-dereference"])
        .args([&x, &y])
        .output()
        .unwrap();
    assert!(
        diff.status.success(),
        "{}",
        String::from_utf8_lossy(&diff.stdout)
    );
}

fn references(out: &Path) -> String {
    let refs = nix("nix-store")
        .args(["-q", "--references"])
        .arg(out)
        .output()
        .unwrap();
    String::from_utf8_lossy(&refs.stdout).into_owned()
}

#[test]
fn an_image_from_parts_is_the_image_without_them() {
    let plain = raw_file(&build("demo { version = \"parts\"; }"));
    let with = "demo { version = \"parts\"; extra = { parts = [ t.busybox ]; }; }";
    let out = build(with);
    let parted = raw_file(&out);
    assert_ne!(plain, parted, "two derivations");
    assert_same_image(&plain, &parted);
    // The store paths' names are in the image's tables; compressed, as mksquashfs writes
    // them, Nix finds no reference in the image, as it finds none in the plain one.
    assert_eq!(references(&out), "", "the image keeps no store path alive");
    try_build(with, &["--rebuild"])
        .unwrap_or_else(|log| panic!("the rebuild differs or failed:\n{log}"));
    let log = nix("nix").arg("log").arg(&out).output().unwrap();
    let log = String::from_utf8_lossy(&log.stdout);
    assert!(log.contains("merged 1 parts and the rest"), "{log}");
}

#[test]
fn a_part_is_the_same_derivation_whatever_else_the_image_changes() {
    let part = |expr: &str| eval(&format!("(builtins.head ({expr}).parts).drvPath")).unwrap();
    let one = part("demo { version = \"1\"; extra = { parts = [ t.busybox ]; }; }");
    let other = part(
        "demo { version = \"2\"; description = \"another\"; extra = { parts = [ t.busybox ]; }; }",
    );
    assert_eq!(one, other, "a new version reuses the part");
    // built again, a part is the same bytes (Nix compares them), so a part from a cache and one
    // built here make the same image
    let first =
        "builtins.head (demo { version = \"1\"; extra = { parts = [ t.busybox ]; }; }).parts";
    build(first);
    try_build(first, &["--rebuild"])
        .unwrap_or_else(|log| panic!("the part's rebuild differs or failed:\n{log}"));
    // the compression makes another part
    let zstd = part(
        "demo { version = \"1\"; extra = { parts = [ t.busybox ]; squash-compression = \"zstd\"; }; }",
    );
    assert_ne!(one, zstd);
    // two groups: the second's closure less the first's, here nothing
    let out =
        build("demo { version = \"groups\"; extra = { parts = [ t.busybox [ t.busybox ] ]; }; }");
    let log = nix("nix").arg("log").arg(&out).output().unwrap();
    let log = String::from_utf8_lossy(&log.stdout);
    assert!(log.contains("merged 2 parts and the rest"), "{log}");
}

#[test]
fn ddi_verity_and_extension_images_build_on_parts_and_pass_check() {
    let ddi =
        "demo { version = \"parts-ddi\"; extra = { format = \"ddi\"; parts = [ t.busybox ]; }; }";
    let report = std::fs::read_to_string(build(&format!("({ddi}).check"))).unwrap();
    assert!(report.contains("verdict: accepted"), "{report}");
    let verity =
        "demo { version = \"parts-verity\"; extra = { verity = true; parts = [ t.busybox ]; }; }";
    let out = build(verity);
    assert_eq!(
        file_names(&out),
        [
            "demo_parts-verity.raw",
            "demo_parts-verity.roothash",
            "demo_parts-verity.verity"
        ]
    );
    let report = std::fs::read_to_string(build(&format!("({verity}).check"))).unwrap();
    assert!(report.contains("verdict: accepted"), "{report}");
    let ext = "(ext.app { extra = { parts = [ t.busybox ]; }; })";
    let log = try_build(ext, &[]).expect_err("busybox is the base's, not the extension's");
    assert!(
        log.contains("attribute `parts[0]` holds")
            && log.contains("-busybox, which is not a store path of this image"),
        "{log}"
    );
}

#[test]
fn bad_parts_fail_at_evaluation_naming_attribute_and_value() {
    for (parts, says) in [
        (
            "\"busybox\"",
            "`parts` = \"busybox\" must be \"auto\" or a list of packages",
        ),
        ("[ [ ] ]", "`parts[0]` = [] is an empty list"),
        (
            "[ 5 ]",
            "`parts[0]` = 5 must be a derivation, a path or a store path",
        ),
        ("[ [ t.busybox 5 ] ]", "`parts[0][1]` = 5 must be"),
    ] {
        let e = eval_error(&format!("demo {{ extra = {{ parts = {parts}; }}; }}"));
        assert!(e.contains(says), "{parts}: {e}");
    }
    let e =
        eval_error("demo { extra = { parts = [ t.busybox ]; squash-compression = \"lzo\"; }; }");
    assert!(e.contains("`parts`") && e.contains("lzo"), "{e}");
    let e = eval_error(
        "t.portableServiceExtension { pname = \"c\"; version = \"1\"; kind = \"confext\"; parts = [ t.busybox ]; units = [ (t.writeText \"c.service\" \"[Service]\\nExecStart=/bin/true\\n\") ]; }",
    );
    assert!(e.contains("configuration extension"), "{e}");
}

#[test]
fn a_part_outside_the_closure_fails_the_build_naming_it() {
    let stray = "t.writeText \"stray\" \"not used by the image\"";
    let log = try_build(
        &format!("demo {{ version = \"stray\"; extra = {{ parts = [ ({stray}) ]; }}; }}"),
        &[],
    )
    .expect_err("a part the image doesn't use");
    assert!(
        log.contains("attribute `parts[0]` holds")
            && log.contains("-stray, which is not a store path of this image"),
        "{log}"
    );
}

/// `parts = "auto"`: a closure below 64 MiB is built whole; above, each path of 4 MiB or more
/// is a part and the small ones are grouped, and the image is the one built whole.
#[test]
fn auto_parts_split_a_large_closure_and_leave_a_small_one_whole() {
    let small =
        eval("toString (builtins.length (demo { extra = { parts = \"auto\"; }; }).parts)").unwrap();
    assert_eq!(small, "0");
    // 72 MiB that zstd can't shrink, quick to compress
    let big = "(t.runBusyboxWith \"big\" { } \"busybox mkdir -p $out; busybox head -c 75497472 /dev/urandom > $out/blob\")";
    let image = |parts: &str| {
        format!(
            "demo {{ version = \"auto\"; extra = {{ contents = [ t.busybox {big} ]; parts = {parts}; squash-compression = \"zstd -Xcompression-level 1\"; }}; }}"
        )
    };
    let names = eval(&format!(
        "builtins.concatStringsSep \" \" (map (p: p.name) ({}).parts)",
        image("\"auto\"")
    ))
    .unwrap();
    assert!(
        names.starts_with("big-squashfs-part small-paths-"),
        "{names}"
    );
    let whole = raw_file(&build(&image("[ ]")));
    let parted = raw_file(&build(&image("\"auto\"")));
    assert_same_image(&whole, &parted);
}
