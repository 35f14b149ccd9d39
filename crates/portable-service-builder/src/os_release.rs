//! The image's `/etc/os-release`: what portabled reads to accept the image and what
//! `portablectl inspect` shows.
//!
//! A value of anything but ASCII letters and digits is written double-quoted, with `"`, `\`, `$` and backtick escaped, as os-release(5)
//! asks; systemd's env-file parser then reads back exactly the value given (the nixpkgs function
//! writes values unquoted, so `a back\slash` comes back as `a backslash`). A value can't span lines
//! in os-release, so a newline or other control character is an error.

use anyhow::{bail, Result};

/// Builds the os-release text. `ID=nixos` is what portabled requires; the rest says where the
/// image comes from.
pub fn render(pname: &str, description: Option<&str>, homepage: Option<&str>) -> Result<String> {
    let mut fields = vec![
        ("ID", "nixos"),
        ("PRETTY_NAME", "NixOS"),
        ("BUILD_ID", "rolling"),
        ("PORTABLE_ID", pname),
    ];
    if let Some(d) = description {
        fields.push(("PORTABLE_PRETTY_NAME", d));
    }
    if let Some(h) = homepage {
        fields.push(("HOME_URL", h));
    }
    let mut text = String::new();
    for (key, value) in fields {
        text.push_str(key);
        text.push('=');
        text.push_str(&quote(attribute_of(key), value)?);
        text.push('\n');
    }
    Ok(text)
}

fn attribute_of(key: &str) -> &'static str {
    match key {
        "PORTABLE_PRETTY_NAME" => "description",
        "HOME_URL" => "homepage",
        _ => "pname",
    }
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

    #[test]
    fn writes_the_fields_portabled_reads() {
        let text = render("demo", Some("Demo service"), Some("https://example.org")).unwrap();
        assert_eq!(
            text,
            "ID=nixos\nPRETTY_NAME=NixOS\nBUILD_ID=rolling\nPORTABLE_ID=demo\n\
             PORTABLE_PRETTY_NAME=\"Demo service\"\nHOME_URL=\"https://example.org\"\n"
        );
    }

    #[test]
    fn leaves_out_null_fields() {
        let text = render("demo", None, None).unwrap();
        assert!(!text.contains("PORTABLE_PRETTY_NAME"));
        assert!(!text.contains("HOME_URL"));
    }

    #[test]
    fn special_characters_read_back_unchanged() {
        let description = r#"it's "quoted" $HOME \ `date` 100%"#;
        let text = render("demo", Some(description), None).unwrap();
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix("PORTABLE_PRETTY_NAME="))
            .unwrap();
        assert_eq!(unquote(line), description);
    }

    #[test]
    fn a_newline_is_an_error_naming_the_attribute() {
        let err = render("demo", Some("two\nlines"), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`description`"), "{err}");
        assert!(err.contains(r#""two\nlines""#), "{err}");
    }
}
