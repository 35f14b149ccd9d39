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

/// How the merged image's metadata blocks are compressed: the image's compressor, within what
/// the kernel's decoder of that image allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoder {
    compression: u16,
    /// The largest LZMA dictionary (xz) the kernel decodes with: the compressor options' dictionary
    /// size, or the block size (at least 8 KiB) without options. A stream that asks for more is
    /// refused (XZ_MEMLIMIT_ERROR), so an xz image of 4 KiB blocks with `-Xbcj` (options saying
    /// 4 KiB) needs metadata compressed with a 4 KiB dictionary.
    dict: u32,
}

impl Encoder {
    /// The encoder of an image of `compression` and `block_size`, with the compressor options
    /// block `options` as it is on disk (its 2-byte header first; empty without one).
    pub fn new(compression: u16, block_size: u32, options: &[u8]) -> Encoder {
        let mut dict = block_size.max(METADATA_SIZE as u32);
        if compression == XZ {
            if let Some(d) = options.get(2..6) {
                dict = u32::from_le_bytes(d.try_into().expect("4 bytes"));
            }
        }
        Encoder {
            compression,
            // LZMA's smallest dictionary is 4 KiB; a metadata block needs no more than itself
            dict: dict.clamp(4096, METADATA_SIZE as u32),
        }
    }

    /// `block` compressed, or `None` where that doesn't make it smaller (it is then stored as it
    /// is, as mksquashfs does) or the encoder failed (a block stored as it is is as valid).
    pub fn compress(&self, block: &[u8]) -> Option<Vec<u8>> {
        let out = match self.compression {
            GZIP => miniz_oxide::deflate::compress_to_vec_zlib(block, 9),
            LZMA | XZ => lzma(self.compression, self.dict, block).ok()?,
            LZ4 => lz4_flex::block::compress(block),
            ZSTD => zstd(block)?,
            _ => return None,
        };
        (out.len() < block.len()).then_some(out)
    }

    /// One metadata block: its header (its length, bit 15 set if stored as it is) and its bytes.
    pub fn block(&self, data: &[u8]) -> Vec<u8> {
        debug_assert!(data.len() <= METADATA_SIZE);
        let (header, bytes) = match self.compress(data) {
            Some(c) => (c.len() as u16, c),
            None => (0x8000 | data.len() as u16, data.to_vec()),
        };
        let mut out = header.to_le_bytes().to_vec();
        out.extend(bytes);
        out
    }
}

/// A zstd frame of `block` whose window is 8 KiB. ruzstd's frame header asks for a 128 KiB
/// window whatever the input; the kernel decodes an image's blocks with a window of its block
/// size (at least 8 KiB) and refuses a frame that asks for more (a memory_allocation error: an
/// image of blocks under 128 KiB would not mount). The frame holds at most 8 KiB, so no match
/// reaches further back and an 8 KiB window is the truth; `None` if the header is not the one
/// expected (the block is then stored as it is).
fn zstd(block: &[u8]) -> Option<Vec<u8>> {
    let mut out =
        ruzstd::encoding::compress_to_vec(block, ruzstd::encoding::CompressionLevel::Fastest);
    // magic, then a descriptor with neither content size nor single segment nor dictionary id
    // (a window descriptor follows), then the window descriptor
    let magic = 0xFD2F_B528u32.to_le_bytes();
    if out.len() < 6 || out[..4] != magic || out[4] & 0b1110_0011 != 0 {
        return None;
    }
    // exponent 3, mantissa 0: 2^(10 + 3) bytes
    out[5] = 3 << 3;
    Some(out)
}

fn lzma(compression: u16, dict: u32, block: &[u8]) -> Result<Vec<u8>> {
    let mut options = lzma_rust2::LzmaOptions::with_preset(9);
    // the kernel's xz decoder refuses a stream whose dictionary is larger than the image's
    options.dict_size = dict;
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

    fn text() -> Vec<u8> {
        (0..METADATA_SIZE as u32)
            .flat_map(|i| (i / 7).to_le_bytes())
            .take(METADATA_SIZE)
            .collect()
    }

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
            let packed = Encoder::new(c, 1 << 20, &[])
                .compress(&data)
                .unwrap_or_else(|| panic!("{c} compresses text"));
            assert!(packed.len() < data.len() / 2, "{c}: {} bytes", packed.len());
            assert_eq!(decompress(c, &packed).unwrap(), data, "{c}");
        }
    }

    #[test]
    fn zstd_frames_ask_for_an_8k_window_and_read_back() {
        for block_size in [4096, 65536, 1 << 20] {
            let e = Encoder::new(ZSTD, block_size, &[]);
            let data = text();
            let c = e.compress(&data).expect("compresses");
            // no content size, no single segment: the window descriptor is byte 5, 2^13
            assert_eq!((c[4] & 0b1110_0011, c[5]), (0, 3 << 3));
            assert_eq!(decompress(ZSTD, &c).unwrap(), data);
        }
    }

    #[test]
    fn a_block_that_does_not_shrink_is_stored_as_it_is() {
        let random: Vec<u8> = (0..300u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for c in [GZIP, XZ, ZSTD] {
            let b = Encoder::new(c, 1 << 20, &[]).block(&random);
            assert_eq!(u16::from_le_bytes([b[0], b[1]]), 0x8000 | 300, "{c}");
            assert_eq!(&b[2..], &random[..]);
        }
        // lzo has no encoder here: stored as it is, readable by any reader
        let b = Encoder::new(3, 1 << 20, &[]).block(&table_like());
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

    #[test]
    fn xz_dictionaries_stay_within_the_images() {
        // options: header, dictionary size, filters
        let mut options = vec![0x08, 0x80];
        options.extend(4096u32.to_le_bytes());
        options.extend(1u32.to_le_bytes());
        assert_eq!(Encoder::new(XZ, 4096, &options).dict, 4096);
        assert_eq!(Encoder::new(XZ, 4096, &[]).dict, 8192);
        assert_eq!(Encoder::new(XZ, 1 << 20, &[]).dict, 8192);
        let data = text();
        let c = Encoder::new(XZ, 4096, &options).compress(&data).unwrap();
        assert_eq!(decompress(XZ, &c).unwrap(), data);
    }

    /// mksquashfs's `-Xbcj` tries each filter on every block, metadata too: a part's fragment
    /// table may come BCJ-filtered.
    #[test]
    fn bcj_filtered_xz_blocks_read_back() {
        use lzma_rust2::filter::FilterType;
        // fragment entries whose bytes have x86 call opcodes and ARM BL words in them
        let data: Vec<u8> = (0..512u64)
            .flat_map(|i| {
                let mut e = (0xe8_0000_00e8 + i * 4099).to_le_bytes().to_vec();
                e.extend((0xeb00_0000u32 | i as u32).to_le_bytes());
                e.extend(0u32.to_le_bytes());
                e
            })
            .collect();
        for filter in [FilterType::BcjX86, FilterType::BcjArm] {
            let mut xz = lzma_rust2::XzOptions::with_preset(6);
            xz.set_check_sum_type(lzma_rust2::CheckType::Crc32);
            xz.prepend_pre_filter(filter, 0);
            let mut out = Vec::new();
            let mut w = lzma_rust2::XzWriter::new(&mut out, xz).unwrap();
            w.write_all(&data).unwrap();
            w.finish().unwrap();
            assert_eq!(decompress(XZ, &out).unwrap(), data, "{filter:?}");
        }
    }
}
