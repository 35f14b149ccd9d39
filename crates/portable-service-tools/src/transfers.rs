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

/// Where Debian, Fedora and Arch have systemd-sysupdate (not on PATH).
pub const SYSUPDATE: &str = "/usr/lib/systemd/systemd-sysupdate";

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
            scheme_ok && !self.url.chars().any(char::is_whitespace),
            "url {:?}: systemd-sysupdate fetches feeds over http:// or https:// only",
            self.url
        );
        ensure!(
            portable_service_rules::names::is_image_name(&self.name),
            "name {:?} is not an image name",
            self.name
        );
        ensure!(
            self.target.is_absolute(),
            "target {:?} must be an absolute path",
            self.target
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

    fn url_dir(&self) -> String {
        format!("{}/", self.url.trim_end_matches('/'))
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

    /// The switch script: `switch update` (fetch; attach the newest version if it is new, or
    /// if nothing is attached yet) and `switch rollback`.
    pub fn switch_script(&self) -> String {
        let dir = &self.target;
        let name = &self.name;
        let prefixes = self.prefixes.join(" ");
        // what portablectl attaches: the image, or for an extension the newest base installed
        // with the extension's version
        let (attach, attached) = match &self.base {
            None => (
                format!("portablectl \"$1\" --now --enable \"$2\" {prefixes}"),
                "\"$before\"".to_owned(),
            ),
            Some(base) => (
                format!(
                    "portablectl \"$1\" --now --enable --extension \"$2\" \"$(newest {})\" \
                     {prefixes}",
                    base.name
                ),
                format!("\"$(newest {})\"", base.name),
            ),
        };
        let sidecars: Vec<String> = FILES[1..]
            .iter()
            .map(|(host, _)| format!("\"${{1%.raw}}{host}\""))
            .collect();
        let orphans: String = FILES[1..]
            .iter()
            .map(|(host, _)| {
                format!(
                    "  for f in {dir}/{name}_*{host}; do [ -e \"${{f%{host}}}.raw\" ] || rm -f \"$f\"; done\n"
                )
            })
            .collect();
        format!(
            "#!/bin/sh\n\
             # {name}: attach what systemd-sysupdate installed into {dir}, which it doesn't do\n\
             # itself. `switch update`: fetch the newest version of the feed; attach it if it is\n\
             # new, or if nothing is attached yet. `switch rollback`: attach the version kept\n\
             # beside the newest and remove the newest (the next update fetches it again while\n\
             # the feed has nothing newer: withdraw it there, or publish a fix).\n\
             set -eu\n\
             versions() {{ ls -v {dir}/\"$1\"_*.raw 2>/dev/null || true; }}\n\
             newest() {{ versions \"$1\" | tail -n 1; }}\n\
             attached() {{\n\
             \x20 case \"$(portablectl is-attached \"$1\" 2>/dev/null || true)\" in\n\
             \x20   attached*|enabled*|running*) return 0 ;;\n\
             \x20   *) return 1 ;;\n\
             \x20 esac\n\
             }}\n\
             portable() {{ # attach|reattach IMAGE\n\
             \x20 {attach}\n\
             }}\n\
             remove() {{ rm -f \"$1\" {sidecars}; }}\n\
             case \"${{1:-}}\" in\n\
             update)\n\
             \x20 mkdir -p {dir}\n\
             \x20 before=$(newest {name})\n\
             \x20 # a download refused half-way stays behind as a hidden file, and 262 then refuses\n\
             \x20 # that version until it is removed: a fixed feed must get through\n\
             \x20 partials() {{ rm -f {dir}/.sysupdate.partial.{name}_* {dir}/.#sysupdate{name}_*; }}\n\
             \x20 partials\n\
             \x20 {SYSUPDATE} --component={name} update || {{ partials; exit 1; }}\n\
             \x20 after=$(newest {name})\n\
             \x20 [ -n \"$after\" ] || {{ echo \"no version of {name} in {dir}\" >&2; exit 1; }}\n\
             \x20 if [ -n \"$before\" ] && attached {attached}; then\n\
             \x20   [ \"$before\" = \"$after\" ] || portable reattach \"$after\"\n\
             \x20 else\n\
             \x20   portable attach \"$after\"\n\
             \x20 fi\n\
             \x20 # files sysupdate left of versions it removed (a root hash on 262: see the transfers)\n\
             {orphans}\
             \x20 ;;\n\
             rollback)\n\
             \x20 current=$(newest {name})\n\
             \x20 previous=$(versions {name} | tail -n 2 | head -n 1)\n\
             \x20 [ -n \"$current\" ] && [ \"$previous\" != \"$current\" ] ||\n\
             \x20   {{ echo \"no older version of {name} in {dir} to roll back to\" >&2; exit 1; }}\n\
             \x20 portable reattach \"$previous\"\n\
             \x20 remove \"$current\" ;;\n\
             *) echo \"usage: $0 update|rollback\" >&2; exit 2 ;;\n\
             esac\n",
            sidecars = sidecars.join(" "),
        )
    }

    fn unit(&self, what: &str, verb: &str) -> String {
        format!(
            "[Unit]\n\
             Description={what} {name} from {url}\n\
             Wants=network-online.target\n\
             After=network-online.target\n\
             \n\
             [Service]\n\
             Type=oneshot\n\
             ExecStart=/bin/sh /etc/sysupdate.{name}.d/switch {verb}\n",
            name = self.name,
            url = self.url_dir(),
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
        files.push((
            units.join(format!("{}-update.service", self.name)),
            self.unit("Update", "update"),
        ));
        files.push((
            units.join(format!("{}-rollback.service", self.name)),
            self.unit("Roll back", "rollback"),
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
        Ok(files.into_iter().map(|(p, _)| p).collect())
    }
}
