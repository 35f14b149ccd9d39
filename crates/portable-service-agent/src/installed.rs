//! What is installed in the target directory and what portabled has attached, seen as one
//! image's versions and pairs: the agent's reading of the host, before any decision.

use crate::config::Config;
use crate::host::Attachment;
use crate::record::Pair;
use portable_service_rules::feed::compare_versions;

/// The image name of a file `NAME_VERSION.raw`.
pub fn name_of(file: &str) -> &str {
    file.split_once('_').map_or(file, |(n, _)| n)
}

/// The version of `file` as a file of image `name` with suffix `suffix`.
pub fn version_of<'a>(file: &'a str, name: &str, suffix: &str) -> Option<&'a str> {
    file.strip_prefix(name)?
        .strip_prefix('_')?
        .strip_suffix(suffix)
}

/// The versions of image `name` whose every file (`files`' host suffixes) is in `listing`,
/// newest first.
pub fn versions(listing: &[String], name: &str, files: &[(String, String)]) -> Vec<String> {
    let Some((image_suffix, _)) = files.first() else {
        return Vec::new();
    };
    let mut found: Vec<String> = listing
        .iter()
        .filter_map(|f| version_of(f, name, image_suffix))
        .filter(|v| portable_service_rules::feed::is_sysupdate_version(v))
        .filter(|v| {
            files
                .iter()
                .all(|(host, _)| listing.contains(&format!("{name}_{v}{host}")))
        })
        .map(str::to_owned)
        .collect();
    found.sort_by(|a, b| compare_versions(b, a).then_with(|| b.cmp(a)));
    found
}

/// The installed pairs, newest first: the extension's version first, then the base's.
pub fn pairs(cfg: &Config, listing: &[String]) -> Vec<Pair> {
    let image_suffix = |files: &[(String, String)]| {
        files
            .first()
            .map(|f| f.0.clone())
            .unwrap_or_else(|| ".raw".to_owned())
    };
    let own = versions(listing, &cfg.name, &cfg.files);
    let own_file = |v: &String| format!("{}_{v}{}", cfg.name, image_suffix(&cfg.files));
    match &cfg.base {
        None => own
            .iter()
            .map(|v| Pair {
                base: None,
                image: own_file(v),
            })
            .collect(),
        Some(base) => {
            let base_files = if base.files.is_empty() {
                vec![(".raw".to_owned(), ".raw".to_owned())]
            } else {
                base.files.clone()
            };
            let bases: Vec<String> = versions(listing, &base.name, &base_files)
                .iter()
                .map(|b| format!("{}_{b}{}", base.name, image_suffix(&base_files)))
                .collect();
            own.iter()
                .flat_map(|v| {
                    bases.iter().map(move |b| Pair {
                        base: Some(b.clone()),
                        image: own_file(v),
                    })
                })
                .collect()
        }
    }
}

/// portabled's attachments that are this image's: its own image attached without extensions,
/// or, for an extension, its base attached with it. Another image's attachment of the same
/// base is not.
pub fn ours<'a>(cfg: &Config, attached: &'a [Attachment]) -> Vec<&'a Attachment> {
    attached
        .iter()
        .filter(|a| match &cfg.base {
            None => name_of(&a.image) == cfg.name && a.extensions.is_empty(),
            Some(b) => {
                name_of(&a.image) == b.name && a.extensions.iter().any(|e| name_of(e) == cfg.name)
            }
        })
        .collect()
}

/// The pair an attachment runs.
pub fn pair_of(cfg: &Config, a: &Attachment) -> Pair {
    match &cfg.base {
        None => Pair {
            base: None,
            image: a.image.clone(),
        },
        Some(_) => Pair {
            base: Some(a.image.clone()),
            image: a
                .extensions
                .iter()
                .find(|e| name_of(e) == cfg.name)
                .cloned()
                .unwrap_or_default(),
        },
    }
}

/// Units that can be started: templates run only as instances.
pub fn startable(units: &[String]) -> Vec<String> {
    let mut u: Vec<String> = units
        .iter()
        .filter(|u| !u.contains("@."))
        .cloned()
        .collect();
    u.sort();
    u.dedup();
    u
}
