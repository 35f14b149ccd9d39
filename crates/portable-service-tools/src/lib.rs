//! portable-service-tools: what users run by hand on images, as the `portable-service` program.
//!
//! [`check`] reads an image back (and its extensions and hash tree) and says what
//! systemd-portabled and systemd-dissect will do with it; [`signing`] signs an image's root hash
//! and verifies such signatures; [`feed`] publishes images for systemd-sysupdate (signed by
//! [`openpgp`]) and [`transfers`] writes the hosts' side of it. None is part of an image's
//! build: they share the rules the builder writes by through `portable_service_rules`, and an
//! image's derivation never depends on this crate (its `.check` and `.sysupdate` derivations
//! do). [`input`] says what a command takes as an image and refuses to write into the Nix
//! store; [`exit`] is how every command ends.
//!
//! # Exit status
//!
//! One scheme for every command (docs/cli.md shows it to users, and each command's `--help`
//! ends with it):
//!
//! | status | meaning |
//! |---|---|
//! | 0 | done; `check`: accepted (systemd would attach the image and its units can start) |
//! | 1 | refused: `check`'s verdict is "refused"; or the job is not done because of what the inputs say (a hash tree that doesn't match, a key that isn't the certificate's, a signature by no certificate given, an image in the Nix store, a feed that doesn't add up), or its result could not be written |
//! | 2 | an input could not be read as what it must be (missing, unreadable, not an image, key or certificate): `check` gives no verdict |
//! | 64 | the command line is wrong (unknown option, missing argument, value out of range): nothing was read |

pub mod check;
pub mod exit;
pub mod feed;
pub mod input;
pub mod openpgp;
pub mod signing;
pub mod transfers;

/// The version of the JSON the commands write: `check --json`'s report, `publish --json`'s
/// summary, and the error object either writes instead when it fails. Raised when a field
/// changes its meaning or goes away (a new field doesn't raise it).
pub const JSON_SCHEMA: u32 = 1;
