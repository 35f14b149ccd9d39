//! What portabled has attached, read from the drop-in it writes beside every unit it attaches:
//! `UNIT.d/20-portable.conf`, in `/etc/systemd/system.attached/` (`/run/...` for a runtime
//! attachment), or on 239 in `/etc/systemd/system/` and `/run/systemd/system/`.
//!
//! Files, not D-Bus: portabled's `ListImages` gives an image's state but neither its units nor
//! the extensions it was attached with, and portabled computes that state from these same
//! drop-ins. Their first line is portabled's own marker, the one it matches on detach:
//! `# Drop-in created for image '/dir/base.raw:/dir/ext.raw', do not edit.` (the extensions,
//! colon-separated, since 249; each path with `:` and unprintable bytes `\xNN`-escaped). The
//! marker is the truth for every unit: sockets and timers get no `RootImage=`, and a service
//! that comes from the base gets no `ExtensionImages=` even when extensions were attached.
//! A drop-in without the marker falls back on the unit's `RootImage=`/`RootDirectory=` and
//! `ExtensionImages=` in all its `*.conf`. A drop-in directory whose unit file is missing (an
//! attach cut short: portabled writes the drop-ins first) is no attachment, for systemd as for
//! portabled.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};

use super::files::context;

/// Where portabled puts the units it attaches, under the root (`/` on a host).
const UNIT_DIRS: [&str; 4] = [
    "etc/systemd/system.attached",
    "run/systemd/system.attached",
    "etc/systemd/system",
    "run/systemd/system",
];

/// The unit types portabled attaches.
pub const UNIT_SUFFIXES: [&str; 5] = [".service", ".socket", ".target", ".timer", ".path"];

const MARKER_BEGIN: &str = "# Drop-in created for image '";
const MARKER_END: &str = "', do not edit.";

/// An image attached with its extensions (full paths, as portabled wrote them), and the units
/// attached from them (templates included), sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub image: PathBuf,
    pub extensions: Vec<PathBuf>,
    pub units: Vec<String>,
}

/// Every attachment under `root`, sorted by image.
pub fn attachments(root: &Path) -> io::Result<Vec<Found>> {
    let mut groups: BTreeMap<(PathBuf, Vec<PathBuf>), BTreeSet<String>> = BTreeMap::new();
    for dir in UNIT_DIRS {
        let dir = root.join(dir);
        for unit in attached_units_in(&dir)? {
            if let Some(images) = images_of(&dir.join(format!("{unit}.d")))? {
                groups.entry(images).or_default().insert(unit);
            }
        }
    }
    Ok(groups
        .into_iter()
        .map(|((image, extensions), units)| Found {
            image,
            extensions,
            units: units.into_iter().collect(),
        })
        .collect())
}

/// The units of `dir` that have both a unit file (or symlink) and a drop-in directory.
fn attached_units_in(dir: &Path) -> io::Result<Vec<String>> {
    let names = super::files::list(&dir.to_string_lossy())?;
    Ok(names
        .iter()
        .filter_map(|name| name.strip_suffix(".d"))
        .filter(|unit| UNIT_SUFFIXES.iter().any(|s| unit.ends_with(s)))
        .filter(|unit| std::fs::symlink_metadata(dir.join(unit)).is_ok())
        .map(str::to_string)
        .collect())
}

/// The image and extensions a unit's drop-in directory names, if portabled attached it.
fn images_of(dropins: &Path) -> io::Result<Option<(PathBuf, Vec<PathBuf>)>> {
    let Some(portable) = read_text(&dropins.join("20-portable.conf"))? else {
        return Ok(None);
    };
    if let Some(found) = portable.lines().next().and_then(parse_marker) {
        return Ok(Some(found));
    }
    let mut texts = Vec::new();
    for name in super::files::list(&dropins.to_string_lossy())? {
        if name.ends_with(".conf") {
            texts.extend(read_text(&dropins.join(&name))?);
        }
    }
    Ok(parse_settings(&texts))
}

fn read_text(path: &Path) -> io::Result<Option<String>> {
    match std::fs::read(path) {
        Ok(data) => Ok(Some(String::from_utf8_lossy(&data).into_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(context(&path.display().to_string(), e)),
    }
}

/// portabled's marker line: the image, then its extensions.
pub fn parse_marker(line: &str) -> Option<(PathBuf, Vec<PathBuf>)> {
    let inner = line
        .trim_end()
        .strip_prefix(MARKER_BEGIN)?
        .strip_suffix(MARKER_END)?;
    let mut paths = inner.split(':').map(|p| PathBuf::from(unescape(p)));
    let image = paths.next().filter(|p| !p.as_os_str().is_empty())?;
    Some((image, paths.collect()))
}

/// systemd's `xescape()` undone: `\xNN` is the byte NN.
fn unescape(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 2..i + 4)
            .and_then(|h| std::str::from_utf8(h).ok());
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(byte) if bytes[i] == b'\\' && bytes[i + 1] == b'x' => {
                out.push(byte);
                i += 4;
            }
            _ => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The image (`RootImage=` or `RootDirectory=`, the last one) and extensions
/// (`ExtensionImages=`, accumulated; empty resets) set by a unit's drop-ins, in their order.
/// An extension is written `[-]PATH[:OPTIONS]`.
pub fn parse_settings(texts: &[String]) -> Option<(PathBuf, Vec<PathBuf>)> {
    let mut image = None;
    let mut extensions = Vec::new();
    for line in texts.iter().flat_map(|t| t.lines()).map(str::trim) {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        match key.trim() {
            "RootImage" | "RootDirectory" => {
                let value = value.trim();
                image = (!value.is_empty()).then(|| PathBuf::from(value));
            }
            "ExtensionImages" if value.trim().is_empty() => extensions.clear(),
            "ExtensionImages" => extensions.extend(value.split_whitespace().map(extension_path)),
            _ => {}
        }
    }
    image.map(|image| (image, extensions))
}

fn extension_path(word: &str) -> PathBuf {
    let word = word.trim_matches('"');
    let word = word.strip_prefix('-').unwrap_or(word);
    PathBuf::from(word.split(':').next().unwrap_or(word))
}
