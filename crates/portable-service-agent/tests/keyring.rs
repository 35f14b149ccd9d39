//! keyring::verify_with against signatures and keys that GnuPG made: what a publisher signs
//! with `gpg --detach-sign` and an operator exports with `gpg --export` must verify, and what
//! gpg would refuse (or only warn of: expired and revoked keys) must not.
//!
//! gpg must be installed: without it these tests fail, they don't skip.

use std::path::{Path, PathBuf};
use std::process::Command;

use portable_service_agent::keyring;

const DATA: &[u8] =
    b"4a5b6c7d8e9f00112233445566778899aabbccddeeff00112233445566778899 *app_2.raw\n";

/// A throwaway GnuPG home; its agent is stopped when dropped.
struct Gpg {
    home: tempfile::TempDir,
}

impl Gpg {
    fn new() -> Gpg {
        let home = tempfile::Builder::new().prefix("gpg").tempdir().unwrap();
        Gpg { home }
    }

    fn run(&self, args: &[&str]) -> Vec<u8> {
        let out = Command::new("gpg")
            .arg("--homedir")
            .arg(self.home.path())
            .args([
                "--batch",
                "--yes",
                "--no-tty",
                "--pinentry-mode",
                "loopback",
            ])
            .args(["--passphrase", ""])
            .args(args)
            .output()
            .expect("gpg is needed by these tests: apt-get install gnupg");
        assert!(
            out.status.success(),
            "gpg {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// A new key; its fingerprint.
    fn key(&self, uid: &str, algo: &str, usage: &str, expire: &str) -> String {
        self.run(&["--quick-gen-key", uid, algo, usage, expire]);
        self.fingerprint(uid)
    }

    fn fingerprint(&self, uid: &str) -> String {
        let out = String::from_utf8(self.run(&["--with-colons", "--list-keys", uid])).unwrap();
        let line = out.lines().find(|l| l.starts_with("fpr:")).unwrap();
        line.split(':').nth(9).unwrap().to_string()
    }

    fn sign(&self, key: &str, data: &[u8], armor: bool, extra: &[&str]) -> Vec<u8> {
        let input = self.home.path().join("data");
        std::fs::write(&input, data).unwrap();
        let mut args = vec!["--local-user", key, "--output", "-"];
        if armor {
            args.push("--armor");
        }
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--detach-sign", input.to_str().unwrap()]);
        self.run(&args)
    }

    /// A keyring file of `keys`, as `gpg --export` writes it.
    fn export(&self, keys: &[&str], armor: bool) -> PathBuf {
        let mut args = vec!["--export"];
        if armor {
            args.push("--armor");
        }
        args.extend_from_slice(keys);
        let bytes = self.run(&args);
        assert!(!bytes.is_empty(), "gpg exported nothing for {keys:?}");
        let path = self.home.path().join(format!(
            "ring-{}-{}.{}",
            keys.len(),
            rand_suffix(),
            if armor { "asc" } else { "gpg" }
        ));
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", self.home.path())
            .args(["--kill", "all"])
            .status();
    }
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn verify(ring: &Path, data: &[u8], sig: &[u8]) -> Result<String, String> {
    keyring::verify_with(ring, data, sig).map_err(|e| format!("{e:#}"))
}

#[test]
fn ed25519_and_rsa_signatures_binary_and_armored_verify_and_name_the_signer() {
    let gpg = Gpg::new();
    let ed = gpg.key("Test <t@example>", "ed25519", "sign", "never");
    let rsa = gpg.key("Rsa Test <rsa@example>", "rsa3072", "sign", "never");
    for armored_ring in [false, true] {
        let ring = gpg.export(&[&ed, &rsa], armored_ring);
        for (key, uid) in [(&ed, "Test <t@example>"), (&rsa, "Rsa Test <rsa@example>")] {
            for armored_sig in [false, true] {
                let sig = gpg.sign(key, DATA, armored_sig, &[]);
                let signer = verify(&ring, DATA, &sig).unwrap_or_else(|e| {
                    panic!("ring armored {armored_ring}, sig armored {armored_sig}: {e}")
                });
                assert_eq!(signer, format!("{uid} ({key})"));
            }
        }
    }
}

#[test]
fn a_signing_subkey_verifies_and_is_named() {
    let gpg = Gpg::new();
    let primary = gpg.key("Sub Test <sub@example>", "ed25519", "cert", "never");
    gpg.run(&["--quick-add-key", &primary, "ed25519", "sign", "never"]);
    let ring = gpg.export(&[&primary], false);
    let sig = gpg.sign(&primary, DATA, false, &[]);
    let signer = verify(&ring, DATA, &sig).unwrap();
    assert!(
        signer.starts_with(&format!("Sub Test <sub@example> ({primary}), subkey ")),
        "{signer}"
    );
}

#[test]
fn tampered_data_fails() {
    let gpg = Gpg::new();
    let key = gpg.key("Test <t@example>", "ed25519", "sign", "never");
    let ring = gpg.export(&[&key], false);
    let sig = gpg.sign(&key, DATA, false, &[]);
    let mut tampered = DATA.to_vec();
    tampered[0] ^= 1;
    let err = verify(&ring, &tampered, &sig).unwrap_err();
    assert!(err.contains("bad signature"), "{err}");
    assert!(err.contains("does not match"), "{err}");
}

#[test]
fn a_signature_by_a_key_not_in_the_keyring_fails() {
    let gpg = Gpg::new();
    let trusted = gpg.key("Trusted <t@example>", "ed25519", "sign", "never");
    let other = gpg.key("Other <o@example>", "ed25519", "sign", "never");
    let ring = gpg.export(&[&trusted], false);
    let sig = gpg.sign(&other, DATA, false, &[]);
    let err = verify(&ring, DATA, &sig).unwrap_err();
    assert!(err.contains("bad signature"), "{err}");
    assert!(err.contains("not in the keyring"), "{err}");
    assert!(err.contains(&other), "names the key that signed: {err}");
}

#[test]
fn an_expired_key_fails() {
    let gpg = Gpg::new();
    // made and used in 2020, expired a day later
    let faked = ["--faked-system-time", "20200101T000000!"];
    let mut args = faked.to_vec();
    args.extend_from_slice(&[
        "--quick-gen-key",
        "Old <old@example>",
        "ed25519",
        "sign",
        "1d",
    ]);
    gpg.run(&args);
    let key = gpg.fingerprint("Old <old@example>");
    let sig = gpg.sign(&key, DATA, false, &faked);
    let ring = gpg.export(&[&key], false);
    let err = verify(&ring, DATA, &sig).unwrap_err();
    assert!(err.contains("Old <old@example>"), "{err}");
    assert!(err.contains("the key expired"), "{err}");
}

#[test]
fn a_revoked_key_fails() {
    let gpg = Gpg::new();
    let key = gpg.key("Revoked <r@example>", "ed25519", "sign", "never");
    let sig = gpg.sign(&key, DATA, false, &[]);
    // gpg writes a revocation certificate at key generation, its armor line behind a ':'
    let rev = gpg.home.path().join(format!("openpgp-revocs.d/{key}.rev"));
    let text = std::fs::read_to_string(&rev).unwrap();
    let cert = text.replace(
        ":-----BEGIN PGP PUBLIC KEY BLOCK-----",
        "-----BEGIN PGP PUBLIC KEY BLOCK-----",
    );
    let cert_path = gpg.home.path().join("revoke.asc");
    std::fs::write(&cert_path, cert).unwrap();
    gpg.run(&["--import", cert_path.to_str().unwrap()]);
    let ring = gpg.export(&[&key], false);
    let err = verify(&ring, DATA, &sig).unwrap_err();
    assert!(err.contains("Revoked <r@example>"), "{err}");
    assert!(err.contains("the key is revoked"), "{err}");
}

#[test]
fn an_empty_or_garbage_keyring_is_a_clear_error() {
    let gpg = Gpg::new();
    let key = gpg.key("Test <t@example>", "ed25519", "sign", "never");
    let sig = gpg.sign(&key, DATA, false, &[]);
    let dir = tempfile::tempdir().unwrap();

    let empty = dir.path().join("empty.gpg");
    std::fs::write(&empty, b"").unwrap();
    let err = verify(&empty, DATA, &sig).unwrap_err();
    assert_eq!(err, format!("{}: the keyring is empty", empty.display()));

    let garbage = dir.path().join("garbage.gpg");
    std::fs::write(&garbage, b"this is no keyring\n").unwrap();
    let err = verify(&garbage, DATA, &sig).unwrap_err();
    assert!(
        err.starts_with(&format!("{}: not an OpenPGP keyring", garbage.display())),
        "{err}"
    );

    let binary_garbage = dir.path().join("binary.gpg");
    std::fs::write(&binary_garbage, [0xffu8; 300]).unwrap();
    let err = verify(&binary_garbage, DATA, &sig).unwrap_err();
    assert!(
        err.starts_with(&format!(
            "{}: not an OpenPGP keyring",
            binary_garbage.display()
        )),
        "{err}"
    );

    let missing = dir.path().join("missing.gpg");
    let err = verify(&missing, DATA, &sig).unwrap_err();
    assert!(
        err.starts_with(&format!("{}: cannot open the keyring", missing.display())),
        "{err}"
    );
}

#[test]
fn a_garbage_or_oversized_signature_is_a_clear_error() {
    let gpg = Gpg::new();
    let key = gpg.key("Test <t@example>", "ed25519", "sign", "never");
    let ring = gpg.export(&[&key], false);
    let err = verify(&ring, DATA, b"").unwrap_err();
    assert_eq!(err, "the signature is empty");
    let err = verify(&ring, DATA, b"<html>not found</html>").unwrap_err();
    assert!(err.starts_with("not an OpenPGP signature"), "{err}");
    let err = verify(&ring, DATA, &vec![0x88u8; 65 << 10]).unwrap_err();
    assert_eq!(err, "the signature is larger than 65536 bytes");
}

#[test]
fn without_any_keyring_the_error_names_all_four() {
    let err = format!("{:#}", keyring::verify(DATA, b"sig").unwrap_err());
    match keyring::KEYRINGS.iter().find(|k| Path::new(k).exists()) {
        None => {
            assert!(err.starts_with("no OpenPGP keyring"), "{err}");
            for path in keyring::KEYRINGS {
                assert!(err.contains(path), "{err}");
            }
        }
        // a host with systemd's keyring (systemd-container installs one): it was read
        Some(_) => assert!(!err.starts_with("no OpenPGP keyring"), "{err}"),
    }
}
