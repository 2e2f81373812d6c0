//! Following the real WAL: comparing the shadow WAL with it and copying its new committed
//! frames, one checked pass per sync; anything that breaks continuity (a header that is not
//! the next cycle's, a last frame that changed, a truncated WAL) asks for a new generation.
use super::*;

/// How much of the WAL is read at once while scanning.
const SCAN_CHUNK: u64 = 8 << 20;

/// What [`Db::advance`] found.
pub(super) enum Advance {
    /// The shadow follows the WAL; `changed` when frames were copied or an index started.
    Ok { changed: bool },
    /// Continuity with the WAL cannot be proven, for this reason: start a new generation.
    NewGeneration(String),
}

impl Db {
    /// Compares the shadow WAL with the real one and copies new committed frames.
    pub(super) fn advance(&self, inner: &mut Inner) -> Result<Advance> {
        let Some(mut sh) = inner.shadow.clone() else {
            return Ok(Advance::NewGeneration("no generation exists".into()));
        };
        let wal_file = match File::open(&self.wal_path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Advance::NewGeneration("wal file missing".into()));
            }
            Err(e) => return Err(Error::io("open", &self.wal_path)(e)),
        };
        let mut changed = false;
        loop {
            if sh.index >= MAX_INDEX {
                return Ok(Advance::NewGeneration("max index exceeded".into()));
            }
            let mut real_header = [0u8; HEADER_SIZE];
            if read_up_to(&wal_file, &mut real_header, 0, &self.wal_path)? < HEADER_SIZE {
                return Ok(Advance::NewGeneration("wal header missing".into()));
            }
            let real_len = wal_file
                .metadata()
                .map_err(Error::io("stat", &self.wal_path))?
                .len();
            let fs = sh.hdr.frame_size();
            let same_cycle = real_header == sh.header;
            if same_cycle && wal::align(real_len, sh.hdr.page_size) < sh.size {
                return Ok(Advance::NewGeneration(
                    "wal truncated by another process".into(),
                ));
            }
            if !same_cycle {
                let new_hdr = match WalHeader::parse(&real_header) {
                    Ok(h) => h,
                    Err(e) => {
                        return Ok(Advance::NewGeneration(format!("wal header invalid: {e}")));
                    }
                };
                // A restart walship made itself, or the first cycle after a proven clean
                // stop: the old cycle ended exactly at our size.
                let own_restart = inner.restarted == Some((sh.index, sh.size, real_header));
                if sh.size <= HEADER_SIZE as u64 && !own_restart {
                    return Ok(Advance::NewGeneration("wal header only, mismatched".into()));
                }
                if new_hdr.page_size != sh.hdr.page_size {
                    return Ok(Advance::NewGeneration("page size changed".into()));
                }
                // SQLite adds one to salt-1 (read from the shared wal-index) on every WAL
                // restart; anything else means a whole WAL cycle went by unseen. The
                // checkpoint sequence is no help: each connection writes its own counter, so
                // it jumps about when the application and walship take turns restarting.
                // After a clean stop the new WAL may be a new file with random salts; the
                // proof stands in for this rule there.
                if new_hdr.salt.0 != sh.hdr.salt.0.wrapping_add(1) && !own_restart {
                    return Ok(Advance::NewGeneration(format!(
                        "wal restarted more than once since last sync (salt-1 {} -> {})",
                        sh.hdr.salt.0, new_hdr.salt.0
                    )));
                }
            }
            // A restart walship made itself: the old cycle ended exactly at our size.
            let own_restart =
                !same_cycle && inner.restarted == Some((sh.index, sh.size, real_header));
            // The last frame we copied must still be there, byte for byte; otherwise the WAL
            // was overwritten past what we saw.
            if sh.size > HEADER_SIZE as u64 && !own_restart {
                let mut ours = vec![0u8; fs as usize];
                let mut theirs = vec![0u8; fs as usize];
                let sp = self.shadow_path(sh.generation, sh.index);
                let sf = File::open(&sp).map_err(Error::io("open", &sp))?;
                if read_up_to(&sf, &mut ours, sh.size - fs, &sp)? < fs as usize {
                    return Ok(Advance::NewGeneration("short shadow wal".into()));
                }
                let n = read_up_to(&wal_file, &mut theirs, sh.size - fs, &self.wal_path)?;
                if n < fs as usize || ours != theirs {
                    return Ok(Advance::NewGeneration(
                        "wal overwritten by another process".into(),
                    ));
                }
            }
            // Copy what is committed in this cycle after our end (for a restarted WAL, the
            // rest of the old cycle, which the new cycle has not reached).
            if self.copy_frames(&wal_file, real_len, &mut sh)? {
                changed = true;
            }
            if same_cycle {
                break;
            }
            // Start the next index from the new header.
            let new_hdr = WalHeader::parse(&real_header)
                .map_err(|e| Error::corrupt(self.wal_path.display().to_string(), e.to_string()))?;
            let next = sh.index + 1;
            let path = self.shadow_path(sh.generation, next);
            write_atomic(&path, &real_header)?;
            self.metrics.total_wal_bytes.inc_by(HEADER_SIZE as u64);
            debug!(db = %self.opts.path.display(), index = next, "new shadow wal index");
            crate::fault::point("shadow.after_new_index");
            sh = Shadow {
                generation: sh.generation,
                index: next,
                size: HEADER_SIZE as u64,
                header: real_header,
                hdr: new_hdr,
                checksum: new_hdr.checksum,
            };
            inner.shadow = Some(sh.clone());
            changed = true;
        }
        inner.shadow = Some(sh);
        Ok(Advance::Ok { changed })
    }

    /// Appends the committed, valid frames of the real WAL after `sh.size` to the shadow
    /// file. Returns true if anything was appended.
    ///
    /// One pass: each chunk read is checked (salt and the checksum chain) and its frames up
    /// to the last commit are written as they are; frames after it wait in memory for their
    /// commit. Checked bytes are written, never re-read, so the WAL changing meanwhile cannot
    /// slip in unchecked bytes (a frame of a new cycle or a torn one fails the chain). The
    /// WAL used to be read twice (scan, then copy with a second check): under a bulk writer
    /// that was a third of walship's reads (`compare.py` scenario 1, /proc/PID/io rchar).
    /// A transaction that leaves more than `SCAN_CHUNK` uncommitted frames behind is not
    /// kept in memory: its frames are re-read and re-checked once its commit is found.
    pub(super) fn copy_frames(
        &self,
        wal_file: &File,
        real_len: u64,
        sh: &mut Shadow,
    ) -> Result<bool> {
        let fs = sh.hdr.frame_size();
        let end = wal::align(real_len, sh.hdr.page_size);
        let path = self.shadow_path(sh.generation, sh.index);
        let mut out: Option<File> = None;
        let open_out = |out: &mut Option<File>| -> Result<()> {
            if out.is_none() {
                *out = Some(
                    std::fs::OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .map_err(Error::io("open", &path))?,
                );
            }
            Ok(())
        };
        // Read position and the chain's checksum there.
        let mut cur = sh.size;
        let mut ck = sh.checksum;
        // Written to the shadow so far (always ends on a commit frame).
        let mut written = sh.size;
        let mut written_ck = sh.checksum;
        // The last commit found, written or not (see `spilled`).
        let mut commit_end = sh.size;
        let mut commit_ck = sh.checksum;
        // Valid frames between `written` and `cur`, waiting for a commit.
        let mut pending: Vec<u8> = Vec::new();
        // `pending` outgrew SCAN_CHUNK and was dropped: from `written` on, only scan.
        let mut spilled = false;
        let mut buf = Vec::new();
        // The WAL file is often much longer than its valid frames (stale frames of earlier
        // cycles stay behind): start with a few frames and grow the read only while the
        // scan keeps running to the end of it, so a sync after one small commit reads
        // kilobytes, not megabytes (a fixed 8 MiB read cost 14% of a core at 20 commits/s).
        let max_frames = (SCAN_CHUNK / fs).max(1);
        let mut frames = 4u64.min(max_frames);
        while cur < end {
            let len = (end - cur).min(frames * fs);
            frames = (frames * 4).min(max_frames);
            buf.resize(len as usize, 0);
            let n = read_up_to(wal_file, &mut buf, cur, &self.wal_path)?;
            buf.truncate(n);
            let scan = wal::scan_frames(&buf, &sh.hdr, ck);
            let committed = scan.committed_len as usize;
            let valid = scan.valid_len as usize;
            if scan.commits > 0 {
                commit_end = cur + scan.committed_len;
                commit_ck = scan.committed_checksum;
                if !spilled {
                    open_out(&mut out)?;
                    let f = out.as_ref().expect("opened");
                    if !pending.is_empty() {
                        crate::platform::write_all_at(f, &pending, written)
                            .map_err(Error::io("write", &path))?;
                        written += pending.len() as u64;
                        pending.clear();
                    }
                    crate::platform::write_all_at(f, &buf[..committed], written)
                        .map_err(Error::io("write", &path))?;
                    written = commit_end;
                    written_ck = commit_ck;
                    pending.extend_from_slice(&buf[committed..valid]);
                }
            } else if !spilled {
                pending.extend_from_slice(&buf[..valid]);
            }
            if !spilled && pending.len() as u64 > SCAN_CHUNK {
                spilled = true;
                pending = Vec::new();
            }
            if scan.valid_len == 0 {
                break;
            }
            ck = scan.valid_checksum;
            cur += scan.valid_len;
            if scan.stop != wal::StopReason::End || valid < buf.len() {
                break;
            }
        }
        if commit_end == sh.size {
            return Ok(false);
        }
        if commit_end > MAX_SHADOW_SIZE && sh.size <= MAX_SHADOW_SIZE {
            warn!(db = %self.opts.path.display(), "shadow wal passed 3 GiB; a checkpoint will start a new index");
        }
        if written < commit_end {
            // A long uncommitted stretch was not kept: copy it now, re-reading and
            // re-checking the chain on the bytes actually written.
            open_out(&mut out)?;
            let f = out.as_ref().expect("opened");
            let mut cur = written;
            let mut ck = written_ck;
            while cur < commit_end {
                let len = (commit_end - cur).min(max_frames * fs);
                buf.resize(len as usize, 0);
                let n = read_up_to(wal_file, &mut buf, cur, &self.wal_path)?;
                if (n as u64) < len {
                    return Err(Error::corrupt(
                        self.wal_path.display().to_string(),
                        "wal shrank while copying",
                    ));
                }
                let scan = wal::scan_frames(&buf, &sh.hdr, ck);
                if scan.valid_len != len {
                    return Err(Error::corrupt(
                        self.wal_path.display().to_string(),
                        "wal changed while copying",
                    ));
                }
                ck = scan.valid_checksum;
                crate::platform::write_all_at(f, &buf, cur).map_err(Error::io("write", &path))?;
                cur += len;
            }
            if ck != commit_ck {
                return Err(Error::corrupt(
                    self.wal_path.display().to_string(),
                    "wal changed while copying",
                ));
            }
        }
        let f = out.as_ref().expect("opened: something was written");
        f.sync_data().map_err(Error::io("fsync", &path))?;
        crate::fault::point("shadow.after_copy");
        self.metrics.total_wal_bytes.inc_by(commit_end - sh.size);
        sh.size = commit_end;
        sh.checksum = commit_ck;
        Ok(true)
    }
}
