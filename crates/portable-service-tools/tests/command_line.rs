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

/// The completions and man pages a package installs (`generate`, run by nix/tools.nix) are
/// where shells and man look, and name every command and option.
#[test]
fn completions_and_man_pages_are_made_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().to_str().unwrap();
    let (code, _, said) = run(&["generate", prefix]);
    assert_eq!(code, Some(0), "{said}");
    let read = |file: &str| std::fs::read_to_string(dir.path().join("share").join(file)).unwrap();
    let bash = read("bash-completion/completions/portable-service");
    let zsh = read("zsh/site-functions/_portable-service");
    let fish = read("fish/vendor_completions.d/portable-service.fish");
    for text in [&bash, &zsh, &fish] {
        for word in [
            "check",
            "sign",
            "publish",
            "transfers",
            "valid-for",
            "signed-later",
        ] {
            assert!(text.contains(word), "{word} in {text}");
        }
        // the hidden command is no user's to complete
        assert!(!text.contains("generate"), "{text}");
    }
    let sign = read("man/man1/portable-service-sign.1");
    assert!(
        sign.contains("\\-\\-resign") && sign.contains("Exit status"),
        "{sign}"
    );
    assert!(read("man/man1/portable-service.1").contains("portable\\-service\\-check(1)"));
    assert!(!dir
        .path()
        .join("share/man/man1/portable-service-generate.1")
        .exists());
}

/// bash loads the completion file and completes the command with it. (The tools package's
/// check phase skips it by name: nixpkgs' sandbox has no interactive bash.)
#[test]
fn bash_loads_the_completions() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().to_str().unwrap();
    let (code, _, said) = run(&["generate", prefix]);
    assert_eq!(code, Some(0), "{said}");
    let out = std::process::Command::new("bash")
        .args([
            "-c",
            "source \"$1\" && complete -p portable-service",
            "bash",
        ])
        .arg(
            dir.path()
                .join("share/bash-completion/completions/portable-service"),
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}
