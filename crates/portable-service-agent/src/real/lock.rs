//! The update lock of an attached image: `flock(2)` on `LOCK_DIR/portable-service-agent.NAME.lock`,
//! held by an open file until the process ends (the kernel lets go of it at any exit, a kill
//! included, so a lock is never left behind).

use std::fs::File;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rustix::fs::{flock, FlockOperation};

/// How often a waiting lock is tried again.
const POLL: Duration = Duration::from_millis(250);

/// The lock file of image `name` in `dir`; `name` must be a plain file name part.
pub fn lock_path(dir: &Path, name: &str) -> anyhow::Result<std::path::PathBuf> {
    if name.is_empty() || name.contains('/') || name.starts_with('.') || name.contains('\0') {
        bail!("lock: {name:?} is not an image name");
    }
    Ok(dir.join(format!("portable-service-agent.{name}.lock")))
}

/// Takes the lock of `name`, waiting up to `limit` for another holder; `say` tells the journal
/// that it waits. The open file holds the lock.
pub fn take(
    dir: &Path,
    name: &str,
    limit: Duration,
    say: &mut dyn FnMut(&str),
) -> anyhow::Result<File> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("lock of {name}: mkdir {}", dir.display()))?;
    let path = lock_path(dir, name)?;
    let file = super::files::open_lock_file(&path).with_context(|| format!("lock of {name}"))?;
    let start = Instant::now();
    let mut said = false;
    loop {
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(file),
            Err(rustix::io::Errno::WOULDBLOCK) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => bail!("lock of {name}: flock {}: {e}", path.display()),
        }
        if !said {
            say(&format!("waiting for another update or rollback of {name}"));
            said = true;
        }
        if start.elapsed() >= limit {
            bail!(
                "another update or rollback of {name} held its lock ({}) for {} s",
                path.display(),
                limit.as_secs()
            );
        }
        std::thread::sleep(POLL.min(limit.saturating_sub(start.elapsed())));
    }
}
