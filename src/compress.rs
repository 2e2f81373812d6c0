//! LZ4 frames exactly as Litestream v0.3.13 writes them (pure).
//!
//! One frame per object; FLG `0x64` (independent blocks, content checksum, no block
//! checksum), BD `0x70` (4 MiB blocks). The reader accepts any valid LZ4 frame, verifies the
//! content checksum when present, and rejects trailing data after the first frame (Litestream
//! silently truncates there; a truncated database is worse than an error).
use std::io::{Read, Write};

use lz4_flex::frame::{BlockMode, BlockSize, FrameDecoder, FrameEncoder, FrameInfo};

fn frame_info() -> FrameInfo {
    // Never set block checksums: Litestream's lz4 (pierrec v4.1.18) rejects them.
    FrameInfo::new()
        .block_size(BlockSize::Max4MB)
        .block_mode(BlockMode::Independent)
        .content_checksum(true)
}

/// A streaming encoder writing one Litestream-compatible frame into `w`.
pub fn encoder<W: Write>(w: W) -> FrameEncoder<W> {
    FrameEncoder::with_frame_info(frame_info(), w)
}

/// The block size announced in the frame header (BD `0x70`).
const MAX_BLOCK: usize = 4 << 20;

/// Compresses `data` into one Litestream-compatible LZ4 frame.
///
/// Up to one block (4 MiB, nearly every WAL segment) the frame is assembled here around one
/// `lz4_flex::block` call: lz4_flex's `FrameEncoder` reserves a 4 MiB input and a 4 MiB
/// output buffer for every frame, an mmap/munmap pair and a copy per segment, which
/// showed up per commit in `strace` and callgrind profiles. Larger inputs take the encoder.
pub fn compress(data: &[u8]) -> Vec<u8> {
    if !data.is_empty() && data.len() <= MAX_BLOCK {
        return compress_one_block(data);
    }
    let mut enc = encoder(Vec::with_capacity(data.len() / 2 + 64));
    // Writing into a Vec cannot fail.
    enc.write_all(data).expect("write to Vec");
    enc.finish().expect("finish into Vec")
}

/// One frame holding `data` (1..=4 MiB) as a single independent block, with the same
/// header and content checksum as [`encoder`] writes: magic, FLG, BD, header checksum; the
/// block (stored uncompressed when compression does not make it smaller, as the LZ4 frame
/// format allows and lz4_flex's encoder does); the end mark; the xxHash32 of the content.
fn compress_one_block(data: &[u8]) -> Vec<u8> {
    use std::hash::Hasher;
    const FLG: u8 = 0x64;
    const BD: u8 = 0x70;
    let xxh32 = |bytes: &[u8]| {
        let mut h = twox_hash::XxHash32::with_seed(0);
        h.write(bytes);
        h.finish() as u32
    };
    let bound = lz4_flex::block::get_maximum_output_size(data.len());
    let mut out = vec![0u8; 7 + 4 + bound + 4 + 4];
    out[..4].copy_from_slice(&0x184D_2204u32.to_le_bytes());
    out[4] = FLG;
    out[5] = BD;
    out[6] = (xxh32(&[FLG, BD]) >> 8) as u8;
    let body = 7 + 4;
    let n = lz4_flex::block::compress_into(data, &mut out[body..])
        .expect("output sized by get_maximum_output_size");
    let mut end = if n < data.len() {
        out[7..body].copy_from_slice(&(n as u32).to_le_bytes());
        body + n
    } else {
        out[7..body].copy_from_slice(&(data.len() as u32 | 0x8000_0000).to_le_bytes());
        out[body..body + data.len()].copy_from_slice(data);
        body + data.len()
    };
    out[end..end + 4].copy_from_slice(&0u32.to_le_bytes());
    end += 4;
    out[end..end + 4].copy_from_slice(&xxh32(data).to_le_bytes());
    out.truncate(end + 4);
    out
}

/// Why a stored object could not be decompressed.
#[derive(Debug, thiserror::Error)]
pub enum DecompressError {
    #[error("not an lz4 frame (bad magic number)")]
    BadMagic,
    #[error("lz4: {0}")]
    Lz4(String),
    #[error("{0} bytes of trailing data after the lz4 frame")]
    Trailing(usize),
    #[error("decompressed size exceeds the limit of {0} bytes")]
    TooLarge(u64),
}

const LZ4_MAGIC: [u8; 4] = [0x04, 0x22, 0x4d, 0x18];

/// Decompresses one LZ4 frame, refusing more than `limit` decompressed bytes.
pub fn decompress(data: &[u8], limit: u64) -> Result<Vec<u8>, DecompressError> {
    if data.len() < 4 || data[..4] != LZ4_MAGIC {
        return Err(DecompressError::BadMagic);
    }
    // The decoder takes an end of input where a block header is due as the end of the
    // frame, so a truncated object would decode "successfully" into a short file. Walk the
    // frame's structure first and insist on the end mark (and checksum, when flagged).
    let frame_len = frame_len(data)?;
    if frame_len < data.len() {
        return Err(DecompressError::Trailing(data.len() - frame_len));
    }
    let mut cursor = std::io::Cursor::new(data);
    let mut out = Vec::new();
    {
        let dec = FrameDecoder::new(&mut cursor);
        let mut limited = dec.take(limit + 1);
        limited
            .read_to_end(&mut out)
            .map_err(|e| DecompressError::Lz4(e.to_string()))?;
    }
    if out.len() as u64 > limit {
        return Err(DecompressError::TooLarge(limit));
    }
    // lz4_flex's FrameDecoder reads concatenated frames as one stream; a reader stopping
    // early leaves bytes. Anything not consumed is data we would be ignoring.
    if (cursor.position() as usize) < frame_len {
        return Err(DecompressError::Lz4("frame not fully consumed".into()));
    }
    Ok(out)
}

/// Length in bytes of the complete LZ4 frame at the start of `data`.
fn frame_len(data: &[u8]) -> Result<usize, DecompressError> {
    let short = || DecompressError::Lz4("truncated frame".into());
    let flg = *data.get(4).ok_or_else(short)?;
    if flg >> 6 != 0b01 {
        return Err(DecompressError::Lz4(format!(
            "unsupported frame version in FLG {flg:#04x}"
        )));
    }
    let block_checksum = flg & 0x10 != 0;
    let content_size = flg & 0x08 != 0;
    let content_checksum = flg & 0x04 != 0;
    let dict_id = flg & 0x01 != 0;
    // magic(4) FLG(1) BD(1) [content size(8)] [dict id(4)] HC(1)
    let mut at = 6 + if content_size { 8 } else { 0 } + if dict_id { 4 } else { 0 } + 1;
    loop {
        let word = data.get(at..at + 4).ok_or_else(short)?;
        at += 4;
        let word = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        if word == 0 {
            break;
        }
        let len = (word & 0x7fff_ffff) as usize + if block_checksum { 4 } else { 0 };
        at = at
            .checked_add(len)
            .filter(|&e| e <= data.len())
            .ok_or_else(short)?;
    }
    if content_checksum {
        at += 4;
    }
    if at > data.len() {
        return Err(short());
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_matches_litestream() {
        let out = compress(b"hello hello hello hello");
        assert_eq!(&out[..7], &[0x04, 0x22, 0x4d, 0x18, 0x64, 0x70, 0xb9]);
        assert_eq!(
            decompress(&out, 1 << 20).unwrap(),
            b"hello hello hello hello"
        );
    }

    /// The hand-built single-block frame must read back like the encoder's, through our
    /// decoder and lz4_flex's own, for compressible, incompressible and boundary sizes.
    #[test]
    fn one_block_frame_matches_encoder() {
        let mut seed = 0x2545_f491_u32;
        let mut noise = |n: usize| -> Vec<u8> {
            (0..n)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    seed as u8
                })
                .collect()
        };
        let cases: Vec<Vec<u8>> = vec![
            vec![1],
            b"hello hello hello hello".to_vec(),
            noise(33),
            noise(4120),
            vec![0u8; 4120 * 10],
            noise(65_536),
            noise(MAX_BLOCK),
            (0..MAX_BLOCK as u32).map(|i| (i / 3) as u8).collect(),
        ];
        for data in cases {
            let ours = compress(&data);
            let mut enc = encoder(Vec::new());
            enc.write_all(&data).unwrap();
            let theirs = enc.finish().unwrap();
            // Same header (magic, FLG, BD, header checksum) and content checksum.
            assert_eq!(ours[..7], theirs[..7], "len {}", data.len());
            assert_eq!(ours[ours.len() - 8..], theirs[theirs.len() - 8..]);
            assert_eq!(decompress(&ours, 1 << 30).unwrap(), data);
            let mut back = Vec::new();
            FrameDecoder::new(&ours[..]).read_to_end(&mut back).unwrap();
            assert_eq!(back, data, "lz4_flex reads len {}", data.len());
        }
    }

    #[test]
    fn round_trip_large_and_empty() {
        let data: Vec<u8> = (0..9_000_000u32)
            .map(|i| (i % 251) as u8 ^ (i >> 13) as u8)
            .collect();
        let out = compress(&data);
        assert_eq!(decompress(&out, 1 << 30).unwrap(), data);
        assert_eq!(decompress(&compress(b""), 10).unwrap(), b"");
    }

    #[test]
    fn rejects_garbage_corruption_and_limits() {
        assert!(matches!(
            decompress(b"SQLite format 3", 100),
            Err(DecompressError::BadMagic)
        ));
        let data = vec![7u8; 100_000];
        let mut out = compress(&data);
        assert!(matches!(
            decompress(&out, 1000),
            Err(DecompressError::TooLarge(1000))
        ));
        // Flip a byte of the content checksum.
        let n = out.len();
        out[n - 1] ^= 0xff;
        assert!(decompress(&out, 1 << 20).is_err());
        // Truncated.
        let good = compress(&data);
        for cut in [1, 4, 6, 9, good.len() / 2] {
            assert!(
                decompress(&good[..good.len() - cut], 1 << 20).is_err(),
                "cut {cut}"
            );
        }
        // Two frames concatenated: Litestream reads only the first; we refuse.
        let mut two = compress(b"first");
        two.extend_from_slice(&compress(b"second"));
        assert!(matches!(
            decompress(&two, 1 << 20),
            Err(DecompressError::Trailing(_))
        ));
    }

    #[test]
    fn accepts_other_valid_frame_settings() {
        // Linked blocks, 64 KiB, no content checksum: Litestream accepts these, so must we.
        let fi = FrameInfo::new()
            .block_size(BlockSize::Max64KB)
            .block_mode(BlockMode::Linked);
        let data: Vec<u8> = (0..300_000u32).map(|i| (i / 7) as u8).collect();
        let mut enc = FrameEncoder::with_frame_info(fi, Vec::new());
        enc.write_all(&data).unwrap();
        let out = enc.finish().unwrap();
        assert_eq!(decompress(&out, 1 << 20).unwrap(), data);
    }
}
