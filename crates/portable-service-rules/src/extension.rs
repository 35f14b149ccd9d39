//! What each kind of extension image is: where systemd overlays it, where its
//! extension-release file lives and which fields that file owns.

use serde::Deserialize;

/// systemd-sysext's two kinds: a system extension is overlaid on `/usr` (and `/opt`), a
/// configuration extension on `/etc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExtensionKind {
    Sysext,
    Confext,
}

impl ExtensionKind {
    /// The kind's name, as the Nix side and systemd spell it.
    pub fn name(self) -> &'static str {
        match self {
            ExtensionKind::Sysext => "sysext",
            ExtensionKind::Confext => "confext",
        }
    }

    /// Where an extension of this kind keeps its extension-release file.
    pub fn release_dir(self) -> &'static str {
        match self {
            ExtensionKind::Sysext => "usr/lib/extension-release.d",
            ExtensionKind::Confext => "etc/extension-release.d",
        }
    }

    /// The one tree systemd overlays an extension of this kind on.
    pub fn overlaid_on(self) -> &'static str {
        match self {
            ExtensionKind::Sysext => "usr",
            ExtensionKind::Confext => "etc",
        }
    }

    /// The keys of its extension-release file that say where it applies (`SYSEXT_SCOPE`) and
    /// which API level of the base it needs (`SYSEXT_LEVEL`); `CONFEXT_` for a configuration
    /// extension.
    pub fn scope_and_level(self) -> (&'static str, &'static str) {
        match self {
            ExtensionKind::Sysext => ("SYSEXT_SCOPE", "SYSEXT_LEVEL"),
            ExtensionKind::Confext => ("CONFEXT_SCOPE", "CONFEXT_LEVEL"),
        }
    }

    /// The fields an extension-release file owns: those systemd matches against the base's
    /// os-release (`ID`, `VERSION_ID`, the level), the scope, and the prefixes.
    pub fn release_fields(self) -> [&'static str; 7] {
        let (scope, level) = self.scope_and_level();
        [
            "ID",
            scope,
            "PORTABLE_PREFIXES",
            "VERSION_ID",
            level,
            "PORTABLE_PRETTY_NAME",
            "HOME_URL",
        ]
    }
}
