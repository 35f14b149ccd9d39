//! The partition table reader (`ddi::read_table`), the choice of what a host runs, and the
//! dissect rules (`dissect::dissect`, what systemd mounts: every partition it names inside the
//! file, and libblkid's listing only partitions inside the usable range), on any bytes. Both headers' checksums are made to hold first (when the input reaches them), so that
//! mutations of the fields themselves get past the checksum test to the checks behind it.
#![no_main]

mod common;

use common::fix_checksums;
use libfuzzer_sys::fuzz_target;
use portable_service_rules::{ddi, dissect};

fuzz_target!(|data: &[u8]| {
    let mut disk = data.to_vec();
    fix_checksums(&mut disk, 512);
    if let Some(backup) = disk.get(512 + 32..512 + 40) {
        let lba = u64::from_le_bytes(backup.try_into().unwrap());
        if let Some(at) = lba.checked_mul(512).filter(|at| *at < disk.len() as u64) {
            fix_checksums(&mut disk, at as usize);
        }
    }
    let size = disk.len() as u64;
    for rules in [dissect::Rules::V252, dissect::Rules::V262] {
        for host in ["x86-64", "arm64"] {
            let cursor = &mut std::io::Cursor::new(&disk);
            if let Ok(d) = dissect::dissect(cursor, rules, host) {
                for m in &d.mounts {
                    assert!(m.range.start <= m.range.end && m.range.end <= size, "{m:?}");
                }
            }
        }
    }
    let Ok(table) = ddi::read_table_from(&mut std::io::Cursor::new(&disk), "fuzz.raw") else {
        return;
    };
    for p in &table.partitions {
        assert!(p.range.start <= p.range.end && p.range.end <= size, "{p:?}");
    }
    for arch in ["x86-64", "arm64", "x86", "arm", "riscv64", "nothing"] {
        if let Ok(chosen) = table.for_host(arch) {
            assert!(chosen.root.range.end <= size);
        }
    }
    if let Ok(chosen) = table.single() {
        assert!(chosen.root.range.end <= size);
        let _ = ddi::layout_of(&table, size);
    }
});
