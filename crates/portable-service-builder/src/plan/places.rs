//! Entries at paths the user chose (`symlinks`, an extension's `files`): each inside the root,
//! not below what systemd mounts over, not on or inside another entry, and where an extension's
//! overlay makes it visible.

use super::layout::Layout;
use super::{names, Plan, Source, FILE_MODE};
use crate::attrs::{Attrs, File};
use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use portable_service_rules::mount_points::{normalise_image_path, HIDDEN_BELOW};

impl Plan {
    pub(super) fn add_file(
        &mut self,
        attrs: &Attrs,
        layout: &Layout,
        i: usize,
        file: &File,
        read: impl Fn(&Utf8Path) -> Result<Vec<u8>>,
    ) -> Result<()> {
        let attr = format!("files[{i}].path");
        let path = self.free_path(layout, &attr, &file.path)?;
        names::check_store_file(attrs, &format!("files[{i}].file"), &file.file)?;
        let content = read(&file.file)
            .with_context(|| format!("attribute `files[{i}].file` = {:?}", file.file))?;
        self.insert_with_parents(
            path,
            FILE_MODE,
            Source::Data(content),
            &format!("file {} (files[{i}])", file.path),
        );
        Ok(())
    }

    pub(super) fn add_symlink(
        &mut self,
        layout: &Layout,
        i: usize,
        link: &str,
        object: &Utf8Path,
    ) -> Result<()> {
        let attr = format!("symlinks[{i}].symlink");
        let path = self.free_path(layout, &attr, link)?;
        self.insert_with_parents(
            path,
            0o777,
            Source::Symlink(object.to_owned()),
            &format!("symlink {link} ({attr})"),
        );
        Ok(())
    }

    /// `given` (attribute `attr`) as a path of the image where a new entry may go: inside the
    /// root, not below what systemd mounts over, not on or inside another entry, and where an
    /// extension's overlay makes it visible.
    fn free_path(&self, layout: &Layout, attr: &str, given: &str) -> Result<Utf8PathBuf> {
        let path = normalise_image_path(given)
            .map_err(|why| anyhow::anyhow!("attribute `{attr}` = {given:?} {why}"))?;
        if let Some(hidden) = HIDDEN_BELOW
            .iter()
            .find(|d| path.starts_with(d) && path.as_str() != **d)
        {
            bail!(
                "attribute `{attr}` = {given:?} is below /{hidden}, which systemd mounts over when the service runs"
            );
        }
        if let Some(root) = layout.visible_below {
            if !path.starts_with(root) || path.as_str() == root {
                bail!(
                    "attribute `{attr}` = {given:?} is outside /{root}: an extension of this kind \
                     is overlaid on /{root} only, so the service would not see it"
                );
            }
        }
        for ancestor in path.ancestors().skip(1).filter(|a| !a.as_str().is_empty()) {
            if let Some(entry) = self.entries.get(ancestor) {
                if entry.source != Source::Directory {
                    bail!(
                        "attribute `{attr}` = {given:?} would be inside /{ancestor}, which is {}",
                        entry.what
                    );
                }
            }
        }
        if let Some(entry) = self.entries.get(&path) {
            bail!(
                "attribute `{attr}` = {given:?} collides with /{path}, which is {}",
                entry.what
            );
        }
        if path.starts_with(&layout.units) {
            bail!(
                "attribute `{attr}` = {given:?} collides with /{}, where the image's units are: \
                 give units as `units`",
                layout.units
            );
        }
        if let Some(store) = &layout.store {
            if path.starts_with(store) {
                bail!("attribute `{attr}` = {given:?} is inside the store directory, which holds the closure");
            }
        }
        Ok(path)
    }
}
