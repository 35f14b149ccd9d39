//! A feed's list, `SHA256SUMS`, read as systemd-sysupdate reads it (`HASH *NAME` or
//! `HASH  NAME` lines), with systemd 260's freshness line `BEST-BEFORE-YYYY-MM-DD`, and the
//! versions of one image it offers. Whatever the list holds, the result is bounded and every
//! name is a plain file name.

use anyhow::{bail, ensure, Context, Result};
use portable_service_rules::feed::{compare_versions, is_sysupdate_version, Date, BEST_BEFORE};
use std::cmp::Ordering;
use std::collections::BTreeMap;

/// The largest list read: far beyond any feed's (a line is about 100 bytes).
pub const MAX_LIST: u64 = 1 << 20;
/// The largest signature read.
pub const MAX_SIGNATURE: u64 = 64 << 10;

/// What a list says.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Listing {
    /// File name to its SHA-256.
    pub files: BTreeMap<String, [u8; 32]>,
    /// The first day (days since the epoch, UTC) on which the list is stale.
    pub best_before: Option<i64>,
}

pub fn parse(bytes: &[u8]) -> Result<Listing> {
    ensure!(
        bytes.len() as u64 <= MAX_LIST,
        "the list is larger than {MAX_LIST} bytes"
    );
    let text = std::str::from_utf8(bytes).context("the list is not UTF-8 text")?;
    let mut listing = Listing::default();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let (hash, name) = entry(line).with_context(|| format!("line {}: {line:?}", n + 1))?;
        let marker = name.strip_prefix(BEST_BEFORE).and_then(Date::parse);
        if let Some(day) = marker.map(|d| d.days()) {
            listing.best_before = Some(listing.best_before.map_or(day, |d: i64| d.min(day)));
            continue;
        }
        ensure!(
            listing.files.insert(name.to_owned(), hash).is_none(),
            "line {}: {name} is listed twice",
            n + 1
        );
    }
    Ok(listing)
}

/// One line: its hash and the file's name, which must be a plain name.
fn entry(line: &str) -> Result<([u8; 32], &str)> {
    let (hex, rest) = line
        .split_at_checked(64)
        .context("no SHA-256 at its start")?;
    let name = rest
        .strip_prefix(" *")
        .or_else(|| rest.strip_prefix("  "))
        .context("the hash is not followed by \" *\" or two spaces")?;
    let mut hash = [0u8; 32];
    for (i, b) in hash.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2).unwrap_or("x"), 16)
            .ok()
            .context("the hash is not 64 hex digits")?;
    }
    let plain = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\0', '\\'])
        && !name.chars().any(char::is_control);
    if !plain {
        bail!("{name:?} is not a plain file name");
    }
    Ok((hash, name))
}

/// The complete versions of image `name` in the list, newest first: those whose every file
/// (`files`: host suffix, feed suffix) is listed; each with its files (host suffix, feed
/// name, hash).
pub type Version = (String, Vec<(String, String, [u8; 32])>);

pub fn versions(listing: &Listing, name: &str, files: &[(String, String)]) -> Vec<Version> {
    let Some((_, image_suffix)) = files.first() else {
        return Vec::new();
    };
    let prefix = format!("{name}_");
    let mut found: Vec<Version> = Vec::new();
    for listed in listing.files.keys() {
        let Some(v) = listed
            .strip_prefix(&prefix)
            .and_then(|r| r.strip_suffix(image_suffix.as_str()))
        else {
            continue;
        };
        // the longest feed suffix decides (`.roothash.p7s` is not a version's `.raw`)
        if !is_sysupdate_version(v) || v.contains("..") {
            continue;
        }
        let all: Option<Vec<_>> = files
            .iter()
            .map(|(host, feed)| {
                let f = format!("{name}_{v}{feed}");
                listing.files.get(&f).map(|h| (host.clone(), f.clone(), *h))
            })
            .collect();
        if let Some(all) = all {
            found.push((v.to_owned(), all));
        }
    }
    found.sort_by(|a, b| compare_versions(&b.0, &a.0).then_with(|| b.0.cmp(&a.0)));
    found.dedup_by(|a, b| compare_versions(&a.0, &b.0) == Ordering::Equal);
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn list(lines: &[String]) -> Vec<u8> {
        lines.join("\n").into_bytes()
    }

    #[test]
    fn a_list_gives_each_complete_version_newest_first() {
        let files = [
            (".raw".to_owned(), ".raw".to_owned()),
            (".verity".to_owned(), ".verity".to_owned()),
        ];
        let text = list(&[
            format!("{H} *demo_1.9.raw"),
            format!("{H}  demo_1.9.verity"),
            format!("{H} *demo_1.10.raw"),
            format!("{H} *demo_1.10.verity"),
            // no hash tree: not a whole version
            format!("{H} *demo_2.raw"),
            format!("{H} *other_9.raw"),
            format!("{H} *other_9.verity"),
        ]);
        let listing = parse(&text).unwrap();
        let got: Vec<String> = versions(&listing, "demo", &files)
            .into_iter()
            .map(|(v, _)| v)
            .collect();
        assert_eq!(got, ["1.10", "1.9"]);
    }

    #[test]
    fn a_malformed_or_hostile_list_is_refused_naming_the_line() {
        for (text, said) in [
            (format!("{H} *../etc/passwd"), "not a plain file name"),
            (format!("{H} *a/b.raw"), "not a plain file name"),
            (format!("{H} *.."), "not a plain file name"),
            (format!("{H} *demo\u{7}.raw"), "not a plain file name"),
            (format!("{} *demo_1.raw", &H[..63]), "line 1"),
            (format!("{}zz *demo_1.raw", &H[..62]), "not 64 hex digits"),
            (format!("{H} demo_1.raw"), "two spaces"),
            (format!("{H} *demo_1.raw\n{H} *demo_1.raw"), "listed twice"),
        ] {
            let e = format!("{:#}", parse(text.as_bytes()).unwrap_err());
            assert!(e.contains(said), "{text:?}: {e}");
        }
        assert!(parse(&[0xff, 0xfe]).is_err());
        let huge = vec![b'\n'; MAX_LIST as usize + 1];
        let e = format!("{:#}", parse(&huge).unwrap_err());
        assert!(e.contains("larger than"), "{e}");
    }

    #[test]
    fn versions_with_odd_characters_are_not_offered() {
        let files = [(".raw".to_owned(), ".raw".to_owned())];
        let text = list(&[
            format!("{H} *demo_1..2.raw"),
            format!("{H} *demo_1~rc.raw"),
            format!("{H} *demo_.raw"),
            format!("{H} *demo_1 2.raw"),
            format!("{H} *demo_3.raw"),
        ]);
        let listing = parse(&text).unwrap();
        let got: Vec<String> = versions(&listing, "demo", &files)
            .into_iter()
            .map(|(v, _)| v)
            .collect();
        assert_eq!(got, ["3"]);
    }

    #[test]
    fn best_before_is_systemd_260_s_line_and_the_earliest_counts() {
        let text = list(&[
            format!("{H} *demo_1.raw"),
            format!("{H} *BEST-BEFORE-2027-03-01"),
            format!("{H} *BEST-BEFORE-2027-02-28"),
            // not a date written in full: a file name like any other, as systemd takes it
            format!("{H} *BEST-BEFORE-2027-2-28"),
            format!("{H} *BEST-BEFORE-2027-02-30"),
        ]);
        let listing = parse(&text).unwrap();
        // 2027-02-28 (`date -u -d 2027-02-28 +%s` / 86400)
        assert_eq!(listing.best_before, Some(20_877));
        assert!(listing.files.contains_key("BEST-BEFORE-2027-2-28"));
    }
}
