//! [`Engine`]: runs every database and replica of a configuration until shutdown, and
//! [`EngineHandle`]: what an embedding application holds while it runs.
//!
//! Task structure: one monitor task per database (woken by file-system notifications on the
//! database's directory, by the application's commit hook when embedded, and by
//! `monitor-interval` polling as a safety net) runs [`Db::sync`] on a blocking thread; one
//! task per replica waits for the database's position to change and uploads at most once
//! per `sync-interval`, or at once when a durability wait asks. Shutdown stops the tasks,
//! then runs one final database sync and one final sync per replica.
//!
//! Each database's tasks have their own stop signal, so one database can leave a running
//! engine: a database of a watched directory entry whose file is deleted is stopped and
//! closed (its replica is kept), and picked up again if it comes back.
//!
//! ```no_run
//! # async fn demo() -> walship::Result<()> {
//! use std::time::Duration;
//! use walship::engine::{Durability, Engine};
//! use walship::config::Config;
//!
//! let config = Config::load("litestream.yml".as_ref(), true)?.config;
//! let handle = Engine::from_config(&config)?.start();
//! // ... the application commits a transaction on /data/app.db, then:
//! let pos = handle
//!     .wait_durable("/data/app.db".as_ref(), Durability::AllReplicas, Duration::from_secs(5))
//!     .await?;
//! println!("on every replica up to {pos}");
//! handle.shutdown().await?;
//! # Ok(())
//! # }
//! ```
mod build;
mod dir_watch;

use build::replicas_for;
pub use build::{db_options, replica_options};
use dir_watch::watch_dir;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, broadcast, watch};
use tracing::{debug, error, info, warn};

use crate::backend::ReplicaClient;
use crate::busy::BusySpell;
use crate::config::{Candidate, Config, DbConfig, DirConfig, ReplicaConfig};
use crate::db::{Db, DbOptions};
use crate::error::{BackendErrorKind, Error, Result};
use crate::event::{DbStatus, Event};
use crate::pos::Pos;
use crate::replica::{Replica, ReplicaOptions};
use crate::watch::{Events, FsWatch, OnChange};

/// A database with its replicas, as the engine runs them.
#[derive(Debug, Clone)]
pub struct DbHandle {
    /// The database (internal: for walship's own tests).
    #[doc(hidden)]
    pub db: Arc<Db>,
    /// Its replicas (internal: for walship's own tests).
    #[doc(hidden)]
    pub replicas: Vec<Arc<Replica>>,
    /// Wakes the database's monitor task (file-system events, commit hooks).
    pub waker: Arc<Notify>,
}

/// How long [`Engine::check_writable`] waits for each replica's answer.
pub const WRITABLE_CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs a set of databases and their replicas.
#[derive(Debug)]
pub struct Engine {
    dbs: Vec<DbHandle>,
    /// Directory entries with `watch: true`: watched for new databases while running.
    watched_dirs: Vec<DirWatch>,
    events: broadcast::Sender<Event>,
    /// See [`Engine::set_stall_intervals`].
    stall_intervals: u32,
}

/// A watched directory entry, the databases it found at start-up and the files already
/// warned about.
#[derive(Debug)]
struct DirWatch {
    config: DirConfig,
    found: HashSet<PathBuf>,
    warned: HashSet<PathBuf>,
}

impl Default for Engine {
    fn default() -> Engine {
        Engine {
            dbs: Vec::new(),
            watched_dirs: Vec::new(),
            events: broadcast::channel(1024).0,
            stall_intervals: crate::event::DEFAULT_STALL_INTERVALS,
        }
    }
}

/// How many replicas a durability wait needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// At least one replica has the data.
    AnyReplica,
    /// Every replica of the database has the data.
    AllReplicas,
}

impl Engine {
    /// An engine with no databases.
    pub fn new() -> Engine {
        Engine::default()
    }

    /// Builds an engine for every database of `config`, including the databases found now
    /// in its directory entries (`dir:` + `pattern:`); those with `watch: true` are watched
    /// for new databases once the engine runs.
    pub fn from_config(config: &Config) -> Result<Engine> {
        let mut e = Engine::new();
        e.set_stall_intervals(config.stall_intervals);
        for dbc in &config.dbs {
            e.add_db(db_options(dbc), replicas_for(dbc)?);
        }
        let mut known: HashSet<PathBuf> = config.dbs.iter().map(|d| d.path.clone()).collect();
        for dc in &config.dirs {
            if !dc.dir.is_dir() {
                return Err(Error::Config(format!(
                    "directory {} (dir: of a dbs: entry) does not exist; create it or fix the path",
                    dc.dir.display()
                )));
            }
            let mut warned = HashSet::new();
            let mut found = HashSet::new();
            for p in dc.scan() {
                match dc.classify(&p) {
                    Candidate::Database if known.insert(p.clone()) => {
                        if let Some(dbc) = dc.db_config(&p) {
                            e.add_db(db_options(&dbc), replicas_for(&dbc)?);
                            found.insert(p);
                        }
                    }
                    Candidate::NotSqlite => {
                        warn!(path = %p.display(), dir = %dc.dir.display(), "skipping file: it matches the pattern but is not a SQLite database");
                        warned.insert(p);
                    }
                    _ => {}
                }
            }
            info!(dir = %dc.dir.display(), pattern = %dc.pattern, databases = found.len(), watch = dc.watch, "scanned directory");
            if found.is_empty() && !dc.watch {
                return Err(Error::Config(format!(
                    "no SQLite databases found in directory {} with pattern {}; add watch: true \
                     to pick up databases created later",
                    dc.dir.display(),
                    dc.pattern
                )));
            }
            if dc.watch {
                e.watched_dirs.push(DirWatch {
                    config: dc.clone(),
                    found,
                    warned,
                });
            }
        }
        Ok(e)
    }

    /// Adds a database and its replicas.
    pub fn add_db(
        &mut self,
        opts: DbOptions,
        replicas: Vec<(Arc<dyn ReplicaClient>, ReplicaOptions)>,
    ) -> DbHandle {
        let h = new_handle(&self.events, opts, replicas);
        self.dbs.push(h.clone());
        h
    }

    /// How many of its sync intervals a replica may hold less than its database, without
    /// a successful sync, before [`EngineHandle::health`] (and `/healthz`) reports it
    /// stalled. Default [`crate::event::DEFAULT_STALL_INTERVALS`]; 0 never reports one.
    pub fn set_stall_intervals(&mut self, intervals: u32) {
        self.stall_intervals = intervals;
    }

    /// The databases.
    pub fn dbs(&self) -> &[DbHandle] {
        &self.dbs
    }

    /// Starts every task on the current tokio runtime and returns the handle that controls
    /// them. Must be called from within a runtime.
    pub fn start(self) -> EngineHandle {
        if self.dbs.is_empty() {
            warn!("no databases specified in configuration");
        }
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = tokio::task::JoinSet::new();
        let mut wakers: HashMap<PathBuf, Arc<Notify>> = HashMap::new();
        for h in &self.dbs {
            wakers.insert(h.db.path().to_path_buf(), h.waker.clone());
            wakers.insert(h.db.wal_path().to_path_buf(), h.waker.clone());
        }
        let (watcher, watched) = start_watcher(&self.dbs, wakers);
        let mut db_tasks = HashMap::new();
        for h in &self.dbs {
            let notified = h.db.path().parent().is_some_and(|d| watched.contains(d));
            let t = spawn_db_tasks(&mut tasks, h, notified);
            db_tasks.insert(h.db.path().to_path_buf(), t);
        }
        let shared = Arc::new(Shared {
            dbs: std::sync::RwLock::new(self.dbs),
            db_tasks: Mutex::new(db_tasks),
            events: self.events,
            stop_tx,
            tasks: tokio::sync::Mutex::new(None),
            watcher: Mutex::new(watcher),
            stall_intervals: self.stall_intervals,
        });
        for d in self.watched_dirs {
            tasks.spawn(watch_dir(d, Arc::downgrade(&shared), stop_rx.clone()));
        }
        *shared
            .tasks
            .try_lock()
            .expect("no one else holds the new engine's task set") = Some(tasks);
        EngineHandle { inner: shared }
    }

    /// Takes every database's meta-directory lock and checks every replica's lease, so that
    /// a second replicator of the same database (another process, or another engine in this
    /// one), or a second writer of a replica whose lease is live, is refused now with an
    /// error naming the first ([`Error::InUse`]), rather than at its first sync or upload
    /// (where they are checked too; the lease is taken at the first upload).
    /// [`Engine::run`] calls this. Call it before [`Engine::start`].
    pub async fn claim(&self) -> Result<()> {
        for h in &self.dbs {
            // A database walship has not replicated yet is claimed by its first sync, once
            // SQLite has opened it (a file that is not a database gets no meta directory).
            if h.db.meta_dir().is_dir() {
                let db = h.db.clone();
                tokio::task::spawn_blocking(move || db.claim())
                    .await
                    .map_err(Error::task_failed("claim"))??;
            }
        }
        // One read per replica; all at once (a sidecar of many databases on S3 would
        // otherwise start one round trip at a time), at most 32 in flight.
        use futures::StreamExt;
        let mut checks = Vec::new();
        for h in &self.dbs {
            for r in &h.replicas {
                checks.push(r.check_lease());
            }
        }
        let mut results = futures::stream::iter(checks).buffer_unordered(32);
        while let Some(r) = results.next().await {
            r?;
        }
        Ok(())
    }

    /// Refuses replicas that can only be read from (a plain static HTTP server): replicating
    /// to one would fail at every sync. Each replica is asked once, at most
    /// [`WRITABLE_CHECK_TIMEOUT`] each and all at once; one that cannot be reached now is
    /// logged and let through (its syncs retry, and fail with the same advice if it turns
    /// out to be read-only). [`Engine::run`] calls this; call it before [`Engine::start`].
    pub async fn check_writable(&self) -> Result<()> {
        let checks = self.dbs.iter().flat_map(|h| {
            h.replicas.iter().map(move |r| async move {
                let answer =
                    tokio::time::timeout(WRITABLE_CHECK_TIMEOUT, r.client().read_only()).await;
                (h.db.path(), r, answer)
            })
        });
        for (db, r, answer) in futures::future::join_all(checks).await {
            match answer {
                Ok(Ok(false)) => {}
                Ok(Ok(true)) => {
                    return Err(Error::backend(
                        r.client().type_name(),
                        BackendErrorKind::ReadOnly,
                        format!(
                            "database {}: replica {:?} at {} is read-only (a plain static HTTP \
                             server, no WebDAV), so walship replicate cannot write to it. To \
                             keep a local copy that follows it, run walship restore -f with the \
                             same config and database path (walship restore -f -config FILE {}); \
                             to replicate, use a file, S3 or WebDAV replica",
                            db.display(),
                            r.name(),
                            r.client().location(),
                            db.display()
                        ),
                    ));
                }
                Ok(Err(e)) => {
                    warn!(db = %db.display(), replica = r.name(), error = %e, "cannot ask the replica whether it is writable; replicating anyway")
                }
                Err(_) => {
                    warn!(db = %db.display(), replica = r.name(), timeout = ?WRITABLE_CHECK_TIMEOUT, "the replica did not answer whether it is writable; replicating anyway")
                }
            }
        }
        Ok(())
    }

    /// Runs until `shutdown` completes, then syncs every database and replica one last time.
    /// Returns an error if the final sync of any replica failed (so a supervisor can tell).
    /// Refuses read-only replicas first ([`Engine::check_writable`]).
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        self.claim().await?;
        self.check_writable().await?;
        let handle = self.start();
        shutdown.await;
        info!("signal received, walship shutting down");
        handle.shutdown().await
    }
}

struct Shared {
    /// Grows while running when a watched directory gains a database, shrinks when one is
    /// removed from it.
    dbs: std::sync::RwLock<Vec<DbHandle>>,
    /// The tasks of each database in `dbs`, by database path.
    db_tasks: Mutex<HashMap<PathBuf, DbTasks>>,
    events: broadcast::Sender<Event>,
    /// Stops the engine's own tasks (directory watchers); each database's tasks have
    /// their own signal in `db_tasks`.
    stop_tx: watch::Sender<bool>,
    tasks: tokio::sync::Mutex<Option<tokio::task::JoinSet<()>>>,
    watcher: Mutex<Option<FsWatch>>,
    stall_intervals: u32,
}

/// Controls a running engine: force syncs, wait for durability, read status, subscribe to
/// events, shut down. Cheap to clone.
#[derive(Clone)]
pub struct EngineHandle {
    inner: Arc<Shared>,
}

impl std::fmt::Debug for EngineHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineHandle")
            .field("dbs", &self.inner.dbs().len())
            .finish()
    }
}

impl Shared {
    fn dbs(&self) -> std::sync::RwLockReadGuard<'_, Vec<DbHandle>> {
        self.dbs.read().unwrap_or_else(|e| e.into_inner())
    }

    fn db_tasks(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, DbTasks>> {
        self.db_tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the database at `path` out of the running engine: stops its tasks, waits for
    /// them to return, forgets it and closes its connections. Its replicas are left as they
    /// are. Returns false if the engine does not run it.
    async fn remove_db(&self, path: &Path) -> bool {
        let Some(mut t) = self.db_tasks().remove(path) else {
            return false;
        };
        let _ = t.stop.send(true);
        while t.done.recv().await.is_some() {}
        let h = {
            let mut dbs = self.dbs.write().unwrap_or_else(|e| e.into_inner());
            let i = dbs.iter().position(|h| h.db.path() == path);
            i.map(|i| dbs.remove(i))
        };
        if let Some(h) = h {
            h.db.close();
        }
        true
    }
}

impl EngineHandle {
    /// The databases (a snapshot: a watched directory may add more while running).
    pub fn dbs(&self) -> Vec<DbHandle> {
        self.inner.dbs().clone()
    }

    /// The database at `path` (as configured: absolute).
    pub fn db(&self, path: &Path) -> Option<DbHandle> {
        self.inner
            .dbs()
            .iter()
            .find(|h| h.db.path() == path)
            .cloned()
    }

    fn db_or_err(&self, path: &Path) -> Result<DbHandle> {
        self.db(path).ok_or_else(|| {
            Error::NotFound(format!(
                "database {} is not replicated by this engine",
                path.display()
            ))
        })
    }

    /// Hooks an application connection to the engine: every commit on `conn` wakes the
    /// database's monitor at once (SQLite's WAL hook, which runs after the commit is in the
    /// WAL), so a commit is picked up without polling; and SQLite's own auto-checkpoint is
    /// turned off on `conn`, so walship alone decides when to checkpoint. The connection's
    /// main database must be one this engine replicates.
    pub fn attach(&self, conn: &mut rusqlite::Connection) -> Result<()> {
        let path = conn
            .path()
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .ok_or_else(|| {
                Error::Config("attach: the connection has no database file (in-memory?)".into())
            })?;
        let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        let want = canon(&path);
        let h = self
            .inner
            .dbs()
            .iter()
            .find(|h| canon(h.db.path()) == want)
            .cloned()
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "database {} is not replicated by this engine",
                    path.display()
                ))
            })?;
        conn.execute_batch("PRAGMA wal_autocheckpoint = 0")
            .map_err(Error::sqlite(format!(
                "disable auto-checkpoint on {}",
                path.display()
            )))?;
        let waker = h.waker.clone();
        conn.wal_hook(Some(
            move |_: &mut rusqlite::hooks::Wal, _pages: std::os::raw::c_int| {
                waker.notify_one();
                Ok(())
            },
        ))
        .map_err(Error::sqlite(format!(
            "install wal hook on {}",
            path.display()
        )))?;
        Ok(())
    }

    /// Subscribes to engine events.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    /// The state of every database and replica.
    pub fn status(&self) -> Vec<DbStatus> {
        self.inner
            .dbs()
            .iter()
            .map(|h| DbStatus {
                path: h.db.path().to_path_buf(),
                pos: h.db.pos(),
                replicas: h.replicas.iter().map(|r| r.status()).collect(),
            })
            .collect()
    }

    /// The replicas that have not shipped what their database holds for longer than the
    /// engine's stall intervals ([`Engine::set_stall_intervals`]): empty when every replica
    /// is shipping. `/healthz` answers 503 while this is not empty.
    pub fn health(&self) -> Vec<crate::event::Stall> {
        crate::event::stalls(&self.status(), self.inner.stall_intervals)
    }

    /// Copies everything committed so far into the shadow WAL now and returns the position.
    pub async fn capture(&self, path: &Path) -> Result<Pos> {
        let h = self.db_or_err(path)?;
        let db = h.db.clone();
        tokio::task::spawn_blocking(move || db.sync())
            .await
            .map_err(Error::task_failed("sync"))??;
        h.db.pos().ok_or(Error::NoGeneration)
    }

    /// Waits until everything committed to the database before this call is stored on
    /// one replica or on all of them (`durability`), or `timeout` passes. Returns the
    /// position reached. Replicas are asked to upload at once instead of waiting out their
    /// `sync-interval`; concurrent waiters share one upload (group commit).
    pub async fn wait_durable(
        &self,
        path: &Path,
        durability: Durability,
        timeout: Duration,
    ) -> Result<Pos> {
        let fut = async {
            let target = self.capture(path).await?;
            let h = self.db_or_err(path)?;
            if h.replicas.is_empty() {
                return Err(Error::Config(format!(
                    "database {} has no replicas",
                    path.display()
                )));
            }
            loop {
                let notified = h.db.progress().notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                let current = h.db.pos().map(|p| p.generation);
                let covered = h
                    .replicas
                    .iter()
                    .filter(|r| covers(r.pos(), target, current))
                    .count();
                let enough = match durability {
                    Durability::AnyReplica => covered >= 1,
                    Durability::AllReplicas => covered == h.replicas.len(),
                };
                if enough {
                    return Ok(target);
                }
                for r in &h.replicas {
                    if !covers(r.pos(), target, current) {
                        r.wake();
                    }
                }
                notified.await;
            }
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout(format!(
                "{} not durable on {} within {timeout:?}",
                path.display(),
                match durability {
                    Durability::AnyReplica => "any replica",
                    Durability::AllReplicas => "all replicas",
                }
            ))),
        }
    }

    /// Forces an immediate copy and upload to every replica of `path` and returns the
    /// position reached (waits without limit; see [`EngineHandle::wait_durable`]).
    pub async fn sync(&self, path: &Path) -> Result<Pos> {
        self.wait_durable(path, Durability::AllReplicas, Duration::MAX / 4)
            .await
    }

    /// Stops every task, then syncs every database and replica one last time and closes
    /// the databases. Returns an error if any final sync failed. Idempotent.
    pub async fn shutdown(&self) -> Result<()> {
        let Some(mut tasks) = self.inner.tasks.lock().await.take() else {
            return Ok(());
        };
        let _ = self.inner.stop_tx.send(true);
        // No database is added from here on: a watched directory adds one only while the
        // task set is there, and it was just taken.
        for t in self.inner.db_tasks().values() {
            let _ = t.stop.send(true);
        }
        while tasks.join_next().await.is_some() {}
        self.inner
            .watcher
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();

        let mut failed = Vec::new();
        let dbs = self.dbs();
        for h in &dbs {
            let db = h.db.clone();
            match tokio::task::spawn_blocking(move || db.sync()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    error!(db = %h.db.path().display(), error = %e, "final database sync failed");
                    failed.push(format!("{}: {e}", h.db.path().display()));
                }
                Err(e) => failed.push(format!("{}: {e}", h.db.path().display())),
            }
            if h.db.pos().is_some() {
                for r in &h.replicas {
                    if let Err(e) = r.sync().await {
                        error!(db = %h.db.path().display(), replica = r.name(), error = %e, "final replica sync failed");
                        failed.push(format!("{} -> {}: {e}", h.db.path().display(), r.name()));
                    } else if let Err(e) = r.save_segment_log() {
                        warn!(db = %h.db.path().display(), replica = r.name(), error = %e, "cannot record the replica's last segments; the next start reads them back");
                    }
                    r.release_lease().await;
                }
            }
            h.db.close();
        }
        if failed.is_empty() {
            info!("walship shut down");
            Ok(())
        } else {
            Err(Error::backend(
                "shutdown",
                BackendErrorKind::Other,
                format!("final sync failed for {}", failed.join("; ")),
            ))
        }
    }
}

fn new_handle(
    events: &broadcast::Sender<Event>,
    opts: DbOptions,
    replicas: Vec<(Arc<dyn ReplicaClient>, ReplicaOptions)>,
) -> DbHandle {
    let db = Db::new(opts);
    db.set_events(events.clone());
    let replicas: Vec<Arc<Replica>> = replicas
        .into_iter()
        .map(|(c, o)| {
            let r = Replica::new(db.clone(), c, o);
            r.set_events(events.clone());
            r
        })
        .collect();
    DbHandle {
        db,
        replicas,
        waker: Arc::new(Notify::new()),
    }
}

/// The tasks of one database: its own stop signal, and a channel that closes once every
/// one of them has returned.
struct DbTasks {
    stop: watch::Sender<bool>,
    /// Nothing is ever sent: `recv` returns `None` once every task has returned (each
    /// holds a sender until then).
    done: tokio::sync::mpsc::Receiver<()>,
}

/// Spawns the monitor and the replica tasks of `h` into `tasks`; they run until the
/// returned [`DbTasks`] says stop (or is dropped).
fn spawn_db_tasks(tasks: &mut tokio::task::JoinSet<()>, h: &DbHandle, notified: bool) -> DbTasks {
    info!(path = %h.db.path().display(), "initialized db");
    for r in &h.replicas {
        info!(db = %h.db.path().display(), name = r.name(), r#type = r.client().type_name(), location = %r.client().location(), "replicating to");
    }
    let (stop, stop_rx) = watch::channel(false);
    let (done_tx, done) = tokio::sync::mpsc::channel(1);
    let mut spawn = |fut: std::pin::Pin<Box<dyn Future<Output = ()> + Send>>| {
        let done_tx = done_tx.clone();
        tasks.spawn(async move {
            fut.await;
            drop(done_tx);
        });
    };
    spawn(Box::pin(monitor(
        h.db.clone(),
        h.replicas.clone(),
        h.waker.clone(),
        notified,
        stop_rx.clone(),
    )));
    for r in &h.replicas {
        spawn(Box::pin(r.clone().run(stop_rx.clone())));
        if r.validation_interval().is_some() {
            spawn(Box::pin(r.clone().run_validation(stop_rx.clone())));
        }
    }
    DbTasks { stop, done }
}

/// True when a replica at `replica` holds everything up to `target`: the same generation
/// at or past it, or the database's current, newer generation (whose snapshot holds
/// everything committed before it started).
fn covers(
    replica: Option<Pos>,
    target: Pos,
    current_generation: Option<crate::pos::Generation>,
) -> bool {
    match replica {
        Some(p) if p.generation == target.generation => p >= target,
        Some(p) => Some(p.generation) == current_generation,
        None => false,
    }
}

/// Watches the directory of every database (not recursive) and wakes the database whose
/// file or `-wal` changed. Returns `None` (polling only) if the watcher cannot start.
fn start_watcher(
    dbs: &[DbHandle],
    wakers: HashMap<PathBuf, Arc<Notify>>,
) -> (Option<FsWatch>, std::collections::HashSet<PathBuf>) {
    let mut watched = std::collections::HashSet::new();
    let mut dirs: Vec<PathBuf> = dbs
        .iter()
        .filter_map(|h| h.db.path().parent().map(|p| p.to_path_buf()))
        .collect();
    dirs.sort();
    dirs.dedup();
    let on_change: OnChange = Arc::new(move |p: PathBuf| {
        if let Some(n) = wakers.get(&p) {
            n.notify_one();
        }
    });
    let (watcher, results) = match FsWatch::new(&dirs, false, Events::Writes, on_change) {
        Ok(w) => w,
        Err(e) => {
            warn!(error = %e, "file change notifications unavailable; polling at monitor-interval only");
            return (None, watched);
        }
    };
    for (d, err) in results {
        match err {
            None => {
                watched.insert(d);
            }
            Some(e) => {
                warn!(dir = %d.display(), error = %e, "cannot watch directory; polling at monitor-interval only");
            }
        }
    }
    (Some(watcher), watched)
}

/// With file-system notifications on its directory, a database is still looked at every
/// this often (or every `monitor-interval`, if longer): a safety net, and the clock of the
/// time-based checkpoint rule. Without notifications it is polled every `monitor-interval`.
pub const NOTIFIED_POLL_INTERVAL: Duration = Duration::from_secs(10);

/// When to copy the WAL after a change was notified: not before `earliest` (the burst
/// throttle), and not before the first replica is free to upload again (it uploads at most
/// once per `sync-interval`, so copying sooner only costs CPU: at 20 commits/s and a 1 s
/// sync-interval, one copy a second instead of ten). Never later than `max_defer` from now,
/// so the shadow WAL keeps up as often as Litestream's polling even while a replica is
/// backing off. Without replicas: at `earliest`. A durability wait does not wait for this,
/// and a heavy writer cuts it short (see `monitor`).
fn copy_at(
    replicas: &[Arc<Replica>],
    earliest: tokio::time::Instant,
    max_defer: Duration,
) -> tokio::time::Instant {
    let due = replicas.iter().filter_map(|r| r.next_upload_due()).min();
    match due {
        Some(due) => tokio::time::Instant::from_std(due)
            .max(earliest)
            .min(tokio::time::Instant::now() + max_defer),
        None => earliest,
    }
}

async fn monitor(
    db: Arc<Db>,
    replicas: Vec<Arc<Replica>>,
    waker: Arc<Notify>,
    notified: bool,
    mut stop: watch::Receiver<bool>,
) {
    let interval = if notified {
        db.options().monitor_interval.max(NOTIFIED_POLL_INTERVAL)
    } else {
        db.options().monitor_interval
    };
    // Coalesce bursts of notifications (a commit touches the -wal and the -shm several
    // times): at most one sync per tenth of monitor-interval, between 10 and 100 ms. A
    // durability wait does not wait for this: it copies the WAL itself.
    let throttle = (db.options().monitor_interval / 10)
        .clamp(Duration::from_millis(10), Duration::from_millis(100));
    let mut last_error: Option<String> = None;
    let mut busy = BusySpell::default();
    loop {
        let db2 = db.clone();
        let started = tokio::time::Instant::now();
        match tokio::task::spawn_blocking(move || db2.sync()).await {
            Ok(Ok(outcome)) => {
                let busy_warned = busy.end();
                if last_error.take().is_some() || busy_warned {
                    info!(db = %db.path().display(), "database sync recovered");
                }
                debug!(db = %db.path().display(), ?outcome, "sync");
            }
            // The application held the write lock past walship's busy timeout (a bulk
            // writer re-taking it at once, a long transaction): nothing is lost, the next
            // round copies what this one could not. Said at warn level only when it lasts.
            Ok(Err(e)) if e.is_busy() => {
                if let Some(for_s) = busy.busy() {
                    warn!(db = %db.path().display(), error = %e, for_s, "the database stays locked by another connection: walship cannot copy the WAL or checkpoint until the lock is released, and the WAL grows meanwhile; look for a long write transaction");
                } else {
                    debug!(db = %db.path().display(), error = %e, "database busy; trying again next round");
                }
            }
            Ok(Err(e)) => {
                let msg = e.to_string();
                let shape = crate::replica::error_shape(&msg);
                if last_error.as_deref() != Some(shape.as_str()) {
                    error!(db = %db.path().display(), error = %msg, "monitor error");
                }
                last_error = Some(shape);
            }
            Err(e) => error!(db = %db.path().display(), error = %e, "sync task failed"),
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = waker.notified() => {
                let at = copy_at(&replicas, started + throttle, db.options().monitor_interval);
                let at_latest = tokio::time::sleep_until(at);
                tokio::pin!(at_latest);
                // Notifications keep coming while the copy waits. Once the -wal file has grown
                // by a checkpoint's worth, the writer is a heavy one, whose WAL must not grow
                // for a whole sync-interval (a big WAL ends in a RESTART checkpoint, which
                // blocks the application's writers): copy once the burst throttle is over.
                // (Measured, 20,000-transaction bulk writer, `compare.py --size full --only
                // 1 --reps 3`: writer 2.60 s without this, 1.85 s with it; two more signals,
                // a count of notifications and the size of the last copy, changed nothing
                // and were removed.)
                //
                // The size is looked at every throttle period rather than on each
                // notification: at 20 commits a second each commit notified two or three
                // times, and waking this task (and a stat of the -wal) for each was most of
                // walship's steady-state CPU (profiled: scheduler wake-ups, futex and
                // epoll_wait, no data work). Notifications meanwhile only leave a permit.
                // Every 100 ms at most (the throttle is 10 ms at monitor-interval 100ms,
                // which would wake more often than the notifications did).
                let period = throttle.max(Duration::from_millis(100));
                let mut check = tokio::time::interval_at(started + throttle, period);
                check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = stop.changed() => return,
                        _ = &mut at_latest => break,
                        _ = check.tick() => {
                            if db.wal_grew_a_lot() {
                                break;
                            }
                        }
                    }
                }
            }
            _ = tokio::time::sleep(interval) => {}
        }
        if *stop.borrow() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The options an embedder builds by hand (`DbOptions::new`, `ReplicaOptions::new`) and
    /// the ones a `litestream.yml` that sets nothing resolves to are the same: the defaults
    /// live in `config` alone.
    #[test]
    fn hand_built_options_have_the_config_defaults() {
        let loaded = Config::from_yaml(
            "dbs:\n  - path: /data/app.db\n    replicas:\n      - path: /backups/app\n",
            Path::new("defaults.yml"),
            false,
        )
        .unwrap();
        let dbc = &loaded.config.dbs[0];
        assert_eq!(
            format!("{:?}", db_options(dbc)),
            format!(
                "{:?}",
                DbOptions::new(std::path::absolute("/data/app.db").unwrap())
            )
        );
        let rc = &dbc.replicas[0];
        assert_eq!(
            format!("{:?}", replica_options(rc)),
            format!("{:?}", ReplicaOptions::new("file"))
        );
        // And a set value makes it through the conversion.
        let loaded = Config::from_yaml(
            "dbs:\n  - path: /d.db\n    monitor-interval: 250ms\n    replicas:\n      - path: /b\n        sync-interval: 7s\n        retention: 0\n",
            Path::new("set.yml"),
            false,
        )
        .unwrap();
        let dbc = &loaded.config.dbs[0];
        assert_eq!(db_options(dbc).monitor_interval, Duration::from_millis(250));
        let o = replica_options(&dbc.replicas[0]);
        assert_eq!(o.sync_interval, Duration::from_secs(7));
        assert_eq!(o.retention, None);
    }
}
