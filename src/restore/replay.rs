//! Validating one WAL index's segments and finding the pages they write (pure).
//!
//! Litestream concatenates an index's segments into a `-wal` file and lets SQLite
//! checkpoint it, so a gap, an overlap or a corrupt frame silently drops everything after it.
//! Here every segment is checked before any of its pages is used:
//!
//! ```text
//! index i:  [hdr|f f f c] [f c] [f f c]      c = commit frame (frame header bytes 4..8 != 0)
//!           ^offset 0      ^o1   ^o2         o1 = 0 + len(seg 0), o2 = o1 + len(seg 1)
//! ```
//! - segment offsets are contiguous, starting at 0;
//! - the offset-0 segment starts with a valid WAL header whose page size is the database's;
//! - every segment holds whole frames carrying the header's salts, the cumulative checksum
//!   chain runs unbroken across segment boundaries, and the last frame is a commit frame.
//!
//! The pages to write are the newest version of each page number in the segment (all of a
//! valid segment's frames are committed). The caller writes them at `(pgno - 1) * page_size`
//! and, once the index is complete, sets the database size to the last commit's page count:
//! that is exactly what a SQLite checkpoint of the whole index does (latest frame of each
//! page, then truncate to the final size).
use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::sqlite::wal::{self, FrameHeader, StopReason, WalHeader};

/// Replay state of one WAL index.
#[derive(Debug)]
pub(crate) struct IndexReplay {
    index: u32,
    page_size: u32,
    header: Option<WalHeader>,
    /// Cumulative checksum after the last validated frame (the seed for the next segment).
    checksum: (u32, u32),
    /// Where the next segment must start, in bytes of this index's WAL.
    next_offset: u64,
    /// Database size in pages after the last commit seen; 0 before any commit.
    db_pages: u32,
    frames: u64,
}

/// Where one page's newest version sits in a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PageRef {
    pub pgno: u32,
    /// Offset of the page bytes (after the frame header) in the segment's data.
    pub at: usize,
}

impl IndexReplay {
    /// Starts replaying `index` onto a database whose page size is `page_size`.
    pub(crate) fn new(index: u32, page_size: u32) -> IndexReplay {
        IndexReplay {
            index,
            page_size,
            header: None,
            checksum: (0, 0),
            next_offset: 0,
            db_pages: 0,
            frames: 0,
        }
    }

    /// The WAL index being replayed.
    pub(crate) fn index(&self) -> u32 {
        self.index
    }

    /// Database size in pages after the index's last commit; `None` when the index has no
    /// frame (a header-only WAL), which leaves the database as it was.
    pub(crate) fn db_pages(&self) -> Option<u32> {
        (self.db_pages != 0).then_some(self.db_pages)
    }

    /// Frames validated so far.
    pub(crate) fn frames(&self) -> u64 {
        self.frames
    }

    /// Bytes of this index's WAL validated so far.
    pub(crate) fn wal_bytes(&self) -> u64 {
        self.next_offset
    }

    /// Validates the next segment (decompressed `data`, named `offset` in the layout) and
    /// returns its pages, newest version of each page number, sorted by page number.
    /// `path` names the object in errors. On error the state is unchanged.
    pub(crate) fn segment(&mut self, offset: u32, data: &[u8], path: &str) -> Result<Vec<PageRef>> {
        let offset = u64::from(offset);
        if offset != self.next_offset {
            let reason = if offset > self.next_offset {
                format!(
                    "gap in wal index {:08x}: the previous segments end at offset {}, this one starts at {} (segment {} is missing)",
                    self.index,
                    self.next_offset,
                    offset,
                    crate::layout::wal_segment_name(self.index, self.next_offset as u32),
                )
            } else {
                format!(
                    "overlap in wal index {:08x}: the previous segments end at offset {}, this one starts at {}",
                    self.index, self.next_offset, offset
                )
            };
            return Err(Error::corrupt(path, reason));
        }
        let (header, frames_at) = if offset == 0 {
            let h = WalHeader::parse(data)
                .map_err(|e| Error::corrupt(path, format!("invalid wal header: {e}")))?;
            if h.page_size != self.page_size {
                return Err(Error::corrupt(
                    path,
                    format!(
                        "wal page size {} does not match the database page size {}",
                        h.page_size, self.page_size
                    ),
                ));
            }
            (h, wal::HEADER_SIZE)
        } else {
            // next_offset > 0 only after an offset-0 segment was accepted.
            let Some(h) = self.header else {
                return Err(Error::corrupt(
                    path,
                    "wal segment without a preceding wal header",
                ));
            };
            (h, 0)
        };
        let seed = if offset == 0 {
            header.checksum
        } else {
            self.checksum
        };
        let frames = &data[frames_at..];
        let fs = header.frame_size() as usize;
        if !frames.len().is_multiple_of(fs) {
            return Err(Error::corrupt(
                path,
                format!(
                    "segment holds {} bytes of frames, not a whole number of {fs}-byte frames (page size {})",
                    frames.len(),
                    header.page_size
                ),
            ));
        }
        let scan = wal::scan_frames(frames, &header, seed);
        if scan.valid_len as usize != frames.len() {
            let at = scan.valid_len as usize;
            let wal_offset = offset + (frames_at + at) as u64;
            let fh = FrameHeader::parse(&frames[at..at + wal::FRAME_HEADER_SIZE]);
            let reason = match scan.stop {
                StopReason::SaltMismatch => format!(
                    "salt change inside wal index {:08x}: frame at wal offset {wal_offset} has salt {:08x}{:08x}, the index's header has {:08x}{:08x}",
                    self.index, fh.salt.0, fh.salt.1, header.salt.0, header.salt.1
                ),
                StopReason::ChecksumMismatch => format!(
                    "wal checksum mismatch in the frame at wal offset {wal_offset} (page {})",
                    fh.pgno
                ),
                StopReason::BadPageNumber => {
                    format!("frame at wal offset {wal_offset} has page number 0")
                }
                StopReason::End => format!("frame at wal offset {wal_offset} is incomplete"),
            };
            return Err(Error::corrupt(path, reason));
        }
        if scan.committed_len as usize != frames.len() {
            let tail = (frames.len() - scan.committed_len as usize) / fs;
            return Err(Error::corrupt(
                path,
                format!(
                    "segment does not end on a commit frame: {tail} frame(s) after the last commit"
                ),
            ));
        }

        let mut newest: HashMap<u32, usize> = HashMap::new();
        for (i, frame) in frames.chunks_exact(fs).enumerate() {
            let fh = FrameHeader::parse(frame);
            newest.insert(fh.pgno, frames_at + i * fs + wal::FRAME_HEADER_SIZE);
        }
        let mut pages: Vec<PageRef> = newest
            .into_iter()
            .map(|(pgno, at)| PageRef { pgno, at })
            .collect();
        pages.sort_unstable_by_key(|p| p.pgno);

        self.header = Some(header);
        self.checksum = scan.committed_checksum;
        if scan.commits > 0 {
            self.db_pages = scan.commit_db_pages;
        }
        self.frames += (frames.len() / fs) as u64;
        self.next_offset = offset + data.len() as u64;
        Ok(pages)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::wal::{make_frame, make_header};

    const PS: u32 = 512;

    /// Builds an index's WAL: header + frames `(pgno, commit)`; page bytes are
    /// `pgno ^ serial` so versions of a page differ. Returns the bytes and frame boundaries.
    fn build(salt: (u32, u32), frames: &[(u32, u32)]) -> (Vec<u8>, Vec<usize>) {
        let hb = make_header(PS, 1, salt, false);
        let h = WalHeader::parse(&hb).unwrap();
        let mut out = hb.to_vec();
        let mut ends = vec![out.len()];
        let mut ck = h.checksum;
        for (serial, &(pgno, commit)) in frames.iter().enumerate() {
            let page = vec![(pgno as u8) ^ (serial as u8).wrapping_mul(16); PS as usize];
            let (f, c) = make_frame(&h, ck, pgno, commit, &page);
            ck = c;
            out.extend_from_slice(&f);
            ends.push(out.len());
        }
        (out, ends)
    }

    fn fs() -> usize {
        wal::frame_size(PS) as usize
    }

    #[test]
    fn segments_chain_and_newest_page_wins() {
        let (w, e) = build((7, 8), &[(1, 0), (2, 2), (2, 0), (3, 3), (1, 0), (2, 3)]);
        let mut r = IndexReplay::new(4, PS);
        let p = r.segment(0, &w[..e[2]], "s0").unwrap();
        assert_eq!(p.iter().map(|p| p.pgno).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(r.db_pages(), Some(2));
        let p = r.segment(e[2] as u32, &w[e[2]..e[4]], "s1").unwrap();
        assert_eq!(p.iter().map(|p| p.pgno).collect::<Vec<_>>(), vec![2, 3]);
        let p = r.segment(e[4] as u32, &w[e[4]..], "s2").unwrap();
        // Page 2 appears once, at its newest frame (the last one).
        assert_eq!(
            p,
            vec![
                PageRef { pgno: 1, at: 24 },
                PageRef {
                    pgno: 2,
                    at: fs() + 24
                }
            ]
        );
        assert_eq!(r.db_pages(), Some(3));
        assert_eq!(r.frames(), 6);
        assert_eq!(r.wal_bytes(), w.len() as u64);
    }

    #[test]
    fn header_only_index_is_fine() {
        let (w, _) = build((1, 2), &[]);
        let mut r = IndexReplay::new(0, PS);
        assert!(r.segment(0, &w, "s").unwrap().is_empty());
        assert_eq!(r.db_pages(), None);
    }

    #[test]
    fn gap_and_overlap_are_errors() {
        let (w, e) = build((7, 8), &[(1, 1), (2, 2), (3, 3)]);
        let mut r = IndexReplay::new(1, PS);
        r.segment(0, &w[..e[1]], "s0").unwrap();
        let err = r.segment(e[2] as u32, &w[e[2]..], "s2").unwrap_err();
        let Error::Corrupt { path, reason } = &err else {
            panic!("{err}")
        };
        assert_eq!(path, "s2");
        assert!(reason.contains("gap"), "{reason}");
        assert!(
            reason.contains(&crate::layout::wal_segment_name(1, e[1] as u32)),
            "{reason}"
        );
        let err = r
            .segment(e[1] as u32 - 8, &w[e[1] - 8..], "s1")
            .unwrap_err();
        assert!(err.to_string().contains("overlap"), "{err}");
        // State unchanged by the failures: the right segment still applies.
        r.segment(e[1] as u32, &w[e[1]..], "s1").unwrap();
        // The first segment must be at offset 0.
        let err = IndexReplay::new(1, PS)
            .segment(e[1] as u32, &w[e[1]..], "x")
            .unwrap_err();
        assert!(err.to_string().contains("gap"), "{err}");
    }

    #[test]
    fn checksum_chain_spans_segment_boundaries() {
        // Segment 1 of another WAL with the same salts: each frame is valid on its own, but
        // it does not continue segment 0's checksum chain.
        let (a, ea) = build((7, 8), &[(1, 1), (2, 2)]);
        let (b, _) = build((7, 8), &[(5, 5), (2, 2)]);
        let mut r = IndexReplay::new(0, PS);
        r.segment(0, &a[..ea[1]], "s0").unwrap();
        let err = r.segment(ea[1] as u32, &b[ea[1]..], "s1").unwrap_err();
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
        assert!(
            err.to_string().contains(&format!("wal offset {}", ea[1])),
            "{err}"
        );
    }

    #[test]
    fn corrupt_byte_salt_change_and_bad_header() {
        let (w, e) = build((7, 8), &[(1, 1), (2, 2)]);
        let mut bad = w.clone();
        bad[e[1] + 24 + 100] ^= 1;
        let err = IndexReplay::new(0, PS).segment(0, &bad, "s").unwrap_err();
        assert!(err.to_string().contains("checksum mismatch"), "{err}");

        let (other, _) = build((9, 9), &[(1, 1), (2, 2)]);
        let mut mixed = w[..e[1]].to_vec();
        mixed.extend_from_slice(&other[e[1]..]);
        let err = IndexReplay::new(0, PS).segment(0, &mixed, "s").unwrap_err();
        assert!(err.to_string().contains("salt change"), "{err}");

        let mut hdr = w.clone();
        hdr[13] ^= 1;
        let err = IndexReplay::new(0, PS).segment(0, &hdr, "s").unwrap_err();
        assert!(err.to_string().contains("invalid wal header"), "{err}");
        let err = IndexReplay::new(0, PS)
            .segment(0, &w[..20], "s")
            .unwrap_err();
        assert!(err.to_string().contains("invalid wal header"), "{err}");
    }

    #[test]
    fn page_size_mismatch() {
        let (w, _) = build((7, 8), &[(1, 1)]);
        let err = IndexReplay::new(0, 4096).segment(0, &w, "s").unwrap_err();
        assert!(
            err.to_string().contains("page size 512 does not match"),
            "{err}"
        );
    }

    #[test]
    fn partial_and_uncommitted_frames() {
        let (w, e) = build((7, 8), &[(1, 1), (2, 0)]);
        let err = IndexReplay::new(0, PS)
            .segment(0, &w[..w.len() - 1], "s")
            .unwrap_err();
        assert!(err.to_string().contains("whole number"), "{err}");
        let err = IndexReplay::new(0, PS).segment(0, &w, "s").unwrap_err();
        assert!(
            err.to_string().contains("does not end on a commit frame"),
            "{err}"
        );
        IndexReplay::new(0, PS).segment(0, &w[..e[1]], "s").unwrap();
        // Page number 0.
        let hb = make_header(PS, 1, (7, 8), false);
        let h = WalHeader::parse(&hb).unwrap();
        let (f, _) = make_frame(&h, h.checksum, 0, 1, &[0; PS as usize]);
        let mut z = hb.to_vec();
        z.extend_from_slice(&f);
        let err = IndexReplay::new(0, PS).segment(0, &z, "s").unwrap_err();
        assert!(err.to_string().contains("page number 0"), "{err}");
    }
}
