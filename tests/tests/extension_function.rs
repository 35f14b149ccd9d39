//! `portableServiceExtension` through Nix: what an extension holds (only what its base lacks),
//! the release file systemd matches against the base, and the errors at evaluation and build
//! time; and every image's `.check` derivation. The images are those of
//! tests/nix/extensions.nix.

use portable_service_tests::*;

/// The names (without hash) of the store paths in an image's store directory.
fn store_names(listing: &[String]) -> Vec<String> {
    let mut names: Vec<String> = listing
        .iter()
        .filter_map(|l| l.split_once(" /usr/nix/store/").map(|(_, p)| p))
        .filter(|p| !p.contains('/'))
        .map(|p| p.split_once('-').unwrap().1.to_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_system_extension_holds_its_units_below_usr_and_only_the_store_paths_its_base_lacks() {
    let out = build("ext.app { }");
    let image = raw_file(&out);
    assert_eq!(image.file_name().unwrap(), "app.raw");
    let list = listing(&image);
    assert_eq!(store_names(&list), ["app-1.0", "app.service"]);
    assert!(
        list.iter()
            .any(|l| l == "-rw-r--r-- /usr/lib/systemd/system/app.service"),
        "{list:#?}"
    );
    // nothing outside /usr, where systemd overlays it
    for line in &list {
        let path = line.split_once(' ').unwrap().1;
        assert!(path.is_empty() || path.starts_with("/usr"), "{line}");
    }
    assert_eq!(
        cat(&image, "/usr/lib/extension-release.d/extension-release.app"),
        "ID=nixos\nSYSEXT_SCOPE=portable\nPORTABLE_PREFIXES=app\n\
         PORTABLE_PRETTY_NAME=\"App 1.0, an extension of demo\"\n"
    );

    // without a base, the extension carries its whole closure
    let alone = raw_file(&build(
        "ext.app { version = \"alone\"; extra.base = null; }",
    ));
    assert_eq!(
        store_names(&listing(&alone)),
        ["app-alone", "app.service", "busybox"]
    );
}

#[test]
fn a_configuration_extension_holds_its_units_and_files_below_etc() {
    let image = raw_file(&build("ext.conf { }"));
    let list = listing(&image);
    let paths: Vec<&str> = list.iter().map(|l| l.split_once(' ').unwrap().1).collect();
    assert_eq!(
        paths,
        [
            "",
            "/etc",
            "/etc/democonf",
            "/etc/democonf/greeting",
            "/etc/extension-release.d",
            "/etc/extension-release.d/extension-release.democonf",
            "/etc/systemd",
            "/etc/systemd/system",
            "/etc/systemd/system/democonf.service",
        ]
    );
    assert_eq!(
        cat(&image, "/etc/democonf/greeting"),
        "hello from the confext\n"
    );
    assert_eq!(
        cat(
            &image,
            "/etc/extension-release.d/extension-release.democonf"
        ),
        "ID=nixos\nCONFEXT_SCOPE=portable\nPORTABLE_PREFIXES=democonf\n"
    );
}

#[test]
fn an_extension_release_matches_what_its_base_says() {
    let base = r#"demo { version = "rel"; extra = {
        osRelease = { VERSION_ID = "25.11"; SYSEXT_LEVEL = "2"; CONFEXT_LEVEL = "3"; VARIANT_ID = "edge"; };
        osReleaseOverrides.ID = "acme";
      }; }"#;
    let base_image = raw_file(&build(base));
    let os_release = cat(&base_image, "/etc/os-release");
    assert!(os_release.starts_with("ID=acme\n"), "{os_release}");
    assert!(
        os_release
            .ends_with("CONFEXT_LEVEL=3\nSYSEXT_LEVEL=2\nVARIANT_ID=edge\nVERSION_ID=\"25.11\"\n"),
        "{os_release}"
    );
    // what Nix code sees of the base is what the image says
    assert_eq!(
        eval(&format!("builtins.toJSON ({base}).portableService.release")).unwrap(),
        r#"{"CONFEXT_LEVEL":"3","ID":"acme","SYSEXT_LEVEL":"2","VERSION_ID":"25.11"}"#
    );

    let app = raw_file(&build(&format!(
        "ext.app {{ version = \"rel\"; extra.base = {base}; }}"
    )));
    assert_eq!(
        cat(&app, "/usr/lib/extension-release.d/extension-release.app"),
        "ID=acme\nSYSEXT_SCOPE=portable\nPORTABLE_PREFIXES=app\nVERSION_ID=\"25.11\"\n\
         SYSEXT_LEVEL=2\nPORTABLE_PRETTY_NAME=\"App rel, an extension of demo\"\n"
    );
}

#[test]
fn bad_combinations_fail_at_evaluation_naming_the_attribute() {
    let unit = r#"(t.writeText "app.service" "[Service]\nExecStart=/bin/true\n")"#;
    let call = |args: &str| {
        format!(
            "t.portableServiceExtension ({{ pname = \"app\"; version = \"1\"; units = [ {unit} ]; }} // {{ {args} }})"
        )
    };
    let cases = [
        (
            "base = t.hello;".to_owned(),
            r#"`base` = "hello-2.12.2" is not an image made by portableService"#,
        ),
        (
            "base = ext.app { };".to_owned(),
            r#"`base` = "app-sysext-1.0" is not an image made by portableService"#,
        ),
        (
            r#"base = ext.base; units = [ (t.writeText "demo.service" "[Service]\nExecStart=/bin/true\n") ]; portablePrefixes = [ "demo" ];"#.to_owned(),
            r#"`units[0].name` = "demo.service" is a unit of the base image too"#,
        ),
        (
            r#"base = ext.base; portablePrefixes = [ "other" ];"#.to_owned(),
            r#"`units[0].name` = "app.service" is never attached by portabled"#,
        ),
        (
            r#"kind = "initrd";"#.to_owned(),
            r#"`kind` = "initrd" must be "sysext""#,
        ),
    ];
    for (args, expected) in cases {
        let err = eval_error(&call(&args));
        assert!(
            err.contains(&format!("portableServiceExtension: {expected}")),
            "{args}\nexpected: {expected}\ngot: {err}"
        );
    }
    // an argument of extensions only, given to portableService
    let err = eval_error(r#"demo { extra.files = [ ]; }"#);
    assert!(err.contains("unexpected argument 'files'"), "{err}");
}

#[test]
fn a_configuration_extension_whose_units_need_store_paths_its_base_lacks_fails_the_build() {
    // hello is not in the demo base; a confext (overlaid on /etc) can't bring it
    let log = try_build(
        r#"t.portableServiceExtension {
          pname = "democonf"; version = "2"; kind = "confext"; base = ext.base;
          units = [ (t.writeText "democonf.service" "[Service]\nExecStart=${t.hello}/bin/hello\n") ];
        }"#,
        &[],
    )
    .unwrap_err();
    assert!(
        log.contains("error: attribute `base`: a configuration extension can't carry store paths"),
        "{log}"
    );
    assert!(
        log.contains("-hello-2.12.2"),
        "the missing path is named: {log}"
    );
}

#[test]
fn every_image_offers_a_check_that_builds_only_if_check_passes() {
    for expr in [
        "(demo { }).check",
        "(ext.app { }).check",
        "t.examples.hello-with-ssl.check",
    ] {
        let report = std::fs::read_to_string(build(expr)).unwrap();
        assert!(report.contains("verdict: accepted"), "{expr}: {report}");
    }
    let report = std::fs::read_to_string(build("(ext.app { }).check")).unwrap();
    assert!(
        report.contains("attached: app.service (app:/usr/lib/systemd/system/app.service)"),
        "{report}"
    );

    let log = try_build(
        r#"(t.portableService { pname = "broken"; version = "1";
             units = [ (t.writeText "broken.service" "[Service]\nExecStart=/bin/missing-tool\n") ]; }).check"#,
        &[],
    )
    .unwrap_err();
    assert!(
        log.contains("ExecStart=/bin/missing-tool: the image lacks /bin/missing-tool"),
        "{log}"
    );
    let err = eval_error("(ext.app { extra.base = null; }).check");
    assert!(err.contains("`check` needs `base`"), "{err}");

    // with verity: the tree is checked against the image, and the signature, which can only
    // be made after the build, is not yet asked for (systemd 262 will)
    let verity_base = "(demo { extra.verity = true; })";
    for expr in [
        format!("{verity_base}.check"),
        format!("(ext.app {{ extra = {{ verity = true; base = {verity_base}; }}; }}).check"),
    ] {
        let report = std::fs::read_to_string(build(&expr)).unwrap();
        assert!(report.contains("verdict: accepted"), "{expr}: {report}");
        assert!(
            report.contains("matches the image and the root hash")
                && report.contains("not signed yet (--signed-later): until it is, systemd 262"),
            "{expr}: {report}"
        );
    }
}
