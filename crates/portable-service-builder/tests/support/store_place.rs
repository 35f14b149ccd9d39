//! Where the image tests' store can go, decided alike by build.rs (which marks the tests
//! ignored where there is no such place) and by the tests themselves.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// The parent of a test store for a build whose target directory is `target`: the target
/// directory, unless it is below a directory the image holds itself (a clone in /tmp, say, or a
/// Nix build without its sandbox, in /tmp/nix-build-*), where the builder rightly refuses a
/// store (the image links the store's top directory to `usr/`); then a cache in $HOME. An
/// error saying why where neither can be had (Nix's HOME=/homeless-shelter outside the
/// sandbox, which must not be made).
pub fn store_parent(target: &Path) -> Result<PathBuf, String> {
    let top = target.components().nth(1).map(|c| c.as_os_str().to_owned());
    let taken = ["dev", "proc", "sys", "run", "tmp", "var", "etc", "usr"];
    if !top
        .as_ref()
        .is_some_and(|t| taken.iter().any(|n| t == OsStr::new(n)))
    {
        return Ok(target.to_owned());
    }
    let below = format!(
        "{} is below /{}, where the image has a directory of its own",
        target.display(),
        top.unwrap_or_default().to_string_lossy()
    );
    let home = std::env::var_os("HOME").ok_or_else(|| format!("{below}, and HOME is not set"))?;
    if home == "/homeless-shelter" {
        return Err(format!("{below}, and HOME is Nix's /homeless-shelter"));
    }
    let dir = Path::new(&home).join(".cache/portable-service-tests");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{below}, and {}: {e}", dir.display()))?;
    Ok(dir)
}
