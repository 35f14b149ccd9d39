//! Names systemd-portabled reads: which units it attaches for a prefix, and what an image name
//! (the file name up to its first `_`) may hold.

/// Unit types portabled attaches; it silently skips every other file.
pub const UNIT_SUFFIXES: [&str; 5] = [".service", ".socket", ".target", ".timer", ".path"];

/// portabled's match of a unit name against one prefix (`unit_match()` in systemd's
/// portable.c): the prefix followed by `.`, `-` or `@`, for a unit type it attaches.
pub fn unit_matches(prefix: &str, name: &str) -> bool {
    UNIT_SUFFIXES.iter().any(|s| name.ends_with(s))
        && name
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with(['-', '.', '@']))
}

/// portablectl accepts only letters, digits, `-` and `.` in an image name (and a prefix is
/// held to the same rule).
pub fn is_image_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}
