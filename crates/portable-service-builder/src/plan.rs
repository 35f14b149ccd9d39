//! The image plan: every entry of the image root (path, kind, mode, source), built from the attrs
//! and checked before anything is written.
//!
//! Every rule about what a portable image holds lives here: the os-release file, the unit files,
//! the mount points systemd needs on a read-only image, the user's symlinks and the closure.
//! The plan is plain data; `tar_stream` only writes it, so that a wrong input fails here, before
//! mksquashfs starts and before any output exists.

use crate::attrs::{Attrs, ExtensionKind, Unit};
use crate::os_release;
use crate::store_path;
use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use std::collections::{BTreeMap, BTreeSet};

/// Unit types portabled attaches; it silently skips every other file.
pub const UNIT_SUFFIXES: [&str; 5] = [".service", ".socket", ".target", ".timer", ".path"];

/// Mount points systemd needs in a read-only image (it can't create them): API file systems and
/// the writable places a service's namespace binds in.
const MOUNT_POINT_DIRS: [&str; 9] = [
    "dev",
    "proc",
    "sys",
    "run",
    "tmp",
    "var/tmp",
    "var/lib",
    "var/cache",
    "var/log",
];
pub const MOUNT_POINT_FILES: [&str; 2] = ["etc/machine-id", "etc/resolv.conf"];
/// Places systemd mounts over at run time: anything put below them would be hidden, and a
/// read-only image without one of them fails its units with 226/NAMESPACE (seen on 252).
pub const HIDDEN_BELOW: [&str; 6] = ["dev", "proc", "sys", "run", "tmp", "var/tmp"];

/// Unit settings whose directory systemd binds into the service from the host, so the image must
/// hold the mount point.
pub const UNIT_DIRECTORY_SETTINGS: [(&str, &str); 3] = [
    ("StateDirectory", "var/lib"),
    ("CacheDirectory", "var/cache"),
    ("LogsDirectory", "var/log"),
];

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
        check_pname(&attrs.pname)?;
        check_version(&attrs.version)?;
        let prefixes = check_prefixes(attrs)?;
        let layout = Layout::of(attrs);
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
            state_dirs.extend(unit_directories(&content));
        }
        match layout.kind {
            None => {
                for dir in state_dirs {
                    plan.add_dir_with_parents(&dir, "mount point for a unit's state directory");
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

    fn insert(&mut self, path: impl Into<Utf8PathBuf>, mode: u32, source: Source, what: &str) {
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

    fn add_dir_with_parents(&mut self, dir: &Utf8Path, what: &str) {
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
        check_unit_name(prefixes, &attr, &unit.name)?;
        if let Some(base) = attrs.extension.as_ref().and_then(|e| e.base.as_ref()) {
            if base.units.contains(&unit.name) {
                bail!(
                    "attribute `{attr}.name` = {:?} is a unit of the base image too; portabled \
                     would attach the base's and ignore this one",
                    unit.name
                );
            }
        }
        check_store_file(attrs, &format!("{attr}.file"), &unit.file)?;
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

    fn add_file(
        &mut self,
        attrs: &Attrs,
        layout: &Layout,
        i: usize,
        file: &crate::attrs::File,
        read: impl Fn(&Utf8Path) -> Result<Vec<u8>>,
    ) -> Result<()> {
        let attr = format!("files[{i}].path");
        let path = self.free_path(layout, &attr, &file.path)?;
        check_store_file(attrs, &format!("files[{i}].file"), &file.file)?;
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

    fn add_store_paths(&mut self, attrs: &Attrs, layout: &Layout) -> Result<()> {
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

    fn add_symlink(
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
        if let Some(store) = &layout.store {
            if path.starts_with(store) {
                bail!("attribute `{attr}` = {given:?} is inside the store directory, which holds the closure");
            }
        }
        Ok(path)
    }
}

/// Where an image's parts go, by kind.
struct Layout {
    /// `None` for a portable service image.
    kind: Option<ExtensionKind>,
    /// The os-release or extension-release file.
    release: Utf8PathBuf,
    /// Where portabled finds the units.
    units: Utf8PathBuf,
    /// Where the closure goes; `None` where it can't go (a configuration extension).
    store: Option<Utf8PathBuf>,
    /// For an extension, the one tree systemd overlays it on.
    visible_below: Option<&'static str>,
}

impl Layout {
    fn of(attrs: &Attrs) -> Layout {
        // The store below usr/: systemd overlays system extensions on /usr, so an extension's
        // store paths join the base's there; a portable image's /nix is a symlink into it.
        let store = Utf8Path::new("usr").join(attrs.store_dir.as_str().trim_start_matches('/'));
        let release_file = |kind: ExtensionKind| {
            Utf8Path::new(kind.release_dir()).join(format!("extension-release.{}", attrs.pname))
        };
        match attrs.extension.as_ref().map(|e| e.kind) {
            None => Layout {
                kind: None,
                release: "etc/os-release".into(),
                units: "etc/systemd/system".into(),
                store: Some(store),
                visible_below: None,
            },
            Some(kind @ ExtensionKind::Sysext) => Layout {
                kind: Some(kind),
                release: release_file(kind),
                units: "usr/lib/systemd/system".into(),
                store: Some(store),
                visible_below: Some(kind.overlaid_on()),
            },
            // The units go where portabled writes ExtensionImages= for them: a unit of the
            // confext itself (systemd 257, seen here).
            Some(kind @ ExtensionKind::Confext) => Layout {
                kind: Some(kind),
                release: release_file(kind),
                units: "etc/systemd/system".into(),
                store: None,
                visible_below: Some(kind.overlaid_on()),
            },
        }
    }
}

impl ExtensionKind {
    /// Where an extension of this kind keeps its extension-release file.
    pub fn release_dir(self) -> &'static str {
        match self {
            ExtensionKind::Sysext => "usr/lib/extension-release.d",
            ExtensionKind::Confext => "etc/extension-release.d",
        }
    }

    /// The one tree systemd overlays an extension of this kind on.
    pub fn overlaid_on(self) -> &'static str {
        match self {
            ExtensionKind::Sysext => "usr",
            ExtensionKind::Confext => "etc",
        }
    }
}

/// Fails unless `file` (attribute `attr`) is a file in the Nix store.
fn check_store_file(attrs: &Attrs, attr: &str, file: &Utf8Path) -> Result<()> {
    store_path::parse(&attrs.store_dir, file.as_str()).map_err(|why| {
        anyhow::anyhow!("attribute `{attr}` = {file:?} is not a file in the Nix store: {why}")
    })?;
    Ok(())
}

/// The prefixes the units must match: `portablePrefixes` (or the pname), each a valid image name.
fn check_prefixes(attrs: &Attrs) -> Result<Vec<String>> {
    let prefixes = attrs.prefixes();
    if prefixes.is_empty() {
        bail!("attribute `portablePrefixes` is empty: portabled attaches units by their prefix");
    }
    for (i, p) in prefixes.iter().enumerate() {
        if !is_image_name(p) {
            bail!(
                "attribute `portablePrefixes[{i}]` = {p:?} must be non-empty and hold only \
                 letters, digits, `-` and `.`, like an image name"
            );
        }
    }
    Ok(prefixes)
}

fn is_image_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

/// `pname` becomes the image name; portablectl cuts the file name at the first `_` and accepts
/// only letters, digits, `-` and `.` in what remains.
fn check_pname(pname: &str) -> Result<()> {
    if !is_image_name(pname) {
        bail!(
            "attribute `pname` = {pname:?} must be non-empty and hold only letters, digits, `-` and `.`: \
             portablectl takes the image name from the file name up to the first `_`"
        );
    }
    Ok(())
}

/// `version` is part of the image's file name and of the derivation's store name, so it takes
/// only the characters a store name may hold (and no `/`).
fn check_version(version: &str) -> Result<()> {
    let store_name_char = |c: char| c.is_ascii_alphanumeric() || "+-._?=".contains(c);
    if version.is_empty() || !version.chars().all(store_name_char) {
        bail!(
            "attribute `version` = {version:?} must be a non-empty string of letters, digits and \
             `+-._?=`: it is part of the image's file name and of the store name"
        );
    }
    Ok(())
}

/// portabled attaches a unit only when its name is a prefix followed by `-`, `.` or `@`, or the
/// prefix plus the unit suffix, and only for the unit types it knows.
pub fn check_unit_name(prefixes: &[String], attr: &str, name: &str) -> Result<()> {
    let Some(suffix) = UNIT_SUFFIXES.iter().find(|s| name.ends_with(*s)) else {
        bail!(
            "attribute `{attr}.name` = {name:?}: portabled only attaches units ending in {}",
            UNIT_SUFFIXES.join(" ")
        );
    };
    if !prefixes.iter().any(|p| unit_matches(p, name)) || name.contains('/') {
        let named: Vec<String> = prefixes
            .iter()
            .map(|p| format!("`{p}{suffix}` or starting with `{p}-`, `{p}.` or `{p}@`"))
            .collect();
        bail!(
            "attribute `{attr}.name` = {name:?}: portabled only attaches units named {}",
            named.join("; or ")
        );
    }
    Ok(())
}

/// portabled's match of a unit name against one prefix (`unit_match()` in systemd's
/// portable.c): the prefix followed by `.`, `-` or `@`, for a unit type it attaches.
pub fn unit_matches(prefix: &str, name: &str) -> bool {
    UNIT_SUFFIXES.iter().any(|s| name.ends_with(s))
        && name
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with(['-', '.', '@']))
}

/// Makes `link` a path relative to the image root, or says why it can't be one.
fn normalise_image_path(link: &str) -> Result<Utf8PathBuf, &'static str> {
    let mut path = Utf8PathBuf::new();
    for component in link.split('/') {
        match component {
            "" | "." => {}
            ".." => return Err("leaves the image root (`..`)"),
            c => path.push(c),
        }
    }
    if path.as_str().is_empty() {
        return Err("is the image root itself");
    }
    Ok(path)
}

/// The mount points a unit's `StateDirectory=`, `CacheDirectory=` and `LogsDirectory=` need.
/// Names with specifiers (`%i`) are only known when the unit starts, so they are left to the user.
pub fn unit_directories(content: &[u8]) -> Vec<Utf8PathBuf> {
    let text = String::from_utf8_lossy(content);
    let mut dirs = Vec::new();
    for (key, values) in text.lines().filter_map(|l| l.split_once('=')) {
        for (setting, base) in UNIT_DIRECTORY_SETTINGS {
            if key.trim() != setting {
                continue;
            }
            for value in values.split_whitespace() {
                let name = value.split(':').next().unwrap_or_default();
                if name.contains('%') {
                    tracing::warn!(
                        "{setting}={name}: a name with specifiers gets no mount point in the image"
                    );
                    continue;
                }
                if let Ok(rel) = normalise_image_path(name) {
                    dirs.push(Utf8Path::new(base).join(rel));
                }
            }
        }
    }
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attrs::{ClosureEntry, Symlink};

    const H: &str = "0c7wkdmgpqnch9f84clfdjqxn7hznv2z";

    fn sp(name: &str) -> Utf8PathBuf {
        format!("/nix/store/{H}-{name}").into()
    }

    fn attrs() -> Attrs {
        Attrs {
            outputs: [("out".to_owned(), sp("demo-img-1.0"))].into(),
            store_dir: "/nix/store".into(),
            pname: "demo".into(),
            version: "1.0".into(),
            description: Some("Demo".into()),
            homepage: None,
            units: vec![Unit {
                name: "demo.service".into(),
                file: sp("demo.service"),
            }],
            symlinks: vec![],
            contents: vec![sp("busybox")],
            mksquashfs: sp("squashfs-tools").join("bin/mksquashfs"),
            squash_compression: "xz".into(),
            squash_block_size: "1M".into(),
            closure: ["demo.service", "busybox", "cacert"]
                .map(|n| ClosureEntry {
                    path: sp(n),
                    references: vec![],
                })
                .to_vec(),
            ..Attrs::default()
        }
    }

    fn unit_text(_: &Utf8Path) -> Result<Vec<u8>> {
        Ok(b"[Service]\nExecStart=/bin/true\n".to_vec())
    }

    fn plan(a: &Attrs) -> Result<Plan> {
        Plan::new(a, unit_text)
    }

    fn err(a: &Attrs) -> String {
        format!("{:#}", plan(a).unwrap_err())
    }

    fn with_link(symlink: &str) -> Attrs {
        let mut a = attrs();
        a.symlinks.push(Symlink {
            symlink: symlink.into(),
            object: sp("cacert").join("etc/ssl"),
        });
        a
    }

    #[test]
    fn lays_out_every_entry_of_the_root() {
        let p = plan(&attrs()).unwrap();
        let listing: Vec<String> = p
            .entries
            .iter()
            .map(|(path, e)| {
                let kind = match &e.source {
                    Source::Directory => "dir".to_owned(),
                    Source::Data(d) => format!("data {} bytes", d.len()),
                    Source::Symlink(t) => format!("-> {t}"),
                    Source::StorePath(s) => format!("store {s}"),
                };
                format!("{path} {:o} {kind}", e.mode)
            })
            .collect();
        let store = format!("/nix/store/{H}");
        let expected = [
            "dev 755 dir".to_owned(),
            "etc 755 dir".into(),
            "etc/machine-id 644 data 0 bytes".into(),
            "etc/os-release 644 data 144 bytes".into(),
            "etc/resolv.conf 644 data 0 bytes".into(),
            "etc/systemd 755 dir".into(),
            "etc/systemd/system 755 dir".into(),
            "etc/systemd/system/demo.service 644 data 30 bytes".into(),
            "nix 777 -> usr/nix".into(),
            "proc 755 dir".into(),
            "run 755 dir".into(),
            "sys 755 dir".into(),
            "tmp 755 dir".into(),
            "usr 755 dir".into(),
            "usr/nix 755 dir".into(),
            "usr/nix/store 755 dir".into(),
            format!("usr/nix/store/{H}-busybox 0 store {store}-busybox"),
            format!("usr/nix/store/{H}-cacert 0 store {store}-cacert"),
            format!("usr/nix/store/{H}-demo.service 0 store {store}-demo.service"),
            "var 755 dir".into(),
            "var/cache 755 dir".into(),
            "var/lib 755 dir".into(),
            "var/log 755 dir".into(),
            "var/tmp 755 dir".into(),
        ];
        assert_eq!(listing, expected);
    }

    #[test]
    fn symlinks_get_their_parents_and_point_to_the_object() {
        let p = plan(&with_link("/usr/share/ca/ssl")).unwrap();
        assert_eq!(
            p.entries[Utf8Path::new("usr/share/ca/ssl")].source,
            Source::Symlink(sp("cacert").join("etc/ssl"))
        );
        for parent in ["usr", "usr/share", "usr/share/ca"] {
            assert_eq!(
                p.entries[Utf8Path::new(parent)].source,
                Source::Directory,
                "{parent}"
            );
            assert_eq!(p.entries[Utf8Path::new(parent)].mode, 0o755);
        }
        // the manual's form, and a relative one, land at the same place
        assert!(plan(&with_link("etc/ssl"))
            .unwrap()
            .entries
            .contains_key(Utf8Path::new("etc/ssl")));
    }

    #[test]
    fn symlinks_may_not_leave_the_root_or_land_on_other_entries() {
        let cases = [
            ("/../etc/ssl", "leaves the image root"),
            ("/", "is the image root itself"),
            ("/etc/os-release", "collides with /etc/os-release"),
            ("/etc/resolv.conf", "which is mount point"),
            ("/etc/systemd/system/demo.service", "unit demo.service"),
            ("/var/lib", "collides with /var/lib"),
            ("/etc", "collides with /etc"),
            ("/etc/os-release/x", "inside /etc/os-release"),
            ("/nix/store/x", "inside /nix, which is the store's symlink"),
            ("/usr/nix/store/x", "inside the store directory"),
            ("/run/x", "below /run"),
        ];
        for (link, why) in cases {
            let e = err(&with_link(link));
            assert!(e.contains(why), "{link}: {e}");
            assert!(e.contains("symlinks[0].symlink"), "{link}: {e}");
        }
        let mut a = with_link("/etc/ssl");
        a.symlinks.push(Symlink {
            symlink: "/etc/ssl/certs".into(),
            object: sp("cacert"),
        });
        let e = err(&a);
        assert!(
            e.contains("symlinks[1].symlink") && e.contains("symlink /etc/ssl (symlinks[0]"),
            "{e}"
        );
        let mut a = with_link("/etc/ssl");
        a.symlinks.push(a.symlinks[0].clone());
        assert!(err(&a).contains("collides with /etc/ssl"));
    }

    #[test]
    fn unit_names_must_be_attachable() {
        for (name, why) in [
            ("demonstration.service", "starting with `demo-`"),
            ("other.service", "named `demo.service`"),
            ("demo.conf", "only attaches units ending in"),
            ("demo.mount", "only attaches units ending in"),
            ("demo-x/y.service", "starting with"),
        ] {
            let mut a = attrs();
            a.units[0].name = name.into();
            let e = err(&a);
            assert!(e.contains("units[0].name") && e.contains(name), "{e}");
            assert!(e.contains(why), "{name}: {e}");
        }
        for name in [
            "demo.service",
            "demo@.service",
            "demo-web.socket",
            "demo.x.timer",
        ] {
            let mut a = attrs();
            a.units[0].name = name.into();
            plan(&a).unwrap();
        }
    }

    #[test]
    fn a_store_directory_below_a_directory_of_the_image_is_refused() {
        let mut a = attrs();
        let tmp_store = |n: &str| Utf8PathBuf::from(format!("/tmp/store/{H}-{n}"));
        a.store_dir = "/tmp/store".into();
        a.units[0].file = tmp_store("demo.service");
        a.contents = vec![tmp_store("busybox")];
        for c in a.closure.iter_mut() {
            c.path = tmp_store(c.path.file_name().unwrap().split_once('-').unwrap().1);
        }
        let e = err(&a);
        assert!(
            e.contains("attribute `storeDir` = \"/tmp/store\"")
                && e.contains("/tmp is mount point"),
            "{e}"
        );
    }

    fn extension(kind: ExtensionKind, base_units: &[&str]) -> Attrs {
        let mut a = attrs();
        a.extension = Some(crate::attrs::Extension {
            kind,
            base: Some(crate::attrs::Base {
                os_release: [("ID".to_owned(), "acme".to_owned())].into(),
                units: base_units.iter().map(|u| u.to_string()).collect(),
            }),
        });
        a.base_closure = vec![ClosureEntry {
            path: sp("busybox"),
            references: vec![],
        }];
        a
    }

    fn paths(p: &Plan) -> Vec<&str> {
        p.entries.keys().map(|k| k.as_str()).collect()
    }

    #[test]
    fn a_system_extension_lies_below_usr_without_the_base_store_paths() {
        let p = plan(&extension(ExtensionKind::Sysext, &["demo-base.service"])).unwrap();
        let store = format!("usr/nix/store/{H}");
        assert_eq!(
            paths(&p),
            [
                "usr",
                "usr/lib",
                "usr/lib/extension-release.d",
                "usr/lib/extension-release.d/extension-release.demo",
                "usr/lib/systemd",
                "usr/lib/systemd/system",
                "usr/lib/systemd/system/demo.service",
                "usr/nix",
                "usr/nix/store",
                &format!("{store}-cacert"),
                &format!("{store}-demo.service"),
            ]
        );
        let Source::Data(release) =
            &p.entries[Utf8Path::new("usr/lib/extension-release.d/extension-release.demo")].source
        else {
            panic!("the release file is data")
        };
        assert!(
            release.starts_with(b"ID=acme\nSYSEXT_SCOPE=portable\nPORTABLE_PREFIXES=demo\n"),
            "{}",
            String::from_utf8_lossy(release)
        );
    }

    #[test]
    fn an_extension_unit_the_base_has_is_refused() {
        let e = err(&extension(ExtensionKind::Sysext, &["demo.service"]));
        assert!(
            e.contains("`units[0].name` = \"demo.service\" is a unit of the base image too"),
            "{e}"
        );
    }

    #[test]
    fn a_configuration_extension_carries_no_store_paths() {
        // its unit's own store file is copied; cacert is in neither the base nor the image
        let e = err(&extension(ExtensionKind::Confext, &[]));
        assert!(
            e.contains("attribute `base`: a configuration extension can't carry store paths")
                && e.contains(&format!("{H}-cacert")),
            "{e}"
        );
        let mut a = extension(ExtensionKind::Confext, &[]);
        a.closure.retain(|c| !c.path.as_str().ends_with("cacert"));
        let p = plan(&a).unwrap();
        assert!(p.store_paths.is_empty());
        assert!(
            paths(&p).iter().all(|path| path.starts_with("etc")),
            "{:?}",
            paths(&p)
        );
    }

    #[test]
    fn two_units_of_one_name_are_an_error() {
        let mut a = attrs();
        a.units.push(a.units[0].clone());
        let e = err(&a);
        assert!(
            e.contains("units[1].name") && e.contains("two units of one name"),
            "{e}"
        );
    }

    #[test]
    fn bad_pname_version_and_store_paths_are_named() {
        let mut a = attrs();
        a.pname = "my_demo".into();
        assert!(err(&a).contains("attribute `pname` = \"my_demo\""));
        let mut a = attrs();
        a.version = "1/2".into();
        assert!(err(&a).contains("attribute `version` = \"1/2\""));
        let mut a = attrs();
        a.units.clear();
        assert!(err(&a).contains("attribute `units` is empty"));
        let mut a = attrs();
        a.units[0].file = "/etc/demo.service".into();
        let e = err(&a);
        assert!(e.contains("`units[0].file` = \"/etc/demo.service\""), "{e}");
        let mut a = attrs();
        a.contents.push(sp("not-exported"));
        let e = err(&a);
        assert!(
            e.contains("contents[1]") && e.contains("not in `closure`"),
            "{e}"
        );
        let mut a = attrs();
        a.closure[0].path = "/nix/store/short".into();
        assert!(err(&a).contains("closure[0].path"));
    }

    #[test]
    fn a_unit_that_cannot_be_read_or_is_empty_is_named() {
        let e = format!(
            "{:#}",
            Plan::new(&attrs(), |_| anyhow::bail!(
                "is a directory, not a regular file"
            ))
            .unwrap_err()
        );
        assert!(
            e.contains("units[0].file") && e.contains("not a regular file"),
            "{e}"
        );
        let e = format!("{:#}", Plan::new(&attrs(), |_| Ok(vec![])).unwrap_err());
        assert!(e.contains("is empty"), "{e}");
    }

    #[test]
    fn state_directories_get_mount_points() {
        let p = Plan::new(&attrs(), |_| {
            Ok(b"[Service]\nStateDirectory=demo demo/sub:alias\n CacheDirectory = x\nLogsDirectory=demo-log\nStateDirectory=%i\n".to_vec())
        })
        .unwrap();
        for dir in [
            "var/lib/demo",
            "var/lib/demo/sub",
            "var/cache/x",
            "var/log/demo-log",
        ] {
            assert_eq!(
                p.entries[Utf8Path::new(dir)].source,
                Source::Directory,
                "{dir}"
            );
        }
        assert!(!p.entries.keys().any(|k| k.as_str().contains('%')));
    }
}
