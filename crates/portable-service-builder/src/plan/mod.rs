//! The image plan: every entry of the image root (path, kind, mode, source), built from the attrs
//! and checked before anything is written.
//!
//! The plan is plain data; `tar_stream` only writes it, so that a wrong input fails here, before
//! mksquashfs starts and before any output exists. This file holds the entries and the order in
//! which a plan is filled (mount points, release file, units, closure, files, symlinks); the
//! rules of each part are in the files beside it: [`names`] (pname, version, prefixes, unit
//! names), [`layout`] (where each kind of image keeps its parts), [`closure`] (the store paths)
//! and [`places`] (files and symlinks at paths the user chose). The rules `check` shares are in
//! `portable_service_rules`.

mod closure;
mod layout;
mod names;
mod places;
#[cfg(test)]
mod tests;

use crate::attrs::{Attrs, Unit};
use crate::os_release;
use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use layout::Layout;
use portable_service_rules::mount_points::{self, MOUNT_POINT_DIRS, MOUNT_POINT_FILES};
use portable_service_rules::unit_file;
use std::collections::{BTreeMap, BTreeSet};

pub const DIR_MODE: u32 = 0o755;
pub const FILE_MODE: u32 = 0o644;

/// Where an entry's content comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A directory made for the image (mount point or parent).
    Directory,
    /// A regular file with this content (os-release, mount points, the units read while checking
    /// them).
    Data(Vec<u8>),
    /// A symlink with this target.
    Symlink(Utf8PathBuf),
    /// A store path, copied exactly as it is (modes, symlinks, empty files and directories).
    StorePath(Utf8PathBuf),
}

/// One entry of the image root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The mode of the entry itself; for a store path, the modes come from the store.
    pub mode: u32,
    pub source: Source,
    /// What the entry is, for error messages (`unit demo.service`, `mount point`, ...).
    pub what: String,
}

/// The image root, keyed by path relative to the root. Paths sort by component, so a directory
/// comes right before what it holds: the order the tar stream needs and the order that makes the
/// image's bytes independent of the input's order.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub entries: BTreeMap<Utf8PathBuf, Entry>,
    /// The closure's store paths, sorted.
    pub store_paths: Vec<Utf8PathBuf>,
}

impl Plan {
    /// Checks the attrs and lays out the image root. `read_unit` gives a unit file's content
    /// (following symlinks) or says why it can't be a unit: tests pass a fake store.
    pub fn new(attrs: &Attrs, read_unit: impl Fn(&Utf8Path) -> Result<Vec<u8>>) -> Result<Plan> {
        names::check_store_dir(&attrs.store_dir)?;
        names::check_pname(&attrs.pname)?;
        names::check_version(&attrs.version)?;
        let prefixes = names::check_prefixes(attrs)?;
        let layout = Layout::of(attrs);
        if layout.kind.is_none() && !prefixes.contains(&attrs.pname) {
            tracing::warn!(
                "`portablePrefixes` ({}) lacks the pname {:?}: `portablectl attach {}` without \
                 matches refuses the image; attach it with them: portablectl attach {} {}",
                prefixes.join(" "),
                attrs.pname,
                attrs.image_file_name(),
                attrs.image_file_name(),
                prefixes.join(" ")
            );
        }
        let mut plan = Plan::default();

        if layout.kind.is_none() {
            for dir in MOUNT_POINT_DIRS.iter().chain(&["etc/systemd/system"]) {
                plan.add_dir_with_parents(Utf8Path::new(dir), "mount point");
            }
            for file in MOUNT_POINT_FILES {
                plan.insert(file, FILE_MODE, Source::Data(Vec::new()), "mount point");
            }
        }
        let release = os_release::render(attrs)?;
        plan.insert_with_parents(
            layout.release.clone(),
            FILE_MODE,
            Source::Data(release.into_bytes()),
            &format!("/{}", layout.release),
        );

        // An extension needs units of its own too: portabled gives an extension's files only to
        // the units that come from it (ExtensionImages= in their drop-in).
        if attrs.units.is_empty() {
            bail!("attribute `units` is empty: an image needs at least one unit file, or portabled refuses it");
        }
        plan.add_dir_with_parents(&layout.units, "the unit directory");
        let mut state_dirs = BTreeSet::new();
        for (i, unit) in attrs.units.iter().enumerate() {
            let content = plan.add_unit(attrs, &layout, &prefixes, i, unit, &read_unit)?;
            state_dirs.extend(mount_points::unit_directories(&content));
            if unit.name.ends_with(".socket") {
                for s in unit_file::host_programs(&String::from_utf8_lossy(&content)) {
                    tracing::warn!(
                        "{}: {}={}: systemd runs a socket's programs on the host, not in the image: it fails to start unless the host has that program (`check` refuses it); run it from the service",
                        unit.name, s.key, s.value
                    );
                }
            }
        }
        match layout.kind {
            None => {
                for dir in state_dirs {
                    plan.add_dir_with_parents(&dir, "mount point for a unit's StateDirectory=, CacheDirectory=, LogsDirectory= or ConfigurationDirectory=");
                }
            }
            // An extension reaches only /usr (or /etc): these mount points must be in the base.
            Some(_) => {
                for dir in state_dirs {
                    tracing::warn!(
                        "a unit of this extension needs the mount point /{dir}, which only its base image can hold"
                    );
                }
            }
        }

        plan.add_store_paths(attrs, &layout)?;
        for (i, file) in attrs.files.iter().enumerate() {
            plan.add_file(attrs, &layout, i, file, &read_unit)?;
        }
        for (i, link) in attrs.symlinks.iter().enumerate() {
            plan.add_symlink(&layout, i, &link.symlink, &link.object)?;
        }
        Ok(plan)
    }

    pub(crate) fn insert(
        &mut self,
        path: impl Into<Utf8PathBuf>,
        mode: u32,
        source: Source,
        what: &str,
    ) {
        self.entries.insert(
            path.into(),
            Entry {
                mode,
                source,
                what: what.to_owned(),
            },
        );
    }

    /// Inserts an entry and the directories it needs, named after it (`parent of ...`).
    fn insert_with_parents(&mut self, path: Utf8PathBuf, mode: u32, source: Source, what: &str) {
        if let Some(parent) = path.parent() {
            self.add_dir_with_parents(parent, &format!("parent of {what}"));
        }
        self.insert(path, mode, source, what);
    }

    pub(crate) fn add_dir_with_parents(&mut self, dir: &Utf8Path, what: &str) {
        for dir in dir.ancestors().filter(|d| !d.as_str().is_empty()) {
            if !self.entries.contains_key(dir) {
                self.insert(dir, DIR_MODE, Source::Directory, what);
            }
        }
    }

    fn add_unit(
        &mut self,
        attrs: &Attrs,
        layout: &Layout,
        prefixes: &[String],
        i: usize,
        unit: &Unit,
        read_unit: impl Fn(&Utf8Path) -> Result<Vec<u8>>,
    ) -> Result<Vec<u8>> {
        let attr = format!("units[{i}]");
        names::check_unit_name(prefixes, &attr, &unit.name)?;
        if let Some(base) = attrs.extension.as_ref().and_then(|e| e.base.as_ref()) {
            if base.units.contains(&unit.name) {
                bail!(
                    "attribute `{attr}.name` = {:?} is a unit of the base image too; portabled \
                     would attach the base's and ignore this one",
                    unit.name
                );
            }
        }
        names::check_store_file(attrs, &format!("{attr}.file"), &unit.file)?;
        let path = layout.units.join(&unit.name);
        if let Some(other) = self.entries.get(&path) {
            bail!(
                "attribute `{attr}.name` = {:?}: two units of one name ({} is there already)",
                unit.name,
                other.what
            );
        }
        let content = read_unit(&unit.file)
            .with_context(|| format!("attribute `{attr}.file` = {:?}", unit.file))?;
        if content.is_empty() {
            bail!(
                "attribute `{attr}.file` = {:?} is empty; portabled ignores empty unit files",
                unit.file
            );
        }
        self.insert(
            path,
            FILE_MODE,
            Source::Data(content.clone()),
            &format!("unit {} ({attr})", unit.name),
        );
        Ok(content)
    }
}
