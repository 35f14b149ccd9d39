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

/// A `SHA256SUMS` may say until when it is fresh (systemd 260's sysupdate, and our host agent,
/// read it so; older sysupdate takes it for a file no transfer matches and ignores it): a line
/// like a file's, the SHA-256 of no bytes and the name `BEST-BEFORE-YYYY-MM-DD`, a day in UTC
/// from whose first moment (00:00 UTC) the list is stale and refused. It names no file in the
/// feed. Publishing a feed again with the same files and no new day changes nothing, so a list
/// is kept fresh by publishing again before that day.
pub const BEST_BEFORE: &str = "BEST-BEFORE-";

/// The SHA-256 of no bytes, which a `BEST-BEFORE-` line carries.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// The `BEST-BEFORE-` line (see [`BEST_BEFORE`]) for `date`.
pub fn best_before_line(date: Date) -> String {
    format!("{EMPTY_SHA256}  {BEST_BEFORE}{date}\n")
}

const DAY: u64 = 24 * 60 * 60;

/// The day a list published at `now` (seconds since 1970-01-01 00:00 UTC) names in its
/// `BEST-BEFORE-` line to stay fresh for at least `days` days from `now`: the first midnight
/// (UTC) at or after `now + days` days, since the list is stale from that day's 00:00 UTC.
/// Published at 00:00 UTC it is fresh for `days` days exactly; at any other time, for `days`
/// days and the rest of today.
pub fn best_before(now: u64, days: u32) -> Date {
    Date::from_days(now.saturating_add(u64::from(days) * DAY).div_ceil(DAY))
}

/// A day of the Gregorian calendar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date {
    pub year: u64,
    pub month: u64,
    pub day: u64,
}

fn is_leap_year(year: u64) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

impl Date {
    /// The day `days` days after 1970-01-01.
    pub fn from_days(days: u64) -> Date {
        // the calendar repeats every 400 years, which are 146097 days, from any year on
        const CYCLE: u64 = 146_097;
        let mut year = 1970 + 400 * (days / CYCLE);
        let mut left = days % CYCLE;
        loop {
            let length = if is_leap_year(year) { 366 } else { 365 };
            if left < length {
                break;
            }
            left -= length;
            year += 1;
        }
        let mut month = 1;
        while left >= days_in_month(year, month) {
            left -= days_in_month(year, month);
            month += 1;
        }
        Date {
            year,
            month,
            day: left + 1,
        }
    }

    /// Days since 1970-01-01: whole 400-year eras (146097 days each) counted from 0000-03-01,
    /// the year taken to start in March so that the leap day falls at its end.
    pub fn days(&self) -> i64 {
        let (y, m, d) = (self.year as i64, self.month as i64, self.day as i64);
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let year_of_era = y - era * 400;
        let day_of_year = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
        let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
        era * 146_097 + day_of_era - 719_468
    }

    /// `YYYY-MM-DD`, a day that exists, as a `BEST-BEFORE-` line names it.
    pub fn parse(text: &str) -> Option<Date> {
        let digits = |s: &str, n: usize| {
            (s.len() == n && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse::<u64>().ok())
                .flatten()
        };
        let mut parts = text.split('-');
        let (year, month, day) = (parts.next()?, parts.next()?, parts.next()?);
        let date = Date {
            year: digits(year, 4)?,
            month: digits(month, 2)?,
            day: digits(day, 2)?,
        };
        let exists = parts.next().is_none()
            && (1..=12).contains(&date.month)
            && (1..=days_in_month(date.year, date.month)).contains(&date.day);
        exists.then_some(date)
    }
}

impl std::fmt::Display for Date {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
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

    #[test]
    fn days_since_1970_are_calendar_days() {
        for (days, date) in [
            (0, "1970-01-01"),
            (59, "1970-03-01"),
            (365, "1971-01-01"),
            (11_016, "2000-02-29"),
            (11_017, "2000-03-01"),
            (19_675, "2023-11-14"),
            (20_088, "2024-12-31"),
            (47_541, "2100-03-01"),
            (146_097, "2370-01-01"),
        ] {
            assert_eq!(Date::from_days(days).to_string(), date, "{days}");
            assert_eq!(Date::parse(date), Some(Date::from_days(days)), "{date}");
            assert_eq!(Date::from_days(days).days(), days as i64, "{date}");
        }
        for bad in [
            "2023-02-29",
            "2100-02-29",
            "2024-13-01",
            "2024-1-01",
            "24-01-01",
            "2024-01-01-",
        ] {
            assert_eq!(Date::parse(bad), None, "{bad}");
        }
    }
}
