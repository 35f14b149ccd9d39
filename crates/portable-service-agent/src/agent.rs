//! The agent's decisions: `update`, `rollback`, `recover` and `clear`, each one run under the
//! image's lock, from the record on disk to a whole healthy version attached.
//!
//! The rules it keeps, whatever fails:
//! - a switch is written down before it starts and crossed out once the new pair proved
//!   healthy; a run that finds one written down finishes it first (the pair before, else the
//!   newest installed pair not known bad), and then goes on to the fetch, never stuck before it;
//! - a pair whose units don't come up healthy is remembered as bad, with why and when, and never
//!   attached again until an operator clears it; one that portabled refuses or systemd can't be
//!   asked about is not judged, and is not kept either;
//! - what runs and the pair before it are never removed; a version older than the newest one
//!   kept is never installed (a replayed list changes nothing);
//! - a step that fails is said in the status and the journal, never ignored.

use crate::config::Config;
use crate::health::{judge, Verdict};
use crate::host::{Attachment, Host, Refused};
use crate::installed::{self, name_of, pair_of, startable};
use crate::record::{self, Pair, Record, Switching};
use portable_service_rules::feed::compare_versions;
use std::cmp::Ordering;

fn is_up_or_starting(s: &crate::host::UnitStatus) -> bool {
    matches!(
        s.active_state.as_str(),
        "active" | "activating" | "reloading"
    )
}

/// What a run was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Update,
    Rollback,
    Recover,
    /// Forget a bad pair (its image's file name), or all of them.
    Clear(Option<String>),
}

/// How a run ended, as the status file says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// `ok`, `rolled-back` or `failed`.
    pub state: &'static str,
    pub message: String,
}

/// One run of the agent for one image.
pub struct Run<'a, H: Host> {
    pub(crate) host: &'a mut H,
    pub(crate) cfg: &'a Config,
    pub(crate) record: Record,
    /// What went wrong without ending the run.
    notes: Vec<String>,
    /// Units seen attached for this image in this run: stopped before another attach, even
    /// once portabled no longer lists them (a reattach that failed half-way).
    seen_units: Vec<String>,
    /// The last attach was refused by portabled (not merely unanswered).
    refused: bool,
    /// For each unit the last bring-up returned: how it was just before its start was
    /// queued (none: it was up already and not started again).
    before_start: Vec<Option<crate::host::UnitStatus>>,
}

/// Runs `command` for the image of `cfg`; the status file is written whatever happens.
pub fn run(host: &mut impl Host, cfg: &Config, command: &Command) -> Report {
    if let Err(e) = host.lock(cfg.attached_name()) {
        let report = Report {
            state: "failed",
            message: format!("{e:#}"),
        };
        host.log(&format!("{}: {}", cfg.name, report.message));
        return report;
    }
    let (record, note) = match record::load(host, &cfg.state()) {
        Ok(loaded) => loaded,
        Err(e) => {
            host.log(&format!("{}: {e}", cfg.name));
            let status = format!(
                "STATE=failed\nMESSAGE={}\nTIME={}\n",
                e.replace('\n', " "),
                host.unix_time()
            );
            let mut message = e;
            if let Err(w) = record::put(host, &cfg.state(), "status", status.as_bytes()) {
                message = format!("{message}; {w}");
            }
            return Report {
                state: "failed",
                message,
            };
        }
    };
    let mut run = Run {
        host,
        cfg,
        record,
        notes: note.into_iter().collect(),
        seen_units: Vec::new(),
        refused: false,
        before_start: Vec::new(),
    };
    let result = match command {
        Command::Update => run.heal(false).and_then(|()| run.update()),
        Command::Rollback => run.heal(false).and_then(|()| run.rollback()),
        Command::Recover => run.heal(true).map(|()| "recovered".to_owned()),
        Command::Clear(which) => run.clear(which.as_deref()),
    };
    run.finish(command, result)
}

impl<H: Host> Run<'_, H> {
    fn say(&mut self, line: &str) {
        let line = format!("{}: {line}", self.cfg.name);
        self.host.log(&line);
    }

    fn note(&mut self, line: String) {
        self.say(&line);
        self.notes.push(line);
    }

    fn save(&mut self) -> Result<(), String> {
        let dir = self.cfg.state();
        record::save(self.host, &dir, &self.record)
    }

    /// Saves, and notes a failure (the run goes on: the record on disk stays the older one).
    fn save_or_note(&mut self) {
        if let Err(e) = self.save() {
            self.note(e);
        }
    }

    /// The names in the target directory; none, said in the status, when it can't be read.
    pub(crate) fn listing(&mut self) -> Vec<String> {
        match self.host.list(&self.cfg.target) {
            Ok(l) => l,
            Err(e) => {
                self.note(format!("cannot list {}: {e}", self.cfg.target));
                Vec::new()
            }
        }
    }

    fn installed(&mut self, pair: &Pair) -> bool {
        let listing = self.listing();
        installed::pairs(self.cfg, &listing).contains(pair)
    }

    /// The installed pairs not known bad, newest first.
    fn good_pairs(&mut self) -> Vec<Pair> {
        let listing = self.listing();
        installed::pairs(self.cfg, &listing)
            .into_iter()
            .filter(|p| !self.record.is_bad(p))
            .collect()
    }

    /// What portabled has attached, and which of it is this image's (whose units are noted as
    /// seen in this run).
    fn attachments(&mut self) -> Result<(Vec<Attachment>, Vec<Attachment>), String> {
        let attached = self
            .host
            .attached()
            .map_err(|e| format!("cannot ask portabled what is attached: {e:#}"))?;
        let ours: Vec<Attachment> = installed::ours(self.cfg, &attached)
            .into_iter()
            .cloned()
            .collect();
        for u in ours.iter().flat_map(|a| &a.units) {
            if !self.seen_units.contains(u) {
                self.seen_units.push(u.clone());
            }
        }
        Ok((attached, ours))
    }

    /// The pair attached now: `Ok(None)` when nothing of ours is (or more than one attachment
    /// is, which the next attach replaces), an error when portabled can't be asked.
    fn current(&mut self) -> Result<Option<Pair>, String> {
        let (_, ours) = self.attachments()?;
        match ours.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(pair_of(self.cfg, one))),
            // not a pair that runs: the next attach takes them all down first
            more => {
                let n = more.len();
                self.note(format!("{n} attachments of {} at once", self.cfg.name));
                Ok(None)
            }
        }
    }

    /// Stops the units of this image seen in this run and detaches every attachment of it.
    fn take_down(&mut self) -> Result<(), String> {
        let (_, ours) = self.attachments()?;
        for u in startable(&self.seen_units.clone()) {
            self.host
                .stop(&u)
                .map_err(|e| format!("cannot stop {u}: {e:#}"))?;
        }
        for a in ours {
            self.say(&format!("detaching {}", a.image));
            self.host
                .detach(&a.image, &a.extensions)
                .map_err(|e| format!("portabled did not detach {}: {e:#}", a.image))?;
        }
        Ok(())
    }

    /// Leaves exactly `pair` attached for this image, its units started; those units.
    fn bring_up(&mut self, pair: &Pair) -> Result<Vec<String>, String> {
        let (image, extensions) = match &pair.base {
            Some(b) => (b.clone(), vec![pair.image.clone()]),
            None => (pair.image.clone(), Vec::new()),
        };
        let (attached, ours) = self.attachments()?;
        let mut fresh = true;
        let units = if let [one] = ours.as_slice() {
            if one.image == image && one.extensions == extensions {
                fresh = false;
                one.units.clone()
            } else {
                // another image's attachment of the same base would go with a reattach
                let shared = attached
                    .iter()
                    .any(|a| name_of(&a.image) == name_of(&image) && !ours.contains(a));
                if !shared && self.host.can_reattach() {
                    self.reattach(&image, &extensions)?
                } else {
                    self.take_down()?;
                    self.attach(&image, &extensions)?
                }
            }
        } else {
            self.take_down()?;
            self.attach(&image, &extensions)?
        };
        let units = startable(&units);
        if fresh {
            // units of the version before that the new one doesn't have
            for u in startable(&self.seen_units.clone()) {
                if !units.contains(&u) {
                    self.host
                        .stop(&u)
                        .map_err(|e| format!("cannot stop {u}: {e:#}"))?;
                }
            }
        }
        self.before_start.clear();
        for u in &units {
            let before = self
                .host
                .unit(u)
                .map_err(|e| format!("cannot ask systemd about {u}: {e:#}"))?;
            if !fresh && is_up_or_starting(&before) {
                self.before_start.push(None);
                continue;
            }
            self.host
                .start(u)
                .map_err(|e| format!("cannot start {u}: {e:#}"))?;
            self.before_start.push(Some(before));
        }
        for u in &units {
            if !self.seen_units.contains(u) {
                self.seen_units.push(u.clone());
            }
        }
        Ok(units)
    }

    fn attach(&mut self, image: &str, extensions: &[String]) -> Result<Vec<String>, String> {
        self.say(&format!("attaching {image} {}", extensions.join(" ")));
        self.host
            .attach(&self.cfg.target, image, extensions, &self.cfg.prefixes)
            .map_err(|e| {
                self.refused = e.downcast_ref::<Refused>().is_some();
                format!("portabled did not attach {image}: {e:#}")
            })
    }

    /// portabled's reattach; where it fails half-way, what it left is taken down and the pair
    /// attached anew.
    fn reattach(&mut self, image: &str, extensions: &[String]) -> Result<Vec<String>, String> {
        self.say(&format!("reattaching {image} {}", extensions.join(" ")));
        match self
            .host
            .reattach(&self.cfg.target, image, extensions, &self.cfg.prefixes)
        {
            Ok(units) => Ok(units),
            Err(e) => {
                self.note(format!("portabled did not reattach {image}: {e:#}"));
                self.take_down()?;
                self.attach(image, extensions)
            }
        }
    }

    /// Attaches `pair` and judges it.
    fn try_pair(&mut self, pair: &Pair) -> Verdict {
        self.refused = false;
        match self.bring_up(pair) {
            Err(e) if self.refused => Verdict::Unhealthy(e),
            Err(e) => Verdict::Unknown(e),
            Ok(units) => {
                self.say(&format!("{pair} attached: checking {}", units.join(" ")));
                let before = std::mem::take(&mut self.before_start);
                judge(self.host, &units, &before, &self.cfg.health)
            }
        }
    }

    /// The first of `candidates` that proves healthy, attached; those that fail are remembered
    /// as bad. With none, nothing of this image stays attached.
    fn settle(&mut self, candidates: Vec<Pair>) -> Option<Pair> {
        let mut seen = Vec::new();
        for pair in candidates {
            if seen.contains(&pair) || self.record.is_bad(&pair) {
                continue;
            }
            seen.push(pair.clone());
            match self.try_pair(&pair) {
                Verdict::Healthy => return Some(pair),
                Verdict::Unhealthy(why) => self.remember_bad(&pair, &why),
                Verdict::Unknown(why) => self.note(format!("{pair} could not be tried: {why}")),
            }
        }
        if let Err(e) = self.take_down() {
            self.note(format!("nothing healthy to attach, and {e}"));
        }
        None
    }

    fn remember_bad(&mut self, pair: &Pair, why: &str) {
        self.say(&format!("remembering {pair} as bad: {why}"));
        let now = self.host.unix_time();
        self.record.mark_bad(pair, why, now);
        self.save_or_note();
    }

    /// `to` proved healthy: it is what runs, and `from` the pair to roll back to.
    fn commit(&mut self, from: Option<Pair>, to: &Pair) -> Result<(), String> {
        self.host
            .sync_all()
            .map_err(|e| format!("cannot sync portabled's files: {e}"))?;
        if let Some(from) = from.filter(|f| f != to) {
            self.record.previous = Some(from);
        }
        self.record.running = Some(to.clone());
        let cfg = self.cfg;
        let suffix = cfg.files.first().map_or(".raw", |f| f.0.as_str());
        if let Some(v) = installed::version_of(&to.image, &cfg.name, suffix) {
            let newer = self
                .record
                .newest_kept
                .as_deref()
                .is_none_or(|k| compare_versions(v, k) == Ordering::Greater);
            if newer {
                self.record.newest_kept = Some(v.to_owned());
            }
        }
        self.record.switching = None;
        self.save()
    }

    /// A switch found written down was cut short, or a run before failed to finish it: it is
    /// finished now, before anything else. Found at boot (`boot`), the host went down in it:
    /// a pair whose switch the host went down in twice is remembered as bad (it may be what
    /// brings the host down).
    fn heal(&mut self, boot: bool) -> Result<(), String> {
        let Some(mut sw) = self.record.switching.clone() else {
            return Ok(());
        };
        if boot {
            sw.cuts += 1;
        }
        let from = sw
            .from
            .as_ref()
            .map_or("nothing".to_owned(), Pair::to_string);
        self.say(&format!(
            "the switch from {from} to {} was left unfinished (the host went down in it {} \
             time(s))",
            sw.to, sw.cuts
        ));
        if sw.cuts >= 2 {
            let why = format!(
                "the host went down {} times in its switch: it may be what brings it down",
                sw.cuts
            );
            self.remember_bad(&sw.to, &why);
        }
        self.record.switching = Some(sw.clone());
        self.save_or_note();
        // the switch reached its end, only its record wasn't crossed out
        let current = self.current().unwrap_or_else(|e| {
            self.note(e);
            None
        });
        if current.as_ref() == Some(&sw.to) && !self.record.is_bad(&sw.to) {
            if let Verdict::Healthy = self.try_pair(&sw.to) {
                return self.commit(sw.from, &sw.to);
            }
        }
        let mut candidates: Vec<Pair> = sw
            .from
            .clone()
            .filter(|f| self.installed(f))
            .into_iter()
            .collect();
        candidates.extend(self.good_pairs());
        match self.settle(candidates) {
            Some(p) => {
                let previous = self.record.previous.clone();
                self.commit(previous, &p)?;
                self.say(&format!("{p} runs again"));
            }
            None => {
                self.record.running = None;
                self.record.switching = None;
                self.save_or_note();
            }
        }
        Ok(())
    }
}

impl<H: Host> Run<'_, H> {
    fn update(&mut self) -> Result<String, String> {
        let fetched = self.fetch();
        let mut outcome = self.update_once();
        // a pair that failed is bad now: the next newest is tried, until one holds or a
        // failure says nothing of the pair (portabled or systemd not answering)
        let mut tries = self.listing().len();
        while let Err(why) = &outcome {
            let failed_pair = self.record.bad.len();
            if tries == 0 || !why.contains("is not healthy") || failed_pair == 0 {
                break;
            }
            tries -= 1;
            outcome = match self.update_once() {
                // the next newest good pair, switched to and healthy
                Ok((m, true)) => Ok((format!("{why}; then {m}"), true)),
                // nothing newer than what runs again: the version this update was for failed,
                // and the run says so (a unit that succeeded here hid it from the host's
                // monitoring: measured in a VM, `STATE=ok` after a 2.0 that failed its start)
                Ok((_, false)) => break,
                Err(e) if e == *why => break,
                Err(e) => Err(format!("{why}; then {e}")),
            };
        }
        self.prune();
        let (message, _) = outcome?;
        match fetched {
            Ok(()) => Ok(message),
            Err(e) => Err(format!("{e}; {message}")),
        }
    }

    /// One step of an update: the newest good pair, switched to unless it runs; what was done,
    /// and whether it switched.
    fn update_once(&mut self) -> Result<(String, bool), String> {
        let current = self.current()?;
        let want = self.good_pairs().into_iter().next();
        match (&want, &current) {
            (None, None) => Err(format!(
                "no version of {} to attach in {}",
                self.cfg.name, self.cfg.target
            )),
            (None, Some(cur)) => Ok((format!("{cur} runs: nothing else to attach"), false)),
            (Some(w), Some(cur)) if w == cur => {
                if self.record.running.as_ref() != Some(cur) {
                    // attached by hand, or kept by a record that a full disk didn't let us write
                    let previous = self.record.previous.clone();
                    self.commit(previous, cur)?;
                }
                Ok((format!("{cur} runs: nothing newer to switch to"), false))
            }
            (Some(w), _) => {
                let w = w.clone();
                self.switch(current, &w).map(|m| (m, true))
            }
        }
    }

    /// Switches from `from` (what runs, or nothing) to `to`: written down first, then
    /// attached, then kept only if healthy; otherwise what ran before is put back.
    fn switch(&mut self, from: Option<Pair>, to: &Pair) -> Result<String, String> {
        let before = self.record.clone();
        self.record.switching = Some(Switching {
            from: from.clone(),
            to: to.clone(),
            cuts: 0,
        });
        if let Err(e) = self.save() {
            self.record = before;
            return Err(format!("{e}: not switching to {to}"));
        }
        let from_text = from.as_ref().map_or("nothing".to_owned(), Pair::to_string);
        self.say(&format!("switching from {from_text} to {to}"));
        let why = match self.try_pair(to) {
            Verdict::Healthy => {
                self.commit(from, to)?;
                return Ok(format!("{to} runs and is healthy"));
            }
            Verdict::Unhealthy(why) => {
                self.remember_bad(to, &why);
                format!("{to} is not healthy: {why}")
            }
            Verdict::Unknown(why) => format!("{to} could not be tried: {why}"),
        };
        let runs = self.put_back(from, to);
        Err(format!("{why}; {runs}"))
    }

    /// After `failed` didn't prove itself: `from` again, else the newest installed good pair,
    /// else nothing. What runs, said.
    fn put_back(&mut self, from: Option<Pair>, failed: &Pair) -> String {
        let mut candidates: Vec<Pair> = from.filter(|f| self.installed(f)).into_iter().collect();
        candidates.extend(self.good_pairs());
        candidates.retain(|p| p != failed);
        let previous = self.record.previous.clone();
        match self.settle(candidates) {
            Some(p) => match self.commit(previous, &p) {
                Ok(()) => format!("{p} runs"),
                Err(e) => format!("{p} runs, but {e}"),
            },
            None => {
                self.record.running = None;
                self.record.switching = None;
                self.save_or_note();
                format!("nothing of {} runs", self.cfg.name)
            }
        }
    }

    fn rollback(&mut self) -> Result<String, String> {
        let current = self.current()?.or(self.record.running.clone());
        let Some(cur) = current else {
            return Err(format!(
                "nothing of {} is attached: nothing to roll back",
                self.cfg.name
            ));
        };
        let good = self.good_pairs();
        let recorded = self
            .record
            .previous
            .clone()
            .filter(|p| *p != cur && good.contains(p));
        let older = good.into_iter().find(|p| self.older(p, &cur));
        let Some(to) = recorded.or(older) else {
            return Err(format!(
                "no version of {} kept in {} to roll back to from {cur}",
                self.cfg.name, self.cfg.target
            ));
        };
        self.remember_bad(&cur, "rolled back by hand");
        match self.switch(Some(cur.clone()), &to) {
            Ok(_) => Ok(format!(
                "{to} runs; {cur} was rolled back and won't be attached again"
            )),
            Err(why) => {
                // the one rolled back from is all there is: it runs again, and isn't bad
                self.record.bad.retain(|b| b.pair != cur);
                self.save_or_note();
                if self.record.running.is_none() {
                    if let Some(p) = self.settle(vec![cur.clone()]) {
                        let previous = self.record.previous.clone();
                        self.commit(previous, &p)?;
                    }
                }
                Err(format!("rolling back to {to} failed: {why}"))
            }
        }
    }

    /// Whether pair `a` is older than `b`: its image's version, then its base's.
    fn older(&self, a: &Pair, b: &Pair) -> bool {
        let v = |f: &str| f.split_once('_').map_or("", |(_, r)| r).to_owned();
        let image = compare_versions(&v(&a.image), &v(&b.image));
        let base = compare_versions(
            &v(a.base.as_deref().unwrap_or("")),
            &v(b.base.as_deref().unwrap_or("")),
        );
        image.then(base) == Ordering::Less
    }

    fn clear(&mut self, which: Option<&str>) -> Result<String, String> {
        let before = self.record.bad.len();
        self.record
            .bad
            .retain(|b| which.is_some_and(|w| b.pair.image != w && b.pair.to_string() != w));
        let cleared = before - self.record.bad.len();
        self.save()?;
        match (which, cleared) {
            (Some(w), 0) => Err(format!("{w} is not remembered as bad")),
            _ => Ok(format!("{cleared} bad version(s) forgotten")),
        }
    }

    /// Writes the status file and says how the run ended.
    fn finish(&mut self, command: &Command, result: Result<String, String>) -> Report {
        let (state, mut message) = match (&result, command) {
            (Ok(m), Command::Rollback) => ("rolled-back", m.clone()),
            (Ok(m), _) => ("ok", m.clone()),
            (Err(e), _) => ("failed", e.clone()),
        };
        if !self.notes.is_empty() {
            message = format!("{message} (also: {})", self.notes.join("; "));
        }
        self.say(&message);
        let pair = |p: &Option<Pair>| p.as_ref().map(Pair::to_string).unwrap_or_default();
        let bad: Vec<String> = self.record.bad.iter().map(|b| b.pair.to_string()).collect();
        let status = format!(
            "STATE={state}\nRUNNING={}\nPREVIOUS={}\nBAD={}\nNEWEST_KEPT={}\nMESSAGE={}\nTIME={}\n",
            pair(&self.record.running),
            pair(&self.record.previous),
            bad.join(","),
            self.record.newest_kept.clone().unwrap_or_default(),
            message.replace('\n', " "),
            self.host.unix_time(),
        );
        let dir = self.cfg.state();
        let mut state = state;
        if let Err(e) = record::put(self.host, &dir, "status", status.as_bytes()) {
            self.say(&e);
            state = "failed";
            message = format!("{message}; {e}");
        }
        Report { state, message }
    }
}
