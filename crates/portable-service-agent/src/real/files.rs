//! The file primitives the agent composes its durable writes from: plain system calls, each
//! error naming its path. Nothing here syncs on its own: [`sync_file`] and [`sync_dir`] do.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rustix::fs::OFlags;

/// `error`, its kind kept, with `what` (a path, a call) in front of its message.
pub(crate) fn context(what: &str, error: io::Error) -> io::Error {
    io::Error::new(error.kind(), format!("{what}: {error}"))
}

/// A file's bytes, `None` when it isn't there.
pub fn read(path: &str) -> io::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(data) => Ok(Some(data)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(context(path, e)),
    }
}

/// Creates `path` with `data`, mode 0644: refused when anything is there, a symlink included
/// (`O_CREAT|O_EXCL|O_NOFOLLOW`). A write cut short removes what it wrote.
pub fn create(path: &str, data: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .map_err(|e| context(path, e))?;
    if let Err(e) = file.write_all(data) {
        drop(file);
        let _ = std::fs::remove_file(path);
        return Err(context(&format!("writing {path}"), e));
    }
    Ok(())
}

/// fsync(2) of a file's data.
pub fn sync_file(path: &str) -> io::Result<()> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .map_err(|e| context(path, e))?;
    file.sync_all()
        .map_err(|e| context(&format!("fsync {path}"), e))
}

/// fsync(2) of a directory: its entries (a rename, a new file) made durable.
pub fn sync_dir(dir: &str) -> io::Result<()> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(OFlags::DIRECTORY.bits() as i32)
        .open(dir)
        .map_err(|e| context(dir, e))?;
    file.sync_all()
        .map_err(|e| context(&format!("fsync {dir}"), e))
}

/// rename(2), replacing `to`.
pub fn rename(from: &str, to: &str) -> io::Result<()> {
    std::fs::rename(from, to).map_err(|e| context(&format!("rename {from} to {to}"), e))
}

/// Removes a file or a symlink (not what it points to); a missing one is no error; a
/// directory is refused.
pub fn remove(path: &str) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(context(path, e)),
        Ok(meta) if meta.is_dir() => {
            return Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                format!("{path}: a directory, not removed"),
            ))
        }
        Ok(_) => {}
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(context(path, e)),
        _ => Ok(()),
    }
}

/// The names in `dir`, sorted; none when it is missing.
pub fn list(dir: &str) -> io::Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(context(dir, e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| context(dir, e))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// mkdir -p.
pub fn make_dir(dir: &str) -> io::Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| context(dir, e))
}

/// sync(2): everything written on the host, portabled's files too.
pub fn sync_all() {
    rustix::fs::sync();
}

/// Opens (creating) a lock file, no symlink followed.
pub(crate) fn open_lock_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .map_err(|e| context(&path.display().to_string(), e))
}
