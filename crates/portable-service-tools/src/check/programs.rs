//! The programs a unit's `Exec*=` settings run: whether the image has each where systemd looks
//! for it, and where each systemd version looks (the image, or before 247 the host for a name
//! without a path, or before 245 the host's root for a service with `PrivateDevices=yes`; a
//! socket's always on the host).

use super::extensions::Layers;
use super::report::{self, Finding, Report, Unit};
use super::tree::{Image, Node, Resolved, View};
use super::versions::{rules_of, FINDS_NAMES_IN_THE_IMAGE, PRIVATE_DEVICES_IN_THE_IMAGE};
use super::Options;
use portable_service_rules::unit_file::{self, Setting};
use std::path::{Path, PathBuf};

/// The programs step: each attached unit's programs, as the image it sees has them.
pub(super) fn check_programs(
    r: &mut Report,
    layers: &Layers,
    units: &[(Unit, &Image)],
    options: &Options,
) {
    for (unit, image) in units {
        let root = if rules_of(options.systemd) < PRIVATE_DEVICES_IN_THE_IMAGE
            && private_devices(unit, &options.profile)
        {
            ProgramsFrom::HostRoot
        } else {
            ProgramsFrom::Image
        };
        check_unit(r, unit, &layers.seen_from(image), options.systemd, root);
    }
}

/// The settings of a service whose first word is a program systemd runs.
const EXEC_SETTINGS: [&str; 7] = [
    "ExecCondition",
    "ExecStartPre",
    "ExecStart",
    "ExecStartPost",
    "ExecReload",
    "ExecStop",
    "ExecStopPost",
];

/// Where systemd looks for a program named without a path (its default PATH, split /usr).
const SEARCH_PATH: [&str; 6] = [
    "usr/local/sbin",
    "usr/local/bin",
    "usr/sbin",
    "usr/bin",
    "sbin",
    "bin",
];

/// Why `program` (of an `Exec*=` setting) can't run from the image, or `None` when it can: a
/// path must be an executable file there; a name is looked for in systemd's default PATH.
fn why_it_cannot_run(view: &View, program: &str) -> Option<String> {
    let candidates: Vec<PathBuf> = if program.starts_with('/') {
        vec![PathBuf::from(program)]
    } else {
        SEARCH_PATH
            .iter()
            .map(|d| Path::new(d).join(program))
            .collect()
    };
    let found = candidates
        .iter()
        .map(|c| view.resolve(c))
        .find(|res| matches!(res, Resolved::Found(..)));
    Some(match found {
        Some(Resolved::Found(_, Node::File { mode })) if mode & 0o111 != 0 => return None,
        Some(Resolved::Found(p, Node::File { .. })) => {
            format!("/{} is not executable", p.display())
        }
        Some(Resolved::Found(p, _)) => format!("/{} is not a file", p.display()),
        _ if program.starts_with('/') => match view.resolve(Path::new(program)) {
            Resolved::Missing(m) => format!("the image lacks /{}", m.display()),
            _ => "a symlink loop".to_owned(),
        },
        _ => format!(
            "not found in {} of the image",
            SEARCH_PATH.map(|d| format!("/{d}")).join(":")
        ),
    })
}

/// What systemd before [`FINDS_NAMES_IN_THE_IMAGE`] does with a program named without a path.
fn looked_up_on_the_host(systemd: u32, program: &str) -> String {
    format!(
        "systemd {systemd} looks `{program}` up on the host as it loads the unit (from \
         {FINDS_NAMES_IN_THE_IMAGE} on, in the image as it runs it): the unit is \"bad-setting\" \
         unless the host has it, and runs only if the image has it where the host does; name it \
         by its path in the image"
    )
}

/// What systemd before [`PRIVATE_DEVICES_IN_THE_IMAGE`] does with a service's programs under
/// `PrivateDevices=yes`.
fn run_from_the_host_root(systemd: u32) -> String {
    format!(
        "systemd {systemd} runs a service with PrivateDevices=yes (the unit's own, or that of \
         every profile but `trusted`) from the host's root, not the image's (measured; from \
         {PRIVATE_DEVICES_IN_THE_IMAGE} on, from the image): it fails unless the host has the \
         program, and then runs the host's; attach with `--profile trusted`"
    )
}

/// Where a service's programs come from.
#[derive(Clone, Copy, PartialEq)]
enum ProgramsFrom {
    Image,
    /// The host's root, in place of the image's (239 with `PrivateDevices=yes`).
    HostRoot,
}

/// Whether a service runs with `PrivateDevices=yes`: every profile systemd ships but `trusted`
/// sets it in its drop-in, which overrides the unit's own setting; under `trusted` the unit's
/// own decides.
fn private_devices(unit: &Unit, profile: &str) -> bool {
    if !unit.name.ends_with(".service") {
        return false;
    }
    if profile != "trusted" {
        return true;
    }
    unit_file::settings(&unit.content)
        .into_iter()
        .rfind(|s| s.section == "Service" && s.key == "PrivateDevices")
        .is_some_and(|s| matches!(s.value.trim(), "yes" | "true" | "on" | "1"))
}

/// Programs the unit's `Exec*=` settings run that the image lacks or can't run.
fn check_unit(r: &mut Report, unit: &Unit, view: &View, systemd: u32, root: ProgramsFrom) {
    if unit.name.ends_with(".socket") {
        for setting in unit_file::host_programs(&unit.content) {
            r.error(Finding::runs(format!(
                "{}: {}={}: systemd runs a socket's programs from the host's file system, \
                 not the image's (portabled makes only services run in the image), so this \
                 fails unless the host has it; run it from the service instead",
                unit.name, setting.key, setting.value
            )));
        }
    }
    for setting in unit_file::settings(&unit.content) {
        let key = setting.key.as_str();
        if setting.section != "Service" || !EXEC_SETTINGS.contains(&key) {
            continue;
        }
        let Some(exec) = Exec::of(unit, &setting) else {
            continue;
        };
        let Some((problem, outcome)) = exec.problem(r, view, systemd, root) else {
            continue;
        };
        r.missing_programs.push(report::Program {
            unit: unit.name.clone(),
            setting: key.to_owned(),
            program: exec.program.to_owned(),
            why: problem.clone(),
        });
        r.error(Finding::runs(format!(
            "{}: {key}={}: {problem}{outcome}",
            unit.name, exec.program
        )));
    }
}

/// The program an `Exec*=` setting of a unit runs.
struct Exec<'s> {
    unit: &'s Unit,
    setting: &'s Setting,
    /// Its first word, without the prefixes systemd reads (`@-:+!|`) and quotes.
    program: &'s str,
    /// `-`: systemd records the failure (203/EXEC too) and goes on (measured).
    ignored: bool,
}

impl<'s> Exec<'s> {
    /// The program of `setting`, unless it is none or one systemd expands (`%`, `$`), which
    /// can't be looked for here.
    fn of(unit: &'s Unit, setting: &'s Setting) -> Option<Exec<'s>> {
        let value = setting
            .value
            .trim_start_matches(['@', '-', ':', '+', '!', '|']);
        let ignored = setting.value[..setting.value.len() - value.len()].contains('-');
        let program = match value.strip_prefix('"') {
            Some(rest) => rest.split('"').next().unwrap_or(""),
            None => value.split_whitespace().next().unwrap_or(""),
        };
        if program.is_empty() || program.contains('%') || program.contains('$') {
            return None;
        }
        Some(Exec {
            unit,
            setting,
            program,
            ignored,
        })
    }

    /// Why the program fails, and what then becomes of the unit; `None` when it runs, or when
    /// `-` makes systemd ignore that it doesn't (advice).
    fn problem(
        &self,
        r: &mut Report,
        view: &View,
        systemd: u32,
        root: ProgramsFrom,
    ) -> Option<(String, &'static str)> {
        let (unit, key, value) = (&self.unit.name, &self.setting.key, &self.setting.value);
        if !self.program.starts_with('/') && rules_of(systemd) < FINDS_NAMES_IN_THE_IMAGE {
            return Some((looked_up_on_the_host(systemd, self.program), ""));
        }
        if root == ProgramsFrom::HostRoot {
            if self.ignored {
                r.advice(&format!(
                    "{unit}: {key}={value}: {}, and `-` makes systemd ignore a failure",
                    run_from_the_host_root(systemd)
                ));
                return None;
            }
            let outcome = " (203/EXEC where the host hasn't it)";
            return Some((run_from_the_host_root(systemd), outcome));
        }
        let problem = why_it_cannot_run(view, self.program)?;
        if self.ignored {
            r.advice(&format!(
                "{unit}: {key}={value}: the program can't run from the image, and `-` makes \
                 systemd ignore that"
            ));
            return None;
        }
        Some((problem, " (the unit fails with 203/EXEC)"))
    }
}
