//! The agent's record of one image, on the host's disk (`STATE_DIR/NAME/record.json`), and the
//! status a fleet's monitoring reads (`STATE_DIR/NAME/status`).
//!
//! Every write is the same four steps: a new file, its fsync, the rename over the old one, the
//! fsync of the directory; a power cut leaves the old record or the new one, never a mix, and a
//! write that fails is an error the caller reports, never skipped.

use crate::host::Host;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The files that run together: an image, or a base and the extension over it (file names in
/// the target directory).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord, Hash)]
pub struct Pair {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    pub image: String,
}

impl fmt::Display for Pair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.base {
            Some(b) => write!(f, "{b} {}", self.image),
            None => f.write_str(&self.image),
        }
    }
}

/// A switch written down before it starts and crossed out when it ends: found at the start of
/// a run, it was cut short (a power cut, a kill, a hang past the unit's time limit).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Switching {
    pub from: Option<Pair>,
    pub to: Pair,
    /// Boots that found this switch unfinished.
    #[serde(default)]
    pub cuts: u32,
}

/// A pair that failed, and why: never attached again until an operator clears it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bad {
    pub pair: Pair,
    pub why: String,
    /// Seconds since the epoch.
    pub when: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    #[serde(default)]
    pub switching: Option<Switching>,
    /// The pair last kept: it proved healthy.
    #[serde(default)]
    pub running: Option<Pair>,
    /// The pair kept before it: where a rollback goes.
    #[serde(default)]
    pub previous: Option<Pair>,
    #[serde(default)]
    pub bad: Vec<Bad>,
    /// The newest version of the image ever kept: a feed that offers only older ones (an old
    /// list replayed) installs nothing.
    #[serde(default)]
    pub newest_kept: Option<String>,
}

/// Bad pairs remembered at most; the oldest go first.
const MAX_BAD: usize = 64;

impl Record {
    pub fn is_bad(&self, pair: &Pair) -> bool {
        self.bad.iter().any(|b| &b.pair == pair)
    }

    pub fn mark_bad(&mut self, pair: &Pair, why: &str, when: u64) {
        if !self.is_bad(pair) {
            self.bad.push(Bad {
                pair: pair.clone(),
                why: why.to_owned(),
                when,
            });
        }
        if self.bad.len() > MAX_BAD {
            self.bad.remove(0);
        }
    }
}

fn record_path(dir: &str) -> String {
    format!("{dir}/record.json")
}

/// The record in `dir`; an empty one where there is none. A record that can't be parsed (a
/// disk's fault: the writes are atomic) is kept aside and started anew, so that no run is
/// stuck on it. One that can't be read (an I/O error) is an error: a run that went on
/// without it would write an empty record over it, forgetting the versions known bad, the
/// newest one kept and a switch left unfinished.
pub fn load(host: &mut impl Host, dir: &str) -> Result<(Record, Option<String>), String> {
    let path = record_path(dir);
    match host.read(&path) {
        Ok(None) => Ok((Record::default(), None)),
        Ok(Some(bytes)) => match serde_json::from_slice(&bytes) {
            Ok(r) => Ok((r, None)),
            Err(e) => {
                let aside = format!("{path}.unreadable");
                let _ = host.rename(&path, &aside);
                Ok((
                    Record::default(),
                    Some(format!(
                        "{path} could not be read ({e}): kept as {aside}, started anew"
                    )),
                ))
            }
        },
        Err(e) => Err(format!(
            "{path} could not be read ({e}): nothing done, so as to lose nothing of it"
        )),
    }
}

pub fn save(host: &mut impl Host, dir: &str, record: &Record) -> Result<(), String> {
    let bytes = serde_json::to_vec_pretty(record).expect("a record serializes");
    put(host, dir, "record.json", &bytes)
}

/// `dir/name` gets `data`, durably: a power cut leaves the old file or the new one.
pub fn put(host: &mut impl Host, dir: &str, name: &str, data: &[u8]) -> Result<(), String> {
    let path = format!("{dir}/{name}");
    let new = format!("{dir}/.{name}.new");
    let step = |what: &str, e: std::io::Error| format!("cannot write {path} ({what}: {e})");
    host.make_dir(dir)
        .map_err(|e| step("making its directory", e))?;
    host.remove(&new)
        .map_err(|e| step("removing a stale copy", e))?;
    host.create(&new, data).map_err(|e| step("writing", e))?;
    host.sync_file(&new).map_err(|e| step("syncing", e))?;
    host.rename(&new, &path).map_err(|e| step("renaming", e))?;
    host.sync_dir(dir)
        .map_err(|e| step("syncing its directory", e))
}
