//! Closure holes: symlinks in the image or its extensions that point into the Nix store at a
//! store path none of the layered images has, so what they name is not there when the units
//! run.

use super::extensions::Layers;
use super::report::{self, Finding, Report};
use super::tree::{Node, Resolved};
use std::path::{Path, PathBuf};

/// The closure holes step: each symlink into the store at a store path that isn't there, and an
/// error for each.
pub(super) fn check_store_holes(r: &mut Report, layers: &Layers, store_dir: &Path) {
    let whole = layers.whole();
    for image in layers.images() {
        for (path, node) in &image.nodes {
            let Node::Symlink(target) = node else {
                continue;
            };
            let absolute = if target.is_absolute() {
                target.clone()
            } else {
                Path::new("/")
                    .join(path.parent().unwrap_or(Path::new("")))
                    .join(target)
            };
            let Some(store_path) = store_path_of(&absolute, store_dir) else {
                continue;
            };
            if let Resolved::Missing(_) = whole.resolve(&store_path) {
                r.store_holes.push(report::Hole {
                    symlink: format!("{}:/{}", image.name, path.display()),
                    target: target.display().to_string(),
                    missing: store_path.display().to_string(),
                });
            }
        }
    }
    for h in r.store_holes.clone() {
        r.error(Finding::runs(format!(
            "{} points to {}, but the image lacks the store path {}",
            h.symlink, h.target, h.missing
        )));
    }
}

/// `/nix/store/<name>` of a path below the store directory (or below `/usr/nix/store`, where a
/// Nix image keeps it with `/nix` a symlink to `usr/nix`).
fn store_path_of(path: &Path, store_dir: &Path) -> Option<PathBuf> {
    let mut normal = PathBuf::from("/");
    for c in path.components() {
        match c {
            std::path::Component::Normal(n) => normal.push(n),
            std::path::Component::ParentDir => {
                normal.pop();
            }
            _ => {}
        }
    }
    // the store where a Nix image keeps it too: below /usr, with /nix a symlink to it
    let in_usr = Path::new("/usr").join(store_dir.strip_prefix("/").unwrap_or(store_dir));
    let found = [store_dir, in_usr.as_path()].into_iter().find_map(|dir| {
        let first = normal.strip_prefix(dir).ok()?.components().next()?;
        Some(store_dir.join(first))
    });
    found
}
