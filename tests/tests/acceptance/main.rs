//! Acceptance: images built by Nix, attached and run by a real systemd-portabled on a real
//! kernel, in a virtual machine per systemd version (`portable_service_tests::vm`): Debian 12's
//! 252, bookworm-backports' 254, Debian 13's 257 and the newest in Debian sid. One test binary,
//! so that each guest boots once per test run and serves every scenario of its version.

mod channel;
mod ddi;
mod differential;
mod extensions;
mod integrity;
mod portabled;
mod sysupdate;
