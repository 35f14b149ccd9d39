//! Whether a version's units proved healthy, as a user means it: each came up (a service
//! running its own program from the image, a oneshot exited 0), none was skipped by a
//! condition, and all stayed up, not restarted, for the steady time; then the optional health
//! command exited 0.

use crate::config::Health;
use crate::host::{Host, UnitStatus};
use std::time::Duration;

/// How often units are looked at while they start.
const POLL: Duration = Duration::from_millis(250);

/// What the judge found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Healthy,
    /// The version failed: it is not to be attached again.
    Unhealthy(String),
    /// The host could not be asked: nothing is known of the version.
    Unknown(String),
}

/// One look at a unit: `Ok(true)` up, `Ok(false)` still starting, `Err` failed (why).
fn look(unit: &str, s: &UnitStatus) -> Result<bool, String> {
    if s.skipped {
        return Err(format!("{unit} was skipped: a condition of it failed"));
    }
    match s.active_state.as_str() {
        "failed" => Err(format!("{unit} failed (Result={})", s.result)),
        "active" | "reloading" => Ok(!s.service || s.oneshot || s.runs_own_program),
        "inactive" if s.oneshot && s.exited_ok && s.result == "success" => Ok(true),
        "inactive" | "deactivating" => Err(format!(
            "{unit} stopped (Result={}){}",
            s.result,
            if s.service && !s.oneshot {
                ": a service that ends is not running"
            } else {
                ""
            }
        )),
        _ => Ok(false),
    }
}

/// Whether the start queued after `before` was seen has run: systemd answers calls before it
/// runs its queued jobs, so until then the unit shows as it was (the version before running,
/// or failed, or never started). Every start's run sets `ConditionTimestamp`, and one that
/// runs anything sets `InactiveExitTimestamp`.
fn has_started(before: &UnitStatus, now: &UnitStatus) -> bool {
    now.started_at != before.started_at || now.checked_at != before.checked_at
}

/// Judges `units` (templates left out by the caller) by `health`; `before`, for each unit
/// the caller queued a start of, how it was just before (a unit that still shows so has not
/// started yet).
pub fn judge(
    host: &mut impl Host,
    units: &[String],
    before: &[Option<UnitStatus>],
    health: &Health,
) -> Verdict {
    if units.is_empty() {
        return Verdict::Unhealthy("no unit was attached".to_owned());
    }
    let deadline = host.elapsed() + health.timeout();
    let first = loop {
        let seen = match statuses(host, units) {
            Ok(s) => s,
            Err(e) => return Verdict::Unknown(e),
        };
        let mut starting = Vec::new();
        for (n, (u, s)) in units.iter().zip(&seen).enumerate() {
            if let Some(Some(b)) = before.get(n) {
                if !has_started(b, s) {
                    starting.push(u.as_str());
                    continue;
                }
            }
            match look(u, s) {
                Err(why) => return Verdict::Unhealthy(why),
                Ok(false) => starting.push(u.as_str()),
                Ok(true) => {}
            }
        }
        if starting.is_empty() {
            break seen;
        }
        if host.elapsed() >= deadline {
            return Verdict::Unhealthy(format!(
                "{} still starting after {} s",
                starting.join(" "),
                health.timeout
            ));
        }
        host.sleep(POLL);
    };
    host.log(&format!(
        "{} up: watching for {} s",
        units.join(" "),
        health.steady
    ));
    if let Some(v) = steady(host, units, &first, health) {
        return v;
    }
    match &health.command {
        None => Verdict::Healthy,
        Some(cmd) => match host.run_check(cmd, health.timeout()) {
            Ok(true) => Verdict::Healthy,
            Ok(false) => Verdict::Unhealthy(format!("the health command {cmd:?} failed")),
            // not run at all: says nothing of the version
            Err(e) => Verdict::Unknown(format!("the health command {cmd:?}: {e:#}")),
        },
    }
}

/// Watches the units for the steady time, a second at a time: a verdict if one failed,
/// restarted or was started again; `None` if they held.
fn steady(
    host: &mut impl Host,
    units: &[String],
    first: &[UnitStatus],
    health: &Health,
) -> Option<Verdict> {
    let end = host.elapsed() + health.steady();
    loop {
        let now = host.elapsed();
        if now >= end {
            return None;
        }
        host.sleep((end - now).min(Duration::from_secs(1)));
        let seen = match statuses(host, units) {
            Ok(s) => s,
            Err(e) => return Some(Verdict::Unknown(e)),
        };
        for ((u, before), s) in units.iter().zip(first).zip(&seen) {
            if s.restarts != before.restarts || s.started_at != before.started_at {
                return Some(Verdict::Unhealthy(format!(
                    "{u} restarted within {} s of its start",
                    health.steady
                )));
            }
            match look(u, s) {
                Ok(true) => {}
                Ok(false) => {
                    return Some(Verdict::Unhealthy(format!(
                        "{u} was no longer up within {} s of its start ({})",
                        health.steady, s.active_state
                    )))
                }
                Err(why) => {
                    return Some(Verdict::Unhealthy(format!(
                        "{why}, within {} s of its start",
                        health.steady
                    )))
                }
            }
        }
    }
}

fn statuses(host: &mut impl Host, units: &[String]) -> Result<Vec<UnitStatus>, String> {
    units
        .iter()
        .map(|u| {
            host.unit(u)
                .map_err(|e| format!("cannot ask systemd about {u}: {e:#}"))
        })
        .collect()
}
