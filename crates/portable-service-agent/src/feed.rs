//! What comes from the feed and what goes from the target directory: the list fetched and
//! verified, the newest version downloaded beside what runs (each file checked against the
//! list, then made durable and renamed into place), and the versions beyond `keep` removed.

use crate::agent::Run;
use crate::host::Host;
use crate::installed::{self, version_of};
use crate::record::Pair;
use crate::sums::{self, MAX_LIST, MAX_SIGNATURE};
use portable_service_rules::feed::{compare_versions, Date, SIGNATURE, SUMS};
use std::cmp::Ordering;

/// One image's feed: its name, URL and files.
struct Source {
    name: String,
    url: String,
    files: Vec<(String, String)>,
    /// The image's own (not a base): freshness and bad versions apply.
    own: bool,
}

fn url_of(dir: &str, file: &str) -> String {
    format!("{}/{file}", dir.trim_end_matches('/'))
}

fn date_of(day: i64) -> String {
    Date::from_days(day.max(0) as u64).to_string()
}

impl<H: Host> Run<'_, H> {
    /// Fetches the image's feed, and its base's where it has one.
    pub(crate) fn fetch(&mut self) -> Result<(), String> {
        let cfg = self.cfg;
        let mut sources = vec![Source {
            name: cfg.name.clone(),
            url: cfg.url.clone(),
            files: cfg.files.clone(),
            own: true,
        }];
        if let Some(b) = &cfg.base {
            if let Some(url) = &b.url {
                sources.push(Source {
                    name: b.name.clone(),
                    url: url.clone(),
                    files: b.files.clone(),
                    own: false,
                });
            }
        }
        let mut failed = Vec::new();
        for s in sources {
            match self.fetch_one(&s) {
                Ok(Some(v)) => self
                    .host
                    .log(&format!("{}: installed {}_{v}", cfg.name, s.name)),
                Ok(None) => {}
                Err(e) => failed.push(format!("fetching {} from {}: {e}", s.name, s.url)),
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(failed.join("; "))
        }
    }

    /// The list, verified and fresh; then the newest version it offers, if it is newer than
    /// every installed one (and, for the image, than the newest kept): that version.
    fn fetch_one(&mut self, s: &Source) -> Result<Option<String>, String> {
        let list = self
            .host
            .get(&url_of(&s.url, SUMS), MAX_LIST)
            .map_err(|e| format!("{e:#}"))?;
        let signature = self
            .host
            .get(&url_of(&s.url, SIGNATURE), MAX_SIGNATURE)
            .map_err(|e| format!("{e:#}"))?;
        let signer = self
            .host
            .verify(&list, &signature)
            .map_err(|e| format!("{SUMS}'s signature refused: {e:#}"))?;
        let listing = sums::parse(&list).map_err(|e| format!("{SUMS} refused: {e:#}"))?;
        if let Some(day) = listing.best_before {
            let today = (self.host.unix_time() / 86_400) as i64;
            if today >= day {
                return Err(format!(
                    "{SUMS} is stale: best before {}, and today is {}: refusing it (an old list \
                     served again?)",
                    date_of(day),
                    date_of(today)
                ));
            }
        }
        let target = self.listing();
        let newest_installed = installed::versions(&target, &s.name, &s.files)
            .into_iter()
            .next();
        let kept = if s.own {
            self.record.newest_kept.clone()
        } else {
            None
        };
        let suffix = s.files.first().map_or(".raw", |f| f.0.as_str()).to_owned();
        let offered = sums::versions(&listing, &s.name, &s.files);
        let pick = offered.into_iter().find(|(v, _)| {
            let newer = |than: &Option<String>| {
                than.as_deref()
                    .is_none_or(|t| compare_versions(v, t) == Ordering::Greater)
            };
            let file = format!("{}_{v}{suffix}", s.name);
            let bad = s.own
                && self.cfg.base.is_none()
                && self.record.is_bad(&Pair {
                    base: None,
                    image: file,
                });
            newer(&newest_installed) && newer(&kept) && !bad
        });
        let Some((version, files)) = pick else {
            return Ok(None);
        };
        self.host.log(&format!(
            "{}: {}_{version} offered, signed by {signer}: fetching it",
            self.cfg.name, s.name
        ));
        self.install(s, &version, &files)?;
        Ok(Some(version))
    }

    /// Downloads a version's files under temporary names, checks each against the list, makes
    /// them durable and renames them into place, the image last.
    fn install(
        &mut self,
        s: &Source,
        version: &str,
        files: &[(String, String, [u8; 32])],
    ) -> Result<(), String> {
        let dir = self.cfg.target.clone();
        let staged: Vec<(String, String)> = files
            .iter()
            .map(|(host, _, _)| {
                let name = format!("{}_{version}{host}", s.name);
                (format!("{dir}/.{name}.partial"), format!("{dir}/{name}"))
            })
            .collect();
        let result = self.download_all(s, files, &staged);
        if result.is_err() {
            for (partial, _) in &staged {
                let _ = self.host.remove(partial);
            }
        }
        result
    }

    fn download_all(
        &mut self,
        s: &Source,
        files: &[(String, String, [u8; 32])],
        staged: &[(String, String)],
    ) -> Result<(), String> {
        let dir = self.cfg.target.clone();
        self.host
            .make_dir(&dir)
            .map_err(|e| format!("cannot make {dir}: {e}"))?;
        for ((_, feed_name, hash), (partial, _)) in files.iter().zip(staged) {
            let io = |e: std::io::Error| format!("{partial}: {e}");
            self.host.remove(partial).map_err(io)?;
            let url = url_of(&s.url, feed_name);
            self.host.log(&format!("{}: fetching {url}", self.cfg.name));
            let got = self
                .host
                .download(&url, partial, self.cfg.max_file)
                .map_err(|e| format!("{e:#}"))?;
            if &got != hash {
                return Err(format!(
                    "{url}: its bytes are not those {SUMS} lists (a changed or broken file)"
                ));
            }
            self.host.sync_file(partial).map_err(io)?;
        }
        // the image last: a version counts as installed once its image is there
        for (partial, path) in staged.iter().rev() {
            self.host
                .rename(partial, path)
                .map_err(|e| format!("{path}: {e}"))?;
        }
        self.host
            .sync_dir(&dir)
            .map_err(|e| format!("cannot sync {dir}: {e}"))
    }

    /// Removes the versions beyond `keep` (never what runs, the pair before it, a switch's
    /// pairs, nor the newest installed), files left of removed versions, and stale partial
    /// downloads.
    pub(crate) fn prune(&mut self) {
        let cfg = self.cfg;
        let mut sources = vec![(cfg.name.clone(), cfg.files.clone())];
        if let Some(b) = &cfg.base {
            if b.url.is_some() {
                sources.push((b.name.clone(), b.files.clone()));
            }
        }
        let mut protected: Vec<String> = Vec::new();
        let pairs = [
            self.record.running.clone(),
            self.record.previous.clone(),
            self.record.switching.as_ref().map(|s| s.to.clone()),
            self.record.switching.as_ref().and_then(|s| s.from.clone()),
        ];
        for p in pairs.into_iter().flatten() {
            protected.push(p.image);
            protected.extend(p.base);
        }
        // what any attachment runs, another image's over the same base too; unknown: nothing
        // is removed
        match self.host.attached() {
            Ok(attached) => {
                for a in attached {
                    protected.push(a.image);
                    protected.extend(a.extensions);
                }
            }
            Err(e) => {
                self.host
                    .log(&format!("{}: not removing old versions: {e:#}", cfg.name));
                return;
            }
        }
        for (name, files) in sources {
            self.prune_one(&name, &files, &protected);
        }
    }

    fn prune_one(&mut self, name: &str, files: &[(String, String)], protected: &[String]) {
        let dir = self.cfg.target.clone();
        let listing = self.listing();
        let image_suffix = files.first().map_or(".raw", |f| f.0.as_str());
        let versions = installed::versions(&listing, name, files);
        let mut doomed: Vec<String> = Vec::new();
        for (n, v) in versions.iter().enumerate() {
            let image = format!("{name}_{v}{image_suffix}");
            if n >= self.cfg.keep && n > 0 && !protected.contains(&image) {
                doomed.extend(files.iter().map(|(host, _)| format!("{name}_{v}{host}")));
            }
        }
        // files of a version whose image is gone, and partial downloads
        for f in &listing {
            let partial = f.starts_with(&format!(".{name}_")) && f.ends_with(".partial");
            let orphan = files.iter().skip(1).any(|(host, _)| {
                version_of(f, name, host).is_some_and(|v| {
                    !listing.contains(&format!("{name}_{v}{image_suffix}"))
                        && !protected.contains(&format!("{name}_{v}{image_suffix}"))
                })
            });
            if partial || orphan {
                doomed.push(f.clone());
            }
        }
        // the image first: a version stops counting as installed before its other files go
        doomed.sort_by_key(|f| !f.ends_with(image_suffix));
        for f in doomed {
            match self.host.remove(&format!("{dir}/{f}")) {
                Ok(()) => self.host.log(&format!("{}: removed {f}", self.cfg.name)),
                Err(e) => self
                    .host
                    .log(&format!("{}: cannot remove {dir}/{f}: {e}", self.cfg.name)),
            }
        }
        let _ = self.host.sync_dir(&dir);
    }
}
