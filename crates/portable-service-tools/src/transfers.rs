//! The host's side of a feed (see [`crate::feed`]): what `image.sysupdate { url = ...; }`
//! builds, as files to copy under a host's `/etc`:
//!
//! - `sysupdate.NAME.d/*.transfer`: one transfer definition per file of a version (the image,
//!   and for a naked image with `verity = true` its hash tree, root hash and signature), bound
//!   together by `@v`, for `systemd-sysupdate --component=NAME`; each also as `*.conf`, the
//!   name systemd 254 reads (257 on read `.transfer`, and `.conf` only if there is none);
//! - `sysupdate.NAME.d/switch`: the script that attaches what sysupdate installed, which
//!   sysupdate itself doesn't (it only places files);
//! - `systemd/system/NAME-update.service` (update, then switch), `NAME-update.timer` (daily,
//!   not enabled) and `NAME-rollback.service` (back to the version kept beside).
//!
//! An extension's files update the extension alone, and switch by reattaching the newest base
//! installed with the newest extension.

use crate::feed::FILES;
use anyhow::{ensure, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

/// Where the switch script keeps its state on the host (`NAME/status`, `bad`, `previous`,
/// `switching`).
pub const STATE_DIR: &str = "/var/lib/portable-service-update";

/// Where Debian, Fedora and Arch have systemd-sysupdate (not on PATH).
pub const SYSUPDATE: &str = "/usr/lib/systemd/systemd-sysupdate";

/// What attaches what sysupdate installed (it places files only): the script, with the image's
/// settings put in place of its marker line (see the script's own header for what it keeps).
const SWITCH: &str = include_str!("switch.sh");

/// Characters a host path (`target`) may hold beside ASCII letters and digits: what needs no
/// quoting in a transfer file, a unit file or the script (no `%`, a specifier to systemd; no
/// whitespace, quotes, `\\` or `$`). nix/rules.nix holds the same table.
pub const TARGET_PUNCTUATION: &[char] = &['.', '_', '/', '+', '-'];

/// Characters a feed's URL may hold beside ASCII letters and digits: RFC 3986's, without the
/// quote `'` (whitespace, quotes, `\\`, `<>{}|^` and backquotes never); its `%` is written `%%`
/// where systemd reads specifiers. nix/rules.nix holds the same table.
pub const URL_PUNCTUATION: &[char] = &[
    '-', '.', '_', '~', ':', '/', '?', '#', '[', ']', '@', '!', '$', '&', '(', ')', '*', '+', ',',
    ';', '=', '%',
];

/// Whether `s` holds only ASCII letters, digits and `punctuation`.
fn only(s: &str, punctuation: &[char]) -> bool {
    s.chars()
        .all(|c| c.is_ascii_alphanumeric() || punctuation.contains(&c))
}

/// `s` as one word for sh: single-quoted (the values are checked to need none; this is the
/// second line of defence).
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// How long a new version's units have to come up, and to stay up, before it is kept.
#[derive(Debug, Clone, Copy)]
pub struct Health {
    /// Seconds for every unit to be active (a oneshot: to have ended well).
    pub timeout: u32,
    /// Seconds they must then stay active without a restart.
    pub steady: u32,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            timeout: 90,
            steady: 1,
        }
    }
}

/// The extension's base, as the host attaches it.
#[derive(Debug, Clone)]
pub struct Base {
    pub name: String,
}

/// One image's host side.
#[derive(Debug, Clone)]
pub struct Host {
    /// The image's name (pname): the component, `sysupdate.NAME.d`.
    pub name: String,
    /// The feed, `http://` or `https://`.
    pub url: String,
    /// Where the versions are kept and attached from.
    pub target: Utf8PathBuf,
    /// Versions kept on the host (sysupdate's `InstancesMax=`): the running one and the one to
    /// roll back to.
    pub keep: u32,
    /// A naked image with its hash tree and root hash beside it (`verity = true`).
    pub verity: bool,
    /// ... and the root hash's signature.
    pub signed: bool,
    /// The matches to attach with (portablectl's default is the image's name).
    pub prefixes: Vec<String>,
    /// For an extension: the image it extends.
    pub base: Option<Base>,
    /// When a new version counts as healthy.
    pub health: Health,
}

impl Host {
    /// Checks what a host would otherwise only find out at its first update.
    pub fn validate(&self) -> Result<()> {
        let scheme_ok = ["http://", "https://"].iter().any(|s| {
            self.url
                .strip_prefix(s)
                .is_some_and(|rest| !rest.is_empty())
        });
        ensure!(
            scheme_ok,
            "url {:?}: systemd-sysupdate fetches feeds over http:// or https:// only",
            self.url
        );
        ensure!(
            only(&self.url, URL_PUNCTUATION),
            "url {:?}: only letters, digits and {} may appear in the URL (percent-encode the \
             rest)",
            self.url,
            URL_PUNCTUATION.iter().collect::<String>()
        );
        ensure!(
            portable_service_rules::names::is_image_name(&self.name),
            "name {:?} is not an image name",
            self.name
        );
        ensure!(
            self.target.is_absolute()
                && only(self.target.as_str(), TARGET_PUNCTUATION)
                && !self
                    .target
                    .as_str()
                    .split('/')
                    .any(|c| matches!(c, ".." | ".")),
            "target {:?} must be an absolute path of letters, digits and {} (no . or .. \
             component)",
            self.target,
            TARGET_PUNCTUATION.iter().collect::<String>()
        );
        for p in &self.prefixes {
            ensure!(
                portable_service_rules::names::is_image_name(p),
                "prefix {p:?} is not a unit prefix portablectl takes"
            );
        }
        if let Some(b) = &self.base {
            ensure!(
                portable_service_rules::names::is_image_name(&b.name),
                "base {:?} is not an image name",
                b.name
            );
        }
        ensure!(
            self.health.timeout >= 1 && self.health.steady >= 1,
            "health timeout {} s and steady {} s must be at least 1 s each",
            self.health.timeout,
            self.health.steady
        );
        ensure!(
            self.keep >= 2,
            "keep = {}: a host keeps at least 2 versions, the running one and the one to roll \
             back to",
            self.keep
        );
        ensure!(
            self.verity || !self.signed,
            "a signature travels with a hash tree and root hash only (verity)"
        );
        Ok(())
    }

    /// The feed's directory as systemd reads it in transfer and unit files (`%` a specifier).
    fn url_dir(&self) -> String {
        format!("{}/", self.url.trim_end_matches('/')).replace('%', "%%")
    }

    /// The files of a version: (suffix on the host, suffix in the feed).
    pub fn files(&self) -> Vec<(&'static str, &'static str)> {
        let count = match (self.verity, self.signed) {
            (false, _) => 1,
            (true, false) => 3,
            (true, true) => 4,
        };
        FILES[..count].to_vec()
    }

    /// The transfer definition of the files with the host's suffix `host` (`feed` in the
    /// feed).
    pub fn transfer(&self, host: &str, feed: &str) -> String {
        // systemd 257 takes NAME_@v.roothash to match NAME_1.0.roothash.p7s too (see FILES):
        // in the target directory it counts each version's signature as a second root hash, so
        // that transfer keeps twice the instances, or it would delete a kept version's files
        let instances = if host == ".roothash" && self.signed {
            2 * self.keep
        } else {
            self.keep
        };
        format!(
            "# {name}: version @v's {host} file, from the feed {url}\n\
             # (`portable-service publish` writes the feed; the host needs libcurl, gpg and the\n\
             # feed's public key in /etc/systemd/import-pubring.pgp, import-pubring.gpg before\n\
             # systemd 258)\n\
             \n\
             [Transfer]\n\
             Verify=yes\n\
             \n\
             [Source]\n\
             Type=url-file\n\
             Path={url}\n\
             MatchPattern={name}_@v{feed}\n\
             \n\
             [Target]\n\
             Type=regular-file\n\
             Path={target}\n\
             MatchPattern={name}_@v{host}\n\
             Mode=0444\n\
             InstancesMax={instances}\n",
            name = self.name,
            url = self.url_dir(),
            target = self.target,
        )
    }

    /// The switch script (see [`SWITCH`]): its settings, then the script.
    pub fn switch_script(&self) -> String {
        let sidecars: Vec<&str> = FILES[1..].iter().map(|(host, _)| *host).collect();
        let settings = [
            ("name", self.name.clone()),
            (
                "base",
                self.base
                    .as_ref()
                    .map(|b| b.name.clone())
                    .unwrap_or_default(),
            ),
            ("dir", self.target.to_string()),
            ("sysupdate", SYSUPDATE.to_owned()),
            ("prefixes", self.prefixes.join(" ")),
            ("sidecars", sidecars.join(" ")),
            ("health_timeout", self.health.timeout.to_string()),
            ("health_steady", self.health.steady.to_string()),
            ("state_dir", STATE_DIR.to_owned()),
        ];
        let settings: Vec<String> = settings
            .iter()
            .map(|(k, v)| format!("{k}={}", sh_quote(v)))
            .collect();
        SWITCH.replacen("# @SETTINGS@", &settings.join("\n"), 1)
    }

    /// A oneshot unit running `switch VERB`; `extra` goes in its [Unit] section, `install`
    /// after [Service].
    fn unit(&self, description: &str, verb: &str, extra: &str, install: &str) -> String {
        format!(
            "[Unit]\n\
             Description={description}\n\
             {extra}\
             \n\
             [Service]\n\
             Type=oneshot\n\
             ExecStart=/bin/sh /etc/sysupdate.{name}.d/switch {verb}\n\
             {install}",
            name = self.name,
        )
    }

    /// Writes the host's files below `out` (`out/sysupdate.NAME.d/`, `out/systemd/system/`).
    pub fn write(&self, out: &Utf8Path) -> Result<Vec<Utf8PathBuf>> {
        self.validate()?;
        let dir = out.join(format!("sysupdate.{}.d", self.name));
        let units = out.join("systemd/system");
        for d in [&dir, &units] {
            std::fs::create_dir_all(d).with_context(|| format!("cannot make {d}"))?;
        }
        let mut files: Vec<(Utf8PathBuf, String)> = Vec::new();
        for (n, (host, feed)) in self.files().into_iter().enumerate() {
            let kind = host.trim_start_matches('.').replace('.', "-");
            let stem = format!("{}-{}-{kind}", 10 * (n + 1), self.name);
            // 257 on read *.transfer (and *.conf only when there is none); 254 reads *.conf
            for ext in ["transfer", "conf"] {
                files.push((dir.join(format!("{stem}.{ext}")), self.transfer(host, feed)));
            }
        }
        files.push((dir.join("switch"), self.switch_script()));
        let name = &self.name;
        files.push((
            units.join(format!("{name}-update.service")),
            self.unit(
                &format!("Update {name} from {}", self.url_dir()),
                "update",
                "Wants=network-online.target\nAfter=network-online.target\n",
                "",
            ),
        ));
        files.push((
            units.join(format!("{name}-rollback.service")),
            self.unit(
                &format!("Roll {name} back to the version before, and keep it from coming back"),
                "rollback",
                "",
                "",
            ),
        ));
        // at boot, only when a switch was cut short (the script writes that file first)
        files.push((
            units.join(format!("{name}-recover.service")),
            self.unit(
                &format!("Put back the version of {name} that a switch cut short replaced"),
                "recover",
                &format!(
                    "ConditionPathExists={STATE_DIR}/{name}/switching\nAfter=local-fs.target\n"
                ),
                "\n[Install]\nWantedBy=multi-user.target\n",
            ),
        ));
        files.push((
            units.join(format!("{}-update.timer", self.name)),
            format!(
                "[Unit]\n\
                 Description=Update {name} daily\n\
                 \n\
                 [Timer]\n\
                 OnCalendar=daily\n\
                 RandomizedDelaySec=1h\n\
                 Persistent=true\n\
                 \n\
                 [Install]\n\
                 WantedBy=timers.target\n",
                name = self.name
            ),
        ));
        for (path, text) in &files {
            std::fs::write(path, text).with_context(|| format!("cannot write {path}"))?;
        }
        let mut written: Vec<Utf8PathBuf> = files.into_iter().map(|(p, _)| p).collect();
        // enabled as copied: `cp -r result/systemd/system/* /etc/systemd/system/`
        let wants = units.join("multi-user.target.wants");
        std::fs::create_dir_all(&wants).with_context(|| format!("cannot make {wants}"))?;
        let link = wants.join(format!("{name}-recover.service"));
        std::os::unix::fs::symlink(format!("../{name}-recover.service"), &link)
            .with_context(|| format!("cannot make {link}"))?;
        written.push(link);
        Ok(written)
    }
}
