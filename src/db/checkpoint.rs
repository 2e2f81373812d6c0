//! Checkpoint policy: when walship checkpoints, in which mode, and how it keeps the
//! application's writer out of the way (walship's read mark moves only when walship
//! checkpoints, so the writer's auto-checkpoints find nothing to copy; the bulk of a
//! checkpoint runs without the write lock, which is only tried; a RESTART only when a
//! locked PASSIVE could not finish).
use super::*;

/// How long a checkpoint under the write lock waits for the application's own checkpoint
/// to let go of the checkpointer lock (see [`Db::checkpoint_with`]).
const CHECKPOINTER_WAIT: Duration = Duration::from_millis(200);

impl Db {
    /// After each copy: remembers where the shadow ended at the first copy made since the
    /// current read transaction began (walship's read mark is at or before that point).
    /// With `move_now`, and when frames were committed after that point, moves walship's
    /// read mark to the end of the WAL (see [`DbConn::move_read_mark`]).
    ///
    /// The mark is moved only right before walship's own checkpoint, not after every sync.
    /// While it stays put, the application's auto-checkpoints cannot copy frames past it, so
    /// the writer's commits do no checkpoint work (the page copies and the database fsync);
    /// walship does that work itself every `min-checkpoint-page-count` pages, as Litestream
    /// does with its long read transaction. Moving it after every sync let each of the
    /// writer's commits past 1000 pages backfill and fsync (compare.py scenario 1: writer
    /// 1.27x slower with walship, 0.65x with Litestream v0.3.13). The WAL stays bounded: a
    /// checkpoint that cannot get the write lock still moves the mark and copies up to it.
    pub(super) fn note_read_mark(&self, inner: &mut Inner, move_now: bool) -> Result<()> {
        let (Some(sh), Some(conn)) = (&inner.shadow, &inner.conn) else {
            return Ok(());
        };
        let epoch = conn.read_epoch();
        match inner.read_bound {
            Some((e, header, size)) if e == epoch && header == sh.header && sh.size > size => {
                if move_now {
                    conn.move_read_mark()?;
                    inner.read_bound = None;
                }
            }
            Some((e, header, _)) if e == epoch && header == sh.header => {}
            // The first copy since this read transaction began: the mark is at or before it.
            _ => inner.read_bound = Some((epoch, sh.header, sh.size)),
        }
        Ok(())
    }

    pub(super) fn checkpoint_due(&self, inner: &Inner) -> bool {
        match (self.opts.checkpoint_interval, &inner.shadow) {
            (Some(iv), Some(sh)) => {
                inner.last_checkpoint.elapsed() >= iv
                    && sh.size > HEADER_SIZE as u64 + sh.hdr.frame_size()
            }
            _ => false,
        }
    }

    pub(super) fn checkpoint_mode(&self, inner: &Inner) -> Result<Option<CheckpointMode>> {
        let Some(sh) = &inner.shadow else {
            return Ok(None);
        };
        let w = |n: u64| HEADER_SIZE as u64 + n * sh.hdr.frame_size();
        let real = std::fs::metadata(&self.wal_path)
            .map(|m| wal::align(m.len(), sh.hdr.page_size))
            .unwrap_or(0);
        Ok(if real >= w(TRUNCATE_PAGE_COUNT) {
            Some(CheckpointMode::Truncate)
        } else if (self.opts.max_checkpoint_page_count > 0
            && sh.size >= w(u64::from(self.opts.max_checkpoint_page_count)))
            || sh.size >= MAX_SHADOW_SIZE
        {
            Some(CheckpointMode::Restart)
        } else if sh.size >= w(u64::from(self.opts.min_checkpoint_page_count))
            || self.checkpoint_due(inner)
        {
            Some(CheckpointMode::Passive)
        } else {
            None
        })
    }

    /// Checkpoints with `mode` and follows SQLite into the restarted WAL without losing a
    /// frame. For PASSIVE, the write lock is held while the last frames are copied and the
    /// checkpoint runs, so the old WAL cycle ends exactly where the shadow ends; RESTART and
    /// TRUNCATE need the write lock themselves, so they run right after a copy. Then a
    /// `_litestream_seq` write makes SQLite restart the WAL (before walship's read lock is
    /// taken again, which would otherwise pin the old cycle), and the write lock is held
    /// while the rest of the old cycle and the start of the new one are copied.
    pub(super) fn checkpoint(&self, inner: &mut Inner, mode: CheckpointMode) -> Result<()> {
        // A WAL past max-checkpoint-page-count has usually not restarted only because the
        // application kept writing: a PASSIVE checkpoint under the write lock restarts it
        // just as well without waiting for readers. RESTART proper only after a locked
        // PASSIVE could not finish (an application reader holds old frames).
        let mode = if mode == CheckpointMode::Restart && !inner.passive_incomplete {
            CheckpointMode::Passive
        } else {
            mode
        };
        let started = Instant::now();
        let conn = inner
            .conn
            .take()
            .ok_or_else(|| Error::Internal("database connection not open".into()))?;
        // First the bulk of the work, without the write lock: with walship's read
        // transaction still open, this copies frames into the database only up to walship's
        // read mark (moved up just before, see `note_read_mark`) and cannot let anyone
        // restart the WAL. Then the write lock, if the application leaves it: waiting for
        // it behind a stream of writes would hold the read mark back, and the frames
        // committed during the wait would all be copied and checkpointed while the writer
        // waits in turn. A busy writer defers the rest to a later sync.
        // Between the two, copy what the writer committed meanwhile, still without the lock:
        // the part under the lock then copies (and fsyncs) only the last moments' frames.
        let r = conn
            .checkpoint(CheckpointMode::Passive)
            .and_then(|_| self.advance(inner))
            .and_then(|adv| match adv {
                Advance::Ok { .. } => conn.try_lock(LOCK_PROBE),
                // The next sync starts the new generation (the shadow is left as it was).
                Advance::NewGeneration(_) => Ok(false),
            })
            .and_then(|locked| {
                if !locked {
                    return Ok(None);
                }
                if mode != CheckpointMode::Passive {
                    conn.unlock()?;
                }
                self.checkpoint_with(inner, &conn, mode).map(Some)
            });
        inner.conn = Some(conn);
        let r = match r {
            Ok(None) => {
                if let Some(for_s) = inner.deferred.busy() {
                    warn!(db = %self.opts.path.display(), for_s, "the database stays locked by another connection: walship keeps copying the WAL but cannot checkpoint until the lock is released, and the WAL grows meanwhile; look for a long write transaction");
                } else {
                    debug!(db = %self.opts.path.display(), mode = mode.as_str(), "checkpoint deferred: the application holds the write lock");
                }
                return Ok(());
            }
            Ok(Some(res)) => {
                inner.deferred.end();
                if mode == CheckpointMode::Passive {
                    inner.passive_incomplete =
                        res.0.busy || res.0.log_frames != res.0.checkpointed_frames;
                }
                Ok(res)
            }
            Err(e) => Err(e),
        };
        self.metrics
            .checkpoint(mode.as_str(), started.elapsed(), r.is_ok());
        match r {
            Ok(res) => {
                inner.last_checkpoint = Instant::now();
                debug!(db = %self.opts.path.display(), mode = mode.as_str(), busy = res.0.busy, log = res.0.log_frames, checkpointed = res.0.checkpointed_frames, elapsed = ?started.elapsed(), "checkpoint");
                match res.1 {
                    Advance::Ok { .. } => Ok(()),
                    Advance::NewGeneration(reason) => self.create_generation(inner, &reason),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Runs with the write lock held when `mode` is PASSIVE (see [`Db::checkpoint`]).
    pub(super) fn checkpoint_with(
        &self,
        inner: &mut Inner,
        conn: &DbConn,
        mode: CheckpointMode,
    ) -> Result<(crate::sqlite::conn::CheckpointResult, Advance)> {
        // `conn` is out of `inner` here, so `advance` may borrow `inner`.
        // For PASSIVE the caller holds the write lock.
        let under_lock = mode == CheckpointMode::Passive;
        let pre = if under_lock {
            self.advance(inner)
        } else {
            Ok(Advance::Ok { changed: false })
        };
        let res = match pre {
            Ok(Advance::Ok { .. }) => {
                crate::fault::point("checkpoint.before");
                conn.end_read().and_then(|()| {
                    let mut r = conn.checkpoint(mode);
                    // The write lock is free mostly right after the application's commit,
                    // which is when SQLite runs its auto-checkpoint: that one may still hold
                    // the checkpointer lock, and a PASSIVE checkpoint does not wait for it
                    // (busy, -1 frames). It cannot commit while walship holds the write lock,
                    // so it ends soon: try again for a moment rather than give up the lock
                    // won (with a bulk writer, winning it again took seconds, and the WAL
                    // grew to 509 MB over a 20,000-transaction run; compare.py scenario 1).
                    let until = Instant::now() + CHECKPOINTER_WAIT;
                    while under_lock
                        && matches!(&r, Ok(c) if c.busy && c.log_frames < 0)
                        && Instant::now() < until
                    {
                        std::thread::sleep(Duration::from_millis(1));
                        r = conn.checkpoint(mode);
                    }
                    r
                })
            }
            Ok(other) => {
                if under_lock {
                    let _ = conn.unlock();
                }
                return Ok((
                    crate::sqlite::conn::CheckpointResult {
                        busy: true,
                        log_frames: 0,
                        checkpointed_frames: 0,
                    },
                    other,
                ));
            }
            Err(e) => Err(e),
        };
        let res = match res {
            Ok(r) => r,
            Err(e) => {
                if under_lock {
                    let _ = conn.unlock();
                }
                let _ = conn.begin_read();
                return Err(e);
            }
        };
        crate::fault::point("checkpoint.after");
        // Restart the WAL now, before the application can, still under the write lock taken
        // for the checkpoint: after a complete checkpoint, if nobody wrote, make the first
        // write of the new cycle ourselves. Then the old cycle provably ends at the shadow's
        // end. (Keeping the lock from the checkpoint to the restart means one hand-over of
        // the lock instead of two, and no writer slips in between to spoil the restart.)
        let complete = !res.busy && res.log_frames == res.checkpointed_frames;
        let mut restarted = false;
        if under_lock {
            if complete {
                restarted = self.restart_wal_locked(inner, conn)?;
            } else {
                conn.unlock()?;
            }
        }
        if !restarted {
            conn.bump_seq()?;
        }
        conn.begin_read()?;
        // After our own restart the new cycle holds our frame and our read mark is on it, so
        // nobody can restart the WAL again before we look: copy without the write lock (the
        // old cycle's end is known, see `restarted`). Otherwise, the WAL may have restarted
        // under our write above: copy under the lock so no second restart slips by.
        let adv = if inner.restarted.is_some() {
            self.advance(inner)?
        } else {
            conn.with_write_lock(|| self.advance(inner))?
        };
        inner.restarted = None;
        Ok((res, adv))
    }

    /// With the write lock held (it is released in every case): if the WAL still ends exactly where the shadow does (nobody
    /// wrote since the checkpoint), writes `_litestream_seq` so SQLite restarts the WAL, and
    /// records the new header in `inner.restarted`. Returns whether the restart happened.
    pub(super) fn restart_wal_locked(&self, inner: &mut Inner, conn: &DbConn) -> Result<bool> {
        let Some(sh) = inner.shadow.clone() else {
            return Ok(false);
        };
        let r = (|| {
            let wal_file = File::open(&self.wal_path).map_err(Error::io("open", &self.wal_path))?;
            let mut header = [0u8; HEADER_SIZE];
            if read_up_to(&wal_file, &mut header, 0, &self.wal_path)? < HEADER_SIZE
                || header != sh.header
            {
                return Ok(false);
            }
            // Any valid frame continuing our chain means someone appended: not ours to restart.
            let mut next = vec![0u8; sh.hdr.frame_size() as usize];
            let n = read_up_to(&wal_file, &mut next, sh.size, &self.wal_path)?;
            if n == next.len() && wal::scan_frames(&next, &sh.hdr, sh.checksum).valid_len > 0 {
                return Ok(false);
            }
            conn.bump_seq()?;
            conn.commit()?;
            crate::fault::point("restart_wal.after_commit");
            let mut after = [0u8; HEADER_SIZE];
            read_up_to(&wal_file, &mut after, 0, &self.wal_path)?;
            if after != sh.header {
                inner.restarted = Some((sh.index, sh.size, after));
                return Ok(true);
            }
            // A reader kept SQLite from restarting: our row went into the old cycle, which
            // the next copy picks up as usual.
            Ok(true)
        })();
        match r {
            Ok(false) => {
                conn.unlock()?;
                Ok(false)
            }
            Ok(true) => Ok(true),
            Err(e) => {
                let _ = conn.unlock();
                Err(e)
            }
        }
    }
}
