//! The builder's own command line: no arguments (Nix's call) or one attrs file; `--help` says
//! so, `check` and `sign` point to the tools, anything else is a usage error.

use std::process::Command;

fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_portable-service-builder"))
        .args(args)
        .env_remove("NIX_ATTRS_JSON_FILE")
        .env_remove("NIX_BUILD_TOP")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_says_how_nix_calls_it_and_where_the_tools_are() {
    let (code, help, _) = run(&["--help"]);
    assert_eq!(code, Some(0));
    assert!(
        help.contains("Usage: portable-service-builder [ATTRS.json]"),
        "{help}"
    );
    assert!(help.contains("NIX_ATTRS_JSON_FILE"), "{help}");
    assert!(help.contains("portable-service check"), "{help}");
    let (code, version, _) = run(&["--version"]);
    assert_eq!(code, Some(0));
    assert!(
        version.starts_with("portable-service-builder 0."),
        "{version}"
    );
}

#[test]
fn check_and_sign_point_to_the_tools() {
    for job in ["check", "sign"] {
        let (code, _, said) = run(&[job, "image.raw"]);
        assert_eq!(code, Some(2), "{job}");
        assert!(
            said.contains(&format!("portable-service {job}"))
                && said.contains("portable-service-tools"),
            "{said}"
        );
    }
}

#[test]
fn other_arguments_are_usage_errors_not_builds() {
    for args in [&["--frobnicate"][..], &["a.json", "b.json"]] {
        let (code, _, said) = run(args);
        assert_eq!(code, Some(2), "{args:?}");
        assert!(said.contains("Usage: portable-service-builder"), "{said}");
    }
    let (code, _, said) = run(&["missing.json"]);
    assert_eq!(code, Some(1));
    assert!(said.contains("missing.json is not a file"), "{said}");
}

#[test]
fn no_arguments_outside_nix_says_which_file_it_wanted() {
    let (code, _, said) = run(&[]);
    assert_eq!(code, Some(1));
    assert!(
        said.contains("cannot find the structured attrs file")
            && said.contains("__structuredAttrs"),
        "{said}"
    );
}
