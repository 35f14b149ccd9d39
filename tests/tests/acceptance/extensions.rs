//! Extension images (`portableServiceExtension`) layered over a portable service image by a
//! real systemd-portabled, on every systemd version (as in portabled.rs). The images are
//! tests/nix/extensions.nix's: `app`, a system extension whose service runs its own program with
//! the base's busybox, and `democonf`, a configuration extension. What the versions do
//! differently is asserted per version, as measured: no extensions at all on 247 (its
//! portablectl has no `--extension`), confext (refused before 257), versioned extension file
//! names (refused by 249 and 252), and the words of systemd-dissect.

use portable_service_tests::guest::Systemd;
use portable_service_tests::on_every_systemd;
use portable_service_tests::vm::Host;
use portable_service_tests::*;

on_every_systemd!(
    an_extension_runs_over_its_base_and_a_new_version_replaces_it,
    systemd_dissect_recognises_every_image,
    a_configuration_extension_gives_its_unit_its_files,
    a_versioned_extension_file_name_is_refused_by_249_and_252,
);

fn image(expr: &str) -> std::path::PathBuf {
    raw_file(&build(expr))
}

/// `portablectl VERB --runtime --extension EXT... IMAGE MATCHES...`: its output.
/// An attach or reattach is first checked by `portable-service check`, which must accept
/// what portabled accepts.
fn portablectl(c: &Host, verb: &str, extensions: &[&str], rest: &[&str]) -> String {
    if matches!(verb, "attach" | "reattach") {
        c.assert_check_accepts(rest[0], extensions, &rest[1..]);
    }
    let mut args = vec!["portablectl", verb, "--now", "--runtime"];
    for ext in extensions {
        args.extend(["--extension", ext]);
    }
    args.extend(rest);
    c.ok(&args)
}

fn an_extension_runs_over_its_base_and_a_new_version_replaces_it(systemd: Systemd) {
    let c = Host::open(systemd);
    let base = c.add_image(&image("ext.base"), "demo_1.0.raw");
    let v1 = c.add_image(&image("ext.app { }"), "v1/app.raw");
    let v2 = c.add_image(&image("ext.app { version = \"2.0\"; }"), "v2/app.raw");
    if !c.attaches_extensions(&base, &[&v1], &["app"]) {
        return;
    }

    // the base alone
    portablectl(&c, "attach", &[], &[&base]);
    c.assert_active("demo.service");
    portablectl(&c, "detach", &[], &["demo_1.0"]);

    // the base with the extension: app.service runs the extension's program, whose
    // interpreter and tools are the base's busybox
    portablectl(&c, "attach", &[&v1], &[&base, "app"]);
    c.assert_active("app.service");
    c.wait_for_journal(&["-u", "app.service"], "app 1.0 runs with BusyBox");
    let dropin = c.ok(&[
        "cat",
        "/run/systemd/system.attached/app.service.d/20-portable.conf",
    ]);
    assert!(
        dropin.contains(&format!("ExtensionImages={v1}")),
        "{dropin}"
    );

    portablectl(&c, "reattach", &[&v2], &[&base, "app"]);
    c.assert_active("app.service");
    c.wait_for_journal(&["-u", "app.service"], "app 2.0 runs with BusyBox");
    let dropin = c.ok(&[
        "cat",
        "/run/systemd/system.attached/app.service.d/20-portable.conf",
    ]);
    assert!(
        dropin.contains(&format!("ExtensionImages={v2}")),
        "{dropin}"
    );

    // detach --now stops the units of the image's own prefix only
    c.ok(&["systemctl", "stop", "app.service"]);
    portablectl(&c, "detach", &[&v2], &[&base]);
    let units = c.run(&[
        "systemctl",
        "list-unit-files",
        "--no-pager",
        "app*",
        "demo*",
    ]);
    let units = String::from_utf8_lossy(&units.stdout);
    assert!(units.contains("0 unit files listed"), "{units}");
    let list = c.ok(&["portablectl", "list", "--no-pager"]);
    assert!(!list.contains("demo_1.0"), "{list}");
}

fn systemd_dissect_recognises_every_image(systemd: Systemd) {
    let c = Host::open(systemd);
    // 252 says "extension" for a system extension and knows no configuration extensions; 254
    // names both kinds "... extension for portable service"; 257 and later drop "extension".
    if c.rules() < 252 {
        // 239 to 249's systemd-dissect names no uses of an image at all; check says so
        let path = c.add_image(&image("ext.base"), "demo_1.0.raw");
        let shown = c.ok(&[c.systemd_dissect(), &path]);
        // (before 247 it doesn't print the image's name either, only its partitions)
        let named = if c.version() < 247 {
            shown.contains("Found writable 'root' partition of type squashfs")
        } else {
            shown.contains("Name: demo_1.0.raw")
        };
        assert!(named && !shown.contains("portable service"), "{shown}");
        let (_, report) = c.check(&path, &[], &[]);
        assert!(
            report.contains(&format!(
                "systemd-dissect: names no use of an image before systemd 250 (this is {})",
                c.version()
            )),
            "{report}"
        );
        return;
    }
    let (sysext, confext) = match c.rules() {
        252 => (
            "✓ extension for portable service",
            "✗ extension for portable service",
        ),
        254 => (
            "✓ sysext extension for portable service",
            "✓ confext extension for portable service",
        ),
        _ => (
            "✓ sysext for portable service",
            "✓ confext for portable service",
        ),
    };
    let cases = [
        ("ext.base", "demo_1.0.raw", "✓ portable service"),
        ("t.examples.hello", "hello_2.12.2.raw", "✓ portable service"),
        ("ext.app { }", "app.raw", sysext),
        ("ext.conf { }", "democonf.raw", confext),
    ];
    for (expr, name, expected) in cases {
        let path = c.add_image(&image(expr), name);
        let shown = c.ok(&[c.systemd_dissect(), &path]);
        assert!(shown.contains(expected), "{name} on {systemd:?}:\n{shown}");
        if expected.contains("extension") || expected.contains("ext for") {
            assert!(!shown.contains("✓ portable service"), "{name}: {shown}");
        }
    }
}

fn a_configuration_extension_gives_its_unit_its_files(systemd: Systemd) {
    let c = Host::open(systemd);
    let base = c.add_image(&image("ext.base"), "demo_1.0.raw");
    let conf = c.add_image(&image("ext.conf { }"), "democonf.raw");
    if !c.attaches_extensions(&base, &[&conf], &["democonf"]) {
        return;
    }
    match c.rules() {
        // portabled takes configuration extensions from 257 on: 249, 252 and 254 look for the
        // extension-release file below /usr only (254's systemd-dissect knows them already).
        249 | 252 | 254 => refused_with_check(&c, &base, &conf, "democonf"),
        _ => {
            portablectl(&c, "attach", &[&conf], &[&base, "democonf"]);
            c.assert_active("democonf.service");
            c.wait_for_journal(&["-u", "democonf.service"], "hello from the confext");
            c.ok(&["systemctl", "stop", "democonf.service"]);
            portablectl(&c, "detach", &[&conf], &[&base]);
        }
    }
}

fn a_versioned_extension_file_name_is_refused_by_249_and_252(systemd: Systemd) {
    let c = Host::open(systemd);
    let base = c.add_image(&image("ext.base"), "demo_1.0.raw");
    // the same extension, its file named with its version (its release file stays .app)
    let app = c.add_image(&image("ext.app { }"), "app_1.0.raw");
    if !c.attaches_extensions(&base, &[&app], &["app"]) {
        return;
    }
    match c.rules() {
        // 249 and 252 look for extension-release.app_1.0 only; 254 and later also for .app
        249 | 252 => refused_with_check(&c, &base, &app, "app"),
        _ => {
            portablectl(&c, "attach", &[&app], &[&base, "app"]);
            c.assert_active("app.service");
            c.wait_for_journal(&["-u", "app.service"], "app 1.0 runs with BusyBox");
        }
    }
}

/// The guest's systemd refuses to attach `ext` over `base` ("lacks extension-release data"),
/// and check with that version's rules refuses it for the same reason.
fn refused_with_check(c: &Host, base: &str, ext: &str, prefix: &str) {
    let out = c.run(&[
        "portablectl",
        "attach",
        "--runtime",
        "--extension",
        ext,
        base,
        prefix,
    ]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "systemd {} attached {ext}: {said}",
        c.version()
    );
    assert!(said.contains("lacks extension-release data"), "{said}");
    let (accepted, report) = c.check(base, &[ext], &[prefix]);
    assert!(!accepted, "{report}");
    let host = c.host_copy(ext);
    assert!(
        report.contains(&format!(
            "error (attach): Image '{}' lacks extension-release data, refusing",
            host.display()
        )),
        "{report}"
    );
}
