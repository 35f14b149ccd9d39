//! dm-verity for an image: the hash tree (`NAME.verity`) and root hash (`NAME.roothash`) that
//! systemd finds beside `NAME.raw` and hands to the kernel, which then checks every block it
//! reads.
//!
//! The format is dm-verity's own as `veritysetup format` writes it (cryptsetup's
//! docs/on-disk-format and lib/verity): version 1, sha256, 4096-byte data and hash blocks, a
//! 512-byte superblock in the first hash block, then the tree's levels from the top one down,
//! each digest `sha256(salt || block)` and each hash block padded with zeros. It is computed here
//! over the `sha2` crate rather than by running veritysetup: it is a few dozen lines, needs no
//! cryptsetup in the build's closure, and its salt and UUID come from the image itself (not
//! from /dev/urandom), so a rebuild gives the same bytes. `veritysetup verify` accepts it (the
//! tests run it).

use anyhow::{bail, ensure, Context, Result};
use camino::Utf8Path;
use sha2::{Digest, Sha256};
use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::Range;

/// Data and hash block size: squashfs pads images to 4096 bytes, and 4096 is a page.
pub const BLOCK: usize = 4096;
const DIGEST: usize = 32;
const PER_BLOCK: usize = BLOCK / DIGEST;
const SUPERBLOCK_SIZE: usize = 512;
const SIGNATURE: &[u8; 8] = b"verity\0\0";

/// What `format` made: the root hash and the parameters in the superblock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tree {
    pub root_hash: [u8; DIGEST],
    pub salt: [u8; DIGEST],
    pub uuid: [u8; 16],
    pub data_blocks: u64,
}

impl Tree {
    pub fn root_hash_hex(&self) -> String {
        hex(&self.root_hash)
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads the hex root hash of a `.roothash` file (surrounding white space allowed).
pub fn parse_root_hash(text: &str) -> Result<[u8; DIGEST]> {
    let text = text.trim();
    ensure!(
        text.len() == 2 * DIGEST && text.bytes().all(|b| b.is_ascii_hexdigit()),
        "not a sha256 root hash in hex: {text:?}"
    );
    let mut out = [0u8; DIGEST];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap();
    }
    Ok(out)
}

fn salted(salt: &[u8], block: &[u8]) -> [u8; DIGEST] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(block);
    h.finalize().into()
}

/// The size of `image` (of `range` of it: a partition), refused unless it is a whole number of
/// blocks (dm-verity maps whole blocks only).
fn image_size(image: &Utf8Path, range: Option<&Range<u64>>) -> Result<u64> {
    let size = match range {
        Some(r) => r.end - r.start,
        None => std::fs::metadata(image)
            .with_context(|| format!("cannot read {image}"))?
            .len(),
    };
    ensure!(
        size > 0 && size % BLOCK as u64 == 0,
        "{image} is {size} bytes, not a whole number of {BLOCK}-byte blocks: dm-verity can't \
         cover it (mksquashfs pads to 4096 unless told -nopad)"
    );
    Ok(size)
}

/// Calls `each` with every 4096-byte block of `image` (of `range` of it: a partition), in
/// order; their number. An image whose size is not a whole number of blocks is refused
/// (dm-verity maps whole blocks only).
fn for_each_block(
    image: &Utf8Path,
    range: Option<&Range<u64>>,
    mut each: impl FnMut(&[u8]),
) -> Result<u64> {
    let size = image_size(image, range)?;
    let mut file = std::fs::File::open(image).with_context(|| format!("cannot read {image}"))?;
    file.seek(SeekFrom::Start(range.map_or(0, |r| r.start)))
        .with_context(|| format!("cannot read {image}"))?;
    let mut file = file.take(size);
    let mut chunk = vec![0u8; BLOCK * 256];
    let mut blocks = 0u64;
    loop {
        let mut filled = 0;
        while filled < chunk.len() {
            let n = file
                .read(&mut chunk[filled..])
                .with_context(|| format!("cannot read {image}"))?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        for block in chunk[..filled].chunks(BLOCK) {
            each(block);
            blocks += 1;
        }
        if filled < chunk.len() {
            break;
        }
    }
    ensure!(
        blocks * BLOCK as u64 == size,
        "{image} changed while it was read"
    );
    Ok(blocks)
}

/// The number of hash blocks of each level of the tree over `data_blocks` blocks, the lowest
/// level first: each level hashes the one below until one hash block remains (none for one data
/// block, whose digest is the root hash, as veritysetup does).
fn level_sizes(data_blocks: u64) -> Vec<u64> {
    let mut sizes = Vec::new();
    let mut below = data_blocks;
    while below > 1 {
        below = below.div_ceil(PER_BLOCK as u64);
        sizes.push(below);
    }
    sizes
}

/// The tree computed as the data blocks stream past, holding one hash block in progress per
/// level (a few KiB whatever the image's size) rather than every digest: each hash block is
/// handed to `done` (its level, lowest first, its index in the level, its bytes) as soon as it is
/// complete, and its digest goes up into the level above.
struct Levels<'s, F: FnMut(usize, u64, &[u8])> {
    salt: &'s [u8],
    /// per level: the hash block being filled, and how many of that level are done
    open: Vec<(Vec<u8>, u64)>,
    root: Option<[u8; DIGEST]>,
    done: F,
}

impl<'s, F: FnMut(usize, u64, &[u8])> Levels<'s, F> {
    fn new(salt: &'s [u8], levels: usize, done: F) -> Self {
        let open = (0..levels)
            .map(|_| (Vec::with_capacity(BLOCK), 0))
            .collect();
        Levels {
            salt,
            open,
            root: None,
            done,
        }
    }

    /// Adds a data block.
    fn data(&mut self, block: &[u8]) {
        self.digest(0, salted(self.salt, block));
    }

    /// Adds `digest` to `level` (the root hash, above the top level), closing its hash block
    /// when full.
    fn digest(&mut self, level: usize, digest: [u8; DIGEST]) {
        if level == self.open.len() {
            self.root = Some(digest);
            return;
        }
        self.open[level].0.extend_from_slice(&digest);
        if self.open[level].0.len() == BLOCK {
            self.close(level);
        }
    }

    fn close(&mut self, level: usize) {
        let (block, index) = &mut self.open[level];
        block.resize(BLOCK, 0);
        (self.done)(level, *index, block);
        *index += 1;
        let up = salted(self.salt, block);
        block.clear();
        self.digest(level + 1, up);
    }

    /// Closes the partial hash blocks, lowest first; the root hash.
    fn finish(mut self) -> [u8; DIGEST] {
        for level in 0..self.open.len() {
            if !self.open[level].0.is_empty() {
                self.close(level);
            }
        }
        self.root.expect("a root hash once every block is in")
    }
}

/// The tree over `image`'s blocks with `salt`, each hash block handed to `done` as it is
/// complete (see [`Levels`]); the root hash and the number of data blocks. The levels' sizes
/// come from the image's size, which [`for_each_block`] checks it still has at the end.
fn stream_tree(
    image: &Utf8Path,
    range: Option<&Range<u64>>,
    salt: &[u8],
    done: impl FnMut(usize, u64, &[u8]),
) -> Result<([u8; DIGEST], u64)> {
    let size = image_size(image, range)?;
    let mut levels = Levels::new(salt, level_sizes(size / BLOCK as u64).len(), done);
    let blocks = for_each_block(image, range, |block| levels.data(block))?;
    Ok((levels.finish(), blocks))
}

/// The tree over `image`'s blocks with `salt`: its levels from the top one down (each a run of
/// hash blocks) and the root hash.
fn levels(
    image: &Utf8Path,
    range: Option<&Range<u64>>,
    salt: &[u8],
) -> Result<(Vec<Vec<u8>>, [u8; DIGEST], u64)> {
    let mut levels: Vec<Vec<u8>> = Vec::new();
    let (root, blocks) = stream_tree(image, range, salt, |level, _, block| {
        if levels.len() <= level {
            levels.resize(level + 1, Vec::new());
        }
        levels[level].extend_from_slice(block);
    })?;
    levels.reverse();
    Ok((levels, root, blocks))
}

/// The superblock veritysetup writes (struct verity_sb, little-endian), padded to a block.
fn superblock(tree: &Tree) -> Vec<u8> {
    let mut sb = Vec::with_capacity(BLOCK);
    sb.extend_from_slice(SIGNATURE);
    sb.extend_from_slice(&1u32.to_le_bytes()); // version
    sb.extend_from_slice(&1u32.to_le_bytes()); // hash type: salt first
    sb.extend_from_slice(&tree.uuid);
    let mut algorithm = [0u8; 32];
    algorithm[..6].copy_from_slice(b"sha256");
    sb.extend_from_slice(&algorithm);
    sb.extend_from_slice(&(BLOCK as u32).to_le_bytes()); // data block size
    sb.extend_from_slice(&(BLOCK as u32).to_le_bytes()); // hash block size
    sb.extend_from_slice(&tree.data_blocks.to_le_bytes());
    sb.extend_from_slice(&(DIGEST as u16).to_le_bytes());
    sb.extend_from_slice(&[0u8; 6]);
    let mut salt = [0u8; 256];
    salt[..DIGEST].copy_from_slice(&tree.salt);
    sb.extend_from_slice(&salt);
    sb.resize(SUPERBLOCK_SIZE, 0);
    sb.resize(BLOCK, 0);
    sb
}

/// Salt and UUID from the image's own bytes: the same image gets the same tree.
fn salt_and_uuid(image: &Utf8Path, range: Option<&Range<u64>>) -> Result<([u8; DIGEST], [u8; 16])> {
    let mut h = Sha256::new();
    h.update(b"portable-service-builder verity salt\0");
    for_each_block(image, range, |block| h.update(block))?;
    let salt: [u8; DIGEST] = h.finalize().into();
    let mut uuid = [0u8; 16];
    uuid.copy_from_slice(&salted(b"portable-service-builder verity uuid\0", &salt)[..16]);
    uuid[6] = (uuid[6] & 0x0f) | 0x80; // RFC 9562 version 8: made by its own rule
    uuid[8] = (uuid[8] & 0x3f) | 0x80;
    Ok((salt, uuid))
}

/// The hash tree of `image` (of `range` of it: a partition), as the bytes of its hash
/// device: superblock, then the levels.
pub fn tree(image: &Utf8Path, range: Option<&Range<u64>>) -> Result<(Tree, Vec<u8>)> {
    let (salt, uuid) = salt_and_uuid(image, range)?;
    let (levels, root_hash, data_blocks) = levels(image, range, &salt)?;
    let tree = Tree {
        root_hash,
        salt,
        uuid,
        data_blocks,
    };
    let mut bytes = superblock(&tree);
    for level in levels {
        bytes.extend_from_slice(&level);
    }
    Ok((tree, bytes))
}

/// Writes `image`'s hash tree to `hash_file`; the tree's root hash and parameters.
pub fn format(image: &Utf8Path, hash_file: &Utf8Path) -> Result<Tree> {
    let (tree, bytes) = tree(image, None)?;
    let mut out =
        std::fs::File::create(hash_file).with_context(|| format!("cannot create {hash_file}"))?;
    out.write_all(&bytes)
        .and_then(|()| out.flush())
        .with_context(|| format!("cannot write {hash_file}"))?;
    Ok(tree)
}

/// Checks `image` against its hash tree and root hash as the kernel would, block by block:
/// the superblock's parameters, every digest of every level, and the root.
pub fn verify(image: &Utf8Path, hash_file: &Utf8Path, root_hash: &[u8; DIGEST]) -> Result<Tree> {
    verify_at(image, None, hash_file, None, hash_file.as_str(), root_hash)
}

/// [`verify`] of `range` of `image` (a partition) against the hash device in `hash_range` of
/// `hash_file` (the whole file when `None`), named `name` in messages. The stored tree is read
/// in pieces and only as far as the image's own tree reaches: what the file claims sizes
/// nothing, and the tree is computed as the image streams past (one hash block per level in
/// memory, whatever the image's size), each hash block compared with the stored one.
pub fn verify_at(
    image: &Utf8Path,
    range: Option<&Range<u64>>,
    hash_file: &Utf8Path,
    hash_range: Option<&Range<u64>>,
    name: &str,
    root_hash: &[u8; DIGEST],
) -> Result<Tree> {
    let mut file =
        std::fs::File::open(hash_file).with_context(|| format!("cannot read {hash_file}"))?;
    let (start, len) = match hash_range {
        Some(r) => (r.start, r.end.saturating_sub(r.start)),
        None => (0, file.metadata()?.len()),
    };
    let read_error = || format!("cannot read {name}");
    file.seek(SeekFrom::Start(start)).with_context(read_error)?;
    let mut sb = vec![0u8; BLOCK];
    ensure!(
        len >= BLOCK as u64 && file.read_exact(&mut sb).is_ok() && sb.starts_with(SIGNATURE),
        "{name} is not a dm-verity hash tree (no superblock)"
    );
    let u32_at = |o: usize| u32::from_le_bytes(sb[o..o + 4].try_into().unwrap());
    let (version, hash_type) = (u32_at(8), u32_at(12));
    let (data_size, hash_size) = (u32_at(64), u32_at(68));
    let data_blocks = u64::from_le_bytes(sb[72..80].try_into().unwrap());
    let salt_size = u16::from_le_bytes(sb[80..82].try_into().unwrap()) as usize;
    if version != 1 || hash_type != 1 || !sb[32..64].starts_with(b"sha256\0") {
        bail!("{name}: only version 1, hash type 1 and sha256 are read here");
    }
    ensure!(
        data_size as usize == BLOCK && hash_size as usize == BLOCK && salt_size <= 256,
        "{name}: block sizes {data_size}/{hash_size} (only {BLOCK} is read here)"
    );
    let salt = sb[88..88 + salt_size].to_vec();
    let blocks = image_size(image, range)? / BLOCK as u64;
    ensure!(
        blocks == data_blocks,
        "{image} has {blocks} blocks, its hash tree {name} covers {data_blocks}"
    );
    let sizes = level_sizes(blocks);
    let stored_len = len - BLOCK as u64;
    let changed = |at: u64| {
        anyhow::anyhow!(
            "{image} does not match its hash tree {name} (first difference at byte {at} of the \
             tree): the image or the tree was changed"
        )
    };
    // a hash partition may be larger than its tree (what follows is not read); a file is not
    let whole = sizes.iter().sum::<u64>() * BLOCK as u64;
    if stored_len < whole || (hash_range.is_none() && stored_len > whole) {
        return Err(changed(BLOCK as u64 + whole.min(stored_len)));
    }
    // where each level starts in the hash device: after the superblock, the top level first
    let starts: Vec<u64> = (0..sizes.len())
        .map(|level| (1 + sizes[level + 1..].iter().sum::<u64>()) * BLOCK as u64)
        .collect();
    // each hash block is compared with the stored one as it is computed; the first difference
    // in the tree's order is reported, as a comparison of the whole tree would
    let mut first_difference: Option<u64> = None;
    let mut read_failed = None;
    let mut stored = vec![0u8; BLOCK];
    let (computed_root, _) = stream_tree(image, range, &salt, |level, index, block| {
        let at = starts[level] + index * BLOCK as u64;
        let read = file
            .seek(SeekFrom::Start(start + at))
            .and_then(|_| file.read_exact(&mut stored));
        if let Err(e) = read {
            read_failed.get_or_insert(e);
        } else if let Some(pos) = stored.iter().zip(block).position(|(a, b)| a != b) {
            let at = at + pos as u64;
            first_difference = Some(first_difference.map_or(at, |f| f.min(at)));
        }
    })?;
    if let Some(e) = read_failed {
        return Err(e).with_context(read_error);
    }
    if let Some(at) = first_difference {
        return Err(changed(at));
    }
    ensure!(
        computed_root == *root_hash,
        "{image} does not match the root hash {} (its blocks and hash tree give {}): the image, \
         its tree or the root hash was changed",
        hex(root_hash),
        hex(&computed_root)
    );
    let mut tree = Tree {
        root_hash: computed_root,
        salt: [0; DIGEST],
        uuid: sb[16..32].try_into().unwrap(),
        data_blocks,
    };
    tree.salt[..salt_size.min(DIGEST)].copy_from_slice(&salt[..salt_size.min(DIGEST)]);
    Ok(tree)
}

/// The most read of a root hash or signature file beside an image: a root hash is 64 hex
/// digits, a signature of one signer a few KiB.
pub const MAX_SIDECAR: u64 = 1 << 20;

/// The bytes of `path`, a root hash or signature beside an image, read only if it is no larger
/// than [`MAX_SIDECAR`] (a larger one is not one, and is not read whole).
pub fn read_sidecar(path: &Utf8Path) -> Result<Vec<u8>> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot read {path}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_SIDECAR + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {path}"))?;
    ensure!(
        bytes.len() as u64 <= MAX_SIDECAR,
        "{path} is over {MAX_SIDECAR} bytes: not a root hash or a signature"
    );
    Ok(bytes)
}

/// [`read_sidecar`] of a text file.
pub fn read_sidecar_text(path: &Utf8Path) -> Result<String> {
    String::from_utf8(read_sidecar(path)?).with_context(|| format!("{path} is not text"))
}

/// The files systemd looks for beside `NAME.raw`: `NAME.verity`, `NAME.roothash` and
/// `NAME.roothash.p7s`.
pub fn sidecars(image: &camino::Utf8Path) -> [camino::Utf8PathBuf; 3] {
    let stem = image.with_extension("");
    ["verity", "roothash", "roothash.p7s"]
        .map(|ext| camino::Utf8PathBuf::from(format!("{stem}.{ext}")))
}
