//! Squashfs images grown by metadata blocks, for the tests and fuzzing seeds of `check`'s bound
//! on what backhand unpacks (tests/check.rs, fuzz/examples/seeds.rs).

/// `image` with `blocks` put before its inode table, every table after it moved along: the
/// tables backhand unpacks whole grow by those metadata blocks.
pub fn with_inode_blocks(image: &[u8], blocks: &[u8]) -> Vec<u8> {
    let u64_at = |at: usize| u64::from_le_bytes(image[at..at + 8].try_into().unwrap());
    let inode_table = u64_at(64) as usize;
    let mut out = image[..inode_table].to_vec();
    // bytes used, id, xattr, directory, fragment and export tables
    for at in [40, 48, 56, 72, 80, 88] {
        let start = u64_at(at);
        if start != u64::MAX && start > inode_table as u64 {
            out[at..at + 8].copy_from_slice(&(start + blocks.len() as u64).to_le_bytes());
        }
    }
    out.extend_from_slice(blocks);
    out.extend_from_slice(&image[inode_table..]);
    out
}
