//! `portableService` through Nix: the manual's examples and the demo image built for real in
//! Nix's sandbox, every kind of unit, the evaluation-time errors, rebuilds and overrides.

use portable_service_tests::*;

fn has(listing: &[String], line: &str) -> bool {
    listing.iter().any(|l| l == line)
}

fn store_paths(listing: &[String]) -> Vec<String> {
    listing
        .iter()
        .filter_map(|l| l.split_once(" /usr/nix/store/").map(|(_, p)| p))
        .filter(|p| !p.contains('/'))
        .map(|p| p.split_once('-').unwrap().1.to_owned())
        .collect()
}

#[test]
fn manual_example_hello() {
    let out = build("t.examples.hello");
    let image = raw_file(&out);
    assert_eq!(image.file_name().unwrap(), "hello_2.12.2.raw");
    // without `verity`, the image alone: no hash tree a host without dm-verity would trip on
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 1);
    assert!(out
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .ends_with("-hello-img-2.12.2"));
    assert_eq!(
        eval("t.examples.hello.image").unwrap(),
        image.to_str().unwrap()
    );

    let list = listing(&image);
    for line in [
        "drwxr-xr-x ",
        "drwxr-xr-x /dev",
        "drwxr-xr-x /proc",
        "drwxr-xr-x /sys",
        "drwxr-xr-x /run",
        "drwxr-xr-x /tmp",
        "drwxr-xr-x /var/tmp",
        "drwxr-xr-x /var/lib",
        "drwxr-xr-x /var/cache",
        "drwxr-xr-x /var/log",
        "-rw-r--r-- /etc/machine-id",
        "-rw-r--r-- /etc/resolv.conf",
        "-rw-r--r-- /etc/os-release",
        "-rw-r--r-- /etc/systemd/system/hello.service",
        // the store is below /usr, where extensions are overlaid, and /nix leads there
        "drwxr-xr-x /usr/nix/store",
        "lrwxrwxrwx /nix -> usr/nix",
    ] {
        assert!(has(&list, line), "{line} in {list:#?}");
    }
    assert_eq!(
        cat(&image, "/etc/os-release"),
        "ID=nixos\nPRETTY_NAME=NixOS\nBUILD_ID=rolling\nPORTABLE_ID=hello\n\
         PORTABLE_PREFIXES=hello\nIMAGE_ID=hello\nIMAGE_VERSION=\"2.12.2\"\n"
    );
    let unit = cat(&image, "/etc/systemd/system/hello.service");
    assert!(unit.contains("ExecStart=/nix/store/"), "{unit}");
    let mut closure = store_paths(&list);
    closure.sort();
    assert_eq!(closure, ["busybox", "hello-2.12.2", "hello.service"]);
    assert!(!list.iter().any(|l| l.contains("/etc/ssl")));
}

#[test]
fn manual_example_hello_with_ssl_symlink() {
    let image = raw_file(&build("t.examples.hello-with-ssl"));
    let list = listing(&image);
    let link = list
        .iter()
        .find(|l| l.starts_with("lrwxrwxrwx /etc/ssl -> "))
        .unwrap_or_else(|| panic!("/etc/ssl in {list:#?}"));
    assert!(link.ends_with("-nss-cacert/etc/ssl"), "{link}");
    assert!(store_paths(&list).contains(&"nss-cacert".to_owned()));
    assert!(has(
        &list,
        &format!(
            "-r--r--r-- /usr{}/certs/ca-bundle.crt",
            link.rsplit_once(" -> ").unwrap().1
        )
    ));
}

/// A store path that is itself a symlink (`ln -s ... $out`) is copied as the symlink it is, as
/// nixpkgs' function does: never followed, so `ln -s /etc $out` doesn't bring the build
/// machine's /etc into the image.
#[test]
fn a_store_path_that_is_a_symlink_is_a_symlink_in_the_image() {
    let out = build(
        r#"t.portableService { pname = "links"; version = "1";
             units = [ (t.writeText "links.service" "[Service]\nExecStart=/bin/true\n") ];
             contents = [
               (t.runBusyboxWith "to-hello" { } "busybox ln -s ${t.hello} $out")
               (t.runBusyboxWith "to-etc" { } "busybox ln -s /etc $out")
             ]; }"#,
    );
    let list = listing(&raw_file(&out));
    for (name, target) in [
        ("to-hello", eval("\"${t.hello}\"").unwrap()),
        ("to-etc", "/etc".into()),
    ] {
        let link = list
            .iter()
            .find(|l| l.starts_with("lrwxrwxrwx ") && l.contains(&format!("-{name} -> ")))
            .unwrap_or_else(|| panic!("{name} as a symlink in {list:#?}"));
        assert!(link.ends_with(&format!(" -> {target}")), "{link}");
        assert!(
            !list.iter().any(|l| l.contains(&format!("-{name}/"))),
            "nothing below {name}: {list:#?}"
        );
    }
    // hello itself is in the closure of the symlink to it (Nix sees the reference)
    assert!(store_paths(&list).contains(&"hello-2.12.2".to_owned()));
}

#[test]
fn units_as_derivations_store_paths_paths_and_named_sets() {
    let dir = tempfile::tempdir().unwrap();
    let path_unit = dir.path().join("demo-path.service");
    std::fs::write(&path_unit, "[Service]\nExecStart=/bin/true\n").unwrap();
    let image = raw_file(&build(&format!(
        r#"t.portableService {{
          pname = "demo"; version = "2";
          units = [
            (t.writeText "demo.service" "[Service]\nExecStart=${{t.busybox}}/bin/sh -c true\n")
            (builtins.toFile "demo-file.timer" "[Timer]\nOnCalendar=daily\n")
            {}
            {{ name = "demo@.service"; file = builtins.toFile "demo-at.service" "[Service]\nExecStart=/bin/true %i\n"; }}
            {{ name = "demo-x@.socket"; file = {}; }}
          ];
        }}"#,
        path_unit.display(),
        path_unit.display()
    )));
    let list = listing(&image);
    for unit in [
        "demo.service",
        "demo-file.timer",
        "demo-path.service",
        "demo@.service",
        "demo-x@.socket",
    ] {
        assert!(
            has(&list, &format!("-rw-r--r-- /etc/systemd/system/{unit}")),
            "{unit} in {list:#?}"
        );
    }
    assert_eq!(
        cat(&image, "/etc/systemd/system/demo@.service"),
        "[Service]\nExecStart=/bin/true %i\n"
    );
    // the unit derivation's references (busybox) come along
    assert!(store_paths(&list).contains(&"busybox".to_owned()));
}

#[test]
fn the_demo_image_keeps_its_description_exactly() {
    let image = raw_file(&build("demo { }"));
    let os_release = cat(&image, "/etc/os-release");
    assert!(
        os_release.contains(
            "PORTABLE_PRETTY_NAME=\"Demo service: it's \\\"quoted\\\", costs \\$5 and has a back\\\\slash\"\n"
        ),
        "{os_release}"
    );
    assert!(os_release.contains("HOME_URL=\"https://example.org/demo\"\n"));
    let list = listing(&image);
    assert!(
        has(&list, "drwxr-xr-x /var/lib/demo"),
        "StateDirectory=demo"
    );
    assert!(list
        .iter()
        .any(|l| l.starts_with("lrwxrwxrwx /bin/sh -> /nix/store/")));
}

/// `tests/nix/bad-input.nix` over a case (a JSON object) of the inputs table.
fn table_call(case: &serde_json::Value) -> String {
    let case = serde_json::to_string(&case.to_string()).unwrap();
    format!(
        "import {}/tests/nix/bad-input.nix t (builtins.fromJSON {case})",
        repo().display()
    )
}

fn inputs_table() -> serde_json::Value {
    let table = std::fs::read_to_string(
        repo().join("crates/portable-service-builder/tests/fixtures/inputs.json"),
    )
    .unwrap();
    serde_json::from_str(&table).unwrap()
}

#[test]
fn the_inputs_table_s_refused_inputs_fail_at_evaluation_naming_the_attribute() {
    // The same table drives the builder's own checks (crates/portable-service-builder/tests/
    // bad_inputs.rs): each case is refused by both, naming the same attribute.
    let table = inputs_table();
    for extension in [None, Some("sysext"), Some("confext")] {
        let base = serde_json::json!({ "args": {}, "extension": extension });
        eval(&format!("({}).drvPath", table_call(&base)))
            .unwrap_or_else(|e| panic!("the table's base call evaluates ({extension:?}): {e}"));
    }
    for case in table["refused"].as_array().unwrap() {
        let attribute = case["attribute"].as_str().unwrap();
        let err = eval_error(&table_call(case));
        let function = match case["extension"] {
            serde_json::Value::Null => "portableService",
            _ => "portableServiceExtension",
        };
        assert!(
            err.contains(&format!("{function}: `{attribute}` = ")),
            "{case}\nexpected it to name `{attribute}`, got: {err}"
        );
    }
}

/// The tables the Nix function checks against (nix/rules.nix) are the builder's and the rules
/// crate's, entry for entry.
#[test]
fn the_nix_function_and_the_builder_check_against_the_same_tables() {
    use portable_service_builder::{mksquashfs, os_release};
    use portable_service_rules::extension::ExtensionKind;
    use portable_service_rules::{mount_points, names};
    let nix = |attr: &str| -> Vec<String> {
        let json = nix_eval(&[
            "--expr",
            &format!(
                "builtins.toJSON ((import {}/nix/rules.nix).{attr})",
                repo().display()
            ),
        ])
        .unwrap();
        serde_json::from_str(&json).unwrap()
    };
    let rust = |list: &[&str]| -> Vec<String> { list.iter().map(|s| s.to_string()).collect() };
    let suffixes: Vec<String> = names::UNIT_SUFFIXES
        .iter()
        .map(|s| s.trim_start_matches('.').to_owned())
        .collect();
    assert_eq!(nix("unitSuffixes"), suffixes);
    assert_eq!(nix("compressors"), rust(&mksquashfs::COMPRESSORS));
    let mut nix_sizes = nix("blockSizes");
    let mut rust_sizes: Vec<String> = mksquashfs::block_sizes().collect();
    nix_sizes.sort();
    rust_sizes.sort();
    assert_eq!(nix_sizes, rust_sizes);
    assert_eq!(nix("ownedFields null"), rust(&os_release::IMAGE_FIELDS));
    for kind in [ExtensionKind::Sysext, ExtensionKind::Confext] {
        assert_eq!(
            nix(&format!("ownedFields \"{}\"", kind.name())),
            rust(&kind.release_fields()),
            "{kind:?}"
        );
    }
    assert_eq!(nix("hiddenBelow"), rust(&mount_points::HIDDEN_BELOW));
    assert_eq!(nix("formats"), rust(&["squashfs", "ddi"]));
    for format in nix("formats") {
        let attrs = serde_json::json!({ "format": format });
        serde_json::from_value::<portable_service_builder::attrs::Format>(attrs["format"].clone())
            .unwrap_or_else(|e| panic!("the builder doesn't know format {format}: {e}"));
    }
    let systems: Vec<&str> = portable_service_rules::ddi::ARCHITECTURES
        .iter()
        .map(|a| a.nix_system)
        .collect();
    assert_eq!(nix("ddiSystems"), rust(&systems));
    let chars = |list: &[char]| -> Vec<String> { list.iter().map(|c| c.to_string()).collect() };
    use portable_service_tools::transfers::{TARGET_PUNCTUATION, URL_PUNCTUATION};
    assert_eq!(nix("targetPunctuation"), chars(TARGET_PUNCTUATION));
    assert_eq!(nix("urlPunctuation"), chars(URL_PUNCTUATION));
}

#[test]
fn the_inputs_table_s_accepted_inputs_evaluate() {
    // ... and each of these is accepted by both
    for case in inputs_table()["accepted"].as_array().unwrap() {
        eval(&format!("({}).drvPath", table_call(case)))
            .unwrap_or_else(|e| panic!("refused at evaluation: {case}\n{e}"));
    }
}

#[test]
fn arguments_of_the_wrong_shape_fail_at_evaluation_naming_attribute_and_value() {
    let unit = r#"(t.writeText "demo.service" "[Service]\nExecStart=/bin/true\n")"#;
    let call = |args: &str| {
        format!("t.portableService ({{ pname = \"demo\"; version = \"1\"; units = [ {unit} ]; }} // {{ {args} }})")
    };
    let cases = [
        (
            r#"pname = "my_demo";"#,
            r#"`pname` = "my_demo" may hold only letters"#,
        ),
        ("units = [ ];", "`units` = [] must be a non-empty list"),
        (
            r#"units = [ (t.writeText "demonstration.service" "x") ];"#,
            r#"`units[0].name` = "demonstration.service" is never attached by portabled"#,
        ),
        (
            r#"units = [ (t.writeText "demo.mount" "x") ];"#,
            r#"`units[0].name` = "demo.mount" is not a unit type portabled attaches"#,
        ),
        (
            &format!("units = [ {unit} {unit} ];"),
            r#"`units[1].name` = "demo.service" is the name of an earlier unit"#,
        ),
        (
            r#"units = [ "/etc/demo.service" ];"#,
            r#"`units[0]` = "/etc/demo.service" is not a unit file"#,
        ),
        (
            r#"units = [ { file = ./x; } ];"#,
            r#"`units[0]` = ["file"] is an attribute set but neither a derivation nor { name; file; }"#,
        ),
        (
            r#"symlinks = [ { symlink = "/etc/ssl"; } ];"#,
            r#"`symlinks[0]` = {"symlink":"/etc/ssl"} must be an attribute set { object; symlink; }"#,
        ),
        (
            r#"symlinks = [ { object = t.busybox; } ];"#,
            "`symlinks[0]` = ",
        ),
        (
            r#"symlinks = { object = t.busybox; symlink = "/bin"; };"#,
            "`symlinks` = ",
        ),
        (r#"contents = [ 7 ];"#, "`contents[0]` = 7 must be"),
        (
            r#"description = 7;"#,
            "`description` = 7 must be a string or null",
        ),
        (
            r#"description = "two\nlines";"#,
            r#"`description` = "two\nlines" must fit on one line"#,
        ),
        (
            r#"squash-block-size = "3M";"#,
            r#"`squash-block-size` = "3M" must be a power of two"#,
        ),
    ];
    for (args, expected) in cases {
        let err = eval_error(&call(args));
        assert!(
            err.contains(&format!("portableService: {expected}")),
            "{args}\nexpected: {expected}\ngot: {err}"
        );
    }
}

#[test]
fn a_rebuild_gives_the_same_bytes_with_one_core_and_without_the_sandbox() {
    let expr = "demo { version = \"rebuild\"; }";
    let out = build(expr);
    let before = std::fs::read(raw_file(&out)).unwrap();
    // Nix itself compares each rebuilt output with the stored one and fails if they differ.
    for settings in [
        &[][..],
        &["--option", "sandbox", "false"][..],
        &["--option", "cores", "1"][..],
    ] {
        let mut args = vec!["--rebuild"];
        args.extend(settings);
        try_build(expr, &args)
            .unwrap_or_else(|log| panic!("the rebuild ({settings:?}) differs or failed:\n{log}"));
    }
    assert_eq!(before, std::fs::read(raw_file(&out)).unwrap());
    // the last rebuild's log: Nix's one core reached mksquashfs
    let log = nix("nix").arg("log").arg(&out).output().unwrap();
    let log = String::from_utf8_lossy(&log.stdout);
    assert!(log.contains(" -processors 1"), "{log}");
}

#[test]
fn compression_and_block_size_are_passed_to_mksquashfs() {
    let default = superblock(&raw_file(&build("demo { version = \"xz\"; }")));
    assert!(default.contains("Compression xz"), "{default}");
    assert!(default.contains("Block size 1048576"), "{default}");
    let zstd = superblock(&raw_file(&build(
        r#"demo { version = "zstd"; extra = { squash-compression = "zstd -Xcompression-level 3"; squash-block-size = "128K"; }; }"#,
    )));
    assert!(zstd.contains("Compression zstd"), "{zstd}");
    assert!(zstd.contains("compression-level 3"), "{zstd}");
    assert!(zstd.contains("Block size 131072"), "{zstd}");
}

/// A squashfsTools package whose mksquashfs runs `body` (busybox sh; $real is the real one).
fn fake_squashfs_tools(body: &str) -> String {
    format!(
        r#"t.runBusyboxWith "fake-squashfs-tools" {{ }} ''
          busybox mkdir -p $out/bin
          printf '#!${{t.busybox}}/bin/sh\nreal=${{t.squashfsTools}}/bin/mksquashfs\n%s\n' '{body}' > $out/bin/mksquashfs
          busybox chmod 555 $out/bin/mksquashfs
        ''"#
    )
}

#[test]
fn overriding_squashfs_tools_uses_that_mksquashfs() {
    let wrapper = fake_squashfs_tools(r#"exec $real "$@" -no-fragments"#);
    for attr in ["squashfsTools", "squashfs-tools"] {
        let image = raw_file(&build(&format!(
            "demo {{ version = \"{attr}\"; extra = {{ {attr} = {wrapper}; }}; }}"
        )));
        let sb = superblock(&image);
        assert!(sb.contains("Fragments are not stored"), "{attr}: {sb}");
    }
    let old = fake_squashfs_tools(r#"echo "mksquashfs version 4.4 (2019/08/29)""#);
    let log = try_build(
        &format!("demo {{ version = \"old\"; extra.squashfsTools = {old}; }}"),
        &[],
    )
    .unwrap_err();
    assert!(
        log.contains("is version 4.4") && log.contains("needs squashfs-tools 4.5 or newer"),
        "{log}"
    );
}

#[test]
fn a_mksquashfs_that_dies_part_way_fails_the_build_naming_it() {
    // 8 MB of noise: more than the pipe and the builder's buffer hold, so the builder is still
    // writing when mksquashfs stops reading.
    let noise = r#"(t.runBusyboxWith "noise" { } "busybox head -c 8000000 /dev/urandom > $out")"#;
    let cases = [
        (
            "echo \"fake mksquashfs: out of cheese\" >&2; exit 3",
            "failed (exit status: 3); its last output:",
            "fake mksquashfs: out of cheese",
        ),
        (
            "echo \"fake mksquashfs: killed\" >&2; kill -9 $$",
            "failed (signal: 9 (SIGKILL)); its last output:",
            "fake mksquashfs: killed",
        ),
    ];
    for (i, (dies, status, last_words)) in cases.into_iter().enumerate() {
        let fake = fake_squashfs_tools(&format!(
            "[ \"$1\" = -version ] && exec $real -version; busybox head -c 65536 >/dev/null; {dies}"
        ));
        let expr = format!(
            "demo {{ version = \"dies-{i}\"; extra = {{ squashfsTools = {fake}; contents = [ t.busybox {noise} ]; }}; }}"
        );
        let started = std::time::Instant::now();
        let log = try_build(&expr, &[]).unwrap_err();
        // a hang guard, not a speed goal: a stuck pipe would wait forever
        assert!(
            started.elapsed().as_secs() < 120,
            "took {:?}",
            started.elapsed()
        );
        let error = log
            .lines()
            .find(|l| l.contains("error: ") && l.contains("mksquashfs"))
            .unwrap_or_else(|| panic!("an error naming mksquashfs in {log}"));
        assert!(error.contains(status), "{status} in {error}");
        let after = &log[log.find(status).unwrap()..];
        assert!(
            after.contains(last_words),
            "{last_words} after the error: {log}"
        );
        assert!(!log.contains("Broken pipe"), "{log}");
        let out = eval(&format!("({expr}).outPath")).unwrap();
        assert!(!std::path::Path::new(&out).exists(), "{out} is not left");
    }
}

#[test]
fn verity_puts_a_hash_tree_and_root_hash_beside_the_image_the_same_on_every_rebuild() {
    let expr = "demo { version = \"verity\"; extra = { verity = true; }; }";
    let out = build(expr);
    let names = file_names(&out);
    assert_eq!(
        names,
        [
            "demo_verity.raw",
            "demo_verity.roothash",
            "demo_verity.verity"
        ]
    );
    let root = std::fs::read_to_string(out.join("demo_verity.roothash")).unwrap();
    assert!(
        root.len() == 64 && root.bytes().all(|b| b.is_ascii_hexdigit()),
        "{root:?}"
    );
    // cryptsetup's own reading of the tree accepts it
    let verify = std::process::Command::new("veritysetup")
        .arg("verify")
        .arg(out.join("demo_verity.raw"))
        .arg(out.join("demo_verity.verity"))
        .arg(&root)
        .output()
        .expect("veritysetup runs (tests/setup.sh installs cryptsetup-bin)");
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    // Nix code finds the files by name
    let files = eval(&format!(
        "let i = {expr}; in \"${{i.verity.hashTree}} ${{i.verity.rootHash}}\""
    ))
    .unwrap();
    assert_eq!(
        files,
        format!(
            "{0}/demo_verity.verity {0}/demo_verity.roothash",
            out.display()
        )
    );
    // Nix compares every output file of the rebuild with the stored one
    try_build(expr, &["--rebuild"])
        .unwrap_or_else(|log| panic!("the rebuild differs or failed:\n{log}"));
    assert_eq!(eval("builtins.toJSON (demo { }).verity").unwrap(), "null");
}

/// Builds `example`, links it as `result` in `work` and runs README's `script` there with
/// `portable-service` on the PATH, a throwaway key (CN=fleet) as `$KEY` and `$CERT` and a
/// throwaway OpenPGP key as `$FEED_KEY`; what it printed.
fn readme_flow(example: &str, work: &std::path::Path, script: &str) -> String {
    let out = build(example);
    let key = SigningKey::new("fleet");
    let feed_key = FeedKey::new("fleet-feed");
    std::os::unix::fs::symlink(&out, work.join("result")).unwrap();
    let path = format!(
        "{}:{}",
        tools().parent().unwrap().display(),
        std::env::var("PATH").unwrap()
    );
    let run = std::process::Command::new("bash")
        .args(["-euc", script])
        .current_dir(work)
        .env("PATH", path)
        .env("KEY", key.key())
        .env("CERT", key.cert())
        .env("FEED_KEY", feed_key.key())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(
        run.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    said
}

/// README's signing flow, command for command, on the flake's `hello-verity` (offline): copy out
/// of the store, sign with a throwaway key, check with the certificate.
#[test]
fn the_readme_signing_flow_signs_hello_verity() {
    let work = tempfile::tempdir().unwrap();
    let said = readme_flow(
        "t.examples.hello-verity",
        work.path(),
        "mkdir -p signed && cp result/hello_2.12.2.* signed/ && chmod u+w signed/*
        portable-service sign --key \"$KEY\" --cert \"$CERT\" signed/hello_2.12.2.raw
        portable-service check --cert \"$CERT\" signed/hello_2.12.2.raw",
    );
    assert!(
        said.contains("wrote signed/hello_2.12.2.roothash.p7s: signed by CN=fleet"),
        "{said}"
    );
    assert!(said.contains("verity: signed by CN=fleet"), "{said}");
    assert!(said.contains("verdict: accepted"), "{said}");
    let mut files: Vec<String> = std::fs::read_dir(work.path().join("signed"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "hello_2.12.2.raw",
            "hello_2.12.2.roothash",
            "hello_2.12.2.roothash.p7s",
            "hello_2.12.2.verity"
        ]
    );
}

/// `format = "ddi"`: one disk file and its root hash, the same on every rebuild; Nix code finds
/// the root hash (the tree is inside); `.check` builds, for the image and for an extension DDI
/// over a DDI base; a DDI for arm64 carries arm64's partition types.
#[test]
fn a_ddi_is_one_file_the_same_on_every_rebuild_and_checked() {
    use portable_service_rules::ddi::{self, Designator};
    let expr = "demo { version = \"ddi\"; extra = { format = \"ddi\"; }; }";
    let out = build(expr);
    let names = file_names(&out);
    assert_eq!(names, ["demo_ddi.raw", "demo_ddi.roothash"]);
    let raw = camino::Utf8PathBuf::from_path_buf(out.join("demo_ddi.raw")).unwrap();
    let table = ddi::read_table(&raw).unwrap();
    assert_eq!(
        table.find(Designator::Root).unwrap().label,
        "root-x86-64",
        "this machine's architecture"
    );
    assert_eq!(
        eval(&format!(
            "let i = {expr}; in builtins.toJSON [ i.verity.hashTree \"${{i.verity.rootHash}}\" i.portableService.format ]"
        ))
        .unwrap(),
        format!("[null,\"{}/demo_ddi.roothash\",\"ddi\"]", out.display())
    );
    try_build(expr, &["--rebuild"])
        .unwrap_or_else(|log| panic!("the rebuild differs or failed:\n{log}"));
    let report = build(&format!("({expr}).check"));
    let report = std::fs::read_to_string(report).unwrap();
    assert!(report.contains("root-verity x86-64"), "{report}");
    assert!(
        report.contains("not signed yet (--signed-later)"),
        "{report}"
    );
    let ext = "(ext.app { extra = { format = \"ddi\"; base = demo { extra = { format = \"ddi\"; }; }; }; }).check";
    let report = std::fs::read_to_string(build(ext)).unwrap();
    assert!(report.contains("verdict: accepted"), "{report}");
    assert_eq!(report.matches("root-verity x86-64").count(), 2, "{report}");
    // a configuration extension DDI over a naked base: each read as what it is
    let conf = "(t.portableServiceExtension { pname = \"democonf\"; version = \"1\"; kind = \"confext\"; format = \"ddi\"; base = demo { }; units = [ (t.writeText \"democonf.service\" \"[Service]\\nExecStart=/bin/sh -c true\\n\") ]; }).check";
    let report = std::fs::read_to_string(build(conf)).unwrap();
    assert!(report.contains("verdict: accepted"), "{report}");
    assert_eq!(report.matches("root-verity x86-64").count(), 1, "{report}");
    assert!(report.contains("confext"), "{report}");
}

/// README's signing flow for a DDI, command for command, on the flake's `hello-ddi` (offline):
/// copy the one file out of the store, sign it in place, check it with the certificate.
#[test]
fn the_readme_ddi_flow_signs_hello_ddi() {
    let work = tempfile::tempdir().unwrap();
    let said = readme_flow(
        "t.examples.hello-ddi",
        work.path(),
        "cp result/hello_2.12.2.raw . && chmod u+w hello_2.12.2.raw
        portable-service sign --key \"$KEY\" --cert \"$CERT\" hello_2.12.2.raw
        portable-service check --cert \"$CERT\" hello_2.12.2.raw",
    );
    assert!(
        said.contains("signed hello_2.12.2.raw: its signature partition holds the root hash's signature by CN=fleet"),
        "{said}"
    );
    assert!(said.contains("verity: signed by CN=fleet"), "{said}");
    assert!(said.contains("root-verity-sig x86-64"), "{said}");
    assert!(said.contains("verdict: accepted"), "{said}");
}

/// README's update flow on the build machine, command for command, on `hello-ddi`: sign, publish
/// into a feed a host can verify; and the host's side, `.sysupdate`, holds the files README
/// copies under /etc. (The VM tests run the host's commands.)
#[test]
fn the_readme_update_flow_publishes_hello_ddi_and_builds_its_host_side() {
    let work = tempfile::tempdir().unwrap();
    let said = readme_flow(
        "t.examples.hello-ddi",
        work.path(),
        "cp result/hello_2.12.2.raw . && chmod u+w hello_2.12.2.raw
        portable-service sign --key \"$KEY\" --cert \"$CERT\" hello_2.12.2.raw
        portable-service publish --feed feed --key \"$FEED_KEY\" --cert \"$CERT\" --public-key import-pubring.pgp hello_2.12.2.raw
        (cd feed && sha256sum -c --strict SHA256SUMS)   # what the hosts check, with the signature",
    );
    assert!(said.contains("added feed/hello_2.12.2.raw"), "{said}");
    assert!(said.contains("hello_2.12.2.raw: OK"), "{said}");
    let feed = work.path().join("feed");
    assert_eq!(
        file_names(&feed),
        ["SHA256SUMS", "SHA256SUMS.gpg", "hello_2.12.2.raw"]
    );
    assert!(work.path().join("import-pubring.pgp").is_file());

    let host =
        build("t.examples.hello-ddi.sysupdate { url = \"https://updates.example.org/hello/\"; }");
    for file in [
        "sysupdate.hello.d/10-hello-raw.transfer",
        "sysupdate.hello.d/10-hello-raw.conf",
        "portable-service-agent/bin/portable-service-agent",
        "portable-service-agent/hello.json",
        "systemd/system/hello-update.service",
        "systemd/system/hello-update.timer",
        "systemd/system/hello-rollback.service",
        "systemd/system/hello-recover.service",
        "systemd/system/multi-user.target.wants/hello-recover.service",
    ] {
        assert!(host.join(file).is_file(), "{file} in {}", host.display());
    }
    let transfer =
        std::fs::read_to_string(host.join("sysupdate.hello.d/10-hello-raw.transfer")).unwrap();
    assert!(
        transfer.contains("Path=https://updates.example.org/hello/")
            && transfer.contains("MatchPattern=hello_@v.raw"),
        "{transfer}"
    );
    // one file a version: a DDI has no other transfer
    assert_eq!(
        std::fs::read_dir(host.join("sysupdate.hello.d"))
            .unwrap()
            .count(),
        2
    );
}

/// `.sysupdate`'s arguments are checked at evaluation time, naming the attribute and value.
#[test]
fn sysupdate_arguments_fail_at_evaluation_naming_attribute_and_value() {
    let cases = [
        (
            "(demo { }).sysupdate { url = \"ftp://example.org/\"; }",
            "`sysupdate.url` = \"ftp://example.org/\" must be an http:// or https:// URL",
        ),
        (
            "(demo { }).sysupdate { url = \"https://x/\"; keep = 1; }",
            "`sysupdate.keep` = 1 must be a whole number of at least 2",
        ),
        (
            "(demo { }).sysupdate { url = \"https://x/\"; target = \"portables\"; }",
            "`sysupdate.target` = \"portables\" must be an absolute path",
        ),
        // what would run as root on every host, or add lines to the transfer files
        (
            "(demo { }).sysupdate { url = \"https://x/\"; target = \"/var/lib/p$(touch /x)\"; }",
            "`sysupdate.target` = \"/var/lib/p$(touch /x)\" must be an absolute path on the host of letters, digits and ._/+-",
        ),
        (
            "(demo { }).sysupdate { url = \"https://x/\"; target = \"/var/lib/p\\nVerify=no\"; }",
            "`sysupdate.target` = \"/var/lib/p\\nVerify=no\" must be an absolute path",
        ),
        (
            "(demo { }).sysupdate { url = \"https://x/\"; target = \"/var/lib/../etc\"; }",
            "`sysupdate.target` = \"/var/lib/../etc\" must be an absolute path",
        ),
        (
            "(demo { }).sysupdate { url = \"https://x/'$(id)'\"; }",
            "`sysupdate.url` = \"https://x/'$(id)'\" may hold only letters, digits and",
        ),
        (
            "(demo { }).sysupdate { url = \"https://x/\"; health.steady = 0; }",
            "`sysupdate.health.steady` = 0 must be a whole number of seconds, at least 1",
        ),
        (
            "(demo { }).sysupdate { url = \"https://x/\"; health.command = [ \"curl\" ]; }",
            "`sysupdate.health.command` = [\"curl\"] must start with an absolute path on the host",
        ),
        (
            "(demo { }).sysupdate { url = \"https://x/\"; baseUrl = \"https://x/base/\"; }",
            "`sysupdate.baseUrl` = \"https://x/base/\" is for an extension",
        ),
        (
            "(demo { }).sysupdate { url = \"https://x/\"; health.wait = 3; }",
            "`sysupdate.health` = {\"wait\":3} knows only timeout, steady and command, not wait",
        ),
        (
            "(demo { extra.format = \"ddi\"; }).sysupdate { url = \"https://x/\"; signed = true; }",
            "`sysupdate.signed` = true is for a naked image with `verity = true`",
        ),
        (
            "(demo { version = \"1=1\"; }).sysupdate { url = \"https://x/\"; }",
            "`version` = \"1=1\" can't be updated by systemd-sysupdate",
        ),
    ];
    for (expr, expected) in cases {
        let err = eval_error(expr);
        assert!(
            err.contains(&format!("portableService: {expected}")),
            "{expr}\nexpected: {expected}\ngot: {err}"
        );
    }
    // an extension's host side names its base, over which it is attached, and its feed
    let host = build(
        "(ext.app { }).sysupdate { url = \"http://127.0.0.1:8080/\"; \
         baseUrl = \"http://127.0.0.1:8080/demo/\"; }",
    );
    let config = agent_config(&host, "app");
    assert_eq!(config["base"]["name"], "demo", "{config}");
    assert_eq!(
        config["base"]["url"], "http://127.0.0.1:8080/demo/",
        "{config}"
    );
    // health's settings reach the host
    let host = build(
        "(demo { }).sysupdate { url = \"https://x/\"; health = { timeout = 30; steady = 5; \
         command = [ \"/usr/bin/curl\" \"-f\" \"http://127.0.0.1/\" ]; }; }",
    );
    let config = agent_config(&host, "demo");
    assert_eq!(config["health"]["timeout"], 30, "{config}");
    assert_eq!(config["health"]["steady"], 5, "{config}");
    assert_eq!(
        config["health"]["command"],
        serde_json::json!(["/usr/bin/curl", "-f", "http://127.0.0.1/"])
    );
    // the agent runs on every systemd the images do: an old host's image has a host side too
    let old = eval("((demo { socket = false; extra.minSystemd = 239; }).sysupdate { url = \"https://x/\"; }).drvPath");
    assert!(old.is_ok(), "{old:?}");
}

/// The agent's configuration for image `name` in a `.sysupdate` output.
fn agent_config(host: &std::path::Path, name: &str) -> serde_json::Value {
    let file = host.join(format!("portable-service-agent/{name}.json"));
    serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap()
}

/// What code written against nixpkgs' `portableService` does with its result, a stdenv
/// derivation: `override` and `overrideAttrs`, `meta`, `passthru`.
#[test]
fn an_image_overrides_as_a_nixpkgs_derivation_does() {
    let hello = "t.examples.hello";
    let name = |expr: &str| eval(&format!("({expr}).fileName")).unwrap();
    assert_eq!(name(hello), "hello_2.12.2.raw");
    assert_eq!(
        name(&format!("{hello}.override {{ version = \"3.0\"; }}")),
        "hello_3.0.raw"
    );
    assert_eq!(
        name(&format!(
            "{hello}.override (a: {{ pname = a.pname + \"-b\"; }})"
        )),
        "hello-b_2.12.2.raw"
    );
    // overrideAttrs in both of stdenv's forms, with the image's arguments, meta and passthru
    let changed = format!(
        "{hello}.overrideAttrs (old: {{ version = old.version + \"-1\"; \
         passthru = old.passthru // {{ tests = \"a test\"; }}; }})"
    );
    assert_eq!(name(&changed), "hello_2.12.2-1.raw");
    assert_eq!(eval(&format!("({changed}).tests")).unwrap(), "a test");
    assert_eq!(
        eval(&format!("({changed}).passthru.tests")).unwrap(),
        "a test"
    );
    assert_eq!(
        name(&format!(
            "{hello}.overrideAttrs (final: prev: {{ version = \"4\"; }})"
        )),
        "hello_4.raw"
    );
    // the override is the image the function makes of those arguments
    assert_eq!(
        eval("((demo { }).override { description = \"other\"; }).drvPath").unwrap(),
        eval("(demo { description = \"other\"; }).drvPath").unwrap()
    );
    assert!(eval(&format!(
        "({hello}.override {{ version = \"3.0\"; }}).check.drvPath"
    ))
    .is_ok());

    // meta: description and homepage from the arguments, and what the user adds
    let meta = "demo { extra = { description = \"A demo\"; homepage = \"https://example.org\"; \
                meta.license = \"mit\"; }; }";
    assert_eq!(
        eval(&format!(
            "let m = ({meta}).meta; in \"${{m.description}} ${{m.homepage}} ${{m.license}}\""
        ))
        .unwrap(),
        "A demo https://example.org mit"
    );
    assert_eq!(
        eval(&format!("builtins.toJSON {hello}.meta")).unwrap(),
        "{}"
    );

    // nixpkgs' attributes: `pname` as its derivation's ("<pname>-img", so that `name` is
    // "<pname>-<version>"), `version`, and the image's check among `passthru.tests` (beside the
    // caller's own), while the file keeps the caller's pname
    assert_eq!(
        eval(&format!(
            "let i = {hello}; in \"${{i.pname}} ${{i.version}} ${{i.name}} ${{i.fileName}}\""
        ))
        .unwrap(),
        "hello-img 2.12.2 hello-img-2.12.2 hello_2.12.2.raw"
    );
    assert_eq!(
        eval("(ext.app { }).pname").unwrap(),
        "app-sysext",
        "an extension's pname names its kind, as its derivation's name does"
    );
    let check = eval(&format!("{hello}.check.drvPath")).unwrap();
    assert_eq!(
        eval(&format!("{hello}.passthru.tests.check.drvPath")).unwrap(),
        check
    );
    assert_eq!(
        eval(&format!("{hello}.tests.check.drvPath")).unwrap(),
        check
    );
    let own_tests = format!("{hello}.overrideAttrs (old: {{ passthru.tests.mine = t.hello; }})");
    assert_eq!(
        eval(&format!(
            "builtins.concatStringsSep \" \" (builtins.attrNames ({own_tests}).passthru.tests)"
        ))
        .unwrap(),
        "check mine"
    );
    // the check among an overridden image's tests is that image's own
    assert_eq!(
        eval(&format!(
            "let i = {hello}.override {{ version = \"3.0\"; }}; in \
             builtins.toJSON (i.passthru.tests.check.drvPath == i.check.drvPath)"
        ))
        .unwrap(),
        "true"
    );
    // an extension without a base has no check to offer
    assert_eq!(
        eval("builtins.toJSON (t.portableServiceExtension { pname = \"app\"; version = \"1\"; \
              units = [ (t.writeText \"app.service\" \"[Service]\\nExecStart=/bin/true\\n\") ]; }).passthru.tests")
        .unwrap(),
        "{}"
    );
    // closureInfo needs nixpkgs' function, which the offline world doesn't give
    let err = eval_error(&format!("{hello}.closureInfo"));
    assert!(
        err.contains("`closureInfo` needs nixpkgs' closureInfo function"),
        "{err}"
    );

    // what a stdenv derivation has and an image hasn't: an error naming it
    let err = eval_error(&format!(
        "{hello}.overrideAttrs (old: {{ buildPhase = \"true\"; nativeBuildInputs = [ ]; }})"
    ));
    assert!(
        err.contains(
            "`overrideAttrs` sets `buildPhase`, `nativeBuildInputs`, which an image doesn't have"
        ) && err.contains("squash-compression"),
        "{err}"
    );
}

/// `minSystemd`, the oldest systemd the hosts run: what needs a newer one fails at evaluation,
/// naming the feature and the version that brought it; the image's `check` judges by that
/// version's rules; the image itself doesn't change with it.
#[test]
fn min_systemd_refuses_what_older_hosts_cannot_run() {
    let cases = [
        (
            "(demo { extra.minSystemd = 238; })",
            "portableService: `minSystemd` = 238 must be null or a systemd version from 239",
        ),
        (
            "(demo { extra.minSystemd = \"247\"; })",
            "portableService: `minSystemd` = \"247\" must be null or a systemd version",
        ),
        (
            "(ext.app { extra.minSystemd = 247; })",
            "portableServiceExtension: `minSystemd` = 247 is older than extensions (`portablectl attach --extension`), which came in systemd 249",
        ),
        (
            "((ext.conf { }).override { minSystemd = 254; })",
            "portableServiceExtension: `minSystemd` = 254 is older than configuration extensions attached by portabled, which came in systemd 257",
        ),
        (
            "(demo { extra.minSystemd = 239; })",
            "portableService: `minSystemd` = 239 is older than attaching units other than services (demo.socket: 239 refuses them, \"No such file or directory\"), which came in systemd 245",
        ),
        (
            "((ext.app { }).override { minSystemd = 252; }).sysupdate { url = \"https://x/\"; }",
            "portableServiceExtension: `minSystemd` = 252 is older than updating an extension, whose versions' files are named NAME_VERSION.raw",
        ),
        (
            "(demo { extra.profile = \"mine\"; })",
            "portableService: `profile` = \"mine\" must be null or a profile systemd ships: default, nonetwork, strict, trusted",
        ),
    ];
    for (expr, expected) in cases {
        let err = eval_error(expr);
        assert!(
            err.contains(expected),
            "{expr}\nexpected: {expected}\ngot: {err}"
        );
    }
    assert_eq!(
        eval("(demo { extra.minSystemd = 247; }).drvPath").unwrap(),
        eval("(demo { }).drvPath").unwrap(),
        "the image doesn't depend on minSystemd"
    );
    eval("(ext.app { extra.minSystemd = 249; }).drvPath").unwrap();
    eval("(demo { extra.minSystemd = 245; }).drvPath").unwrap();
    // check by 247's rules: a signed hash tree is refused there, unsigned it runs
    let report = |expr: &str| {
        let out = build(expr);
        std::fs::read_to_string(&out).unwrap_or_else(|e| panic!("{}: {e}", out.display()))
    };
    let plain = report("(demo { extra.minSystemd = 247; }).check");
    assert!(plain.contains("(systemd 247 rules)"), "{plain}");
    let err = try_build(
        "(demo { extra = { minSystemd = 247; verity = true; }; }).check",
        &[],
    )
    .expect_err("a hash tree to be signed is refused by 247's rules");
    assert!(
        err.contains("checks it against the kernel's keyring only"),
        "{err}"
    );
    // 239 runs a service from the host's root under every profile but trusted: check says
    // so, and judges by the profile the hosts attach with
    let services = "(demo { socket = false; extra = { minSystemd = 239; PROFILE }; })";
    let err = try_build(&format!("{}.check", services.replace("PROFILE", "")), &[])
        .expect_err("239's default profile runs the service from the host's root");
    assert!(err.contains("attach with `--profile trusted`"), "{err}");
    let trusted = report(&format!(
        "{}.check",
        services.replace("PROFILE", "profile = \"trusted\";")
    ));
    assert!(
        trusted.contains("(systemd 239 rules)") && trusted.contains("--profile trusted"),
        "{trusted}"
    );
    assert_eq!(
        eval(&format!(
            "{}.drvPath",
            services.replace("PROFILE", "profile = \"trusted\";")
        ))
        .unwrap(),
        eval(&format!("{}.drvPath", services.replace("PROFILE", ""))).unwrap(),
        "the image doesn't depend on the profile"
    );
}

/// `imagePolicy`: a string (systemd's syntax) the image's `check` holds it to, judging
/// "signed" as signed after the build; anything else fails at evaluation naming the
/// attribute; the image itself doesn't change with it.
#[test]
fn image_policy_is_passed_to_check_and_must_be_a_string() {
    let err = eval_error("(demo { extra.imagePolicy = [ \"root=signed\" ]; })");
    assert!(
        err.contains("portableService: `imagePolicy` = [\"root=signed\"] must be null or an image policy in systemd's syntax (a string)"),
        "{err}"
    );
    let err = eval_error("(ext.app { extra.imagePolicy = 1; })");
    assert!(
        err.contains("portableServiceExtension: `imagePolicy` = 1 must be null"),
        "{err}"
    );
    let args: Vec<String> = serde_json::from_str(
        &eval("builtins.toJSON (demo { extra.imagePolicy = \"root=signed\"; }).check.args")
            .unwrap(),
    )
    .unwrap();
    let policy = args.iter().position(|a| a == "--image-policy");
    assert_eq!(
        policy.map(|i| args[i + 1].as_str()),
        Some("root=signed"),
        "{args:?}"
    );
    assert!(args.iter().any(|a| a == "--signed-later"), "{args:?}");
    let plain: Vec<String> =
        serde_json::from_str(&eval("builtins.toJSON (demo { }).check.args").unwrap()).unwrap();
    assert!(!plain.iter().any(|a| a == "--image-policy"), "{plain:?}");
    assert_eq!(
        eval("(demo { extra.imagePolicy = \"root=signed\"; }).drvPath").unwrap(),
        eval("(demo { }).drvPath").unwrap(),
        "the image doesn't depend on the policy"
    );
}
