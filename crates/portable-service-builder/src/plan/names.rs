//! The names an image is made of, checked as portablectl and Nix would take them: `pname` (the
//! image name), `version`, the unit prefixes, the unit names, and store files.

use crate::attrs::Attrs;
use crate::store_path;
use anyhow::{bail, Result};
use camino::Utf8Path;
use portable_service_rules::names::{is_image_name, unit_matches, UNIT_SUFFIXES};

/// Fails unless `file` (attribute `attr`) is a file in the Nix store.
pub(super) fn check_store_file(attrs: &Attrs, attr: &str, file: &Utf8Path) -> Result<()> {
    store_path::parse(&attrs.store_dir, file.as_str()).map_err(|why| {
        anyhow::anyhow!("attribute `{attr}` = {file:?} is not a file in the Nix store: {why}")
    })?;
    Ok(())
}

/// `storeDir` (Nix's own setting) is where the closure's paths live, and the image keeps them at
/// the same place below `usr/`: it must be an absolute path of at least one component, written
/// the way Nix writes it (no `.`, `..`, empty components or trailing `/`).
pub(super) fn check_store_dir(store_dir: &Utf8Path) -> Result<()> {
    let text = store_dir.as_str();
    let canonical = text.starts_with('/')
        && text
            .split('/')
            .skip(1)
            .all(|c| !c.is_empty() && c != "." && c != "..");
    if !canonical {
        bail!(
            "attribute `storeDir` = {text:?} must be an absolute path below the root, written \
             without `.`, `..`, `//` or a trailing `/`, such as \"/nix/store\""
        );
    }
    Ok(())
}

/// The prefixes the units must match: `portablePrefixes` (or the pname), each a valid image name.
pub(super) fn check_prefixes(attrs: &Attrs) -> Result<Vec<String>> {
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

/// `pname` becomes the image name; portablectl cuts the file name at the first `_` and accepts
/// only letters, digits, `-` and `.` in what remains.
pub(super) fn check_pname(pname: &str) -> Result<()> {
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
pub(super) fn check_version(version: &str) -> Result<()> {
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
pub(super) fn check_unit_name(prefixes: &[String], attr: &str, name: &str) -> Result<()> {
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
