//! The closure in the image: which store paths go in (an extension leaves out its base's), where
//! the store lies (below `/usr`, where system extensions are overlaid) and the `/nix` symlink a
//! portable image needs to reach it.

use super::layout::Layout;
use super::{Plan, Source};
use crate::attrs::Attrs;
use crate::store_path;
use anyhow::{bail, Result};
use camino::{Utf8Path, Utf8PathBuf};
use std::collections::BTreeSet;

impl Plan {
    pub(super) fn add_store_paths(&mut self, attrs: &Attrs, layout: &Layout) -> Result<()> {
        let mut closure = BTreeSet::new();
        for (i, entry) in attrs.closure.iter().enumerate() {
            store_path::parse_store_path(&attrs.store_dir, entry.path.as_str()).map_err(|why| {
                anyhow::anyhow!("attribute `closure[{i}].path` = {:?}: {why}", entry.path)
            })?;
            closure.insert(entry.path.clone());
        }
        let roots = attrs
            .units
            .iter()
            .enumerate()
            .map(|(i, u)| (format!("units[{i}].file"), &u.file))
            .chain(
                attrs
                    .contents
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (format!("contents[{i}]"), c)),
            )
            .chain(
                attrs
                    .symlinks
                    .iter()
                    .enumerate()
                    .map(|(i, s)| (format!("symlinks[{i}].object"), &s.object)),
            )
            .chain(
                attrs
                    .files
                    .iter()
                    .enumerate()
                    .map(|(i, f)| (format!("files[{i}].file"), &f.file)),
            );
        for (attr, root) in roots {
            let parsed = store_path::parse(&attrs.store_dir, root.as_str()).map_err(|why| {
                anyhow::anyhow!("attribute `{attr}` = {root:?} is not in the Nix store: {why}")
            })?;
            if !closure.contains(Utf8Path::new(parsed.store_path)) {
                bail!(
                    "attribute `{attr}` = {root:?}: its store path {} is not in `closure`; \
                     the derivation must set `exportReferencesGraph.closure` over it",
                    parsed.store_path
                );
            }
        }
        let base: BTreeSet<&Utf8PathBuf> = attrs.base_closure.iter().map(|c| &c.path).collect();
        let Some(image_store) = &layout.store else {
            // A configuration extension is overlaid on /etc only: every store path its units
            // use must be in the base already. The unit files and files themselves are copied.
            let copied: BTreeSet<&Utf8Path> = attrs
                .units
                .iter()
                .map(|u| u.file.as_path())
                .chain(attrs.files.iter().map(|f| f.file.as_path()))
                .collect();
            let missing: Vec<&Utf8PathBuf> = closure
                .iter()
                .filter(|p| !base.contains(p) && !copied.contains(p.as_path()))
                .collect();
            let has_base = attrs.extension.as_ref().is_some_and(|e| e.base.is_some());
            if has_base && !missing.is_empty() {
                bail!(
                    "attribute `base`: a configuration extension can't carry store paths (it \
                     is overlaid on /etc only), and the base lacks {}",
                    missing
                        .iter()
                        .map(|p| p.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            return Ok(());
        };
        self.add_dir_with_parents(image_store, "the store directory");
        if layout.kind.is_none() {
            // /nix -> usr/nix, so that the store is below /usr, where extensions are overlaid.
            let top = image_store
                .strip_prefix("usr")
                .ok()
                .and_then(|p| p.components().next())
                .expect("the store is below usr/");
            if let Some(entry) = self.entries.get(Utf8Path::new(top.as_str())) {
                bail!(
                    "attribute `storeDir` = {:?}: the image keeps the store below /usr and links \
                     /{top} to it, but /{top} is {} of the image",
                    attrs.store_dir,
                    entry.what
                );
            }
            self.insert(
                top.as_str(),
                0o777,
                Source::Symlink(Utf8Path::new("usr").join(top.as_str())),
                "the store's symlink",
            );
        }
        for path in closure.iter().filter(|p| !base.contains(p)) {
            let name = path.file_name().expect("a parsed store path has a name");
            self.insert(
                image_store.join(name),
                0,
                Source::StorePath(path.clone()),
                &format!("store path {path}"),
            );
        }
        self.store_paths = closure.into_iter().filter(|p| !base.contains(p)).collect();
        Ok(())
    }
}
