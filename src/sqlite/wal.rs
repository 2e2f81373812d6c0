//! SQLite WAL header and frame parsing, and the WAL checksum (pure).
//!
//! ```text
//! header (32 bytes, big-endian fields):
//!   0 magic 0x377f0682 (LE checksum words) | 0x377f0683 (BE)   4 version 3007000
//!   8 page size   12 checkpoint seq   16 salt-1   20 salt-2   24 cksum-1   28 cksum-2
//! frame = 24-byte header + page:
//!   0 page number   4 db size in pages after commit (0 = not a commit frame)
//!   8 salt-1   12 salt-2   16 cksum-1   20 cksum-2
//! ```
//! The checksum is cumulative: it runs over the header's first 24 bytes, then over each
//! frame's first 8 header bytes and page, in order.

/// WAL header size in bytes.
pub const HEADER_SIZE: usize = 32;
/// WAL frame header size in bytes.
pub const FRAME_HEADER_SIZE: usize = 24;
/// Magic for little-endian checksum words.
pub const MAGIC_LE: u32 = 0x377f_0682;
/// Magic for big-endian checksum words.
pub const MAGIC_BE: u32 = 0x377f_0683;

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Size of one frame for `page_size`.
pub fn frame_size(page_size: u32) -> u64 {
    FRAME_HEADER_SIZE as u64 + u64::from(page_size)
}

/// Rounds a WAL byte size down to a frame boundary (0 if it holds no whole header).
pub fn align(size: u64, page_size: u32) -> u64 {
    if size < HEADER_SIZE as u64 {
        return 0;
    }
    let fs = frame_size(page_size);
    HEADER_SIZE as u64 + (size - HEADER_SIZE as u64) / fs * fs
}

/// SQLite's WAL checksum over `data` (a multiple of 8 bytes), continuing from `seed`.
pub fn checksum(data: &[u8], seed: (u32, u32), big_endian: bool) -> (u32, u32) {
    debug_assert!(data.len().is_multiple_of(8));
    let (mut s0, mut s1) = seed;
    for chunk in data.chunks_exact(8) {
        let (x0, x1) = if big_endian {
            (
                u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]),
                u32::from_be_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]),
            )
        } else {
            (
                u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]),
                u32::from_le_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]),
            )
        };
        s0 = s0.wrapping_add(x0).wrapping_add(s1);
        s1 = s1.wrapping_add(x1).wrapping_add(s0);
    }
    (s0, s1)
}

/// Why a WAL header is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("wal header is short: {0} bytes")]
    Short(usize),
    #[error("bad wal magic {0:#010x}")]
    BadMagic(u32),
    #[error("invalid wal page size {0}")]
    BadPageSize(u32),
    #[error("wal header checksum mismatch")]
    BadChecksum,
}

/// A parsed WAL header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalHeader {
    pub magic: u32,
    pub version: u32,
    pub page_size: u32,
    pub checkpoint_seq: u32,
    pub salt: (u32, u32),
    pub checksum: (u32, u32),
}

impl WalHeader {
    /// Parses and verifies the 32-byte header at the start of `b`.
    pub fn parse(b: &[u8]) -> Result<WalHeader, HeaderError> {
        if b.len() < HEADER_SIZE {
            return Err(HeaderError::Short(b.len()));
        }
        let magic = be32(b, 0);
        if magic != MAGIC_LE && magic != MAGIC_BE {
            return Err(HeaderError::BadMagic(magic));
        }
        let page_size = be32(b, 8);
        if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
            return Err(HeaderError::BadPageSize(page_size));
        }
        let h = WalHeader {
            magic,
            version: be32(b, 4),
            page_size,
            checkpoint_seq: be32(b, 12),
            salt: (be32(b, 16), be32(b, 20)),
            checksum: (be32(b, 24), be32(b, 28)),
        };
        if checksum(&b[..24], (0, 0), h.big_endian()) != h.checksum {
            return Err(HeaderError::BadChecksum);
        }
        Ok(h)
    }

    /// True when checksum words are big-endian.
    pub fn big_endian(&self) -> bool {
        self.magic == MAGIC_BE
    }

    /// Size of one frame of this WAL.
    pub fn frame_size(&self) -> u64 {
        frame_size(self.page_size)
    }
}

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub pgno: u32,
    /// Database size in pages after this commit; 0 when this is not a commit frame.
    pub commit: u32,
    pub salt: (u32, u32),
    pub checksum: (u32, u32),
}

impl FrameHeader {
    /// Parses the 24-byte frame header at the start of `b` (`b` must hold 24 bytes).
    pub fn parse(b: &[u8]) -> FrameHeader {
        FrameHeader {
            pgno: be32(b, 0),
            commit: be32(b, 4),
            salt: (be32(b, 8), be32(b, 12)),
            checksum: (be32(b, 16), be32(b, 20)),
        }
    }
}

/// Why a frame scan stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The buffer ended (possibly inside a frame).
    End,
    /// A frame carries another WAL cycle's salt.
    SaltMismatch,
    /// A frame's cumulative checksum does not match.
    ChecksumMismatch,
    /// A frame has page number 0.
    BadPageNumber,
}

/// Result of [`scan_frames`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scan {
    /// Bytes of whole, valid frames up to and including the last commit frame.
    pub committed_len: u64,
    /// Running checksum after the last commit frame (the seed for the next scan).
    pub committed_checksum: (u32, u32),
    /// Database size in pages recorded by the last commit frame (0 if none).
    pub commit_db_pages: u32,
    /// Number of commit frames found.
    pub commits: u32,
    /// Bytes of whole, valid frames including an uncommitted tail.
    pub valid_len: u64,
    /// Running checksum after the last valid frame.
    pub valid_checksum: (u32, u32),
    /// Why the scan stopped.
    pub stop: StopReason,
}

/// Scans `buf`, which starts on a frame boundary of the WAL described by `hdr`, checking salt
/// and the cumulative checksum from `seed` (the checksum of the frame before `buf`, or the
/// header checksum for the first frame). Stops at the first invalid or partial frame.
pub fn scan_frames(buf: &[u8], hdr: &WalHeader, seed: (u32, u32)) -> Scan {
    let fs = hdr.frame_size() as usize;
    let be = hdr.big_endian();
    let mut ck = seed;
    let mut scan = Scan {
        committed_len: 0,
        committed_checksum: seed,
        commit_db_pages: 0,
        commits: 0,
        valid_len: 0,
        valid_checksum: seed,
        stop: StopReason::End,
    };
    let mut at = 0usize;
    while at + fs <= buf.len() {
        let frame = &buf[at..at + fs];
        let fh = FrameHeader::parse(frame);
        if fh.salt != hdr.salt {
            scan.stop = StopReason::SaltMismatch;
            return scan;
        }
        if fh.pgno == 0 {
            scan.stop = StopReason::BadPageNumber;
            return scan;
        }
        ck = checksum(&frame[..8], ck, be);
        ck = checksum(&frame[FRAME_HEADER_SIZE..], ck, be);
        if ck != fh.checksum {
            scan.stop = StopReason::ChecksumMismatch;
            return scan;
        }
        at += fs;
        scan.valid_len = at as u64;
        scan.valid_checksum = ck;
        if fh.commit != 0 {
            scan.committed_len = at as u64;
            scan.committed_checksum = ck;
            scan.commit_db_pages = fh.commit;
            scan.commits += 1;
        }
    }
    scan
}

/// Builds a valid WAL header (used by tests and by fixtures).
pub fn make_header(
    page_size: u32,
    checkpoint_seq: u32,
    salt: (u32, u32),
    big_endian: bool,
) -> [u8; 32] {
    let mut b = [0u8; 32];
    b[0..4].copy_from_slice(&(if big_endian { MAGIC_BE } else { MAGIC_LE }).to_be_bytes());
    b[4..8].copy_from_slice(&3_007_000u32.to_be_bytes());
    b[8..12].copy_from_slice(&page_size.to_be_bytes());
    b[12..16].copy_from_slice(&checkpoint_seq.to_be_bytes());
    b[16..20].copy_from_slice(&salt.0.to_be_bytes());
    b[20..24].copy_from_slice(&salt.1.to_be_bytes());
    let ck = checksum(&b[..24], (0, 0), big_endian);
    b[24..28].copy_from_slice(&ck.0.to_be_bytes());
    b[28..32].copy_from_slice(&ck.1.to_be_bytes());
    b
}

/// Builds a valid frame continuing the checksum `seed`; returns the frame and its checksum.
pub fn make_frame(
    hdr: &WalHeader,
    seed: (u32, u32),
    pgno: u32,
    commit: u32,
    page: &[u8],
) -> (Vec<u8>, (u32, u32)) {
    assert_eq!(
        page.len(),
        hdr.page_size as usize,
        "page must be page_size bytes"
    );
    let mut f = Vec::with_capacity(FRAME_HEADER_SIZE + page.len());
    f.extend_from_slice(&pgno.to_be_bytes());
    f.extend_from_slice(&commit.to_be_bytes());
    f.extend_from_slice(&hdr.salt.0.to_be_bytes());
    f.extend_from_slice(&hdr.salt.1.to_be_bytes());
    let ck = checksum(&f[..8], seed, hdr.big_endian());
    let ck = checksum(page, ck, hdr.big_endian());
    f.extend_from_slice(&ck.0.to_be_bytes());
    f.extend_from_slice(&ck.1.to_be_bytes());
    f.extend_from_slice(page);
    (f, ck)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wal(big_endian: bool, frames: &[(u32, u32)]) -> (WalHeader, Vec<u8>) {
        let hb = make_header(512, 1, (0x3006a485, 0x58e8a68c), big_endian);
        let h = WalHeader::parse(&hb).unwrap();
        let mut out = hb.to_vec();
        let mut ck = h.checksum;
        for &(pgno, commit) in frames {
            let page = vec![pgno as u8; 512];
            let (f, c) = make_frame(&h, ck, pgno, commit, &page);
            ck = c;
            out.extend_from_slice(&f);
        }
        (h, out)
    }

    #[test]
    fn real_litestream_header_bytes_verify() {
        // From the spec's worked example (00000001_00000000.wal.lz4, decompressed).
        let b: [u8; 32] = [
            0x37, 0x7f, 0x06, 0x82, 0x00, 0x2d, 0xe2, 0x18, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00,
            0x00, 0x01, 0x30, 0x06, 0xa4, 0x85, 0x58, 0xe8, 0xa6, 0x8c, 0x5b, 0x8b, 0x09, 0x43,
            0xa1, 0x19, 0xc9, 0x40,
        ];
        let h = WalHeader::parse(&b).unwrap();
        assert_eq!(h.page_size, 4096);
        assert_eq!(h.checkpoint_seq, 1);
        assert_eq!(h.salt, (0x3006a485, 0x58e8a68c));
        let mut bad = b;
        bad[15] = 2;
        assert_eq!(WalHeader::parse(&bad), Err(HeaderError::BadChecksum));
    }

    #[test]
    fn scan_stops_after_last_commit() {
        for be in [false, true] {
            let (h, w) = wal(be, &[(1, 0), (2, 2), (3, 0), (1, 3), (4, 0)]);
            let s = scan_frames(&w[32..], &h, h.checksum);
            let fs = h.frame_size();
            assert_eq!(s.committed_len, 4 * fs);
            assert_eq!(s.valid_len, 5 * fs);
            assert_eq!(s.commits, 2);
            assert_eq!(s.commit_db_pages, 3);
            assert_eq!(s.stop, StopReason::End);
            // Continuing from the committed checksum validates the tail.
            let tail = scan_frames(&w[32 + 4 * fs as usize..], &h, s.committed_checksum);
            assert_eq!(tail.valid_len, fs);
        }
    }

    #[test]
    fn scan_detects_corruption_and_salt_change() {
        let (h, mut w) = wal(false, &[(1, 1), (2, 2)]);
        let fs = h.frame_size() as usize;
        let mut w2 = w.clone();
        w2[32 + fs + 100] ^= 1;
        let s = scan_frames(&w2[32..], &h, h.checksum);
        assert_eq!(
            (s.committed_len, s.stop),
            (fs as u64, StopReason::ChecksumMismatch)
        );
        w[32 + fs + 8] ^= 1;
        let s = scan_frames(&w[32..], &h, h.checksum);
        assert_eq!(s.stop, StopReason::SaltMismatch);
        // Partial frame.
        let (h, w) = wal(false, &[(1, 1), (2, 2)]);
        let s = scan_frames(&w[32..w.len() - 1], &h, h.checksum);
        assert_eq!((s.committed_len, s.stop), (fs as u64, StopReason::End));
    }

    #[test]
    fn align_matches_spec() {
        assert_eq!(align(0, 4096), 0);
        assert_eq!(align(31, 4096), 0);
        assert_eq!(align(32, 4096), 32);
        assert_eq!(align(4152 + 4119, 4096), 4152);
        assert_eq!(align(8272, 4096), 8272);
    }

    #[test]
    fn header_rejects_bad_input() {
        assert_eq!(WalHeader::parse(&[0; 10]), Err(HeaderError::Short(10)));
        assert!(matches!(
            WalHeader::parse(&[0; 32]),
            Err(HeaderError::BadMagic(0))
        ));
        let mut b = make_header(4096, 0, (1, 2), false);
        b[8..12].copy_from_slice(&1000u32.to_be_bytes());
        assert_eq!(WalHeader::parse(&b), Err(HeaderError::BadPageSize(1000)));
    }
}
