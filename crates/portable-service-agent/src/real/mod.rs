//! The real host: the agent's [`Host`] on a running system, as root. Files by plain system
//! calls (`files`), the update lock by `flock(2)` (`lock`), portabled's attachments read from
//! its drop-ins (`dropins`), portabled and systemd over the system bus (`bus`, `portabled`,
//! `systemd`, `status`), health commands in a process group of their own (`check`), and the
//! feed and keyring by `crate::fetch` and `crate::keyring`. Every call answers within a limit
//! of [`Limits`] (or of the fetch's limits), or returns an error.

pub mod bus;
pub mod check;
pub mod dropins;
pub mod files;
pub mod lock;
pub mod portabled;
pub mod status;
pub mod systemd;

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, Context};

use crate::host::{Attachment, Host, Refused, Result, UnitStatus};
use bus::Bus;

/// The time limits of the real host's calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// A D-Bus call, and a connection to the bus: 60 s.
    pub call: Duration,
    /// portabled's attach, reattach and detach, and systemd's reload after each: 120 s.
    pub attach: Duration,
    /// A unit's stop, until it is inactive or failed: 60 s.
    pub stop: Duration,
    /// Waiting for another holder of an update lock: 15 minutes.
    pub lock: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            call: Duration::from_secs(60),
            attach: Duration::from_secs(120),
            stop: Duration::from_secs(60),
            lock: Duration::from_secs(15 * 60),
        }
    }
}

/// What a [`RealHost`] can be told; [`Settings::default`] is the host's.
pub struct Settings {
    pub limits: Limits,
    /// The feed's bounds, for `crate::fetch`.
    pub fetch: crate::fetch::Limits,
    /// portabled's profile for attach and reattach: `default`.
    pub profile: String,
    /// Where the update locks are: `/run/lock`.
    pub lock_dir: PathBuf,
    /// Under which portabled's drop-ins are read: `/`.
    pub root: PathBuf,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            limits: Limits::default(),
            fetch: crate::fetch::Limits::default(),
            profile: "default".into(),
            lock_dir: PathBuf::from("/run/lock"),
            root: PathBuf::from("/"),
        }
    }
}

/// The host the agent runs on.
pub struct RealHost {
    pub settings: Settings,
    started: Instant,
    /// The update locks held, by image name: held while their files are open.
    locks: Vec<(String, File)>,
    bus: Bus,
    /// Whether portabled has ReattachImage, once it said.
    reattach: Option<bool>,
    /// Whether systemd has `EnableUnitFilesWithFlags` (247+), once it said.
    enable_with_flags: Option<bool>,
}

impl Default for RealHost {
    fn default() -> Self {
        RealHost::new(Settings::default())
    }
}

impl RealHost {
    /// portabled's attach (or `reattach`) of `dir/image` with `dir/extensions`, then systemd's
    /// reload; the units attached. portabled's error reply is its refusal of the image.
    fn place(
        &mut self,
        reattach: bool,
        dir: &str,
        image: &str,
        extensions: &[String],
        prefixes: &[String],
    ) -> Result<Vec<String>> {
        let path = Path::new(dir).join(image);
        let extensions = in_dir(dir, extensions);
        let placing = portabled::Placing {
            profile: &self.settings.profile,
            image: &path,
            extensions: &extensions,
            matches: prefixes,
        };
        let limit = self.settings.limits.attach;
        let units = if reattach {
            portabled::reattach(&mut self.bus, limit, &placing)
        } else {
            portabled::attach(&mut self.bus, limit, &placing)
        }
        .map_err(refusal)?;
        let verb = if reattach { "reattaching" } else { "attaching" };
        self.reload(&format!("after {verb} {}", path.display()))?;
        Ok(units)
    }

    /// A host with `settings`; its clock (`elapsed`) starts now. Nothing is opened yet: the bus
    /// on the first D-Bus call.
    pub fn new(settings: Settings) -> Self {
        RealHost {
            settings,
            started: Instant::now(),
            locks: Vec::new(),
            bus: Bus::default(),
            reattach: None,
            enable_with_flags: None,
        }
    }

    /// The attachment portabled has of image file `image`, preferring the one with
    /// `extensions` (file names).
    fn find_attachment(&self, image: &str, extensions: &[String]) -> Result<dropins::Found> {
        let found =
            dropins::attachments(&self.settings.root).context("reading portabled's drop-ins")?;
        let all: Vec<_> = found
            .into_iter()
            .filter(|a| file_name(&a.image) == image)
            .collect();
        let names = |a: &dropins::Found| {
            a.extensions
                .iter()
                .map(|p| file_name(p))
                .collect::<Vec<_>>()
        };
        all.iter()
            .find(|a| names(a) == extensions)
            .or(all.first())
            .cloned()
            .ok_or_else(|| {
                anyhow!("DetachImage {image}: not attached (no drop-in of portabled names it)")
            })
    }

    fn reload(&mut self, after: &str) -> Result<()> {
        systemd::reload(&mut self.bus, self.settings.limits.attach, after)
    }
}

/// A path's file name, as text.
fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn in_dir(dir: &str, names: &[String]) -> Vec<PathBuf> {
    names.iter().map(|n| Path::new(dir).join(n)).collect()
}

impl Host for RealHost {
    fn elapsed(&mut self) -> Duration {
        self.started.elapsed()
    }

    fn unix_time(&mut self) -> u64 {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    fn sleep(&mut self, time: Duration) {
        std::thread::sleep(time);
    }

    /// One line on stderr, which journald takes from a unit (an error writing it is ignored).
    fn log(&mut self, line: &str) {
        let line = line.replace('\n', " ");
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }

    fn read(&mut self, path: &str) -> std::io::Result<Option<Vec<u8>>> {
        files::read(path)
    }

    fn create(&mut self, path: &str, data: &[u8]) -> std::io::Result<()> {
        files::create(path, data)
    }

    fn sync_file(&mut self, path: &str) -> std::io::Result<()> {
        files::sync_file(path)
    }

    fn rename(&mut self, from: &str, to: &str) -> std::io::Result<()> {
        files::rename(from, to)
    }

    fn sync_dir(&mut self, dir: &str) -> std::io::Result<()> {
        files::sync_dir(dir)
    }

    fn remove(&mut self, path: &str) -> std::io::Result<()> {
        files::remove(path)
    }

    fn list(&mut self, dir: &str) -> std::io::Result<Vec<String>> {
        files::list(dir)
    }

    fn make_dir(&mut self, dir: &str) -> std::io::Result<()> {
        files::make_dir(dir)
    }

    fn sync_all(&mut self) -> std::io::Result<()> {
        files::sync_all();
        Ok(())
    }

    fn get(&mut self, url: &str, max: u64) -> Result<Vec<u8>> {
        // a list and a signature: small, so a minute at most whatever the files may take
        let limits = crate::fetch::Limits {
            connect: self.settings.fetch.connect,
            total: self.settings.fetch.total.min(Duration::from_secs(60)),
        };
        crate::fetch::get(url, max, &limits)
    }

    fn download(&mut self, url: &str, to: &str, max: u64) -> Result<[u8; 32]> {
        crate::fetch::download(url, Path::new(to), max, &self.settings.fetch)
    }

    fn verify(&mut self, data: &[u8], signature: &[u8]) -> Result<String> {
        crate::keyring::verify(data, signature)
    }

    /// Held until the process ends; taken again by the same host: already held.
    fn lock(&mut self, name: &str) -> Result<()> {
        if self.locks.iter().any(|(held, _)| held == name) {
            return Ok(());
        }
        let (dir, limit) = (self.settings.lock_dir.clone(), self.settings.limits.lock);
        let file = lock::take(&dir, name, limit, &mut |line| self.log(line))?;
        self.locks.push((name.to_string(), file));
        Ok(())
    }

    /// From portabled's drop-ins (see `dropins`): file names.
    fn attached(&mut self) -> Result<Vec<Attachment>> {
        let found =
            dropins::attachments(&self.settings.root).context("reading portabled's drop-ins")?;
        Ok(found
            .into_iter()
            .map(|a| Attachment {
                image: file_name(&a.image),
                extensions: a.extensions.iter().map(|p| file_name(p)).collect(),
                units: a.units,
            })
            .collect())
    }

    fn attach(
        &mut self,
        dir: &str,
        image: &str,
        extensions: &[String],
        prefixes: &[String],
    ) -> Result<Vec<String>> {
        self.place(false, dir, image, extensions, prefixes)
    }

    fn can_reattach(&mut self) -> bool {
        if let Some(known) = self.reattach {
            return known;
        }
        match portabled::can_reattach(&mut self.bus, self.settings.limits.call) {
            Ok(known) => {
                self.reattach = Some(known);
                known
            }
            Err(e) => {
                self.log(&format!("{e:#}"));
                false
            }
        }
    }

    fn reattach(
        &mut self,
        dir: &str,
        image: &str,
        extensions: &[String],
        prefixes: &[String],
    ) -> Result<Vec<String>> {
        self.place(true, dir, image, extensions, prefixes)
    }

    /// The image's path (and its extensions') as portabled's drop-ins have them; its units
    /// disabled first (an error only logged, as portablectl does), then detached.
    fn detach(&mut self, image: &str, extensions: &[String]) -> Result<()> {
        let found = self.find_attachment(image, extensions)?;
        let paths: Vec<PathBuf> = extensions
            .iter()
            .map(|name| {
                let known = found.extensions.iter().find(|p| file_name(p) == *name);
                known
                    .cloned()
                    .unwrap_or_else(|| found.image.with_file_name(name))
            })
            .collect();
        let limit = self.settings.limits.call;
        for unit in &found.units {
            if let Err(e) =
                systemd::disable(&mut self.bus, limit, unit, &mut self.enable_with_flags)
            {
                self.log(&format!("{e:#}"));
            }
        }
        portabled::detach(
            &mut self.bus,
            self.settings.limits.attach,
            &found.image,
            &paths,
        )?;
        self.reload(&format!("after detaching {}", found.image.display()))
    }

    fn start(&mut self, unit: &str) -> Result<()> {
        let limit = self.settings.limits.call;
        systemd::enable(&mut self.bus, limit, unit, &mut self.enable_with_flags)?;
        systemd::start(&mut self.bus, limit, unit)
    }

    fn stop(&mut self, unit: &str) -> Result<()> {
        let limits = &self.settings.limits;
        systemd::stop(&mut self.bus, limits.call, limits.stop, unit)
    }

    fn unit(&mut self, unit: &str) -> Result<UnitStatus> {
        status::unit(&mut self.bus, self.settings.limits.call, unit)
    }

    fn run_check(&mut self, command: &[String], limit: Duration) -> Result<bool> {
        check::run(command, limit)
    }
}

/// D-Bus errors that say the bus or portabled didn't answer, not that it refused the image.
const UNANSWERED: [&str; 6] = [
    "org.freedesktop.DBus.Error.NoReply",
    "org.freedesktop.DBus.Error.Timeout",
    "org.freedesktop.DBus.Error.TimedOut",
    "org.freedesktop.DBus.Error.ServiceUnknown",
    "org.freedesktop.DBus.Error.NoServer",
    "org.freedesktop.DBus.Error.Disconnected",
];

/// portabled's error reply to an attach is its refusal of the image ([`Refused`]): the agent
/// remembers the version as bad. No answer at all says nothing of the image.
fn refusal(e: anyhow::Error) -> anyhow::Error {
    match bus::error_name(&e) {
        Some(name) if !UNANSWERED.contains(&name) => Refused(format!("{e:#}")).into(),
        _ => e,
    }
}
