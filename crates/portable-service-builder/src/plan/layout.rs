//! Where each kind of image keeps its parts: the release file, the units, the store, and for an
//! extension the one tree systemd overlays it on.

use crate::attrs::{Attrs, ExtensionKind};
use camino::{Utf8Path, Utf8PathBuf};

/// Where an image's parts go, by kind.
pub(super) struct Layout {
    /// `None` for a portable service image.
    pub(super) kind: Option<ExtensionKind>,
    /// The os-release or extension-release file.
    pub(super) release: Utf8PathBuf,
    /// Where portabled finds the units.
    pub(super) units: Utf8PathBuf,
    /// Where the closure goes; `None` where it can't go (a configuration extension).
    pub(super) store: Option<Utf8PathBuf>,
    /// For an extension, the one tree systemd overlays it on.
    pub(super) visible_below: Option<&'static str>,
}

impl Layout {
    pub(super) fn of(attrs: &Attrs) -> Layout {
        // The store below usr/: systemd overlays system extensions on /usr, so an extension's
        // store paths join the base's there; a portable image's /nix is a symlink into it.
        let store = Utf8Path::new("usr").join(attrs.store_dir.as_str().trim_start_matches('/'));
        let release_file = |kind: ExtensionKind| {
            Utf8Path::new(kind.release_dir()).join(format!("extension-release.{}", attrs.pname))
        };
        match attrs.extension.as_ref().map(|e| e.kind) {
            None => Layout {
                kind: None,
                release: "etc/os-release".into(),
                units: "etc/systemd/system".into(),
                store: Some(store),
                visible_below: None,
            },
            Some(kind @ ExtensionKind::Sysext) => Layout {
                kind: Some(kind),
                release: release_file(kind),
                units: "usr/lib/systemd/system".into(),
                store: Some(store),
                visible_below: Some(kind.overlaid_on()),
            },
            // The units go where portabled writes ExtensionImages= for them: a unit of the
            // confext itself (systemd 257, seen here).
            Some(kind @ ExtensionKind::Confext) => Layout {
                kind: Some(kind),
                release: release_file(kind),
                units: "etc/systemd/system".into(),
                store: None,
                visible_below: Some(kind.overlaid_on()),
            },
        }
    }
}
