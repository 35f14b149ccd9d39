//! Throwaway keys and certificates made by openssl, for the tools' test files that sign
//! (each uses a part of this: hence `dead_code` allowed).
#![allow(dead_code)]

use camino::{Utf8Path, Utf8PathBuf};
use std::process::{Command, Output};

/// openssl's `-newkey` for an RSA key.
pub const RSA: &[&str] = &["-newkey", "rsa:2048"];
/// openssl's `-newkey` for a P-256 key.
pub const P256: &[&str] = &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"];

/// `openssl ARGS`, which must succeed.
pub fn openssl(args: &[&str]) -> Output {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl runs (tests/setup.sh installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A key `DIR/NAME.key` (`newkey`: [`RSA`] or [`P256`]) and its self-signed certificate
/// `DIR/NAME.crt` for `subject`.
pub fn key_and_cert(
    dir: &Utf8Path,
    name: &str,
    newkey: &[&str],
    subject: &str,
) -> (Utf8PathBuf, Utf8PathBuf) {
    let (key, cert) = (
        dir.join(format!("{name}.key")),
        dir.join(format!("{name}.crt")),
    );
    let mut args = vec!["req", "-x509", "-nodes", "-days", "30", "-subj", subject];
    args.extend(newkey);
    args.extend(["-keyout", key.as_str(), "-out", cert.as_str()]);
    openssl(&args);
    (key, cert)
}

/// The same, in a directory named by a standard path (which must be UTF-8).
pub fn key_and_cert_in(
    dir: &std::path::Path,
    name: &str,
    newkey: &[&str],
    subject: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = Utf8Path::from_path(dir).expect("a UTF-8 temporary directory");
    let (key, cert) = key_and_cert(dir, name, newkey, subject);
    (key.into_std_path_buf(), cert.into_std_path_buf())
}

/// `portable-service sign --key KEY --cert CERT IMAGE`.
pub fn sign(
    key: impl AsRef<std::ffi::OsStr>,
    cert: impl AsRef<std::ffi::OsStr>,
    image: impl AsRef<std::ffi::OsStr>,
) -> Output {
    Command::new(env!("CARGO_BIN_EXE_portable-service"))
        .arg("sign")
        .arg("--key")
        .arg(key)
        .arg("--cert")
        .arg(cert)
        .arg(image)
        .output()
        .unwrap()
}
