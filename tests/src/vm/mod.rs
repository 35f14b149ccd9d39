//! A real host for the acceptance tests: a qemu virtual machine with Debian's kernel and a guest
//! root of [`crate::guest`], one per systemd version, booted once per test run and shared by the
//! scenarios of that version one at a time ([`Host`]).
//!
//! The interface is small, after nixpkgs' NixOS test driver: boot, run a command and get its
//! status and output, wait for a unit or a journal line, copy an image in; the console is kept
//! (`target/vm/<name>/console.log`) and every failure says what the guest said. Commands go
//! through a root shell on a virtio serial port (a unix socket here); images go in through a
//! read-only 9p share of `target/vm/<name>/share` and are copied onto the guest's own disk.
//!
//! qemu emulates the CPU (TCG), so no KVM is needed; `PORTABLE_SERVICE_TESTS_ACCEL=kvm` asks for
//! KVM where it works. Every qemu is started by one long-lived thread of the test process with
//! `PR_SET_PDEATHSIG`: when the test process ends, passed, failed or killed, the kernel kills its
//! VMs by their own process id. Between scenarios, [`Host`]'s drop detaches whatever a scenario
//! attached, so the next starts from a clean guest.
//!
//! [`qemu`] starts and boots the VMs, [`channel`] is the command protocol on the port,
//! [`host`] is what scenarios use.

mod channel;
mod host;
mod qemu;

pub use host::Host;
pub use qemu::Vm;

use std::process::Output;

/// The last `n` lines of `text`.
pub(crate) fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `'...'` for the guest's shell.
pub(crate) fn quote(arg: &str) -> String {
    format!("'{}'", arg.replace('\'', r"'\''"))
}

/// A command's standard output and error, as one text.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// One `#[test]` per scenario and systemd version: `on_every_systemd!(a, b)` makes
/// `a::systemd_247`, `a::systemd_252`, `a::systemd_254`, `a::systemd_257`, `a::systemd_newest`, ... each calling
/// `a(Systemd::V247)` (and so on), and the ignored `a::systemd_239`, `_245`, `_249` of
/// [`on_old_systemd!`]. Named scenario first, so that the test threads, taking tests
/// in name order, work on different guests at once.
#[macro_export]
macro_rules! on_every_systemd {
    ($($scenario:ident),* $(,)?) => {
        $(
            mod $scenario {
                use $crate::guest::Systemd;
                $crate::on_old_systemd!($scenario);
                #[test] fn systemd_247() { super::$scenario(Systemd::V247) }
                #[test] fn systemd_252() { super::$scenario(Systemd::V252) }
                #[test] fn systemd_254() { super::$scenario(Systemd::V254) }
                #[test] fn systemd_257() { super::$scenario(Systemd::V257) }
                #[test] fn systemd_newest() { super::$scenario(Systemd::Newest) }
            }
        )*
    };
}

/// [`on_every_systemd!`] but 254 (bookworm-backports), for the scenarios in which 254 behaves as
/// 252 and 257 around it do (no rule of `check` changes at 254 for them): 254 passed every one
/// of them in every run up to 2026-12-04, and each costs every run a guest's time (qemu
/// emulates the CPU), which the 247 guest needed. 254 keeps the scenarios where it differs:
/// extensions, the differential corpus, sysupdate.
#[macro_export]
macro_rules! on_every_systemd_but_254 {
    ($($scenario:ident),* $(,)?) => {
        $(
            mod $scenario {
                use $crate::guest::Systemd;
                $crate::on_old_systemd!($scenario);
                #[test] fn systemd_247() { super::$scenario(Systemd::V247) }
                #[test] fn systemd_252() { super::$scenario(Systemd::V252) }
                #[test] fn systemd_257() { super::$scenario(Systemd::V257) }
                #[test] fn systemd_newest() { super::$scenario(Systemd::Newest) }
            }
        )*
    };
}

/// The tests of a scenario on the versions built from systemd's sources (239, 245, 249):
/// ignored, so that the test command leaves them out; tests/old-hosts.sh runs them
/// (`--ignored`), with the sources.
#[macro_export]
macro_rules! on_old_systemd {
    ($scenario:ident) => {
        #[test]
        #[ignore = "systemd built from its sources: tests/old-hosts.sh"]
        fn systemd_239() {
            super::$scenario(Systemd::V239)
        }
        #[test]
        #[ignore = "systemd built from its sources: tests/old-hosts.sh"]
        fn systemd_245() {
            super::$scenario(Systemd::V245)
        }
        #[test]
        #[ignore = "systemd built from its sources: tests/old-hosts.sh"]
        fn systemd_249() {
            super::$scenario(Systemd::V249)
        }
    };
}
