//! portable-service-rules: what the image builder (crates/portable-service-builder) and the
//! user's tools (crates/portable-service-tools: `check`, `sign`) must agree on, so that what one
//! writes the other reads by the same rule.
//!
//! [`names`]: which unit names portabled attaches and what an image name may hold.
//! [`mount_points`]: the directories and files systemd needs in a read-only image, and the unit
//! settings that need one. [`extension`]: what each kind of extension image is and where its
//! parts live. [`os_release`]: reading a release file as systemd does. [`unit_file`]: reading a
//! unit file's settings as systemd does. [`verity`]: the dm-verity hash tree's format and the
//! files systemd looks for beside an image. [`feed`]: a feed's file names and systemd's order of
//! versions. [`image_policy`]: systemd's image policies, read and judged as systemd does.
//! [`ddi`]: a Discoverable Disk Image's partitions, their
//! types per architecture and their table. [`agent_config`]: what the host agent is told of an
//! image, as the tools write it.

pub mod agent_config;
pub mod ddi;
pub mod dissect;
pub mod extension;
pub mod feed;
pub mod image_policy;
pub mod mount_points;
pub mod names;
pub mod os_release;
pub mod unit_file;
pub mod verity;
