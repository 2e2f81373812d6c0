//! [`Engine`]: runs every database and replica of a configuration until shutdown.
//!
//! Task structure: one monitor task per database (woken by file-system notifications on the
//! database's directory, with `monitor-interval` polling as a safety net) runs
//! [`Db::sync`] on a blocking thread; one task per replica waits for the database's
//! position to change and uploads at most once per `sync-interval`. Shutdown stops the
//! tasks, then runs one final database sync and one final sync per replica.
use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{Notify, watch};
use tracing::{debug, error, info, warn};

use crate::backend::ReplicaClient;
use crate::backend::file::FileClient;
use crate::backend::object::ObjectClient;
use crate::config::{Config, DbConfig, ReplicaTarget};
use crate::db::{Db, DbOptions};
use crate::error::{Error, Result};
use crate::replica::{Replica, ReplicaOptions};

/// A database with its replicas, as the engine runs them.
#[derive(Debug, Clone)]
pub struct DbHandle {
    pub db: Arc<Db>,
    pub replicas: Vec<Arc<Replica>>,
}

/// Runs a set of databases and their replicas.
#[derive(Debug, Default)]
pub struct Engine {
    dbs: Vec<DbHandle>,
}

/// Builds the storage client for a replica target.
pub fn client_for(target: &ReplicaTarget) -> Result<Arc<dyn ReplicaClient>> {
    match target {
        ReplicaTarget::File { path } => Ok(Arc::new(FileClient::new(path.clone()))),
        ReplicaTarget::S3(c) => Ok(Arc::new(ObjectClient::s3(c)?)),
        ReplicaTarget::Http(c) => Ok(Arc::new(ObjectClient::http(c)?)),
        other => Err(Error::Config(format!(
            "{} replicas are not supported by this walship build yet; use a file, s3 or http replica",
            other.type_name()
        ))),
    }
}

/// Database options from a `dbs:` entry.
pub fn db_options(c: &DbConfig) -> DbOptions {
    DbOptions {
        path: c.path.clone(),
        meta_path: c.meta_path.clone(),
        monitor_interval: c.monitor_interval,
        checkpoint_interval: c.checkpoint_interval,
        min_checkpoint_page_count: c.min_checkpoint_page_count,
        max_checkpoint_page_count: c.max_checkpoint_page_count,
    }
}

impl Engine {
    /// An engine with no databases.
    pub fn new() -> Engine {
        Engine::default()
    }

    /// Builds an engine for every database of `config`.
    pub fn from_config(config: &Config) -> Result<Engine> {
        let mut e = Engine::new();
        for dbc in &config.dbs {
            let mut replicas = Vec::new();
            for rc in &dbc.replicas {
                let client = client_for(&rc.target).map_err(|err| {
                    Error::Config(format!(
                        "db {}: replica {:?}: {err}",
                        dbc.path.display(),
                        rc.name
                    ))
                })?;
                let mut o = ReplicaOptions::new(rc.name.clone());
                o.sync_interval = rc.sync_interval;
                o.snapshot_interval = rc.snapshot_interval;
                replicas.push((client, o));
            }
            e.add_db(db_options(dbc), replicas);
        }
        Ok(e)
    }

    /// Adds a database and its replicas.
    pub fn add_db(
        &mut self,
        opts: DbOptions,
        replicas: Vec<(Arc<dyn ReplicaClient>, ReplicaOptions)>,
    ) -> DbHandle {
        let db = Db::new(opts);
        let replicas = replicas
            .into_iter()
            .map(|(c, o)| Replica::new(db.clone(), c, o))
            .collect();
        let h = DbHandle { db, replicas };
        self.dbs.push(h.clone());
        h
    }

    /// The databases.
    pub fn dbs(&self) -> &[DbHandle] {
        &self.dbs
    }

    /// Runs until `shutdown` completes, then syncs every database and replica one last time.
    /// Returns an error if the final sync of any replica failed (so a supervisor can tell).
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        if self.dbs.is_empty() {
            warn!("no databases specified in configuration");
        }
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = tokio::task::JoinSet::new();

        // One file-system watcher for all databases, routing events by path.
        let mut wakers: HashMap<PathBuf, Arc<Notify>> = HashMap::new();
        for h in &self.dbs {
            let n = Arc::new(Notify::new());
            wakers.insert(h.db.path().to_path_buf(), n.clone());
            wakers.insert(h.db.wal_path().to_path_buf(), n);
        }
        let _watcher = start_watcher(&self.dbs, wakers.clone());

        for h in &self.dbs {
            info!(path = %h.db.path().display(), "initialized db");
            for r in &h.replicas {
                info!(db = %h.db.path().display(), name = r.name(), r#type = r.client().type_name(), location = %r.client().location(), "replicating to");
            }
            let waker = wakers[h.db.path()].clone();
            tasks.spawn(monitor(h.db.clone(), waker, stop_rx.clone()));
            for r in &h.replicas {
                tasks.spawn(r.clone().run(stop_rx.clone()));
            }
        }

        shutdown.await;
        info!("signal received, walship shutting down");
        let _ = stop_tx.send(true);
        while tasks.join_next().await.is_some() {}

        let mut failed = Vec::new();
        for h in &self.dbs {
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
                    }
                }
            }
            h.db.close();
        }
        if failed.is_empty() {
            info!("walship shut down");
            Ok(())
        } else {
            Err(Error::Backend {
                backend: "shutdown".into(),
                message: format!("final sync failed for {}", failed.join("; ")),
            })
        }
    }
}

/// Watches the directory of every database (not recursive) and wakes the database whose
/// file or `-wal` changed. Returns `None` (polling only) if the watcher cannot start.
fn start_watcher(
    dbs: &[DbHandle],
    wakers: HashMap<PathBuf, Arc<Notify>>,
) -> Option<notify::RecommendedWatcher> {
    use notify::{RecursiveMode, Watcher};
    let mut watcher = match notify::recommended_watcher(
        move |res: notify::Result<notify::Event>| {
            if let Ok(ev) = res {
                for p in &ev.paths {
                    if let Some(n) = wakers.get(p) {
                        n.notify_one();
                    }
                }
            }
        },
    ) {
        Ok(w) => w,
        Err(e) => {
            warn!(error = %e, "file change notifications unavailable; polling at monitor-interval only");
            return None;
        }
    };
    let mut dirs: Vec<PathBuf> = dbs
        .iter()
        .filter_map(|h| h.db.path().parent().map(|p| p.to_path_buf()))
        .collect();
    dirs.sort();
    dirs.dedup();
    for d in dirs {
        if let Err(e) = watcher.watch(&d, RecursiveMode::NonRecursive) {
            warn!(dir = %d.display(), error = %e, "cannot watch directory; polling at monitor-interval only");
        }
    }
    Some(watcher)
}

async fn monitor(db: Arc<Db>, waker: Arc<Notify>, mut stop: watch::Receiver<bool>) {
    let interval = db.options().monitor_interval;
    let mut last_error: Option<String> = None;
    loop {
        let db2 = db.clone();
        match tokio::task::spawn_blocking(move || db2.sync()).await {
            Ok(Ok(outcome)) => {
                if last_error.take().is_some() {
                    info!(db = %db.path().display(), "database sync recovered");
                }
                debug!(db = %db.path().display(), ?outcome, "sync");
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
            _ = waker.notified() => {}
            _ = tokio::time::sleep(interval) => {}
        }
        if *stop.borrow() {
            return;
        }
    }
}
