//! What systemd says of a unit, as the agent's `UnitStatus`: its D-Bus properties (`Unit`, and
//! `Service` for a service; the same names from 239 to 262), and, for a service's main process,
//! whether it already runs the unit's program (`/proc/PID/exe`).

use std::collections::HashMap;
use std::time::Duration;

use anyhow::anyhow;
use zbus::zvariant::{OwnedObjectPath, OwnedValue};

use super::bus::{error_name, Bus, Method};
use crate::host::UnitStatus;

const SYSTEMD: &str = "org.freedesktop.systemd1";
const NO_SUCH_UNIT: &str = "org.freedesktop.systemd1.NoSuchUnit";
/// `CLD_EXITED`, as `ExecMainCode`.
const CLD_EXITED: i32 = 1;

type Properties = HashMap<String, OwnedValue>;

/// The state of `unit` (loaded first if systemd doesn't hold it).
pub fn unit(bus: &mut Bus, limit: Duration, unit: &str) -> anyhow::Result<UnitStatus> {
    let path = object_path(bus, limit, unit)?;
    let mut props = properties(bus, limit, unit, &path, "org.freedesktop.systemd1.Unit")?;
    let condition_ok: bool = take(&mut props, unit, "ConditionResult")?;
    let condition_at: u64 = take(&mut props, unit, "ConditionTimestamp")?;
    let active_state: String = take(&mut props, unit, "ActiveState")?;
    let (job, _): (u32, OwnedObjectPath) = take(&mut props, unit, "Job")?;
    let mut status = UnitStatus {
        active_state: seen_state(active_state, job),
        started_at: take(&mut props, unit, "InactiveExitTimestamp")?,
        checked_at: condition_at,
        skipped: !condition_ok && condition_at != 0,
        result: "success".into(),
        ..UnitStatus::default()
    };
    if unit.ends_with(".service") {
        let mut service = properties(bus, limit, unit, &path, "org.freedesktop.systemd1.Service")?;
        let kind: String = take(&mut service, unit, "Type")?;
        let main_pid: u32 = take(&mut service, unit, "MainPID")?;
        let exited_at: u64 = take(&mut service, unit, "ExecMainExitTimestamp")?;
        let code: i32 = take(&mut service, unit, "ExecMainCode")?;
        let exit_status: i32 = take(&mut service, unit, "ExecMainStatus")?;
        status.service = true;
        status.oneshot = kind == "oneshot";
        status.result = take(&mut service, unit, "Result")?;
        status.restarts = take(&mut service, unit, "NRestarts")?;
        status.runs_own_program = runs_own_program(main_pid);
        status.exited_ok = exited_at != 0 && code == CLD_EXITED && exit_status == 0;
    }
    Ok(status)
}

/// The state the agent is told: a unit with a job still queued (`Job` not 0) is `activating`,
/// whatever its `ActiveState`. A start or restart is queued, not waited for, and until systemd
/// runs the job the unit keeps the state it had: `inactive` (measured on 252 and 257: the
/// restart of a freshly attached demo.service waited 2 s behind the modprobe@dm_*.service its
/// `RootImage=` pulls in, and the agent, told `inactive`, judged a good version stopped), or
/// `active` with the version before's process (which a judge would count as up, then as
/// restarted).
pub fn seen_state(active_state: String, job: u32) -> String {
    if job != 0 {
        "activating".into()
    } else {
        active_state
    }
}

/// `GetUnit`, and `LoadUnit` when systemd doesn't hold the unit.
fn object_path(bus: &mut Bus, limit: Duration, unit: &str) -> anyhow::Result<OwnedObjectPath> {
    let manager = |name| Method {
        destination: SYSTEMD,
        path: "/org/freedesktop/systemd1",
        interface: "org.freedesktop.systemd1.Manager",
        name,
        subject: unit,
        limit,
    };
    match bus.call(&manager("GetUnit"), &unit) {
        Err(e) if error_name(&e) == Some(NO_SUCH_UNIT) => bus.call(&manager("LoadUnit"), &unit),
        got => got,
    }
}

fn properties(
    bus: &mut Bus,
    limit: Duration,
    unit: &str,
    path: &OwnedObjectPath,
    interface: &str,
) -> anyhow::Result<Properties> {
    let m = Method {
        destination: SYSTEMD,
        path: path.as_str(),
        interface: "org.freedesktop.DBus.Properties",
        name: "GetAll",
        subject: unit,
        limit,
    };
    bus.call(&m, &interface)
}

fn take<T>(props: &mut Properties, unit: &str, name: &str) -> anyhow::Result<T>
where
    T: TryFrom<OwnedValue, Error = zbus::zvariant::Error>,
{
    let value = props
        .remove(name)
        .ok_or_else(|| anyhow!("GetAll {unit}: no property {name}"))?;
    T::try_from(value).map_err(|e| anyhow!("GetAll {unit}: property {name}: {e}"))
}

/// Whether process `pid` runs its own program, not systemd's (its fork before the exec, or
/// systemd-executor still setting up the image). No process (0, or gone): false.
pub fn runs_own_program(pid: u32) -> bool {
    pid > 0
        && std::fs::read_link(format!("/proc/{pid}/exe"))
            .is_ok_and(|exe| !is_systemd(&exe.to_string_lossy()))
}

/// Whether a process's executable is systemd's: `.../systemd` or `.../systemd-executor`,
/// perhaps replaced on disk since (` (deleted)`).
pub fn is_systemd(exe: &str) -> bool {
    let exe = exe.strip_suffix(" (deleted)").unwrap_or(exe);
    exe.ends_with("/systemd") || exe.ends_with("/systemd-executor")
}

#[cfg(test)]
mod tests {
    use super::*;
    use zbus::zvariant::Value;

    #[test]
    fn properties_are_read_by_type() {
        let mut sent: HashMap<&str, Value> = HashMap::new();
        sent.insert("ActiveState", Value::from("active"));
        sent.insert("ConditionResult", Value::from(false));
        sent.insert("ConditionTimestamp", Value::from(1_700_000_000_000_000u64));
        sent.insert("NRestarts", Value::from(2u32));
        sent.insert("ExecMainCode", Value::from(1i32));
        let job = zbus::zvariant::ObjectPath::try_from("/org/freedesktop/systemd1/job/7").unwrap();
        sent.insert("Job", Value::from((7u32, job)));
        let mut props: Properties = crate::real::bus::decode(&sent).unwrap();
        assert_eq!(
            take::<String>(&mut props, "a.service", "ActiveState").unwrap(),
            "active"
        );
        assert!(!take::<bool>(&mut props, "a.service", "ConditionResult").unwrap());
        assert_eq!(
            take::<u64>(&mut props, "a.service", "ConditionTimestamp").unwrap(),
            1_700_000_000_000_000
        );
        assert_eq!(
            take::<u32>(&mut props, "a.service", "NRestarts").unwrap(),
            2
        );
        assert_eq!(
            take::<i32>(&mut props, "a.service", "ExecMainCode").unwrap(),
            1
        );
        let (job, _) = take::<(u32, OwnedObjectPath)>(&mut props, "a.service", "Job").unwrap();
        assert_eq!(job, 7);
        let missing = take::<u32>(&mut props, "a.service", "MainPID").unwrap_err();
        assert_eq!(missing.to_string(), "GetAll a.service: no property MainPID");
    }

    #[test]
    fn a_unit_with_a_queued_job_is_starting() {
        assert_eq!(seen_state("inactive".into(), 12), "activating");
        assert_eq!(seen_state("active".into(), 12), "activating");
        assert_eq!(seen_state("inactive".into(), 0), "inactive");
        assert_eq!(seen_state("failed".into(), 0), "failed");
    }

    #[test]
    fn systemds_own_code_is_told_from_the_units_program() {
        assert!(is_systemd("/usr/lib/systemd/systemd"));
        assert!(is_systemd("/usr/lib/systemd/systemd-executor"));
        assert!(is_systemd("/usr/lib/systemd/systemd (deleted)"));
        assert!(!is_systemd("/usr/bin/app"));
        assert!(!is_systemd("/nix/store/abc-app/bin/app-systemd-helper"));
        assert!(!runs_own_program(0));
        assert!(runs_own_program(std::process::id()));
    }
}
