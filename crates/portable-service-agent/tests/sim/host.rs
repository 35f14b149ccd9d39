//! One run's host in the simulator: every call the agent makes is a step, and a schedule breaks
//! one step (or two, across runs) with an error, a hang until the call's time limit, a power
//! cut (the run's later calls reach nothing; the world reboots after it) or a full disk (every
//! write from that step on fails).

use super::world::{sha256, World};
use anyhow::{anyhow, bail, Result};
use portable_service_agent::host::{Attachment, Host, Refused, UnitStatus};
use std::io;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Error,
    Hang,
    Cut,
    /// A power cut after the kernel wrote portabled's files (its attachments and detachments
    /// so far) to disk on its own: portabled doesn't sync them, and the agent syncs them only
    /// when it keeps a version, so a cut may leave them as they were, or as they were at the
    /// cut (nothing attached between a detach and an attach, or the new version attached).
    CutFlushed,
    DiskFull,
}

pub const FAULTS: [Fault; 5] = [
    Fault::Error,
    Fault::Hang,
    Fault::Cut,
    Fault::CutFlushed,
    Fault::DiskFull,
];

/// The time limits of the real host's calls (src/real), which a hang runs into.
const CALL_LIMIT: Duration = Duration::from_secs(60);
const LOCK_LIMIT: Duration = Duration::from_secs(900);

pub struct SimHost<'w> {
    pub world: &'w mut World,
    fault: Option<(usize, Fault)>,
    pub steps: usize,
    full: bool,
    pub cut: bool,
}

impl<'w> SimHost<'w> {
    pub fn new(world: &'w mut World, fault: Option<(usize, Fault)>) -> Self {
        SimHost {
            world,
            fault,
            steps: 0,
            full: false,
            cut: false,
        }
    }

    /// A step: the fault scheduled for it, if any.
    fn step(&mut self, what: &str, limit: Duration) -> Result<()> {
        if self.cut {
            bail!("{what}: the host is off");
        }
        let n = self.steps;
        self.steps += 1;
        match self.fault {
            Some((at, f)) if at == n => match f {
                Fault::Error => bail!("{what}: failed (injected)"),
                Fault::Hang => {
                    self.world.ms += limit.as_millis() as u64;
                    bail!("{what}: no answer within {} s", limit.as_secs())
                }
                Fault::Cut => {
                    self.cut = true;
                    bail!("{what}: power cut")
                }
                Fault::CutFlushed => {
                    self.world.flush_portabled();
                    self.cut = true;
                    bail!("{what}: power cut")
                }
                Fault::DiskFull => {
                    self.full = true;
                    Ok(())
                }
            },
            _ => Ok(()),
        }
    }

    fn io_step(&mut self, what: &str, writes: bool) -> io::Result<()> {
        self.step(what, CALL_LIMIT).map_err(io::Error::other)?;
        if writes && self.full {
            return Err(io::Error::from_raw_os_error(28)); // ENOSPC
        }
        Ok(())
    }
}

impl Host for SimHost<'_> {
    fn elapsed(&mut self) -> Duration {
        Duration::from_millis(self.world.ms)
    }
    fn unix_time(&mut self) -> u64 {
        self.world.unix()
    }
    fn sleep(&mut self, time: Duration) {
        self.world.ms += time.as_millis() as u64;
    }
    fn log(&mut self, line: &str) {
        if !self.cut {
            self.world.log.push(line.to_owned());
        }
    }

    fn read(&mut self, path: &str) -> io::Result<Option<Vec<u8>>> {
        self.io_step("read", false)?;
        Ok(self.world.fs.read(path))
    }
    fn create(&mut self, path: &str, data: &[u8]) -> io::Result<()> {
        self.io_step("create", true)?;
        if !self.world.fs.create(path, data.to_vec()) {
            return Err(io::ErrorKind::AlreadyExists.into());
        }
        Ok(())
    }
    fn sync_file(&mut self, path: &str) -> io::Result<()> {
        self.io_step("fsync", true)?;
        if !self.world.fs.sync_file(path) {
            return Err(io::ErrorKind::NotFound.into());
        }
        Ok(())
    }
    fn rename(&mut self, from: &str, to: &str) -> io::Result<()> {
        self.io_step("rename", true)?;
        if !self.world.fs.rename(from, to) {
            return Err(io::ErrorKind::NotFound.into());
        }
        Ok(())
    }
    fn sync_dir(&mut self, dir: &str) -> io::Result<()> {
        self.io_step("fsync of a directory", true)?;
        self.world.fs.sync_dir(dir);
        Ok(())
    }
    fn remove(&mut self, path: &str) -> io::Result<()> {
        self.io_step("unlink", false)?;
        self.world.fs.remove(path);
        Ok(())
    }
    fn list(&mut self, dir: &str) -> io::Result<Vec<String>> {
        self.io_step("readdir", false)?;
        Ok(self.world.fs.list(dir))
    }
    fn make_dir(&mut self, dir: &str) -> io::Result<()> {
        self.io_step("mkdir", true)?;
        self.world.fs.dirs.insert(dir.to_owned());
        Ok(())
    }
    fn sync_all(&mut self) -> io::Result<()> {
        self.io_step("sync", true)?;
        self.world.sync_all();
        Ok(())
    }

    fn get(&mut self, url: &str, max: u64) -> Result<Vec<u8>> {
        self.step("GET", CALL_LIMIT)?;
        let (dir, file) = url.rsplit_once('/').unwrap();
        let (list, sig) = self
            .world
            .list(dir)
            .ok_or_else(|| anyhow!("{url}: connection refused"))?;
        let body = match file {
            "SHA256SUMS" => list,
            "SHA256SUMS.gpg" => sig,
            _ => bail!("{url}: 404"),
        };
        if body.len() as u64 > max {
            bail!("{url}: more than {max} bytes");
        }
        Ok(body)
    }
    fn download(&mut self, url: &str, to: &str, max: u64) -> Result<[u8; 32]> {
        self.step("GET", CALL_LIMIT)?;
        let (dir, file) = url.rsplit_once('/').unwrap();
        let body = self
            .world
            .feeds
            .get(dir)
            .and_then(|f| f.get(file))
            .cloned()
            .ok_or_else(|| anyhow!("{url}: 404"))?;
        if body.len() as u64 > max {
            bail!("{url}: more than {max} bytes");
        }
        if self.full {
            bail!("{to}: no space left on device");
        }
        if !self.world.fs.create(to, body.clone()) {
            bail!("{to}: exists");
        }
        Ok(sha256(&body))
    }
    fn verify(&mut self, data: &[u8], signature: &[u8]) -> Result<String> {
        self.step("verify", CALL_LIMIT)?;
        let good = format!("signed {}", super::world::hex(&sha256(data)));
        if signature != good.as_bytes() {
            bail!("bad signature");
        }
        Ok("the feed's key".to_owned())
    }

    fn lock(&mut self, _name: &str) -> Result<()> {
        self.step("lock", LOCK_LIMIT)
    }
    fn attached(&mut self) -> Result<Vec<Attachment>> {
        self.step("ListImages", CALL_LIMIT)?;
        Ok(self.world.attached.clone())
    }
    fn attach(
        &mut self,
        dir: &str,
        image: &str,
        extensions: &[String],
        _prefixes: &[String],
    ) -> Result<Vec<String>> {
        self.step("AttachImage", CALL_LIMIT)?;
        self.world
            .attach(dir, image, extensions)
            .map_err(|e| Refused(e).into())
    }
    fn can_reattach(&mut self) -> bool {
        self.world.can_reattach
    }
    fn reattach(
        &mut self,
        dir: &str,
        image: &str,
        extensions: &[String],
        _prefixes: &[String],
    ) -> Result<Vec<String>> {
        self.step("ReattachImage", CALL_LIMIT)?;
        self.world
            .reattach(dir, image, extensions)
            .map_err(|e| Refused(e).into())
    }
    fn detach(&mut self, image: &str, extensions: &[String]) -> Result<()> {
        self.step("DetachImage", CALL_LIMIT)?;
        self.world.detach(image, extensions).map_err(|e| anyhow!(e))
    }
    fn start(&mut self, unit: &str) -> Result<()> {
        self.step("StartUnit", CALL_LIMIT)?;
        self.world.start(unit).map_err(|e| anyhow!(e))
    }
    fn stop(&mut self, unit: &str) -> Result<()> {
        self.step("StopUnit", CALL_LIMIT)?;
        self.world.stop(unit);
        Ok(())
    }
    fn unit(&mut self, unit: &str) -> Result<UnitStatus> {
        self.step("GetUnit", CALL_LIMIT)?;
        Ok(self.world.unit(unit))
    }
    fn run_check(&mut self, _command: &[String], limit: Duration) -> Result<bool> {
        self.step("health command", limit)?;
        let bad = self.world.attached.iter().any(|a| {
            std::iter::once(&a.image).chain(&a.extensions).any(|f| {
                self.world.images.get(f).map(|i| i.0) == Some(super::world::Behaviour::CheckFails)
            })
        });
        Ok(!bad)
    }
}
