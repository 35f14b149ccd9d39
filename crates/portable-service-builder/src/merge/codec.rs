//! Metadata blocks (at most 8 KiB each) in and out of the image's compressor: squashfs ids
//! 1 gzip (zlib), 2 lzma, 4 xz, 5 lz4, 6 zstd; lzo (3) is neither read nor written.
//!
//! Only metadata goes through here: the fragment table of a part is read, and the merged
//! image's tables are written compressed, as mksquashfs writes them. Compressed, they are smaller
//! and they no longer spell the store paths' names, which Nix would otherwise find in the image
//! and take for references (the image would keep its whole closure alive). The data blocks are
//! never touched.

use super::METADATA_SIZE;
use anyhow::{bail, ensure, Result};
use std::io::{Read, Write};

const GZIP: u16 = 1;
const LZMA: u16 = 2;
const XZ: u16 = 4;
const LZ4: u16 = 5;
const ZSTD: u16 = 6;

/// Whether the merge can read and write metadata of this compressor.
pub fn supported(compression: u16) -> bool {
    [GZIP, LZMA, XZ, LZ4, ZSTD].contains(&compression)
}

pub fn decompress(compression: u16, block: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(METADATA_SIZE);
    let limit = METADATA_SIZE as u64 + 1;
    match compression {
        GZIP => {
            out = miniz_oxide::inflate::decompress_to_vec_zlib_with_limit(block, METADATA_SIZE)
                .map_err(|e| anyhow::anyhow!("zlib: {e:?}"))?
        }
        LZMA => {
            let reader = lzma_rust2::LzmaReader::new_mem_limit(block, 1 << 20, None)?;
            reader.take(limit).read_to_end(&mut out)?;
        }
        XZ => {
            let reader = lzma_rust2::XzReader::new(block, false);
            reader.take(limit).read_to_end(&mut out)?;
        }
        LZ4 => out = lz4_flex::block::decompress(block, METADATA_SIZE)?,
        ZSTD => {
            let decoder = ruzstd::decoding::StreamingDecoder::new(block)?;
            decoder.take(limit).read_to_end(&mut out)?;
        }
        other => bail!("can't read metadata of compressor {other} (lzo): choose another"),
    }
    ensure!(
        out.len() <= METADATA_SIZE,
        "a metadata block of more than 8 KiB"
    );
    Ok(out)
}

/// `block` compressed, or `None` where that doesn't make it smaller (it is then stored as it
/// is, as mksquashfs does) or the encoder failed (a block stored as it is is as valid).
pub fn compress(compression: u16, block: &[u8]) -> Option<Vec<u8>> {
    let out = match compression {
        GZIP => miniz_oxide::deflate::compress_to_vec_zlib(block, 9),
        LZMA | XZ => lzma(compression, block).ok()?,
        LZ4 => lz4_flex::block::compress(block),
        ZSTD => {
            ruzstd::encoding::compress_to_vec(block, ruzstd::encoding::CompressionLevel::Fastest)
        }
        _ => return None,
    };
    (out.len() < block.len()).then_some(out)
}

/// One metadata block: its header (its length, bit 15 set if stored as it is) and its bytes.
pub fn block(compression: u16, data: &[u8]) -> Vec<u8> {
    debug_assert!(data.len() <= METADATA_SIZE);
    let (header, bytes) = match compress(compression, data) {
        Some(c) => (c.len() as u16, c),
        None => (0x8000 | data.len() as u16, data.to_vec()),
    };
    let mut out = header.to_le_bytes().to_vec();
    out.extend(bytes);
    out
}

fn lzma(compression: u16, block: &[u8]) -> Result<Vec<u8>> {
    let mut options = lzma_rust2::LzmaOptions::with_preset(9);
    // the kernel's xz decoder refuses a stream whose dictionary is larger than the image's; a
    // metadata block needs no more than itself
    options.dict_size = METADATA_SIZE as u32;
    let mut out = Vec::new();
    if compression == XZ {
        let mut xz = lzma_rust2::XzOptions {
            lzma_options: options,
            ..Default::default()
        };
        // mksquashfs's check; the kernel's decoder knows it
        xz.set_check_sum_type(lzma_rust2::CheckType::Crc32);
        let mut w = lzma_rust2::XzWriter::new(&mut out, xz)?;
        w.write_all(block)?;
        w.finish()?;
    } else {
        let mut w =
            lzma_rust2::LzmaWriter::new_use_header(&mut out, &options, Some(block.len() as u64))?;
        w.write_all(block)?;
        w.finish()?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Text like a directory table's: names that repeat, numbers that don't.
    fn table_like() -> Vec<u8> {
        (0..400)
            .flat_map(|i: u32| format!("{i:08}-python3-{}-lib ", i * 7).into_bytes())
            .take(METADATA_SIZE)
            .collect()
    }

    #[test]
    fn every_compressor_s_blocks_come_back_and_are_smaller() {
        let data = table_like();
        for c in [GZIP, LZMA, XZ, LZ4, ZSTD] {
            let packed = compress(c, &data).unwrap_or_else(|| panic!("{c} compresses text"));
            assert!(packed.len() < data.len() / 2, "{c}: {} bytes", packed.len());
            assert_eq!(decompress(c, &packed).unwrap(), data, "{c}");
        }
    }

    #[test]
    fn a_block_that_does_not_shrink_is_stored_as_it_is() {
        let random: Vec<u8> = (0..300u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for c in [GZIP, XZ, ZSTD] {
            let b = block(c, &random);
            assert_eq!(u16::from_le_bytes([b[0], b[1]]), 0x8000 | 300, "{c}");
            assert_eq!(&b[2..], &random[..]);
        }
        // lzo has no encoder here: stored as it is, readable by any reader
        let b = block(3, &table_like());
        assert_eq!(u16::from_le_bytes([b[0], b[1]]) & 0x8000, 0x8000);
    }

    #[test]
    fn a_block_that_inflates_past_8_kib_is_refused() {
        let big = vec![b'a'; 3 * METADATA_SIZE];
        let packed = miniz_oxide::deflate::compress_to_vec_zlib(&big, 9);
        assert!(decompress(GZIP, &packed).is_err());
        let packed = lz4_flex::block::compress(&big);
        assert!(decompress(LZ4, &packed).is_err());
    }
}
