//! Images built by `portableService` (through Nix, as in nix_function.rs) attached, run,
//! inspected and detached by a real systemd-portabled, on the systemd versions of the guests
//! (`NAME::systemd_247`, `NAME::systemd_252`, ...; not 254, which behaves here as 252 and 257
//! do: see `on_every_systemd_but_254!`). Where the versions differ, the scenario asserts each
//! version's own behaviour and says why (extensions.rs has most of those).

use portable_service_tests::guest::Systemd;
use portable_service_tests::on_every_systemd_but_254;
use portable_service_tests::vm::{text, Host};
use portable_service_tests::*;
use std::path::PathBuf;

const DESCRIPTION: &str = "Demo service: it's \"quoted\", costs $5 and has a back\\slash";

/// The demo image for `c` (without its socket where only services attach).
fn demo_image(c: &Host, version: &str) -> PathBuf {
    raw_file(&build(&c.demo(&format!("version = \"{version}\";"))))
}

/// Where a persistent attach puts the units (239: among the host's own).
fn attached_dir(c: &Host) -> &'static str {
    if c.version() < 245 {
        "/etc/systemd/system"
    } else {
        "/etc/systemd/system.attached"
    }
}

on_every_systemd_but_254!(
    runtime_attach_starts_the_service_and_detach_removes_it,
    socket_activation_reaches_the_service_inside_the_image,
    a_template_unit_runs_as_an_instance,
    inspect_shows_the_description_exactly,
    persistent_attach_reattach_to_a_new_version_and_detach,
    default_and_trusted_profiles,
    the_manual_examples_run,
    a_unit_check_refuses_fails_in_systemd_too,
    every_exec_directory_needs_its_mount_point,
    without_matches_portablectl_takes_the_image_name,
);

fn runtime_attach_starts_the_service_and_detach_removes_it(systemd: Systemd) {
    let c = Host::open(systemd);
    let image = c.add_image(&demo_image(&c, "1.0"), "demo_1.0.raw");
    c.portablectl("attach", &["--now", "--runtime"], &image);
    c.assert_active("demo.service");
    if !c.attaches_services_only() {
        c.assert_active("demo.socket");
    }
    // log lines reach the journal, tagged with the image they come from
    c.wait_for_journal(&["PORTABLE=demo_1.0.raw"], "demo 1.0 started, run 1");

    c.ok(&["portablectl", "detach", "--now", "--runtime", "demo_1.0"]);
    let state = c.run(&["systemctl", "is-active", "demo.service"]);
    assert_ne!(String::from_utf8_lossy(&state.stdout).trim(), "active");
    // (exits 1 when it lists nothing)
    let units = c.run(&["systemctl", "list-unit-files", "--no-pager", "demo*"]);
    let units = String::from_utf8_lossy(&units.stdout);
    assert!(units.contains("0 unit files listed"), "{units}");
    assert_eq!(
        c.try_ask("/run/demo.sock"),
        None,
        "nothing listens on the socket any more"
    );
    let list = c.ok(&["portablectl", "list", "--no-pager"]);
    assert!(!list.contains("demo_1.0"), "{list}");
}

fn socket_activation_reaches_the_service_inside_the_image(systemd: Systemd) {
    let c = Host::open(systemd);
    if c.attaches_services_only() {
        // 239 refuses the image with its socket
        let image = c.add_image(&raw_file(&build("demo { }")), "demo_1.0.raw");
        let (accepted, report) = c.check(&image, &[], &[]);
        assert!(
            !accepted && report.contains("it refuses demo.socket"),
            "{report}"
        );
        let out = c.run(&["portablectl", "attach", "--runtime", &image]);
        assert!(
            !out.status.success()
                && text(&out).contains("Failed to attach image: No such file or directory"),
            "{}",
            text(&out)
        );
        return;
    }
    let image = c.add_image(&demo_image(&c, "1.0"), "demo_1.0.raw");
    c.portablectl("attach", &["--now", "--runtime"], &image);
    c.assert_active("demo.socket");
    // demo.socket (Accept=yes) starts demo@<n>.service, which answers through /bin/sh,
    // the image's symlink into busybox
    assert_eq!(c.ask("/run/demo.sock"), "hello from demo 1.0\n");
    assert_eq!(c.ask("/run/demo.sock"), "hello from demo 1.0\n");
}

fn a_template_unit_runs_as_an_instance(systemd: Systemd) {
    let c = Host::open(systemd);
    let image = c.add_image(&demo_image(&c, "1.0"), "demo_1.0.raw");
    c.portablectl("attach", &["--runtime"], &image);
    c.start("demo@one.service");
    c.assert_active("demo@one.service");
    c.wait_for_journal(&["-u", "demo@one.service"], "demo@one 1.0 started");
    // a running instance keeps the image attached (systemd refuses to detach it)
    c.ok(&["systemctl", "stop", "demo@one.service"]);
    c.ok(&["portablectl", "detach", "--runtime", "demo_1.0"]);
}

fn inspect_shows_the_description_exactly(systemd: Systemd) {
    let c = Host::open(systemd);
    // (239 inspects an image with a socket; it refuses only to attach it)
    let image = c.add_image(&raw_file(&build("demo { }")), "demo_1.0.raw");
    let inspect = c.ok(&["portablectl", "inspect", "--no-pager", &image]);
    assert!(
        inspect.contains(&format!("Portable Service:\n\t{DESCRIPTION}\n")),
        "{inspect}"
    );
    for unit in ["demo.service", "demo.socket", "demo@.service"] {
        assert!(
            inspect.contains(&format!("\t{unit}\n")),
            "{unit}: {inspect}"
        );
    }
}

/// The new version is built from parts (`parts`: its busybox compressed apart and merged), so
/// that every systemd runs an image from parts, and takes it as the next version of one built
/// whole.
fn persistent_attach_reattach_to_a_new_version_and_detach(systemd: Systemd) {
    let c = Host::open(systemd);
    let v1 = c.add_image(&demo_image(&c, "1.0"), "demo_1.0.raw");
    let from_parts = c.demo("version = \"2.0\"; extra = { parts = [ t.busybox ]; };");
    let v2 = c.add_image(&raw_file(&build(&from_parts)), "demo_2.0.raw");
    c.portablectl("attach", &["--now"], &v1);
    c.assert_active("demo.service");
    let unit = format!("{}/demo.service", attached_dir(&c));
    assert!(c.exists(&unit), "a persistent attach writes below /etc");
    let socket = !c.attaches_services_only();
    if socket {
        assert_eq!(c.ask("/run/demo.sock"), "hello from demo 1.0\n");
    }

    if c.version() < 248 {
        // no reattach before 248 (the sources): a version changes by a detach and an attach,
        // with the service down between them
        let out = c.run(&["portablectl", "reattach", "--now", &v2]);
        let unknown = if c.version() < 245 {
            "Unknown operation reattach"
        } else {
            "Unknown command verb reattach"
        };
        assert!(
            !out.status.success() && text(&out).contains(unknown),
            "{}",
            text(&out)
        );
        c.ok(&["portablectl", "detach", "--now", "demo_1.0"]);
        c.portablectl("attach", &["--now"], &v2);
    } else if c.version() < 252 {
        // 249 restarts every unit it reattached, the image's template too, which can't be
        // restarted without an instance: it says so, and restarts the others (measured)
        assert!(c.check(&v2, &[], &[]).0);
        let out = c.run(&["portablectl", "reattach", "--now", &v2]);
        assert!(
            text(&out).contains("Unit name demo@.service is missing the instance name"),
            "{}",
            text(&out)
        );
    } else {
        c.portablectl("reattach", &["--now"], &v2);
    }
    c.assert_active("demo.service");
    c.wait_for_journal(&["PORTABLE=demo_2.0.raw"], "demo 2.0 started");
    if socket {
        assert_eq!(c.ask("/run/demo.sock"), "hello from demo 2.0\n");
    }
    let list = c.ok(&["portablectl", "list", "--no-pager"]);
    assert!(
        list.contains("demo_2.0") && !list.contains("demo_1.0"),
        "{list}"
    );

    c.ok(&["portablectl", "detach", "--now", "demo_2.0"]);
    assert!(!c.exists(&unit));
}

/// Attaches `image` with `profile` and starts the demo service twice: its StateDirectory=demo
/// keeps the count of the first run for the second.
fn run_twice_keeping_state(c: &Host, image: &str, profile: &str, dynamic_user: &str) {
    c.journal_from_now();
    let (accepted, report) = c.check_with(image, &[], &[], profile);
    assert!(accepted, "{profile}: {report}");
    c.ok(&[
        "portablectl",
        "attach",
        "--now",
        "--runtime",
        "--profile",
        profile,
        image,
    ]);
    c.assert_active("demo.service");
    let shown = c.property("demo.service", "DynamicUser");
    assert_eq!(shown, dynamic_user, "{profile} profile");
    c.wait_for_journal(&["-u", "demo.service", "--grep", "started"], "run 1");
    c.ok(&["systemctl", "restart", "demo.service"]);
    c.assert_active("demo.service");
    c.wait_for_journal(&["-u", "demo.service", "--grep", "started"], "run 2");
    c.ok(&["portablectl", "detach", "--now", "--runtime", "demo_1.0"]);
    // the next profile starts from empty state
    c.ok(&["rm", "-rf", "/var/lib/demo", "/var/lib/private/demo"]);
}

fn default_and_trusted_profiles(systemd: Systemd) {
    let c = Host::open(systemd);
    let image = c.add_image(&demo_image(&c, "1.0"), "demo_1.0.raw");
    if c.profile() == "default" {
        run_twice_keeping_state(&c, &image, "default", "yes");
    } else {
        // 239 runs the service from the host's root under the default profile
        // (PrivateDevices=yes): the host's /bin/sh, which can't find the image's busybox
        let (accepted, report) = c.check_with(&image, &[], &[], "default");
        assert!(
            !accepted && report.contains("runs a service with PrivateDevices=yes"),
            "{report}"
        );
        c.ok(&[
            "portablectl",
            "attach",
            "--runtime",
            "--profile",
            "default",
            &image,
        ]);
        c.start_and_fail("demo.service");
        c.ok(&["portablectl", "detach", "--runtime", "demo_1.0"]);
        c.ok(&["systemctl", "reset-failed"]);
    }
    run_twice_keeping_state(&c, &image, "trusted", "no");
}

fn the_manual_examples_run(systemd: Systemd) {
    let c = Host::open(systemd);
    let hello = c.add_image(&raw_file(&build("t.examples.hello")), "hello_2.12.2.raw");
    c.portablectl("attach", &["--runtime"], &hello);
    c.start("hello.service");
    c.wait_for_journal(&["PORTABLE=hello_2.12.2.raw"], "Hello, world!");
    c.ok(&["portablectl", "detach", "--runtime", "hello_2.12.2"]);

    // /etc/ssl in the image is a symlink into cacert's store path: a service reads through it.
    let with_ssl = c.add_image(
        &raw_file(&build("t.examples.hello-with-ssl")),
        "with-ssl/hello_2.12.2.raw",
    );
    let busybox = eval("\"${t.busybox}/bin/busybox\"").unwrap();
    let expected =
        std::fs::read_to_string(repo().join("target/offline/cacert/etc/ssl/certs/ca-bundle.crt"))
            .unwrap();
    // 245 looks for the program on the host, not in the image (measured; 247 and 249 look in
    // the image): there, a stand-in at the same path lets it run the image's
    let stand_in = c.version() < 247;
    if stand_in {
        c.ok(&["install", "-D", "-m", "755", "/dev/null", &busybox]);
    }
    let read = c.ok(&[
        "systemd-run",
        "--wait",
        "--pipe",
        "--quiet",
        "-p",
        &format!("RootImage={with_ssl}"),
        &busybox,
        "cat",
        "/etc/ssl/certs/ca-bundle.crt",
    ]);
    if stand_in {
        c.ok(&["rm", "-r", "/nix"]);
    }
    assert_same_text(&read, &expected, "the CA bundle read in the image");
}

/// Panics unless `got` is `expected`, saying where they part: the texts here are too long for
/// `assert_eq!`'s output to be read (or kept whole by CI).
fn assert_same_text(got: &str, expected: &str, what: &str) {
    if got == expected {
        return;
    }
    let at = got
        .bytes()
        .zip(expected.bytes())
        .take_while(|(a, b)| a == b)
        .count();
    let around = |t: &str| {
        let bytes = &t.as_bytes()[at.saturating_sub(80)..(at + 80).min(t.len())];
        format!("{:?}", String::from_utf8_lossy(bytes))
    };
    panic!(
        "{what}: {} bytes, expected {}; they differ from byte {at}:\n got: {}\n expected: {}",
        got.len(),
        expected.len(),
        around(got),
        around(expected)
    );
}

fn a_unit_check_refuses_fails_in_systemd_too(systemd: Systemd) {
    let c = Host::open(systemd);
    let image = c.add_image(
        &raw_file(&build(
            r#"t.portableService { pname = "broken"; version = "1";
                 units = [ (t.writeText "broken.service" "[Service]\nType=oneshot\nExecStart=/bin/missing-tool\n") ]; }"#,
        )),
        "broken_1.raw",
    );
    let (accepted, report) = c.check(&image, &[], &[]);
    assert!(!accepted, "{report}");
    assert!(
        report.contains("broken.service: ExecStart=/bin/missing-tool: the image lacks /bin/missing-tool (the unit fails with 203/EXEC)"),
        "{report}"
    );
    // portabled attaches it (it doesn't look inside units); the unit then fails as check said
    c.ok(&["portablectl", "attach", "--runtime", &image]);
    let start = c.try_start("broken.service");
    assert!(!start.status.success());
    let status = c.property("broken.service", "ExecMainStatus");
    assert_eq!(status, "203", "203/EXEC");
}

/// A copy of `image` (in `dir`) without `path`: an image as another tool might make it.
fn without(image: &std::path::Path, path: &str, dir: &std::path::Path) -> PathBuf {
    let root = dir.join("root");
    let unpacked = std::process::Command::new("unsquashfs")
        .args(["-no-progress", "-d"])
        .arg(&root)
        .arg(image)
        .output()
        .unwrap();
    assert!(unpacked.status.success(), "unsquashfs: {unpacked:?}");
    std::fs::remove_dir(root.join(path)).unwrap();
    let out = dir.join(image.file_name().unwrap());
    squashfs_of(&root, &out);
    out
}

/// Each of StateDirectory=, CacheDirectory=, LogsDirectory= and ConfigurationDirectory= binds a
/// host directory into the service, over a mount point a read-only image must hold: our image
/// has all four (and the one named on a continued line) and its unit runs; the same image without /etc/NAME (ConfigurationDirectory=)
/// attaches, but its unit fails with 226/NAMESPACE, as `check` says beforehand.
fn every_exec_directory_needs_its_mount_point(systemd: Systemd) {
    let c = Host::open(systemd);
    let built = raw_file(&build(
        r#"t.portableService { pname = "dirs"; version = "1";
             units = [ (t.writeText "dirs.service" ''
               [Service]
               Type=oneshot
               StateDirectory=dirs \
                 dirs-continued
               CacheDirectory=dirs
               LogsDirectory=dirs
               ConfigurationDirectory=dirs
               ExecStart=${t.busybox}/bin/busybox sh -c 'ls -d /var/lib/dirs /var/lib/dirs-continued /var/cache/dirs /var/log/dirs /etc/dirs && echo every-directory-is-there'
             '') ]; }"#,
    ));
    c.journal_from_now();
    let image = c.add_image(&built, "dirs_1.raw");
    c.portablectl("attach", &["--runtime"], &image);
    c.start("dirs.service");
    c.wait_for_journal(&["-u", "dirs.service"], "every-directory-is-there");
    c.ok(&["portablectl", "detach", "--runtime", "dirs_1"]);

    let work = tempfile::tempdir().unwrap();
    let hand_made = c.add_image(&without(&built, "etc/dirs", work.path()), "dirs_1.raw");
    let (accepted, report) = c.check(&hand_made, &[], &[]);
    assert!(!accepted, "{report}");
    assert!(
        report.contains("mount point /etc/dirs (for dirs.service) is missing"),
        "{report}"
    );
    c.ok(&["portablectl", "attach", "--runtime", &hand_made]);
    assert!(!c.try_start("dirs.service").status.success());
    let status = c.property("dirs.service", "ExecMainStatus");
    assert_eq!(
        status.trim(),
        "226",
        "226/NAMESPACE on systemd {}",
        c.version()
    );
    // the host's own ConfigurationDirectory=, which systemd made at the first start
    c.ok(&["rm", "-rf", "/etc/dirs"]);
}

/// `portablectl attach IMAGE` without matches takes the image name (`app` of app_1.raw) as its
/// match, whatever PORTABLE_PREFIXES says, and refuses an image whose PORTABLE_PREFIXES lacks it
/// (our function makes one with `portablePrefixes = [ "web" ]`); with the matches given it
/// attaches. `check` says the same both ways.
fn without_matches_portablectl_takes_the_image_name(systemd: Systemd) {
    let c = Host::open(systemd);
    let image = c.add_image(
        &raw_file(&build(
            r#"t.portableService { pname = "app"; version = "1"; portablePrefixes = [ "web" ];
                 units = [ (t.writeText "web.service" "[Service]\nType=oneshot\nExecStart=${t.busybox}/bin/busybox echo web-ran\n") ]; }"#,
        )),
        "app_1.raw",
    );
    let (accepted, report) = c.check(&image, &[], &[]);
    assert!(!accepted, "{report}");
    if c.rules() < 252 {
        // 247 reads no PORTABLE_PREFIXES=: the image name is the match, and no unit has it
        let none = "Couldn't find any matching unit files";
        assert!(report.contains(none), "{report}");
        let refused = c.run(&["portablectl", "attach", "--runtime", &image]);
        assert!(
            !refused.status.success() && text(&refused).contains(none),
            "{}",
            text(&refused)
        );
    } else {
        refused_by_its_prefixes(&c, &image, &report);
    }

    c.journal_from_now();
    c.assert_check_accepts(&image, &[], &["web"]);
    c.ok(&["portablectl", "attach", "--runtime", &image, "web"]);
    c.start("web.service");
    c.wait_for_journal(&["-u", "web.service"], "web-ran");
    // detached by the Host's reset
}

/// 252 and later: the image name is not among the image's PORTABLE_PREFIXES, and portablectl
/// and check refuse it saying so.
fn refused_by_its_prefixes(c: &Host, image: &str, report: &str) {
    assert!(
        report.contains("Selected matches 'app' are not compatible")
            && report.contains("portablectl attach app_1.raw web"),
        "{report}"
    );
    let refused = c.run(&["portablectl", "attach", "--runtime", image]);
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success(),
        "systemd {} attached it",
        c.version()
    );
    assert!(
        said.contains("Selected matches 'app' are not compatible") && said.contains("web"),
        "systemd {}: {said}",
        c.version()
    );
}
