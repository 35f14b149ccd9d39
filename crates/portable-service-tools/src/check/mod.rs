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
//!
//! This file owns what is checked ([`Options`]) and [`check`], the order of the steps, each in a
//! file named for it: `os_release` (the base's), `matches`, `extensions`, `units`, `programs`,
//! `mount_points`, `store_holes`, and `verity` or `disk` for each image's dm-verity. What each
//! systemd version does differently is in `versions`, as constants the steps compare with.

mod disk;
mod extensions;
mod matches;
mod mount_points;
mod os_release;
pub mod policy;
mod programs;
pub mod report;
pub mod squashfs;
mod store_holes;
pub mod tree;
mod units;
mod verity;
mod versions;

pub use versions::{
    rules_of, ATTACHES_EXTENSIONS, NAMES_USES, NEWEST, OLDEST, PRIVATE_DEVICES_IN_THE_IMAGE,
    PROFILES_SERVICES_ONLY, SYSTEMD_VERSIONS, WAITS_FOR_UDEV,
};

use report::Report;
use std::path::PathBuf;
use tree::Image;

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

    let release = os_release::read_os_release(&mut r, base, options.systemd)?;
    matches::check_image_name(&mut r, base, options);
    let (layers, ext_prefixes) =
        extensions::check_extensions(&mut r, base, extensions, &release.fields, options)?;
    let prefixes = release.prefixes.as_ref();
    let matches = matches::choose_matches(&mut r, base, prefixes, ext_prefixes, options);
    let units = units::attached_units(&mut r, &layers, &matches, options)?;
    udev_race(&mut r, base, options.systemd);

    programs::check_programs(&mut r, &layers, &units, options);
    mount_points::check_mount_points(&mut r, &layers, &units);
    store_holes::check_store_holes(&mut r, &layers, &options.store_dir);

    let images: Vec<&Image> = std::iter::once(base).chain(extensions).collect();
    for image in &images {
        match &image.disk {
            Some(table) => disk::check_disk(&mut r, image, table, options),
            None => verity::check_verity(&mut r, &image.path, options),
        }
    }
    policy::judge(&mut r, &images, options);

    r.units = units.into_iter().map(|(u, _)| u).collect();
    Ok(r)
}

/// Before [`WAITS_FOR_UDEV`], an image of one file system loses a race with udev now and then.
fn udev_race(r: &mut Report, base: &Image, systemd: u32) {
    if rules_of(systemd) < WAITS_FOR_UDEV && base.disk.is_none() {
        r.advice(&format!(
            "systemd {systemd} mounts an image of one file system through /dev/block/MAJ:MIN \
             before udev need have made that link, so an attach fails now and then saying the \
             image \"lacks os-release data\" (measured: 2 and 5 of 40 attaches in a VM), and \
             so does a service's start, 226/NAMESPACE, \"Failed to set up mount namespacing: \
             No such file or directory\" (from 245.7 on it waits); a Discoverable Disk Image \
             (`format = \"ddi\"`) has no such race"
        ));
    }
}
