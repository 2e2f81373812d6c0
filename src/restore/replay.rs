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
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// [`IndexReplay`] as plain numbers (the follower's state file).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct SavedReplay {
    index: u32,
    page_size: u32,
    header: Option<[u32; 8]>,
    checksum: [u32; 2],
    next_offset: u64,
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

    /// Bytes of this index's WAL validated so far: where the next segment must start.
    pub(crate) fn next_offset(&self) -> u64 {
        self.next_offset
    }

    /// The state as plain numbers, to be saved and given back to [`IndexReplay::from_saved`]
    /// (the follower resumes an index where it stopped).
    pub(crate) fn saved(&self) -> SavedReplay {
        SavedReplay {
            index: self.index,
            page_size: self.page_size,
            header: self.header.map(|h| {
                [
                    h.magic,
                    h.version,
                    h.page_size,
                    h.checkpoint_seq,
                    h.salt.0,
                    h.salt.1,
                    h.checksum.0,
                    h.checksum.1,
                ]
            }),
            checksum: [self.checksum.0, self.checksum.1],
            next_offset: self.next_offset,
            db_pages: self.db_pages,
            frames: self.frames,
        }
    }

    /// The replay [`IndexReplay::saved`] saved.
    pub(crate) fn from_saved(s: &SavedReplay) -> IndexReplay {
        IndexReplay {
            index: s.index,
            page_size: s.page_size,
            header: s.header.map(|h| WalHeader {
                magic: h[0],
                version: h[1],
                page_size: h[2],
                checkpoint_seq: h[3],
                salt: (h[4], h[5]),
                checksum: (h[6], h[7]),
            }),
            checksum: (s.checksum[0], s.checksum[1]),
            next_offset: s.next_offset,
            db_pages: s.db_pages,
            frames: s.frames,
        }
    }

    /// Validates the next segment (decompressed `data`, named `offset` in the layout) and
    /// returns its pages, newest version of each page number, sorted by page number.
    /// `path` names the object in errors. On error the state is unchanged.
    pub(crate) fn segment(&mut self, offset: u32, data: &[u8], path: &str) -> Result<Vec<PageRef>> {
        let offset = u64::from(offset);
        self.check_offset(offset, path)?;
        let skip = self.overlap(offset, data, path)?;
        if skip > 0 {
            let mut pages = self.segment(self.next_offset as u32, &data[skip..], path)?;
            for p in &mut pages {
                p.at += skip;
            }
            return Ok(pages);
        }
        let (header, frames_at) = if offset == 0 {
            let h = WalHeader::parse(data)
                .map_err(|e| Error::corrupt(path, format!("invalid wal header: {e}")))?;
            self.check_page_size(&h, path)?;
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
            let reason = self.frame_error(&header, &frames[at..], wal_offset, scan.stop);
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
    /// [`segment`](IndexReplay::segment) for a segment read from `r` as it decompresses,
    /// for segments too large to hold: frames are checked in chunks of about 1 MiB and each
    /// frame's page is handed to `page` (in frame order, so a later version of a page
    /// follows an earlier one) as soon as its chunk is valid. Pages of a segment that turns
    /// out invalid further on have then been handed out already: the caller must discard
    /// everything it built (a restore deletes its temporary file). On error the replay
    /// state is unchanged, so the segment can be read again from its start.
    pub(crate) fn segment_stream(
        &mut self,
        offset: u32,
        r: &mut dyn std::io::Read,
        path: &str,
        read_err: &dyn Fn(std::io::Error) -> Error,
        page: &mut dyn FnMut(u32, &[u8]) -> Result<()>,
    ) -> Result<()> {
        let mut offset = u64::from(offset);
        self.check_offset(offset, path)?;
        let mut read_full = |buf: &mut [u8]| -> Result<usize> {
            let mut n = 0;
            while n < buf.len() {
                match r.read(&mut buf[n..]) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(read_err(e)),
                }
            }
            Ok(n)
        };
        // A segment repeating what the previous ones held (see `overlap`): read past the
        // repeated bytes, a frame at a time, keeping the header and the last frame to check.
        if let Some(skip) = self.overlap_len(offset, path)? {
            let fs = self.header.map_or(0, |h| h.frame_size() as usize);
            let mut head = [0u8; wal::HEADER_SIZE];
            let mut got = 0usize;
            if offset == 0 {
                got = read_full(&mut head)?;
            }
            let mut last = vec![0u8; fs];
            let mut last_len = 0;
            while got < skip {
                let n = read_full(&mut last)?;
                got += n;
                last_len = n;
                if n < fs {
                    break;
                }
            }
            self.check_repeat(offset, &head[..], &last[..last_len], got, path)?;
            offset = self.next_offset;
        }
        let (header, frames_at) = if offset == 0 {
            let mut hb = [0u8; wal::HEADER_SIZE];
            let n = read_full(&mut hb)?;
            let h = WalHeader::parse(&hb[..n])
                .map_err(|e| Error::corrupt(path, format!("invalid wal header: {e}")))?;
            self.check_page_size(&h, path)?;
            (h, wal::HEADER_SIZE)
        } else {
            let Some(h) = self.header else {
                return Err(Error::corrupt(
                    path,
                    "wal segment without a preceding wal header",
                ));
            };
            (h, 0)
        };
        let mut ck = if offset == 0 {
            header.checksum
        } else {
            self.checksum
        };
        let fs = header.frame_size() as usize;
        let mut buf = vec![0u8; fs * (1 + (1 << 20) / fs)];
        let mut total = 0u64; // bytes of frames read
        let mut db_pages = None;
        let mut tail_frames = 0u64; // frames after the last commit
        loop {
            let n = read_full(&mut buf)?;
            if n == 0 {
                break;
            }
            let chunk = &buf[..n];
            let scan = wal::scan_frames(chunk, &header, ck);
            if scan.valid_len as usize != n {
                let at = scan.valid_len as usize;
                if n - at < fs {
                    // Only a partial frame is left: the segment ends mid-frame.
                    return Err(Error::corrupt(
                        path,
                        format!(
                            "segment holds {} bytes of frames, not a whole number of {fs}-byte frames (page size {})",
                            total + n as u64,
                            header.page_size
                        ),
                    ));
                }
                let wal_offset = offset + frames_at as u64 + total + at as u64;
                return Err(Error::corrupt(
                    path,
                    self.frame_error(&header, &chunk[at..], wal_offset, scan.stop),
                ));
            }
            for frame in chunk.chunks_exact(fs) {
                let fh = FrameHeader::parse(frame);
                page(fh.pgno, &frame[wal::FRAME_HEADER_SIZE..])?;
            }
            if scan.commits > 0 {
                db_pages = Some(scan.commit_db_pages);
                tail_frames = (n as u64 - scan.committed_len) / fs as u64;
            } else {
                tail_frames += (n / fs) as u64;
            }
            ck = scan.valid_checksum;
            total += n as u64;
        }
        if tail_frames > 0 {
            return Err(Error::corrupt(
                path,
                format!(
                    "segment does not end on a commit frame: {tail_frames} frame(s) after the last commit"
                ),
            ));
        }
        self.header = Some(header);
        self.checksum = ck;
        if let Some(p) = db_pages {
            self.db_pages = p;
        }
        self.frames += total / fs as u64;
        self.next_offset = offset + frames_at as u64 + total;
        Ok(())
    }

    /// The segment starting at `offset` must start where the previous one ended, or (see
    /// [`IndexReplay::overlap`]) before it.
    fn check_offset(&self, offset: u64, path: &str) -> Result<()> {
        if offset <= self.next_offset {
            return Ok(());
        }
        Err(Error::corrupt(
            path,
            format!(
                "gap in wal index {:08x}: the previous segments end at offset {}, this one starts at {} (segment {} is missing)",
                self.index,
                self.next_offset,
                offset,
                crate::layout::wal_segment_name(self.index, self.next_offset as u32),
            ),
        ))
    }

    /// A segment starting at `offset`, before where the previous ones end, repeats part of
    /// what they held: Litestream v0.3.13 writes such a segment when its final sync at
    /// shutdown races a regular one (seen: `00000006_00000000` with 8 frames and
    /// `00000006_00001038` with frames 2 to 8 again). Litestream's own restore concatenates
    /// them and SQLite stops at the first repeated frame, whose checksum does not chain;
    /// anything after it in the index is lost. Here the repeated bytes are skipped, if they
    /// are the same history: their last frame (ending where the previous segments end) must
    /// carry the index's salts and the cumulative checksum reached there, which covers every
    /// byte of the index before it. Returns how many bytes of the segment to skip (0 when it
    /// starts where it should); `prefix` is the segment's first bytes, at least that many
    /// (fewer: the segment ends before the previous ones do, which is refused).
    fn overlap(&self, offset: u64, prefix: &[u8], path: &str) -> Result<usize> {
        let Some(skip) = self.overlap_len(offset, path)? else {
            return Ok(0);
        };
        let got = prefix.len().min(skip);
        let fs = self.header.map_or(0, |h| h.frame_size() as usize);
        let head = &prefix[..prefix.len().min(wal::HEADER_SIZE)];
        let last = &prefix[got.saturating_sub(fs)..got];
        self.check_repeat(offset, head, last, prefix.len(), path)?;
        Ok(skip)
    }

    /// How many bytes of a segment starting at `offset` repeat what was read: `None` when
    /// it starts where it should. Refuses an overlap not on a frame boundary.
    fn overlap_len(&self, offset: u64, path: &str) -> Result<Option<usize>> {
        if offset >= self.next_offset {
            return Ok(None);
        }
        let Some(h) = self.header else {
            return Err(self.overlap_error(offset, path, "no header was read before it"));
        };
        let skip = (self.next_offset - offset) as usize;
        let frames_from = if offset == 0 { wal::HEADER_SIZE } else { 0 };
        if offset < wal::HEADER_SIZE as u64 && offset != 0
            || skip < frames_from
            || !(skip - frames_from).is_multiple_of(h.frame_size() as usize)
        {
            return Err(self.overlap_error(offset, path, "it does not start on a frame boundary"));
        }
        Ok(Some(skip))
    }

    /// Checks the repeated part of an overlapping segment (see [`IndexReplay::overlap`]):
    /// `head`, its first bytes (the WAL header when it starts at 0), `last`, the frame that
    /// ends where the previous segments end, and `len`, how long the segment is (at least
    /// the repeated part).
    fn check_repeat(
        &self,
        offset: u64,
        head: &[u8],
        last: &[u8],
        len: usize,
        path: &str,
    ) -> Result<()> {
        let Some(h) = self.header else {
            return Err(self.overlap_error(offset, path, "no header was read before it"));
        };
        let skip = (self.next_offset - offset) as usize;
        if len < skip {
            let why = format!(
                "it ends at offset {}, inside what they held",
                offset + len as u64
            );
            return Err(self.overlap_error(offset, path, &why));
        }
        if offset == 0 && WalHeader::parse(head).ok() != Some(h) {
            return Err(self.overlap_error(offset, path, "its wal header differs"));
        }
        let frames_from = if offset == 0 { wal::HEADER_SIZE } else { 0 };
        if skip > frames_from {
            let f = FrameHeader::parse(last);
            if f.salt != h.salt || f.checksum != self.checksum {
                return Err(self.overlap_error(
                    offset,
                    path,
                    "the frames it repeats differ from those already read",
                ));
            }
        }
        Ok(())
    }

    fn overlap_error(&self, offset: u64, path: &str, why: &str) -> Error {
        Error::corrupt(
            path,
            format!(
                "overlap in wal index {:08x}: the previous segments end at offset {}, this one starts at {}: {why}",
                self.index, self.next_offset, offset
            ),
        )
    }

    fn check_page_size(&self, h: &WalHeader, path: &str) -> Result<()> {
        if h.page_size != self.page_size {
            return Err(Error::corrupt(
                path,
                format!(
                    "wal page size {} does not match the database page size {}",
                    h.page_size, self.page_size
                ),
            ));
        }
        Ok(())
    }

    /// Why the frame at the start of `frames` (at `wal_offset` in the index's WAL) failed.
    fn frame_error(
        &self,
        header: &WalHeader,
        frames: &[u8],
        wal_offset: u64,
        stop: StopReason,
    ) -> String {
        let fh = FrameHeader::parse(&frames[..wal::FRAME_HEADER_SIZE]);
        match stop {
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
        }
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
        assert!(err.to_string().contains("frame boundary"), "{err}");
        // State unchanged by the failures: the right segment still applies.
        r.segment(e[1] as u32, &w[e[1]..], "s1").unwrap();
        // The first segment must be at offset 0.
        let err = IndexReplay::new(1, PS)
            .segment(e[1] as u32, &w[e[1]..], "x")
            .unwrap_err();
        assert!(err.to_string().contains("gap"), "{err}");
    }

    /// Litestream's racing final sync: a segment that repeats frames already read (the same
    /// bytes) is skipped over, by `segment` and `segment_stream` alike, and what follows it
    /// still applies; repeated frames that differ, or a segment ending inside what was
    /// read, are refused and leave the state as it was.
    #[test]
    fn repeated_frames_are_skipped_and_different_ones_refused() {
        let frames = [(1, 1), (2, 2), (3, 3), (4, 4), (2, 4)];
        let (w, e) = build((7, 8), &frames);
        // Same salts, same page numbers, other contents: each frame valid on its own.
        let (other, _) = build((7, 8), &[(1, 1), (5, 5), (3, 3), (4, 4), (2, 4)]);
        for streamed in [false, true] {
            let mut r = IndexReplay::new(6, PS);
            let apply = |r: &mut IndexReplay, off: usize, data: &[u8]| -> Result<Vec<u32>> {
                if streamed {
                    Ok(stream(r, off as u32, data, "s")?
                        .into_iter()
                        .map(|p| p.0)
                        .collect())
                } else {
                    Ok(r.segment(off as u32, data, "s")?
                        .into_iter()
                        .map(|p| p.pgno)
                        .collect())
                }
            };
            apply(&mut r, 0, &w[..e[3]]).unwrap();
            let at = (r.wal_bytes(), r.frames(), r.checksum, r.db_pages());
            // Wholly repeated, from a frame boundary and from offset 0: nothing new.
            assert!(apply(&mut r, e[1], &w[e[1]..e[3]]).unwrap().is_empty());
            assert!(apply(&mut r, 0, &w[..e[3]]).unwrap().is_empty());
            assert_eq!((r.wal_bytes(), r.frames(), r.checksum, r.db_pages()), at);
            // Differs in what it repeats; ends inside what was read.
            let err = apply(&mut r, e[1], &other[e[1]..e[4]]).unwrap_err();
            assert!(err.to_string().contains("differ"), "{err}");
            let err = apply(&mut r, e[1], &w[e[1]..e[2]]).unwrap_err();
            assert!(err.to_string().contains("inside what they held"), "{err}");
            assert_eq!((r.wal_bytes(), r.frames(), r.checksum, r.db_pages()), at);
            // Repeats two frames and brings one new one: only the new one's page.
            assert_eq!(apply(&mut r, e[1], &w[e[1]..e[4]]).unwrap(), vec![4]);
            assert_eq!(apply(&mut r, e[4], &w[e[4]..]).unwrap(), vec![2]);
            assert_eq!((r.wal_bytes(), r.frames()), (w.len() as u64, 5));
            assert_eq!(r.db_pages(), Some(4));
        }
        // Pages of a partly repeated segment point into that segment's own bytes.
        let mut r = IndexReplay::new(6, PS);
        r.segment(0, &w[..e[3]], "s").unwrap();
        let data = &w[e[2]..e[4]];
        let p = r.segment(e[2] as u32, data, "s").unwrap();
        assert_eq!(
            p,
            vec![PageRef {
                pgno: 4,
                at: fs() + 24
            }]
        );
        assert_eq!(&data[p[0].at..p[0].at + 24], &w[e[3] + 24..e[3] + 48]);
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

    /// Reads at most 7 bytes at a time, as an uneven network body does.
    struct Trickle<'a>(&'a [u8]);

    impl std::io::Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(7).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    /// `segment_stream` over `data`; the newest version of each page it handed out.
    fn stream(
        r: &mut IndexReplay,
        offset: u32,
        data: &[u8],
        path: &str,
    ) -> Result<Vec<(u32, Vec<u8>)>> {
        let mut pages: std::collections::BTreeMap<u32, Vec<u8>> = Default::default();
        let read_err = |e: std::io::Error| Error::corrupt("read", e.to_string());
        r.segment_stream(
            offset,
            &mut Trickle(data),
            path,
            &read_err,
            &mut |pgno, page| {
                pages.insert(pgno, page.to_vec());
                Ok(())
            },
        )?;
        Ok(pages.into_iter().collect())
    }

    /// `segment` and `segment_stream` agree on the pages, the state and every error.
    #[test]
    fn streaming_matches_whole_segment_replay() {
        let (w, e) = build((7, 8), &[(1, 0), (2, 2), (2, 0), (3, 3), (1, 0), (2, 3)]);
        let (mut a, mut b) = (IndexReplay::new(4, PS), IndexReplay::new(4, PS));
        for (lo, hi) in [(0, e[2]), (e[2], e[4]), (e[4], w.len())] {
            let data = &w[lo..hi];
            let whole: Vec<(u32, Vec<u8>)> = a
                .segment(lo as u32, data, "s")
                .unwrap()
                .into_iter()
                .map(|p| (p.pgno, data[p.at..p.at + PS as usize].to_vec()))
                .collect();
            assert_eq!(stream(&mut b, lo as u32, data, "s").unwrap(), whole);
            assert_eq!(
                (a.db_pages(), a.frames(), a.wal_bytes(), a.checksum),
                (b.db_pages(), b.frames(), b.wal_bytes(), b.checksum)
            );
        }

        let (other, _) = build((9, 9), &[(1, 1), (2, 2)]);
        let (unc, ue) = build((7, 8), &[(1, 1), (2, 0)]);
        let mut corrupt = w.clone();
        corrupt[e[1] + 24 + 100] ^= 1;
        let mut salty = w[..e[1]].to_vec();
        salty.extend_from_slice(&other[e[1]..e[2]]);
        let mut hdr = w.clone();
        hdr[13] ^= 1;
        let cases: Vec<(u32, Vec<u8>, u32)> = vec![
            (0, corrupt[..e[2]].to_vec(), PS),
            (0, salty, PS),
            (0, hdr, PS),
            (0, w[..20].to_vec(), PS),
            (0, unc.clone(), PS),
            (0, unc[..ue[1] + 100].to_vec(), PS),
            (e[1] as u32, w[e[1]..].to_vec(), PS),
            (0, w.clone(), 4096),
        ];
        for (i, (offset, data, ps)) in cases.iter().enumerate() {
            let whole = IndexReplay::new(0, *ps)
                .segment(*offset, data, "s")
                .unwrap_err();
            let mut r = IndexReplay::new(0, *ps);
            let streamed = stream(&mut r, *offset, data, "s").unwrap_err();
            assert_eq!(streamed.to_string(), whole.to_string(), "case {i}");
            // State unchanged: the right segment still applies from the start.
            if *ps == PS {
                stream(&mut r, 0, &w[..e[2]], "s").unwrap();
            }
        }
    }
}
