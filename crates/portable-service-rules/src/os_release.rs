//! Reading an os-release (or extension-release) file as systemd does: what `check` reads back
//! of any image, and what the builder's own files must read back as.

use std::collections::BTreeMap;

/// Reads an os-release (or extension-release) file the way systemd's env-file parser does:
/// `KEY=value` lines, `#` comments, values unquoted (backslash escapes the next character),
/// in double quotes (backslash escapes `"`, `\\`, `$` and backtick) or in single quotes (literal).
/// Lines it can't read are left out, as systemd does.
pub fn parse(text: &str) -> BTreeMap<String, String> {
    let mut fields = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let Some((key, raw)) = line.split_once('=') else {
            continue;
        };
        let mut value = String::new();
        let mut chars = raw.trim().chars();
        let mut quote = None;
        while let Some(c) = chars.next() {
            match (quote, c) {
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (Some('\''), c) => value.push(c),
                (Some(_), '\\') => match chars.next() {
                    Some(n @ ('"' | '\\' | '$' | '`')) => value.push(n),
                    Some(n) => {
                        value.push('\\');
                        value.push(n);
                    }
                    None => {}
                },
                (None, '\\') => value.extend(chars.next()),
                (_, c) => value.push(c),
            }
        }
        fields.insert(key.trim().to_owned(), value);
    }
    fields
}
