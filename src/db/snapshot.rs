//! Snapshots (the database at a commit, compressed for upload) and the validation reader
//! (the database frozen at a position, for restore-and-compare).
use super::*;

impl Db {
    /// Takes a snapshot: a PASSIVE checkpoint, then the whole database file compressed into
    /// a temporary file in the meta directory (through bounded buffers: memory does not grow
    /// with the database), named by the current index. Returns the position it belongs to
    /// and the compressed file, removed when the returned [`SnapshotFile`] is dropped (and,
    /// after a crash, at the next start: its name ends in `.tmp`). Blocking.
    pub fn snapshot(&self) -> Result<(Pos, SnapshotFile)> {
        let mut inner = self.lock();
        self.conn(&mut inner)?.begin_read()?;
        // Bring as much as possible into the main file; our read transaction keeps anyone
        // from restarting the WAL while we read it.
        self.conn(&mut inner)?.checkpoint(CheckpointMode::Passive)?;
        // Then copy the WAL to its end under the write lock: the shadow then ends at P, and
        // no checkpoint (ours or the application's) can write a frame past walship's read
        // mark, which is at or before P, into the database file while we read it.
        let conn = inner
            .conn
            .take()
            .ok_or_else(|| Error::Internal("database connection not open".into()))?;
        let adv = conn.with_write_lock(|| self.advance(&mut inner));
        inner.conn = Some(conn);
        if let Advance::NewGeneration(_) = adv? {
            // The next sync starts the new generation; snapshot that one.
            return Err(Error::NoGeneration);
        }
        let sh = inner.shadow.clone().ok_or(Error::NoGeneration)?;
        // Publish the position the copy reached: the replica uploads up to it before the
        // snapshot (see `Replica::snapshot`). Without this the replica saw the position of
        // the last sync and uploaded too little (crash matrix, round 93 of a long run).
        let now = Some(sh.pos());
        self.pos_tx.send_if_modified(|p| {
            let changed = *p != now;
            *p = now;
            changed
        });
        crate::fault::point("snapshot.after_checkpoint");
        let pos = sh.pos();
        // The database file alone can be torn: a checkpoint running while it is read (a
        // partial one, held back by an application reader) writes some pages and not others,
        // e.g. page 1 from before and a later page from after. Every page a checkpoint can
        // write during the read has a frame in this index at or before P, so the snapshot
        // takes each such page from its newest frame in the shadow WAL instead: the image is
        // exactly the database at P, a committed state, even on its own. (Found by the crash
        // matrix: a generation whose only object was its first snapshot failed
        // integrity_check; the real Litestream v0.3.13 shows the same.)
        let shadow_path = self.shadow_path(sh.generation, sh.index);
        let overlay = ShadowOverlay::read(&shadow_path, sh.hdr.frame_size(), sh.size)?;
        let page_size = u64::from(sh.hdr.page_size);
        let path = &self.opts.path;
        let tmp = tempfile::Builder::new()
            .prefix(".snapshot-")
            .suffix(".tmp")
            .tempfile_in(&self.meta_dir)
            .map_err(Error::io("create snapshot file in", &self.meta_dir))?;
        let tmp_path = tmp.path().to_path_buf();
        // Read through the connection's own handle: opening and closing another descriptor
        // of the database file would drop SQLite's POSIX locks.
        let f = self.conn(&mut inner)?.main_file()?;
        let db_len = match overlay.db_pages {
            Some(n) => u64::from(n) * page_size,
            None => wal::align(f.size()?, sh.hdr.page_size),
        };
        let mut enc = compress::encoder(std::io::BufWriter::with_capacity(1 << 20, tmp));
        // A whole number of pages per read.
        let chunk = (1u64 << 20).max(page_size) / page_size * page_size;
        let mut buf = vec![0u8; chunk as usize];
        let mut at = 0u64;
        while at < db_len {
            let want = chunk.min(db_len - at) as usize;
            let n = f.read_at(&mut buf[..want], at)?;
            // Pages past the end of the file exist only in the WAL (the overlay must have
            // them; checked below).
            buf[n..want].fill(0);
            let first = at / page_size + 1;
            for k in 0..(want as u64 / page_size) {
                let pgno = (first + k) as u32;
                let dst = &mut buf[(k * page_size) as usize..((k + 1) * page_size) as usize];
                if let Some(off) = overlay.pages.get(&pgno) {
                    let got = read_up_to(&overlay.file, dst, *off, &shadow_path)?;
                    if got != dst.len() {
                        return Err(Error::corrupt(
                            shadow_path.display().to_string(),
                            format!("frame of page {pgno} cut short"),
                        ));
                    }
                } else if (k * page_size) as usize >= n {
                    return Err(Error::corrupt(
                        path.display().to_string(),
                        format!("page {pgno} is neither in the database file nor in the wal"),
                    ));
                }
            }
            std::io::Write::write_all(&mut enc, &buf[..want])
                .map_err(Error::io("compress snapshot into", &tmp_path))?;
            at += want as u64;
        }
        Ok((pos, finish_compressed(enc, &tmp_path, at)?))
    }

    /// Freezes the database for validation: copies everything committed into the shadow
    /// WAL while holding the write lock (so nothing commits meanwhile), then opens a read
    /// transaction on a new connection, which therefore sees exactly the returned position.
    /// Application writers wait only for the copy. Blocking.
    pub fn validation_reader(&self) -> Result<(Pos, rusqlite::Connection)> {
        self.sync()?;
        let mut inner = self.lock();
        self.conn(&mut inner)?.lock()?;
        let r = (|| {
            if let Advance::NewGeneration(reason) = self.advance(&mut inner)? {
                return Err(Error::Config(format!(
                    "validation skipped: the next sync starts a new generation ({reason})"
                )));
            }
            let pos = inner
                .shadow
                .as_ref()
                .map(Shadow::pos)
                .ok_or(Error::NoGeneration)?;
            let p = self.opts.path.display().to_string();
            let reader = rusqlite::Connection::open_with_flags(
                &self.opts.path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                    | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(Error::sqlite(format!("open validation reader on {p}")))?;
            reader
                .execute_batch("BEGIN")
                .map_err(Error::sqlite(format!("begin validation read on {p}")))?;
            // The read transaction takes its snapshot at the first read.
            reader
                .query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| {
                    r.get::<_, i64>(0)
                })
                .map_err(Error::sqlite(format!("validation read on {p}")))?;
            Ok((pos, reader))
        })();
        let unlocked = self.conn(&mut inner).and_then(|c| c.unlock());
        let pos = inner.shadow.as_ref().map(Shadow::pos);
        drop(inner);
        self.pos_tx.send_if_modified(|p| {
            let changed = *p != pos;
            *p = pos;
            changed
        });
        let v = r?;
        unlocked?;
        Ok(v)
    }
}
