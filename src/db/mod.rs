//! [`Db`]: tails one SQLite database and keeps its shadow WAL.
//!
//! The shadow WAL (`<meta>/generations/<g>/wal/<index>.wal`) is a byte-exact prefix of each
//! WAL cycle: the 32-byte header as first seen, then every committed, checksum-valid frame,
//! in order. Replicas read it to build WAL segments. Whenever continuity with the previous
//! WAL state cannot be proven, a new generation starts (and with it a new snapshot): never a
//! silent gap.
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

mod checkpoint;
mod clean_stop;
mod generation;
mod meta_lock;
mod read;
mod snapshot;
mod wal_copy;

use tokio::sync::watch;
use tracing::{debug, info, warn};
use wal_copy::Advance;

use crate::compress;
use crate::config;
use crate::error::{Error, Result};
use crate::fsutil::{create_dir_all_synced, write_atomic};
use crate::layout;
use crate::platform::FileId;
use crate::pos::{Generation, MAX_INDEX, Pos};
use crate::shadow::{
    self, GenerationFile, ShadowOverlay, compress_range, finish_compressed, read_up_to,
    remove_tmp_files, segment_end,
};
pub use crate::shadow::{INLINE_SEGMENT_BYTES, MAX_SEGMENT_BYTES, ShadowRead, SnapshotFile};
use crate::sqlite::conn::{CheckpointMode, DbConn};
use crate::sqlite::wal::{self, HEADER_SIZE, WalHeader};

/// Above this many WAL pages the WAL file is truncated (Litestream's fixed TruncatePageN).
pub const TRUNCATE_PAGE_COUNT: u64 = 500_000;

/// Shadow WAL offsets must stay below this so segment names keep 8 hex digits; a forced
/// RESTART checkpoint starts a new index before that.
const MAX_SHADOW_SIZE: u64 = 3 << 30;

/// Bytes one WAL frame takes at SQLite's default 4 KiB page size (the frame header and the
/// page), for telling a checkpoint's worth of WAL growth from a `stat` alone.
const FRAME_BYTES_AT_4K: u64 = wal::FRAME_HEADER_SIZE as u64 + 4096;

/// How long a checkpoint waits for the application to leave the write lock before it is
/// deferred to a later sync (see [`Db::checkpoint`]).
const LOCK_PROBE: Duration = Duration::from_millis(20);

/// Settings of one database (see `litestream.yml`'s `dbs:` entries).
#[derive(Debug, Clone)]
pub struct DbOptions {
    /// The database file.
    pub path: PathBuf,
    /// Meta directory; default `<dir>/.<name>-litestream`.
    pub meta_path: Option<PathBuf>,
    /// How often to look at the WAL when no change notification arrives. Default 1s.
    pub monitor_interval: Duration,
    /// Checkpoint at least this often when there are frames; `None` disables. Default 1m.
    pub checkpoint_interval: Option<Duration>,
    /// PASSIVE checkpoint when the shadow WAL holds this many pages. Default 1000.
    pub min_checkpoint_page_count: u32,
    /// RESTART checkpoint when the shadow WAL holds this many pages; 0 disables. Default 10000.
    pub max_checkpoint_page_count: u32,
}

impl DbOptions {
    /// Defaults as Litestream's for `path`.
    pub fn new(path: impl Into<PathBuf>) -> DbOptions {
        DbOptions {
            path: path.into(),
            meta_path: None,
            monitor_interval: config::DEFAULT_MONITOR_INTERVAL,
            checkpoint_interval: Some(config::DEFAULT_CHECKPOINT_INTERVAL),
            min_checkpoint_page_count: config::DEFAULT_MIN_CHECKPOINT_PAGE_COUNT,
            max_checkpoint_page_count: config::DEFAULT_MAX_CHECKPOINT_PAGE_COUNT,
        }
    }

    /// The meta directory in use.
    pub fn meta_dir(&self) -> PathBuf {
        shadow::meta_dir(&self.path, self.meta_path.as_deref())
    }

    /// The proof a clean stop leaves in the meta directory: while it is there and holds,
    /// the next start goes on with the generation instead of starting a new one.
    pub fn clean_stop_proof(&self) -> PathBuf {
        self.meta_dir().join(clean_stop::FILE)
    }
}

/// State of the current shadow WAL file.
#[derive(Debug, Clone)]
struct Shadow {
    generation: Generation,
    index: u32,
    /// Bytes in the shadow file: always a commit boundary.
    size: u64,
    header: [u8; HEADER_SIZE],
    hdr: WalHeader,
    /// Cumulative checksum after the last frame in the shadow file.
    checksum: (u32, u32),
}

impl Shadow {
    fn pos(&self) -> Pos {
        Pos::new(self.generation, self.index, self.size)
    }
}

struct Inner {
    conn: Option<DbConn>,
    db_id: Option<FileId>,
    wal_id: Option<FileId>,
    shadow: Option<Shadow>,
    loaded: bool,
    last_checkpoint: Instant,
    /// Change key (see [`Db::change_key`]) taken at the start of the last completed sync.
    last_wal_stat: Option<ChangeKey>,
    /// A WAL restart walship made itself, under the write lock, right after a complete
    /// checkpoint: (shadow index, shadow size, the new WAL header). The old cycle is known
    /// to end exactly at that size, so the new cycle may overwrite its last frame.
    restarted: Option<(u32, u64, [u8; HEADER_SIZE])>,
    /// Where the shadow ended after the first copy made since the current read transaction
    /// began: (its read epoch, WAL header, shadow size). A frame copied past that size was
    /// committed after the read mark was taken (see [`DbConn::move_read_mark`]).
    read_bound: Option<(u64, [u8; HEADER_SIZE], u64)>,
    /// Checkpoints deferred because the application kept the write lock.
    deferred: crate::busy::BusySpell,
    /// The last PASSIVE checkpoint under the write lock could not copy every frame.
    passive_incomplete: bool,
}

/// See [`Db::change_key`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ChangeKey {
    wal_id: FileId,
    wal_len: u64,
    shm_header: [u8; crate::sqlite::file::SHM_HEADER_SIZE],
}

/// What one sync did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncOutcome {
    /// The database file does not exist yet.
    Waiting,
    /// Nothing changed.
    Idle,
    /// New frames were copied, or a new index or generation started.
    Changed,
}

/// One database being replicated.
pub struct Db {
    opts: DbOptions,
    wal_path: PathBuf,
    meta_dir: PathBuf,
    inner: Mutex<Inner>,
    pos_tx: watch::Sender<Option<Pos>>,
    replica_pos: Mutex<BTreeMap<String, Option<Pos>>>,
    /// Woken whenever a replica's position changes (durability waits listen here).
    progress: tokio::sync::Notify,
    events: std::sync::OnceLock<tokio::sync::broadcast::Sender<crate::event::Event>>,
    metrics: crate::metrics::DbMetrics,
    /// Length of the `-wal` file at the last sync (see [`Db::wal_growth`]).
    wal_len_at_sync: std::sync::atomic::AtomicU64,
    /// Held from the first sync (or [`Db::claim`]) until [`Db::close`]: one replicator per
    /// database.
    meta_lock: Mutex<Option<meta_lock::MetaLock>>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("path", &self.opts.path).finish()
    }
}

fn file_id(path: &Path, md: &std::fs::Metadata) -> Result<FileId> {
    crate::platform::file_id(path, md).map_err(Error::io("stat", path))
}

impl Db {
    /// A database with `opts`. Nothing is opened until the first [`Db::sync`].
    pub fn new(opts: DbOptions) -> Arc<Db> {
        let mut wal = opts.path.as_os_str().to_owned();
        wal.push("-wal");
        let meta_dir = opts.meta_dir();
        let metrics = crate::metrics::global().db(&opts.path);
        Arc::new(Db {
            wal_path: PathBuf::from(wal),
            meta_dir,
            opts,
            inner: Mutex::new(Inner {
                conn: None,
                db_id: None,
                wal_id: None,
                shadow: None,
                loaded: false,
                last_checkpoint: Instant::now(),
                last_wal_stat: None,
                restarted: None,
                read_bound: None,
                deferred: Default::default(),
                passive_incomplete: false,
            }),
            pos_tx: watch::channel(None).0,
            replica_pos: Mutex::new(BTreeMap::new()),
            progress: tokio::sync::Notify::new(),
            events: std::sync::OnceLock::new(),
            metrics,
            wal_len_at_sync: std::sync::atomic::AtomicU64::new(0),
            meta_lock: Mutex::new(None),
        })
    }

    /// Takes the meta directory's lock for this process (see `meta_lock`), or fails with
    /// [`Error::InUse`] naming the walship that holds it. Idempotent; the first sync that
    /// opens the database takes it too. Blocking.
    pub fn claim(&self) -> Result<()> {
        let mut held = self.meta_lock.lock().unwrap_or_else(|e| e.into_inner());
        if held.is_none() {
            *held = Some(meta_lock::MetaLock::take(&self.meta_dir, &self.opts.path)?);
        }
        Ok(())
    }

    /// The database path.
    pub fn path(&self) -> &Path {
        &self.opts.path
    }

    /// The `-wal` path.
    pub fn wal_path(&self) -> &Path {
        &self.wal_path
    }

    /// The options.
    pub fn options(&self) -> &DbOptions {
        &self.opts
    }

    /// The meta directory.
    pub fn meta_dir(&self) -> &Path {
        &self.meta_dir
    }

    /// The current position (generation, shadow index, committed size), if any.
    pub fn pos(&self) -> Option<Pos> {
        *self.pos_tx.borrow()
    }

    /// A receiver that sees every position change.
    pub fn subscribe(&self) -> watch::Receiver<Option<Pos>> {
        self.pos_tx.subscribe()
    }

    /// Records where a replica is, so shadow WAL files it no longer needs can be removed.
    pub fn set_replica_pos(&self, replica: &str, pos: Option<Pos>) {
        self.replica_pos
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(replica.to_string(), pos);
        self.progress.notify_waiters();
    }

    /// Where each replica is, as last recorded.
    pub fn replica_positions(&self) -> BTreeMap<String, Option<Pos>> {
        self.replica_pos
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Notified whenever a replica's position changes.
    pub fn progress(&self) -> &tokio::sync::Notify {
        &self.progress
    }

    /// Sends engine events to `tx` (set once, by the engine).
    pub fn set_events(&self, tx: tokio::sync::broadcast::Sender<crate::event::Event>) {
        let _ = self.events.set(tx);
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves state we cannot trust: start over.
        self.inner.lock().unwrap_or_else(|e| {
            let mut g = e.into_inner();
            g.shadow = None;
            g.conn = None;
            g
        })
    }

    fn shadow_dir(&self, g: Generation) -> PathBuf {
        shadow::shadow_dir(&self.meta_dir, g)
    }

    fn shadow_path(&self, g: Generation, index: u32) -> PathBuf {
        shadow::shadow_path(&self.meta_dir, g, index)
    }

    /// Copies new WAL frames into the shadow WAL, starts new indexes and generations as
    /// needed, and checkpoints. Blocking: call from a blocking thread.
    pub fn sync(&self) -> Result<SyncOutcome> {
        let mut inner = self.lock();
        let started = Instant::now();
        let r = self.sync_locked(&mut inner);
        self.metrics.sync(started.elapsed(), r.is_ok());
        if let (Some(sh), Ok(outcome)) = (&inner.shadow, &r)
            && (*outcome == SyncOutcome::Changed || self.metrics.shadow_wal_size.get() == 0)
        {
            self.metrics
                .shadow(sh.index, &self.shadow_dir(sh.generation));
        }
        if r.is_err() {
            // After an error the state of the connection and shadow is unknown: reopen and
            // re-verify from disk next time.
            inner.conn = None;
            inner.loaded = false;
            inner.shadow = None;
            inner.last_wal_stat = None;
        }
        let pos = inner.shadow.as_ref().map(Shadow::pos);
        drop(inner);
        self.pos_tx.send_if_modified(|p| {
            let changed = *p != pos;
            *p = pos;
            changed
        });
        r
    }

    fn sync_locked(&self, inner: &mut Inner) -> Result<SyncOutcome> {
        let db_md = match std::fs::metadata(&self.opts.path) {
            Ok(md) => md,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if inner.conn.is_some() {
                    warn!(db = %self.opts.path.display(), "database file removed; waiting for it to come back");
                    inner.conn = None;
                    inner.db_id = None;
                }
                return Ok(SyncOutcome::Waiting);
            }
            Err(e) => return Err(Error::io("stat", &self.opts.path)(e)),
        };
        self.metrics.db_size.set(db_md.len() as i64);
        let mut force_reason = None;
        let db_id = file_id(&self.opts.path, &db_md)?;
        if inner.db_id.is_some_and(|id| id != db_id) {
            warn!(db = %self.opts.path.display(), "database file was replaced; reopening");
            inner.conn = None;
            force_reason = Some("database file replaced".to_string());
        }
        if inner.conn.is_none() {
            let conn = DbConn::open(&self.opts.path)?;
            // Before anything is written to the meta directory, and only for a file SQLite
            // opened: a file that is not a database leaves no meta directory behind.
            self.claim()?;
            inner.db_id = Some(db_id);
            inner.conn = Some(conn);
            inner.wal_id = None;
            inner.last_wal_stat = None;
            if !inner.loaded {
                self.load_state(inner)?;
                inner.loaded = true;
                // The engine says "initialized db" when it starts the database's tasks.
                debug!(db = %self.opts.path.display(), "loaded shadow state");
            }
            if let Some(proof) = self.take_clean_stop()? {
                match self.resume_clean_stop(inner, &proof)? {
                    clean_stop::Resume::Refused(why) => {
                        info!(db = %self.opts.path.display(), why, "not going on from the clean stop");
                    }
                    how => {
                        info!(db = %self.opts.path.display(), ?how, "going on with the generation after a clean stop: the database file is as walship left it");
                    }
                }
            }
        }

        // Ensure a WAL exists: SQLite creates it on the first write.
        let wal_md = match std::fs::metadata(&self.wal_path) {
            Ok(md) if md.len() >= HEADER_SIZE as u64 => md,
            Ok(_) | Err(_) => {
                self.conn(inner)?.bump_seq()?;
                std::fs::metadata(&self.wal_path).map_err(Error::io("stat", &self.wal_path))?
            }
        };
        let wal_id = file_id(&self.wal_path, &wal_md)?;
        if inner.wal_id.is_some_and(|id| id != wal_id) && force_reason.is_none() {
            // Someone deleted and recreated the -wal while we had it open: our connections
            // see another file than the application's. Reopen and start over.
            warn!(db = %self.opts.path.display(), "wal file was replaced; reopening");
            inner.conn = None;
            inner.conn = Some(DbConn::open(&self.opts.path)?);
            force_reason = Some("wal file replaced".to_string());
        }
        inner.wal_id = Some(wal_id);
        self.metrics.wal_size.set(wal_md.len() as i64);
        self.wal_len_at_sync
            .store(wal_md.len(), std::sync::atomic::Ordering::Relaxed);

        // Taken before looking at the WAL, so a commit that lands while this sync runs
        // changes the key and the next sync looks again.
        let key = Self::change_key(inner, wal_id, &wal_md);
        if force_reason.is_none()
            && inner.shadow.is_some()
            && key.is_some()
            && inner.last_wal_stat == key
            && !self.checkpoint_due(inner)
        {
            return Ok(SyncOutcome::Idle);
        }

        let mut changed = false;
        let reason = match force_reason {
            Some(r) => Some(r),
            None => match self.advance(inner)? {
                Advance::Ok { changed: c } => {
                    changed = c;
                    None
                }
                Advance::NewGeneration(r) => Some(r),
            },
        };
        if let Some(reason) = reason {
            self.create_generation(inner, &reason)?;
            changed = true;
        }
        let mode = self.checkpoint_mode(inner)?;
        self.note_read_mark(inner, mode.is_some())?;
        if let Some(mode) = mode {
            self.checkpoint(inner, mode)?;
            changed = true;
        }
        self.clean_shadow(inner);
        // After our own checkpoint the WAL changed by our hand; look again next time.
        inner.last_wal_stat = if changed { None } else { key };
        Ok(if changed {
            SyncOutcome::Changed
        } else {
            SyncOutcome::Idle
        })
    }

    /// How far the `-wal` file grew since the last sync, and how much growth makes a heavy
    /// writer: a checkpoint's worth of pages (at 4 KiB). One `stat` by path (no descriptor
    /// is opened, so SQLite's locks are safe). A WAL that restarted inside its old length
    /// does not grow, so this misses some bursts (the copy then waits for the next upload,
    /// as for a light writer).
    pub fn wal_growth(&self) -> (u64, u64) {
        let heavy = u64::from(self.opts.min_checkpoint_page_count) * FRAME_BYTES_AT_4K;
        let Ok(md) = std::fs::metadata(&self.wal_path) else {
            return (0, heavy);
        };
        let at_sync = self
            .wal_len_at_sync
            .load(std::sync::atomic::Ordering::Relaxed);
        (md.len().saturating_sub(at_sync), heavy)
    }

    /// A cheap fingerprint of the WAL's state: inode and size of the `-wal` file and the
    /// wal-index header at the start of the `-shm` file, which SQLite rewrites on every
    /// commit (frame count, salts, checksums) and on every checkpoint. File mtimes are not
    /// used: their granularity is a kernel tick, so two writes in one tick look the same.
    /// `None` (always look) when the `-shm` cannot be read.
    ///
    /// The `-shm` is read through the connection's own handle: closing a descriptor of it
    /// would drop SQLite's locks, which live on that file.
    fn change_key(inner: &Inner, wal_id: FileId, wal_md: &std::fs::Metadata) -> Option<ChangeKey> {
        let hdr = inner.conn.as_ref()?.main_file().ok()?.shm_header()?;
        Some(ChangeKey {
            wal_id,
            wal_len: wal_md.len(),
            shm_header: hdr,
        })
    }

    fn conn<'a>(&self, inner: &'a mut Inner) -> Result<&'a mut DbConn> {
        inner
            .conn
            .as_mut()
            .ok_or_else(|| Error::Internal("database connection not open".into()))
    }

    /// Closes the engine's connections (the final sync must have run). On the way, records
    /// that the database file holds exactly the shadow's last position when that can be
    /// proven, so the next start goes on with the same generation (see `clean_stop`).
    pub fn close(&self) {
        let mut inner = self.lock();
        match self.record_clean_stop(&mut inner) {
            Ok(true) => debug!(db = %self.opts.path.display(), "clean stop recorded"),
            Ok(false) => {
                debug!(db = %self.opts.path.display(), "clean stop not recorded: the next start checks the WAL as usual")
            }
            Err(e) => {
                warn!(db = %self.opts.path.display(), error = %e, "clean stop not recorded: the next start checks the WAL as usual")
            }
        }
        inner.conn = None;
        drop(inner);
        *self.meta_lock.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}
