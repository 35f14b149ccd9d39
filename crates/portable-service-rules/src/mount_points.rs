//! The places systemd mounts over or binds into a service's namespace. A read-only image can't
//! have them created at run time, so it must hold them; and what the image puts below some of
//! them would be hidden.

use camino::{Utf8Path, Utf8PathBuf};

/// Directories systemd needs in a read-only image: API file systems and the writable places a
/// service's namespace binds in.
pub const MOUNT_POINT_DIRS: [&str; 9] = [
    "dev",
    "proc",
    "sys",
    "run",
    "tmp",
    "var/tmp",
    "var/lib",
    "var/cache",
    "var/log",
];

/// Files systemd binds over from the host.
pub const MOUNT_POINT_FILES: [&str; 2] = ["etc/machine-id", "etc/resolv.conf"];

/// Places systemd mounts over at run time: anything put below them would be hidden, and a
/// read-only image without one of them fails its units with 226/NAMESPACE (seen on 252).
pub const HIDDEN_BELOW: [&str; 6] = ["dev", "proc", "sys", "run", "tmp", "var/tmp"];

/// Unit settings whose directory systemd binds into the service from the host, so the image must
/// hold the mount point (without it the unit fails with 226/NAMESPACE on a read-only image:
/// tests/tests/acceptance/portabled.rs). `RuntimeDirectory=` is below /run, which systemd
/// mounts itself.
pub const UNIT_DIRECTORY_SETTINGS: [(&str, &str); 4] = [
    ("StateDirectory", "var/lib"),
    ("CacheDirectory", "var/cache"),
    ("LogsDirectory", "var/log"),
    ("ConfigurationDirectory", "etc"),
];

/// The mount points a service's `StateDirectory=`, `CacheDirectory=`, `LogsDirectory=` and
/// `ConfigurationDirectory=` need (read as systemd reads them: [`crate::unit_file`]).
/// Names with specifiers (`%i`) are only known when the unit starts, so they are left to the user.
pub fn unit_directories(content: &[u8]) -> Vec<Utf8PathBuf> {
    let text = String::from_utf8_lossy(content);
    let mut dirs = Vec::new();
    // only a service's own settings: elsewhere systemd ignores them
    let settings = crate::unit_file::settings(&text);
    for s in settings.iter().filter(|s| s.section == "Service") {
        for (setting, base) in UNIT_DIRECTORY_SETTINGS {
            if s.key != setting {
                continue;
            }
            for value in s.value.split_whitespace() {
                let name = value.split(':').next().unwrap_or_default();
                if name.contains('%') {
                    tracing::warn!(
                        "{setting}={name}: a name with specifiers gets no mount point in the image"
                    );
                    continue;
                }
                if let Ok(rel) = normalise_image_path(name) {
                    dirs.push(Utf8Path::new(base).join(rel));
                }
            }
        }
    }
    dirs
}

/// Makes `path` a path relative to the image root, or says why it can't be one.
pub fn normalise_image_path(path: &str) -> Result<Utf8PathBuf, &'static str> {
    let mut normal = Utf8PathBuf::new();
    for component in path.split('/') {
        match component {
            "" | "." => {}
            ".." => return Err("leaves the image root (`..`)"),
            c => normal.push(c),
        }
    }
    if normal.as_str().is_empty() {
        return Err("is the image root itself");
    }
    Ok(normal)
}
