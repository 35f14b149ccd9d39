//! Reading a unit file's settings as systemd does (systemd.syntax(7)): `[Section]` headers,
//! `KEY=VALUE` lines, comments starting with `#` or `;`, and a line ending in a backslash joined
//! to the next with a space in place of the backslash. What the builder makes mount points for
//! and what `check` looks for must be read the same way, or a setting on a continued line is
//! missed by one and not by systemd.

/// One `KEY=VALUE` setting and the section it is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub section: String,
    pub key: String,
    pub value: String,
}

/// A socket unit's settings that name programs. portabled gives only services the image as
/// their root (`RootImage=`), so systemd runs these from the host's file system, where the
/// image's programs are not (measured: a socket whose `ExecStartPre=` is a program of the image
/// fails to start on 252 to 262, tests/tests/acceptance/differential.rs).
pub const SOCKET_EXEC_SETTINGS: [&str; 4] = [
    "ExecStartPre",
    "ExecStartPost",
    "ExecStopPre",
    "ExecStopPost",
];

/// The settings of a socket unit's `text` whose programs systemd runs on the host.
pub fn host_programs(text: &str) -> Vec<Setting> {
    settings(text)
        .into_iter()
        .filter(|s| s.section == "Socket" && SOCKET_EXEC_SETTINGS.contains(&s.key.as_str()))
        .collect()
}

/// Every setting of `text`, in order.
pub fn settings(text: &str) -> Vec<Setting> {
    let mut settings = Vec::new();
    let mut section = String::new();
    let mut lines = text.lines();
    while let Some(first) = lines.next() {
        let line = first.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        let mut logical = line.to_owned();
        while logical.ends_with('\\') {
            logical.pop();
            logical.push(' ');
            // a comment inside a continued setting is skipped, and the setting goes on
            let next = lines.find(|l| !l.trim_start().starts_with(['#', ';']));
            match next {
                Some(next) => logical.push_str(next.trim()),
                None => break,
            }
        }
        if let Some((key, value)) = logical.split_once('=') {
            settings.push(Setting {
                section: section.clone(),
                key: key.trim().to_owned(),
                value: value.trim().to_owned(),
            });
        }
    }
    settings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Vec<(String, String, String)> {
        settings(text)
            .into_iter()
            .map(|s| (s.section, s.key, s.value))
            .collect()
    }

    #[test]
    fn sections_comments_and_continued_lines() {
        let text = "# a comment\n[Unit]\nDescription = Demo \n\n[Service]\n; another\n\
                    StateDirectory=a \\\n   b\\\n c\nExecStart=/bin/sh -c 'echo \\\n hi'\n";
        let s = |a: &str, b: &str, c: &str| (a.to_owned(), b.to_owned(), c.to_owned());
        assert_eq!(
            read(text),
            [
                s("Unit", "Description", "Demo"),
                s("Service", "StateDirectory", "a  b c"),
                s("Service", "ExecStart", "/bin/sh -c 'echo  hi'"),
            ]
        );
    }

    #[test]
    fn a_comment_inside_a_continued_setting_is_skipped() {
        let text = "[Service]\nStateDirectory=a \\\n# not this\n b\n";
        assert_eq!(read(text)[0].2, "a  b");
    }
}
