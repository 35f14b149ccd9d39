//! portable-service-agent: runs on each host, as root, from `NAME-update.service`,
//! `NAME-rollback.service` and, at boot, `NAME-recover.service`. It fetches an image's feed
//! (written by `portable-service publish`), verifies it, installs the newest version beside the
//! running one, switches portabled to it, keeps it only once its units proved healthy, and else
//! puts back what ran. Every step is written down before it is taken, so that the next run after
//! a power cut, a hang or a refusal finds a way forward.
//!
//! [`host`]: what the agent asks of a host (the real one, [`real`], or the tests' simulator).
//! [`config`]: what it is told of an image. [`record`]: what it keeps on disk, and how it
//! writes. [`sums`]: a feed's list. [`installed`]: the host's versions and attachments, read.
//! [`feed`]: fetching and pruning versions. [`health`]: the judge of a new version.
//! [`agent`]: the decisions. [`fetch`]: HTTP(S) with limits on time and size. [`keyring`]: the
//! feed's signature, checked against the keyring systemd-sysupdate reads.

pub mod agent;
/// What the agent is told of an image (shared with the tools, which write it).
pub use portable_service_rules::agent_config as config;
pub mod feed;
pub mod fetch;
pub mod health;
pub mod host;
pub mod installed;
pub mod keyring;
pub mod real;
pub mod record;
pub mod sums;
