//! Harness for the tests that go through Nix: evaluate and build expressions over
//! `tests/nix/offline.nix` with the machine's Nix, offline and sandboxed, and read images back.
//!
//! It expects what `tests/setup.sh` prepares (Nix, squashfs-tools, the staged stand-ins) and
//! says so when something is missing.

pub mod corpus;
pub mod disks;
pub mod guest;
pub mod old_systemd;
pub mod vm;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// A `nix` (or `nix-*`) command with the tests' settings.
pub fn nix(program: &str) -> Command {
    let conf = std::fs::read_to_string(repo().join("tests/nix/nix.conf")).unwrap();
    assert!(
        repo().join("target/offline/builder/bin").is_dir(),
        "target/offline is missing: run tests/setup.sh (README: the test command) first"
    );
    let mut cmd = Command::new(program);
    cmd.env("NIX_CONFIG", conf).current_dir(repo());
    cmd
}

/// `expr` with `t` bound to the offline test world, `demo` to the demo image function and `ext`
/// to the demo's extensions (tests/nix/extensions.nix).
pub fn with_world(expr: &str) -> String {
    let nix_dir = repo().join("tests/nix");
    format!(
        "let t = import {0}/offline.nix {{ }}; demo = import {0}/demo.nix t; \
         ext = import {0}/extensions.nix t demo; in {expr}",
        nix_dir.display()
    )
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (run tests/setup.sh)"))
}

/// Runs a Nix command, one at a time across test threads and test binaries: without a daemon,
/// Nix 2.8 processes sharing the store's database fail with "SQLite database ... is busy".
pub fn run_nix(cmd: &mut Command) -> Output {
    let lock = std::fs::File::create(repo().join("target/nix.lock")).unwrap();
    lock.lock().unwrap();
    run(cmd)
}

/// Builds `expr` (over the test world) and returns its output path.
pub fn build(expr: &str) -> PathBuf {
    let out = try_build(expr, &[]);
    match out {
        Ok(path) => path,
        Err(log) => panic!("nix build failed for {expr}:\n{log}"),
    }
}

/// Builds `expr` with extra `nix build` arguments; the output path, or the build log.
pub fn try_build(expr: &str, extra: &[&str]) -> Result<PathBuf, String> {
    let world = with_world(expr);
    let mut args = vec!["--expr", world.as_str()];
    args.extend(extra);
    nix_build(&args)
}

/// `nix build --no-link --json --impure ARGS`: the first output path, or the build log.
/// `PORTABLE_SERVICE_REPO` tells the stand-in nixpkgs where the repository is.
pub fn nix_build(args: &[&str]) -> Result<PathBuf, String> {
    let out = run_nix(
        nix("nix")
            .env("PORTABLE_SERVICE_REPO", repo())
            .args(["build", "-L", "--no-link", "--json", "--impure"])
            .args(args),
    );
    if !out.status.success() {
        return Err(text(&out.stderr));
    }
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    Ok(PathBuf::from(
        json[0]["outputs"]["out"].as_str().expect("an out path"),
    ))
}

/// `nix eval --raw --impure ARGS`: the value, or the error.
pub fn nix_eval(args: &[&str]) -> Result<String, String> {
    let out = run_nix(
        nix("nix")
            .env("PORTABLE_SERVICE_REPO", repo())
            .args(["eval", "--raw", "--impure"])
            .args(args),
    );
    if out.status.success() {
        Ok(text(&out.stdout))
    } else {
        Err(text(&out.stderr))
    }
}

/// Evaluates `expr` (over the test world) to a string.
pub fn eval(expr: &str) -> Result<String, String> {
    let out = run_nix(
        nix("nix")
            .args(["eval", "--raw", "--impure", "--expr"])
            .arg(with_world(expr)),
    );
    if out.status.success() {
        Ok(text(&out.stdout))
    } else {
        Err(text(&out.stderr))
    }
}

/// The error of evaluating the derivation of `expr`, which must fail.
pub fn eval_error(expr: &str) -> String {
    match eval(&format!("({expr}).drvPath")) {
        Ok(drv) => panic!("{expr} evaluated to {drv}, but should have failed"),
        Err(e) => e,
    }
}

/// The one `.raw` file in an image output (beside it, with `verity = true`, its hash tree and
/// root hash).
pub fn raw_file(out: &Path) -> PathBuf {
    let files: Vec<PathBuf> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "raw"))
        .collect();
    assert_eq!(files.len(), 1, "one image in {}: {files:?}", out.display());
    files[0].clone()
}

/// The names of the files in a directory, sorted.
pub fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// `unsquashfs -lln` of an image: one line per entry, paths relative to the root (`/etc/...`).
pub fn listing(image: &Path) -> Vec<String> {
    let out = run(Command::new("unsquashfs").arg("-lln").arg(image));
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once("squashfs-root"))
        .map(|(meta, path)| format!("{} {}", meta.split_whitespace().next().unwrap(), path))
        .collect()
}

/// One file of an image.
pub fn cat(image: &Path, path: &str) -> String {
    let out = run(Command::new("unsquashfs")
        .arg("-cat")
        .arg(image)
        .arg(path.trim_start_matches('/')));
    assert!(out.status.success(), "{path}: {}", text(&out.stderr));
    text(&out.stdout)
}

/// `unsquashfs -s`: the superblock (compressor, block size, ...).
pub fn superblock(image: &Path) -> String {
    text(&run(Command::new("unsquashfs").arg("-s").arg(image)).stdout)
}

/// A squashfs image `dir/name` of text files (`(path, content)`), made by mksquashfs as another
/// tool would make one: for images our function would not make.
pub fn squashfs(dir: &Path, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let root = dir.join("root");
    for (path, content) in files {
        let file = root.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, content).unwrap();
    }
    let out = dir.join(name);
    squashfs_of(&root, &out);
    out
}

/// mksquashfs over the tree `root`, writing `out`.
pub fn squashfs_of(root: &Path, out: &Path) {
    let made = run(Command::new("mksquashfs").arg(root).arg(out).args([
        "-quiet",
        "-no-progress",
        "-noappend",
        "-all-root",
        "-comp",
        "gzip",
    ]));
    assert!(made.status.success(), "mksquashfs: {}", text(&made.stderr));
}

/// The dm-verity files systemd looks for beside an image (see
/// `portable_service_rules::verity::sidecars`).
pub fn sidecars(raw: &Path) -> [PathBuf; 3] {
    let raw = camino::Utf8Path::from_path(raw).expect("a UTF-8 path");
    portable_service_rules::verity::sidecars(raw).map(PathBuf::from)
}

/// Copies an image to `to` with whichever of its dm-verity files exist, renamed after `to`;
/// the files written, the image first.
pub fn copy_with_sidecars(raw: &Path, to: &Path) -> Vec<PathBuf> {
    std::iter::once((raw.to_owned(), to.to_owned()))
        .chain(sidecars(raw).into_iter().zip(sidecars(to)))
        .filter(|(from, _)| from.exists())
        .map(|(from, to)| {
            std::fs::copy(&from, &to).unwrap();
            to
        })
        .collect()
}

/// The static `portable-service` program tests/setup.sh makes (the portable-service-tools
/// package): what users run as `portable-service check` and `sign`.
pub fn tools() -> PathBuf {
    repo().join("target/offline/tools/bin/portable-service")
}

/// A throwaway signing key and its self-signed certificate, made by openssl in a temporary
/// directory (never the store, never the repository) and gone with it.
pub struct SigningKey {
    dir: tempfile::TempDir,
    pub subject: String,
}

impl SigningKey {
    /// A new RSA key whose certificate has the subject `CN=<common_name>`.
    pub fn new(common_name: &str) -> SigningKey {
        let dir = tempfile::tempdir().unwrap();
        let out = run(Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
            ])
            .arg("-subj")
            .arg(format!("/CN={common_name}"))
            .arg("-keyout")
            .arg(dir.path().join("key.pem"))
            .arg("-out")
            .arg(dir.path().join("cert.pem")));
        assert!(out.status.success(), "openssl req: {}", text(&out.stderr));
        SigningKey {
            dir,
            subject: format!("CN={common_name}"),
        }
    }

    pub fn key(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }

    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    /// Copies an image built with `verity = true` out of the store with its hash tree and root
    /// hash, and signs it there with `portable-service sign`, as a user would; the
    /// copy's path (in `into`).
    pub fn sign_copy(&self, raw: &Path, into: &Path) -> PathBuf {
        let copy = into.join(raw.file_name().unwrap());
        copy_with_sidecars(raw, &copy);
        let out = run(Command::new(tools())
            .arg("sign")
            .arg("--key")
            .arg(self.key())
            .arg("--cert")
            .arg(self.cert())
            .arg(&copy));
        assert!(out.status.success(), "sign: {}", text(&out.stderr));
        copy
    }
}

/// A throwaway OpenPGP key that signs a feed, made by gpg in a temporary GnuPG home (never the
/// store, never the repository, never the user's keyring) and gone with it: its secret part
/// armored, as `portable-service publish --key` takes it.
pub struct FeedKey {
    dir: tempfile::TempDir,
}

impl FeedKey {
    /// A new ed25519 signing key of the user id `NAME <NAME@example.org>`.
    pub fn new(name: &str) -> FeedKey {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("gnupg");
        std::fs::create_dir(&home).unwrap();
        std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        let gpg = |args: &[&str]| {
            let out = run(Command::new("gpg")
                .arg("--homedir")
                .arg(&home)
                .args(["--batch", "--quiet", "--passphrase", ""])
                .args(args));
            assert!(out.status.success(), "gpg {args:?}: {}", text(&out.stderr));
            out.stdout
        };
        // Made a day ago: gpg refuses a key "created in the future", and a TCG guest's clock
        // had fallen 19 s behind the host's when it checked a feed signed by a key made that
        // second (CI, 2026-12-04). A signature from the future is no such conflict.
        let a_day_ago = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            - 86_400;
        gpg(&[
            "--faked-system-time",
            &a_day_ago.to_string(),
            "--quick-gen-key",
            &format!("{name} <{name}@example.org>"),
            "ed25519",
            "sign",
            "never",
        ]);
        let secret = gpg(&["--armor", "--export-secret-keys"]);
        // the agent gpg started for this home
        let _ = Command::new("gpgconf")
            .arg("--homedir")
            .arg(&home)
            .args(["--kill", "all"])
            .output();
        std::fs::write(dir.path().join("key.asc"), secret).unwrap();
        std::fs::remove_dir_all(&home).unwrap();
        FeedKey { dir }
    }

    /// The armored secret key.
    pub fn key(&self) -> PathBuf {
        self.dir.path().join("key.asc")
    }
}

/// `portable-service publish --feed FEED --key KEY [ARGS] IMAGES`: its output, whatever it was.
pub fn publish(feed: &Path, key: &FeedKey, args: &[&str], images: &[&Path]) -> Output {
    run(Command::new(tools())
        .arg("publish")
        .arg("--feed")
        .arg(feed)
        .arg("--key")
        .arg(key.key())
        .args(args)
        .args(images))
}
