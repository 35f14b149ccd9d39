//! The user-facing entry points, evaluated offline against a stand-in nixpkgs
//! (tests/nix/stand-in-nixpkgs): the flake's packages through `overlays.default`, and
//! `default.nix` given `pkgs`. Each must give exactly the image the offline world builds, from a
//! builder package whose source is the builder's own crates: a change anywhere else leaves every
//! image's derivation as it was.
//! README's quickstart `flake.nix`, as pasted, evaluates to an image too.

use portable_service_tests::*;
use std::path::{Path, PathBuf};

fn stand_in() -> String {
    repo()
        .join("tests/nix/stand-in-nixpkgs")
        .display()
        .to_string()
}

/// Builds with `nix build ARGS`, which must succeed.
fn must_build(args: &[&str]) -> PathBuf {
    nix_build(args).unwrap_or_else(|log| panic!("nix build {}:\n{log}", args.join(" ")))
}

/// The files git tracks, copied to a new directory: what a `git+file:` flake of the checkout
/// sees. (Nix 2.8's git fetcher runs git after setns() back into its first mount namespace,
/// which leaves a chroot such as fresh-machine's and then can't find the checkout.)
fn tracked_files() -> tempfile::TempDir {
    let out = std::process::Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(out.status.success(), "git ls-files");
    let dir = tempfile::tempdir().unwrap();
    for name in out.stdout.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = std::str::from_utf8(name).unwrap();
        let to = dir.path().join(name);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(repo().join(name), to).unwrap();
    }
    dir
}

/// The bytes of an image output's files, by name.
fn files(out: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

#[test]
fn the_flake_builds_the_manual_examples_through_its_overlay() {
    let tracked = tracked_files();
    let flake = format!("path:{}", tracked.path().display());
    let stand_in = format!("path:{}", stand_in());
    for example in ["hello", "hello-with-ssl", "hello-verity", "hello-ddi"] {
        let out = must_build(&[
            &format!("{flake}#{example}"),
            "--no-write-lock-file",
            "--override-input",
            "nixpkgs",
            &stand_in,
        ]);
        let offline = build(&format!("t.examples.{example}"));
        // the builder is another store path (a package built from the flake's sources, not
        // the staged one), the image the same bytes
        assert_eq!(files(&out), files(&offline), "{example}: the same files");
        assert!(raw_file(&out).ends_with("hello_2.12.2.raw"));
    }
    let check = must_build(&[
        &format!("{flake}#checks.x86_64-linux.hello-check"),
        "--no-write-lock-file",
        "--override-input",
        "nixpkgs",
        &stand_in,
    ]);
    let report = std::fs::read_to_string(check).unwrap();
    assert!(report.contains("verdict: accepted"), "{report}");

    // The two packages, compiled in the sandbox and their tests run there (the tools' check
    // phase) on the way to the images and the check above: what they keep at run time is
    // gnupg for `publish`, and neither the toolchain nor the crates they were built from. (The
    // agent's package is evaluated by the flake check; its tests run in tests/run.sh, on the
    // static build the VMs use: building it here too cost the test command minutes.)
    for (package, program, keeps) in [
        ("portable-service-tools", "portable-service", &["gnupg"][..]),
        (
            "portable-service-builder",
            "portable-service-builder",
            &[][..],
        ),
    ] {
        let out = must_build(&[
            &format!("{flake}#{package}"),
            "--no-write-lock-file",
            "--override-input",
            "nixpkgs",
            &stand_in,
        ]);
        let help = std::process::Command::new(out.join("bin").join(program))
            .arg("--help")
            .output()
            .unwrap();
        assert!(help.status.success(), "{package}: {program} --help");
        let refs = run_nix(nix("nix-store").arg("-q").arg("--references").arg(&out));
        let refs = String::from_utf8_lossy(&refs.stdout).into_owned();
        let kept: Vec<&str> = refs
            .lines()
            .filter(|r| *r != out.to_str().unwrap())
            .map(|r| r.split_once('-').map_or(r, |(_, name)| name))
            .collect();
        assert!(
            kept.len() == keeps.len()
                && keeps.iter().all(|k| kept.iter().any(|r| r.starts_with(k))),
            "{package} keeps {kept:?}"
        );
    }
}

/// Every check, package, overlay and the formatter the flake declares, for every system it
/// names, evaluates as `nix flake check` evaluates them (building them is the other tests' and
/// the tools package's check phase's part).
#[test]
fn nix_flake_check_evaluates_every_output() {
    let tracked = tracked_files();
    let out = run_nix(
        nix("nix")
            .env("PORTABLE_SERVICE_REPO", repo())
            .args([
                "flake",
                "check",
                "--no-build",
                "--impure",
                "--no-write-lock-file",
            ])
            .args([
                "--override-input",
                "nixpkgs",
                &format!("path:{}", stand_in()),
            ])
            .arg(format!("path:{}", tracked.path().display())),
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "nix flake check:\n{log}");
}

#[test]
fn default_nix_extends_the_given_pkgs() {
    let pkgs = format!("import {} {{ }}", stand_in());
    let out = must_build(&["-f", "default.nix", "hello", "--arg", "pkgs", &pkgs]);
    assert_eq!(files(&out), files(&build("t.examples.hello")));
}

#[test]
fn the_overlays_functions_override_their_packages_and_the_additive_one_keeps_nixpkgs_own() {
    let repo = repo();
    let expr = format!(
        r#"let
          stand-in = import {stand_in};
          pkgs = stand-in {{ overlays = [ (import {repo}/nix/overlay.nix) ]; }};
          additive = stand-in {{ overlays = [ (import {repo}/nix/overlay-additive.nix) ]; }};
          other = pkgs.writeText "other-squashfs-tools" "";
          args = {{
            pname = "hello";
            version = "1";
            units = [ (pkgs.writeText "hello.service" "[Service]
ExecStart=/bin/true
") ];
          }};
        in
        builtins.toJSON {{
          replaced = (pkgs.portableService args).drvPath == (pkgs.buildPortableService args).drvPath;
          overridden = ((pkgs.portableService.override {{ squashfsTools = other; }}) args).mksquashfs
            == "${{other}}/bin/mksquashfs";
          extension = ((pkgs.portableServiceExtension.override {{ squashfsTools = other; }}) args).mksquashfs
            == "${{other}}/bin/mksquashfs";
          kept = additive.portableService args;
          added = (additive.buildPortableService args).fileName;
        }}"#,
        stand_in = stand_in(),
        repo = repo.display()
    );
    let json = nix_eval(&["--expr", &expr]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        json,
        r#"{"added":"hello_1.raw","extension":true,"kept":{"nixpkgsPortableService":"hello"},"overridden":true,"replaced":true}"#
    );
}

/// One change to a copy of the repository, and whether it may change the hello image's
/// derivation.
struct Change {
    file: &'static str,
    edit: fn(String) -> String,
    image_changes: bool,
}

fn append_comment(text: String) -> String {
    text + "// a changed line\n"
}

/// A lock entry's checksum, changed: what a new version of that package does to the lock.
fn change_checksum_of(package: &'static str) -> impl Fn(String) -> String {
    move |text: String| {
        let at = text
            .find(&format!("name = \"{package}\"\n"))
            .unwrap_or_else(|| panic!("{package} in the lock"));
        let sum = at + text[at..].find("checksum = \"").unwrap() + "checksum = \"".len();
        let flipped = if &text[sum..sum + 1] == "0" { "1" } else { "0" };
        format!("{}{flipped}{}", &text[..sum], &text[sum + 1..])
    }
}

#[test]
fn an_image_derivation_changes_with_the_builder_s_code_alone() {
    let stand_in = format!("path:{}", stand_in());
    let eval_in = |dir: &Path, attr: &str| {
        nix_eval(&[
            &format!("path:{}#{attr}", dir.display()),
            "--no-write-lock-file",
            "--override-input",
            "nixpkgs",
            &stand_in,
        ])
        .unwrap_or_else(|e| panic!("nix eval {attr}: {e}"))
    };
    let pristine = tracked_files();
    let image = eval_in(pristine.path(), "hello.drvPath");
    let check = eval_in(pristine.path(), "checks.x86_64-linux.hello-check.drvPath");
    let changes = [
        Change {
            file: "crates/portable-service-tools/src/check/mod.rs",
            edit: append_comment,
            image_changes: false,
        },
        Change {
            file: "crates/portable-service-builder/tests/image.rs",
            edit: append_comment,
            image_changes: false,
        },
        Change {
            file: "tests/src/vm/host.rs",
            edit: append_comment,
            image_changes: false,
        },
        Change {
            file: "README.md",
            edit: |t| t + "\nA changed line.\n",
            image_changes: false,
        },
        Change {
            file: "Cargo.lock",
            edit: |t| change_checksum_of("rsa")(t),
            image_changes: false,
        },
        Change {
            file: "crates/portable-service-builder/src/plan/mod.rs",
            edit: append_comment,
            image_changes: true,
        },
        Change {
            file: "crates/portable-service-rules/src/names.rs",
            edit: append_comment,
            image_changes: true,
        },
        Change {
            file: "nix/builder.Cargo.lock",
            edit: |t| change_checksum_of("walkdir")(t),
            image_changes: true,
        },
    ];
    for change in changes {
        let copy = tracked_files();
        let path = copy.path().join(change.file);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, (change.edit)(text)).unwrap();
        let changed = eval_in(copy.path(), "hello.drvPath");
        assert_eq!(
            changed != image,
            change.image_changes,
            "a change of {}: the image's derivation {} -> {changed}",
            change.file,
            image
        );
        if change.file.starts_with("crates/portable-service-tools/") {
            // the image's `.check` runs the tools, so it follows them
            let changed_check = eval_in(copy.path(), "checks.x86_64-linux.hello-check.drvPath");
            assert_ne!(changed_check, check, "the check follows the tools");
        }
    }
}

#[test]
fn the_builder_lock_is_cargo_s_cut_of_cargo_lock() {
    let dir = tempfile::tempdir().unwrap();
    let fresh = dir.path().join("Cargo.lock");
    let out = run_nix(nix("bash").arg("tests/update-builder-lock.sh").arg(&fresh));
    assert!(
        out.status.success(),
        "tests/update-builder-lock.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let committed = std::fs::read_to_string(repo().join("nix/builder.Cargo.lock")).unwrap();
    assert!(
        std::fs::read_to_string(&fresh).unwrap() == committed,
        "nix/builder.Cargo.lock is not what cargo makes of Cargo.lock: run tests/update-builder-lock.sh"
    );
    // what the builder links and what it does not
    for package in ["walkdir", "tar", "sha2", "serde_json"] {
        assert!(
            committed.contains(&format!("name = \"{package}\"\n")),
            "{package}"
        );
    }
    for package in ["clap", "backhand", "cms", "rsa", "p256", "regex"] {
        assert!(
            !committed.contains(&format!("name = \"{package}\"\n")),
            "{package}"
        );
    }
}

/// The first block fenced as `lang` in `text`, without its fences.
fn fenced<'a>(text: &'a str, lang: &str) -> Option<&'a str> {
    let open = format!("```{lang}\n");
    let start = text.find(&open)? + open.len();
    let len = text[start..].find("```\n")?;
    Some(&text[start..start + len])
}

/// `flake` with the URL of its input `name` (`inputs.NAME.url = "...";`) replaced by `url`.
fn with_input_url(flake: &str, name: &str, url: &str) -> String {
    let key = format!("inputs.{name}.url = \"");
    assert_eq!(flake.matches(&key).count(), 1, "one {key}...\" in\n{flake}");
    let start = flake.find(&key).unwrap() + key.len();
    let end = start + flake[start..].find('"').unwrap();
    format!("{}{url}{}", &flake[..start], &flake[end..])
}

/// README's "Quickstart" section.
fn quickstart() -> String {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let start = readme
        .find("\n## Quickstart\n")
        .expect("README has a \"## Quickstart\" section");
    let section = &readme[start + 1..];
    let end = section[1..].find("\n## ").map_or(section.len(), |e| e + 2);
    section[..end].to_owned()
}

/// The quickstart as a user pastes it: its `flake.nix` (the section's first `nix` block), with
/// its two inputs pointed at a copy of this checkout and at the stand-in nixpkgs, evaluates to
/// an image (its derivation, not a build: the examples' builds above are the same function),
/// and the file the quickstart's commands copy is that image's.
#[test]
fn the_readme_quickstart_flake_evaluates_to_the_image_its_commands_copy() {
    let quickstart = quickstart();
    let flake = fenced(&quickstart, "nix").expect("a ```nix block in the quickstart");
    let tracked = tracked_files();
    let flake = with_input_url(flake, "nixpkgs", &format!("path:{}", stand_in()));
    let flake = with_input_url(
        &flake,
        "portable-service",
        &format!("path:{}", tracked.path().display()),
    );
    let user = tempfile::tempdir().unwrap();
    std::fs::write(user.path().join("flake.nix"), flake).unwrap();
    let image = format!(
        "path:{}#packages.x86_64-linux.default",
        user.path().display()
    );
    let eval = |attr: &str| {
        nix_eval(&[&format!("{image}.{attr}"), "--no-write-lock-file"])
            .unwrap_or_else(|e| panic!("nix eval of the quickstart's {attr}: {e}"))
    };
    let drv = eval("drvPath");
    assert!(drv.ends_with(".drv"), "{drv}");
    let file = eval("fileName");
    assert!(
        quickstart.contains(&format!("scp result/{file} ")),
        "the quickstart's commands copy {file}:\n{quickstart}"
    );
}

/// README is a user's guide of under 400 lines whose first `sh` block is still the two commands
/// that set up this repository and run the tests (CI and fresh-machine runs take them from there).
#[test]
fn readme_s_first_sh_block_is_the_test_command_and_it_stays_a_short_guide() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let commands: Vec<&str> = fenced(&readme, "sh")
        .expect("a ```sh block in README")
        .lines()
        .map(|line| line.split_whitespace().next().unwrap_or(""))
        .collect();
    assert_eq!(commands, ["tests/build-example.sh", "tests/run.sh"]);
    let lines = readme.lines().count();
    assert!(
        lines < 400,
        "README.md has {lines} lines: move reference into docs/"
    );
}

/// The stand-in offers today's names only (`squashfs-tools`), as a nixpkgs with
/// `allowAliases = false` does, and every test above builds through it; a nixpkgs of
/// nixos-25.11's names (`squashfsTools` alone) gives the same derivations.
#[test]
fn nixpkgs_of_either_squashfs_name_gives_the_same_derivations() {
    let expr = format!(
        r#"let
          today = import {stand_in} {{ }};
          # nixos-25.11: the old name only
          old = builtins.removeAttrs today [ "squashfs-tools" ] // {{ squashfsTools = today.squashfs-tools; }};
          # the overlay over it, its callPackage taking the arguments from there
          withOverlay = base: let final = base // import {repo}/nix/overlay.nix final base // {{
            buildPackages = final;
            callPackage = fn: args: let f = if builtins.isFunction fn then fn else import fn; in
              f (builtins.intersectAttrs (builtins.functionArgs f) final // args);
          }}; in final;
          of = base: let pkgs = withOverlay base; in {{
            tools = pkgs.portable-service-tools.drvPath;
            image = (pkgs.portableService {{ pname = "hello"; version = "1";
              units = [ (pkgs.writeText "hello.service" "[Service]\nExecStart=/bin/true\n") ]; }}).drvPath;
          }};
        in
        builtins.toJSON {{
          has = [ (today ? squashfsTools) (old ? squashfs-tools) ];
          same = of today == of old;
        }}"#,
        stand_in = stand_in(),
        repo = repo().display()
    );
    let json = nix_eval(&["--expr", &expr]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(json, r#"{"has":[false,false],"same":true}"#);
}

/// The name of a store path (`/nix/store/<hash>-<name>`, `.drv` dropped).
fn store_name(path: &str) -> &str {
    let base = path.rsplit('/').next().unwrap();
    base.split_once('-').unwrap().1.trim_end_matches(".drv")
}

/// The names of what a derivation takes as inputs: the derivations and the sources.
fn input_names(drv: &str) -> Vec<String> {
    let out = run_nix(nix("nix").args(["show-derivation", drv]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let d = &json[drv];
    let drvs = d["inputDrvs"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str);
    let srcs = d["inputSrcs"].as_array().unwrap().iter();
    let mut names: Vec<String> = drvs
        .chain(srcs.map(|s| s.as_str().unwrap()))
        .map(|p| store_name(p).to_owned())
        .collect();
    names.sort();
    names
}

/// An aarch64 image's derivation from an x86-64 package set (a cross set, as
/// `pkgsCross.aarch64-multiplatform`): it runs on x86-64 with the build platform's builder and
/// mksquashfs, whether mksquashfs is the default or given as the set's own `squashfs-tools`,
/// and holds the host platform's programs; its `.sysupdate` installs the host's agent. A
/// mksquashfs for the host given otherwise is refused at evaluation, naming it.
#[test]
fn a_cross_image_runs_the_build_platform_s_mksquashfs() {
    let pkgs = format!(
        r#"import {stand_in} {{ system = "x86_64-linux"; crossSystem = "aarch64-linux";
             overlays = [ (import {repo}/nix/overlay.nix) ]; }}"#,
        stand_in = stand_in(),
        repo = repo().display()
    );
    let image = |extra: &str| {
        format!(
            r#"let pkgs = {pkgs}; in pkgs.portableService ({{ pname = "hello"; version = "1";
                 units = [ (pkgs.writeText "hello.service" "[Service]
ExecStart=${{pkgs.hello}}/bin/hello
") ];
                 contents = [ pkgs.hello ];
               }} // {extra})"#
        )
    };
    let host = "aarch64-unknown-linux-gnu";
    for extra in [
        "{ }",
        "{ squashfs-tools = pkgs.squashfs-tools; }",
        "{ squashfsTools = pkgs.squashfs-tools; }",
        // a spliced package, as callPackage gives one: its build platform's half
        "{ squashfsTools = pkgs.squashfs-tools // { __spliced.buildHost = pkgs.buildPackages.squashfs-tools; }; }",
    ] {
        let img = image(extra);
        let eval = |attr: &str| {
            nix_eval(&["--expr", &format!("({img}).{attr}")])
                .unwrap_or_else(|e| panic!("{extra}: {attr}: {e}"))
        };
        assert_eq!(eval("system"), "x86_64-linux", "{extra}");
        assert_eq!(eval("drvAttrs.hostSystem"), "aarch64-linux", "{extra}");
        let inputs = input_names(&eval("drvPath"));
        // the builder and mksquashfs the derivation runs: the build platform's
        for runs in ["portable-service-builder-0.1.0", "squashfs-tools-host"] {
            assert!(inputs.iter().any(|i| i == runs), "{extra}: {runs} in {inputs:?}");
        }
        assert!(
            !inputs.iter().any(|i| i.starts_with("squashfs-tools-") && i.ends_with(host)),
            "{extra}: the host's mksquashfs in {inputs:?}"
        );
        // what the image holds: the host platform's
        assert!(
            inputs.iter().any(|i| i == &format!("hello-2.12.2-{host}")),
            "{extra}: {inputs:?}"
        );
    }
    let sysupdate = nix_eval(&[
        "--expr",
        &format!(
            r#"(({}).sysupdate {{ url = "https://updates.example.org/hello"; }}).drvPath"#,
            image("{ }")
        ),
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    let inputs = input_names(&sysupdate);
    assert!(
        inputs
            .iter()
            .any(|i| i.starts_with("portable-service-agent-") && i.ends_with(host)),
        "the host's agent in {inputs:?}"
    );

    let foreign = r#"{ squashfsTools = pkgs.squashfs-tools // { name = "other"; outPath = "${pkgs.hello}"; }; }"#;
    let err = nix_eval(&["--expr", &format!("({}).drvPath", image(foreign))])
        .expect_err("a mksquashfs for aarch64 is refused");
    assert!(
        err.contains("portableService: `squashfsTools` = ")
            && err.contains(
                "is a mksquashfs for aarch64-linux, but the image is built on x86_64-linux"
            ),
        "{err}"
    );
}

/// The crates' Rust floor (`rust-version`) against the nixpkgs that builds them: an older Rust
/// fails every package, and every image, at evaluation, naming the Rust it has and the one it
/// needs; the floor itself passes.
#[test]
fn a_nixpkgs_with_too_old_a_rust_fails_at_evaluation_naming_both() {
    let needs = std::fs::read_to_string(repo().join("Cargo.toml"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = \""))
        .map(|v| v.trim_end_matches('"').to_owned())
        .expect("rust-version in Cargo.toml");
    let pkgs = |rustc: &str| format!(r#"import {} {{ rustcVersion = "{rustc}"; }}"#, stand_in());
    for attr in [
        "portable-service-builder.drvPath",
        "portable-service-tools.drvPath",
        "portable-service-agent.drvPath",
        "hello.drvPath",
        "hello.check.drvPath",
    ] {
        let old = nix_eval(&["-f", "default.nix", attr, "--arg", "pkgs", &pkgs("1.86.0")])
            .expect_err(attr);
        assert!(
            old.contains(&format!("needs Rust {needs} or newer"))
                && old.contains("this nixpkgs builds with Rust 1.86.0"),
            "{attr}: {old}"
        );
        nix_eval(&[
            "-f",
            "default.nix",
            attr,
            "--arg",
            "pkgs",
            &pkgs(&format!("{needs}.0")),
        ])
        .unwrap_or_else(|e| panic!("{attr} with Rust {needs}.0: {e}"));
    }
}

/// `lib.mkPortableService` given `pkgs` evaluates in pure mode (a flake's), which has no
/// `builtins.currentSystem`; given neither `pkgs` nor `system`, it says what to give.
#[test]
fn lib_mk_portable_service_given_pkgs_evaluates_in_pure_mode() {
    let tracked = tracked_files();
    let user = tempfile::tempdir().unwrap();
    // a package set of nothing but plain derivations: pure, and never built here
    std::fs::write(
        user.path().join("flake.nix"),
        r#"{
  inputs.portable-service.url = "PORTABLE_SERVICE";
  outputs = { self, portable-service }:
    let
      system = "x86_64-linux";
      package = name: derivation { inherit name system; builder = "/bin/false"; };
      pkgs = {
        stdenv.buildPlatform.system = system;
        stdenv.hostPlatform.system = system;
        buildPackages = pkgs;
        squashfs-tools = package "squashfs-tools";
        portable-service-builder = package "portable-service-builder";
        portable-service-tools = package "portable-service-tools";
        portable-service-agent = package "portable-service-agent";
      };
      args = {
        pname = "demo";
        version = "1";
        units = [ (builtins.toFile "demo.service" "[Service]
ExecStart=/bin/true
") ];
      };
    in {
      withPkgs = portable-service.lib.mkPortableService { inherit pkgs; } args;
      withNothing = portable-service.lib.mkPortableService {
        inherit (pkgs) squashfs-tools portable-service-builder;
      } args;
    };
}
"#
        .replace(
            "PORTABLE_SERVICE",
            &format!("path:{}", tracked.path().display()),
        ),
    )
    .unwrap();
    let eval = |attr: &str| {
        let out = run_nix(
            nix("nix")
                .args(["eval", "--raw", "--no-write-lock-file"])
                .args([
                    "--override-input",
                    "portable-service/nixpkgs",
                    &format!("path:{}", stand_in()),
                ])
                .arg(format!("path:{}#{attr}", user.path().display())),
        );
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    };
    let drv = eval("withPkgs.drvPath").unwrap_or_else(|e| panic!("{e}"));
    assert!(drv.ends_with("-demo-img-1.drv"), "{drv}");
    assert_eq!(eval("withPkgs.pname").unwrap(), "demo-img");
    let err = eval("withNothing.drvPath").expect_err("no system to build on");
    assert!(
        err.contains("give `system` or `pkgs`: pure evaluation"),
        "{err}"
    );
}

/// Each package's `passthru.tests`, as nixpkgs' tooling builds them: the hello image the
/// builder makes, its check the tools run, and the hosts' side of its feed that installs the
/// agent; an image's `passthru.tests.check` is its `.check`.
#[test]
fn the_packages_and_images_have_passthru_tests() {
    let expr = format!(
        r#"let
          pkgs = import {stand_in} {{ overlays = [ (import {repo}/nix/overlay.nix) ]; }};
          hello = (import {repo}/nix/examples.nix {{ inherit (pkgs) portableService writeText hello cacert; }}).hello;
          names = p: builtins.attrNames p.passthru.tests;
        in
        builtins.toJSON {{
          builder = names pkgs.portable-service-builder;
          tools = names pkgs.portable-service-tools;
          agent = names pkgs.portable-service-agent;
          image = pkgs.portable-service-builder.passthru.tests.hello.drvPath == hello.drvPath;
          check = pkgs.portable-service-tools.passthru.tests.hello-check.drvPath == hello.check.drvPath;
          imageCheck = hello.passthru.tests.check.drvPath == hello.check.drvPath;
          sysupdate = builtins.isString pkgs.portable-service-agent.passthru.tests.hello-sysupdate.drvPath;
        }}"#,
        stand_in = stand_in(),
        repo = repo().display()
    );
    let json = nix_eval(&["--expr", &expr]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        json,
        r#"{"agent":["hello-sysupdate"],"builder":["hello","portable-service-tools"],"check":true,"image":true,"imageCheck":true,"sysupdate":true,"tools":["hello-check"]}"#
    );
}
