//! A root hash signature (`.roothash.p7s`, PKCS#7 DER) as `check --cert` and `publish` read it,
//! and a signature partition's JSON, on any bytes; against a small image, its root hash and a
//! throwaway certificate made by openssl once per process.
#![no_main]

mod common;

use camino::Utf8PathBuf;
use libfuzzer_sys::fuzz_target;
use portable_service_rules::verity;
use portable_service_tools::signing::{self, Cert, DiskSignature};
use std::sync::OnceLock;

struct Fixture {
    image: Utf8PathBuf,
    certs: Vec<Cert>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let image = common::file_with("svc_1.raw", &[7; 2 * verity::BLOCK]);
        let tree = verity::format(&image, &image.with_extension("verity")).unwrap();
        common::file_with("svc_1.roothash", tree.root_hash_hex().as_bytes());
        let dir = image.parent().unwrap();
        let ok = std::process::Command::new("openssl")
            .args(["req", "-x509", "-nodes", "-days", "30", "-subj", "/CN=fuzz"])
            .args(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"])
            .args(["-keyout", dir.join("fuzz.key").as_str()])
            .args(["-out", dir.join("fuzz.crt").as_str()])
            .output()
            .expect("openssl runs");
        assert!(ok.status.success());
        let certs = vec![Cert::read(&dir.join("fuzz.crt")).unwrap()];
        Fixture { image, certs }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let p7s = common::file_with("svc_1.roothash.p7s", data);
    let _ = signing::verify(&f.image, &p7s, &f.certs);
    let _ = signing::covers_root_hash(&f.image, &p7s);
    let _ = serde_json::from_slice::<DiskSignature>(data);
});
