//! The simulated host: a file system that loses what wasn't synced at a power cut, portabled's
//! attachments (lost too, unless synced), systemd's units that start, fail, hang, restart or
//! are skipped as their version's behaviour says, a feed, and a clock. It lives across the
//! runs and reboots of a schedule; [`super::host::SimHost`] is one run's view of it.

use portable_service_agent::host::{Attachment, UnitStatus};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};

/// What a version does once attached and started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    Healthy,
    /// Fails a second after its start.
    Crashes,
    /// A condition fails: it never runs.
    Skipped,
    /// Never finishes starting.
    HangsStarting,
    /// Runs for 5 s, then fails.
    FailsAfter5,
    /// Runs for 5 s, then is restarted by systemd, again and again.
    Restarts,
    /// A service whose program ends at once, with success: it never ran.
    ExitsAtOnce,
    /// A oneshot that runs for 2 s and exits 0: healthy.
    OneshotOk,
    /// Its units are up, but the health command fails.
    CheckFails,
    /// portabled refuses to attach it.
    Refused,
}

impl Behaviour {
    pub fn healthy(self) -> bool {
        matches!(self, Behaviour::Healthy | Behaviour::OneshotOk)
    }
}

#[derive(Debug, Clone, Default)]
struct Inode {
    data: Vec<u8>,
    synced: Option<Vec<u8>>,
}

/// Paths to inodes: as the program sees them, and as a power cut would leave them.
#[derive(Debug, Clone, Default)]
pub struct Fs {
    inodes: Vec<Inode>,
    now: BTreeMap<String, usize>,
    durable: BTreeMap<String, usize>,
    pub dirs: BTreeSet<String>,
}

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(d, _)| d)
}

impl Fs {
    pub fn read(&self, path: &str) -> Option<Vec<u8>> {
        self.now.get(path).map(|&i| self.inodes[i].data.clone())
    }
    pub fn create(&mut self, path: &str, data: Vec<u8>) -> bool {
        if self.now.contains_key(path) {
            return false;
        }
        self.inodes.push(Inode { data, synced: None });
        self.now.insert(path.to_owned(), self.inodes.len() - 1);
        true
    }
    /// A file as if it had always been there (the scenarios' setup).
    pub fn put_durable(&mut self, path: &str, data: Vec<u8>) {
        self.inodes.push(Inode {
            synced: Some(data.clone()),
            data,
        });
        let i = self.inodes.len() - 1;
        self.now.insert(path.to_owned(), i);
        self.durable.insert(path.to_owned(), i);
        self.dirs.insert(parent(path).to_owned());
    }
    pub fn sync_file(&mut self, path: &str) -> bool {
        match self.now.get(path) {
            Some(&i) => {
                self.inodes[i].synced = Some(self.inodes[i].data.clone());
                true
            }
            None => false,
        }
    }
    pub fn rename(&mut self, from: &str, to: &str) -> bool {
        match self.now.remove(from) {
            Some(i) => {
                self.now.insert(to.to_owned(), i);
                true
            }
            None => false,
        }
    }
    pub fn sync_dir(&mut self, dir: &str) {
        self.durable.retain(|p, _| parent(p) != dir);
        for (p, &i) in &self.now {
            if parent(p) == dir {
                self.durable.insert(p.clone(), i);
            }
        }
    }
    pub fn remove(&mut self, path: &str) {
        self.now.remove(path);
    }
    pub fn list(&self, dir: &str) -> Vec<String> {
        self.now
            .keys()
            .filter(|p| parent(p) == dir)
            .map(|p| p.rsplit('/').next().unwrap().to_owned())
            .collect()
    }
    pub fn sync_all(&mut self) {
        for i in &mut self.inodes {
            i.synced = Some(i.data.clone());
        }
        self.durable = self.now.clone();
    }
    /// A power cut: the entries as last synced, each file's data as last synced (none: empty).
    pub fn cut(&mut self) {
        self.now = self.durable.clone();
        for i in &mut self.inodes {
            i.data = i.synced.clone().unwrap_or_default();
        }
    }
}

/// A unit that systemd started (forgotten at a reboot).
#[derive(Debug, Clone)]
struct Started {
    /// When its start job runs: until then, systemd still shows the unit as it was.
    at_ms: u64,
    behaviour: Behaviour,
    /// The unit as it was before this start's job ran (none: never started since the boot).
    before: Option<Box<Started>>,
    /// `InactiveExitTimestamp` once the job ran: its time, unless a condition skipped the
    /// unit (which then never left inactive, and keeps the one before).
    inactive_exit: u64,
}

/// How long systemd takes to run a queued start or restart job: `RestartUnit` returns once
/// the job is queued, and systemd runs its job queue at idle priority, after the D-Bus calls
/// already waiting (a `GetUnit` right after the restart sees the unit as it was).
pub const JOB_DELAY_MS: u64 = 100;

/// A realtime timestamp (µs), as systemd's `…Timestamp` properties, of the world's `ms`.
fn stamp(ms: u64) -> u64 {
    (EPOCH * 1000 + ms) * 1000
}

#[derive(Debug, Clone, Default)]
pub struct World {
    pub fs: Fs,
    pub attached: Vec<Attachment>,
    attached_durable: Vec<Attachment>,
    started: BTreeMap<String, Started>,
    pub ms: u64,
    pub boots: u32,
    /// Each image file's behaviour and units, by file name.
    pub images: BTreeMap<String, (Behaviour, Vec<String>)>,
    /// The feeds: URL to (file name to bytes).
    pub feeds: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    /// A date written into a feed's list as `BEST-BEFORE-…` (days since the epoch).
    pub best_before: BTreeMap<String, i64>,
    pub can_reattach: bool,
    pub log: Vec<String>,
}

pub const EPOCH: u64 = 1_780_000_000;

/// An image file's bytes, as the feed serves and the host installs them.
pub fn image_bytes(file: &str) -> Vec<u8> {
    format!("image {file}").into_bytes()
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

pub fn hex(h: &[u8]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

impl World {
    pub fn unix(&self) -> u64 {
        EPOCH + self.ms / 1000
    }

    /// The list a feed serves, and its signature.
    pub fn list(&self, url: &str) -> Option<(Vec<u8>, Vec<u8>)> {
        let files = self.feeds.get(url)?;
        let mut text = String::new();
        for (name, bytes) in files {
            text += &format!("{} *{name}\n", hex(&sha256(bytes)));
        }
        if let Some(day) = self.best_before.get(url) {
            let date = portable_service_rules::feed::Date::from_days(*day as u64);
            text += &format!("{} *BEST-BEFORE-{date}\n", hex(&sha256(b"")));
        }
        let sig = format!("signed {}", hex(&sha256(text.as_bytes()))).into_bytes();
        Some((text.into_bytes(), sig))
    }

    pub fn behaviour(&self, image: &str, extensions: &[String]) -> Behaviour {
        let base = self.images.get(image).map(|i| i.0);
        let ext = extensions
            .iter()
            .find_map(|e| self.images.get(e).map(|i| i.0));
        match (base, ext) {
            (Some(b), _) if !b.healthy() => b,
            (_, Some(e)) => e,
            (Some(b), None) => b,
            (None, None) => Behaviour::Refused,
        }
    }

    /// portabled's attach: the files must be there, whole; the units must not be attached
    /// already.
    pub fn attach(
        &mut self,
        dir: &str,
        image: &str,
        exts: &[String],
    ) -> Result<Vec<String>, String> {
        for f in std::iter::once(image).chain(exts.iter().map(String::as_str)) {
            let path = format!("{dir}/{f}");
            if self.fs.read(&path) != Some(image_bytes(f)) {
                return Err(format!("{path}: not an image"));
            }
        }
        if self.behaviour(image, exts) == Behaviour::Refused {
            return Err(format!("{image}: refused"));
        }
        let owner = exts.last().map_or(image, String::as_str);
        let units = self.images[owner].1.clone();
        for a in &self.attached {
            if a.units.iter().any(|u| units.contains(u)) {
                return Err(format!("{image}: a unit of it is attached already"));
            }
        }
        self.attached.push(Attachment {
            image: image.to_owned(),
            extensions: exts.to_vec(),
            units: units.clone(),
        });
        Ok(units)
    }

    pub fn detach(&mut self, image: &str, exts: &[String]) -> Result<(), String> {
        let before = self.attached.len();
        self.attached
            .retain(|a| !(a.image == image && a.extensions == exts));
        if self.attached.len() == before {
            return Err(format!("{image} is not attached"));
        }
        Ok(())
    }

    /// portabled's reattach: the attachment of the image's name goes, the new one comes; when
    /// the attach fails, the old one is gone all the same.
    pub fn reattach(
        &mut self,
        dir: &str,
        image: &str,
        exts: &[String],
    ) -> Result<Vec<String>, String> {
        let name = image.split('_').next().unwrap().to_owned();
        self.attached
            .retain(|a| a.image.split('_').next().unwrap() != name);
        self.attach(dir, image, exts)
    }

    /// Queues a restart of `unit` (a start if it is stopped): its job runs `JOB_DELAY_MS` later.
    pub fn start(&mut self, unit: &str) -> Result<(), String> {
        self.start_after(unit, JOB_DELAY_MS)
    }

    fn start_after(&mut self, unit: &str, delay_ms: u64) -> Result<(), String> {
        let Some(a) = self
            .attached
            .iter()
            .find(|a| a.units.iter().any(|u| u == unit))
        else {
            return Err(format!("{unit} not found"));
        };
        // a restart, as portablectl's after a reattach: the new version's program runs
        let behaviour = self.behaviour(&a.image.clone(), &a.extensions.clone());
        // the unit as it shows until the job runs: as it was when the last job ran
        let before = match self.started.remove(unit) {
            // a job still queued is merged into this one
            Some(s) if s.at_ms > self.ms => s.before,
            Some(mut s) => {
                s.before = None;
                Some(Box::new(s))
            }
            None => None,
        };
        let at_ms = self.ms + delay_ms;
        let inactive_exit = if behaviour == Behaviour::Skipped {
            before.as_ref().map_or(0, |b| b.inactive_exit)
        } else {
            stamp(at_ms)
        };
        self.started.insert(
            unit.to_owned(),
            Started {
                at_ms,
                behaviour,
                before,
                inactive_exit,
            },
        );
        Ok(())
    }

    pub fn stop(&mut self, unit: &str) {
        self.started.remove(unit);
    }

    pub fn unit(&self, unit: &str) -> UnitStatus {
        let never = UnitStatus {
            active_state: "inactive".into(),
            result: "success".into(),
            service: true,
            ..UnitStatus::default()
        };
        let Some(mut s) = self.started.get(unit) else {
            return never;
        };
        // its job is still queued: the unit shows as it was
        if s.at_ms > self.ms {
            match &s.before {
                Some(b) => s = b,
                None => return never,
            }
        }
        let t = self.ms - s.at_ms;
        let mut st = UnitStatus {
            active_state: "active".into(),
            result: "success".into(),
            service: true,
            started_at: s.inactive_exit,
            checked_at: stamp(s.at_ms),
            runs_own_program: t >= 1000,
            ..UnitStatus::default()
        };
        let activating = |st: &mut UnitStatus| {
            st.active_state = "activating".into();
            st.runs_own_program = false;
        };
        match s.behaviour {
            Behaviour::Healthy | Behaviour::CheckFails | Behaviour::Refused if t < 500 => {
                activating(&mut st)
            }
            Behaviour::Healthy | Behaviour::CheckFails | Behaviour::Refused => {}
            Behaviour::Crashes | Behaviour::FailsAfter5 => {
                let at = if s.behaviour == Behaviour::Crashes {
                    1000
                } else {
                    5000
                };
                if t >= at {
                    st.active_state = "failed".into();
                    st.result = "exit-code".into();
                    st.runs_own_program = false;
                }
            }
            Behaviour::Skipped => {
                st.active_state = "inactive".into();
                st.skipped = true;
                st.runs_own_program = false;
            }
            Behaviour::HangsStarting => activating(&mut st),
            Behaviour::Restarts => {
                st.restarts = (t / 5000) as u32;
                st.started_at = stamp(s.at_ms + 5000 * (t / 5000));
            }
            Behaviour::ExitsAtOnce if t < 500 => activating(&mut st),
            Behaviour::ExitsAtOnce => {
                st.active_state = "inactive".into();
                st.runs_own_program = false;
            }
            Behaviour::OneshotOk => {
                st.oneshot = true;
                if t < 2000 {
                    activating(&mut st)
                } else {
                    st.active_state = "inactive".into();
                    st.exited_ok = true;
                    st.runs_own_program = false;
                }
            }
        }
        st
    }

    pub fn new(can_reattach: bool) -> World {
        World {
            can_reattach,
            ..World::default()
        }
    }

    pub fn sync_all(&mut self) {
        self.fs.sync_all();
        self.attached_durable = self.attached.clone();
    }

    /// portabled's attachments as they are now reach the disk (written back by the kernel).
    pub fn flush_portabled(&mut self) {
        self.attached_durable = self.attached.clone();
    }

    /// A power cut and a boot: what wasn't synced is lost, and the attached units start.
    pub fn reboot(&mut self) {
        self.fs.cut();
        self.attached = self.attached_durable.clone();
        self.started.clear();
        self.boots += 1;
        self.ms += 30_000;
        let units: Vec<String> = self
            .attached
            .iter()
            .flat_map(|a| a.units.clone())
            .filter(|u| !u.contains("@."))
            .collect();
        for u in units {
            let _ = self.start_after(&u, 0);
        }
    }
}
