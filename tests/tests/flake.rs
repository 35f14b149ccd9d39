//! The user-facing entry points, evaluated offline against a stand-in nixpkgs
//! (tests/nix/stand-in-nixpkgs): the flake's packages through `overlays.default`, and
//! `default.nix` given `pkgs`. Each must give exactly the image the offline world builds.

use portable_service_tests::*;
use std::path::PathBuf;

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

#[test]
fn the_flake_builds_the_manual_examples_through_its_overlay() {
    let tracked = tracked_files();
    let flake = format!("path:{}", tracked.path().display());
    let stand_in = format!("path:{}", stand_in());
    for example in ["hello", "hello-with-ssl", "hello-verity"] {
        let out = must_build(&[
            &format!("{flake}#{example}"),
            "--no-write-lock-file",
            "--override-input",
            "nixpkgs",
            &stand_in,
        ]);
        let offline = build(&format!("t.examples.{example}"));
        assert_eq!(out, offline, "{example}: the same derivation either way");
        assert!(raw_file(&out).ends_with("hello_2.12.2.raw"));
    }
}

#[test]
fn default_nix_extends_the_given_pkgs() {
    let pkgs = format!("import {} {{ }}", stand_in());
    let out = must_build(&["-f", "default.nix", "hello", "--arg", "pkgs", &pkgs]);
    assert_eq!(out, build("t.examples.hello"));
}
