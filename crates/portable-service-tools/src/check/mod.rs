//! `portable-service check`: what systemd-portabled and systemd-dissect will say about an
//! image (and its extensions), known at build time without systemd and without root.
//!
//! This room owns portabled's side of the rules, read from systemd's src/portable/portable.c and
//! measured on systemd 252, 254, 257 and 262 in VMs (tests/tests/acceptance): where it looks for
//! os-release and units, which units it attaches for which matches, how it matches an extension's
//! release file against the base. The rules an image must follow to run (unit types and names,
//! mount points, state directories) are the build's own, from `portable_service_rules`, which
//! also reads the release files. [`tree`] reads images; [`policy`] judges them by an image
//! policy (`--image-policy`); [`report`] says the result.

mod disk;
mod extensions;
mod mount_points;
pub mod policy;
mod programs;
pub mod report;
pub mod squashfs;
mod store_holes;
pub mod tree;
mod units;
mod verity;
mod versions;

use versions::READS_PORTABLE_PREFIXES;
pub use versions::{
    rules_of, ATTACHES_EXTENSIONS, NAMES_USES, NEWEST, OLDEST, PRIVATE_DEVICES_IN_THE_IMAGE,
    PROFILES_SERVICES_ONLY, SYSTEMD_VERSIONS, WAITS_FOR_UDEV,
};

use portable_service_rules::names::is_image_name;
use portable_service_rules::os_release;
use report::{Finding, Report};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tree::{Image, View};

/// What to check.
pub struct Options {
    /// Matches to attach with; empty: the image's name, as portablectl takes it.
    pub prefixes: Vec<String>,
    /// Whose rules decide the verdict (see [`SYSTEMD_VERSIONS`]).
    pub systemd: u32,
    pub store_dir: PathBuf,
    /// The certificates the hosts trust for root hash signatures (their `/etc/verity.d/`);
    /// empty: signatures are not checked.
    pub certs: Vec<crate::signing::Cert>,
    /// The images are signed after this check (`sign`, outside the store): a hash tree
    /// without a signature is not refused for it.
    pub signed_later: bool,
    /// The host's architecture as systemd names it (`x86-64`, `arm64`), which an extension's
    /// `ARCHITECTURE=` must match.
    pub architecture: String,
    /// The profile the images are attached with (`portablectl attach --profile`): one of
    /// [`PROFILES`].
    pub profile: String,
    /// The policy the images must meet (`--image-policy`), judged by [`policy`].
    pub image_policy: Option<portable_service_rules::image_policy::ImagePolicy>,
}

/// The profiles systemd ships, the ones `check` knows the settings of; `default` is
/// portablectl's own default.
pub const PROFILES: [&str; 4] = ["default", "nonetwork", "strict", "trusted"];

/// This machine's architecture as systemd names it (its `architecture_to_string()`).
pub fn this_architecture() -> String {
    match std::env::consts::ARCH {
        "x86_64" => "x86-64",
        "aarch64" => "arm64",
        "x86" => "x86",
        "arm" => "arm",
        "riscv64" => "riscv64",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64-le",
        "powerpc64" => "ppc64",
        "s390x" => "s390x",
        "loongarch64" => "loongarch64",
        other => other,
    }
    .to_owned()
}

impl Default for Options {
    fn default() -> Options {
        Options {
            prefixes: Vec::new(),
            systemd: NEWEST,
            store_dir: PathBuf::from("/nix/store"),
            certs: Vec::new(),
            signed_later: false,
            architecture: this_architecture(),
            profile: "default".to_owned(),
            image_policy: None,
        }
    }
}

/// The image's name as portablectl takes it: the file name up to the first `_` (or `.raw`).
fn prefix_of(name: &str) -> &str {
    name.split('_').next().unwrap_or(name)
}

/// A read's error passed on when it says the image can't be judged ([`tree::TooLarge`]);
/// any other is the file's absence or kind, which the rules judge.
fn unjudgeable(e: anyhow::Error) -> anyhow::Result<anyhow::Error> {
    if e.is::<tree::TooLarge>() {
        Err(e)
    } else {
        Ok(e)
    }
}

/// Checks `base` with `extensions` layered on it: the report, or an error when a file that
/// decides the verdict is too large to read.
pub fn check(base: &Image, extensions: &[Image], options: &Options) -> anyhow::Result<Report> {
    let mut r = Report::new(base, options.systemd, &options.profile);

    // os-release: portabled refuses an image without one
    let mut os_release = None;
    for p in ["etc/os-release", "usr/lib/os-release"] {
        match View::new(base).read(Path::new(p)) {
            Ok(d) => {
                os_release = Some((p, d));
                break;
            }
            Err(e) => {
                unjudgeable(e)?;
            }
        }
    }
    let fields = match &os_release {
        Some((path, data)) => {
            r.os_release_file = Some(format!("/{path}"));
            os_release::parse(&String::from_utf8_lossy(data))
        }
        None => {
            r.error(Finding::refused(format!(
                "Image '{}' lacks os-release data, refusing.",
                base.path
            )));
            BTreeMap::new()
        }
    };
    if os_release.is_some() && !fields.contains_key("ID") {
        let why = "os-release has no ID=: portabled matches extensions by it and systemd-dissect \
                   doesn't take the image for an OS tree";
        if rules_of(options.systemd) >= READS_PORTABLE_PREFIXES {
            r.error(Finding::refused(why.into()));
        } else {
            r.advice(&format!(
                "{why}; systemd {} attaches it all the same (from {READS_PORTABLE_PREFIXES} on \
                 it doesn't)",
                options.systemd
            ));
        }
    }
    let image_prefixes: Option<Vec<String>> = fields
        .get("PORTABLE_PREFIXES")
        .map(|p| p.split_whitespace().map(str::to_owned).collect());
    let reads_prefixes = rules_of(options.systemd) >= READS_PORTABLE_PREFIXES;
    if image_prefixes.is_some() && !reads_prefixes {
        r.advice(&format!(
            "systemd {} doesn't read PORTABLE_PREFIXES= (from {READS_PORTABLE_PREFIXES} on it \
             does): any match attaches",
            options.systemd
        ));
    }
    r.dissect.portable_service = os_release.is_some() && image_prefixes.is_some();
    if os_release.is_some() && image_prefixes.is_none() {
        r.advice(
            "os-release has no PORTABLE_PREFIXES=: systemd-dissect won't list the image as a \
             portable service, and any match is accepted",
        );
    }
    r.os_release = fields.clone();

    // portablectl takes its default match from the image name, which must then be one it can
    // use; with matches given, any file name attaches (measured: tests/tests/acceptance/differential.rs)
    let name_prefix = prefix_of(&base.name).to_owned();
    if options.prefixes.is_empty() && !is_image_name(&name_prefix) {
        r.error(Finding::refused(format!(
            "the image name `{name_prefix}` (the file name up to the first `_`) may hold only \
             letters, digits, `-` and `.` to be portablectl's default match: attach it with \
             matches (check: --prefix)"
        )));
    }

    let (layers, ext_prefixes) =
        extensions::check_extensions(&mut r, base, extensions, &fields, options)?;
    let mut valid_prefixes = image_prefixes.clone().filter(|_| reads_prefixes);
    if let Some(p) = ext_prefixes.filter(|_| reads_prefixes) {
        valid_prefixes.get_or_insert_with(Vec::new).extend(p);
    }

    // portablectl's own default: the image name, whatever PORTABLE_PREFIXES says (measured on
    // 252 to 262: tests/tests/acceptance/portabled.rs)
    let matches = if !options.prefixes.is_empty() {
        options.prefixes.clone()
    } else {
        vec![name_prefix.clone()]
    };
    r.matches = matches.clone();
    if let Some(valid) = &valid_prefixes {
        if let Some(bad) = matches.iter().find(|m| !valid.contains(m)) {
            let pass = if options.prefixes.is_empty() {
                format!(
                    "; without matches portablectl takes the image name: attach with them, \
                     `portablectl attach {} {}` (check: --prefix)",
                    base.path.file_name().unwrap_or(base.name.as_str()),
                    valid.join(" ")
                )
            } else {
                String::new()
            };
            r.error(Finding::refused(format!(
                "Selected matches '{}' are not compatible with portable service image '{}', \
                 refusing. (Acceptable prefix matches are: {}; `{bad}` is not one{pass})",
                matches.join("', '"),
                base.path,
                valid.join(", ")
            )));
        }
    }
    if let Some(prefixes) = image_prefixes.as_ref().filter(|_| reads_prefixes) {
        if !options.prefixes.is_empty() && !prefixes.contains(&name_prefix) {
            r.advice(&format!(
                "the image name `{name_prefix}` is not among its PORTABLE_PREFIXES ({}): \
                 `portablectl attach {}` without matches refuses it",
                prefixes.join(" "),
                base.path.file_name().unwrap_or(base.name.as_str())
            ));
        }
    }

    let units = units::attached_units(&mut r, &layers, &matches, options)?;
    if rules_of(options.systemd) < WAITS_FOR_UDEV && base.disk.is_none() {
        r.advice(&format!(
            "systemd {} mounts an image of one file system through /dev/block/MAJ:MIN before \
             udev need have made that link, so an attach fails now and then saying the image \
             \"lacks os-release data\" (measured: 2 and 5 of 40 attaches in a VM), and so does \
             a service's start, 226/NAMESPACE, \"Failed to set up mount namespacing: No such \
             file or directory\" (from 245.7 on it waits); a Discoverable Disk Image \
             (`format = \"ddi\"`) has no such race",
            options.systemd
        ));
    }

    programs::check_programs(&mut r, &layers, &units, options);
    mount_points::check_mount_points(&mut r, &layers, &units);

    store_holes::check_store_holes(&mut r, &layers, &options.store_dir);

    for image in std::iter::once(base).chain(extensions) {
        match &image.disk {
            Some(table) => disk::check_disk(&mut r, image, table, options),
            None => verity::check_verity(&mut r, &image.path, options),
        }
    }
    let images: Vec<&Image> = std::iter::once(base).chain(extensions).collect();
    policy::judge(&mut r, &images, options);

    r.units = units.into_iter().map(|(u, _)| u).collect();
    Ok(r)
}
