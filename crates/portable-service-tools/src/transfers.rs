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

/// What attaches what sysupdate installed (it places files only), for `NAME-update.service` and
/// `NAME-rollback.service`. `update`: fetch the newest version (for an extension, also its
/// base's if the host has the base's transfers); attach it if something is new, or if nothing
/// is attached yet; nothing restarts when nothing is new. `rollback`: attach the version kept
/// beside the newest and remove the newest (the next update fetches it again while the feed
/// offers nothing newer: withdraw it there, or publish a fix). Measured in the VMs: 262 leaves
/// a download it refused as a hidden file and then refuses that version until it is removed,
/// and `portablectl is-attached --quiet` said 0 for an image that was not attached (257), so
/// its output is read.
const SWITCH: &str = r#"#!/bin/sh
# @NAME@: attach what systemd-sysupdate installed into @DIR@ (`switch update`), or go back to
# the version kept beside the newest (`switch rollback`). Written by `portable-service transfers`.
set -eu
versions() { ls -v @DIR@/"$1"_*.raw 2>/dev/null || true; }
newest() { versions "$1" | tail -n 1; }
attached() {
  case "$(portablectl is-attached "$1" 2>/dev/null || true)" in
    attached*|enabled*|running*) return 0 ;;
    *) return 1 ;;
  esac
}
portable() { # attach|reattach IMAGE
  @ATTACH@
}
# what a refused download left, removed before and after, so that a fixed feed gets through
partials() { rm -f @DIR@/.sysupdate.partial."$1"_* @DIR@/.#sysupdate"$1"_*; }
fetch() {
  partials "$1"
  @SYSUPDATE@ --component="$1" update || { partials "$1"; return 1; }
}
# the files of versions sysupdate removed that it left (a root hash: see the transfers)
orphans() {
  for ext in @SIDECARS@; do
    for f in @DIR@/"$1"_*"$ext"; do [ -e "${f%"$ext"}.raw" ] || rm -f "$f"; done
  done
}
case "${1:-}" in
update)
  mkdir -p @DIR@
  # what runs: the newest installed (this script keeps it so); for an image its base is itself
  old=$(newest @NAME@) old_base=$(newest @BASE@)
  fetch @NAME@
  @BASE_FETCH@
  new=$(newest @NAME@) new_base=$(newest @BASE@)
  [ -n "$new" ] || { echo "no version of @NAME@ in @DIR@" >&2; exit 1; }
  if [ -n "$old" ] && attached "$old_base"; then
    [ "$old $old_base" = "$new $new_base" ] || portable reattach "$new"
  else
    portable attach "$new"
  fi
  orphans @NAME@
  orphans @BASE@ ;;
rollback)
  current=$(newest @NAME@)
  previous=$(versions @NAME@ | tail -n 2 | head -n 1)
  [ -n "$current" ] && [ "$previous" != "$current" ] ||
    { echo "no older version of @NAME@ in @DIR@ to roll back to" >&2; exit 1; }
  portable reattach "$previous"
  for ext in .raw @SIDECARS@; do rm -f "${current%.raw}$ext"; done ;;
*) echo "usage: $0 update|rollback" >&2; exit 2 ;;
esac
"#;

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

    /// The switch script (see [`SWITCH`]): `switch update` and `switch rollback`.
    pub fn switch_script(&self) -> String {
        let (base, base_fetch) = match &self.base {
            // an extension is attached over the newest base installed; the base's own feed, if
            // the host has its transfers, is fetched by the same run, so one unit switches both
            Some(b) => (
                b.name.clone(),
                format!("[ ! -d /etc/sysupdate.{0}.d ] || fetch {0}", b.name),
            ),
            None => (String::new(), "# (an image: no base)".to_owned()),
        };
        let attach = if self.base.is_some() {
            "portablectl \"$1\" --now --enable --extension \"$2\" \"$(newest @BASE@)\" @PREFIXES@"
        } else {
            "portablectl \"$1\" --now --enable \"$2\" @PREFIXES@"
        };
        let hosts: Vec<&str> = FILES[1..].iter().map(|(host, _)| *host).collect();
        SWITCH
            .replace("@ATTACH@", attach)
            .replace("@BASE_FETCH@", &base_fetch)
            .replace("@BASE@", if base.is_empty() { "@NAME@" } else { &base })
            .replace("@SIDECARS@", &hosts.join(" "))
            .replace("@PREFIXES@", &self.prefixes.join(" "))
            .replace("@SYSUPDATE@", SYSUPDATE)
            .replace("@DIR@", self.target.as_str())
            .replace("@NAME@", &self.name)
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
