//! portable-service-agent: runs on each host, as root, from `NAME-update.service`,
//! `NAME-rollback.service` and, at boot, `NAME-recover.service`. It fetches an image's feed
//! (written by `portable-service publish`), verifies it, installs the newest version beside the
//! running one, switches portabled to it, keeps it only once its units proved healthy, and else
//! puts back what ran. Every step is written down before it is taken, so that the next run after
//! a power cut, a hang or a refusal finds a way forward.
//!
//! [`host`]: what the agent asks of a host (the real one, or the tests' simulator).

pub mod host;

pub mod fetch;
pub mod keyring;
