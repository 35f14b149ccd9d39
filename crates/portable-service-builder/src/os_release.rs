//! The image's `/etc/os-release` (an extension's extension-release file): what portabled reads to
//! accept the image, what `portablectl inspect` and `systemd-dissect` show, and what an
//! extension must match of its base.
//!
//! A value of anything but ASCII letters and digits is written double-quoted, with `"`, `\`, `$` and backtick escaped, as os-release(5)
//! asks; systemd's env-file parser then reads back exactly the value given (the nixpkgs function
//! writes values unquoted, so `a back\slash` comes back as `a backslash`). A value can't span lines
//! in os-release, so a newline or other control character is an error.

use crate::attrs::Attrs;
use anyhow::{bail, Result};

/// The fields a portable service image's os-release owns, in the order it writes them
/// (nix/rules.nix holds the same list; a test compares them). An extension's are
/// `ExtensionKind::release_fields`.
pub const IMAGE_FIELDS: [&str; 9] = [
    "ID",
    "PRETTY_NAME",
    "BUILD_ID",
    "PORTABLE_ID",
    "PORTABLE_PREFIXES",
    "IMAGE_ID",
    "IMAGE_VERSION",
    "PORTABLE_PRETTY_NAME",
    "HOME_URL",
];

/// Builds the os-release (or extension-release) text of `attrs`: the fields the image owns,
/// replaced where `osReleaseOverrides` says so, then the extra `osRelease` fields in key order.
pub fn render(attrs: &Attrs) -> Result<String> {
    let prefixes = attrs.prefixes().join(" ");
    let mut owned: Vec<(&str, Option<String>, &str)> = match &attrs.extension {
        None => {
            let version = attrs.version.to_lowercase();
            let image_version = version
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-+".contains(c))
                .then_some(version);
            let [id, pretty, build, portable_id, prefixes_key, image_id, image_version_key, pretty_name, home] =
                IMAGE_FIELDS;
            vec![
                (id, Some("nixos".into()), "pname"),
                (pretty, Some("NixOS".into()), "pname"),
                (build, Some("rolling".into()), "pname"),
                (portable_id, Some(attrs.pname.clone()), "pname"),
                (prefixes_key, Some(prefixes), "portablePrefixes"),
                (image_id, Some(attrs.pname.to_lowercase()), "pname"),
                (image_version_key, image_version, "version"),
                (pretty_name, attrs.description.clone(), "description"),
                (home, attrs.homepage.clone(), "homepage"),
            ]
        }
        Some(ext) => {
            let base = |key: &str| {
                ext.base
                    .as_ref()
                    .and_then(|b| b.os_release.get(key))
                    .cloned()
            };
            let [id, scope, prefixes_key, version_id, level, pretty, home] =
                ext.kind.release_fields();
            vec![
                (
                    id,
                    Some(base("ID").unwrap_or_else(|| "nixos".into())),
                    "base",
                ),
                (scope, Some("portable".into()), "pname"),
                (prefixes_key, Some(prefixes), "portablePrefixes"),
                (version_id, base("VERSION_ID"), "base"),
                (level, base(level), "base"),
                (pretty, attrs.description.clone(), "description"),
                (home, attrs.homepage.clone(), "homepage"),
            ]
        }
    };
    for (key, value) in &attrs.os_release_overrides {
        let attribute = format!("osReleaseOverrides.{key}");
        match owned.iter_mut().find(|(k, _, _)| k == key) {
            Some(_) if key == "PORTABLE_PREFIXES" => bail!(
                "attribute `{attribute}`: give the prefixes as `portablePrefixes`, which the \
                 unit names are checked against"
            ),
            Some(field) => *field = (field.0, Some(value.clone()), "osReleaseOverrides"),
            None => bail!(
                "attribute `{attribute}`: {key} is not a field the image writes itself ({}); \
                 put it in `osRelease`",
                owned_names(&owned)
            ),
        }
    }
    let mut text = String::new();
    for (key, value, attribute) in &owned {
        if let Some(value) = value {
            let attribute = match *attribute {
                "osReleaseOverrides" => format!("osReleaseOverrides.{key}"),
                a => a.to_owned(),
            };
            push_field(&mut text, key, value, &attribute)?;
        }
    }
    for (key, value) in &attrs.os_release {
        let attribute = format!("osRelease.{key}");
        check_key(key, &attribute)?;
        if owned.iter().any(|(k, _, _)| k == key) {
            bail!(
                "attribute `{attribute}`: {key} is written by the image itself; to replace it, \
                 put it in `osReleaseOverrides`"
            );
        }
        push_field(&mut text, key, value, &attribute)?;
    }
    Ok(text)
}

fn owned_names(owned: &[(&str, Option<String>, &str)]) -> String {
    owned
        .iter()
        .map(|(k, _, _)| *k)
        .collect::<Vec<_>>()
        .join(", ")
}

/// os-release(5) keys: upper-case letters, digits and `_`, starting with a letter.
fn check_key(key: &str, attribute: &str) -> Result<()> {
    let mut chars = key.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if !valid {
        bail!(
            "attribute `{attribute}`: {key:?} is not an os-release key (upper-case letters, \
             digits and `_`, starting with a letter)"
        );
    }
    Ok(())
}

fn push_field(text: &mut String, key: &str, value: &str, attribute: &str) -> Result<()> {
    text.push_str(key);
    text.push('=');
    text.push_str(&quote(attribute, value)?);
    text.push('\n');
    Ok(())
}

/// Quotes one value; `attribute` names the Nix attribute it came from, for the error.
fn quote(attribute: &str, value: &str) -> Result<String> {
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        bail!(
            "attribute `{attribute}` = {value:?} holds the control character {c:?}; \
             os-release values must fit on one line"
        );
    }
    if !value.is_empty() && value.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Ok(value.to_owned());
    }
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('"');
    for c in value.chars() {
        if matches!(c, '"' | '\\' | '$' | '`') {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    Ok(quoted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use portable_service_rules::os_release::parse;

    /// Reads a value back the way systemd's env-file parser does for a double-quoted value.
    fn unquote(v: &str) -> String {
        let inner = v.strip_prefix('"').unwrap().strip_suffix('"').unwrap();
        let mut out = String::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                let next = chars.next().unwrap();
                assert!(
                    matches!(next, '"' | '\\' | '$' | '`'),
                    "stray escape {next}"
                );
                out.push(next);
            } else {
                assert!(!matches!(c, '"' | '$' | '`'), "unescaped {c} in {v}");
                out.push(c);
            }
        }
        out
    }

    fn attrs() -> Attrs {
        let mut a = Attrs::from_json(include_str!("../tests/fixtures/nix-2.8.attrs.json")).unwrap();
        a.description = Some("Demo service".into());
        a.homepage = Some("https://example.org".into());
        a
    }

    #[test]
    fn writes_the_fields_portabled_and_systemd_dissect_read() {
        let text = render(&attrs()).unwrap();
        assert_eq!(
            text,
            "ID=nixos\nPRETTY_NAME=NixOS\nBUILD_ID=rolling\nPORTABLE_ID=demo\n\
             PORTABLE_PREFIXES=demo\nIMAGE_ID=demo\nIMAGE_VERSION=\"1.0\"\n\
             PORTABLE_PRETTY_NAME=\"Demo service\"\nHOME_URL=\"https://example.org\"\n"
        );
    }

    #[test]
    fn leaves_out_null_fields() {
        let mut a = attrs();
        a.description = None;
        a.homepage = None;
        let text = render(&a).unwrap();
        assert!(!text.contains("PORTABLE_PRETTY_NAME"));
        assert!(!text.contains("HOME_URL"));
    }

    #[test]
    fn extra_fields_follow_and_overrides_replace() {
        let mut a = attrs();
        a.portable_prefixes = Some(vec!["demo".into(), "demo-extra".into()]);
        a.os_release.insert("VARIANT_ID".into(), "prod".into());
        a.os_release_overrides.insert("ID".into(), "acme".into());
        let text = render(&a).unwrap();
        assert!(text.starts_with("ID=acme\n"), "{text}");
        assert!(
            text.contains("PORTABLE_PREFIXES=\"demo demo-extra\"\n"),
            "{text}"
        );
        assert!(text.ends_with("VARIANT_ID=prod\n"), "{text}");
    }

    #[test]
    fn owned_fields_and_bad_keys_are_named() {
        for (extra, key, why) in [
            (true, "ID", "put it in `osReleaseOverrides`"),
            (true, "variant", "is not an os-release key"),
            (true, "1X", "is not an os-release key"),
            (false, "VARIANT", "put it in `osRelease`"),
            (false, "PORTABLE_PREFIXES", "`portablePrefixes`"),
        ] {
            let mut a = attrs();
            let (map, attr) = if extra {
                (&mut a.os_release, "osRelease")
            } else {
                (&mut a.os_release_overrides, "osReleaseOverrides")
            };
            map.insert(key.into(), "x".into());
            let e = render(&a).unwrap_err().to_string();
            assert!(e.starts_with(&format!("attribute `{attr}.{key}`")), "{e}");
            assert!(e.contains(why), "{e}");
        }
    }

    #[test]
    fn special_characters_read_back_unchanged() {
        let description = r#"it's "quoted" $HOME \ `date` 100%"#;
        let mut a = attrs();
        a.description = Some(description.into());
        let text = render(&a).unwrap();
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix("PORTABLE_PRETTY_NAME="))
            .unwrap();
        assert_eq!(unquote(line), description);
    }

    #[test]
    fn parse_reads_back_what_render_writes_and_other_quotings() {
        let mut a = attrs();
        a.description = Some(r#"it's "quoted" $HOME \ `date` 100%"#.into());
        let fields = parse(&render(&a).unwrap());
        assert_eq!(fields["PORTABLE_PRETTY_NAME"], a.description.unwrap());
        assert_eq!(fields["IMAGE_VERSION"], "1.0");
        let other = parse("# comment\nID='debian'\nNAME=\"Debian GNU/Linux\"\nX=a\\ b\n\nbroken\n");
        assert_eq!(other["ID"], "debian");
        assert_eq!(other["NAME"], "Debian GNU/Linux");
        assert_eq!(other["X"], "a b");
        assert_eq!(other.len(), 3);
    }

    #[test]
    fn a_newline_is_an_error_naming_the_attribute() {
        let mut a = attrs();
        a.description = Some("two\nlines".into());
        let err = render(&a).unwrap_err().to_string();
        assert!(err.contains("`description`"), "{err}");
        assert!(err.contains(r#""two\nlines""#), "{err}");
    }
}
