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

/// Builds with `nix build ARGS`, the repository and the stand-in nixpkgs known to it.
fn nix_build(args: &[&str]) -> PathBuf {
    let out = nix("nix")
        .env("PORTABLE_SERVICE_REPO", repo())
        .args(["build", "--no-link", "--json", "--impure"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "nix build {}:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    PathBuf::from(json[0]["outputs"]["out"].as_str().unwrap())
}

#[test]
fn the_flake_builds_the_manual_examples_through_its_overlay() {
    // the flake sees only files git tracks: a fresh clone has them all
    let flake = format!("git+file://{}", repo().display());
    let stand_in = format!("path:{}", stand_in());
    for example in ["hello", "hello-with-ssl"] {
        let out = nix_build(&[
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
    let out = nix_build(&["-f", "default.nix", "hello", "--arg", "pkgs", &pkgs]);
    assert_eq!(out, build("t.examples.hello"));
}
