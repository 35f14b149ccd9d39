//! The agent's proof: each scenario (a first install, updates to versions that are healthy,
//! crash, are skipped, hang starting, fail after 5 s, restart, end at once, fail their health
//! command or are refused; an extension, a base and an extension, two extensions over one base,
//! two images, a rollback, an update and a rollback, a replayed list) is run once for every
//! step and every fault at that step (an error, a hang to the call's limit, a power cut, a full
//! disk), and again with a power cut at every step followed by every fault at every step of
//! the recovery. After each schedule, the host's next runs must leave, for every image: the
//! newest installed pair that is healthy and not remembered as bad attached, its units up, the
//! record finished, nothing remembered as bad without a reason the schedule gave, and the
//! feed's newest version taken (see sim::check).

mod sim;

use portable_service_agent::agent::{self, Command};
use portable_service_agent::config::Config;
use sim::host::{Fault, SimHost, FAULTS};
use sim::world::{Behaviour, World};
use sim::{clean, config, play, Scenario};
use std::time::Instant;

fn plain(files: &Config) -> Vec<(String, String)> {
    files.files.clone()
}

/// demo 1 runs; the feed now offers 2, which does `two`.
fn update(name: &'static str, two: Behaviour, reattach: bool, sidecars: bool) -> Scenario {
    let cfg = config("demo", None, sidecars);
    let mut w = World::new(reattach);
    w.image("demo_1.raw", Behaviour::Healthy);
    w.image("demo_2.raw", two);
    w.publish("demo", &plain(&cfg), &["1"]);
    clean(&mut w, &cfg, &Command::Update);
    w.publish("demo", &plain(&cfg), &["1", "2"]);
    Scenario {
        name,
        world: w,
        configs: vec![cfg],
        runs: vec![(0, Command::Update)],
    }
}

fn first_install() -> Scenario {
    let cfg = config("demo", None, false);
    let mut w = World::new(true);
    w.image("demo_1.raw", Behaviour::Healthy);
    w.publish("demo", &plain(&cfg), &["1"]);
    Scenario {
        name: "first install",
        world: w,
        configs: vec![cfg],
        runs: vec![(0, Command::Update)],
    }
}

fn health_command() -> Scenario {
    let mut s = update(
        "update whose health command fails",
        Behaviour::CheckFails,
        true,
        false,
    );
    s.configs[0].health.command = Some(vec!["/bin/check".into()]);
    s
}

/// An extension `app` over a base installed by hand (`fed`: false), or fed too (base 2 then
/// does `base_two`); the extension's feed then offers app 2, which does `two`.
fn extension(name: &'static str, fed: bool, two: Behaviour, base_two: Behaviour) -> Scenario {
    let cfg = config("app", Some(("base", fed)), false);
    let base_files = cfg.base.as_ref().unwrap().files.clone();
    let mut w = World::new(true);
    w.image("base_1.raw", Behaviour::Healthy);
    w.image("base_2.raw", base_two);
    w.image("app_1.raw", Behaviour::Healthy);
    w.image("app_2.raw", two);
    if fed {
        w.publish("base", &base_files, &["1"]);
    } else {
        w.install("base_1.raw");
    }
    w.publish("app", &plain(&cfg), &["1"]);
    clean(&mut w, &cfg, &Command::Update);
    w.publish("app", &plain(&cfg), &["1", "2"]);
    if fed {
        w.publish("base", &base_files, &["1", "2"]);
    }
    Scenario {
        name,
        world: w,
        configs: vec![cfg],
        runs: vec![(0, Command::Update)],
    }
}

/// Two extensions, `app` and `tool`, over one base; both update.
fn two_extensions() -> Scenario {
    let app = config("app", Some(("base", false)), false);
    let tool = config("tool", Some(("base", false)), false);
    let mut w = World::new(true);
    w.install("base_1.raw");
    w.image("base_1.raw", Behaviour::Healthy);
    for f in ["app_1.raw", "app_2.raw", "tool_1.raw", "tool_2.raw"] {
        w.image(f, Behaviour::Healthy);
    }
    w.publish("app", &plain(&app), &["1"]);
    w.publish("tool", &plain(&tool), &["1"]);
    clean(&mut w, &app, &Command::Update);
    clean(&mut w, &tool, &Command::Update);
    w.publish("app", &plain(&app), &["1", "2"]);
    w.publish("tool", &plain(&tool), &["1", "2"]);
    Scenario {
        name: "two extensions over one base",
        world: w,
        configs: vec![app, tool],
        runs: vec![(0, Command::Update), (1, Command::Update)],
    }
}

/// Two extensions over one base that comes from its own feed: `app`'s updates bring new
/// bases while `tool` still runs the oldest, which must stay installed.
fn two_extensions_fed_base() -> Scenario {
    let app = config("app", Some(("base", true)), false);
    let tool = config("tool", Some(("base", true)), false);
    let base_files = app.base.as_ref().unwrap().files.clone();
    let mut w = World::new(true);
    for f in [
        "base_1.raw",
        "base_2.raw",
        "base_3.raw",
        "app_1.raw",
        "tool_1.raw",
    ] {
        w.image(f, Behaviour::Healthy);
    }
    w.publish("base", &base_files, &["1"]);
    w.publish("app", &plain(&app), &["1"]);
    w.publish("tool", &plain(&tool), &["1"]);
    clean(&mut w, &app, &Command::Update);
    clean(&mut w, &tool, &Command::Update);
    w.publish("base", &base_files, &["1", "2"]);
    clean(&mut w, &app, &Command::Update);
    w.publish("base", &base_files, &["1", "2", "3"]);
    Scenario {
        name: "two extensions over one base from its feed",
        world: w,
        configs: vec![app, tool],
        runs: vec![(0, Command::Update)],
    }
}

/// Two images side by side: `demo` updates to a crashing version, `other` to a healthy one.
fn two_images() -> Scenario {
    let demo = config("demo", None, false);
    let other = config("other", None, false);
    let mut w = World::new(true);
    w.image("demo_1.raw", Behaviour::Healthy);
    w.image("demo_2.raw", Behaviour::Crashes);
    w.image("other_1.raw", Behaviour::Healthy);
    w.image("other_2.raw", Behaviour::Healthy);
    w.publish("demo", &plain(&demo), &["1"]);
    w.publish("other", &plain(&other), &["1"]);
    clean(&mut w, &demo, &Command::Update);
    clean(&mut w, &other, &Command::Update);
    w.publish("demo", &plain(&demo), &["1", "2"]);
    w.publish("other", &plain(&other), &["1", "2"]);
    Scenario {
        name: "two images",
        world: w,
        configs: vec![demo, other],
        runs: vec![(0, Command::Update), (1, Command::Update)],
    }
}

/// demo 2 runs after 1; then a rollback (with `update_too`: an update to 3 first).
fn rollback(name: &'static str, update_too: bool) -> Scenario {
    let mut s = update(name, Behaviour::Healthy, true, false);
    clean(&mut s.world, &s.configs[0], &Command::Update);
    if update_too {
        s.world.image("demo_3.raw", Behaviour::Healthy);
        let files = plain(&s.configs[0]);
        s.world.publish("demo", &files, &["1", "2", "3"]);
        s.runs = vec![(0, Command::Update), (0, Command::Rollback)];
    } else {
        s.runs = vec![(0, Command::Rollback)];
    }
    s
}

/// demo 2 runs; the feed serves the list that offered 1 only again, or a stale list.
fn replayed(name: &'static str, stale: bool) -> Scenario {
    let mut s = update(name, Behaviour::Healthy, true, false);
    clean(&mut s.world, &s.configs[0], &Command::Update);
    let files = plain(&s.configs[0]);
    if stale {
        s.world.image("demo_3.raw", Behaviour::Healthy);
        s.world.publish("demo", &files, &["1", "2", "3"]);
        let today = (s.world.unix() / 86_400) as i64;
        s.world.best_before.insert(sim::url("demo"), today);
    } else {
        s.world.publish("demo", &files, &["1"]);
    }
    s
}

fn scenarios() -> Vec<Scenario> {
    use Behaviour::*;
    vec![
        first_install(),
        update("update", Healthy, true, false),
        update(
            "update, no reattach (systemd before 248)",
            Healthy,
            false,
            false,
        ),
        update("update with a hash tree beside", Healthy, true, true),
        update("update to a oneshot", OneshotOk, true, false),
        update("update to a version that crashes", Crashes, true, false),
        update(
            "update to a version a condition skips",
            Skipped,
            true,
            false,
        ),
        update(
            "update to a version that hangs starting",
            HangsStarting,
            true,
            false,
        ),
        update(
            "update to a version that fails after 5 s",
            FailsAfter5,
            true,
            false,
        ),
        update("update to a version that restarts", Restarts, true, false),
        update(
            "update to a version that ends at once",
            ExitsAtOnce,
            true,
            false,
        ),
        update(
            "update to a version portabled refuses",
            Refused,
            true,
            false,
        ),
        update(
            "update, no reattach, to a crashing version",
            Crashes,
            false,
            false,
        ),
        health_command(),
        extension("extension only", false, Healthy, Healthy),
        extension("extension only, crashing", false, Crashes, Healthy),
        extension("base and extension", true, Healthy, Healthy),
        extension(
            "base and extension, the base refused",
            true,
            Healthy,
            Refused,
        ),
        two_extensions(),
        two_extensions_fed_base(),
        two_images(),
        rollback("rollback", false),
        rollback("update and rollback", true),
        replayed("a replayed list", false),
        replayed("a stale list", true),
    ]
}

/// Steps of the scenario's runs, without a fault.
fn steps(s: &Scenario) -> usize {
    let mut w = s.world.clone();
    s.runs
        .iter()
        .map(|(i, c)| {
            let mut h = SimHost::new(&mut w, None);
            agent::run(&mut h, &s.configs[*i], c);
            h.steps
        })
        .sum()
}

/// Every scenario without a fault (the sweeps below start with these; this says quickly
/// which scenario a change of the agent or of the simulator broke).
#[test]
fn every_scenario_without_a_fault_leaves_a_whole_healthy_version() {
    let mut failures = Vec::new();
    for s in scenarios() {
        let mut w = s.world.clone();
        let out = play(&s, &mut w, None, None);
        if let Err(e) = sim::check(&s, &w, &out) {
            failures.push(format!("{}: {e}\n  {}", s.name, w.log.join("\n  ")));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every scenario, without a fault, then with every fault at every step.
#[test]
fn every_fault_at_every_step_leaves_a_whole_healthy_version() {
    let started = Instant::now();
    let mut schedules = 0;
    let mut failures = Vec::new();
    for s in scenarios() {
        let n = steps(&s);
        let mut w = s.world.clone();
        let out = play(&s, &mut w, None, None);
        if let Err(e) = sim::check(&s, &w, &out) {
            failures.push(format!("{}, no fault: {e}", s.name));
        }
        for at in 0..n {
            for f in FAULTS {
                let mut w = s.world.clone();
                let out = play(&s, &mut w, Some((at, f)), None);
                schedules += 1;
                if let Err(e) = sim::check(&s, &w, &out) {
                    failures.push(format!("{}, {f:?} at step {at} of {n}: {e}", s.name));
                }
            }
        }
    }
    report("one fault", schedules, started, &failures);
}

/// A power cut at every step, then each fault at every `stride`-th step of the host's next
/// runs (the boot's recovery and the update after it), the steps taken shifting with the cut's
/// so that every pair of (cut, step) residues is covered.
#[test]
fn a_cut_then_any_fault_in_the_recovery_leaves_a_whole_healthy_version() {
    cut_then_fault(64);
}

/// The same, at every step of the next runs: a long sweep (BENCHMARKS.md has its numbers).
#[test]
#[ignore]
fn a_cut_then_any_fault_at_every_step_of_the_recovery() {
    cut_then_fault(1);
}

fn cut_then_fault(stride: usize) {
    let started = Instant::now();
    let mut schedules = 0;
    let mut failures = Vec::new();
    for s in scenarios() {
        let n = steps(&s);
        for at in 0..n {
            // the recovery's steps after this cut
            let mut w = s.world.clone();
            let counted = recovery_steps(&s, &mut w, at);
            for j in (at % stride..counted).step_by(stride) {
                for cut in [Fault::Cut, Fault::CutFlushed] {
                    for f in FAULTS {
                        let mut w = s.world.clone();
                        let out = play(&s, &mut w, Some((at, cut)), Some((j, f)));
                        schedules += 1;
                        if let Err(e) = sim::check(&s, &w, &out) {
                            failures.push(format!(
                                "{}, {cut:?} at step {at}, then {f:?} at step {j} of the next \
                                 runs: {e}",
                                s.name
                            ));
                        }
                    }
                }
            }
        }
    }
    report("a cut, then one fault", schedules, started, &failures);
}

/// Steps of the next runs after a cut at `at`.
fn recovery_steps(s: &Scenario, w: &mut World, at: usize) -> usize {
    let mut offset = 0;
    for (i, c) in &s.runs {
        let fault = at.checked_sub(offset).map(|a| (a, Fault::Cut));
        let mut h = SimHost::new(w, fault);
        agent::run(&mut h, &s.configs[*i], c);
        offset += h.steps;
        if h.cut {
            break;
        }
    }
    w.reboot();
    let mut total = 0;
    for c in [Command::Recover, Command::Update] {
        for cfg in &s.configs {
            total += clean(w, cfg, &c);
        }
    }
    total
}

fn report(what: &str, schedules: usize, started: Instant, failures: &[String]) {
    eprintln!(
        "{what}: {schedules} schedules in {:.1} s, {} failed",
        started.elapsed().as_secs_f64(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {schedules} schedules failed; the first ones:\n{}",
        failures.len(),
        failures
            .iter()
            .take(15)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// demo 2 ran after 1 and was rolled back by hand: 1 runs, 2 is remembered as bad.
fn rolled_back() -> (World, Config) {
    let s = rollback("rollback", false);
    let mut w = s.world.clone();
    let cfg = s.configs[0].clone();
    clean(&mut w, &cfg, &Command::Rollback);
    let attached: Vec<_> = w.attached.iter().map(|a| a.image.clone()).collect();
    assert_eq!(attached, ["demo_1.raw"]);
    (w, cfg)
}

/// A record that can't be read for a moment (an I/O error, not a record that doesn't parse)
/// must not be taken for no record: the run that went on without it wrote an empty record
/// over it, forgetting the versions remembered as bad (here the one rolled back by hand,
/// attached again), the newest version kept, and a switch left unfinished.
#[test]
fn a_record_read_error_forgets_nothing() {
    let (mut w, cfg) = rolled_back();
    // step 0 takes the lock, step 1 reads the record
    let mut h = SimHost::new(&mut w, Some((1, Fault::Error)));
    agent::run(&mut h, &cfg, &Command::Update);
    clean(&mut w, &cfg, &Command::Update);
    let attached: Vec<_> = w.attached.iter().map(|a| a.image.clone()).collect();
    assert_eq!(attached, ["demo_1.raw"], "{}", w.log.join("\n"));
    let record = sim::record_of(&w, &cfg);
    assert!(record.is_bad(&portable_service_agent::record::Pair {
        base: None,
        image: "demo_2.raw".into()
    }));
    assert_eq!(record.newest_kept.as_deref(), Some("2"));
}
