//! The matches portabled attaches units for (`portablectl attach IMAGE MATCH...`): without any
//! the image name, which must then be one portablectl can use, and from 252 on each must be
//! among the `PORTABLE_PREFIXES=` of the image and its extensions.

use super::report::{Finding, Report};
use super::tree::Image;
use super::versions::{rules_of, READS_PORTABLE_PREFIXES};
use super::Options;
use portable_service_rules::names::is_image_name;

/// The image's name as portablectl takes it: the file name up to the first `_` (or `.raw`).
pub(super) fn prefix_of(name: &str) -> &str {
    name.split('_').next().unwrap_or(name)
}

/// portablectl takes its default match from the image name, which must then be one it can
/// use; with matches given, any file name attaches (measured:
/// tests/tests/acceptance/differential.rs).
pub(super) fn check_image_name(r: &mut Report, base: &Image, options: &Options) {
    let name_prefix = prefix_of(&base.name);
    if options.prefixes.is_empty() && !is_image_name(name_prefix) {
        r.error(Finding::refused(format!(
            "the image name `{name_prefix}` (the file name up to the first `_`) may hold only \
             letters, digits, `-` and `.` to be portablectl's default match: attach it with \
             matches (check: --prefix)"
        )));
    }
}

/// The match step: the matches attached with, refused when one is not among the
/// `PORTABLE_PREFIXES=` of the image (`image_prefixes`) and its extensions (`ext_prefixes`).
pub(super) fn choose_matches(
    r: &mut Report,
    base: &Image,
    image_prefixes: Option<&Vec<String>>,
    ext_prefixes: Option<Vec<String>>,
    options: &Options,
) -> Vec<String> {
    let name_prefix = prefix_of(&base.name).to_owned();
    // portablectl's own default: the image name, whatever PORTABLE_PREFIXES says (measured on
    // 252 to 262: tests/tests/acceptance/portabled.rs)
    let matches = if !options.prefixes.is_empty() {
        options.prefixes.clone()
    } else {
        vec![name_prefix.clone()]
    };
    r.matches = matches.clone();
    if rules_of(options.systemd) < READS_PORTABLE_PREFIXES {
        return matches;
    }
    let mut valid = image_prefixes.cloned();
    if let Some(p) = ext_prefixes {
        valid.get_or_insert_with(Vec::new).extend(p);
    }
    if let Some(valid) = &valid {
        outside_prefixes(r, base, &matches, valid, options);
    }
    if let Some(prefixes) = image_prefixes {
        if !options.prefixes.is_empty() && !prefixes.contains(&name_prefix) {
            r.advice(&format!(
                "the image name `{name_prefix}` is not among its PORTABLE_PREFIXES ({}): \
                 `portablectl attach {}` without matches refuses it",
                prefixes.join(" "),
                base.path.file_name().unwrap_or(base.name.as_str())
            ));
        }
    }
    matches
}

/// portabled's refusal of matches of which one is not among the `valid` prefixes.
fn outside_prefixes(
    r: &mut Report,
    base: &Image,
    matches: &[String],
    valid: &[String],
    options: &Options,
) {
    let Some(bad) = matches.iter().find(|m| !valid.contains(m)) else {
        return;
    };
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
