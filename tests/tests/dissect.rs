//! `portable_service_rules::dissect` against systemd-dissect itself: disk images generated and
//! mutated from a seed (GPT headers and entries, flags, types, architectures, labels, usable
//! ranges, backup headers, polyglots of a squashfs and a table), each given to this machine's
//! `systemd-dissect --json=short` (root, loop devices) and to the module, and what each says is
//! mounted compared: designator, partition number, architecture, file system, read-only,
//! growfs, or a refusal. An image the module can't judge ("unsure") is counted apart: `check`
//! refuses those, which is safe but not systemd's answer.
//!
//! The test command runs [`SHORT`] images; `tests/dissect.sh` runs many more (BENCHMARKS.md).
//! `PORTABLE_SERVICE_TESTS_DISSECT=N` sets the count, `..._SEED=S` the first seed.

use portable_service_rules::dissect::Rules;
use portable_service_tests::disks::{disk, dissect_binary, systemd_says, we_say, Parts};
use std::path::Path;

const SHORT: u64 = 200;

#[test]
fn the_dissect_rules_agree_with_systemd_dissect() {
    let Some(version) = dissect_binary() else {
        eprintln!("no systemd-dissect of 252 or 262 and newer here: tests/setup.sh installs it");
        return;
    };
    let rules = Rules::of(version.parse().unwrap());
    let count = std::env::var("PORTABLE_SERVICE_TESTS_DISSECT")
        .map(|n| n.parse().unwrap())
        .unwrap_or(SHORT);
    let first: u64 = std::env::var("PORTABLE_SERVICE_TESTS_DISSECT_SEED")
        .map(|n| n.parse().unwrap())
        .unwrap_or(1);
    let parts = Parts::new();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk.raw");
    // systemd-dissect needs root and loop devices, which not every container gives
    std::fs::write(&path, &parts.fs).unwrap();
    if let Err(e) = systemd_says(&path) {
        eprintln!("systemd-dissect can't read a plain squashfs here ({e}): not compared");
        return;
    }
    let (mut agreed, mut unsure, mut differ) = (0, 0, Vec::new());
    let mut seen = std::collections::BTreeMap::new();
    for seed in first..first + count {
        std::fs::write(&path, disk(seed, &parts)).unwrap();
        let Some(ours) = we_say(&path, rules) else {
            unsure += 1;
            continue;
        };
        let theirs = systemd_says(&path);
        let kind = match &theirs {
            Ok(m) if m.iter().any(|m| m.contains(" #null ")) => "a whole file system",
            Ok(m) if m.iter().any(|m| m.starts_with("no file system")) => "no file system mounted",
            Ok(_) => "partitions",
            Err(_) => "refused",
        };
        *seen.entry(kind).or_insert(0) += 1;
        match (&ours, &theirs) {
            (Ok(a), Ok(b)) if a == b => agreed += 1,
            (Err(_), Err(_)) => agreed += 1,
            _ => {
                if let Ok(keep) = std::env::var("PORTABLE_SERVICE_TESTS_DISSECT_KEEP") {
                    std::fs::copy(&path, Path::new(&keep).join(format!("{seed}.raw"))).unwrap();
                }
                differ.push(format!(
                    "seed {seed}: we say {ours:?}, systemd-dissect {theirs:?}"
                ))
            }
        }
    }
    eprintln!(
        "systemd-dissect {version}: {count} images, {agreed} agreed, {unsure} unsure, {} differ; \
         systemd said of those judged: {seen:?}",
        differ.len()
    );
    assert!(differ.is_empty(), "{}", differ.join("\n"));
    assert!(unsure * 5 < count, "{unsure} of {count} unsure");
}
