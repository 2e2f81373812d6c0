//! Going on with the same generation after a clean stop.
//!
//! When walship stops, the database's WAL may disappear or start over before walship runs
//! again: when the application closes its last connection after walship, SQLite checkpoints
//! and deletes the `-wal` file. The next start then found no WAL (or a WAL with new salts)
//! and had to start a new generation, which uploads the whole database again: on a large
//! database the most expensive thing a replicator does, for nothing.
//!
//! So at a clean stop ([`Db::close`]) walship records a proof that the database file holds
//! exactly the shadow WAL's last position, and the next start goes on with the same
//! generation when the proof still holds:
//!
//! - **Recorded** under the write lock (nobody can commit): copy the rest of the WAL into
//!   the shadow, run a PASSIVE checkpoint with walship's read transaction ended, and only if
//!   it copied every frame (the database file now holds every committed frame, all of which
//!   are in the shadow), fsync the database file and note its device, inode, size, mtime and
//!   ctime with the position. Before the lock is let go, walship waits until the clock has
//!   moved 20 ms past that mtime, so any later write to the file (a checkpoint of a commit
//!   made after the stop) gets a different mtime and ctime, even with coarse file times.
//! - **Checked** at the next start, under the write lock and before walship writes anything:
//!   the proof must name the shadow's last position and the file must have the same stamp.
//!   Then the WAL now in place (none, or a new cycle the application began on top of that
//!   file) continues the generation as the next index: walship makes sure it has a committed
//!   frame (its own `_litestream_seq` write), and the copy treats the old cycle as ended at
//!   the shadow's end, exactly as after a restart walship made itself. Any difference (the
//!   application wrote and checkpointed while walship was down, the file was replaced or
//!   restored, another position) and the proof is not used: the usual checks apply and
//!   usually start a new generation.
//! - **Used once**: the proof is removed when it is read, whatever the outcome. A stop that
//!   is not clean (kill -9, a crash, a power cut) leaves none.
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::*;

/// The proof's file in the meta directory (Litestream ignores it).
pub(super) const FILE: &str = "walship-clean-stop.json";

/// How long a stop waits for the write lock before it gives up the proof.
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// How far past the database file's mtime the clock must be before the lock is let go:
/// more than one tick of the kernel's coarse clock, which file times use (4 ms at HZ=250,
/// 10 ms at HZ=100).
const CLOCK_MARGIN: Duration = Duration::from_millis(20);

/// What identifies the database file's content without reading it: any write changes
/// mtime and ctime (ctime cannot be set from user space), a replaced file has another
/// inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct FileStamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl FileStamp {
    /// The stamp of the file at `path`, whose metadata is `md`. Where the system has no
    /// change time (Windows), `ctime_ns` is 0 and the mtime, size and identity decide.
    pub(super) fn of(path: &Path, md: &std::fs::Metadata) -> Result<FileStamp> {
        let id = crate::platform::file_id(path, md).map_err(Error::io("stat", path))?;
        let mtime_ns = md
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as i128);
        Ok(FileStamp {
            dev: id.dev,
            ino: id.ino,
            size: md.len(),
            mtime_ns,
            ctime_ns: crate::platform::change_time_ns(md).unwrap_or(0),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Proof {
    generation: Generation,
    index: u32,
    size: u64,
    /// The shadow's WAL header, hex.
    header: String,
    db: FileStamp,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// How a start used the proof (for the log and the tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Resume {
    /// The WAL in place is still the shadow's cycle: nothing special to do.
    SameCycle,
    /// The WAL in place is a new cycle on top of the proven file: it becomes the next index.
    NextIndex,
    /// The proof does not hold.
    Refused(&'static str),
}

impl Db {
    fn clean_stop_path(&self) -> PathBuf {
        self.meta_dir.join(FILE)
    }

    /// At a clean stop: records the proof if it can be had (see the module docs). Takes the
    /// connection out of `inner` for good (it is closed on return).
    pub(super) fn record_clean_stop(&self, inner: &mut Inner) -> Result<bool> {
        let Some(conn) = inner.conn.take() else {
            return Ok(false);
        };
        if inner.shadow.is_none() {
            return Ok(false);
        }
        // A proof left by an earlier stop would be stale from here on.
        remove_if_exists(&self.clean_stop_path())?;
        if !conn.try_lock(LOCK_WAIT)? {
            return Ok(false);
        }
        let r = self.record_locked(inner, &conn);
        let _ = conn.unlock();
        r
    }

    fn record_locked(&self, inner: &mut Inner, conn: &DbConn) -> Result<bool> {
        if !matches!(self.advance(inner)?, Advance::Ok { .. }) {
            return Ok(false);
        }
        let Some(sh) = inner.shadow.clone() else {
            return Ok(false);
        };
        conn.end_read()?;
        let res = conn.checkpoint(CheckpointMode::Passive)?;
        if res.busy || res.log_frames != res.checkpointed_frames {
            debug!(db = %self.opts.path.display(), "clean stop: a reader kept the checkpoint from finishing; no proof");
            return Ok(false);
        }
        conn.main_file()?.sync()?;
        let md = std::fs::metadata(&self.opts.path).map_err(Error::io("stat", &self.opts.path))?;
        let stamp = FileStamp::of(&self.opts.path, &md)?;
        // Let the clock pass the file's mtime before anyone else may write (see CLOCK_MARGIN).
        let mtime = md.modified().map_err(Error::io("stat", &self.opts.path))?;
        let deadline = std::time::Instant::now() + Duration::from_secs(1);
        loop {
            match SystemTime::now().duration_since(mtime) {
                Ok(d) if d >= CLOCK_MARGIN => break,
                _ if std::time::Instant::now() >= deadline => {
                    // An mtime in the future: the clock is not to be trusted for this.
                    return Ok(false);
                }
                _ => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        let proof = Proof {
            generation: sh.generation,
            index: sh.index,
            size: sh.size,
            header: hex(&sh.header),
            db: stamp,
        };
        let json = serde_json::to_vec_pretty(&proof)
            .map_err(|e| Error::Internal(format!("encode the clean-stop proof: {e}")))?;
        write_atomic(&self.clean_stop_path(), &json)?;
        crate::fault::point("clean_stop.after_record");
        Ok(true)
    }

    /// Reads and removes the proof, if any. A damaged one counts as none.
    pub(super) fn take_clean_stop(&self) -> Result<Option<Proof>> {
        let path = self.clean_stop_path();
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("read", &path)(e)),
        };
        remove_if_exists(&path)?;
        match serde_json::from_slice(&data) {
            Ok(p) => Ok(Some(p)),
            Err(e) => {
                warn!(path = %path.display(), error = %e, "clean-stop record is damaged; ignored");
                Ok(None)
            }
        }
    }

    /// At start, before walship writes anything: checks the proof under the write lock and,
    /// when it holds and the WAL in place is a new cycle, sets things up so that the next
    /// copy starts the next index with it (see the module docs).
    pub(super) fn resume_clean_stop(&self, inner: &mut Inner, proof: &Proof) -> Result<Resume> {
        let Some(sh) = inner.shadow.clone() else {
            return Ok(Resume::Refused("no shadow wal"));
        };
        if proof.generation != sh.generation
            || proof.index != sh.index
            || proof.size != sh.size
            || proof.header != hex(&sh.header)
        {
            return Ok(Resume::Refused("the shadow wal moved on"));
        }
        let conn = inner
            .conn
            .take()
            .ok_or_else(|| Error::Internal("database connection not open".into()))?;
        let r = self.resume_locked(inner, &conn, proof, &sh);
        inner.conn = Some(conn);
        r
    }

    fn resume_locked(
        &self,
        inner: &mut Inner,
        conn: &DbConn,
        proof: &Proof,
        sh: &Shadow,
    ) -> Result<Resume> {
        conn.lock()?;
        let md = match std::fs::metadata(&self.opts.path) {
            Ok(md) => md,
            Err(e) => {
                let _ = conn.unlock();
                return Err(Error::io("stat", &self.opts.path)(e));
            }
        };
        let now = FileStamp::of(&self.opts.path, &md)?;
        if now != proof.db {
            debug!(db = %self.opts.path.display(), recorded = ?proof.db, ?now, "clean-stop proof: the database file's stamp differs");
            conn.unlock()?;
            return Ok(Resume::Refused("the database file changed"));
        }
        let current = match wal_header(&self.wal_path) {
            Ok(h) => h,
            Err(e) => {
                let _ = conn.unlock();
                return Err(e);
            }
        };
        let resume = if current == Some(sh.header) {
            // The shadow's cycle is still in place (the application kept the database open,
            // or walship closed last), fully checkpointed at the stop. A read transaction
            // begun now would take read mark 0, which does not keep the application from
            // restarting the WAL over the frames walship last copied: restart it ourselves
            // first, as after walship's own checkpoints (this releases the lock).
            self.restart_wal_locked(inner, conn)?;
            Resume::SameCycle
        } else {
            // No WAL, or a new cycle the application began on top of the proven file. Make
            // sure it has a committed frame (and a -wal file): then its header is final,
            // and walship's read mark will sit on it, so the application cannot restart the
            // WAL again before walship has looked.
            let r = conn.bump_seq().and_then(|()| conn.commit());
            if r.is_err() {
                let _ = conn.unlock();
            }
            r?;
            match wal_header(&self.wal_path)? {
                Some(h) if h != sh.header => {
                    inner.restarted = Some((sh.index, sh.size, h));
                    Resume::NextIndex
                }
                // Our write went into the shadow's own cycle after all.
                _ => Resume::SameCycle,
            }
        };
        // Put walship's read mark on what is there now (its read transaction began before
        // the writes above).
        conn.end_read()?;
        conn.begin_read()?;
        Ok(resume)
    }
}

/// The `-wal` file's header, if it has one.
fn wal_header(path: &Path) -> Result<Option<[u8; HEADER_SIZE]>> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("open", path)(e)),
    };
    let mut h = [0u8; HEADER_SIZE];
    if read_up_to(&f, &mut h, 0, path)? < HEADER_SIZE {
        return Ok(None);
    }
    Ok(Some(h))
}

fn remove_if_exists(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {
            if let Some(dir) = path.parent() {
                crate::fsutil::sync_dir(dir)?;
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove", path)(e)),
    }
}
