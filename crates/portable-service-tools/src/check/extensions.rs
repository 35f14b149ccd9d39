//! Extension images (`portablectl attach --extension`): which release file each systemd version
//! finds in one, whether it matches the base's os-release as systemd compares them, and how the
//! extensions systemd takes overlay the base ([`Layers`]).

use super::matches::prefix_of;
use super::report::{ExtensionReport, Finding, Report};
use super::tree::{Image, Node, Resolved, View};
use super::versions::{
    rules_of, ATTACHES_EXTENSIONS, FORBIDS_OS_RELEASE, MATCHES_ID_LIKE,
    READS_SCOPE_AND_ARCHITECTURE, SYSTEMD_VERSIONS,
};
use super::{unjudgeable, Options};
use portable_service_rules::extension::ExtensionKind as Kind;
use portable_service_rules::os_release;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The base and the extensions systemd takes, in order, each with its kind.
pub(super) struct Layers<'a> {
    pub base: &'a Image,
    pub extensions: Vec<(&'a Image, Kind)>,
}

impl<'a> Layers<'a> {
    /// The base, then each extension.
    pub fn images(&self) -> impl Iterator<Item = &'a Image> + '_ {
        std::iter::once(self.base).chain(self.extensions.iter().map(|(ext, _)| *ext))
    }

    /// The base with every extension overlaid.
    pub fn whole(&self) -> View<'a> {
        let mut v = View::new(self.base);
        for (ext, kind) in &self.extensions {
            v.overlay(ext, kind.overlaid_on());
        }
        v
    }

    /// What a unit of `from` sees: a unit of the base the base alone; a unit of an extension
    /// every extension too (portabled writes `ExtensionImages=` only into those units' drop-ins).
    pub fn seen_from(&self, from: &Image) -> View<'a> {
        if std::ptr::eq(from, self.base) {
            View::new(self.base)
        } else {
            self.whole()
        }
    }
}

/// Checks each extension against the base's os-release `base_release`: its report, a refusal
/// for each of its problems, the layers systemd attaches, and the `PORTABLE_PREFIXES` the
/// extensions add to the base's (`None` when none says any).
pub(super) fn check_extensions<'a>(
    r: &mut Report,
    base: &'a Image,
    extensions: &'a [Image],
    base_release: &BTreeMap<String, String>,
    options: &Options,
) -> anyhow::Result<(Layers<'a>, Option<Vec<String>>)> {
    if !extensions.is_empty() && rules_of(options.systemd) < ATTACHES_EXTENSIONS {
        r.error(Finding::refused(format!(
            "systemd {}'s portablectl has no --extension (\"unrecognized option\"): \
             extensions came in systemd {ATTACHES_EXTENSIONS}; attach the \
             base alone, or build one image with everything",
            options.systemd
        )));
    }
    let mut layers = Layers {
        base,
        extensions: Vec::new(),
    };
    let mut prefixes: Option<Vec<String>> = None;
    for ext in extensions {
        let (report, kind, p) = check_extension(ext, base_release, options)?;
        if let Some(kind) = kind {
            layers.extensions.push((ext, kind));
        }
        if let Some(p) = p {
            prefixes.get_or_insert_with(Vec::new).extend(p);
        }
        for f in &report.problems {
            r.error(Finding::refused(f.clone()));
        }
        r.extensions.push(report);
    }
    Ok((layers, prefixes))
}

/// The extension's report, its kind (if systemd takes it) and its `PORTABLE_PREFIXES`.
fn check_extension(
    ext: &Image,
    base: &BTreeMap<String, String>,
    options: &Options,
) -> anyhow::Result<(ExtensionReport, Option<Kind>, Option<Vec<String>>)> {
    let systemd = options.systemd;
    let mut report = ExtensionReport {
        path: ext.path.to_string(),
        name: ext.name.clone(),
        by_systemd: verdicts(ext),
        ..ExtensionReport::default()
    };
    let Some((kind, release_path)) = release_file_of(ext, systemd) else {
        report.problems.push(lacks_release(ext, systemd));
        return Ok((report, None, None));
    };
    report.kind = Some(kind.name().to_owned());
    report.release_file = Some(format!("/{}", release_path.display()));
    let fields = release_of(ext, &release_path)?;
    report.dissect_extension = fields
        .get(kind.scope_and_level().0)
        .is_none_or(|s| s.split_whitespace().any(|w| w == "portable"));
    report.problems.extend(hides_os_release(ext, systemd));
    let mismatch = release_mismatch(&fields, base, kind, systemd, &options.architecture);
    report.matches_base = mismatch.is_none();
    if let Some(why) = mismatch {
        report.problems.push(format!(
            "Image {} extension-release metadata does not match the root's: {why}",
            ext.path
        ));
    }
    let prefixes = fields
        .get("PORTABLE_PREFIXES")
        .map(|p| p.split_whitespace().map(str::to_owned).collect());
    report.release = fields;
    Ok((report, Some(kind), prefixes))
}

/// The fields of `ext`'s release file; none when it can't be read but is not too large to.
fn release_of(ext: &Image, path: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    Ok(match View::new(ext).read(path) {
        Ok(d) => os_release::parse(&String::from_utf8_lossy(&d)),
        Err(e) => {
            unjudgeable(e)?;
            BTreeMap::new()
        }
    })
}

/// From [`FORBIDS_OS_RELEASE`] on, an extension that would hide the base's os-release is
/// refused.
fn hides_os_release(ext: &Image, systemd: u32) -> Option<String> {
    let hides = rules_of(systemd) >= FORBIDS_OS_RELEASE
        && matches!(
            View::new(ext).resolve(Path::new("usr/lib/os-release")),
            Resolved::Found(..)
        );
    hides.then(|| {
        format!(
            "Image {} contains /usr/lib/os-release, which systemd {systemd} refuses in an \
             extension (it would hide the base's)",
            ext.path
        )
    })
}

/// What each measured systemd version does with `ext` as named: accepts it, or refuses it for
/// want of `--extension` or of a release file it looks for.
fn verdicts(ext: &Image) -> BTreeMap<u32, String> {
    SYSTEMD_VERSIONS
        .into_iter()
        .map(|version| {
            let verdict = match release_file_of(ext, version) {
                _ if version < ATTACHES_EXTENSIONS => "refused: no --extension".to_owned(),
                Some(_) => "accepted".to_owned(),
                None => format!("refused: Image '{}' lacks extension-release data", ext.path),
            };
            (version, verdict)
        })
        .collect()
}

/// The release file a systemd version finds in `ext`, the first of its candidates that is a
/// file, with the kind of extension it makes it.
fn release_file_of(ext: &Image, version: u32) -> Option<(Kind, PathBuf)> {
    release_candidates(ext, version).into_iter().find(|(_, p)| {
        matches!(
            View::new(ext).resolve(p),
            Resolved::Found(_, Node::File { .. })
        )
    })
}

/// portabled's refusal of an extension without a release file, naming where it looked.
fn lacks_release(ext: &Image, systemd: u32) -> String {
    format!(
        "Image '{}' lacks extension-release data, refusing. (systemd {systemd} looks for {})",
        ext.path,
        release_candidates(ext, systemd)
            .iter()
            .map(|(_, p)| format!("/{}", p.display()))
            .collect::<Vec<_>>()
            .join(" or ")
    )
}

/// The extension-release files a systemd version looks for in `ext`, in its order (measured in
/// VMs): 252 the one named after the whole file name, below /usr only; 254 also the one named
/// without the version (`app_1.0.raw` -> `extension-release.app`); 257 and later also
/// configuration extensions' below /etc (254's portabled refuses them, though its
/// systemd-dissect lists them).
fn release_candidates(ext: &Image, version: u32) -> Vec<(Kind, PathBuf)> {
    let mut names = vec![ext.name.as_str()];
    if version >= 254 && ext.name.contains('_') {
        names.push(prefix_of(&ext.name));
    }
    let kinds: &[Kind] = if version >= 257 {
        &[Kind::Sysext, Kind::Confext]
    } else {
        &[Kind::Sysext]
    };
    kinds
        .iter()
        .flat_map(|k| {
            names.iter().map(move |n| {
                let file = Path::new(k.release_dir()).join(format!("extension-release.{n}"));
                (*k, file)
            })
        })
        .collect()
}

/// Why an extension-release file doesn't match the base's os-release, the way systemd compares
/// them (`extension_release_validate()`): from 252 on the scope must include `portable` and
/// `ARCHITECTURE=`, unless `_any`, be the host's; ID the base's (or from 252 on `_any`, or from
/// 257 on one of its `ID_LIKE=`);
/// then, if the base says a level or a VERSION_ID, the level if both say one, else the
/// VERSION_ID, which the extension must then have.
fn release_mismatch(
    ext: &BTreeMap<String, String>,
    base: &BTreeMap<String, String>,
    kind: Kind,
    systemd: u32,
    architecture: &str,
) -> Option<String> {
    let (scope_key, level_key) = kind.scope_and_level();
    let reads_scope = rules_of(systemd) >= READS_SCOPE_AND_ARCHITECTURE;
    if reads_scope {
        if let Some(why) = scope_or_architecture_mismatch(ext, scope_key, architecture) {
            return Some(why);
        }
    }
    let Some(id) = given(ext, "ID") else {
        return Some(if reads_scope {
            "no ID= (give the base's, or `_any`)".to_owned()
        } else {
            "no ID= (give the base's)".to_owned()
        });
    };
    if id == "_any" && reads_scope {
        return None;
    }
    id_mismatch(&id, base, systemd).or_else(|| level_mismatch(ext, base, level_key))
}

/// A value `key` of `m` that is given and not empty.
fn given(m: &BTreeMap<String, String>, key: &str) -> Option<String> {
    m.get(key).filter(|v| !v.is_empty()).cloned()
}

/// Why the extension's scope (`scope_key`) or `ARCHITECTURE=` rule it out, for a systemd from
/// [`READS_SCOPE_AND_ARCHITECTURE`] on.
fn scope_or_architecture_mismatch(
    ext: &BTreeMap<String, String>,
    scope_key: &str,
    architecture: &str,
) -> Option<String> {
    if let Some(scope) = ext.get(scope_key) {
        if !scope.split_whitespace().any(|w| w == "portable") {
            return Some(format!("{scope_key}={scope} does not include `portable`"));
        }
    }
    if let Some(arch) = given(ext, "ARCHITECTURE") {
        if arch != "_any" && arch != architecture {
            return Some(format!(
                "ARCHITECTURE={arch}, the host's is {architecture} (check --architecture)"
            ));
        }
    }
    None
}

/// Why the extension's `id` is not the base's for this systemd: neither its ID nor in its
/// `ID_LIKE=`, or only in `ID_LIKE=` before [`MATCHES_ID_LIKE`].
fn id_mismatch(id: &str, base: &BTreeMap<String, String>, systemd: u32) -> Option<String> {
    let base_id = base.get("ID").map(String::as_str).unwrap_or("");
    let like = base.get("ID_LIKE").map(String::as_str).unwrap_or("");
    let in_like = like.split_whitespace().any(|l| l == id);
    if id != base_id && !in_like {
        let literal = if id == "_any" {
            format!(
                " (systemd {systemd} takes `_any` for an ID like any other; from \
                 {READS_SCOPE_AND_ARCHITECTURE} on it matches any)"
            )
        } else {
            String::new()
        };
        return Some(format!("ID={id}, the base's ID={base_id}{literal}"));
    }
    if id != base_id && rules_of(systemd) < MATCHES_ID_LIKE {
        return Some(format!(
            "ID={id} is only in the base's ID_LIKE={like}, which systemd {systemd} does not \
             match (from {MATCHES_ID_LIKE} on it does); the base's ID={base_id}"
        ));
    }
    None
}

/// Why the extension's level (`level_key`) or VERSION_ID is not the base's, when the base says
/// either: the level if both say one, else the VERSION_ID, which the extension must then have.
fn level_mismatch(
    ext: &BTreeMap<String, String>,
    base: &BTreeMap<String, String>,
    level_key: &str,
) -> Option<String> {
    let (base_version, base_level) = (given(base, "VERSION_ID"), given(base, level_key));
    if base_version.is_none() && base_level.is_none() {
        return None;
    }
    if let (Some(b), Some(e)) = (&base_level, given(ext, level_key)) {
        return (b != &e).then(|| format!("{level_key}={e}, the base's {level_key}={b}"));
    }
    match (&base_version, given(ext, "VERSION_ID")) {
        (Some(b), Some(e)) if b != &e => Some(format!("VERSION_ID={e}, the base's VERSION_ID={b}")),
        (Some(b), None) => Some(format!("no VERSION_ID=, the base's VERSION_ID={b}")),
        _ => None,
    }
}
