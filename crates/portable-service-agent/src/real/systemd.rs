//! systemd's side (`org.freedesktop.systemd1`): the reload after portabled's changes, enabling
//! and starting a unit, disabling it, stopping it.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use zbus::zvariant::{OwnedObjectPath, OwnedValue};

use super::bus::{error_name, Bus, Method, UNKNOWN_METHOD};
use super::portabled::Changes;

const SYSTEMD: &str = "org.freedesktop.systemd1";
const MANAGER_PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";
const PROPERTIES: &str = "org.freedesktop.DBus.Properties";
const NO_SUCH_UNIT: &str = "org.freedesktop.systemd1.NoSuchUnit";
/// `UNIT_FILE_PORTABLE`: the enablement links go beside the attached unit, where portabled's
/// detach finds them (install.h; public D-Bus API since 247).
const UNIT_FILE_PORTABLE: u64 = 1 << 2;
/// How often a stopping unit is looked at.
const POLL: Duration = Duration::from_millis(200);

/// `Enable`/`DisableUnitFilesWithFlags`' arguments: `as units, t flags`.
fn flags_args<'a>(units: &'a [&'a str]) -> (&'a [&'a str], u64) {
    (units, UNIT_FILE_PORTABLE)
}

/// `EnableUnitFiles`' arguments: `as units, b runtime, b force`.
fn enable_args<'a>(units: &'a [&'a str]) -> (&'a [&'a str], bool, bool) {
    (units, false, true)
}

/// `DisableUnitFiles`' arguments: `as units, b runtime`.
fn disable_args<'a>(units: &'a [&'a str]) -> (&'a [&'a str], bool) {
    (units, false)
}

/// `StartUnit`'s and `StopUnit`'s arguments: `s unit, s mode`.
fn job_args(unit: &str) -> (&str, &str) {
    (unit, "replace")
}

fn manager<'a>(name: &'static str, subject: &'a str, limit: Duration) -> Method<'a> {
    Method {
        destination: SYSTEMD,
        path: MANAGER_PATH,
        interface: MANAGER,
        name,
        subject,
        limit,
    }
}

/// systemd's `Reload()`, which answers once the unit files are loaded again.
pub fn reload(bus: &mut Bus, limit: Duration, after: &str) -> anyhow::Result<()> {
    bus.call(&manager("Reload", after, limit), &())
}

/// Enables `unit`: `EnableUnitFilesWithFlags(PORTABLE)` as portablectl does since 247, else
/// (`UnknownMethod`: older) `EnableUnitFiles(runtime false, force true)`. `with_flags`
/// remembers which one systemd has.
pub fn enable(
    bus: &mut Bus,
    limit: Duration,
    unit: &str,
    with_flags: &mut Option<bool>,
) -> anyhow::Result<()> {
    let units = [unit];
    if *with_flags != Some(false) {
        let m = manager("EnableUnitFilesWithFlags", unit, limit);
        match bus.call::<_, (bool, Changes)>(&m, &flags_args(&units)) {
            Ok(_) => {
                *with_flags = Some(true);
                return Ok(());
            }
            Err(e) if error_name(&e) == Some(UNKNOWN_METHOD) => *with_flags = Some(false),
            Err(e) => return Err(e),
        }
    }
    let m = manager("EnableUnitFiles", unit, limit);
    let _: (bool, Changes) = bus.call(&m, &enable_args(&units))?;
    Ok(())
}

/// Disables `unit`, the way [`enable`] enabled it.
pub fn disable(
    bus: &mut Bus,
    limit: Duration,
    unit: &str,
    with_flags: &mut Option<bool>,
) -> anyhow::Result<()> {
    let units = [unit];
    if *with_flags != Some(false) {
        let m = manager("DisableUnitFilesWithFlags", unit, limit);
        match bus.call::<_, Changes>(&m, &flags_args(&units)) {
            Ok(_) => {
                *with_flags = Some(true);
                return Ok(());
            }
            Err(e) if error_name(&e) == Some(UNKNOWN_METHOD) => *with_flags = Some(false),
            Err(e) => return Err(e),
        }
    }
    let m = manager("DisableUnitFiles", unit, limit);
    let _: Changes = bus.call(&m, &disable_args(&units))?;
    Ok(())
}

/// Queues the start (or restart) of `unit`; the job is not waited for. The unit is first
/// referenced by the agent's connection (`RefUnit`, 235 and newer), so that systemd keeps it
/// loaded while the agent judges it: measured in a VM (257), a unit without `[Install]`
/// skipped by `ConditionPathExists=/nonexistent` ("was skipped because of an unmet condition
/// check") was forgotten at once, and the next look loaded it anew, every property at its
/// default (`ConditionResult=no`, `ConditionTimestamp` 0, `Result=success`): the agent judged it
/// "stopped (Result=success)", not skipped, and a oneshot that exited 0 would look the same.
/// A systemd without `RefUnit`, or a refusal, only loses that. Once a connection (see
/// [`Bus::call_once`]: a second reference breaks systemd before 251).
pub fn start(bus: &mut Bus, limit: Duration, unit: &str) -> anyhow::Result<()> {
    let _: anyhow::Result<()> = bus.call_once(&manager("RefUnit", unit, limit), &unit);
    // a restart: a unit of the version before that still runs must run the new version, as
    // portablectl's reattach restarts its units (a stopped unit is started)
    let _job: OwnedObjectPath = bus.call(&manager("RestartUnit", unit, limit), &job_args(unit))?;
    Ok(())
}

/// Stops `unit`, waits until it is inactive or failed (`wait` at most), and resets its failed
/// state. A unit systemd doesn't know is stopped already.
pub fn stop(bus: &mut Bus, limit: Duration, wait: Duration, unit: &str) -> anyhow::Result<()> {
    let stop = bus.call::<_, OwnedObjectPath>(&manager("StopUnit", unit, limit), &job_args(unit));
    match stop {
        Err(e) if error_name(&e) == Some(NO_SUCH_UNIT) => return Ok(()),
        Err(e) => return Err(e),
        Ok(_) => {}
    }
    let start = Instant::now();
    loop {
        let state = active_state(bus, limit, unit)?;
        if state == "inactive" || state == "failed" {
            break;
        }
        if start.elapsed() >= wait {
            bail!("StopUnit {unit}: still {state} after {} s", wait.as_secs());
        }
        std::thread::sleep(POLL);
    }
    let reset = bus.call::<_, ()>(&manager("ResetFailedUnit", unit, limit), &unit);
    match reset {
        Err(e) if error_name(&e) != Some(NO_SUCH_UNIT) => Err(e),
        _ => Ok(()),
    }
}

/// `ActiveState` of a loaded unit; "inactive" for one systemd let go of.
fn active_state(bus: &mut Bus, limit: Duration, unit: &str) -> anyhow::Result<String> {
    let path = match bus.call::<_, OwnedObjectPath>(&manager("GetUnit", unit, limit), &unit) {
        Ok(path) => path,
        Err(e) if error_name(&e) == Some(NO_SUCH_UNIT) => return Ok("inactive".into()),
        Err(e) => return Err(e),
    };
    let m = Method {
        destination: SYSTEMD,
        path: path.as_str(),
        interface: PROPERTIES,
        name: "Get",
        subject: unit,
        limit,
    };
    let value: OwnedValue = bus.call(&m, &("org.freedesktop.systemd1.Unit", "ActiveState"))?;
    String::try_from(value).map_err(|e| anyhow!("Get {unit} ActiveState: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::real::bus::{decode, signature_of};

    #[test]
    fn arguments_have_systemds_signatures() {
        let units = ["app.service"];
        assert_eq!(signature_of(&flags_args(&units)), "ast");
        assert_eq!(signature_of(&enable_args(&units)), "asbb");
        assert_eq!(signature_of(&disable_args(&units)), "asb");
        assert_eq!(signature_of(&job_args("app.service")), "ss");
        assert_eq!(signature_of(&"app.service"), "s");
        assert_eq!(
            signature_of(&("org.freedesktop.systemd1.Unit", "ActiveState")),
            "ss"
        );
        assert_eq!(signature_of(&()), "");
    }

    #[test]
    fn replies_are_read() {
        let enabled = (
            true,
            vec![("symlink".to_string(), "/a".to_string(), "/b".to_string())],
        );
        let read: (bool, Changes) = decode(&enabled).unwrap();
        assert_eq!(read, enabled);
        let path =
            OwnedObjectPath::try_from("/org/freedesktop/systemd1/unit/app_2eservice").unwrap();
        let read: OwnedObjectPath = decode(&path).unwrap();
        assert_eq!(read, path);
        let state = zbus::zvariant::Value::from("active");
        let read: OwnedValue = decode(&state).unwrap();
        assert_eq!(String::try_from(read).unwrap(), "active");
        let () = decode(&()).unwrap();
    }
}
