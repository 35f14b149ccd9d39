//! The agent against a simulated host: scenarios, the schedules that break them, and what must
//! hold after each (see tests/simulation.rs).

pub mod host;
pub mod world;

use host::{Fault, SimHost};
use portable_service_agent::agent::{self, Command};
use portable_service_agent::config::{Base, Config, Health};
use portable_service_agent::installed;
use portable_service_agent::record::Record;
use portable_service_rules::feed::compare_versions;
use std::cmp::Ordering;
use world::{Behaviour, World};

pub const TARGET: &str = "/var/lib/portables";
pub const STATE: &str = "/var/lib/psa";

pub fn url(name: &str) -> String {
    format!("http://feed.test/{name}")
}

/// An image's configuration: `sidecars` adds a hash tree beside the image.
pub fn config(name: &str, base: Option<(&str, bool)>, sidecars: bool) -> Config {
    let mut files = vec![(".raw".to_owned(), ".raw".to_owned())];
    if sidecars {
        files.push((".verity".to_owned(), ".verity".to_owned()));
    }
    Config {
        name: name.to_owned(),
        url: url(name),
        target: TARGET.to_owned(),
        keep: 2,
        files,
        prefixes: Vec::new(),
        base: base.map(|(b, fed)| Base {
            name: b.to_owned(),
            url: fed.then(|| url(b)),
            files: vec![(".raw".to_owned(), ".raw".to_owned())],
        }),
        health: Health {
            timeout: 90,
            steady: 10,
            command: None,
        },
        profile: None,
        state_dir: STATE.to_owned(),
        max_file: 1 << 20,
    }
}

/// A host's images, their feeds, and the runs a schedule breaks.
pub struct Scenario {
    pub name: &'static str,
    pub world: World,
    pub configs: Vec<Config>,
    /// (image's index in `configs`, command): the runs faults are injected into.
    pub runs: Vec<(usize, Command)>,
}

impl World {
    /// Version `file`'s image (its units named after its image) that does `behaviour`.
    pub fn image(&mut self, file: &str, behaviour: Behaviour) {
        let name = installed::name_of(file);
        let units = vec![format!("{name}.service"), format!("{name}@.service")];
        self.images.insert(file.to_owned(), (behaviour, units));
    }

    /// The feed of `cfg`'s image offers these versions (files of the config's suffixes).
    pub fn publish(&mut self, name: &str, files: &[(String, String)], versions: &[&str]) {
        let mut feed = std::collections::BTreeMap::new();
        for v in versions {
            for (_, suffix) in files {
                let f = format!("{name}_{v}{suffix}");
                feed.insert(f.clone(), world::image_bytes(&f));
            }
        }
        self.feeds.insert(url(name), feed);
    }

    /// A file already installed, durable (a base put there by hand).
    pub fn install(&mut self, file: &str) {
        self.fs
            .put_durable(&format!("{TARGET}/{file}"), world::image_bytes(file));
    }
}

/// Runs `command` for `cfg` without faults; how many steps it took.
pub fn clean(world: &mut World, cfg: &Config, command: &Command) -> usize {
    let mut h = SimHost::new(world, None);
    agent::run(&mut h, cfg, command);
    h.steps
}

/// What a schedule did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub cuts: u32,
    pub runs: usize,
    /// What broke an invariant that holds after every run, faulted or not.
    pub broken: Vec<String>,
}

/// After any run: every file an attachment runs is there, whole (a unit restarted, or the
/// host booted, needs it).
fn attached_files_whole(world: &World, out: &mut Outcome) {
    for a in &world.attached {
        for f in std::iter::once(&a.image).chain(&a.extensions) {
            let path = format!("{TARGET}/{f}");
            if world.fs.read(&path) != Some(world::image_bytes(f)) {
                out.broken
                    .push(format!("{f} is attached, and {path} is gone or not whole"));
            }
        }
    }
}

/// Runs `runs` with `first` injected at a step of them (counted across the runs), then the
/// host's next runs (a boot's recover after a cut, then each image's update) with `second`
/// injected into them; then, clean, a boot's recover if the second cut, and an update each.
pub fn play(
    s: &Scenario,
    world: &mut World,
    first: Option<(usize, Fault)>,
    second: Option<(usize, Fault)>,
) -> Outcome {
    let mut out = Outcome::default();
    let mut offset = 0;
    let mut cut = false;
    for (i, command) in &s.runs {
        let fault = first.and_then(|(at, f)| at.checked_sub(offset).map(|a| (a, f)));
        let mut h = SimHost::new(world, fault);
        agent::run(&mut h, &s.configs[*i], command);
        offset += h.steps;
        out.runs += 1;
        if h.cut {
            cut = true;
            break;
        }
        attached_files_whole(world, &mut out);
    }
    let next = |cut: bool| -> Vec<(usize, Command)> {
        let mut r = Vec::new();
        if cut {
            r.extend((0..s.configs.len()).map(|i| (i, Command::Recover)));
        }
        r.extend((0..s.configs.len()).map(|i| (i, Command::Update)));
        r
    };
    if cut {
        out.cuts += 1;
        world.reboot();
    }
    let mut offset = 0;
    let mut cut_again = false;
    for (i, command) in next(cut) {
        let fault = second.and_then(|(at, f)| at.checked_sub(offset).map(|a| (a, f)));
        let mut h = SimHost::new(world, fault);
        agent::run(&mut h, &s.configs[i], &command);
        offset += h.steps;
        out.runs += 1;
        if h.cut {
            cut_again = true;
            break;
        }
        attached_files_whole(world, &mut out);
    }
    if cut_again {
        out.cuts += 1;
        world.reboot();
        for (i, command) in next(true) {
            clean(world, &s.configs[i], &command);
            out.runs += 1;
        }
    } else if second.is_some() {
        // the second fault may have hit a run that then failed: the timer's next update
        for i in 0..s.configs.len() {
            clean(world, &s.configs[i], &Command::Update);
            out.runs += 1;
        }
    }
    // units started at the last boot and not judged since are up a few seconds later
    world.ms += 5_000;
    out
}

pub fn record_of(world: &World, cfg: &Config) -> Record {
    world
        .fs
        .read(&format!("{STATE}/{}/record.json", cfg.name))
        .map(|b| serde_json::from_slice(&b).expect("the record parses"))
        .unwrap_or_default()
}

/// What must hold after a schedule, for each image: `Err` says what didn't.
pub fn check(s: &Scenario, world: &World, out: &Outcome) -> Result<(), String> {
    if let Some(b) = out.broken.first() {
        return Err(b.clone());
    }
    for cfg in &s.configs {
        check_image(s, world, cfg, out).map_err(|e| format!("{}: {e}", cfg.name))?;
    }
    Ok(())
}

fn check_image(s: &Scenario, world: &World, cfg: &Config, out: &Outcome) -> Result<(), String> {
    let record = record_of(world, cfg);
    let listing = world.fs.list(TARGET);
    let healthy = |p: &portable_service_agent::record::Pair| {
        let (image, exts) = match &p.base {
            Some(b) => (b.clone(), vec![p.image.clone()]),
            None => (p.image.clone(), vec![]),
        };
        world.behaviour(&image, &exts).healthy()
    };
    // every bad pair is bad for a reason the schedule gave
    for b in &record.bad {
        let fair = !healthy(&b.pair)
            || (b.why == "rolled back by hand" && s.name.contains("rollback"))
            || (b.why.contains("the host went down") && out.cuts >= 2);
        if !fair {
            return Err(format!("{} remembered as bad: {}", b.pair, b.why));
        }
    }
    let expected = installed::pairs(cfg, &listing)
        .into_iter()
        .find(|p| !record.is_bad(p) && healthy(p));
    let attached = world.attached.clone();
    let ours = installed::ours(cfg, &attached);
    let now: Vec<_> = ours.iter().map(|a| installed::pair_of(cfg, a)).collect();
    if now != expected.iter().cloned().collect::<Vec<_>>() {
        return Err(format!(
            "attached {now:?}, expected {expected:?} (installed {listing:?}, bad {:?})",
            record.bad
        ));
    }
    if record.switching.is_some() || record.running != expected {
        return Err(format!("the record after the runs: {record:?}"));
    }
    for a in &ours {
        for u in installed::startable(&a.units) {
            let st = world.unit(&u);
            let up = (st.active_state == "active" && st.runs_own_program)
                || (st.oneshot && st.exited_ok);
            if !up {
                return Err(format!("{u} is not up: {st:?}"));
            }
        }
    }
    // the newest version the feed offers was taken, unless it is bad or older than one kept
    let offered = world.feeds.get(&cfg.url).map(|f| {
        let mut v: Vec<String> = f
            .keys()
            .filter_map(|k| installed::version_of(k, &cfg.name, ".raw").map(str::to_owned))
            .collect();
        v.sort_by(|a, b| compare_versions(b, a));
        v
    });
    if let Some(newest) = offered.and_then(|v| v.into_iter().next()) {
        let file = format!("{}_{newest}.raw", cfg.name);
        let refused = record.bad.iter().any(|b| b.pair.image == file)
            || record
                .newest_kept
                .as_deref()
                .is_some_and(|k| compare_versions(&newest, k) == Ordering::Less)
            || world.best_before.contains_key(&cfg.url);
        if !refused && !listing.contains(&file) {
            return Err(format!("{file}, offered, was not installed: {listing:?}"));
        }
    }
    let own = installed::versions(&listing, &cfg.name, &cfg.files).len();
    if own > cfg.keep + 2 {
        return Err(format!("{own} versions installed, keep = {}", cfg.keep));
    }
    Ok(())
}
