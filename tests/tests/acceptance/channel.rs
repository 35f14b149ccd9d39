//! The tests' own command channel: what a scenario reads is what the guest wrote, also when the
//! test process is slow to read it (two test threads and three emulated CPUs share two cores).

use portable_service_tests::guest::Systemd;
use portable_service_tests::vm::Host;
use std::time::Duration;

/// 3 MiB of noise (4 MiB of base64 on the wire), read 5 s after it was asked for. The virtio
/// console the channel was before dropped what the host's socket could not hold, and a
/// scenario once read a CA bundle 16,896 bytes short.
#[test]
fn a_large_answer_read_late_comes_whole() {
    let c = Host::open(Systemd::V252);
    let (dir, inside) = c.shared_dir("channel");
    let mut noise = vec![0u8; 3 << 20];
    fastrand::fill(&mut noise);
    std::fs::write(dir.join("noise"), &noise).unwrap();
    let out = c.run_reading_after(&["cat", &format!("{inside}/noise")], Duration::from_secs(5));
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stdout == noise,
        "{} bytes came of {}",
        out.stdout.len(),
        noise.len()
    );
}
