//! The program's own command line: `--help` lists its three jobs (the Nix builder, `check`,
//! `sign`), and a run by hand without an attrs file says what it wanted instead of a usage error.

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
fn help_lists_the_three_jobs() {
    let (code, help, _) = run(&["--help"]);
    assert_eq!(code, Some(0));
    assert!(
        help.contains("Usage: portable-service-builder [ATTRS.json]"),
        "{help}"
    );
    assert!(help.contains("NIX_ATTRS_JSON_FILE"), "{help}");
    for job in ["check", "sign"] {
        assert!(
            help.lines()
                .any(|l| l.trim_start().starts_with(&format!("{job} "))),
            "{job} in {help}"
        );
    }
    let (code, sign_help, _) = run(&["sign", "--help"]);
    assert_eq!(code, Some(0));
    assert!(
        sign_help.contains("--key <KEY.pem>") && sign_help.contains("--cert <CERT.pem>"),
        "{sign_help}"
    );
}

#[test]
fn sign_without_its_arguments_is_a_usage_error_not_a_build() {
    let (code, _, said) = run(&["sign", "image.raw"]);
    assert_eq!(code, Some(2));
    assert!(said.contains("--key <KEY.pem>"), "{said}");
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
