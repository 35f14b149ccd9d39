//! The feed's OpenPGP signature, made by GnuPG: the program systemd-sysupdate verifies it with
//! (through systemd-pull: `gpg --verify` against the host's keyring), so what it accepts is
//! what gpg writes. The key is imported into a throwaway GnuPG home (mode 0700, removed
//! afterwards with the agent gpg started for it), never into the user's own keyring.
//!
//! Why gpg and not a Rust OpenPGP crate: the verifier is gpg, of whatever version a host has
//! (2.2 on Debian 12, 2.4 on 13), and signing with it leaves no doubt about packet versions or
//! key formats; it reads every key `gpg --export-secret-keys` writes (passphrases included);
//! and it adds no crates to this program (rPGP, `pgp` 0.21, would add 75 to the 130 it links,
//! by `cargo tree`). Publishing a 36 MiB image, signature included, took 0.14 s
//! (BENCHMARKS.md).

use anyhow::{bail, ensure, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use std::process::{Command, Output};

/// GnuPG's `program` (gpg, gpgconf): from the directory the package was built with, when it
/// names one (nix/tools.nix sets PORTABLE_SERVICE_GNUPG_BIN to its gnupg's bin), else from PATH.
fn gnupg(program: &str) -> Command {
    match option_env!("PORTABLE_SERVICE_GNUPG_BIN") {
        Some(dir) if !dir.is_empty() => Command::new(Utf8Path::new(dir).join(program)),
        _ => Command::new(program),
    }
}

/// A throwaway GnuPG home holding the one secret key of a key file: imported once, it signs
/// and exports the public part.
pub struct Signer {
    dir: tempfile::TempDir,
    key: Utf8PathBuf,
    passphrase_file: Option<Utf8PathBuf>,
    fingerprint: String,
}

impl Signer {
    fn gpg(&self) -> Command {
        let mut cmd = gnupg("gpg");
        cmd.arg("--homedir")
            .arg(self.dir.path())
            .args(["--batch", "--no-tty", "--quiet", "--no-auto-key-locate"])
            .env("LC_ALL", "C");
        cmd
    }

    /// Imports the one secret key in `key` (armored or binary, as gpg exports it); a key with
    /// a passphrase needs `passphrase_file`.
    pub fn import(key: &Utf8Path, passphrase_file: Option<&Utf8Path>) -> Result<Signer> {
        ensure!(key.is_file(), "{key}: no such key file");
        if let Some(p) = passphrase_file {
            ensure!(p.is_file(), "{p}: no such passphrase file");
        }
        let dir = tempfile::Builder::new()
            .prefix("portable-service-gpg.")
            .tempdir()
            .context("cannot make a temporary GnuPG home")?;
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )?;
        let mut home = Signer {
            dir,
            key: key.to_owned(),
            passphrase_file: passphrase_file.map(Utf8Path::to_owned),
            fingerprint: String::new(),
        };
        run(
            home.gpg().arg("--import").arg(key),
            &format!("importing {key}"),
        )?;
        let listed = run(
            home.gpg()
                .args(["--with-colons", "--fingerprint", "--list-secret-keys"]),
            "listing the imported key",
        )?;
        let text = String::from_utf8_lossy(&listed.stdout);
        // `sec` opens a primary secret key; its `fpr` follows
        let mut primaries = Vec::new();
        let mut lines = text.lines().peekable();
        while let Some(line) = lines.next() {
            if line.starts_with("sec:") {
                if let Some(fpr) = lines.peek().filter(|l| l.starts_with("fpr:")) {
                    primaries.push(fpr.split(':').nth(9).unwrap_or("").to_owned());
                }
            }
        }
        match primaries.as_slice() {
            [one] => home.fingerprint = one.clone(),
            [] => bail!(
                "{key} holds no OpenPGP secret key (expected what `gpg --armor \
                 --export-secret-keys KEYID` writes)"
            ),
            _ => bail!(
                "{key} holds {} secret keys; give the one that signs the feed",
                primaries.len()
            ),
        }
        Ok(home)
    }
}

impl Drop for Signer {
    fn drop(&mut self) {
        // the agent gpg started for this home would outlive it
        let _ = gnupg("gpgconf")
            .arg("--homedir")
            .arg(self.dir.path())
            .args(["--kill", "all"])
            .output();
    }
}

fn run(cmd: &mut Command, what: &str) -> Result<Output> {
    check(cmd.output(), what)
}

/// [`run`], with `input` on gpg's standard input.
fn run_with_input(cmd: &mut Command, input: &[u8], what: &str) -> Result<Output> {
    check(output_with_input(cmd, input), what)
}

/// Runs `cmd` with `input` on its standard input, collecting what it writes (fed from another
/// thread, so that gpg writing first can't stall both).
fn output_with_input(cmd: &mut Command, input: &[u8]) -> std::io::Result<Output> {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().expect("a piped stdin");
    std::thread::scope(|s| {
        // gpg failing early closes its end: what it says then matters, not the broken pipe
        let feeder = s.spawn(move || stdin.write_all(input));
        let out = child.wait_with_output();
        let _ = feeder.join();
        out
    })
}

fn check(out: std::io::Result<Output>, what: &str) -> Result<Output> {
    let out = out.map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            anyhow::anyhow!(
                "{what}: gpg (GnuPG) is not installed; publish signs the feed with it, as the \
                 hosts verify it with it"
            )
        } else {
            anyhow::anyhow!("{what}: cannot run gpg: {e}")
        }
    })?;
    ensure!(
        out.status.success(),
        "{what}: gpg failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(out)
}

impl Signer {
    /// The key's fingerprint.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// A detached binary signature of `data`, the bytes the caller holds: gpg reads them on
    /// its standard input and writes the signature into a private temporary directory (mode
    /// 0700, removed afterwards), never to or from a path another user could swap a file at.
    /// The signature is verified over the same bytes, as a host would, before it is returned.
    pub fn sign(&self, data: &[u8]) -> Result<Vec<u8>> {
        let private = tempfile::Builder::new()
            .prefix("portable-service-sign.")
            .tempdir()
            .context("cannot make a temporary directory for the signature")?;
        std::fs::set_permissions(
            private.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )?;
        let out = private.path().join("signature");
        let mut sign = self.gpg();
        sign.args(["--pinentry-mode", "loopback", "--yes", "--local-user"])
            .arg(&self.fingerprint);
        match &self.passphrase_file {
            Some(p) => sign.arg("--passphrase-file").arg(p),
            // a key with a passphrase then fails at once instead of asking
            None => sign.args(["--passphrase", ""]),
        };
        sign.args(["--digest-algo", "SHA256", "--detach-sign", "--output"])
            .arg(&out)
            .arg("-");
        run_with_input(
            &mut sign,
            data,
            &format!(
                "signing the list with {} (a key protected by a passphrase needs \
                 --passphrase-file)",
                self.key
            ),
        )?;
        let signature = std::fs::read(&out).context("cannot read the signature gpg wrote")?;
        self.verify_at(data, &out, "the new signature")?;
        Ok(signature)
    }

    /// Whether `signature` is a good detached signature of `data` (bytes the caller holds, fed
    /// to gpg on its standard input) by this key (the home holds no other): `Err` says why
    /// not.
    pub fn verify(&self, data: &[u8], signature: &Utf8Path) -> Result<()> {
        self.verify_at(data, signature.as_std_path(), signature.as_str())
    }

    fn verify_at(&self, data: &[u8], signature: &std::path::Path, named: &str) -> Result<()> {
        let mut verify = self.gpg();
        verify
            .args(["--status-fd", "1", "--verify"])
            .arg(signature)
            .arg("-");
        let out = output_with_input(&mut verify, data).context("cannot run gpg")?;
        let status = String::from_utf8_lossy(&out.stdout);
        let valid = status.lines().any(|l| {
            l.starts_with("[GNUPG:] VALIDSIG ") && l.split(' ').any(|f| f == self.fingerprint)
        });
        ensure!(
            out.status.success() && valid,
            "{named} is not a good signature of the list by {}: {}",
            self.fingerprint,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(())
    }

    /// Writes the public part of the key to `out` in OpenPGP's binary form: the keyring file a
    /// host's systemd-sysupdate reads (`/etc/systemd/import-pubring.pgp`, named
    /// `import-pubring.gpg` before systemd 258).
    pub fn export_public(&self, out: &Utf8Path) -> Result<()> {
        let exported = run(
            self.gpg().arg("--export").arg(&self.fingerprint),
            &format!("exporting the public key of {}", self.key),
        )?;
        std::fs::write(out, &exported.stdout).with_context(|| format!("cannot write {out}"))
    }
}
