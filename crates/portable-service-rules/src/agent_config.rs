//! What the host agent (crates/portable-service-agent) is told about one image: written as JSON
//! by `portable-service transfers` (the builder of `image.sysupdate { ... }`) to
//! `/etc/portable-service-agent/NAME.json`, read by the agent at every run. One type for both,
//! so that what one writes the other reads.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// One image's updates.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The image's name: its files are `NAME_VERSION.raw` (and those beside it).
    pub name: String,
    /// The feed's directory (http:// or https://), holding `SHA256SUMS` and its signature.
    pub url: String,
    /// Where versions are installed and attached from (`/var/lib/portables`).
    pub target: String,
    /// Versions kept installed, the running one and the one to roll back to among them.
    pub keep: usize,
    /// The files of a version: (suffix on the host, suffix in the feed), the image's first.
    pub files: Vec<(String, String)>,
    /// The unit prefixes to attach with (none: the image's name).
    #[serde(default)]
    pub prefixes: Vec<String>,
    /// For an extension: the image it extends, attached with it.
    #[serde(default)]
    pub base: Option<Base>,
    #[serde(default)]
    pub health: Health,
    /// portabled's profile to attach with (none: `default`).
    #[serde(default)]
    pub profile: Option<String>,
    /// Where the agent keeps its record of each image (`DIR/NAME/`).
    #[serde(default = "default_state_dir")]
    pub state_dir: String,
    /// The largest file of a version the agent downloads, in bytes.
    #[serde(default = "Config::default_max_file")]
    pub max_file: u64,
}

/// An extension's base image.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Base {
    pub name: String,
    /// The base's own feed, when the base is updated with the extension; else the base's
    /// installed versions are taken as they are.
    #[serde(default)]
    pub url: Option<String>,
    /// The files of the base's versions, as [`Config::files`].
    #[serde(default)]
    pub files: Vec<(String, String)>,
}

/// When a new version counts as healthy.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Health {
    /// Seconds for every unit to come up (a oneshot: to have exited 0).
    pub timeout: u64,
    /// Seconds they must then stay up, not restarted.
    pub steady: u64,
    /// A command that must exit 0 once the units are up, within `timeout`.
    #[serde(default)]
    pub command: Option<Vec<String>>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            timeout: 90,
            steady: 10,
            command: None,
        }
    }
}

impl Health {
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout)
    }
    pub fn steady(&self) -> Duration {
        Duration::from_secs(self.steady)
    }
}

fn default_state_dir() -> String {
    "/var/lib/portable-service-agent".to_owned()
}

impl Config {
    /// The largest file downloaded: a DDI of a large closure; a feed can't make a host fill
    /// its disk beyond this per file.
    pub fn default_max_file() -> u64 {
        64 << 30
    }

    /// The image attached: the base for an extension, the image itself otherwise.
    pub fn attached_name(&self) -> &str {
        self.base.as_ref().map_or(&self.name, |b| &b.name)
    }

    /// This image's record directory.
    pub fn state(&self) -> String {
        format!("{}/{}", self.state_dir, self.name)
    }
}
