//! What a feed's files are named and how its versions order, as systemd-sysupdate reads them:
//! `portable-service publish` writes feeds by these rules and the host agent reads them by the
//! same ones.

use crate::names;
use std::cmp::Ordering;

/// The list of files and their hashes.
pub const SUMS: &str = "SHA256SUMS";
/// Its detached OpenPGP signature.
pub const SIGNATURE: &str = "SHA256SUMS.gpg";

/// The files of a version: (suffix on the host, as systemd reads them beside the image;
/// suffix in the feed). A feed can't name the root hash `.roothash`: systemd 257's sysupdate
/// takes `NAME_@v.roothash` to match `NAME_1.0.roothash.p7s` as well (it ignored what follows
/// a pattern's end; seen in the VMs, fixed by 262), and installed the signature as the root
/// hash. No feed name here is the start of another.
pub const FILES: [(&str, &str); 4] = [
    (".raw", ".raw"),
    (".verity", ".verity"),
    (".roothash", ".roothash.txt"),
    (".roothash.p7s", ".roothash.p7s"),
];

/// Characters systemd-sysupdate allows in a version (`version_is_valid()` in its source).
pub fn is_sysupdate_version(v: &str) -> bool {
    !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || ".,_-+".contains(c))
}

/// `NAME_VERSION.EXT` -> (NAME, VERSION, EXT) for the files a feed carries.
pub fn split_file_name(file: &str) -> Option<(&str, &str, &str)> {
    let (name, rest) = file.split_once('_')?;
    let ext = FILES
        .into_iter()
        .map(|(_, feed)| feed)
        .find(|e| rest.ends_with(e))?;
    let version = &rest[..rest.len() - ext.len()];
    (names::is_image_name(name) && is_sysupdate_version(version)).then_some((name, version, ext))
}

/// systemd's order of versions (`strverscmp_improved()`, which sysupdate sorts by), for the
/// characters a sysupdate version may hold: runs of digits compare as numbers (leading zeros
/// aside) and are newer than letters at the same place, runs of letters compare as text and the
/// longer is newer, a version that goes on is newer than one that ends there, and where one
/// goes on with `-` or `.` and the other with something else, the `-` or `.` is older (so
/// `1.9a` is newer than `1.9.1`, as systemd has it). `,`, `_` and `+` only separate.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    let ignored = |c: &u8| !(c.is_ascii_alphanumeric() || *c == b'-' || *c == b'.');
    loop {
        while a.first().is_some_and(ignored) {
            a = &a[1..];
        }
        while b.first().is_some_and(ignored) {
            b = &b[1..];
        }
        if a.is_empty() || b.is_empty() {
            return (!a.is_empty()).cmp(&(!b.is_empty()));
        }
        if let Some(sep) = [b'-', b'.'].into_iter().find(|s| a[0] == *s || b[0] == *s) {
            let order = (a[0] != sep).cmp(&(b[0] != sep));
            if order != Ordering::Equal {
                return order;
            }
            (a, b) = (&a[1..], &b[1..]);
            continue;
        }
        let digits = a[0].is_ascii_digit() || b[0].is_ascii_digit();
        let run = |s: &[u8]| {
            s.iter()
                .position(|c| {
                    if digits {
                        !c.is_ascii_digit()
                    } else {
                        !c.is_ascii_alphabetic()
                    }
                })
                .unwrap_or(s.len())
        };
        let (ra, rb) = (run(a), run(b));
        let order = if digits {
            let skip = |s: &[u8]| s.iter().take_while(|c| **c == b'0').count();
            let (x, y) = (&a[skip(&a[..ra])..ra], &b[skip(&b[..rb])..rb]);
            x.len().cmp(&y.len()).then_with(|| x.cmp(y))
        } else {
            a[..ra].cmp(&b[..rb])
        };
        if order != Ordering::Equal {
            return order;
        }
        (a, b) = (&a[ra..], &b[rb..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_order_as_systemd_orders_them() {
        let mut v = vec![
            "1.10", "1.9", "2", "1.9.1", "1.0", "10", "1.9a", "001.9", "1.9-2", "1.9b",
        ];
        v.sort_by(|a, b| compare_versions(a, b));
        assert_eq!(
            v,
            ["1.0", "1.9", "001.9", "1.9-2", "1.9.1", "1.9a", "1.9b", "1.10", "2", "10"]
        );
        assert_eq!(compare_versions("1.0", "1.0"), Ordering::Equal);
        assert_eq!(compare_versions("2_1", "2+1"), Ordering::Equal);
    }

    #[test]
    fn feed_file_names() {
        assert_eq!(
            split_file_name("demo_1.0.roothash.p7s"),
            Some(("demo", "1.0", ".roothash.p7s"))
        );
        assert_eq!(
            split_file_name("demo_1.0.raw"),
            Some(("demo", "1.0", ".raw"))
        );
        assert_eq!(split_file_name("demo.raw"), None);
        assert_eq!(split_file_name("demo_1.roothash"), None);
        assert_eq!(
            split_file_name("demo_1.roothash.txt"),
            Some(("demo", "1", ".roothash.txt"))
        );
        assert_eq!(split_file_name("demo_1~rc.raw"), None);
        assert_eq!(split_file_name("SHA256SUMS"), None);
    }
}
