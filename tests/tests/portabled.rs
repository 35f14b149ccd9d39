//! Acceptance: images built by `portableService` (through Nix, as in nix_function.rs) attached,
//! run, inspected and detached by a real systemd-portabled (Debian's systemd 252) booted in an
//! nspawn container. Each test boots its own container.

use portable_service_tests::container::{profile, Container};
use portable_service_tests::*;
use std::path::PathBuf;

const DESCRIPTION: &str = "Demo service: it's \"quoted\", costs $5 and has a back\\slash";

fn demo_image(version: &str) -> PathBuf {
    raw_file(&build(&format!("demo {{ version = \"{version}\"; }}")))
}

#[test]
fn runtime_attach_starts_the_service_and_detach_removes_it() {
    let c = Container::boot("ps-runtime");
    let image = c.add_image(&demo_image("1.0"), "demo_1.0.raw");
    c.portablectl("attach", &["--now", "--runtime"], &image);
    c.assert_active("demo.service");
    c.assert_active("demo.socket");
    // log lines reach the journal, tagged with the image they come from
    c.wait_for_journal(&["PORTABLE=demo_1.0.raw"], "demo 1.0 started, run 1");

    c.ok(&["portablectl", "detach", "--now", "--runtime", "demo_1.0"]);
    let state = c.run(&["systemctl", "is-active", "demo.service"]);
    assert_ne!(String::from_utf8_lossy(&state.stdout).trim(), "active");
    // (exits 1 when it lists nothing)
    let units = c.run(&["systemctl", "list-unit-files", "--no-pager", "demo*"]);
    let units = String::from_utf8_lossy(&units.stdout);
    assert!(units.contains("0 unit files listed"), "{units}");
    assert!(
        std::os::unix::net::UnixStream::connect(c.host_path("/run/demo.sock")).is_err(),
        "nothing listens on the socket any more"
    );
    let list = c.ok(&["portablectl", "list", "--no-pager"]);
    assert!(!list.contains("demo_1.0"), "{list}");
}

#[test]
fn socket_activation_reaches_the_service_inside_the_image() {
    let c = Container::boot("ps-socket");
    let image = c.add_image(&demo_image("1.0"), "demo_1.0.raw");
    c.portablectl("attach", &["--now", "--runtime"], &image);
    c.assert_active("demo.socket");
    // demo.socket (Accept=yes) starts demo@<n>.service, which answers through /bin/sh,
    // the image's symlink into busybox
    assert_eq!(c.ask("/run/demo.sock"), "hello from demo 1.0\n");
    assert_eq!(c.ask("/run/demo.sock"), "hello from demo 1.0\n");
}

#[test]
fn a_template_unit_runs_as_an_instance() {
    let c = Container::boot("ps-template");
    let image = c.add_image(&demo_image("1.0"), "demo_1.0.raw");
    c.portablectl("attach", &["--runtime"], &image);
    c.ok(&["systemctl", "start", "demo@one.service"]);
    c.assert_active("demo@one.service");
    c.wait_for_journal(&["-u", "demo@one.service"], "demo@one 1.0 started");
    // a running instance keeps the image attached (systemd refuses to detach it)
    c.ok(&["systemctl", "stop", "demo@one.service"]);
    c.ok(&["portablectl", "detach", "--runtime", "demo_1.0"]);
}

#[test]
fn inspect_shows_the_description_exactly() {
    let c = Container::boot("ps-inspect");
    let image = c.add_image(&demo_image("1.0"), "demo_1.0.raw");
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

#[test]
fn persistent_attach_reattach_to_a_new_version_and_detach() {
    let c = Container::boot("ps-reattach");
    let v1 = c.add_image(&demo_image("1.0"), "demo_1.0.raw");
    let v2 = c.add_image(&demo_image("2.0"), "demo_2.0.raw");
    c.portablectl("attach", &["--now"], &v1);
    c.assert_active("demo.service");
    assert!(
        c.root()
            .join("etc/systemd/system.attached/demo.service")
            .exists(),
        "a persistent attach writes below /etc"
    );
    assert_eq!(c.ask("/run/demo.sock"), "hello from demo 1.0\n");

    c.portablectl("reattach", &["--now"], &v2);
    c.assert_active("demo.service");
    c.wait_for_journal(&["PORTABLE=demo_2.0.raw"], "demo 2.0 started");
    assert_eq!(c.ask("/run/demo.sock"), "hello from demo 2.0\n");
    let list = c.ok(&["portablectl", "list", "--no-pager"]);
    assert!(
        list.contains("demo_2.0") && !list.contains("demo_1.0"),
        "{list}"
    );

    c.ok(&["portablectl", "detach", "--now", "demo_2.0"]);
    assert!(!c
        .root()
        .join("etc/systemd/system.attached/demo.service")
        .exists());
}

#[test]
fn default_and_trusted_profiles_run_the_service_and_keep_its_state() {
    let c = Container::boot("ps-profiles");
    let image = c.add_image(&demo_image("1.0"), "demo_1.0.raw");
    let mut profiles = vec![("trusted", "no")];
    if profile() == "default" {
        profiles.insert(0, ("default", "yes"));
    }
    for (profile, dynamic_user) in profiles {
        c.ok(&[
            "portablectl",
            "attach",
            "--now",
            "--runtime",
            "--profile",
            profile,
            &image,
        ]);
        c.assert_active("demo.service");
        let shown = c.ok(&["systemctl", "show", "-P", "DynamicUser", "demo.service"]);
        assert_eq!(shown.trim(), dynamic_user, "{profile} profile");
        c.wait_for_journal(
            &["-u", "demo.service", "-n", "1", "--grep", "started"],
            "run 1",
        );
        // StateDirectory=demo: the count written by the first run is read by the second
        c.ok(&["systemctl", "restart", "demo.service"]);
        c.assert_active("demo.service");
        c.wait_for_journal(
            &["-u", "demo.service", "-n", "1", "--grep", "started"],
            "run 2",
        );
        c.ok(&["portablectl", "detach", "--now", "--runtime", "demo_1.0"]);
        // the next profile starts from empty state
        c.ok(&["rm", "-rf", "/var/lib/demo", "/var/lib/private/demo"]);
    }
}

#[test]
fn the_manual_examples_run() {
    let c = Container::boot("ps-manual");
    let hello = c.add_image(&raw_file(&build("t.examples.hello")), "hello_2.12.2.raw");
    c.portablectl("attach", &["--runtime"], &hello);
    c.ok(&["systemctl", "start", "hello.service"]);
    c.wait_for_journal(&["PORTABLE=hello_2.12.2.raw"], "Hello, world!");
    c.ok(&["portablectl", "detach", "--runtime", "hello_2.12.2"]);

    // /etc/ssl in the image is a symlink into cacert's store path: a service reads through it
    let with_ssl = c.add_image(
        &raw_file(&build("t.examples.hello-with-ssl")),
        "hello_2.12.2.raw",
    );
    let busybox = eval("\"${t.busybox}/bin/busybox\"").unwrap();
    let expected =
        std::fs::read_to_string(repo().join("target/offline/cacert/etc/ssl/certs/ca-bundle.crt"))
            .unwrap();
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
    assert_eq!(read, expected);
}
