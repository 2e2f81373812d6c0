//! [`Replica`]: ships one database's shadow WAL to one destination.
pub mod lease;
mod run;
mod segments;
mod upkeep;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

use crate::backend::{self, ReplicaClient};
use crate::compress;
use crate::config;
use crate::db::{Db, ShadowRead, SnapshotFile};
use crate::error::{BackendErrorKind, Error, Result};
use crate::event::{Event, ReplicaStatus};
use crate::layout;
use crate::pos::Pos;
pub(crate) use run::error_shape;

/// Settings of one replica (see `litestream.yml`'s `replicas:` entries).
#[derive(Debug, Clone)]
pub struct ReplicaOptions {
    /// Name used in listings, `-replica` and logs. Default: the backend type.
    pub name: String,
    /// Upload at most this often. Default 1s.
    pub sync_interval: Duration,
    /// Take a new snapshot this often; `None` = only when a generation starts.
    pub snapshot_interval: Option<Duration>,
    /// Keep this much history (see [`crate::retention`]); `None` keeps everything.
    /// Default 24h.
    pub retention: Option<Duration>,
    /// How often retention runs (capped at `retention`). Default 1h.
    pub retention_check_interval: Duration,
    /// Restore the replica and compare it with the database this often (see
    /// `crate::validate`); `None` (the default) never validates.
    pub validation_interval: Option<Duration>,
    /// The replica lease's TTL (see [`lease`]); `None` turns the lease off. Default
    /// [`config::DEFAULT_LEASE_TTL`]. A backend without conditional writes (GCS for now)
    /// takes none, nor does a server that cannot hold one (an SFTP server without
    /// `hardlink@openssh.com`, a WebDAV server without locks), unless `lease_required`.
    pub lease_ttl: Option<Duration>,
    /// The lease was asked for explicitly (`lease:` in the config): a replica whose server
    /// cannot hold one fails to start (and to sync) with [`crate::Error::Config`] rather
    /// than running without one. Default false.
    pub lease_required: bool,
}

impl ReplicaOptions {
    /// Defaults as Litestream's.
    pub fn new(name: impl Into<String>) -> ReplicaOptions {
        ReplicaOptions {
            name: name.into(),
            sync_interval: config::DEFAULT_SYNC_INTERVAL,
            snapshot_interval: None,
            retention: Some(config::DEFAULT_RETENTION),
            retention_check_interval: config::DEFAULT_RETENTION_CHECK_INTERVAL,
            validation_interval: None,
            lease_ttl: Some(config::DEFAULT_LEASE_TTL),
            lease_required: false,
        }
    }
}

/// One destination of one database.
#[derive(Debug)]
pub struct Replica {
    opts: ReplicaOptions,
    db: Arc<Db>,
    client: Arc<dyn ReplicaClient>,
    /// Where the replica is; `None` means unknown (recomputed from the remote).
    pos: Mutex<Option<Pos>>,
    last_snapshot: Mutex<Option<SystemTime>>,
    /// Asks the run loop to upload now, without waiting out `sync-interval`: `urgent` says
    /// so (it survives whichever branch consumes the notification), `wake` interrupts a wait.
    wake: tokio::sync::Notify,
    urgent: std::sync::atomic::AtomicBool,
    state: Mutex<RunState>,
    /// Set by a validation while it freezes the database and brings the replica to the
    /// frozen position (see [`Replica::validate`]).
    validation_cap: Mutex<ValidationCap>,
    /// The newest snapshot this replica is known to hold: its generation, its index, and
    /// the offset in that index of the position it holds, when known (see `sync_inner`).
    snapshot_index: Mutex<Option<(crate::Generation, u32, Option<u64>)>>,
    events: std::sync::OnceLock<tokio::sync::broadcast::Sender<Event>>,
    metrics: crate::metrics::ReplicaMetrics,
    /// Where the segments this replica uploaded end (see [`segments`]).
    segments: Mutex<segments::SegmentLog>,
    /// The replica lease, where the options ask for one and the backend can hold it.
    lease: Option<lease::Lease>,
}

/// How far syncs may upload while a validation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ValidationCap {
    /// No validation in progress.
    Off,
    /// The database is being frozen: upload nothing new.
    Hold,
    /// Upload up to this position and no further.
    At(Pos),
}

/// Lifts the cap when the validation's catch-up ends, however it ends.
struct CapGuard<'a>(&'a Replica);

impl CapGuard<'_> {
    fn set(&self, cap: ValidationCap) {
        *self
            .0
            .validation_cap
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = cap;
    }
}

impl Drop for CapGuard<'_> {
    fn drop(&mut self) {
        self.set(ValidationCap::Off);
    }
}

#[derive(Debug)]
struct RunState {
    /// When the replica was made.
    started: Instant,
    behind_since: Option<Instant>,
    last_sync: Option<SystemTime>,
    /// When the last sync succeeded (monotonic, for [`ReplicaStatus::unshipped_for`]).
    last_ok: Option<Instant>,
    /// When the run loop will next be free to upload (its last upload + `sync-interval`).
    next_upload: Option<Instant>,
    last_error: Option<String>,
}

impl Replica {
    /// A replica of `db` stored through `client`.
    pub fn new(db: Arc<Db>, client: Arc<dyn ReplicaClient>, opts: ReplicaOptions) -> Arc<Replica> {
        db.set_replica_pos(&opts.name, None);
        let metrics = crate::metrics::global().replica(db.path(), &opts.name);
        let segments = Mutex::new(segments::SegmentLog::take(db.meta_dir(), &opts.name));
        let lease = match opts.lease_ttl {
            Some(ttl) if client.conditional_writes() => Some(lease::Lease::new(
                client.clone(),
                ttl,
                db.path(),
                opts.lease_required,
            )),
            Some(_) => {
                debug!(replica = %opts.name, backend = client.type_name(), "no replica lease: the backend has no conditional writes");
                None
            }
            None => None,
        };
        Arc::new(Replica {
            lease,
            segments,
            opts,
            db,
            client,
            pos: Mutex::new(None),
            last_snapshot: Mutex::new(None),
            wake: tokio::sync::Notify::new(),
            urgent: std::sync::atomic::AtomicBool::new(false),
            state: Mutex::new(RunState {
                started: Instant::now(),
                behind_since: None,
                last_sync: None,
                last_ok: None,
                next_upload: None,
                last_error: None,
            }),
            validation_cap: Mutex::new(ValidationCap::Off),
            snapshot_index: Mutex::new(None),
            events: std::sync::OnceLock::new(),
            metrics,
        })
    }

    /// The earliest moment the run loop will upload again (its last upload plus
    /// `sync-interval`), or `None` before its first upload. The database's monitor defers
    /// copying the WAL until then: copying sooner would not reach the replica any sooner.
    pub fn next_upload_due(&self) -> Option<Instant> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .next_upload
    }

    /// The replica's name.
    pub fn name(&self) -> &str {
        &self.opts.name
    }

    /// `validation-interval`, if validation is on.
    pub fn validation_interval(&self) -> Option<Duration> {
        self.opts.validation_interval
    }

    /// The storage client.
    pub fn client(&self) -> &Arc<dyn ReplicaClient> {
        &self.client
    }

    /// The last position confirmed by the store.
    pub fn pos(&self) -> Option<Pos> {
        *self.pos.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_pos(&self, pos: Option<Pos>) {
        *self.pos.lock().unwrap_or_else(|e| e.into_inner()) = pos;
        if let Some(p) = pos {
            self.metrics.set_pos(p);
        }
        self.db.set_replica_pos(&self.opts.name, pos);
    }

    /// Sends engine events to `tx` (set once, by the engine).
    pub fn set_events(&self, tx: tokio::sync::broadcast::Sender<Event>) {
        let _ = self.events.set(tx);
    }

    fn emit(&self, e: Event) {
        if let Some(tx) = self.events.get() {
            let _ = tx.send(e);
        }
    }

    /// Asks the replica to upload what is new right away, skipping the rest of
    /// `sync-interval` (used by durability waits and [`crate::engine::EngineHandle::sync`]).
    pub fn wake(&self) {
        self.urgent.store(true, std::sync::atomic::Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// The replica's state for [`crate::event::DbStatus`].
    pub fn status(&self) -> ReplicaStatus {
        let pos = self.pos();
        let db = self.db.pos();
        let lag_bytes = crate::event::lag_bytes(pos, db);
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        ReplicaStatus {
            name: self.opts.name.clone(),
            kind: self.client.type_name().to_string(),
            pos,
            lag_bytes,
            lag: if self.up_to_date() {
                Duration::ZERO
            } else {
                st.behind_since.map(|t| t.elapsed()).unwrap_or_default()
            },
            last_sync: st.last_sync,
            last_error: st.last_error.clone(),
            unshipped_for: (!self.up_to_date()).then(|| st.last_ok.unwrap_or(st.started).elapsed()),
            sync_interval: self.opts.sync_interval,
            lease: self.lease.as_ref().map(|l| l.state_text()),
        }
    }

    /// True when the replica holds everything the database's shadow WAL holds.
    pub fn up_to_date(&self) -> bool {
        match (self.pos(), self.db.pos()) {
            (Some(r), Some(d)) => r == d,
            (_, None) => true,
            _ => false,
        }
    }

    /// Takes a snapshot of the database and uploads it. Returns its position.
    pub async fn snapshot(&self) -> Result<Pos> {
        let db = self.db.clone();
        let started = Instant::now();
        let (held, file) = tokio::task::spawn_blocking(move || db.snapshot())
            .await
            .map_err(Error::task_failed("snapshot"))??;
        // Named by its index alone; it holds the database at `held`.
        let pos = Pos::new(held.generation, held.index, 0);
        let size = file.len();
        // A snapshot is the database at the shadow's end P, but its name says only "index
        // N": a restore replays index N's segments from offset 0 over it, as far as the
        // replica has them. Stopping short of P would mix older page versions into the newer
        // image (found by the crash matrix: killed between a scheduled snapshot and the next
        // segment upload, the restore failed integrity_check). So when this replica already
        // has the generation, its segments up to at least P go up before the snapshot does.
        // (For a new generation the snapshot comes first and stands alone: state P.)
        // This holds while a validation caps uploads too: the validation then finds the
        // replica past its frozen position and skips this round, which is cheap; a snapshot
        // without its segments is a window for a wrong restore.
        if matches!(self.pos(), Some(p) if p.generation == pos.generation) {
            Box::pin(self.sync_capped(None)).await?;
        }
        let path = layout::snapshot_path(pos.generation, pos.index);
        self.ensure_lease().await?;
        info!(db = %self.db.path().display(), replica = %self.opts.name, position = %pos, "write snapshot");
        let info = {
            let _permit = upload_permit(self.client.type_name()).await;
            self.client.put_file(&path, file.path()).await?
        };
        drop(file);
        crate::fault::point("snapshot.after_upload");
        self.note_snapshot(pos.generation, pos.index, Some(held.offset));
        *self.last_snapshot.lock().unwrap_or_else(|e| e.into_inner()) = Some(info.modified);
        info!(db = %self.db.path().display(), replica = %self.opts.name, position = %pos, sz = size, elapsed = ?started.elapsed(), "snapshot written");
        self.emit(Event::SnapshotWritten {
            db: self.db.path().to_path_buf(),
            replica: self.opts.name.clone(),
            pos,
        });
        Ok(pos)
    }

    /// Uploads everything new in the shadow WAL. On a new generation it first makes sure the
    /// replica has a snapshot of it. The position only advances past what the store
    /// confirmed; on any error it is forgotten and recomputed from the store next time.
    pub async fn sync(&self) -> Result<()> {
        let cap = *self
            .validation_cap
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match cap {
            ValidationCap::Off => self.sync_capped(None).await,
            // A validation is freezing the database; it wakes the replica right after.
            ValidationCap::Hold => Ok(()),
            ValidationCap::At(p) => self.sync_capped(Some(p)).await,
        }
    }

    /// [`Replica::sync`], uploading no further than `cap` (when it is in the current
    /// generation).
    async fn sync_capped(&self, cap: Option<Pos>) -> Result<()> {
        let r = self.sync_inner(cap).await;
        let up = self.up_to_date();
        {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            match &r {
                Ok(()) => {
                    st.last_sync = Some(SystemTime::now());
                    st.last_ok = Some(Instant::now());
                    st.last_error = None;
                }
                Err(Error::NoGeneration) => {}
                Err(e) => st.last_error = Some(e.to_string()),
            }
            if up {
                st.behind_since = None;
            } else if st.behind_since.is_none() {
                st.behind_since = Some(Instant::now());
            }
        }
        match &r {
            Ok(()) => {
                if let Some(pos) = self.pos() {
                    self.emit(Event::Synced {
                        db: self.db.path().to_path_buf(),
                        replica: self.opts.name.clone(),
                        pos,
                    });
                }
            }
            Err(Error::NoGeneration) => {}
            Err(e) => {
                self.set_pos(None);
                self.emit(Event::ReplicaError {
                    db: self.db.path().to_path_buf(),
                    replica: self.opts.name.clone(),
                    message: e.to_string(),
                });
            }
        }
        r
    }

    async fn sync_inner(&self, cap: Option<Pos>) -> Result<()> {
        let mut db_pos = self.db.pos().ok_or(Error::NoGeneration)?;
        let g = db_pos.generation;
        let mut pos = match self.pos() {
            Some(p) if p.generation == g => p,
            _ => {
                let snaps = backend::snapshots(self.client.as_ref(), g).await?;
                if snaps.is_empty() {
                    self.snapshot().await?;
                } else {
                    if let Some(newest) = snaps.iter().map(|s| s.created).max() {
                        *self.last_snapshot.lock().unwrap_or_else(|e| e.into_inner()) =
                            Some(newest);
                    }
                    if let Some(i) = snaps.iter().map(|s| s.index).max() {
                        self.note_snapshot(g, i, None);
                    }
                }
                let known = |index, offset| {
                    self.segments
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .end_of(g, index, offset)
                };
                let p = match backend::replica_position_known(self.client.as_ref(), g, known).await
                {
                    Ok(p) => p.ok_or_else(|| {
                        Error::NoSnapshots(format!(
                            "no snapshots available for generation {g} right after writing one"
                        ))
                    })?,
                    Err(Error::NoKey(why)) => return self.restart_unreadable(&why).await,
                    Err(e) => return Err(e),
                };
                // A snapshot taken just now may name a newer index than the position read
                // before it: compare with the database as it is now.
                match self.db.pos() {
                    Some(now) if now.generation == g => db_pos = now,
                    _ => return Err(Error::NoGeneration),
                }
                if p > db_pos {
                    return Err(Error::backend(
                        self.client.type_name(),
                        BackendErrorKind::Other,
                        format!(
                            "replica position {p} is ahead of the database position {db_pos}: is another process writing this replica?"
                        ),
                    ));
                }
                debug!(replica = %self.opts.name, position = %p, "replica position");
                self.set_pos(Some(p));
                p
            }
        };
        // Upload up to where the database was when this sync started, not beyond: under
        // steady writes, chasing the growing tail would upload a stream of tiny segments
        // (one request each) and make sync-interval meaningless.
        let until = match cap {
            // Positions of different generations are unordered: `<` is false for them.
            Some(c) if c < db_pos => c,
            _ => db_pos,
        };
        loop {
            if pos >= until {
                break;
            }
            // The first segment of an index the replica has a snapshot of reaches at least
            // the position P the snapshot holds: a restore replays the index from offset 0
            // over the snapshot, and a replica caught between two segments below P (a kill,
            // or a restore running at that moment) would lay older page versions over the
            // newer image. When P is not known (a snapshot found on the store after a
            // restart), the whole index goes. A scheduled snapshot uploads its segments
            // first instead, so this is about a generation's first snapshot.
            let min_end = match *self
                .snapshot_index
                .lock()
                .unwrap_or_else(|e| e.into_inner())
            {
                Some((g, i, p)) if pos.offset == 0 && (g, i) == (pos.generation, pos.index) => {
                    p.unwrap_or(u64::MAX)
                }
                _ => 0,
            };
            // No further than `until` (a commit boundary), unless P lies beyond it.
            let max_end =
                (pos.index == until.index && until.offset >= min_end).then_some(until.offset);
            let db = self.db.clone();
            let read = tokio::task::spawn_blocking(move || db.read_shadow(pos, min_end, max_end))
                .await
                .map_err(Error::task_failed("shadow read"))?;
            match read {
                Ok(ShadowRead::UpToDate) => break,
                Ok(ShadowRead::NextIndex) => {
                    pos = Pos::new(pos.generation, pos.index + 1, 0);
                    // The position is only advanced once the new index's first segment is up.
                }
                Ok(ShadowRead::Data { pos: at, data }) => {
                    let end = self.upload_segment(at, data).await?;
                    pos = end;
                    self.set_pos(Some(pos));
                }
                Ok(ShadowRead::File { pos: at, len, file }) => {
                    let end = self.put_segment(at, len, Segment::File(file)).await?;
                    pos = end;
                    self.set_pos(Some(pos));
                }
                // The generation changed under us: start over next round.
                Err(Error::NoGeneration) => {
                    self.set_pos(None);
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    async fn upload_segment(&self, at: Pos, data: Vec<u8>) -> Result<Pos> {
        let len = data.len() as u64;
        let compressed = tokio::task::spawn_blocking(move || compress::compress(&data))
            .await
            .map_err(Error::task_failed("compress"))?;
        self.put_segment(at, len, Segment::Bytes(Bytes::from(compressed)))
            .await
    }

    /// Uploads the compressed segment of `len` WAL bytes starting at `at`; returns where the
    /// replica then ends.
    async fn put_segment(&self, at: Pos, len: u64, body: Segment) -> Result<Pos> {
        let offset = u32::try_from(at.offset).map_err(|_| {
            Error::Config(format!(
                "wal offset {} too large for a segment name",
                at.offset
            ))
        })?;
        let path = layout::wal_segment_path(at.generation, at.index, offset);
        self.ensure_lease().await?;
        // Recorded before the put: a put that fails may still have landed.
        self.segments
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(at, at.offset + len);
        {
            let _permit = upload_permit(self.client.type_name()).await;
            crate::fault::point("sync.before_upload");
            match &body {
                Segment::Bytes(b) => self.client.put(&path, b.clone()).await?,
                Segment::File(f) => self.client.put_file(&path, f.path()).await?,
            };
        }
        drop(body);
        crate::fault::point("sync.after_upload");
        self.metrics.wal_bytes.inc_by(len);
        debug!(db = %self.db.path().display(), replica = %self.opts.name, position = %at, sz = len, "wal segment written");
        Ok(Pos::new(at.generation, at.index, at.offset + len))
    }

    /// Remembers that the replica holds a snapshot of `index` in `generation`, holding the
    /// database at `offset` in that index when known.
    fn note_snapshot(&self, generation: crate::Generation, index: u32, offset: Option<u64>) {
        let mut s = self
            .snapshot_index
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match *s {
            Some((g, i, _)) if g == generation && i > index => {}
            // Two snapshots of one index: the segments must reach the later one's position.
            Some((g, i, Some(o))) if g == generation && i == index => {
                *s = Some((g, i, offset.map(|n| n.max(o))));
            }
            _ => *s = Some((generation, index, offset)),
        }
    }
}

/// A compressed WAL segment to upload: in memory, or in a temporary file when large.
enum Segment {
    Bytes(Bytes),
    File(SnapshotFile),
}

/// Uploads in flight at once, per replica type, across every database of the process.
/// With thousands of databases writing at once, this bounds connections, memory and the
/// request rate; tokio's semaphore hands permits out first come, first served, and a replica
/// takes one per object, so every database progresses in turn.
pub const MAX_CONCURRENT_UPLOADS: usize = 16;

/// Waits for an upload slot of `replica_type` (see [`MAX_CONCURRENT_UPLOADS`]).
async fn upload_permit(replica_type: &'static str) -> tokio::sync::OwnedSemaphorePermit {
    static SLOTS: std::sync::LazyLock<
        Mutex<std::collections::HashMap<&'static str, Arc<tokio::sync::Semaphore>>>,
    > = std::sync::LazyLock::new(Default::default);
    let sem = SLOTS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(replica_type)
        .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_UPLOADS)))
        .clone();
    // The semaphore is never closed, so acquiring cannot fail.
    sem.acquire_owned()
        .await
        .expect("upload semaphore is never closed")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A snapshot names only its index, and a restore replays that index from offset 0 over
    /// it: the segments up to the snapshot's position must be up before the snapshot is.
    /// That held except while a validation capped uploads (found by review). Here a
    /// validation is freezing the database (the cap is `Hold`) when a snapshot is taken:
    /// the replica's segments must still reach the position the snapshot holds.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_snapshot_during_a_validation_still_uploads_its_segments_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.db");
        let app = rusqlite::Connection::open(&path).unwrap();
        app.execute_batch(
            "PRAGMA journal_mode=wal; PRAGMA wal_autocheckpoint=0;
             CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB);
             INSERT INTO t(b) VALUES (randomblob(5000));",
        )
        .unwrap();
        let db = Db::new(crate::db::DbOptions::new(&path));
        db.sync().unwrap();
        let client = Arc::new(crate::backend::file::FileClient::new(dir.path().join("r")));
        let r = Replica::new(db.clone(), client.clone(), ReplicaOptions::new("file"));
        r.sync().await.unwrap();
        let before = r.pos().unwrap();
        for _ in 0..20 {
            app.execute("INSERT INTO t(b) VALUES (randomblob(3000))", [])
                .unwrap();
        }
        db.sync().unwrap();
        *r.validation_cap.lock().unwrap() = ValidationCap::Hold;
        let snap = r.snapshot().await.unwrap();
        *r.validation_cap.lock().unwrap() = ValidationCap::Off;
        let at = db.pos().unwrap();
        assert_eq!(snap.index, at.index, "the test needs one index");
        assert!(
            at.offset > before.offset,
            "nothing was written after the first sync"
        );
        let held = backend::replica_position(client.as_ref(), at.generation)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            held, at,
            "the snapshot went up before the segments up to its position (replica at {held}, snapshot holds {at})"
        );
        db.close();
    }

    /// Validation scratch space lives in the meta directory; what a crash leaves of it is
    /// removed at the next start.
    #[test]
    fn a_crashed_validations_scratch_space_is_removed_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.db");
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute_batch("PRAGMA journal_mode=wal; CREATE TABLE t(x);")
            .unwrap();
        let opts = crate::db::DbOptions::new(&path);
        let left = opts.meta_dir().join(".validate-abc123.tmp");
        std::fs::create_dir_all(&left).unwrap();
        std::fs::write(left.join("db"), b"a copy of the database").unwrap();
        let db = Db::new(opts);
        db.sync().unwrap();
        assert!(!left.exists(), "{} survived the start", left.display());
        db.close();
    }
}
