//! portable-service-tools: what users run by hand on images, as the `portable-service` program.
//!
//! [`check`] reads an image back (and its extensions and hash tree) and says what
//! systemd-portabled and systemd-dissect will do with it; [`signing`] signs an image's root hash
//! and verifies such signatures; [`feed`] publishes images for systemd-sysupdate (signed by
//! [`openpgp`]) and [`transfers`] writes the hosts' side of it. None is part of an image's
//! build: they share the rules the builder writes by through `portable_service_rules`, and an
//! image's derivation never depends on this crate (its `.check` and `.sysupdate` derivations
//! do).

pub mod check;
pub mod feed;
pub mod openpgp;
pub mod signing;
pub mod transfers;
