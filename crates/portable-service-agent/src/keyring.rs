//! The feed's detached OpenPGP signature, checked against the keyring systemd's importer reads,
//! as the real host's [`crate::host::Host::verify`] does it: in pure Rust (rPGP), without gpg.
//!
//! systemd-pull (`verify_gpg()`, src/import/pull-common.c) runs gpg with `--trust-model=always`
//! on ONE keyring, the first that exists:
//! - systemd 239–257: `/etc/systemd/import-pubring.gpg`, else
//!   `/usr/lib/systemd/import-pubring.gpg`;
//! - 258–261: `/etc/systemd/import-pubring.pgp`, `/etc/systemd/import-pubring.gpg` (legacy),
//!   `/usr/lib/systemd/import-pubring.pgp` (the vendor file was renamed);
//! - 262 reads `$SYSTEMD_OPENPGP_KEYRING` first (not followed here: the agent's keyring is not
//!   set by its environment).
//!
//! [`KEYRINGS`] is their union in that order, so a host of any version finds here the keyring its
//! own systemd would: `.pgp` before `.gpg`, `/etc` before `/usr/lib`. (A 239–257 host that has
//! both an `/etc/…​.pgp` and an `/etc/…​.gpg` would use the `.gpg`; no such host is expected, as
//! those versions know no `.pgp`.)
//!
//! What makes a signature good here (trust-model=always: every key of the keyring is trusted):
//! - a signature packet of the file (binary or armored; of type binary or text) verifies `data`
//!   with the primary key of a key in the keyring, or with one of its subkeys that carries the
//!   signing flag in its newest valid binding signature, whose embedded back-signature verifies;
//! - the signature uses no hash weaker than SHA-224 (MD5, SHA-1, RIPEMD-160 are refused; gpg
//!   2.2 refuses MD5 only), and has not expired (its own expiration subpacket);
//! - the primary key has a valid self-signature (on a user id, or directly on the key), is not
//!   revoked by a valid revocation of its own, and has not expired by the key expiration time
//!   of its newest valid self-signature;
//! - a subkey likewise: not revoked by a valid subkey revocation, not expired by its newest
//!   valid binding signature.
//!
//! Not checked: revocations by designated revokers (they need the revoker's key), user id
//! revocations, expired self-signatures, a signature made in the future. gpg itself accepts a
//! signature by an expired or revoked key (it only warns, and systemd reads its exit code), so
//! this check is stricter than systemd's there.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use pgp::composed::{Deserializable, DetachedSignature, SignedPublicKey, SignedPublicSubKey};
use pgp::crypto::hash::HashAlgorithm;
use pgp::packet::{Signature, SignatureType};
use pgp::types::{KeyDetails, Tag};

/// The keyrings systemd's importer reads, the first that exists (see the module's comment for
/// which systemd reads which).
pub const KEYRINGS: [&str; 4] = [
    "/etc/systemd/import-pubring.pgp",
    "/etc/systemd/import-pubring.gpg",
    "/usr/lib/systemd/import-pubring.pgp",
    "/usr/lib/systemd/import-pubring.gpg",
];

/// A keyring larger than this is refused (Debian's, of 31 keys, is about 100 KiB).
pub const MAX_KEYRING: u64 = 16 << 20;

/// A signature file larger than this is refused (one signature is under 1 KiB).
pub const MAX_SIGNATURE: usize = 64 << 10;

/// Keys read from one keyring at most.
const MAX_KEYS: usize = 10_000;

/// Whether `signature` is a good detached signature of `data` by a key of the first existing
/// of [`KEYRINGS`]; the signer, as [`verify_with`] names it.
pub fn verify(data: &[u8], signature: &[u8]) -> Result<String> {
    for keyring in KEYRINGS {
        let path = Path::new(keyring);
        match path.try_exists() {
            Ok(true) => return verify_with(path, data, signature),
            Ok(false) => {}
            Err(e) => bail!("{keyring}: cannot look at it: {e}"),
        }
    }
    bail!(
        "no OpenPGP keyring to verify the feed with: none of {} exists",
        KEYRINGS.join(", ")
    )
}

/// Whether `signature` (one or more detached signature packets, binary or ASCII-armored) is a
/// good signature of `data` by a key of `keyring` (keys as `gpg --export` writes them, binary or
/// ASCII-armored); the signer, as `USER-ID (FINGERPRINT)` of its primary key (the fingerprint
/// in upper-case hex, as gpg shows it), with `, subkey FINGERPRINT` when a subkey signed.
pub fn verify_with(keyring: &Path, data: &[u8], signature: &[u8]) -> Result<String> {
    verify_at(keyring, data, signature, now())
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn verify_at(keyring: &Path, data: &[u8], signature: &[u8], now: u64) -> Result<String> {
    let keys = read_keyring(keyring)?;
    let signatures = read_signatures(signature)?;

    // Why each signature failed, for the error when none is good.
    let mut refusals = Vec::new();
    for sig in &signatures {
        match check(&keys, sig, data, now) {
            Ok(signer) => return Ok(signer),
            Err(why) => refusals.push(why),
        }
    }
    bail!(
        "bad signature (keyring {}): {}",
        keyring.display(),
        refusals.join("; ")
    )
}

/// The keys of `path`, binary or armored.
fn read_keyring(path: &Path) -> Result<Vec<SignedPublicKey>> {
    let name = path.display();
    let file = File::open(path).with_context(|| format!("{name}: cannot open the keyring"))?;
    let mut bytes = Vec::new();
    file.take(MAX_KEYRING + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("{name}: cannot read the keyring"))?;
    if bytes.len() as u64 > MAX_KEYRING {
        bail!("{name}: the keyring is larger than {MAX_KEYRING} bytes");
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        bail!("{name}: the keyring is empty");
    }
    let (parsed, _) = SignedPublicKey::from_reader_many(io::Cursor::new(&bytes))
        .map_err(|e| anyhow!("{name}: not an OpenPGP keyring: {e}"))?;
    let mut keys = Vec::new();
    let mut broken = None;
    for key in parsed.take(MAX_KEYS) {
        match key {
            Ok(key) => keys.push(key),
            // as gpg, skip a key it can't read, but say why when no key is left
            Err(e) => broken = broken.or(Some(e)),
        }
    }
    if keys.is_empty() {
        match broken {
            Some(e) => bail!("{name}: not an OpenPGP keyring (no public key could be read: {e})"),
            None => bail!("{name}: not an OpenPGP keyring (no public key in it)"),
        }
    }
    Ok(keys)
}

/// The signature packets of a detached signature, binary or armored.
fn read_signatures(signature: &[u8]) -> Result<Vec<Signature>> {
    if signature.len() > MAX_SIGNATURE {
        bail!("the signature is larger than {MAX_SIGNATURE} bytes");
    }
    if signature.iter().all(u8::is_ascii_whitespace) {
        bail!("the signature is empty");
    }
    let (parsed, _) = DetachedSignature::from_reader_many(io::Cursor::new(signature))
        .map_err(|e| anyhow!("not an OpenPGP signature: {e}"))?;
    let mut signatures = Vec::new();
    for sig in parsed.take(64) {
        let sig = sig.map_err(|e| anyhow!("not an OpenPGP signature: {e}"))?;
        signatures.push(sig.signature);
    }
    if signatures.is_empty() {
        bail!("not an OpenPGP signature (no signature packet in it)");
    }
    Ok(signatures)
}

/// The signer of `sig` over `data` among `keys`, or why none is.
fn check(
    keys: &[SignedPublicKey],
    sig: &Signature,
    data: &[u8],
    now: u64,
) -> Result<String, String> {
    let issuer = sig
        .issuer_fingerprint()
        .first()
        .map(|f| format!("{f:X}"))
        .or_else(|| sig.issuer_key_id().first().map(|k| hex(k.as_ref())))
        .unwrap_or_else(|| "an unnamed key".to_string());
    match sig.typ() {
        Some(SignatureType::Binary | SignatureType::Text) => {}
        other => {
            return Err(format!(
                "a signature by {issuer} is not over data but {other:?}"
            ))
        }
    }
    if let Some(hash) = sig.hash_alg() {
        if matches!(
            hash,
            HashAlgorithm::None
                | HashAlgorithm::Md5
                | HashAlgorithm::Sha1
                | HashAlgorithm::Ripemd160
        ) {
            return Err(format!(
                "the signature by {issuer} uses the weak hash {hash}"
            ));
        }
    }
    if let (Some(created), Some(life)) = (sig.created(), sig.signature_expiration_time()) {
        let life = u64::from(life.as_secs());
        if life != 0 && u64::from(created.as_secs()) + life <= now {
            return Err(format!("the signature by {issuer} has expired"));
        }
    }

    // A key that verified the signature but is not valid, and why: said when no key is.
    let mut refused = None;
    for key in keys {
        let primary = &key.primary_key;
        let mut signed_by = None;
        if sig.verify(primary, data).is_ok() {
            signed_by = Some(None);
        } else {
            for sub in &key.public_subkeys {
                if sig.verify(&sub.key, data).is_ok() {
                    signed_by = Some(Some(sub));
                    break;
                }
            }
        }
        let Some(subkey) = signed_by else { continue };
        let name = signer(key);
        let valid = primary_valid(key, now).and_then(|()| match subkey {
            Some(sub) => subkey_valid(key, sub, now),
            None => Ok(()),
        });
        match (valid, subkey) {
            (Ok(()), None) => return Ok(name),
            (Ok(()), Some(sub)) => {
                return Ok(format!("{name}, subkey {:X}", sub.key.fingerprint()));
            }
            (Err(why), _) => refused = Some(format!("signed by {name}, which is not valid: {why}")),
        }
    }
    Err(match refused {
        Some(why) => why,
        None => format!(
            "the data does not match the signature by {issuer}, or that key is not in the keyring"
        ),
    })
}

/// `USER-ID (FINGERPRINT)`: the primary user id (else the first one with a valid
/// self-signature, else the first).
fn signer(key: &SignedPublicKey) -> String {
    let primary = &key.primary_key;
    let valid_users: Vec<_> = key
        .details
        .users
        .iter()
        .filter(|user| {
            user.signatures.iter().any(|s| {
                s.verify_certification(primary, Tag::UserId, &user.id)
                    .is_ok()
            })
        })
        .collect();
    let user = valid_users
        .iter()
        .find(|user| user.is_primary())
        .or(valid_users.first())
        .copied()
        .or(key.details.users.first());
    let id = match user {
        Some(user) => String::from_utf8_lossy(user.id.id()).into_owned(),
        None => "(no user id)".to_string(),
    };
    format!("{id} ({:X})", primary.fingerprint())
}

/// The primary key has a valid self-signature, is not revoked, has not expired.
fn primary_valid(key: &SignedPublicKey, now: u64) -> Result<(), String> {
    let primary = &key.primary_key;
    if key
        .details
        .revocation_signatures
        .iter()
        .any(|s| s.typ() == Some(SignatureType::KeyRevocation) && s.verify_key(primary).is_ok())
    {
        return Err("the key is revoked".to_string());
    }
    let direct = key
        .details
        .direct_signatures
        .iter()
        .filter(|s| s.typ() == Some(SignatureType::Key) && s.verify_key(primary).is_ok());
    let certifications = key.details.users.iter().flat_map(|user| {
        user.signatures.iter().filter(|s| {
            matches!(
                s.typ(),
                Some(
                    SignatureType::CertGeneric
                        | SignatureType::CertPersona
                        | SignatureType::CertCasual
                        | SignatureType::CertPositive
                )
            ) && s
                .verify_certification(primary, Tag::UserId, &user.id)
                .is_ok()
        })
    });
    let newest = direct
        .chain(certifications)
        .max_by_key(|s| s.created().map(|t| t.as_secs()).unwrap_or(0))
        .ok_or("the key has no valid self-signature")?;
    expired(primary.created_at().as_secs(), newest, now, "the key")
}

/// The subkey is bound to the primary key as a signing key (with a valid back-signature), is
/// not revoked, has not expired.
fn subkey_valid(key: &SignedPublicKey, sub: &SignedPublicSubKey, now: u64) -> Result<(), String> {
    let primary = &key.primary_key;
    let name = format!("subkey {:X}", sub.key.fingerprint());
    if sub.signatures.iter().any(|s| {
        s.typ() == Some(SignatureType::SubkeyRevocation)
            && s.verify_subkey_binding(primary, &sub.key).is_ok()
    }) {
        return Err(format!("{name} is revoked"));
    }
    let binding = sub
        .signatures
        .iter()
        .filter(|s| {
            s.typ() == Some(SignatureType::SubkeyBinding)
                && s.verify_subkey_binding(primary, &sub.key).is_ok()
        })
        .max_by_key(|s| s.created().map(|t| t.as_secs()).unwrap_or(0))
        .ok_or_else(|| format!("{name} has no valid binding signature"))?;
    if !binding.key_flags().sign() {
        return Err(format!("{name} is not a signing key"));
    }
    let backsig = binding
        .embedded_signature()
        .ok_or_else(|| format!("{name} has no back-signature"))?;
    if backsig
        .verify_primary_key_binding(&sub.key, primary)
        .is_err()
    {
        return Err(format!("{name}'s back-signature does not verify"));
    }
    expired(sub.key.created_at().as_secs(), binding, now, &name)
}

/// Whether a key created at `created` has expired at `now` by `self_sig`'s key expiration time.
fn expired(created: u32, self_sig: &Signature, now: u64, what: &str) -> Result<(), String> {
    match self_sig.key_expiration_time() {
        Some(life) if life.as_secs() != 0 => {
            let end = u64::from(created) + u64::from(life.as_secs());
            if end <= now {
                return Err(format!(
                    "{what} expired {} (UNIX time {end})",
                    ago(now - end)
                ));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn ago(secs: u64) -> String {
    match secs {
        0..=119 => format!("{secs} s ago"),
        120..=7199 => format!("{} min ago", secs / 60),
        7200..=172_799 => format!("{} h ago", secs / 3600),
        _ => format!("{} days ago", secs / 86400),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}
