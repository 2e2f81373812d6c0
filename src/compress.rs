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

/// The first four bytes of an age file (`age-encryption.org/v1`).
const AGE_START: &[u8; 4] = b"age-";

/// The error for a body that does not start with the LZ4 magic: an age file says so.
fn bad_magic(start: &[u8]) -> DecompressError {
    if start.starts_with(AGE_START) {
        DecompressError::AgeEncrypted
    } else {
        DecompressError::BadMagic
    }
}

/// Why a stored object could not be decompressed.
#[derive(Debug, thiserror::Error)]
pub enum DecompressError {
    #[error("not an lz4 frame (bad magic number)")]
    BadMagic,
    /// The object is an age file (it starts with `age-`): an encrypted replica read
    /// without its key.
    #[error(
        "the object is age-encrypted: add the replica's age: identities: to the config and \
         restore with -config (a replica URL alone cannot carry a key)"
    )]
    AgeEncrypted,
    #[error("lz4: {0}")]
    Lz4(String),
    #[error("{0} bytes of trailing data after the lz4 frame")]
    Trailing(usize),
    #[error("decompressed size exceeds the limit of {0} bytes")]
    TooLarge(u64),
}

const LZ4_MAGIC: [u8; 4] = [0x04, 0x22, 0x4d, 0x18];

/// Compressed objects up to this size are decoded block by block in memory
/// ([`decompress_small`]) rather than by the streaming decoder, whose 4 MiB block buffers
/// are zeroed for every frame: for a long tail of tiny WAL segments that zeroing was
/// almost all of the restore's work (callgrind: 97% of instructions in `memset`).
const SMALL_FRAME: usize = 256 << 10;

/// Decompresses one LZ4 frame, refusing more than `limit` decompressed bytes.
pub fn decompress(data: &[u8], limit: u64) -> Result<Vec<u8>, DecompressError> {
    if data.len() <= SMALL_FRAME {
        return decompress_small(data, limit);
    }
    decompress_streaming(data, limit)
}

fn decompress_streaming(data: &[u8], limit: u64) -> Result<Vec<u8>, DecompressError> {
    let mut r = FrameReader::new(data, limit);
    let mut out = Vec::new();
    r.read_to_end(&mut out).map_err(DecompressError::from_io)?;
    Ok(out)
}

/// [`decompress`] of a whole frame in memory with lz4_flex's block decoder: each block's
/// output buffer is sized by what its compressed length can expand to (LZ4 expands at most
/// about 255 times), not by the frame's maximum block size. Same checks as the streaming
/// decoder: header checksum, block and content checksums, content size, truncation,
/// trailing data, limit.
fn decompress_small(data: &[u8], limit: u64) -> Result<Vec<u8>, DecompressError> {
    use twox_hash::XxHash32;
    let lz4 = |m: &str| DecompressError::Lz4(m.to_string());
    let truncated = || lz4("truncated frame");
    if data.len() < 4 || data[..4] != LZ4_MAGIC {
        return Err(bad_magic(data));
    }
    let flg = *data.get(4).ok_or_else(truncated)?;
    let bd = *data.get(5).ok_or_else(truncated)?;
    if flg >> 6 != 0b01 {
        return Err(DecompressError::Lz4(format!(
            "unsupported frame version in FLG {flg:#04x}"
        )));
    }
    if flg & 0x02 != 0 || bd & 0x8f != 0 {
        return Err(lz4("reserved bits set in the frame descriptor"));
    }
    if flg & 0x01 != 0 {
        return Err(lz4("lz4 dictionaries are not supported"));
    }
    let linked = flg & 0x20 == 0;
    let block_checksum = flg & 0x10 != 0;
    let content_size = flg & 0x08 != 0;
    let content_checksum = flg & 0x04 != 0;
    let max_block: usize = match (bd >> 4) & 0x07 {
        4 => 64 << 10,
        5 => 256 << 10,
        6 => 1 << 20,
        7 => 4 << 20,
        n => return Err(DecompressError::Lz4(format!("unsupported block size {n}"))),
    };
    let mut at = 6;
    let expected_len = if content_size {
        let b = data.get(at..at + 8).ok_or_else(truncated)?;
        at += 8;
        Some(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    } else {
        None
    };
    let hc = *data.get(at).ok_or_else(truncated)?;
    if (XxHash32::oneshot(0, &data[4..at]) >> 8) as u8 != hc {
        return Err(lz4("frame header checksum mismatch"));
    }
    at += 1;
    let mut out: Vec<u8> = Vec::new();
    let word = |at: usize| -> Result<u32, DecompressError> {
        let b = data.get(at..at + 4).ok_or_else(truncated)?;
        Ok(u32::from_le_bytes(b.try_into().expect("4 bytes")))
    };
    loop {
        let w = word(at)?;
        at += 4;
        if w == 0 {
            break;
        }
        let len = (w & 0x7fff_ffff) as usize;
        if len > max_block {
            return Err(lz4("block larger than the frame's block size"));
        }
        let block = data.get(at..at + len).ok_or_else(truncated)?;
        at += len;
        if block_checksum {
            if word(at)? != XxHash32::oneshot(0, block) {
                return Err(lz4("block checksum mismatch"));
            }
            at += 4;
        }
        if w & 0x8000_0000 != 0 {
            out.extend_from_slice(block);
        } else {
            let start = out.len();
            let bound = len.saturating_mul(256).saturating_add(64).min(max_block);
            let dict_start = start.saturating_sub(64 << 10);
            let try_decode = |bound: usize, out: &mut Vec<u8>| {
                out.resize(start + bound, 0);
                let (prev, dst) = out.split_at_mut(start);
                if linked && start > 0 {
                    lz4_flex::block::decompress_into_with_dict(block, dst, &prev[dict_start..])
                } else {
                    lz4_flex::block::decompress_into(block, dst)
                }
            };
            let n = match try_decode(bound, &mut out) {
                Ok(n) => Ok(n),
                // The expansion bound is generous; the frame's block size is the real one.
                Err(_) if bound < max_block => try_decode(max_block, &mut out),
                Err(e) => Err(e),
            }
            .map_err(|e| DecompressError::Lz4(e.to_string()))?;
            out.truncate(start + n);
        }
        if out.len() as u64 > limit {
            return Err(DecompressError::TooLarge(limit));
        }
    }
    if content_checksum {
        if word(at)? != XxHash32::oneshot(0, &out) {
            return Err(lz4("content checksum mismatch"));
        }
        at += 4;
    }
    if let Some(n) = expected_len
        && n != out.len() as u64
    {
        return Err(DecompressError::Lz4(format!(
            "content size {} does not match the {n} bytes the frame announces",
            out.len()
        )));
    }
    if at < data.len() {
        return Err(DecompressError::Trailing(data.len() - at));
    }
    Ok(out)
}

impl DecompressError {
    /// The decompression error an [`std::io::Error`] from a [`FrameReader`] carries, or
    /// `Lz4` with the I/O error's text (a failure of the underlying reader).
    pub fn from_io(e: std::io::Error) -> DecompressError {
        if !e.get_ref().is_some_and(|i| i.is::<DecompressError>()) {
            return DecompressError::Lz4(e.to_string());
        }
        match e.into_inner().map(|i| i.downcast::<DecompressError>()) {
            Some(Ok(d)) => *d,
            _ => DecompressError::Lz4("internal: lost decompression error".into()),
        }
    }

    fn into_io(self) -> std::io::Error {
        std::io::Error::other(self)
    }
}

/// A streaming reader of exactly one LZ4 frame from `R`, with the guarantees of
/// [`decompress`]: the frame must be complete (a truncated frame is an error, not a short
/// read), its content checksum is verified when flagged, nothing may follow it, and at most
/// `limit` bytes are produced. Memory is bounded by one block (4 MiB for Litestream's frames).
///
/// Errors are [`std::io::Error`]s carrying a [`DecompressError`] (see
/// [`DecompressError::from_io`]) or the underlying reader's own error.
pub struct FrameReader<R: Read> {
    dec: FrameDecoder<FrameGuard<R>>,
    limit: u64,
    produced: u64,
    done: bool,
}

impl<R: Read> FrameReader<R> {
    /// Reads the frame at the start of `r`.
    pub fn new(r: R, limit: u64) -> FrameReader<R> {
        FrameReader {
            dec: FrameDecoder::new(FrameGuard::new(r)),
            limit,
            produced: 0,
            done: false,
        }
    }

    /// Decompressed bytes produced so far.
    pub fn produced(&self) -> u64 {
        self.produced
    }

    /// The end of the decoder's output: the frame must be complete and nothing may follow.
    fn finish(&mut self) -> std::io::Result<()> {
        let guard = self.dec.get_mut();
        if guard.state != GuardState::Done {
            return Err(DecompressError::Lz4("truncated frame".into()).into_io());
        }
        // Count (a bounded amount of) what follows the frame.
        let mut trailing = 0usize;
        let mut buf = [0u8; 8192];
        while trailing < (1 << 20) {
            match guard.inner.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => trailing += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if trailing > 0 {
            return Err(DecompressError::Trailing(trailing).into_io());
        }
        Ok(())
    }
}

impl<R: Read> Read for FrameReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        let n = match self.dec.read(buf) {
            Ok(n) => n,
            Err(e) => {
                if e.get_ref()
                    .is_some_and(|i| i.is::<lz4_flex::frame::Error>())
                {
                    return Err(DecompressError::Lz4(e.to_string()).into_io());
                }
                // The guard's own errors (bad magic, truncation) and the underlying
                // reader's errors pass through as they are.
                return Err(e);
            }
        };
        if n == 0 {
            self.finish()?;
            self.done = true;
            return Ok(0);
        }
        self.produced += n as u64;
        if self.produced > self.limit {
            return Err(DecompressError::TooLarge(self.limit).into_io());
        }
        Ok(n)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GuardState {
    /// Magic number and FLG (5 bytes, parsed).
    Start,
    /// Passing `n` bytes through unparsed (rest of the header, block data, checksum).
    Skip(u64, Next),
    /// A block size word (4 bytes, parsed).
    BlockWord,
    /// The frame is complete: the decoder sees end of input from here on.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    BlockWord,
    Done,
}

/// The state after passing `n` more bytes through, then going to `next`.
fn skip(n: u64, next: Next) -> GuardState {
    match (n, next) {
        (0, Next::BlockWord) => GuardState::BlockWord,
        (0, Next::Done) => GuardState::Done,
        (n, next) => GuardState::Skip(n, next),
    }
}

/// Passes the bytes of one LZ4 frame through to the decoder while following its structure:
/// it ends the decoder's input exactly at the frame's end (so a second frame is never read
/// as part of the first) and turns an end of input inside the frame into an error (the
/// decoder alone takes an end of input where a block header is due as the frame's end).
struct FrameGuard<R> {
    inner: R,
    state: GuardState,
    field: [u8; 5],
    have: usize,
    block_checksum: bool,
    content_checksum: bool,
}

impl<R: Read> FrameGuard<R> {
    fn new(inner: R) -> FrameGuard<R> {
        FrameGuard {
            inner,
            state: GuardState::Start,
            field: [0; 5],
            have: 0,
            block_checksum: false,
            content_checksum: false,
        }
    }

    /// Takes in `bytes` just read in a parsing state.
    fn parse(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let need = if self.state == GuardState::Start {
            5
        } else {
            4
        };
        self.field[self.have..self.have + bytes.len()].copy_from_slice(bytes);
        self.have += bytes.len();
        if self.have < need {
            return Ok(());
        }
        self.have = 0;
        let f = self.field;
        if self.state == GuardState::Start {
            if f[..4] != LZ4_MAGIC {
                return Err(bad_magic(&f[..4]).into_io());
            }
            let flg = f[4];
            if flg >> 6 != 0b01 {
                return Err(DecompressError::Lz4(format!(
                    "unsupported frame version in FLG {flg:#04x}"
                ))
                .into_io());
            }
            self.block_checksum = flg & 0x10 != 0;
            self.content_checksum = flg & 0x04 != 0;
            let content_size = flg & 0x08 != 0;
            let dict_id = flg & 0x01 != 0;
            // BD(1) [content size(8)] [dict id(4)] HC(1)
            let rest = 1 + if content_size { 8 } else { 0 } + if dict_id { 4 } else { 0 } + 1;
            self.state = skip(rest, Next::BlockWord);
        } else {
            let word = u32::from_le_bytes([f[0], f[1], f[2], f[3]]);
            self.state = if word == 0 {
                skip(if self.content_checksum { 4 } else { 0 }, Next::Done)
            } else {
                let len = u64::from(word & 0x7fff_ffff) + if self.block_checksum { 4 } else { 0 };
                skip(len, Next::BlockWord)
            };
        }
        Ok(())
    }
}

impl<R: Read> Read for FrameGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let max = match self.state {
            GuardState::Done => return Ok(0),
            GuardState::Start => 5 - self.have,
            GuardState::BlockWord => 4 - self.have,
            GuardState::Skip(n, _) => usize::try_from(n).unwrap_or(usize::MAX),
        };
        let max = max.min(buf.len());
        if max == 0 {
            return Ok(0);
        }
        let n = loop {
            match self.inner.read(&mut buf[..max]) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            return Err(DecompressError::Lz4("truncated frame".into()).into_io());
        }
        match self.state {
            GuardState::Skip(left, next) => {
                self.state = skip(left - n as u64, next);
            }
            _ => self.parse(&buf[..n])?,
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both in-memory decoders on the same input must agree, errors included.
    fn both(data: &[u8], limit: u64) -> Result<Vec<u8>, DecompressError> {
        let small = decompress_small(data, limit);
        let streaming = decompress_streaming(data, limit);
        match (&small, &streaming) {
            (Ok(a), Ok(b)) => assert_eq!(a, b),
            (Err(DecompressError::BadMagic), Err(DecompressError::BadMagic))
            | (Err(DecompressError::Trailing(_)), Err(DecompressError::Trailing(_)))
            | (Err(DecompressError::TooLarge(_)), Err(DecompressError::TooLarge(_)))
            | (Err(DecompressError::Lz4(_)), Err(DecompressError::Lz4(_))) => {}
            _ => panic!("decoders disagree: small {small:?}, streaming {streaming:?}"),
        }
        small
    }

    #[test]
    fn small_and_streaming_decoders_agree() {
        let data: Vec<u8> = (0..300_000u32)
            .map(|i| (i / 7) as u8 ^ (i >> 12) as u8)
            .collect();
        let good = compress(&data);
        assert_eq!(both(&good, 1 << 30).unwrap(), data);
        assert_eq!(both(&compress(b""), 10).unwrap(), b"");
        assert!(matches!(
            both(&good, 1000),
            Err(DecompressError::TooLarge(1000))
        ));
        for cut in [1, 3, 4, 5, 7, 9, good.len() / 2, good.len() - 7] {
            both(&good[..good.len() - cut], 1 << 30).unwrap_err();
        }
        for flip in [5, 6, 7, 12, good.len() / 2, good.len() - 1] {
            let mut bad = good.clone();
            bad[flip] ^= 0x04;
            both(&bad, 1 << 30).unwrap_err();
        }
        let mut two = good.clone();
        two.extend_from_slice(&compress(b"x"));
        assert!(matches!(
            both(&two, 1 << 30),
            Err(DecompressError::Trailing(_))
        ));
        // Linked 64 KiB blocks with block checksums and a content size: other encoders'
        // settings, every block after the first decoded against the previous output.
        for (mode, ck) in [(BlockMode::Linked, false), (BlockMode::Independent, true)] {
            let fi = FrameInfo::new()
                .block_size(BlockSize::Max64KB)
                .block_mode(mode)
                .block_checksums(ck)
                .content_size(Some(data.len() as u64));
            let mut enc = FrameEncoder::with_frame_info(fi, Vec::new());
            enc.write_all(&data).unwrap();
            let out = enc.finish().unwrap();
            assert_eq!(both(&out, 1 << 30).unwrap(), data);
        }
        // Incompressible data: uncompressed blocks.
        let mut x = 0x1234_5678u32;
        let noise: Vec<u8> = (0..100_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        assert_eq!(both(&compress(&noise), 1 << 30).unwrap(), noise);
    }

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

    /// Hands out at most `step` bytes per read, as a network body does.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.step.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    fn stream(data: &[u8], step: usize, limit: u64) -> Result<Vec<u8>, DecompressError> {
        let mut out = Vec::new();
        FrameReader::new(Trickle { data, step }, limit)
            .read_to_end(&mut out)
            .map_err(DecompressError::from_io)?;
        Ok(out)
    }

    #[test]
    fn streaming_reader_keeps_the_guarantees_at_any_read_size() {
        let data: Vec<u8> = (0..5_000_000u32)
            .map(|i| (i % 251) as u8 ^ (i >> 11) as u8)
            .collect();
        let good = compress(&data);
        for step in [1, 3, 4096, 1 << 20] {
            assert_eq!(stream(&good, step, 1 << 30).unwrap(), data, "step {step}");
            for cut in [1, 4, 5, good.len() / 3] {
                let err = stream(&good[..good.len() - cut], step, 1 << 30).unwrap_err();
                assert!(err.to_string().contains("truncated"), "{step} {cut}: {err}");
            }
            let mut two = good.clone();
            two.extend_from_slice(&compress(b"second"));
            assert!(matches!(
                stream(&two, step, 1 << 30),
                Err(DecompressError::Trailing(_))
            ));
            assert!(matches!(
                stream(&good, step, 1000),
                Err(DecompressError::TooLarge(1000))
            ));
        }
        let mut bad = good.clone();
        let n = bad.len();
        bad[n - 2] ^= 0x10;
        assert!(stream(&bad, 4096, 1 << 30).is_err());
        assert!(matches!(
            stream(b"SQLite format 3\0", 2, 1 << 30),
            Err(DecompressError::BadMagic)
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
