//! Store path syntax, checked by hand.
//!
//! The crate made for this, `nix-compat`, is only an empty `0.0.0-pre` placeholder on crates.io,
//! so this small module carries the rules Nix itself applies (see Nix's `StorePath` and
//! `checkName`): `<storeDir>/<32 nix-base32 characters>-<name>`, the name at most 211 characters
//! from `A-Za-z0-9+-._?=`, not starting with `.`.

use camino::Utf8Path;

/// The nix-base32 alphabet: digits and lower-case letters without `e o u t`.
const NIX_BASE32: &[u8] = b"0123456789abcdfghijklmnpqrsvwxyz";
const HASH_LEN: usize = 32;
const MAX_NAME_LEN: usize = 211;

/// A path below the store directory, split into its store path and the part below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InStore<'a> {
    /// `<storeDir>/<hash>-<name>`.
    pub store_path: &'a str,
    /// `<name>`.
    pub name: &'a str,
    /// What follows the store path, without the leading `/` (empty for the store path itself).
    pub below: &'a str,
}

/// Splits `path` into its store path and the rest, or says why it is not inside the store.
pub fn parse<'a>(store_dir: &Utf8Path, path: &'a str) -> Result<InStore<'a>, String> {
    let prefix = store_dir.as_str().trim_end_matches('/');
    let rest = path
        .strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('/'))
        .ok_or_else(|| format!("it is not inside the store directory {prefix}"))?;
    let (base, below) = rest.split_once('/').unwrap_or((rest, ""));
    if base.len() < HASH_LEN + 2 || base.as_bytes()[HASH_LEN] != b'-' {
        return Err(format!(
            "`{base}` is not a store path name (<32-character hash>-<name>)"
        ));
    }
    let (hash, name) = (&base[..HASH_LEN], &base[HASH_LEN + 1..]);
    if let Some(c) = hash.bytes().find(|b| !NIX_BASE32.contains(b)) {
        return Err(format!(
            "its hash `{hash}` holds `{}`, which is not a nix-base32 character",
            c as char
        ));
    }
    check_name(name)?;
    if below.split('/').any(|c| c == ".." || c == ".") || below.contains("//") {
        return Err(format!(
            "`{below}` below the store path is not a normalised path"
        ));
    }
    let store_path = &path[..prefix.len() + 1 + base.len()];
    Ok(InStore {
        store_path,
        name,
        below: below.trim_end_matches('/'),
    })
}

/// Like [`parse`], but only a store path itself (nothing below it) is accepted.
pub fn parse_store_path<'a>(store_dir: &Utf8Path, path: &'a str) -> Result<InStore<'a>, String> {
    let parsed = parse(store_dir, path)?;
    if !parsed.below.is_empty() {
        return Err(format!(
            "it is a path inside the store path {}, not a store path",
            parsed.store_path
        ));
    }
    Ok(parsed)
}

fn check_name(name: &str) -> Result<(), String> {
    if name.len() > MAX_NAME_LEN {
        return Err(format!("its name is longer than {MAX_NAME_LEN} characters"));
    }
    if name.starts_with('.') {
        return Err(format!("its name `{name}` starts with `.`"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "+-._?=".contains(*c)))
    {
        return Err(format!(
            "its name `{name}` holds `{c}`, which a store path name cannot hold"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const STORE: &str = "/nix/store";
    const P: &str = "/nix/store/0c7wkdmgpqnch9f84clfdjqxn7hznv2z-hello-2.12.2";

    #[test]
    fn splits_a_path_inside_a_store_path() {
        let p = format!("{P}/etc/ssl");
        let parsed = parse(Utf8Path::new(STORE), &p).unwrap();
        assert_eq!(parsed.store_path, P);
        assert_eq!(parsed.name, "hello-2.12.2");
        assert_eq!(parsed.below, "etc/ssl");
        assert_eq!(parse_store_path(Utf8Path::new(STORE), P).unwrap().below, "");
    }

    #[test]
    fn rejects_what_nix_would_reject() {
        let bad = [
            ("/usr/bin/sh", "not inside the store"),
            ("/nix/store", "not inside the store"),
            ("/nix/store/hello", "not a store path name"),
            (
                "/nix/store/0c7wkdmgpqnch9f84clfdjqxn7hznv2e-hello",
                "not a nix-base32 character",
            ),
            (
                "/nix/store/0c7wkdmgpqnch9f84clfdjqxn7hznv2z-.hello",
                "starts with `.`",
            ),
            (
                "/nix/store/0c7wkdmgpqnch9f84clfdjqxn7hznv2z-demo@.service",
                "holds `@`",
            ),
            (
                "/nix/store/0c7wkdmgpqnch9f84clfdjqxn7hznv2z-x/../../etc",
                "not a normalised path",
            ),
        ];
        for (path, why) in bad {
            let err = parse(Utf8Path::new(STORE), path).unwrap_err();
            assert!(err.contains(why), "{path}: {err}");
        }
        let err = parse_store_path(Utf8Path::new(STORE), &format!("{P}/bin")).unwrap_err();
        assert!(err.contains("not a store path"), "{err}");
    }
}
