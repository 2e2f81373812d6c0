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
mod meta_lock;
mod read;
mod snapshot;

use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::compress;
use crate::config;
use crate::error::{Error, Result};
use crate::fsutil::{create_dir_all_synced, write_atomic};
use crate::layout;
use crate::platform::FileId;
use crate::pos::{Generation, MAX_INDEX, Pos};
use crate::shadow::{
    self, GenerationFile, ShadowOverlay, compress_range, finish_compressed, read_exact_at,
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

/// How long a checkpoint waits for the application to leave the write lock before it is
/// deferred to a later sync (see [`Db::checkpoint`]).
const LOCK_PROBE: Duration = Duration::from_millis(20);

/// How much of the WAL is read at once while scanning.
const SCAN_CHUNK: u64 = 8 << 20;

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
    /// Length of the `-wal` file at the last sync (see [`Db::wal_grew_a_lot`]).
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

enum Advance {
    Ok { changed: bool },
    NewGeneration(String),
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

    /// A cheap fingerprint of the WAL's state: inode and size of the `-wal` file and the
    /// wal-index header at the start of the `-shm` file, which SQLite rewrites on every
    /// commit (frame count, salts, checksums) and on every checkpoint. File mtimes are not
    /// used: their granularity is a kernel tick, so two writes in one tick look the same.
    /// `None` (always look) when the `-shm` cannot be read.
    /// The `-shm` is read through the connection's own handle: closing a descriptor of it
    /// would drop SQLite's locks, which live on that file.
    /// True when the `-wal` file grew by a checkpoint's worth of pages (at 4 KiB) since the
    /// last sync: a heavy writer. One `stat` by path (no descriptor is opened, so SQLite's
    /// locks are safe). A WAL that restarted inside its old length does not grow, so this
    /// misses some bursts (the copy then waits for the next upload, as for a light writer).
    pub fn wal_grew_a_lot(&self) -> bool {
        let Ok(md) = std::fs::metadata(&self.wal_path) else {
            return false;
        };
        let at_sync = self
            .wal_len_at_sync
            .load(std::sync::atomic::Ordering::Relaxed);
        md.len().saturating_sub(at_sync) >= u64::from(self.opts.min_checkpoint_page_count) * 4120
    }

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

    /// Loads the current generation from the meta directory at start-up, or leaves none.
    fn load_state(&self, inner: &mut Inner) -> Result<()> {
        create_dir_all_synced(&self.meta_dir)?;
        remove_tmp_files(&self.meta_dir);
        inner.shadow = None;
        let g = match shadow::read_generation(&self.meta_dir)? {
            GenerationFile::Missing => return Ok(()),
            GenerationFile::Damaged => {
                warn!(db = %self.opts.path.display(), file = %shadow::generation_file(&self.meta_dir).display(), "generation file is damaged; starting a new generation");
                return Ok(());
            }
            GenerationFile::Found(g) => g,
        };
        let Some(index) = shadow::max_index(&self.meta_dir, g) else {
            warn!(db = %self.opts.path.display(), generation = %g, "no shadow wal found; starting a new generation");
            return Ok(());
        };
        let path = self.shadow_path(g, index);
        let data = std::fs::read(&path).map_err(Error::io("read", &path))?;
        let Ok(hdr) = WalHeader::parse(&data) else {
            warn!(db = %self.opts.path.display(), path = %path.display(), "shadow wal header is damaged; starting a new generation");
            return Ok(());
        };
        let scan = wal::scan_frames(&data[HEADER_SIZE..], &hdr, hdr.checksum);
        let size = HEADER_SIZE as u64 + scan.committed_len;
        if size < data.len() as u64 {
            // A crash in the middle of an append: drop the partial tail.
            warn!(path = %path.display(), from = data.len(), to = size, "truncating partial shadow wal tail");
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(Error::io("open", &path))?;
            f.set_len(size).map_err(Error::io("truncate", &path))?;
            f.sync_all().map_err(Error::io("fsync", &path))?;
        }
        let mut header = [0u8; HEADER_SIZE];
        header.copy_from_slice(&data[..HEADER_SIZE]);
        inner.shadow = Some(Shadow {
            generation: g,
            index,
            size,
            header,
            hdr,
            checksum: scan.committed_checksum,
        });
        self.remove_other_generations(g);
        debug!(db = %self.opts.path.display(), pos = %Pos::new(g, index, size), "resuming generation");
        Ok(())
    }

    fn remove_other_generations(&self, keep: Generation) {
        let dir = self.meta_dir.join(layout::GENERATIONS_DIR);
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = e.file_name();
            if Generation::parse(&name.to_string_lossy()) != Some(keep)
                && let Err(err) = std::fs::remove_dir_all(e.path())
            {
                warn!(path = %e.path().display(), error = %err, "cannot remove old generation");
            }
        }
    }

    /// Compares the shadow WAL with the real one and copies new committed frames.
    fn advance(&self, inner: &mut Inner) -> Result<Advance> {
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
            if read_exact_at(&wal_file, &mut real_header, 0, &self.wal_path)? < HEADER_SIZE {
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
                if read_exact_at(&sf, &mut ours, sh.size - fs, &sp)? < fs as usize {
                    return Ok(Advance::NewGeneration("short shadow wal".into()));
                }
                let n = read_exact_at(&wal_file, &mut theirs, sh.size - fs, &self.wal_path)?;
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
    fn copy_frames(&self, wal_file: &File, real_len: u64, sh: &mut Shadow) -> Result<bool> {
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
            let n = read_exact_at(wal_file, &mut buf, cur, &self.wal_path)?;
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
                let n = read_exact_at(wal_file, &mut buf, cur, &self.wal_path)?;
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

    fn create_generation(&self, inner: &mut Inner, reason: &str) -> Result<()> {
        let g = Generation::random();
        info!(db = %self.opts.path.display(), generation = %g, reason, "sync: new generation");
        if let Some(tx) = self.events.get() {
            let _ = tx.send(crate::event::Event::GenerationStarted {
                db: self.opts.path.clone(),
                generation: g,
                reason: reason.to_string(),
            });
        }
        inner.shadow = None;
        let wal_file = File::open(&self.wal_path).map_err(Error::io("open", &self.wal_path))?;
        let mut header = [0u8; HEADER_SIZE];
        if read_exact_at(&wal_file, &mut header, 0, &self.wal_path)? < HEADER_SIZE {
            return Err(Error::corrupt(
                self.wal_path.display().to_string(),
                "wal header missing",
            ));
        }
        let hdr = WalHeader::parse(&header)
            .map_err(|e| Error::corrupt(self.wal_path.display().to_string(), e.to_string()))?;
        let path = self.shadow_path(g, 0);
        write_atomic(&path, &header)?;
        self.metrics.total_wal_bytes.inc_by(HEADER_SIZE as u64);
        let mut sh = Shadow {
            generation: g,
            index: 0,
            size: HEADER_SIZE as u64,
            header,
            hdr,
            checksum: hdr.checksum,
        };
        let real_len = wal_file
            .metadata()
            .map_err(Error::io("stat", &self.wal_path))?
            .len();
        self.copy_frames(&wal_file, real_len, &mut sh)?;
        crate::fault::point("generation.before_record");
        write_atomic(
            &shadow::generation_file(&self.meta_dir),
            format!("{g}\n").as_bytes(),
        )?;
        inner.shadow = Some(sh);
        self.remove_other_generations(g);
        inner.last_checkpoint = Instant::now();
        Ok(())
    }

    /// Starts a new generation now (and with it a new snapshot on every replica), e.g.
    /// after a replica failed validation. Blocking.
    pub fn force_new_generation(&self, reason: &str) -> Result<()> {
        let mut inner = self.lock();
        self.conn(&mut inner)?;
        let r = self.create_generation(&mut inner, reason);
        let pos = inner.shadow.as_ref().map(Shadow::pos);
        drop(inner);
        self.pos_tx.send_if_modified(|p| {
            let changed = *p != pos;
            *p = pos;
            changed
        });
        r
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
