//! [`EngineHandle`]: what an application holds while the engine runs (force syncs,
//! durability waits, status, events, shutdown), and the state it shares with the engine's
//! tasks.
use super::*;

/// What the handle and the engine's tasks share: the running databases and their tasks.
pub(super) struct Shared {
    /// Grows while running when a watched directory gains a database, shrinks when one is
    /// removed from it.
    pub(super) dbs: std::sync::RwLock<Vec<DbHandle>>,
    /// The tasks of each database in `dbs`, by database path.
    pub(super) db_tasks: Mutex<HashMap<PathBuf, DbTasks>>,
    pub(super) events: broadcast::Sender<Event>,
    /// Stops the engine's own tasks (directory watchers); each database's tasks have
    /// their own signal in `db_tasks`.
    pub(super) stop_tx: watch::Sender<bool>,
    pub(super) tasks: tokio::sync::Mutex<Option<tokio::task::JoinSet<()>>>,
    pub(super) watcher: Mutex<Option<FsWatch>>,
    pub(super) stall_intervals: u32,
}

/// Controls a running engine: force syncs, wait for durability, read status, subscribe to
/// events, shut down. Cheap to clone.
#[derive(Clone)]
pub struct EngineHandle {
    pub(super) inner: Arc<Shared>,
}

impl std::fmt::Debug for EngineHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineHandle")
            .field("dbs", &self.inner.dbs().len())
            .finish()
    }
}

impl Shared {
    pub(super) fn dbs(&self) -> std::sync::RwLockReadGuard<'_, Vec<DbHandle>> {
        self.dbs.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn db_tasks(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, DbTasks>> {
        self.db_tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the database at `path` out of the running engine: stops its tasks, waits for
    /// them to return, forgets it and closes its connections. Its replicas are left as they
    /// are. Returns false if the engine does not run it.
    pub(super) async fn remove_db(&self, path: &Path) -> bool {
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
