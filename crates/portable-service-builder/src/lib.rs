//! portable-service-builder: the Nix builder that turns the attrs of `nix/portable-service.nix`
//! into a systemd Portable Service image, `<out>/<pname>_<version>.raw`.
//!
//! One image goes: [`attrs`] (the input schema) → [`plan`] (every entry of the image root,
//! checked) → [`tar_stream`] (the root as a tar stream, read straight from the store) →
//! [`mksquashfs`] (the squashfs image) → the hash tree, if asked
//! ([`portable_service_rules::verity`]), beside the image or, for a Discoverable Disk Image,
//! inside it with the partition table around both ([`portable_service_rules::ddi`]). [`store_path`] and [`os_release`] hold the rules for
//! store paths and for writing the os-release file.
//!
//! This crate is all that an image's derivation depends on, so it holds only the build: what
//! users run by hand (`check`, `sign`) is crates/portable-service-tools, and what both must agree
//! on is crates/portable-service-rules.

pub mod attrs;
pub mod merge;
pub mod mksquashfs;
pub mod os_release;
pub mod parts;
pub mod plan;
pub mod store_path;
pub mod tar_stream;

use anyhow::{bail, Context, Result};
use attrs::Attrs;
use camino::{Utf8Path, Utf8PathBuf};
use plan::Plan;
use portable_service_rules::ddi;
use portable_service_rules::verity::{self, sidecars};

/// Builds the image the attrs describe and returns its path; mksquashfs uses `processors`
/// threads (`None`: one per CPU). On any error nothing is left behind: neither a partial image
/// nor an output directory this call created. The files are written under `.partial` names and
/// renamed when all are whole, the image last, so that even a run killed part-way (by hand,
/// outside Nix) leaves no file that looks like an image.
pub fn build_image(attrs: &Attrs, processors: Option<u32>) -> Result<Utf8PathBuf> {
    let (mut options, plan) = prepare(attrs, read_unit_file)?;
    let disk = attrs.disk_architecture()?;
    options.processors = processors;
    options.offset = disk.map(|_| ddi::FIRST_PARTITION);
    mksquashfs::check_version(&attrs.mksquashfs)?;

    let out = attrs.out()?;
    let created_out = !out.exists();
    std::fs::create_dir_all(out).with_context(|| format!("cannot create the output {out}"))?;
    let image = out.join(attrs.image_file_name());
    // the image first: renamed last
    let mut files = vec![image.clone()];
    let [tree, root, _] = sidecars(&image);
    if disk.is_some() {
        files.push(root);
    } else if attrs.verity {
        files.extend([tree, root]);
    }
    let partial: Vec<Utf8PathBuf> = files.iter().map(|f| partial_name(f)).collect();
    tracing::info!(
        "building {image} from {} units and {} store paths",
        attrs.units.len(),
        plan.store_paths.len()
    );
    let rest = partial_name(&out.join(format!(".{}.rest", attrs.image_file_name())));
    let built = squash(attrs, options, plan, &partial[0], &rest).and_then(|stats| {
        if let Some(arch) = disk {
            write_ddi(&partial[0], &partial[1], arch)?;
        } else if attrs.verity {
            write_verity(&partial[0], &partial[1], &partial[2])?;
        }
        for (from, to) in partial.iter().zip(&files).rev() {
            std::fs::rename(from, to).with_context(|| format!("cannot rename {from} to {to}"))?;
        }
        Ok(stats)
    });
    match built {
        Ok(stats) => {
            let size = std::fs::metadata(&image).map(|m| m.len()).unwrap_or(0);
            tracing::info!(
                "wrote {image}: {} bytes, from {} files ({} bytes), {} directories, {} symlinks; \
                 builder peak memory {} KiB",
                size,
                stats.files,
                stats.bytes,
                stats.directories,
                stats.symlinks,
                peak_memory_kib().unwrap_or(0)
            );
            Ok(image)
        }
        Err(e) => {
            for file in partial.iter().chain(&files).chain([&rest]) {
                let _ = std::fs::remove_file(file);
            }
            if created_out {
                let _ = std::fs::remove_dir_all(out);
            }
            Err(e)
        }
    }
}

/// Writes the file system of `plan` to `image`: by mksquashfs alone, or, with `parts`, by
/// mksquashfs for what the parts don't hold (into `rest`) and then the merge of the parts and it.
fn squash(
    attrs: &Attrs,
    mut options: mksquashfs::Options,
    mut plan: Plan,
    image: &Utf8Path,
    rest: &Utf8Path,
) -> Result<tar_stream::Stats> {
    if attrs.parts.is_empty() {
        return mksquashfs::build(&attrs.mksquashfs, &options, &plan, image);
    }
    parts::take_parts(&mut plan, &attrs.store_dir, &attrs.parts)?;
    let offset = options.offset.take().unwrap_or(0);
    options.for_parts = true;
    let stats = mksquashfs::build(&attrs.mksquashfs, &options, &plan, rest)?;
    let started = std::time::Instant::now();
    let all: Vec<&Utf8Path> = attrs
        .parts
        .iter()
        .map(|p| p.as_path())
        .chain([rest])
        .collect();
    let merged = merge::merge(&all, image, offset)?;
    std::fs::remove_file(rest).with_context(|| format!("cannot remove {rest}"))?;
    tracing::info!(
        "merged {} parts and the rest ({} store paths) into {} inodes, {} bytes, in {:.2} s",
        attrs.parts.len(),
        plan.store_paths.len(),
        merged.inodes,
        merged.bytes,
        started.elapsed().as_secs_f64()
    );
    Ok(stats)
}

/// Where `file` is written until it is whole.
fn partial_name(file: &Utf8Path) -> Utf8PathBuf {
    Utf8PathBuf::from(format!("{file}.partial"))
}

/// Every check of the attrs, without running anything: the mksquashfs options and the image
/// plan. `read_unit` gives a unit file's content ([`read_unit_file`] for the real store).
pub fn prepare(
    attrs: &Attrs,
    read_unit: impl Fn(&Utf8Path) -> Result<Vec<u8>>,
) -> Result<(mksquashfs::Options, Plan)> {
    let options = mksquashfs::Options::new(&attrs.squash_compression, &attrs.squash_block_size)?;
    attrs.disk_architecture()?;
    let plan = Plan::new(attrs, read_unit)?;
    Ok((options, plan))
}

/// Writes the image's hash tree and root hash.
fn write_verity(image: &Utf8Path, tree_file: &Utf8Path, root_file: &Utf8Path) -> Result<()> {
    let started = std::time::Instant::now();
    let tree = verity::format(image, tree_file)?;
    std::fs::write(root_file, tree.root_hash_hex())
        .with_context(|| format!("cannot write {root_file}"))?;
    tracing::info!(
        "made the hash tree ({} data blocks) and the root hash {}, in {:.2} s",
        tree.data_blocks,
        tree.root_hash_hex(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Makes the file system mksquashfs wrote into `image` a Discoverable Disk Image in place
/// ([`ddi::finish`]) and writes its root hash to `root_file`.
fn write_ddi(image: &Utf8Path, root_file: &Utf8Path, arch: &ddi::Architecture) -> Result<()> {
    let started = std::time::Instant::now();
    let (tree, layout) = ddi::finish(image, arch)?;
    std::fs::write(root_file, tree.root_hash_hex())
        .with_context(|| format!("cannot write {root_file}"))?;
    tracing::info!(
        "made a disk image for {}: root partition {} bytes, root-verity {} bytes, root hash {}, \
         in {:.2} s",
        arch.name,
        layout.root.end - layout.root.start,
        layout.verity.end - layout.verity.start,
        tree.root_hash_hex(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The builder's own peak resident memory (mksquashfs is a separate process), from /proc.
fn peak_memory_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A unit's content. A symlink to a unit file is followed, as `cp` would; anything else but a
/// regular file is refused.
pub fn read_unit_file(path: &Utf8Path) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(path).with_context(|| format!("cannot read {path}"))?;
    if !meta.is_file() {
        let kind = if meta.is_dir() {
            "a directory"
        } else {
            "a special file"
        };
        bail!("{path} is {kind}, not a regular file: a unit must be a single file");
    }
    std::fs::read(path).with_context(|| format!("cannot read {path}"))
}
