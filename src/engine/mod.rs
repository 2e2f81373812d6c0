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
mod handle;
mod tasks;

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
use crate::db::Db;
use crate::error::{BackendErrorKind, Error, Result};
use crate::event::{DbStatus, Event};
use crate::pos::Pos;
use crate::replica::Replica;
use crate::watch::{Armer, Events, FsWatch, OnChange};

/// The settings of one database, as [`Engine::add_db`] takes them (defined in an internal
/// module; this is their stable path).
#[doc(inline)]
pub use crate::db::DbOptions;
/// The settings of one replica, as [`Engine::add_db`] takes them (defined in an internal
/// module; this is their stable path).
#[doc(inline)]
pub use crate::replica::ReplicaOptions;
use build::replicas_for;
pub use build::{db_options, replica_options};
use dir_watch::watch_dir;
pub use handle::EngineHandle;
use handle::Shared;
pub use tasks::NOTIFIED_POLL_INTERVAL;
use tasks::{DbTasks, spawn_db_tasks, start_watcher};

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
        let armer = watcher.as_ref().and_then(FsWatch::armer);
        let mut db_tasks = HashMap::new();
        for h in &self.dbs {
            let notified = h.db.path().parent().is_some_and(|d| watched.contains(d));
            let armer = if notified { armer.clone() } else { None };
            let t = spawn_db_tasks(&mut tasks, h, notified, armer);
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
