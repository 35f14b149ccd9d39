//! Writes the fuzz targets' seed corpora into the directory given (one subdirectory a target):
//! our own images (squashfs, a DDI unsigned and signed, for two architectures), their hash
//! trees and signatures, the builder's attrs fixtures, and the hostile inputs issue 28 names
//! (GPT entries of 256 bytes, 0xFFFFFFFF entries, sectors near 2^55, two architectures in one
//! disk), and squashfs tables of packed zeros at `check`'s metadata bound and one block past it.
//! Run by tests/fuzz.sh; needs mksquashfs and openssl, as the tools' tests do.

#[path = "../fuzz_targets/common.rs"]
mod common;
#[path = "../../tests/support/metadata_blocks.rs"]
mod metadata_blocks;

use anyhow::{ensure, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use portable_service_rules::{ddi, verity};
use std::fs;
use std::io::Write;
use std::process::Command;

fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd.output().with_context(|| format!("{cmd:?}"))?;
    ensure!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// A small portable service tree, as mksquashfs makes it into an image at `offset`.
fn squashfs(work: &Utf8Path, out: &Utf8Path, offset: u64) -> Result<()> {
    let root = work.join("root");
    if !root.exists() {
        for dir in [
            "dev",
            "proc",
            "sys",
            "run",
            "tmp",
            "var/tmp",
            "etc/systemd/system",
        ] {
            fs::create_dir_all(root.join(dir))?;
        }
        fs::write(
            root.join("etc/os-release"),
            "ID=seed\nPORTABLE_PREFIXES=svc\n",
        )?;
        fs::write(root.join("etc/machine-id"), "")?;
        fs::write(root.join("etc/resolv.conf"), "")?;
        fs::write(
            root.join("etc/systemd/system/svc.service"),
            "[Service]\nExecStart=/bin/sh -c true\nStateDirectory=svc\n",
        )?;
        fs::create_dir_all(root.join("usr/lib/extension-release.d"))?;
        fs::write(
            root.join("usr/lib/extension-release.d/extension-release.svc"),
            "ID=seed\nSYSEXT_LEVEL=1\n",
        )?;
        std::os::unix::fs::symlink("../usr/lib/os-release", root.join("etc/os-release.link"))?;
    }
    run(Command::new("mksquashfs")
        .arg(&root)
        .arg(out)
        .args([
            "-noappend",
            "-all-root",
            "-quiet",
            "-no-progress",
            "-comp",
            "gzip",
        ])
        .args(["-offset", &offset.to_string()]))
}

/// The header at `at` of `disk` changed by `edit`, with both checksums made to hold.
fn edit_header(disk: &mut [u8], at: usize, edit: impl Fn(&mut [u8])) {
    edit(&mut disk[at..at + 92]);
    common::fix_checksums(disk, at);
}

fn main() -> Result<()> {
    let out = Utf8PathBuf::from(std::env::args().nth(1).context("usage: seeds DIR")?);
    let work = out.join("work");
    fs::create_dir_all(&work)?;
    let dir = |target: &str| -> Result<Utf8PathBuf> {
        let d = out.join(target);
        fs::create_dir_all(&d)?;
        Ok(d)
    };

    // a naked image, its tree and signature
    let naked = work.join("svc_1.raw");
    squashfs(&work, &naked, 0)?;
    fs::copy(&naked, dir("image")?.join("naked.raw"))?;
    let tree = verity::format(&naked, &work.join("svc_1.verity"))?;
    fs::write(work.join("svc_1.roothash"), tree.root_hash_hex())?;
    let image = fs::read(&naked)?;
    let blocks = image.len() / verity::BLOCK;
    if blocks <= 8 {
        let mut seed = vec![blocks as u8];
        seed.extend(&image);
        seed.extend(fs::read(work.join("svc_1.verity"))?);
        fs::write(dir("hash_tree")?.join("naked"), seed)?;
    }
    // 8 KiB of zeros packs into a zlib block of 29 bytes: tables that unpack to 12 MiB, the
    // most `check` lets backhand unpack, and to one block more, which it refuses
    let zeros = {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        z.write_all(&[0; 8192])?;
        z.finish()?
    };
    let bound = portable_service_tools::check::squashfs::MAX_METADATA_BLOCKS as usize;
    for (name, count) in [("at-the-bound", bound - 8), ("past-the-bound", bound + 1)] {
        let mut packed = Vec::new();
        for _ in 0..count {
            packed.extend_from_slice(&(zeros.len() as u16).to_le_bytes());
            packed.extend_from_slice(&zeros);
        }
        fs::write(
            dir("image")?.join(format!("packed-zeros-{name}.raw")),
            metadata_blocks::with_inode_blocks(&image, &packed),
        )?;
    }

    let small = work.join("small_1.raw");
    fs::write(&small, [7u8; 2 * verity::BLOCK])?;
    verity::format(&small, &work.join("small_1.verity"))?;
    let mut seed = vec![2u8];
    seed.extend([7u8; 2 * verity::BLOCK]);
    seed.extend(fs::read(work.join("small_1.verity"))?);
    fs::write(dir("hash_tree")?.join("small"), seed)?;

    let (key, cert) = (work.join("seed.key"), work.join("seed.crt"));
    run(Command::new("openssl")
        .args(["req", "-x509", "-nodes", "-days", "30", "-subj", "/CN=seed"])
        .args(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"])
        .args(["-keyout", key.as_str(), "-out", cert.as_str()]))?;
    let p7s = portable_service_tools::signing::sign(&naked, &key, &cert)?;
    fs::copy(&p7s, dir("signature")?.join("ec.p7s"))?;

    // DDIs: unsigned and signed, for x86-64 and arm64
    for (system, signed) in [
        ("x86_64-linux", false),
        ("x86_64-linux", true),
        ("aarch64-linux", true),
    ] {
        let disk = work.join(format!("{system}-{signed}_1.raw"));
        squashfs(&work, &disk, ddi::FIRST_PARTITION)?;
        ddi::finish(&disk, ddi::architecture_of_system(system).unwrap())?;
        if signed {
            portable_service_tools::signing::sign_disk(&disk, &key, &cert, false)?;
        }
        let bytes = fs::read(&disk)?;
        let name = format!(
            "{system}-{}.raw",
            if signed { "signed" } else { "unsigned" }
        );
        fs::write(dir("image")?.join(&name), &bytes)?;
        fs::write(dir("gpt_table")?.join(&name), &bytes)?;
    }

    // the hostile tables
    let good = fs::read(work.join("x86_64-linux-true_1.raw"))?;
    let hostile: [(&str, Box<dyn Fn(&mut [u8])>); 4] = [
        (
            "entries-of-256-bytes",
            Box::new(|h| h[84..88].copy_from_slice(&256u32.to_le_bytes())),
        ),
        (
            "ffffffff-entries",
            Box::new(|h| h[80..84].copy_from_slice(&u32::MAX.to_le_bytes())),
        ),
        (
            "entries-at-2^55",
            Box::new(|h| h[72..80].copy_from_slice(&(1u64 << 55).to_le_bytes())),
        ),
        (
            "backup-past-the-end",
            Box::new(|h| h[32..40].copy_from_slice(&(u64::MAX / 2).to_le_bytes())),
        ),
    ];
    for (name, edit) in hostile {
        let mut bytes = good.clone();
        edit_header(&mut bytes, 512, edit);
        fs::write(dir("gpt_table")?.join(format!("{name}.raw")), &bytes)?;
        fs::write(dir("image")?.join(format!("{name}.raw")), &bytes)?;
    }
    // a root at sector 2^55 (wraps when multiplied by 512 in 64 bits), in both tables
    let mut bytes = good.clone();
    let backup_at = (bytes.len() - 512) as u64;
    let backup_entries =
        u64::from_le_bytes(bytes[backup_at as usize + 72..][..8].try_into()?) * 512;
    for entries in [1024u64, backup_entries] {
        bytes[entries as usize + 32..][..8].copy_from_slice(&(1u64 << 55).to_le_bytes());
    }
    edit_header(&mut bytes, 512, |_| {});
    edit_header(&mut bytes, backup_at as usize, |_| {});
    fs::write(dir("gpt_table")?.join("root-at-2^55.raw"), &bytes)?;

    // the builder's attrs
    let fixtures = Utf8Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../portable-service-builder/tests/fixtures");
    for entry in fs::read_dir(&fixtures)? {
        let entry = entry?;
        if entry.path().extension().is_some_and(|e| e == "json") {
            fs::copy(
                entry.path(),
                dir("builder_attrs")?.join(entry.file_name().to_str().unwrap()),
            )?;
        }
    }
    fs::remove_dir_all(&work)?;
    Ok(())
}
