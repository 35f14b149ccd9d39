//! `check` against systemd itself, the way a fuzzer compares two implementations: hand-made
//! extensions whose release files vary one field at a time (present, absent, other, `_any`,
//! `ID_LIKE`, levels, architecture, scope, an os-release inside) over a base with `VERSION_ID=`
//! and `ID_LIKE=`, each attached by the guest's portabled and judged by `check --systemd V`.
//! The test fails on any case where the two verdicts differ, listing every such case, and says
//! nothing of which verdict is right: systemd's is, by definition.

use portable_service_tests::guest::Systemd;
use portable_service_tests::on_every_systemd;
use portable_service_tests::vm::Host;
use portable_service_tests::*;

on_every_systemd!(check_and_portabled_agree_on_extension_release_files);

/// One case: the extension-release file and whether the extension also holds
/// /usr/lib/os-release.
struct Case {
    name: &'static str,
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
        let mut files = vec![
            (
                "usr/lib/extension-release.d/extension-release.app",
                case.release.as_str(),
            ),
            ("usr/lib/systemd/system/app.service", unit.as_str()),
        ];
        if case.os_release_inside {
            files.push(("usr/lib/os-release", "ID=nixos\n"));
        }
        let dir = work.path().join(case.name.replace(' ', "-"));
        let ext = c.add_image(&squashfs(&dir, "app.raw", &files), "ext/app.raw");
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
    assert!(
        verdicts.0 > 0 && verdicts.1 > 0,
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
