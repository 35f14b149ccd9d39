//! The builder's input: the structured-attrs JSON file that `nix/portable-service.nix` writes.
//!
//! This module is the whole schema. Field names are the Nix attribute names, so a reader of the
//! Nix function and of this file sees one schema. Nix adds attributes of its own (`name`,
//! `system`, `builder`, ...); unknown attributes are ignored so that newer Nix versions keep working.
//!
//! ```json
//! {
//!   "outputs": { "out": "/nix/store/…-demo-img-1.0" },
//!   "storeDir": "/nix/store",
//!   "pname": "demo", "version": "1.0",
//!   "description": "Demo service" | null, "homepage": "https://…" | null,
//!   "units": [ { "name": "demo.service", "file": "/nix/store/…-demo.service" } ],
//!   "symlinks": [ { "symlink": "/etc/ssl", "object": "/nix/store/…-cacert/etc/ssl" } ],
//!   "contents": [ "/nix/store/…-hello-2.12" ],
//!   "mksquashfs": "/nix/store/…-squashfs-tools/bin/mksquashfs",
//!   "squash-compression": "xz -Xdict-size 100%",
//!   "squash-block-size": "1M",
//!   "verity": false,
//!   "format": "squashfs" | "ddi", "system": "x86_64-linux", "hostSystem": "aarch64-linux",
//!   "portablePrefixes": [ "demo" ],
//!   "osRelease": { "VARIANT_ID": "prod" }, "osReleaseOverrides": { "ID": "acme" },
//!   "files": [ { "path": "/etc/demo/config", "file": "/nix/store/…-config" } ],
//!   "extension": null | { "kind": "sysext" | "confext",
//!                         "base": null | { "osRelease": { "ID": "nixos", … }, "units": [ "demo.service" ] } },
//!   "closure": [ { "path": "/nix/store/…", "references": [ "/nix/store/…" ], … } ],
//!   "baseClosure": [ … ]
//! }
//! ```
//!
//! `closure` is what `exportReferencesGraph.closure` produces: one object per store path of the
//! closure of every unit file, `contents` entry, file and symlink object. Only `path` and
//! `references` are read; the other fields (`narHash`, `narSize`, `valid`, `ca`, ...) differ
//! between Nix versions. `baseClosure` is the closure of an extension's base image: the store paths
//! the extension leaves out because the base has them.

use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use portable_service_rules::ddi::{self, Architecture};
use serde::Deserialize;
use std::collections::BTreeMap;

/// The attributes the builder reads.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attrs {
    pub outputs: BTreeMap<String, Utf8PathBuf>,
    pub store_dir: Utf8PathBuf,
    pub pname: String,
    pub version: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub homepage: Option<String>,
    pub units: Vec<Unit>,
    #[serde(default)]
    pub symlinks: Vec<Symlink>,
    #[serde(default)]
    pub contents: Vec<Utf8PathBuf>,
    pub mksquashfs: Utf8PathBuf,
    #[serde(rename = "squash-compression")]
    pub squash_compression: String,
    #[serde(rename = "squash-block-size")]
    pub squash_block_size: String,
    /// Whether the image gets a dm-verity hash tree and root hash beside it.
    #[serde(default)]
    pub verity: bool,
    /// `squashfs`: the file system alone; `ddi`: a Discoverable Disk Image, the file system and
    /// its hash tree as partitions of one GPT disk.
    #[serde(default)]
    pub format: Format,
    /// Nix's own attribute: the system the derivation runs on.
    #[serde(default)]
    pub system: String,
    /// The system the image's programs are for (the function's `hostSystem`, which is `system`
    /// unless cross-building), which a DDI's partition types name.
    #[serde(default)]
    pub host_system: Option<String>,
    pub closure: Vec<ClosureEntry>,
    /// The unit prefixes of `PORTABLE_PREFIXES`; absent: the pname alone.
    #[serde(default)]
    pub portable_prefixes: Option<Vec<String>>,
    /// More os-release (or extension-release) fields, none of them one the image owns.
    #[serde(default)]
    pub os_release: BTreeMap<String, String>,
    /// Replacements for fields the image owns (`ID`, `IMAGE_VERSION`, ...).
    #[serde(default)]
    pub os_release_overrides: BTreeMap<String, String>,
    /// Single files put at a path of the image.
    #[serde(default)]
    pub files: Vec<File>,
    /// Set for an extension image; absent for a portable service image.
    #[serde(default)]
    pub extension: Option<Extension>,
    #[serde(default)]
    pub base_closure: Vec<ClosureEntry>,
    /// Parts (`<part output>/part.raw`) holding some of the image's store paths, compressed
    /// already ([`crate::parts`]).
    #[serde(default)]
    pub parts: Vec<Utf8PathBuf>,
}

/// What `$out/NAME.raw` is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Squashfs,
    Ddi,
}

/// A file of the image: `file` (a store file) copied to `path`.
#[derive(Debug, Clone, Deserialize)]
pub struct File {
    pub path: String,
    pub file: Utf8PathBuf,
}

/// What an extension image is and what it extends.
#[derive(Debug, Clone, Deserialize)]
pub struct Extension {
    pub kind: ExtensionKind,
    #[serde(default)]
    pub base: Option<Base>,
}

pub use portable_service_rules::extension::ExtensionKind;

/// What an extension needs to know of its base image.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Base {
    /// The base's os-release fields (those an extension-release file must match).
    #[serde(default)]
    pub os_release: BTreeMap<String, String>,
    /// The base's unit names.
    #[serde(default)]
    pub units: Vec<String>,
}

/// One unit file: its name inside the image and the store file holding it.
#[derive(Debug, Clone, Deserialize)]
pub struct Unit {
    pub name: String,
    pub file: Utf8PathBuf,
}

/// A symlink inside the image (`symlink`, relative to the image root) pointing to `object`.
#[derive(Debug, Clone, Deserialize)]
pub struct Symlink {
    pub symlink: String,
    pub object: Utf8PathBuf,
}

/// One store path of the closure, as `exportReferencesGraph` writes it.
#[derive(Debug, Clone, Deserialize)]
pub struct ClosureEntry {
    pub path: Utf8PathBuf,
    #[serde(default)]
    pub references: Vec<Utf8PathBuf>,
}

impl Attrs {
    /// Parses the attrs JSON; a wrong or missing attribute is named by its path (`units[1].name`).
    pub fn from_json(text: &str) -> Result<Attrs> {
        let de = &mut serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let why = e.into_inner().to_string();
            // A missing top-level attribute is reported at the root; name it instead.
            let missing = why
                .strip_prefix("missing field `")
                .and_then(|rest| rest.split_once('`'))
                .map(|(name, _)| name);
            match (path.as_str(), missing) {
                (".", Some(name)) => anyhow::anyhow!("attribute `{name}`: {why}"),
                (".", None) => {
                    anyhow::anyhow!("the structured attrs are not an attribute set: {why}")
                }
                _ => anyhow::anyhow!("attribute `{path}`: {why}"),
            }
        })
    }

    /// Reads and parses the attrs file at `path`.
    pub fn read(path: &Utf8Path) -> Result<Attrs> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the structured attrs file {path}"))?;
        Attrs::from_json(&text).with_context(|| format!("invalid structured attrs file {path}"))
    }

    /// The output path (`outputs.out`); Nix gives a structured-attrs builder no `$out`.
    pub fn out(&self) -> Result<&Utf8Path> {
        self.outputs
            .get("out")
            .map(Utf8PathBuf::as_path)
            .context("attribute `outputs.out` is missing: the derivation needs an `out` output")
    }

    /// The image file name portabled expects: `<pname>_<version>.raw`, and for an extension
    /// `<pname>.raw`, the name its extension-release file carries (systemd 252 refuses a
    /// versioned extension name; 257 accepts it too).
    pub fn image_file_name(&self) -> String {
        match self.extension {
            None => format!("{}_{}.raw", self.pname, self.version),
            Some(_) => format!("{}.raw", self.pname),
        }
    }

    /// A DDI's architecture, from `system`; `None` for a naked image.
    pub fn disk_architecture(&self) -> Result<Option<&'static Architecture>> {
        if self.format == Format::Squashfs {
            return Ok(None);
        }
        let system = self.host_system.as_deref().unwrap_or(&self.system);
        match ddi::architecture_of_system(system) {
            Some(arch) => Ok(Some(arch)),
            None => anyhow::bail!(
                "attribute `system` = {:?} has no partition types in the Discoverable Partitions \
                 Specification, so format = \"ddi\" can't be built for it (systems: {})",
                system,
                ddi::ARCHITECTURES
                    .iter()
                    .map(|a| a.nix_system)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// The prefixes of the image's units: `portablePrefixes`, or the pname.
    pub fn prefixes(&self) -> Vec<String> {
        self.portable_prefixes
            .clone()
            .unwrap_or_else(|| vec![self.pname.clone()])
    }
}

/// Where Nix put the attrs file. `NIX_ATTRS_JSON_FILE` names the host path on Nix 2.4 to 2.14 even
/// inside the sandbox, so it is only trusted when that file exists.
pub fn locate(
    attrs_json_file: Option<&str>,
    build_top: Option<&str>,
    exists: impl Fn(&Utf8Path) -> bool,
) -> Result<Utf8PathBuf> {
    if let Some(file) = attrs_json_file.map(Utf8Path::new) {
        if exists(file) {
            return Ok(file.to_owned());
        }
    }
    let top = build_top.context(
        "cannot find the structured attrs file: neither NIX_ATTRS_JSON_FILE names an existing file \
         nor is NIX_BUILD_TOP set (is `__structuredAttrs = true` set on the derivation?)",
    )?;
    let file = Utf8Path::new(top).join(".attrs.json");
    if !exists(&file) {
        anyhow::bail!(
            "cannot find the structured attrs file {file} (is `__structuredAttrs = true` set on the derivation?)"
        );
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = include_str!("../tests/fixtures/nix-2.8.attrs.json");

    #[test]
    fn reads_the_attrs_file_nix_2_8_wrote() {
        let attrs = Attrs::from_json(FIXTURE).unwrap();
        assert_eq!(attrs.pname, "demo");
        assert!(attrs.out().unwrap().as_str().starts_with("/nix/store/"));
        assert!(!attrs.closure.is_empty());
        for unit in &attrs.units {
            assert!(
                attrs.closure.iter().any(|c| c.path == unit.file),
                "{unit:?} is in the exported closure"
            );
        }
    }

    #[test]
    fn a_mistyped_attribute_is_named_with_its_path() {
        let mut value: serde_json::Value = serde_json::from_str(FIXTURE).unwrap();
        value["units"][0]["name"] = serde_json::json!(7);
        let err = Attrs::from_json(&value.to_string())
            .unwrap_err()
            .to_string();
        assert!(err.contains("units[0].name"), "{err}");
        assert!(err.contains("integer `7`"), "{err}");
    }

    #[test]
    fn a_missing_attribute_is_named() {
        let mut value: serde_json::Value = serde_json::from_str(FIXTURE).unwrap();
        value.as_object_mut().unwrap().remove("mksquashfs");
        let err = Attrs::from_json(&value.to_string())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("attribute `mksquashfs`: missing field `mksquashfs`"),
            "{err}"
        );
        let err = Attrs::from_json("7").unwrap_err().to_string();
        assert!(
            err.starts_with("the structured attrs are not an attribute set"),
            "{err}"
        );
    }

    #[test]
    fn the_wrong_attrs_path_nix_gives_inside_the_sandbox_is_not_used() {
        let found = locate(Some("/tmp/host/.attrs.json"), Some("/build"), |p| {
            p == "/build/.attrs.json"
        })
        .unwrap();
        assert_eq!(found, "/build/.attrs.json");
        let found = locate(Some("/tmp/host/.attrs.json"), Some("/build"), |_| true).unwrap();
        assert_eq!(found, "/tmp/host/.attrs.json");
        assert!(locate(None, None, |_| true).is_err());
    }
}
