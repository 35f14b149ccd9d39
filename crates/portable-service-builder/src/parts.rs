//! Images built from parts (the Nix function's `parts`): a part is a derivation of its own that
//! compresses some store paths once, and an image merges its parts' blocks with those of the
//! rest of its root ([`crate::merge`]), so a rebuild compresses only what is not in an
//! unchanged part.
//!
//! This file owns every end: [`build_part`], the builder of a part's derivation;
//! [`list_closure`], the builder of the small derivation `parts = "auto"` reads at evaluation
//! time (the image's store paths and their sizes, from which the Nix side makes one part per
//! large path and one per group of small ones); and [`take_parts`], which takes the parts'
//! store paths out of an image's plan and checks that they are the image's own.

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
    /// The closure of the part's roots (`parts` of packages).
    #[serde(default)]
    pub closure: Vec<ClosureEntry>,
    /// The store paths themselves, without their closure (`parts = "auto"`).
    #[serde(default)]
    pub paths: Vec<Utf8PathBuf>,
    /// The closure of the parts before it, whose store paths they hold.
    #[serde(default)]
    pub exclude: Vec<ClosureEntry>,
    /// Marks the attrs as a part's (`true`).
    pub part: bool,
}

/// What a derivation's attrs ask the builder for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    Image,
    Part,
    ListClosure,
}

/// The job of an attrs JSON: a part's and a closure list's carry a marker.
pub fn job(text: &str) -> Job {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Marker {
        #[serde(default)]
        part: bool,
        #[serde(default)]
        list_closure: bool,
    }
    match serde_json::from_str::<Marker>(text) {
        Ok(m) if m.part => Job::Part,
        Ok(m) if m.list_closure => Job::ListClosure,
        _ => Job::Image,
    }
}

/// The attributes of the closure list's derivation.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListAttrs {
    pub outputs: BTreeMap<String, Utf8PathBuf>,
    pub closure: Vec<SizedEntry>,
    /// An extension's base's closure, whose paths the extension doesn't hold.
    #[serde(default)]
    pub base_closure: Vec<SizedEntry>,
}

/// A closure entry with the size `exportReferencesGraph` gives it.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SizedEntry {
    pub path: Utf8PathBuf,
    #[serde(default)]
    pub nar_size: u64,
}

/// Writes `$out`, a JSON list of the image's store paths and their sizes, sorted by path.
pub fn list_closure(attrs: &ListAttrs) -> Result<()> {
    let base: BTreeSet<&Utf8Path> = attrs
        .base_closure
        .iter()
        .map(|e| e.path.as_path())
        .collect();
    let mut own: Vec<&SizedEntry> = attrs
        .closure
        .iter()
        .filter(|e| !base.contains(e.path.as_path()))
        .collect();
    own.sort_by(|a, b| a.path.cmp(&b.path));
    own.dedup_by(|a, b| a.path == b.path);
    let out = attrs
        .outputs
        .get("out")
        .context("attribute `outputs.out` is missing")?;
    std::fs::write(out, serde_json::to_vec(&own)?)
        .with_context(|| format!("cannot write {out}"))?;
    tracing::info!("listed {} store paths", own.len());
    Ok(())
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
    let given = attrs.closure.iter().map(|e| (&e.path, "closure"));
    let mut paths = Vec::new();
    for (i, (path, attr)) in given
        .chain(attrs.paths.iter().map(|p| (p, "paths")))
        .enumerate()
    {
        store_path::parse_store_path(&attrs.store_dir, path.as_str())
            .map_err(|why| anyhow::anyhow!("attribute `{attr}`: {path:?} (entry {i}): {why}"))?;
        if !excluded.contains(path.as_path()) {
            paths.push(path.clone());
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
