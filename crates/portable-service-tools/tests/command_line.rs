//! `portable-service`'s command line: `--help` lists its jobs, and a job without its arguments
//! is a usage error.

use std::process::Command;

fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_portable-service"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_lists_every_job() {
    let (code, help, _) = run(&["--help"]);
    assert_eq!(code, Some(0));
    assert!(help.contains("Usage: portable-service <COMMAND>"), "{help}");
    for job in ["check", "sign", "publish", "transfers"] {
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
fn a_job_without_its_arguments_is_a_usage_error() {
    let (code, _, said) = run(&["sign", "image.raw"]);
    assert_eq!(code, Some(64));
    assert!(said.contains("--key <KEY.pem>"), "{said}");
    let (code, _, said) = run(&[]);
    assert_eq!(code, Some(64));
    assert!(said.contains("Usage: portable-service <COMMAND>"), "{said}");
}

/// `--version` says the version, and the commit when the build was given it (nix/tools.nix
/// passes the flake's revision as PORTABLE_SERVICE_COMMIT).
#[test]
fn version_names_the_commit_it_was_built_from() {
    let (code, said, _) = run(&["--version"]);
    assert_eq!(code, Some(0));
    let expected = match option_env!("PORTABLE_SERVICE_COMMIT") {
        Some(commit) => format!(
            "portable-service {} (commit {commit})\n",
            env!("CARGO_PKG_VERSION")
        ),
        None => format!("portable-service {}\n", env!("CARGO_PKG_VERSION")),
    };
    assert_eq!(said, expected);
}
