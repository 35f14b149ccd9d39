//! The dm-verity hash tree against cryptsetup's own: `veritysetup format` with our salt and UUID
//! writes the same bytes, `veritysetup verify` accepts our tree and root hash, and a changed
//! byte of the image or the tree is found, by veritysetup and by `verity::verify`.

use camino::{Utf8Path, Utf8PathBuf};
use portable_service_rules::verity;
use std::process::Command;

/// Deterministic, incompressible-looking bytes.
fn data(blocks: usize, seed: u8) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9 ^ u32::from(seed);
    (0..blocks * verity::BLOCK)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn veritysetup(args: &[&str]) -> (bool, String) {
    let out = Command::new("veritysetup")
        .args(args)
        .output()
        .expect("veritysetup runs (tests/setup.sh installs cryptsetup-bin)");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn uuid_string(u: &[u8; 16]) -> String {
    let h = verity::hex(u);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

fn paths(dir: &tempfile::TempDir) -> (Utf8PathBuf, Utf8PathBuf) {
    let d = Utf8Path::from_path(dir.path()).unwrap();
    (d.join("image.raw"), d.join("image.verity"))
}

#[test]
fn the_tree_is_veritysetups_byte_for_byte_at_every_depth() {
    // 1 block: no level; 25: one hash block; 128/129: a full block and one more; 16385: three
    // levels
    for blocks in [1, 25, 128, 129, 200, 16385] {
        let dir = tempfile::tempdir().unwrap();
        let (image, tree_file) = paths(&dir);
        std::fs::write(&image, data(blocks, blocks as u8)).unwrap();
        let tree = verity::format(&image, &tree_file).unwrap();
        assert_eq!(tree.data_blocks, blocks as u64);

        let theirs = dir.path().join("theirs.verity");
        let (ok, said) = veritysetup(&[
            "format",
            "--hash=sha256",
            "--data-block-size=4096",
            "--hash-block-size=4096",
            &format!("--salt={}", verity::hex(&tree.salt)),
            &format!("--uuid={}", uuid_string(&tree.uuid)),
            image.as_str(),
            theirs.to_str().unwrap(),
        ]);
        assert!(ok, "{said}");
        assert!(
            said.contains(&format!("Root hash:      \t{}", tree.root_hash_hex())),
            "{blocks} blocks: veritysetup says another root hash:\n{said}"
        );
        assert!(
            std::fs::read(&theirs).unwrap() == std::fs::read(&tree_file).unwrap(),
            "{blocks} blocks: the trees differ"
        );

        let (ok, said) = veritysetup(&[
            "verify",
            image.as_str(),
            tree_file.as_str(),
            &tree.root_hash_hex(),
        ]);
        assert!(ok, "{blocks} blocks: veritysetup verify: {said}");
        assert_eq!(
            verity::verify(&image, &tree_file, &tree.root_hash).unwrap(),
            tree
        );
    }
}

#[test]
fn the_same_image_gets_the_same_tree_and_another_image_another_salt() {
    let dir = tempfile::tempdir().unwrap();
    let (image, tree_file) = paths(&dir);
    std::fs::write(&image, data(300, 1)).unwrap();
    let first = verity::format(&image, &tree_file).unwrap();
    let first_bytes = std::fs::read(&tree_file).unwrap();
    let again = verity::format(&image, &tree_file).unwrap();
    assert_eq!(first, again);
    assert_eq!(first_bytes, std::fs::read(&tree_file).unwrap());

    std::fs::write(&image, data(300, 2)).unwrap();
    let other = verity::format(&image, &tree_file).unwrap();
    assert_ne!(first.salt, other.salt);
    assert_ne!(first.uuid, other.uuid);
}

#[test]
fn a_changed_byte_of_the_image_or_the_tree_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let (image, tree_file) = paths(&dir);
    let bytes = data(300, 3);
    std::fs::write(&image, &bytes).unwrap();
    let tree = verity::format(&image, &tree_file).unwrap();

    let mut changed = bytes.clone();
    changed[200 * verity::BLOCK + 17] ^= 1;
    std::fs::write(&image, &changed).unwrap();
    let err = verity::verify(&image, &tree_file, &tree.root_hash).unwrap_err();
    assert!(
        format!("{err}").contains("does not match its hash tree"),
        "{err}"
    );
    let (ok, _) = veritysetup(&[
        "verify",
        image.as_str(),
        tree_file.as_str(),
        &tree.root_hash_hex(),
    ]);
    assert!(!ok, "veritysetup took a changed image");

    std::fs::write(&image, &bytes).unwrap();
    let mut other_root = tree.root_hash;
    other_root[0] ^= 1;
    let err = verity::verify(&image, &tree_file, &other_root).unwrap_err();
    assert!(
        format!("{err}").contains("does not match the root hash"),
        "{err}"
    );

    let mut stored = std::fs::read(&tree_file).unwrap();
    let last = stored.len() - verity::BLOCK;
    stored[last] ^= 1;
    std::fs::write(&tree_file, &stored).unwrap();
    assert!(verity::verify(&image, &tree_file, &tree.root_hash).is_err());
}

#[test]
fn an_image_of_a_partial_block_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (image, tree_file) = paths(&dir);
    std::fs::write(&image, vec![7u8; 5000]).unwrap();
    let err = verity::format(&image, &tree_file).unwrap_err();
    assert!(
        format!("{err}").contains("not a whole number of 4096-byte blocks"),
        "{err}"
    );
}
