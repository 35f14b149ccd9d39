//! The signature of an image's root hash: `NAME.roothash.p7s` beside a naked image, or the
//! signature partition of a Discoverable Disk Image (its JSON, [`DiskSignature`], holds the
//! same PKCS#7 in base64); made by `sign`, checked by `check --cert`.
//!
//! What systemd and the kernel verify (the kernel's dm-verity `root_hash_sig_key_desc`, and
//! systemd's own check against the certificates in `/etc/verity.d/`) is a DER PKCS#7 (CMS)
//! SignedData over the root hash as lowercase hex, without newline: detached (no content inside),
//! no certificates inside, no signed attributes, the signer named by its certificate's issuer and
//! serial number, digest sha256. That is what `openssl smime -sign -nocerts -noattr -binary`
//! writes, which systemd 252 to 262 accepted in the VMs (tests/tests/acceptance/integrity.rs);
//! an RSA signature here is byte-identical to openssl's (PKCS#1 v1.5 is deterministic), an ECDSA
//! P-256 one is deterministic too (RFC 6979).
//!
//! The structures and their DER come from RustCrypto: `cms` (SignedData), `x509-cert`
//! (certificates), `rsa` and `p256` (the signatures). The `cms` crate's own SignerInfo builder
//! always adds signed attributes, so the SignerInfo is assembled here from its types instead.
//! `rsa` 0.9 carries RUSTSEC-2023-0071 (a timing side channel in its private-key operation):
//! signing happens once, on the signer's own machine, with no one timing it remotely, and it
//! goes through the randomized (blinded) path, which gives the same bytes (PKCS#1 v1.5 is
//! deterministic) but not the same timing for the same key. The key's text is wiped from memory
//! when it has been read (`Zeroizing`); the parsed keys wipe themselves on drop.

use crate::exit::{unreadable, Failure};
use anyhow::{bail, ensure, Context, Result};
use base64::Engine;
use camino::{Utf8Path, Utf8PathBuf};
use cms::cert::IssuerAndSerialNumber;
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{EncapsulatedContentInfo, SignedData, SignerIdentifier, SignerInfo};
use const_oid::db::{rfc5911, rfc5912};
use der::asn1::{Any, OctetString, SetOfVec};
use der::{Decode, DecodePem, Encode};
use portable_service_rules::ddi;
use portable_service_rules::verity::{self, sidecars};
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
use sha2::{Digest, Sha256};
use signature::{RandomizedSigner, SignatureEncoding, Signer, Verifier};
use std::io::{Seek, SeekFrom, Write};
use x509_cert::spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::Certificate;
use zeroize::Zeroizing;

/// A certificate and the file it came from (for messages).
#[derive(Debug, Clone)]
pub struct Cert {
    pub path: Utf8PathBuf,
    pub cert: Certificate,
    /// Whether the file is PEM, the only form systemd reads in /etc/verity.d/.
    pub pem: bool,
}

impl Cert {
    /// Reads a certificate, PEM or DER; a file that isn't one is unreadable input.
    pub fn read(path: &Utf8Path) -> Result<Cert> {
        Cert::read_file(path).map_err(unreadable(path))
    }

    fn read_file(path: &Utf8Path) -> Result<Cert> {
        let bytes = std::fs::read(path)
            .map_err(|e| anyhow::anyhow!("cannot read {path}: {}", crate::input::io_words(&e)))?;
        let pem = bytes.starts_with(b"-----BEGIN");
        let cert = if pem {
            Certificate::from_pem(&bytes)
        } else {
            Certificate::from_der(&bytes)
        }
        .map_err(|_| {
            // a text file that isn't PEM is no DER either: say what it is, not the DER reader's
            // complaint about its first byte
            if !pem && std::str::from_utf8(&bytes).is_ok() {
                anyhow::anyhow!(
                    "{path} is not an X.509 certificate: it is text, and a certificate in text \
                     (PEM) starts with -----BEGIN CERTIFICATE-----"
                )
            } else if pem {
                anyhow::anyhow!(
                    "{path} is not an X.509 certificate: its PEM block is damaged or holds \
                     something else"
                )
            } else {
                anyhow::anyhow!(
                    "{path} is not an X.509 certificate: its bytes are neither PEM text nor a \
                     certificate in DER"
                )
            }
        })?;
        Ok(Cert {
            path: path.to_owned(),
            cert,
            pem,
        })
    }

    /// The certificate's subject, as openssl prints it with `-nameopt RFC2253` (`CN=...`).
    pub fn subject(&self) -> String {
        self.cert.tbs_certificate.subject.to_string()
    }

    fn spki(&self) -> &SubjectPublicKeyInfoOwned {
        &self.cert.tbs_certificate.subject_public_key_info
    }

    fn public_key_der(&self) -> Result<Vec<u8>> {
        Ok(self.spki().to_der()?)
    }

    fn issuer_and_serial(&self) -> IssuerAndSerialNumber {
        IssuerAndSerialNumber {
            issuer: self.cert.tbs_certificate.issuer.clone(),
            serial_number: self.cert.tbs_certificate.serial_number.clone(),
        }
    }
}

/// The private keys `sign` takes.
enum Key {
    Rsa(Box<rsa::RsaPrivateKey>),
    P256(p256::SecretKey),
}

impl Key {
    /// Reads an unencrypted PEM private key: PKCS#8 (`openssl genpkey`, `openssl req -newkey`),
    /// PKCS#1 RSA or SEC1 EC; a file that isn't one is unreadable input.
    fn read(path: &Utf8Path) -> Result<Key> {
        Key::read_file(path).map_err(unreadable(path))
    }

    fn read_file(path: &Utf8Path) -> Result<Key> {
        // the readers' own words (DER tags, byte offsets) are no help to a user: said is what
        // the file is, and what sign takes
        let bytes = std::fs::read(path)
            .map_err(|e| anyhow::anyhow!("cannot read {path}: {}", crate::input::io_words(&e)))?;
        let text = Zeroizing::new(String::from_utf8(bytes).map_err(|_| {
            anyhow::anyhow!(
                "{path} is not a PEM private key: it is not text (a PEM key starts with \
                 -----BEGIN PRIVATE KEY-----)"
            )
        })?);
        let label = der::pem::decode_label(text.as_bytes()).map_err(|_| {
            anyhow::anyhow!(
                "{path} is not a PEM private key: it doesn't start with a -----BEGIN ...----- line"
            )
        })?;
        let bad = |_: &dyn std::fmt::Display| {
            anyhow::anyhow!("{path}: its {label} block is damaged or holds no such key")
        };
        Ok(match label {
            "PRIVATE KEY" => {
                let (_, document) = der::SecretDocument::from_pem(&text).map_err(|e| bad(&e))?;
                let info = rsa::pkcs8::PrivateKeyInfo::try_from(document.as_bytes())
                    .map_err(|e| bad(&e))?;
                match info.algorithm.oid {
                    rfc5912::RSA_ENCRYPTION => Key::Rsa(Box::new(
                        rsa::RsaPrivateKey::from_pkcs8_pem(&text).map_err(|e| bad(&e))?,
                    )),
                    rfc5912::ID_EC_PUBLIC_KEY => {
                        Key::P256(p256::SecretKey::from_pkcs8_pem(&text).map_err(|_| {
                            anyhow::anyhow!(
                                "{path}: an EC key sign can't use (it takes P-256 keys only)"
                            )
                        })?)
                    }
                    other => bail!(
                        "{path}: a key of algorithm {}; sign takes RSA or EC P-256 keys",
                        oid_name(other)
                    ),
                }
            }
            "RSA PRIVATE KEY" => Key::Rsa(Box::new(
                rsa::RsaPrivateKey::from_pkcs1_pem(&text).map_err(|e| bad(&e))?,
            )),
            "EC PRIVATE KEY" => Key::P256(p256::SecretKey::from_sec1_pem(&text).map_err(|_| {
                anyhow::anyhow!("{path}: an EC key sign can't use (it takes P-256 keys only)")
            })?),
            "ENCRYPTED PRIVATE KEY" => bail!(
                "{path} is encrypted; give sign the plain key through a pipe, never a file: \
                 --key <(openssl pkey -in {path})"
            ),
            other => bail!("{path} holds a PEM {other}, not a private key"),
        })
    }

    /// Whether `cert` carries this key's public half.
    fn matches(&self, cert: &Cert) -> bool {
        match self {
            Key::Rsa(key) => cert
                .public_key_der()
                .and_then(|der| Ok(rsa::RsaPublicKey::from_public_key_der(&der)?))
                .is_ok_and(|public| public == key.to_public_key()),
            Key::P256(key) => cert
                .public_key_der()
                .and_then(|der| Ok(p256::PublicKey::from_public_key_der(&der)?))
                .is_ok_and(|public| public == key.public_key()),
        }
    }

    /// The signature over `message` and its algorithm, as a SignerInfo names it.
    fn sign(&self, message: &[u8]) -> (AlgorithmIdentifierOwned, Vec<u8>) {
        match self {
            Key::Rsa(key) => {
                let signer = rsa::pkcs1v15::SigningKey::<Sha256>::new(key.as_ref().clone());
                // blinded: see the module comment
                let signature: rsa::pkcs1v15::Signature =
                    signer.sign_with_rng(&mut rsa::rand_core::OsRng, message);
                (algorithm(rfc5912::RSA_ENCRYPTION, true), signature.to_vec())
            }
            Key::P256(key) => {
                let signer = p256::ecdsa::SigningKey::from(key);
                let signature: p256::ecdsa::Signature = signer.sign(message);
                (
                    algorithm(rfc5912::ECDSA_WITH_SHA_256, false),
                    signature.to_der().to_vec(),
                )
            }
        }
    }
}

/// An algorithm's name where the OID database knows it (`id-Ed25519`), else its numbers.
fn oid_name(oid: const_oid::ObjectIdentifier) -> String {
    const_oid::db::DB
        .by_oid(&oid)
        .map_or_else(|| oid.to_string(), str::to_owned)
}

fn algorithm(oid: const_oid::ObjectIdentifier, null_parameters: bool) -> AlgorithmIdentifierOwned {
    AlgorithmIdentifierOwned {
        oid,
        parameters: null_parameters.then(|| Any::from(der::asn1::Null)),
    }
}

/// The root hash file beside `image`, its hash, and the hash as systemd hands it to the kernel
/// and as it is signed: lowercase hex.
fn signed_root_hash(image: &Utf8Path) -> Result<(Utf8PathBuf, [u8; 32], String)> {
    let [_, root_file, _] = sidecars(image);
    if !root_file.exists() {
        bail!(Failure::unreadable(
            &root_file,
            format!(
                "{image} has no root hash beside it: {root_file} is missing (an image built \
                 with `verity = true` has one)"
            )
        ));
    }
    let text = verity::read_sidecar_text(&root_file).map_err(unreadable(&root_file))?;
    let root = verity::parse_root_hash(&text)
        .with_context(|| format!("{root_file}"))
        .map_err(unreadable(&root_file))?;
    let hex = verity::hex(&root);
    Ok((root_file, root, hex))
}

/// The signing key and its certificate, which must carry its public half.
fn key_and_cert(key_file: &Utf8Path, cert_file: &Utf8Path) -> Result<(Key, Cert)> {
    let key = Key::read(key_file)?;
    let cert = Cert::read(cert_file)?;
    ensure!(
        key.matches(&cert),
        "the key {key_file} does not match the certificate {cert_file} ({}): its public key is \
         another",
        cert.subject()
    );
    Ok((key, cert))
}

/// The detached DER PKCS#7 signature of `root_hash` (lowercase hex) by `key`, named by `cert`.
fn pkcs7(key: &Key, cert: &Cert, root_hash: &str) -> Result<Vec<u8>> {
    let (signature_algorithm, signature) = key.sign(root_hash.as_bytes());
    let signer = SignerInfo {
        version: CmsVersion::V1,
        sid: SignerIdentifier::IssuerAndSerialNumber(cert.issuer_and_serial()),
        digest_alg: algorithm(rfc5912::ID_SHA_256, true),
        signed_attrs: None,
        signature_algorithm,
        signature: OctetString::new(signature)?,
        unsigned_attrs: None,
    };
    let signed = SignedData {
        version: CmsVersion::V1,
        digest_algorithms: SetOfVec::try_from(vec![algorithm(rfc5912::ID_SHA_256, true)])?,
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: rfc5911::ID_DATA,
            econtent: None,
        },
        certificates: None,
        crls: None,
        signer_infos: cms::signed_data::SignerInfos(SetOfVec::try_from(vec![signer])?),
    };
    Ok(ContentInfo {
        content_type: rfc5911::ID_SIGNED_DATA,
        content: Any::encode_from(&signed)?,
    }
    .to_der()?)
}

/// Signs the root hash beside `image` and writes `NAME.roothash.p7s`; its path. Nothing is
/// written when the key, the certificate or the root hash is wrong.
pub fn sign(image: &Utf8Path, key_file: &Utf8Path, cert_file: &Utf8Path) -> Result<Utf8PathBuf> {
    let (root_file, root, root_hash) = signed_root_hash(image)?;
    // What is signed must be what hosts will check every block against: the root of the hash
    // tree beside the image, and that tree the image's.
    let [tree_file, _, _] = sidecars(image);
    if !tree_file.exists() {
        bail!(Failure::unreadable(
            &tree_file,
            format!("{image} has no hash tree beside it: {tree_file} is missing")
        ));
    }
    verity::verify(image, &tree_file, &root).with_context(|| {
        format!("refusing to sign {root_file}: it is not the root hash of {image} with {tree_file}")
    })?;
    let (key, cert) = key_and_cert(key_file, cert_file)?;
    let der = pkcs7(&key, &cert, &root_hash)?;

    let [_, _, p7s] = sidecars(image);
    // written whole under another name first, so a failed write leaves no partial .p7s
    let partial = Utf8PathBuf::from(format!("{p7s}.partial"));
    std::fs::write(&partial, der)
        .and_then(|()| std::fs::rename(&partial, &p7s))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&partial);
        })
        .with_context(|| format!("cannot write {p7s}"))?;
    Ok(p7s)
}

/// Which of `certs` made the signature `p7s` over the root hash beside `image`; an error that
/// says why none did.
pub fn verify<'c>(image: &Utf8Path, p7s: &Utf8Path, certs: &'c [Cert]) -> Result<&'c Cert> {
    let (root_file, _, root_hash) = signed_root_hash(image)?;
    let bytes = verity::read_sidecar(p7s)?;
    verify_der(
        &bytes,
        p7s.as_str(),
        &root_hash,
        &format!("in {root_file}"),
        certs,
    )
}

/// The signed data of the DER PKCS#7 `bytes` (named `p7s` in messages).
fn signed_data(bytes: &[u8], p7s: &str) -> Result<SignedData> {
    let info = ContentInfo::from_der(bytes)
        .map_err(|e| anyhow::anyhow!("{p7s} is not a DER PKCS#7 signature: {e}"))?;
    ensure!(
        info.content_type == rfc5911::ID_SIGNED_DATA,
        "{p7s} is PKCS#7 content of type {}, not signed data",
        info.content_type
    );
    info.content
        .decode_as()
        .map_err(|e| anyhow::anyhow!("{p7s}: malformed signed data: {e}"))
}

/// Checks that `p7s` is a PKCS#7 signature whose signed content is the root hash beside
/// `image` (who signed it is the hosts' question, answered by their /etc/verity.d): what
/// `publish` asks before a signature travels with the image. A signature without signed
/// attributes carries no digest to compare and passes.
pub fn covers_root_hash(image: &Utf8Path, p7s: &Utf8Path) -> Result<()> {
    let (root_file, _, root_hash) = signed_root_hash(image)?;
    let bytes = verity::read_sidecar(p7s)?;
    let signed = signed_data(&bytes, p7s.as_str())?;
    let mut why_not = Vec::new();
    for signer in signed.signer_infos.0.iter() {
        match signed_message(signer, root_hash.as_bytes()) {
            Ok(_) => return Ok(()),
            Err(e) => why_not.push(format!("{e:#}")),
        }
    }
    bail!(
        "{p7s} does not sign the root hash in {root_file}: {}",
        if why_not.is_empty() {
            "it holds no signer".to_owned()
        } else {
            why_not.join("; ")
        }
    )
}

/// Which of `certs` made the DER PKCS#7 signature `bytes` (named `p7s` in messages) over
/// `root_hash` (lowercase hex; `whose` says where it comes from).
fn verify_der<'c>(
    bytes: &[u8],
    p7s: &str,
    root_hash: &str,
    whose: &str,
    certs: &'c [Cert],
) -> Result<&'c Cert> {
    let signed = signed_data(bytes, p7s)?;
    let mut why_not = Vec::new();
    for signer in signed.signer_infos.0.iter() {
        let candidates: Vec<&Cert> = match &signer.sid {
            SignerIdentifier::IssuerAndSerialNumber(id) => certs
                .iter()
                .filter(|c| c.issuer_and_serial() == *id)
                .collect(),
            SignerIdentifier::SubjectKeyIdentifier(_) => certs.iter().collect(),
        };
        if candidates.is_empty() {
            why_not.push(match &signer.sid {
                SignerIdentifier::IssuerAndSerialNumber(id) => format!(
                    "it was made by the certificate of issuer {} and serial {}, not one given",
                    id.issuer, id.serial_number
                ),
                SignerIdentifier::SubjectKeyIdentifier(_) => "no certificate given".to_owned(),
            });
            continue;
        }
        let message = match signed_message(signer, root_hash.as_bytes()) {
            Ok(m) => m,
            Err(e) => {
                why_not.push(format!("{e:#}"));
                continue;
            }
        };
        for cert in candidates {
            match verify_with(cert, signer, &message) {
                Ok(()) => return Ok(cert),
                Err(e) => why_not.push(format!("{}: {e:#}", cert.path)),
            }
        }
    }
    bail!(
        "{p7s} is not a signature of the root hash {whose} by any certificate given: {}",
        if why_not.is_empty() {
            "it holds no signer".to_owned()
        } else {
            why_not.join("; ")
        }
    )
}

/// The bytes a SignerInfo's signature covers: the content itself, or, with signed attributes,
/// their DER (after checking their digest of the content).
fn signed_message(signer: &SignerInfo, content: &[u8]) -> Result<Vec<u8>> {
    ensure!(
        signer.digest_alg.oid == rfc5912::ID_SHA_256,
        "its digest is {}, and only sha256 is checked",
        signer.digest_alg.oid
    );
    let Some(attributes) = &signer.signed_attrs else {
        return Ok(content.to_vec());
    };
    let digest = attributes
        .iter()
        .find(|a| a.oid == rfc5911::ID_MESSAGE_DIGEST)
        .and_then(|a| a.values.iter().next())
        .and_then(|v| v.decode_as::<OctetString>().ok())
        .context("its signed attributes lack the message digest")?;
    ensure!(
        digest.as_bytes() == Sha256::digest(content).as_slice(),
        "it signs other content than this root hash"
    );
    Ok(attributes.to_der()?)
}

fn verify_with(cert: &Cert, signer: &SignerInfo, message: &[u8]) -> Result<()> {
    let spki = cert.public_key_der()?;
    let signature = signer.signature.as_bytes();
    match cert.spki().algorithm.oid {
        rfc5912::RSA_ENCRYPTION => {
            let public = rsa::RsaPublicKey::from_public_key_der(&spki)
                .map_err(|e| anyhow::anyhow!("its RSA public key: {e}"))?;
            let signature = rsa::pkcs1v15::Signature::try_from(signature)?;
            rsa::pkcs1v15::VerifyingKey::<Sha256>::new(public)
                .verify(message, &signature)
                .map_err(|_| anyhow::anyhow!("the signature does not verify with its key"))
        }
        rfc5912::ID_EC_PUBLIC_KEY => {
            let public = p256::ecdsa::VerifyingKey::from_public_key_der(&spki)
                .map_err(|e| anyhow::anyhow!("its EC public key (P-256 only): {e}"))?;
            let signature = p256::ecdsa::Signature::from_der(signature)?;
            public
                .verify(message, &signature)
                .map_err(|_| anyhow::anyhow!("the signature does not verify with its key"))
        }
        other => bail!(
            "its key is of algorithm {}; RSA and EC P-256 are checked",
            oid_name(other)
        ),
    }
}

/// The signature partition's content, as systemd reads it (`rootHash` and `signature` it
/// requires; `certificateFingerprint`, the sha256 of the signer's DER certificate, lets a host
/// pick the certificate), NUL-padded to the partition's size.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DiskSignature {
    pub root_hash: String,
    #[serde(default)]
    pub certificate_fingerprint: Option<String>,
    /// base64 of the DER PKCS#7 signature.
    pub signature: String,
}

/// A DDI's partitions as `sign` and `check` need them: the table, the partitions a host runs,
/// and the root hash their UUIDs carry.
pub struct Disk {
    pub table: ddi::Table,
    pub arch: &'static ddi::Architecture,
    pub root: ddi::Partition,
    pub verity: ddi::Partition,
    pub signature: Option<ddi::Partition>,
    pub root_hash: [u8; 32],
}

/// What `sign` signs must be what systemd mounts, by 252's rules and by 262's: the root and
/// hash tree `chosen` and nothing else (not the whole file as one file system, not another
/// partition, not a usr partition over the root).
fn mounted_as_read(image: &Utf8Path, chosen: &ddi::Chosen) -> Result<()> {
    use portable_service_rules::dissect::{self, Kind, Rules};
    for (rules, v) in [(Rules::V252, 252), (Rules::V262, 262)] {
        let mut file = std::fs::File::open(image)?;
        let d = dissect::dissect(&mut file, rules, chosen.arch.name)
            .map_err(|why| anyhow::anyhow!("{image}: by systemd {v}'s rules, {why}"))?;
        dissect::vouch(&mut file, &d)
            .map_err(|why| anyhow::anyhow!("{image}: by systemd {v}'s rules, {why}"))?;
        let is = |k: Kind, p: Option<&ddi::Partition>| match (d.get(k), p) {
            (Some(m), Some(p)) => {
                m.number == Some(p.number) && m.range == p.range && m.uuid == Some(p.uuid)
            }
            (None, None) => true,
            _ => false,
        };
        // root, hash tree and (when signed already) signature, and nothing else
        let mounted = d
            .mounts
            .iter()
            .filter(|m| m.designator == m.kind.name())
            .count();
        let expected = 2 + usize::from(d.get(Kind::RootVeritySig).is_some());
        let same = !d.whole
            && is(Kind::Root, Some(chosen.root))
            && is(Kind::RootVerity, chosen.verity)
            && mounted == expected;
        ensure!(
            same,
            "{image}: systemd {v} would mount {} on {}, not its root partition {} and its hash \
             tree",
            describe(&d),
            chosen.arch.name,
            chosen.root.number
        );
    }
    Ok(())
}

fn describe(d: &portable_service_rules::dissect::Dissected) -> String {
    if d.whole {
        return "the whole file as one file system".into();
    }
    let parts: Vec<String> = d
        .mounts
        .iter()
        .map(|m| format!("{} (partition {})", m.designator, m.number.unwrap_or(0)))
        .collect();
    parts.join(", ")
}

impl Disk {
    /// Reads `image`'s table, for `sign`: it must hold one architecture's partitions (see
    /// [`ddi::Table::single`]).
    pub fn read(image: &Utf8Path) -> Result<Disk> {
        ensure!(
            ddi::is_ddi(image)?,
            "{image} is not a disk image (no GPT partition table)"
        );
        let table = ddi::read_table(image)?;
        let chosen = table.single().with_context(|| format!("{image}"))?;
        mounted_as_read(image, &chosen)?;
        Disk::of(image, &table, chosen)
    }

    /// The partitions `chosen` of `table` (`check` has them from opening the image for its
    /// hosts' architecture), with the root hash their UUIDs carry (the first and last 128
    /// bits: the specification's pairing rule).
    pub fn of(image: &Utf8Path, table: &ddi::Table, chosen: ddi::Chosen) -> Result<Disk> {
        let verity = chosen.verity.with_context(|| {
            format!(
                "{image} has no root-verity partition for {} (no hash tree)",
                chosen.arch.name
            )
        })?;
        let mut root_hash = [0u8; 32];
        root_hash[..16].copy_from_slice(&chosen.root.uuid);
        root_hash[16..].copy_from_slice(&verity.uuid);
        Ok(Disk {
            table: table.clone(),
            arch: chosen.arch,
            root: chosen.root.clone(),
            verity: verity.clone(),
            signature: chosen.signature.cloned(),
            root_hash,
        })
    }

    /// Checks the hash tree (the root-verity partition) against the root partition and the root
    /// hash, block by block.
    pub fn verify_tree(&self, image: &Utf8Path) -> Result<verity::Tree> {
        verity::verify_at(
            image,
            Some(&self.root.range),
            image,
            Some(&self.verity.range),
            &format!("{image}'s root-verity partition"),
            &self.root_hash,
        )
    }

    /// The signature partition's content, if there is one.
    pub fn signature(&self, image: &Utf8Path) -> Result<Option<DiskSignature>> {
        let Some(p) = &self.signature else {
            return Ok(None);
        };
        ensure!(
            p.range.end - p.range.start <= 4 << 20,
            "{image}'s signature partition is over 4 MiB: systemd refuses it"
        );
        let bytes = ddi::read_range(image, &p.range)?;
        let json = bytes.split(|b| *b == 0).next().unwrap_or_default();
        // systemd 252 refuses anything but NUL after the JSON ("embedded NUL byte")
        ensure!(
            bytes[json.len()..].iter().all(|b| *b == 0),
            "{image}'s signature partition holds bytes after its JSON: systemd refuses it"
        );
        let sig: DiskSignature = serde_json::from_slice(json).with_context(|| {
            format!("{image}'s signature partition is not the JSON systemd reads")
        })?;
        Ok(Some(sig))
    }
}

/// Signs a DDI built with `format = "ddi"`: adds the signature partition, in the room the build
/// left for it, and the partition table entry that names it. The file system and the hash tree
/// are not moved or rewritten. Refused, the file untouched, when the file is not such a DDI, its
/// table is damaged, its hash tree does not match its data, or it is signed already (unless
/// `resign`). The same key gives the same bytes.
pub fn sign_disk(
    image: &Utf8Path,
    key_file: &Utf8Path,
    cert_file: &Utf8Path,
    resign: bool,
) -> Result<Cert> {
    let refuse = |why: &str| format!("refusing to sign {image}: {why}");
    // a table that can't be read is an unreadable input (2), as `check` says of the same file
    let disk = Disk::read(image)
        .with_context(|| refuse("it is not a disk image sign can read"))
        .map_err(unreadable(image))?;
    let size = std::fs::metadata(image)?.len();
    let (layout, arch) = ddi::layout_of(&disk.table, size).with_context(|| refuse("its layout"))?;
    disk.verify_tree(image)
        .with_context(|| refuse("its hash tree does not match its data"))?;
    if let Some(p) = &disk.signature {
        ensure!(
            p.range == layout.signature,
            refuse("its signature partition is not where portableService puts it")
        );
        ensure!(
            resign,
            "{image} is signed already; give --resign to replace its signature (with another \
             key, say)"
        );
    }
    let (key, cert) = key_and_cert(key_file, cert_file)?;
    let root_hash = verity::hex(&disk.root_hash);
    let der = pkcs7(&key, &cert, &root_hash)?;
    let content = DiskSignature {
        root_hash,
        certificate_fingerprint: Some(verity::hex(&Sha256::digest(cert.cert.to_der()?))),
        signature: base64::engine::general_purpose::STANDARD.encode(der),
    };
    let mut bytes = serde_json::to_vec(&content)?;
    let room = (layout.signature.end - layout.signature.start) as usize;
    ensure!(
        bytes.len() < room,
        "the signature of {image} is {} bytes, more than the {room} its partition has room for",
        bytes.len()
    );
    bytes.resize(room, 0);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(image)
        .with_context(|| format!("cannot open {image} for writing"))?;
    file.seek(SeekFrom::Start(layout.signature.start))
        .and_then(|_| file.write_all(&bytes))
        .with_context(|| format!("cannot write the signature into {image}"))?;
    ddi::write_table(&mut file, arch, &layout, &disk.root_hash, Some(&bytes))
        .with_context(|| format!("cannot write the partition table of {image}"))?;
    Ok(cert)
}

/// Which of `certs` signed the DDI `image`'s root hash: its signature partition must name the
/// root hash its partitions carry, and its PKCS#7 signature verify with one of them.
pub fn verify_disk<'c>(image: &Utf8Path, disk: &Disk, certs: &'c [Cert]) -> Result<&'c Cert> {
    let sig = disk
        .signature(image)?
        .with_context(|| format!("{image} has no signature partition"))?;
    let root_hash = verity::hex(&disk.root_hash);
    ensure!(
        sig.root_hash.eq_ignore_ascii_case(&root_hash),
        "{image}'s signature partition is for the root hash {}, its partitions carry {root_hash}",
        sig.root_hash
    );
    let der = base64::engine::general_purpose::STANDARD
        .decode(sig.signature.trim())
        .with_context(|| format!("{image}'s signature is not base64"))?;
    verify_der(
        &der,
        &format!("{image}'s signature partition"),
        &root_hash,
        &format!("of {image}"),
        certs,
    )
}
