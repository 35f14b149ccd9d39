//! Images built from parts (the Nix function's `parts`): a part is a derivation of its own that
//! compresses some store paths once, and an image merges its parts' blocks with those of the
//! rest of its root ([`crate::merge`]), so a rebuild compresses only what is not in an
//! unchanged part.
//!
//! This file owns both ends: [`build_part`], the builder of a part's derivation, and
//! [`take_parts`], which takes the parts' store paths out of an image's plan and checks that
//! they are the image's own.

use crate::attrs::ClosureEntry;
use crate::mksquashfs::{self, Options};
use crate::plan::{Plan, Source};
use crate::store_path;
use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};

/// The file a part's derivation writes in its output.
pub const PART_FILE: &str = "part.raw";

/// The attributes of a part's derivation.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartAttrs {
    pub outputs: BTreeMap<String, Utf8PathBuf>,
    pub store_dir: Utf8PathBuf,
    pub mksquashfs: Utf8PathBuf,
    #[serde(rename = "squash-compression")]
    pub squash_compression: String,
    #[serde(rename = "squash-block-size")]
    pub squash_block_size: String,
    /// The closure of the part's roots.
    pub closure: Vec<ClosureEntry>,
    /// The closure of the parts before it, whose store paths they hold.
    #[serde(default)]
    pub exclude: Vec<ClosureEntry>,
    /// Marks the attrs as a part's (`true`).
    pub part: bool,
}

/// Whether the attrs JSON is a part's.
pub fn is_part(text: &str) -> bool {
    #[derive(Deserialize)]
    struct Marker {
        #[serde(default)]
        part: bool,
    }
    serde_json::from_str::<Marker>(text).is_ok_and(|m| m.part)
}

/// Where the image keeps the store: below `/usr` (see plan::layout).
pub fn image_store(store_dir: &Utf8Path) -> Utf8PathBuf {
    Utf8Path::new("usr").join(store_dir.as_str().trim_start_matches('/'))
}

/// Builds a part: the store paths of `closure` less `exclude`, below the image's store
/// directory, as mksquashfs compresses them for an image (and with uncompressed tables, which
/// the merge reads). Writes `<out>/part.raw`.
pub fn build_part(attrs: &PartAttrs, processors: Option<u32>) -> Result<Utf8PathBuf> {
    let mut options = Options::new(&attrs.squash_compression, &attrs.squash_block_size)?;
    options.processors = processors;
    options.for_parts = true;
    mksquashfs::check_version(&attrs.mksquashfs)?;
    let excluded: BTreeSet<&Utf8Path> = attrs.exclude.iter().map(|e| e.path.as_path()).collect();
    let mut paths = Vec::new();
    for (i, entry) in attrs.closure.iter().enumerate() {
        store_path::parse_store_path(&attrs.store_dir, entry.path.as_str()).map_err(|why| {
            anyhow::anyhow!("attribute `closure[{i}].path` = {:?}: {why}", entry.path)
        })?;
        if !excluded.contains(entry.path.as_path()) {
            paths.push(entry.path.clone());
        }
    }
    paths.sort();
    paths.dedup();
    let plan = Plan::of_store_paths(&image_store(&attrs.store_dir), &paths);
    let out = attrs
        .outputs
        .get("out")
        .context("attribute `outputs.out` is missing")?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {out}"))?;
    let part = out.join(PART_FILE);
    tracing::info!("compressing {} store paths into {part}", paths.len());
    mksquashfs::build(&attrs.mksquashfs, &options, &plan, &part)?;
    Ok(part)
}

/// Takes the store paths the parts hold out of `plan` (the image's), so that the image's own
/// mksquashfs compresses only the rest. Each must be a store path of the image, held by one part.
pub fn take_parts(plan: &mut Plan, store_dir: &Utf8Path, parts: &[Utf8PathBuf]) -> Result<()> {
    let store = image_store(store_dir);
    let mut holder: BTreeMap<String, usize> = BTreeMap::new();
    for (i, part) in parts.iter().enumerate() {
        for name in crate::merge::names_below(part, &store)
            .with_context(|| format!("attribute `parts[{i}]` = {part:?}"))?
        {
            let path = store_dir.join(&name);
            if let Some(j) = holder.insert(name.clone(), i) {
                bail!("attribute `parts`: {path} is in parts {j} and {i}");
            }
            let entry = store.join(&name);
            match plan.entries.get(&entry).map(|e| &e.source) {
                Some(Source::StorePath(p)) if *p == path => {}
                _ => bail!(
                    "attribute `parts[{i}]` holds {path}, which is not a store path of this image \
                     (its closure, less its base's for an extension): take it out of `parts`, or \
                     put what uses it in the image"
                ),
            }
            plan.entries.remove(&entry);
        }
    }
    plan.store_paths
        .retain(|p| p.file_name().is_none_or(|n| !holder.contains_key(n)));
    Ok(())
}

impl Plan {
    /// The plan of a part: the store directory and its parents, and the store paths.
    pub fn of_store_paths(store: &Utf8Path, paths: &[Utf8PathBuf]) -> Plan {
        let mut plan = Plan::default();
        plan.add_dir_with_parents(store, "the store directory");
        for path in paths {
            let name = path.file_name().expect("a parsed store path has a name");
            plan.insert(
                store.join(name),
                0,
                Source::StorePath(path.clone()),
                &format!("store path {path}"),
            );
        }
        plan.store_paths = paths.to_vec();
        plan
    }
}
