//! What the agent asks of a host, and nothing more: the clock, a few file operations from which
//! the agent composes its durable writes, the feed, the keyrings, portabled and systemd.
//!
//! Two hosts implement it: the real one (`real`), and the simulator in the crate's tests, which
//! breaks each call in turn. So every call here is bounded in time by its implementation (a call
//! that doesn't answer within its limit returns an error, never waits on), and no call promises
//! more than the real host keeps: a write is lost at a power cut until it is synced, and so is
//! what portabled changed until [`Host::sync_all`].

use std::time::Duration;

pub type Result<T> = anyhow::Result<T>;

/// One image attached by portabled, with the extensions it was attached with (file names in
/// the target directory) and the units it attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub image: String,
    pub extensions: Vec<String>,
    pub units: Vec<String>,
}

/// What systemd says of a unit, in its D-Bus properties (the same names from 239 to 262).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UnitStatus {
    /// `ActiveState`: active, reloading, inactive, failed, activating, deactivating.
    pub active_state: String,
    /// `Result` of a service (`success` for other units).
    pub result: String,
    /// A service (the other units have no program of their own).
    pub service: bool,
    /// `Type=oneshot`: healthy once its `ExecStart` exited 0.
    pub oneshot: bool,
    /// `NRestarts`: automatic restarts since the last start by hand.
    pub restarts: u32,
    /// `InactiveExitTimestamp` (µs): changes when the unit is started again.
    pub started_at: u64,
    /// `ConditionTimestamp` (µs): changes at each start job's run, even one a condition
    /// skipped (which leaves `InactiveExitTimestamp` as it was).
    pub checked_at: u64,
    /// A condition failed at the last start (`ConditionResult=false` with a
    /// `ConditionTimestamp`): the unit was skipped, never ran.
    pub skipped: bool,
    /// The main process runs the unit's own program, not systemd's fork or systemd-executor
    /// still setting up the image (`/proc/MainPID/exe`); a unit without one: false.
    pub runs_own_program: bool,
    /// `ExecMainExitTimestamp` set with `ExecMainCode=CLD_EXITED` and `ExecMainStatus=0`.
    pub exited_ok: bool,
}

/// portabled's answer refusing an image (an error reply), as opposed to no answer: what
/// `attach` and `reattach` return, inside their error, when the image itself was refused.
#[derive(Debug)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// The host, as the agent sees it. File paths are absolute.
pub trait Host {
    /// Monotonic time since an arbitrary start.
    fn elapsed(&mut self) -> Duration;
    /// Seconds since the epoch, for dates (`BEST-BEFORE`) and records.
    fn unix_time(&mut self) -> u64;
    fn sleep(&mut self, time: Duration);
    /// A line for the journal.
    fn log(&mut self, line: &str);

    /// A file's bytes, `None` when it isn't there.
    fn read(&mut self, path: &str) -> std::io::Result<Option<Vec<u8>>>;
    /// Creates `path`, which must not exist (no symlink followed), with `data`; not synced.
    fn create(&mut self, path: &str, data: &[u8]) -> std::io::Result<()>;
    /// Makes `path`'s data durable (fsync).
    fn sync_file(&mut self, path: &str) -> std::io::Result<()>;
    /// Renames within a directory, replacing `to`; durable only after [`Host::sync_dir`].
    fn rename(&mut self, from: &str, to: &str) -> std::io::Result<()>;
    /// Makes a directory's entries durable (fsync of the directory).
    fn sync_dir(&mut self, dir: &str) -> std::io::Result<()>;
    /// Removes a file (not a directory); a missing one is no error.
    fn remove(&mut self, path: &str) -> std::io::Result<()>;
    /// The names in a directory (none when it is missing).
    fn list(&mut self, dir: &str) -> std::io::Result<Vec<String>>;
    /// Makes a directory and its parents.
    fn make_dir(&mut self, dir: &str) -> std::io::Result<()>;
    /// Everything written so far, portabled's files too, made durable (sync(2)).
    fn sync_all(&mut self) -> std::io::Result<()>;

    /// A small file of the feed (its list and signature), at most `max` bytes.
    fn get(&mut self, url: &str, max: u64) -> Result<Vec<u8>>;
    /// A file of the feed streamed into a new file `to` (not synced), at most `max` bytes;
    /// its SHA-256.
    fn download(&mut self, url: &str, to: &str, max: u64) -> Result<[u8; 32]>;
    /// Whether `signature` is a good detached OpenPGP signature of `data` by a key of the
    /// keyring systemd-sysupdate reads; the signer.
    fn verify(&mut self, data: &[u8], signature: &[u8]) -> Result<String>;

    /// Holds the update lock of attached image `name` until the process ends; waits for
    /// another holder within a limit.
    fn lock(&mut self, name: &str) -> Result<()>;
    /// portabled's attached images, with their extensions and units.
    fn attached(&mut self) -> Result<Vec<Attachment>>;
    /// Attaches `dir/image` with `dir/extensions`, units matching `prefixes` (none: the
    /// image's name), persistently; the units it attached. Starts nothing.
    fn attach(
        &mut self,
        dir: &str,
        image: &str,
        extensions: &[String],
        prefixes: &[String],
    ) -> Result<Vec<String>>;
    /// Whether portabled can reattach (248 and newer).
    fn can_reattach(&mut self) -> bool;
    /// portabled's reattach: the attachment of `image`'s name detached and `dir/image` with
    /// `extensions` attached in one call; the units then attached. Starts nothing.
    fn reattach(
        &mut self,
        dir: &str,
        image: &str,
        extensions: &[String],
        prefixes: &[String],
    ) -> Result<Vec<String>>;
    /// Detaches attachment `image` with `extensions` (units stopped first by the caller).
    fn detach(&mut self, image: &str, extensions: &[String]) -> Result<()>;
    /// Enables `unit` and queues its restart (a start if it is stopped), without waiting for
    /// the job: a unit of the version before that still runs must run the new one.
    fn start(&mut self, unit: &str) -> Result<()>;
    /// Stops `unit` and resets its failed state, waiting within a limit.
    fn stop(&mut self, unit: &str) -> Result<()>;
    fn unit(&mut self, unit: &str) -> Result<UnitStatus>;
    /// Runs a health command within `limit`: whether it exited 0 (one that doesn't end in
    /// time is killed, and has failed); an error when it could not be run.
    fn run_check(&mut self, command: &[String], limit: Duration) -> Result<bool>;
}
