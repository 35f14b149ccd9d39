//! `portable-service sign` against openssl: the signature is what `openssl smime -sign
//! -nocerts -noattr -binary -outform der` makes (byte for byte with an RSA key), openssl
//! verifies it with the certificate, and `signing::verify` names the signer or says why not.
//! Bad keys, certificates, missing root hashes and a root hash that is not the image's are errors
//! that name the file and leave no `.p7s`. Keys are throwaway ones made by openssl in temporary
//! directories.

mod common;

use camino::{Utf8Path, Utf8PathBuf};
use common::{key_and_cert, openssl, P256, RSA};
use portable_service_rules::verity;
use portable_service_tools::signing::{self, Cert};
use std::process::Command;

struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Dir {
        Dir(tempfile::tempdir().unwrap())
    }

    fn root(&self) -> Utf8PathBuf {
        Utf8Path::from_path(self.0.path()).unwrap().to_owned()
    }

    fn path(&self, name: &str) -> Utf8PathBuf {
        self.root().join(name)
    }

    /// An image (two blocks of bytes standing in for a squashfs) with its hash tree and root
    /// hash beside it; the root hash.
    fn image(&self) -> (Utf8PathBuf, String) {
        self.image_named("svc_1", b'x')
    }

    fn image_named(&self, stem: &str, byte: u8) -> (Utf8PathBuf, String) {
        let raw = self.path(&format!("{stem}.raw"));
        std::fs::write(&raw, vec![byte; 2 * verity::BLOCK]).unwrap();
        let tree = verity::format(&raw, &self.path(&format!("{stem}.verity"))).unwrap();
        std::fs::write(self.path(&format!("{stem}.roothash")), tree.root_hash_hex()).unwrap();
        (raw, tree.root_hash_hex())
    }

    fn p7s(&self) -> Utf8PathBuf {
        self.path("svc_1.roothash.p7s")
    }
}

fn rsa(dir: &Dir, name: &str) -> (Utf8PathBuf, Utf8PathBuf) {
    key_and_cert(&dir.root(), name, RSA, &format!("/CN={name}/O=Fleet"))
}

fn p256(dir: &Dir, name: &str) -> (Utf8PathBuf, Utf8PathBuf) {
    key_and_cert(&dir.root(), name, P256, &format!("/CN={name}"))
}

/// `openssl smime -sign` of the root hash beside the image into `out`: as systemd-repart and
/// the kernel's tools do (`-noattr`), or with openssl's default signed attributes.
fn openssl_sign(dir: &Dir, key: &Utf8Path, cert: &Utf8Path, out: &Utf8Path, attributes: bool) {
    let root_file = dir.path("svc_1.roothash");
    let mut args = vec!["smime", "-sign", "-nocerts", "-binary", "-outform", "der"];
    if !attributes {
        args.push("-noattr");
    }
    args.extend(["-in", root_file.as_str(), "-inkey", key.as_str()]);
    args.extend(["-signer", cert.as_str(), "-out", out.as_str()]);
    openssl(&args);
}

/// What systemd does in userspace: the signature over the root hash file's hex, the signer's
/// certificate given from outside (the .p7s carries none) and trusted.
fn openssl_verifies(dir: &Dir, cert: &Utf8Path) -> bool {
    Command::new("openssl")
        .args(["smime", "-verify", "-binary", "-inform", "der", "-nointern"])
        .args(["-in", dir.p7s().as_str(), "-content"])
        .arg(dir.path("svc_1.roothash"))
        .args(["-certfile", cert.as_str(), "-CAfile", cert.as_str()])
        .args(["-out", "/dev/null"])
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
fn an_rsa_signature_is_openssls_byte_for_byte() {
    let dir = Dir::new();
    let (image, _) = dir.image();
    let (key, cert) = rsa(&dir, "fleet");
    let out = common::sign(&key, &cert, &image);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("wrote {}: signed by O=Fleet,CN=fleet", dir.p7s())
    );
    let ours = std::fs::read(dir.p7s()).unwrap();
    let theirs = dir.path("openssl.p7s");
    openssl_sign(&dir, &key, &cert, &theirs, false);
    assert_eq!(ours, std::fs::read(&theirs).unwrap());
    assert!(openssl_verifies(&dir, &cert));
}

#[test]
fn an_ec_signature_verifies_and_is_the_same_every_time() {
    let dir = Dir::new();
    let (image, _) = dir.image();
    let (key, cert) = p256(&dir, "ec");
    let signed = || {
        let out = common::sign(&key, &cert, &image);
        assert!(out.status.success(), "{out:?}");
        std::fs::read(dir.p7s()).unwrap()
    };
    assert_eq!(
        signed(),
        signed(),
        "RFC 6979: no randomness in the signature"
    );
    assert!(openssl_verifies(&dir, &cert));
}

#[test]
fn the_root_hash_is_signed_as_systemd_hands_it_to_the_kernel() {
    // an upper-case root hash with a newline: systemd parses it and signs/verifies lowercase hex
    let dir = Dir::new();
    let (image, root_hash) = dir.image();
    std::fs::write(
        dir.path("svc_1.roothash"),
        format!("{}\n", root_hash.to_uppercase()),
    )
    .unwrap();
    let (key, cert) = rsa(&dir, "fleet");
    assert!(common::sign(&key, &cert, &image).status.success());
    std::fs::write(dir.path("svc_1.roothash"), &root_hash).unwrap();
    assert!(openssl_verifies(&dir, &cert));
}

#[test]
fn verify_names_the_signer_or_says_why_not() {
    let dir = Dir::new();
    let (image, root_hash) = dir.image();
    let (key, cert) = rsa(&dir, "fleet");
    let (_, other) = p256(&dir, "other");
    let certs = |paths: &[&Utf8PathBuf]| -> Vec<Cert> {
        paths.iter().map(|p| Cert::read(p).unwrap()).collect()
    };
    assert!(common::sign(&key, &cert, &image).status.success());

    let given = certs(&[&other, &cert]);
    let by = signing::verify(&image, &dir.p7s(), &given).unwrap();
    assert_eq!((by.subject(), &by.path), ("O=Fleet,CN=fleet".into(), &cert));

    let e = signing::verify(&image, &dir.p7s(), &certs(&[&other])).unwrap_err();
    let e = format!("{e:#}");
    assert!(
        e.contains("issuer O=Fleet,CN=fleet") && e.contains("not one given"),
        "{e}"
    );

    // another root hash: the image the signature was made for is not this one
    let (_, other_root) = dir.image_named("other_1", b'y');
    std::fs::write(dir.path("svc_1.roothash"), other_root).unwrap();
    let e = signing::verify(&image, &dir.p7s(), &given).unwrap_err();
    assert!(format!("{e:#}").contains("does not verify"), "{e:#}");

    // openssl's default, with signed attributes, is checked too
    std::fs::write(dir.path("svc_1.roothash"), &root_hash).unwrap();
    openssl_sign(&dir, &key, &cert, &dir.p7s(), true);
    assert_eq!(
        signing::verify(&image, &dir.p7s(), &given).unwrap().path,
        cert
    );
}

#[test]
fn bad_keys_certificates_and_images_name_the_file_and_write_nothing() {
    let dir = Dir::new();
    let (image, _) = dir.image();
    let (key, cert) = rsa(&dir, "fleet");
    let (ec_key, _) = p256(&dir, "ec");
    let garbage = dir.path("garbage.pem");
    std::fs::write(&garbage, "not a key\n").unwrap();
    let truncated = dir.path("truncated.pem");
    std::fs::write(
        &truncated,
        "-----BEGIN PRIVATE KEY-----\nMIIBVQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let encrypted = dir.path("encrypted.pem");
    openssl(&[
        "pkey",
        "-in",
        key.as_str(),
        "-aes256",
        "-passout",
        "pass:x",
        "-out",
        encrypted.as_str(),
    ]);
    let ed25519 = dir.path("ed25519.pem");
    openssl(&["genpkey", "-algorithm", "ed25519", "-out", ed25519.as_str()]);
    let no_root = dir.path("other_1.raw");
    std::fs::write(&no_root, "").unwrap();
    let missing = dir.path("missing.pem");
    // the root hash of another image beside this one
    let (foreign, _) = dir.image_named("foreign_1", b'f');
    let (_, third_root) = dir.image_named("third_1", b't');
    std::fs::write(dir.path("foreign_1.roothash"), third_root).unwrap();
    // a root hash without its tree
    let (treeless, _) = dir.image_named("treeless_1", b'u');
    std::fs::remove_file(dir.path("treeless_1.verity")).unwrap();

    let cases: [(&Utf8Path, &Utf8Path, &Utf8Path, String, i32); 11] = [
        (
            &ec_key,
            &cert,
            &image,
            format!("the key {ec_key} does not match the certificate {cert}"),
            1,
        ),
        (
            &cert,
            &cert,
            &image,
            format!("{cert} holds a PEM CERTIFICATE, not a private key"),
            2,
        ),
        (
            &garbage,
            &cert,
            &image,
            format!("{garbage} is not a PEM private key"),
            2,
        ),
        (
            &truncated,
            &cert,
            &image,
            format!("{truncated}: its PRIVATE KEY block is damaged or holds no such key"),
            2,
        ),
        (
            &encrypted,
            &cert,
            &image,
            format!("{encrypted} is encrypted"),
            2,
        ),
        (
            &ed25519,
            &cert,
            &image,
            format!("{ed25519}: a key of algorithm id-Ed25519"),
            2,
        ),
        (&missing, &cert, &image, format!("cannot read {missing}"), 2),
        (
            &key,
            &garbage,
            &image,
            format!("{garbage} is not an X.509 certificate"),
            2,
        ),
        (
            &key,
            &cert,
            &no_root,
            format!(
                "{no_root} has no root hash beside it: {} is missing",
                dir.path("other_1.roothash")
            ),
            2,
        ),
        (
            &key,
            &cert,
            &foreign,
            format!(
                "refusing to sign {}: it is not the root hash of {foreign}",
                dir.path("foreign_1.roothash")
            ),
            1,
        ),
        (
            &key,
            &cert,
            &treeless,
            format!(
                "{treeless} has no hash tree beside it: {} is missing",
                dir.path("treeless_1.verity")
            ),
            2,
        ),
    ];
    // 1: refused for what the files say; 2: a file that can't be read as what it must be
    for (key, cert, image, expected, status) in cases {
        let out = common::sign(key, cert, image);
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(status), "{said}");
        assert!(said.contains(&expected), "{expected:?} in {said}");
        let p7s = portable_service_rules::verity::sidecars(image)[2].clone();
        assert!(!p7s.exists(), "{p7s} written for {said}");
        assert!(!Utf8PathBuf::from(format!("{p7s}.partial")).exists());
    }
}
