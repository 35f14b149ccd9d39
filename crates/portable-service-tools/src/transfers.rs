//! The host's side of a feed (see [`crate::feed`]): what `image.sysupdate { url = ...; }`
//! builds, as files to copy under a host's `/etc` (`cp -r result/. /etc/`):
//!
//! - `portable-service-agent/bin/portable-service-agent`: the host agent
//!   (crates/portable-service-agent), static, shared by every image of the host, and
//!   `portable-service-agent/NAME.json`, what it is told of this image
//!   ([`portable_service_rules::agent_config::Config`]);
//! - `systemd/system/NAME-update.service` (the agent's `update`), `NAME-update.timer` (daily,
//!   not enabled), `NAME-rollback.service` (`rollback`) and `NAME-recover.service` (`recover`,
//!   at every boot), each with a time limit;
//! - `sysupdate.NAME.d/*.transfer`: one systemd-sysupdate transfer definition per file of a
//!   version, bound together by `@v`, for those who run systemd's own updater (the agent
//!   doesn't need them; the same feed serves both); each also as `*.conf`, the name systemd 254
//!   reads (257 on read `.transfer`, and `.conf` only if there is none).
//!
//! An extension's agent updates the extension (and its base, from the base's feed when given)
//! and switches by attaching the newest base installed with the newest extension.

use crate::feed::FILES;
use anyhow::{ensure, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use portable_service_rules::agent_config::{self, Config};

/// Where the agent keeps its record and status of each image on the host (`NAME/status`).
pub const STATE_DIR: &str = "/var/lib/portable-service-agent";

/// Where the agent and its configurations go on the host (below `/etc`).
pub const AGENT_DIR: &str = "portable-service-agent";

/// The units' time limits, in seconds: beyond every limit of the agent's own steps (a lock
/// waited for 15 minutes, a file's download, a health window per pair tried), so that systemd
/// stops a run only if the agent itself hangs; the next run then finds the switch written
/// down and finishes it.
const UPDATE_LIMIT: u32 = 2 * 3600;
const ROLLBACK_LIMIT: u32 = 3600;

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
        let d = agent_config::Health::default();
        Health {
            timeout: d.timeout as u32,
            steady: d.steady as u32,
        }
    }
}

/// The extension's base, as the host attaches it.
#[derive(Debug, Clone)]
pub struct Base {
    pub name: String,
    /// The base's own feed, fetched with the extension's; none: the base as installed.
    pub url: Option<String>,
    /// A naked base with its hash tree, root hash and signature beside it.
    pub verity: bool,
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
    /// A command that must exit 0 once the units are up (the program's absolute path first).
    pub health_command: Vec<String>,
    /// portabled's profile to attach with (none: `default`).
    pub profile: Option<String>,
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
            if let Some(url) = &b.url {
                ensure!(
                    ["http://", "https://"].iter().any(|s| url.starts_with(s))
                        && only(url, URL_PUNCTUATION),
                    "base url {url:?}: an http:// or https:// URL of letters, digits and {}",
                    URL_PUNCTUATION.iter().collect::<String>()
                );
            }
        }
        ensure!(
            self.health_command
                .first()
                .is_none_or(|p| p.starts_with('/')),
            "health command {:?}: its program must be an absolute path on the host",
            self.health_command
        );
        if let Some(p) = &self.profile {
            ensure!(
                crate::check::PROFILES.contains(&p.as_str()),
                "profile {p:?} is not one of portablectl's: {}",
                crate::check::PROFILES.join(", ")
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

    /// The agent's configuration for this image.
    pub fn config(&self) -> Config {
        let pairs = |files: Vec<(&str, &str)>| -> Vec<(String, String)> {
            files
                .into_iter()
                .map(|(h, f)| (h.to_owned(), f.to_owned()))
                .collect()
        };
        Config {
            name: self.name.clone(),
            url: self.url.clone(),
            target: self.target.to_string(),
            keep: self.keep as usize,
            files: pairs(self.files()),
            prefixes: self.prefixes.clone(),
            base: self.base.as_ref().map(|b| agent_config::Base {
                name: b.name.clone(),
                url: b.url.clone(),
                files: pairs(FILES[..if b.verity { 4 } else { 1 }].to_vec()),
            }),
            health: agent_config::Health {
                timeout: self.health.timeout.into(),
                steady: self.health.steady.into(),
                command: (!self.health_command.is_empty()).then(|| self.health_command.clone()),
            },
            profile: self.profile.clone(),
            state_dir: STATE_DIR.to_owned(),
            max_file: agent_config::Config::default_max_file(),
        }
    }

    /// A oneshot unit running the agent's `verb` within `limit` seconds; `extra` goes in its
    /// [Unit] section, `install` after [Service].
    fn unit(
        &self,
        description: &str,
        verb: &str,
        limit: u32,
        extra: &str,
        install: &str,
    ) -> String {
        format!(
            "[Unit]\n\
             Description={description}\n\
             {extra}\
             \n\
             [Service]\n\
             Type=oneshot\n\
             ExecStart=/etc/{AGENT_DIR}/bin/portable-service-agent {verb} {name}\n\
             TimeoutStartSec={limit}\n\
             {install}",
            name = self.name,
        )
    }

    /// Writes the host's files below `out` (`out/portable-service-agent/`, `out/systemd/system/`,
    /// `out/sysupdate.NAME.d/`), the agent copied from `agent`.
    pub fn write(&self, out: &Utf8Path, agent: &Utf8Path) -> Result<Vec<Utf8PathBuf>> {
        self.validate()?;
        let dir = out.join(format!("sysupdate.{}.d", self.name));
        let units = out.join("systemd/system");
        let bin = out.join(AGENT_DIR).join("bin");
        for d in [&dir, &units, &bin] {
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
        let name = &self.name;
        let config = serde_json::to_string_pretty(&self.config()).expect("a config serializes");
        files.push((
            out.join(AGENT_DIR).join(format!("{name}.json")),
            config + "\n",
        ));
        files.push((
            units.join(format!("{name}-update.service")),
            self.unit(
                &format!("Update {name} from {}", self.url_dir()),
                "update",
                UPDATE_LIMIT,
                "Wants=network-online.target\nAfter=network-online.target\n",
                "",
            ),
        ));
        files.push((
            units.join(format!("{name}-rollback.service")),
            self.unit(
                &format!("Roll {name} back to the version before, and keep it from coming back"),
                "rollback",
                ROLLBACK_LIMIT,
                "",
                "",
            ),
        ));
        // at every boot: finishes a switch the host went down in, else only says what runs
        files.push((
            units.join(format!("{name}-recover.service")),
            self.unit(
                &format!("Finish a switch of {name} that the host went down in"),
                "recover",
                ROLLBACK_LIMIT,
                "After=local-fs.target\n",
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
        let copy = bin.join("portable-service-agent");
        std::fs::copy(agent, &copy).with_context(|| format!("cannot copy {agent} to {copy}"))?;
        written.push(copy);
        // enabled as copied: `cp -r result/. /etc/`
        let wants = units.join("multi-user.target.wants");
        std::fs::create_dir_all(&wants).with_context(|| format!("cannot make {wants}"))?;
        let link = wants.join(format!("{name}-recover.service"));
        std::os::unix::fs::symlink(format!("../{name}-recover.service"), &link)
            .with_context(|| format!("cannot make {link}"))?;
        written.push(link);
        Ok(written)
    }
}
