//! `check` against systemd itself, the way a fuzzer compares two implementations:
//! - generated base images (`portable_service_tests::corpus`: file names and prefixes,
//!   os-release in its places, units of every form, place and program, exec directories with
//!   and without their mount points, the matches passed), a seeded set of
//!   `PORTABLE_SERVICE_CORPUS` of them (40 unless told; tests/differential.sh runs hundreds),
//!   each attached by the guest's portabled and its units started by systemctl;
//! - hand-made extensions whose release files vary one field at a time (present, absent, other,
//!   `_any`, `ID_LIKE`, levels, architecture, scope, an os-release inside) over a base with
//!   `VERSION_ID=` and `ID_LIKE=`, attached by portabled;
//!
//! each judged by `check --systemd V` too. A test fails on any case where the two verdicts
//! differ, listing every such case, and says nothing of which verdict is right: systemd's is,
//! by definition.

use camino::Utf8Path;
use portable_service_tests::corpus;
use portable_service_tests::guest::Systemd;
use portable_service_tests::on_every_systemd;
use portable_service_tests::vm::Host;
use portable_service_tests::*;
use portable_service_tools::check::{self, tree::Image, Options};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::time::{Duration, Instant};

on_every_systemd!(
    check_and_portabled_agree_on_generated_images,
    check_and_portabled_agree_on_extension_release_files
);

/// What became of a base image: refused by `portablectl attach`, attached with a unit that
/// doesn't start, or attached with every unit (not masked) started.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Refused,
    Fails,
    Runs,
}

/// Cases per guest command: each batch is attached, started and detached in one script.
const BATCH: usize = 40;

fn check_and_portabled_agree_on_generated_images(systemd: Systemd) {
    let size: usize = std::env::var("PORTABLE_SERVICE_CORPUS")
        .ok()
        .map(|n| {
            n.parse()
                .expect("PORTABLE_SERVICE_CORPUS is a number of images")
        })
        .unwrap_or(40);
    let seed: u64 = std::env::var("PORTABLE_SERVICE_CORPUS_SEED")
        .ok()
        .map(|n| n.parse().expect("PORTABLE_SERVICE_CORPUS_SEED is a number"))
        .unwrap_or(20261201);
    let c = Host::open(systemd);
    let started = Instant::now();
    let cases = corpus::cases(seed, size);
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut disagreements = Vec::new();
    // attaches that lost 239's race with udev, and were tried again (see `attach`)
    let mut races = 0;
    for batch in cases.chunks(BATCH) {
        let (dir, inside) = c.shared_dir("corpus");
        let mut script = String::from(ATTACH_AND_START);
        if c.version() < 245 {
            // portabled's debug log says why a mount failed (see `attach`)
            script.push_str(DEBUG_PORTABLED);
        }
        let mut checked = BTreeMap::new();
        for case in batch {
            let image = case.build(&dir);
            let report = check::check(
                &Image::open(Utf8Path::from_path(&image).unwrap(), "x86-64").unwrap(),
                &[],
                &Options {
                    prefixes: case.matches.clone(),
                    systemd: c.version(),
                    ..Options::default()
                },
            )
            .unwrap();
            checked.insert(case.tag.clone(), report);
            let mut args = vec![format!("/images/{}", case.file_name)];
            args.extend(case.matches.iter().cloned());
            writeln!(
                script,
                "cp {inside}/{} /images/ && attach {} {}",
                case.file_name,
                case.tag,
                args.join(" ")
            )
            .unwrap();
        }
        script.push_str("start_attached\n");
        if c.version() < 245 {
            script.push_str(DEBUG_PORTABLED_OFF);
        }
        let out = c.run_script(&script, Duration::from_secs(60 + 20 * batch.len() as u64));
        let said = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success() && said.contains("@@ done"),
            "the corpus script failed:\n{said}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let measured = read_script_output(&said);
        races += said.lines().filter(|l| l.starts_with("race ")).count();
        for case in batch {
            let report = &checked[&case.tag];
            let by_check = if report.errors.iter().any(|e| e.stage == "attach") {
                Verdict::Refused
            } else if report.accepted {
                Verdict::Runs
            } else {
                Verdict::Fails
            };
            let m = measured
                .get(&case.tag)
                .unwrap_or_else(|| panic!("{}: the script said nothing of it:\n{said}", case.tag));
            let check_units: BTreeSet<String> =
                report.units.iter().map(|u| u.name.clone()).collect();
            *counts
                .entry(match m.verdict {
                    Verdict::Refused => "refused",
                    Verdict::Fails => "fails",
                    Verdict::Runs => "runs",
                })
                .or_default() += 1;
            let units_differ = m.verdict != Verdict::Refused && m.units != check_units;
            if m.verdict != by_check || units_differ {
                disagreements.push(format!(
                    "{}: systemd {:?}, check {:?}\n  case: {}\n  portablectl: {}\n  \
                     units: systemd {:?}, check {:?}\n  check: {}",
                    case.tag,
                    m.verdict,
                    by_check,
                    case.traits.join("; "),
                    m.said,
                    m.units,
                    check_units,
                    report
                        .errors
                        .iter()
                        .map(|e| format!("{}: {}", e.stage, e.message))
                        .collect::<Vec<_>>()
                        .join(" | ")
                ));
            }
        }
        c.reset();
    }
    let summary = format!(
        "differential corpus: systemd {}: {} images (seed {seed}), {counts:?}, {} disagreements, \
         {races} attaches lost the race with udev and were tried again, {} s",
        c.version(),
        cases.len(),
        disagreements.len(),
        started.elapsed().as_secs()
    );
    eprintln!("{summary}");
    let record = repo().join("target/differential");
    std::fs::create_dir_all(&record).unwrap();
    std::fs::write(
        record.join(format!("{}.txt", systemd.name())),
        format!("{summary}\n{}\n", disagreements.join("\n")),
    )
    .unwrap();
    assert!(
        counts.len() == 3,
        "the corpus has cases of every verdict: {counts:?}"
    );
    assert!(
        disagreements.is_empty(),
        "check and systemd {} disagree on {} of {} generated images:\n{}",
        c.version(),
        disagreements.len(),
        cases.len(),
        disagreements.join("\n")
    );
}

/// The guest's side of a batch: `attach TAG IMAGE [MATCHES]` per case, then `start_attached`
/// reloads once and starts every attached unit (a template as instance `i`), saying
/// `attach TAG STATUS MESSAGE` and `unit TAG NAME LOADSTATE STATUS` lines.
const ATTACH_AND_START: &str = r#"
mkdir -p /images
# 239's own, not the tests' wrapper, which tries again by itself (see `attach`)
portablectl=portablectl
[ ! -x /usr/lib/systemd/portablectl ] || portablectl=/usr/lib/systemd/portablectl
attach() {
  local tag=$1 tries=1 rc cursor; shift
  while :; do
    cursor=$(journalctl -n 0 --show-cursor --no-pager | sed -n 's/^-- cursor: //p')
    # --no-reload: one reload for the whole batch (slow under TCG)
    said=$($portablectl attach --no-reload --runtime "$@" 2>&1)
    rc=$?
    # 239 mounts an image of one file system through /dev/block/MAJ:MIN, which udev may not
    # have made yet (245.7 waits for it): the mount fails, and portabled says the image
    # "lacks os-release data". Said, and tried again (what its debug log shows, see below).
    [ $rc -ne 0 ] && [ $tries -lt 4 ] || break
    case $said in *"lacks os-release data"*) ;; *) break ;; esac
    journalctl --after-cursor "$cursor" -u systemd-portabled --no-pager |
      grep -q "Failed to mount dissected image: No such file or directory" || break
    echo "race $tag"
    tries=$((tries + 1))
  done
  echo "attach $tag $rc $(echo "$said" | tr '
' ' ')"
}
start_attached() {
  systemctl daemon-reload
  # what portabled attached has its drop-in: in system.attached, or on 239 among the host's
  for c in /run/systemd/system.attached/*.d/20-portable.conf \
    /run/systemd/system/*.d/20-portable.conf; do
    [ -e "$c" ] || continue
    u=${c%.d/20-portable.conf}
    u=${u##*/}
    case $u in *@.service) s=${u%@.service}@i.service ;; *) s=$u ;; esac
    load=$(systemctl show -p LoadState --value "$s")
    timeout 60 systemctl start "$s" >/dev/null 2>&1
    echo "unit ${u:0:4} $u $load $?"
  done
  echo "@@ done"
}
"#;

/// portabled logging at debug level, for one batch (`DEBUG_PORTABLED_OFF` ends it).
const DEBUG_PORTABLED: &str = "mkdir -p /run/systemd/system/systemd-portabled.service.d
printf '[Service]\\nEnvironment=SYSTEMD_LOG_LEVEL=debug\\n' \\
  >/run/systemd/system/systemd-portabled.service.d/debug.conf
systemctl daemon-reload
systemctl restart systemd-portabled
";
const DEBUG_PORTABLED_OFF: &str = "rm -r /run/systemd/system/systemd-portabled.service.d
systemctl daemon-reload
systemctl restart systemd-portabled
";

/// What the script measured of one case.
struct Measured {
    verdict: Verdict,
    units: BTreeSet<String>,
    said: String,
    /// Masked units attached (empty files, before 252).
    masked: usize,
}

fn read_script_output(said: &str) -> BTreeMap<String, Measured> {
    let mut cases: BTreeMap<String, Measured> = BTreeMap::new();
    for line in said.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["attach", tag, status, rest @ ..] => {
                cases.insert(
                    tag.to_string(),
                    Measured {
                        verdict: if *status == "0" {
                            Verdict::Runs
                        } else {
                            Verdict::Refused
                        },
                        units: BTreeSet::new(),
                        said: rest.join(" "),
                        masked: 0,
                    },
                );
            }
            ["unit", tag, name, load, status] => {
                let m = cases
                    .get_mut(*tag)
                    .unwrap_or_else(|| panic!("a unit of {tag}, which wasn't attached: {line}"));
                // masked (a link to /dev/null, or empty): not meant to start, and check
                // leaves them out
                if *load == "masked" {
                    m.masked += 1;
                    continue;
                }
                // 239 copies units one by one and leaves those it copied before it refused
                // one (measured): its verdict is the refusal portablectl says
                if m.verdict == Verdict::Refused {
                    m.said.push_str(&format!(" [{name} left behind]"));
                    continue;
                }
                m.units.insert(name.to_string());
                if *status != "0" {
                    m.verdict = Verdict::Fails;
                    m.said
                        .push_str(&format!(" [{name} ({load}) failed to start]"));
                }
            }
            _ => {}
        }
    }
    // attached with masked units only (empty files, before 252): none can start
    for m in cases.values_mut() {
        if m.verdict == Verdict::Runs && m.units.is_empty() && m.masked > 0 {
            m.verdict = Verdict::Fails;
            m.said
                .push_str(" [only masked units attached: none can start]");
        }
    }
    cases
}

/// One case: the extension's file name, the name and text of its extension-release file, and
/// whether it also holds /usr/lib/os-release.
struct Case {
    name: &'static str,
    file_name: &'static str,
    release_name: &'static str,
    release: String,
    os_release_inside: bool,
}

/// The release file of an extension that matches the base, with `change` applied: each
/// `(KEY, Some(value))` set, each `(KEY, None)` left out.
fn release(change: &[(&str, Option<&str>)]) -> String {
    let mut fields = vec![
        ("ID", "nixos".to_owned()),
        ("VERSION_ID", "1".to_owned()),
        ("SYSEXT_SCOPE", "portable".to_owned()),
        ("PORTABLE_PREFIXES", "app".to_owned()),
    ];
    for (key, value) in change {
        fields.retain(|(k, _)| k != key);
        if let Some(v) = value {
            fields.push((key, (*v).to_owned()));
        }
    }
    fields
        .iter()
        .map(|(k, v)| format!("{k}=\"{v}\"\n"))
        .collect()
}

fn cases() -> Vec<Case> {
    let case = |name, change: &[(&str, Option<&str>)]| Case {
        name,
        file_name: "app.raw",
        release_name: "app",
        release: release(change),
        os_release_inside: false,
    };
    let mut cases = vec![
        case("matching", &[]),
        case("no VERSION_ID", &[("VERSION_ID", None)]),
        case("another VERSION_ID", &[("VERSION_ID", Some("2"))]),
        case("ID _any", &[("ID", Some("_any")), ("VERSION_ID", None)]),
        case("ID from the base's ID_LIKE", &[("ID", Some("debian"))]),
        case("another ID", &[("ID", Some("fedora"))]),
        case("empty ID", &[("ID", Some(""))]),
        case("no ID", &[("ID", None)]),
        case("another ARCHITECTURE", &[("ARCHITECTURE", Some("arm64"))]),
        case("this ARCHITECTURE", &[("ARCHITECTURE", Some("x86-64"))]),
        case("ARCHITECTURE _any", &[("ARCHITECTURE", Some("_any"))]),
        case(
            "ID _any, another ARCHITECTURE",
            &[("ID", Some("_any")), ("ARCHITECTURE", Some("arm64"))],
        ),
        case("scope system", &[("SYSEXT_SCOPE", Some("system"))]),
        case(
            "scope system portable",
            &[("SYSEXT_SCOPE", Some("system portable"))],
        ),
        case("no scope", &[("SYSEXT_SCOPE", None)]),
        case(
            "a level and another VERSION_ID",
            &[("SYSEXT_LEVEL", Some("1.0")), ("VERSION_ID", Some("2"))],
        ),
    ];
    cases.push(Case {
        name: "an os-release inside",
        release: release(&[]),
        os_release_inside: true,
        ..case("", &[])
    });
    cases.push(Case {
        name: "a release file named otherwise",
        release_name: "other",
        ..case("", &[])
    });
    cases.push(Case {
        name: "a versioned file name, the release file without the version",
        file_name: "app_2.raw",
        ..case("", &[])
    });
    cases.push(Case {
        name: "a versioned file name, the release file with it",
        file_name: "app_2.raw",
        release_name: "app_2",
        ..case("", &[])
    });
    cases
}

fn check_and_portabled_agree_on_extension_release_files(systemd: Systemd) {
    let c = Host::open(systemd);
    let base = c.add_image(
        &raw_file(&build(
            r#"demo { extra = { osRelease = { VERSION_ID = "1"; ID_LIKE = "debian"; }; }; }"#,
        )),
        "demo_1.0.raw",
    );
    let busybox = eval("\"${t.busybox}/bin/busybox\"").unwrap();
    let unit = format!("[Service]\nType=oneshot\nExecStart={busybox} true\n");
    let work = tempfile::tempdir().unwrap();
    let mut disagreements = Vec::new();
    let mut verdicts = (0, 0);
    for case in cases() {
        let release_path = format!(
            "usr/lib/extension-release.d/extension-release.{}",
            case.release_name
        );
        let mut files = vec![
            (release_path.as_str(), case.release.as_str()),
            ("usr/lib/systemd/system/app.service", unit.as_str()),
        ];
        if case.os_release_inside {
            files.push(("usr/lib/os-release", "ID=nixos\n"));
        }
        let dir = work.path().join(case.name.replace(' ', "-"));
        let ext = c.add_image(
            &squashfs(&dir, case.file_name, &files),
            &format!("ext/{}", case.file_name),
        );
        let (checked, report) = c.check(&base, &[&ext], &["app"]);
        // --no-reload: portabled judges the images all the same, and each case then costs no
        // reload of the guest's systemd (slow under TCG)
        let attach = c.run(&[
            "portablectl",
            "attach",
            "--no-reload",
            "--runtime",
            "--extension",
            &ext,
            &base,
            "app",
        ]);
        let attached = attach.status.success();
        if attached {
            verdicts.0 += 1;
        } else {
            verdicts.1 += 1;
        }
        if checked != attached {
            disagreements.push(format!(
                "{}: portabled {}, check {}\n  release: {:?}\n  portablectl: {}\n  check: {}",
                case.name,
                if attached {
                    "attached it"
                } else {
                    "refused it"
                },
                if checked { "accepted it" } else { "refused it" },
                case.release,
                String::from_utf8_lossy(&attach.stderr).trim(),
                report
                    .lines()
                    .filter(|l| l.contains("refused") || l.contains("does not match"))
                    .collect::<Vec<_>>()
                    .join(" | ")
            ));
        }
        // what portabled attached goes before the next case (never loaded: no reload)
        c.ok(&[
            "rm",
            "-rf",
            "/run/systemd/system.attached",
            "/run/portables",
        ]);
    }
    c.ok(&["systemctl", "daemon-reload"]);
    eprintln!(
        "differential: systemd {}: {} cases, {} attached, {} refused, {} disagreements",
        c.version(),
        verdicts.0 + verdicts.1,
        verdicts.0,
        verdicts.1,
        disagreements.len()
    );
    // (245 and 247 attach no extension at all: their portablectl has no --extension)
    assert!(
        verdicts.1 > 0 && (verdicts.0 > 0 || c.rules() < check::ATTACHES_EXTENSIONS),
        "the corpus has cases of both verdicts"
    );
    assert!(
        disagreements.is_empty(),
        "check and systemd {} disagree on {} of the cases:\n{}",
        c.version(),
        disagreements.len(),
        disagreements.join("\n")
    );
}
