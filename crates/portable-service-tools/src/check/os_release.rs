//! The base's os-release, as portabled reads it: where it looks, the refusal of an image without
//! one (and, from 252 on, of one without `ID=`), and its `PORTABLE_PREFIXES=`, which one
//! systemd version reads and another doesn't, and by which systemd-dissect lists the image.

use super::report::{Finding, Report};
use super::tree::{Image, View};
use super::unjudgeable;
use super::versions::{rules_of, READS_PORTABLE_PREFIXES};
use portable_service_rules::os_release;
use std::collections::BTreeMap;
use std::path::Path;

/// What the base's os-release says (nothing, when it has none).
pub(super) struct BaseRelease {
    pub fields: BTreeMap<String, String>,
    /// Its `PORTABLE_PREFIXES=`, if it says any.
    pub prefixes: Option<Vec<String>>,
}

/// The read step: the base's os-release, recorded in the report with what each systemd
/// version makes of it.
pub(super) fn read_os_release(
    r: &mut Report,
    base: &Image,
    systemd: u32,
) -> anyhow::Result<BaseRelease> {
    let Some((path, data)) = find(base)? else {
        // portabled refuses an image without one
        r.error(Finding::refused(format!(
            "Image '{}' lacks os-release data, refusing.",
            base.path
        )));
        return Ok(BaseRelease {
            fields: BTreeMap::new(),
            prefixes: None,
        });
    };
    r.os_release_file = Some(format!("/{path}"));
    let fields = os_release::parse(&String::from_utf8_lossy(&data));
    if !fields.contains_key("ID") {
        no_id(r, systemd);
    }
    let prefixes: Option<Vec<String>> = fields
        .get("PORTABLE_PREFIXES")
        .map(|p| p.split_whitespace().map(str::to_owned).collect());
    if prefixes.is_some() && rules_of(systemd) < READS_PORTABLE_PREFIXES {
        r.advice(&format!(
            "systemd {systemd} doesn't read PORTABLE_PREFIXES= (from {READS_PORTABLE_PREFIXES} on \
             it does): any match attaches"
        ));
    }
    r.dissect.portable_service = prefixes.is_some();
    if prefixes.is_none() {
        r.advice(
            "os-release has no PORTABLE_PREFIXES=: systemd-dissect won't list the image as a \
             portable service, and any match is accepted",
        );
    }
    r.os_release = fields.clone();
    Ok(BaseRelease { fields, prefixes })
}

/// The base's os-release file, the first of the two places portabled looks that it can read.
fn find(base: &Image) -> anyhow::Result<Option<(&'static str, Vec<u8>)>> {
    for p in ["etc/os-release", "usr/lib/os-release"] {
        match View::new(base).read(Path::new(p)) {
            Ok(d) => return Ok(Some((p, d))),
            Err(e) => {
                unjudgeable(e)?;
            }
        }
    }
    Ok(None)
}

/// An os-release without `ID=`: refused from [`READS_PORTABLE_PREFIXES`] on, attached before.
fn no_id(r: &mut Report, systemd: u32) {
    let why = "os-release has no ID=: portabled matches extensions by it and systemd-dissect \
               doesn't take the image for an OS tree";
    if rules_of(systemd) >= READS_PORTABLE_PREFIXES {
        r.error(Finding::refused(why.into()));
    } else {
        r.advice(&format!(
            "{why}; systemd {systemd} attaches it all the same (from {READS_PORTABLE_PREFIXES} \
             on it doesn't)"
        ));
    }
}
