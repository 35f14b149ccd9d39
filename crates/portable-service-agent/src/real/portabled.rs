//! portabled's attach, reattach and detach (`org.freedesktop.portable1.Manager`), with the
//! signatures of 239..262 (see the notes: the `WithExtensions` variants since 249, reattach
//! since 248), each followed by systemd's reload. Always persistent (`runtime` false, flags
//! 0), copy mode "" (portabled's default), the profile a setting.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use super::bus::{Bus, Method};

const PORTABLED: &str = "org.freedesktop.portable1";
const MANAGER_PATH: &str = "/org/freedesktop/portable1";
const MANAGER: &str = "org.freedesktop.portable1.Manager";

/// portabled's list of changes: (type, path, source).
pub type Changes = Vec<(String, String, String)>;

fn method<'a>(name: &'static str, subject: &'a str, limit: Duration) -> Method<'a> {
    Method {
        destination: PORTABLED,
        path: MANAGER_PATH,
        interface: MANAGER,
        name,
        subject,
        limit,
    }
}

fn text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

fn texts(paths: &[PathBuf]) -> Vec<String> {
    paths.iter().map(|p| text(p)).collect()
}

/// `(Re)attachImage`'s arguments: `s image, as matches, s profile, b runtime, s copy_mode`.
pub fn image_args<'a>(
    image: &'a str,
    matches: &'a [String],
    profile: &'a str,
) -> (&'a str, &'a [String], &'a str, bool, &'a str) {
    (image, matches, profile, false, "")
}

/// `(Re)attachImageWithExtensions`' arguments: `s image, as extensions, as matches, s profile,
/// s copy_mode, t flags`.
pub fn extension_args<'a>(
    image: &'a str,
    extensions: &'a [String],
    matches: &'a [String],
    profile: &'a str,
) -> (&'a str, &'a [String], &'a [String], &'a str, &'a str, u64) {
    (image, extensions, matches, profile, "", 0)
}

/// What an attach and a reattach are told: the profile, the image, its extensions and the
/// matches.
pub struct Placing<'a> {
    pub profile: &'a str,
    pub image: &'a Path,
    pub extensions: &'a [PathBuf],
    pub matches: &'a [String],
}

/// Calls `plain` (the image alone) or `with_extensions`, with the arguments each takes; the
/// reply as `R`.
fn place<R>(
    bus: &mut Bus,
    limit: Duration,
    (plain, with_extensions): (&'static str, &'static str),
    p: &Placing,
) -> anyhow::Result<R>
where
    R: serde::de::DeserializeOwned + zbus::zvariant::Type,
{
    let path = text(p.image);
    if p.extensions.is_empty() {
        let m = method(plain, &path, limit);
        bus.call(&m, &image_args(&path, p.matches, p.profile))
    } else {
        let m = method(with_extensions, &path, limit);
        let extensions = texts(p.extensions);
        bus.call(
            &m,
            &extension_args(&path, &extensions, p.matches, p.profile),
        )
    }
}

/// Attaches the image with its extensions, the units matching its matches; the units attached.
pub fn attach(bus: &mut Bus, limit: Duration, p: &Placing) -> anyhow::Result<Vec<String>> {
    let names = ("AttachImage", "AttachImageWithExtensions");
    let changes: Changes = place(bus, limit, names, p)?;
    Ok(units_of(&changes))
}

/// Reattaches: the attachment of the image's name replaced by the image with its extensions;
/// the units then attached (portabled's "updated" list).
pub fn reattach(bus: &mut Bus, limit: Duration, p: &Placing) -> anyhow::Result<Vec<String>> {
    let names = ("ReattachImage", "ReattachImageWithExtensions");
    let (_removed, updated): (Changes, Changes) = place(bus, limit, names, p)?;
    Ok(units_of(&updated))
}

/// `DetachImage`'s arguments: `s image, b runtime`.
pub fn detach_args(image: &str) -> (&str, bool) {
    (image, false)
}

/// `DetachImageWithExtensions`' arguments: `s image, as extensions, t flags`.
pub fn detach_extension_args<'a>(
    image: &'a str,
    extensions: &'a [String],
) -> (&'a str, &'a [String], u64) {
    (image, extensions, 0)
}

/// Detaches the attachment of `image` with `extensions`.
pub fn detach(
    bus: &mut Bus,
    limit: Duration,
    image: &Path,
    extensions: &[PathBuf],
) -> anyhow::Result<()> {
    let path = text(image);
    let _: Changes = if extensions.is_empty() {
        bus.call(&method("DetachImage", &path, limit), &detach_args(&path))?
    } else {
        let m = method("DetachImageWithExtensions", &path, limit);
        let extensions = texts(extensions);
        bus.call(&m, &detach_extension_args(&path, &extensions))?
    };
    Ok(())
}

/// Whether portabled has `ReattachImage` (248 and newer), from its introspection.
pub fn can_reattach(bus: &mut Bus, limit: Duration) -> anyhow::Result<bool> {
    let m = Method {
        destination: PORTABLED,
        path: MANAGER_PATH,
        interface: "org.freedesktop.DBus.Introspectable",
        name: "Introspect",
        subject: "portabled",
        limit,
    };
    let xml: String = bus.call(&m, &()).context("is ReattachImage there?")?;
    Ok(xml.contains("name=\"ReattachImage\""))
}

/// The units among portabled's changes: the unit files it linked or copied, the way
/// portablectl picks those it enables and starts (not the drop-ins, which end in `.conf`,
/// nor the image's link in /etc/portables).
pub fn units_of(changes: &Changes) -> Vec<String> {
    let mut units: Vec<String> = changes
        .iter()
        .filter(|(kind, _, _)| kind == "symlink" || kind == "copy")
        .filter_map(|(_, path, _)| Path::new(path).file_name()?.to_str())
        .filter(|name| {
            super::dropins::UNIT_SUFFIXES
                .iter()
                .any(|s| name.ends_with(s))
        })
        .map(str::to_string)
        .collect();
    units.sort();
    units.dedup();
    units
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::real::bus::signature_of;

    #[test]
    fn arguments_have_portableds_signatures() {
        let (m, e) = (vec!["app".to_string()], vec!["/d/ext.raw".to_string()]);
        assert_eq!(
            signature_of(&image_args("/d/a.raw", &m, "default")),
            "sassbs"
        );
        let args = extension_args("/d/a.raw", &e, &m, "default");
        assert_eq!(signature_of(&args), "sasassst");
        assert_eq!(signature_of(&detach_args("/d/a.raw")), "sb");
        assert_eq!(signature_of(&detach_extension_args("/d/a.raw", &e)), "sast");
    }

    #[test]
    fn replies_of_one_and_two_change_lists_are_read() {
        let change = |t: &str, p: &str| (t.to_string(), p.to_string(), String::new());
        let one: Changes = vec![change("copy", "/etc/systemd/system.attached/app.service")];
        let two = (
            one.clone(),
            vec![change("symlink", "/etc/systemd/system.attached/app.socket")],
        );
        let read: Changes = crate::real::bus::decode(&one).unwrap();
        assert_eq!(read, one);
        let read: (Changes, Changes) = crate::real::bus::decode(&two).unwrap();
        assert_eq!(read, two);
    }

    #[test]
    fn units_are_the_unit_files_linked_or_copied() {
        let change = |t: &str, p: &str| (t.to_string(), p.to_string(), String::new());
        let a = "/etc/systemd/system.attached";
        let changes = vec![
            change("mkdir", &format!("{a}/app.service.d")),
            change("write", &format!("{a}/app.service.d/20-portable.conf")),
            change("symlink", &format!("{a}/app.service.d/10-profile.conf")),
            change("copy", &format!("{a}/app.service")),
            change("copy", &format!("{a}/app@.service")),
            change("symlink", &format!("{a}/app.socket")),
            change("copy", &format!("{a}/app.timer")),
            change("unlink", &format!("{a}/app-old.service")),
            change("symlink", "/etc/portables/app_1.raw"),
        ];
        assert_eq!(
            units_of(&changes),
            ["app.service", "app.socket", "app.timer", "app@.service"]
        );
    }
}
