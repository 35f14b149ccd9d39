//! The dm-verity files beside an image of one file system (`.verity`, `.roothash`,
//! `.roothash.p7s`): whether the hash tree matches the image, what each systemd version does
//! with the tree and the signature, and which of the hosts' certificates signed it
//! ([`check_signer`], which a disk's signature partition goes through too).

use super::report::{Finding, Report};
use super::versions::{rules_of, CHECKS_SIGNATURES, READS_HASH_TREE_BESIDE};
use super::Options;
use crate::signing::Cert;
use camino::Utf8Path;
use portable_service_rules::verity::{self, sidecars};

/// A finding that refuses the image for its dm-verity (the report's `verity` stage).
pub(super) fn verity_error(r: &mut Report, message: String) {
    r.error(Finding {
        stage: "verity",
        message,
    })
}

/// The dm-verity files beside an image, if it has any: the hash tree must match the image and
/// the root hash, as the kernel will check them block by block, and the root hash's signature
/// must be one the hosts trust (when `options.certs` says which).
pub(super) fn check_verity(r: &mut Report, image: &Utf8Path, options: &Options) {
    let [tree_file, root_file, p7s] = sidecars(image);
    if !tree_file.exists() && !root_file.exists() && !p7s.exists() {
        // what --cert says is what the hosts trust, not that every image must be signed:
        // systemd runs a plain image beside /etc/verity.d (measured), so this is no refusal
        if !options.certs.is_empty() {
            r.verity.push(format!(
                "{image}: no hash tree ({tree_file}): not signed, and systemd runs it without \
                 dm-verity (build it with `verity = true` and sign it to have it checked)"
            ));
        }
        return;
    }
    let verified = verity::read_sidecar_text(&root_file)
        .and_then(|text| verity::parse_root_hash(&text))
        .and_then(|root| verity::verify(image, &tree_file, &root));
    match verified {
        Ok(tree) => r.verity.push(format!(
            "{image}: the hash tree {tree_file} matches the image and the root hash {}",
            tree.root_hash_hex()
        )),
        Err(e) => return verity_error(r, format!("{e:#}")),
    }
    if rules_of(options.systemd) < READS_HASH_TREE_BESIDE {
        r.advice(&format!(
            "{image}: systemd {} reads no hash tree beside an image (from \
             {READS_HASH_TREE_BESIDE} on it does), nor a signature: it runs the image without \
             dm-verity, unchecked, so neither is any protection there",
            options.systemd
        ));
        return;
    }
    let kernel_only = rules_of(options.systemd) < CHECKS_SIGNATURES;
    if kernel_only && (p7s.exists() || options.signed_later) {
        return verity_error(r, kernel_keyring_only(image, p7s.exists(), options.systemd));
    }
    check_signature(r, image, &p7s, options);
}

/// Why a signature (`signed`, or one to be made) fails on a systemd before
/// [`CHECKS_SIGNATURES`], which leaves it to the kernel's keyring.
fn kernel_keyring_only(image: &Utf8Path, signed: bool, systemd: u32) -> String {
    format!(
        "{image}: {}systemd {} hands a root hash signature to the kernel, which checks \
         it against the kernel's keyring only (/etc/verity.d/ is read from systemd 250 \
         on): with the certificate in /etc/verity.d/ its services fail with \
         226/NAMESPACE. For these hosts leave the image unsigned (its hash tree still \
         runs) or put the certificate into the kernel's keyring",
        if signed { "signed: " } else { "to be signed: " },
        systemd
    )
}

/// The root hash's signature `p7s` beside a hash tree that matches: whether there is one, by
/// whom, and what the systemd version does without one.
fn check_signature(r: &mut Report, image: &Utf8Path, p7s: &Utf8Path, options: &Options) {
    match (p7s.exists(), options.certs.is_empty()) {
        (true, false) => check_signer(r, image, options, |certs| {
            crate::signing::verify(image, p7s, certs).cloned()
        }),
        (true, true) => r.verity.push(format!(
            "{p7s}: signed; by whom is not checked (give the hosts' certificates with --cert). \
             A host without the signer's certificate in /etc/verity.d/ refuses to start its \
             services (226/NAMESPACE)"
        )),
        (false, false) => verity_error(
            r,
            format!("{image} is not signed (there is no {p7s}), and certificates were given"),
        ),
        (false, true) => match unsigned_verity(options.systemd) {
            UnsignedVerity::Refused(what) if options.signed_later => r.verity.push(format!(
                "not signed yet (--signed-later): until it is, systemd {} {what}",
                options.systemd
            )),
            UnsignedVerity::Runs => r.verity.push(format!(
                "not signed: systemd {} uses the hash tree without a signature",
                options.systemd
            )),
            UnsignedVerity::Refused(what) => verity_error(
                r,
                format!(
                    "{image} has a hash tree but no signature ({p7s}): systemd {} {what}",
                    options.systemd
                ),
            ),
        },
    }
}

/// Which of the hosts' certificates signed an image: `verify` tells with a set of them. One
/// that verifies only with a certificate given in DER form is refused, since systemd reads
/// /etc/verity.d/*.crt as PEM only (measured: tests/tests/acceptance/integrity.rs).
pub(super) fn check_signer(
    r: &mut Report,
    image: &Utf8Path,
    options: &Options,
    verify: impl Fn(&[Cert]) -> anyhow::Result<Cert>,
) {
    let (pem, der): (Vec<Cert>, Vec<Cert>) = options.certs.iter().cloned().partition(|c| c.pem);
    match verify(&pem) {
        Ok(cert) => {
            r.signed_by_hosts.push(image.to_string());
            r.verity
                .push(format!("signed by {} (with {})", cert.subject(), cert.path))
        }
        Err(e) => verity_error(
            r,
            match verify(&der) {
                Ok(cert) => format!(
                    "it is signed by {}, whose certificate {} is DER: systemd reads \
                     /etc/verity.d/*.crt as PEM only and refuses the image with it \
                     (226/NAMESPACE); install it as PEM: openssl x509 -in {} -out \
                     /etc/verity.d/NAME.crt",
                    cert.subject(),
                    cert.path,
                    cert.path
                ),
                Err(_) => format!("{e:#}"),
            },
        ),
    }
}

/// What a systemd version does with an image whose hash tree is not signed.
enum UnsignedVerity {
    Runs,
    Refused(&'static str),
}

/// Measured in the VMs (tests/tests/acceptance/integrity.rs): 247, 252, 254 and 257 use an
/// unsigned hash tree; 262's image policy for portable services requires a signed one. (249
/// is taken for 247 here, unmeasured; before 247 see [`READS_HASH_TREE_BESIDE`].)
fn unsigned_verity(systemd: u32) -> UnsignedVerity {
    match rules_of(systemd) {
        ..262 => UnsignedVerity::Runs,
        _ => UnsignedVerity::Refused(
            "refuses to start its services: its image policy requires a signed hash tree \
             (226/NAMESPACE, \"Operation not possible due to RF-kill\"); sign it \
             (portable-service sign)",
        ),
    }
}
