//! What the targets (and examples/seeds.rs) share: a file per process for the readers that
//! take a path, and GPT checksums made to hold. Each user takes a part of it.
#![allow(dead_code)]

use camino::Utf8PathBuf;

/// `name` in a directory of this process's own, holding `data`.
pub fn file_with(name: &str, data: &[u8]) -> Utf8PathBuf {
    let dir = std::env::temp_dir().join(format!("portable-service-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = Utf8PathBuf::from_path_buf(dir.join(name)).unwrap();
    std::fs::write(&path, data).unwrap();
    path
}

const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// The entries' and the header's checksums of the header at `at`, made right.
pub fn fix_checksums(disk: &mut [u8], at: usize) {
    let Some(header) = disk.get(at..at + 92) else {
        return;
    };
    let u32_at = |o: usize| u32::from_le_bytes(header[o..o + 4].try_into().unwrap());
    let lba = u64::from_le_bytes(header[72..80].try_into().unwrap());
    let entries = u64::from(u32_at(80)) * u64::from(u32_at(84));
    let start = lba.saturating_mul(512);
    if let Some(array) = start
        .checked_add(entries)
        .and_then(|end| disk.get(start as usize..end as usize))
    {
        let sum = CRC.checksum(array);
        disk[at + 88..at + 92].copy_from_slice(&sum.to_le_bytes());
    }
    disk[at + 16..at + 20].fill(0);
    let sum = CRC.checksum(&disk[at..at + 92]);
    disk[at + 16..at + 20].copy_from_slice(&sum.to_le_bytes());
}
