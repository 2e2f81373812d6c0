//! Directory entries with `watch: true`: new databases are picked up as they appear
//! (inotify, with a rescan as safety net), and a database deleted from the directory stops
//! replicating (its replica is kept).
use super::*;

/// How long a database file of a watched directory must stay gone before the database is
/// stopped: a database replaced by delete-and-create, or moved away and back, is not.
const REMOVED_GRACE: Duration = Duration::from_secs(1);

/// True when nothing is at `path` (other errors, such as permissions, are not a removal).
fn absent(path: &Path) -> bool {
    matches!(std::fs::symlink_metadata(path), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
}

/// The database whose `-wal`, `-shm` or `-journal` `p` is, if it is one.
fn sidecar_of(p: &Path) -> Option<PathBuf> {
    let name = p.file_name()?.to_str()?;
    let base = ["-wal", "-shm", "-journal"]
        .iter()
        .find_map(|s| name.strip_suffix(s))?;
    (!base.is_empty()).then(|| p.with_file_name(base))
}

/// Watches a directory entry with `watch: true`, starts replicating every database that
/// appears in it and stops replicating every one that disappears: file-system
/// notifications on the directory (recursive with `recursive: true`) say when to look, and
/// a rescan every [`NOTIFIED_POLL_INTERVAL`] is the safety net. A file that matches the
/// pattern but is not a SQLite database is warned about once and skipped; an empty one (a
/// database being created) is looked at again on its next change. A database of this
/// entry whose file is gone, and still gone [`REMOVED_GRACE`] later, is taken out of the
/// engine (its replica is kept); if it comes back it is picked up like any new database.
/// The same notifications wake the databases this task added.
/// Starts notifications for `dc`'s directory into `tx`; `None` (with a warning) when the
/// directory cannot be watched, and then only the rescans find new databases.
fn start_dir_watcher(
    dc: &DirConfig,
    tx: tokio::sync::mpsc::UnboundedSender<PathBuf>,
) -> Option<FsWatch> {
    let on_change: OnChange = Arc::new(move |p: PathBuf| {
        let _ = tx.send(p);
    });
    let dirs = [dc.dir.clone()];
    match FsWatch::new(&dirs, dc.recursive, Events::Writes, on_change) {
        Ok((w, results)) => match results.into_iter().find_map(|(_, e)| e) {
            None => Some(w),
            Some(e) => {
                warn!(dir = %dc.dir.display(), error = %e, "cannot watch directory; looking for new databases at every rescan only");
                None
            }
        },
        Err(e) => {
            warn!(dir = %dc.dir.display(), error = %e, "cannot watch directory; looking for new databases at every rescan only");
            None
        }
    }
}

/// What a directory watch knows of the databases under its directory.
struct DirState {
    /// Wakers of the databases under this directory that this task added, by db and -wal
    /// path.
    wakers: HashMap<PathBuf, Arc<Notify>>,
    /// Every database the engine runs (the configured ones, those found at start-up, and
    /// those this task added): never added twice.
    known: HashSet<PathBuf>,
    /// The databases of this entry (found at start-up or added since): the ones it stops
    /// when their file goes. A database configured by its own `path:` is never stopped.
    mine: HashSet<PathBuf>,
}

impl DirState {
    /// Stops the databases in `gone` (still absent after the grace).
    async fn remove(&mut self, shared: &Shared, dc: &DirConfig, gone: Vec<PathBuf>) {
        for p in gone {
            if shared.remove_db(&p).await {
                info!(path = %p.display(), dir = %dc.dir.display(), "database removed from directory; replication stopped, its replica is kept");
            }
            self.mine.remove(&p);
            self.known.remove(&p);
            if let Some(w) = self.wakers.get(&p).cloned() {
                self.wakers.retain(|_, v| !Arc::ptr_eq(v, &w));
            }
        }
    }

    /// Starts replicating each candidate that is a SQLite database. False when the engine
    /// is shutting down.
    async fn add(
        &mut self,
        shared: &Shared,
        d: &mut DirWatch,
        candidates: Vec<PathBuf>,
        notified: bool,
        armer: Option<&Armer>,
    ) -> bool {
        let dc = d.config.clone();
        for p in candidates {
            match dc.classify(&p) {
                Candidate::Database => {}
                Candidate::NotSqlite => {
                    if d.warned.insert(p.clone()) {
                        warn!(path = %p.display(), dir = %dc.dir.display(), "skipping file: it matches the pattern but is not a SQLite database");
                    }
                    continue;
                }
                Candidate::NotYet | Candidate::Ignored => continue,
            }
            let Some(dbc) = dc.db_config(&p) else {
                continue;
            };
            let replicas = match replicas_for(&dbc) {
                Ok(r) => r,
                Err(e) => {
                    if d.warned.insert(p.clone()) {
                        error!(path = %p.display(), error = %e, "cannot replicate new database");
                    }
                    continue;
                }
            };
            let h = new_handle(&shared.events, db_options(&dbc), replicas);
            let mut tasks = shared.tasks.lock().await;
            let Some(tasks) = tasks.as_mut() else {
                return false;
            };
            info!(path = %p.display(), dir = %dc.dir.display(), "new database in watched directory");
            self.known.insert(p.clone());
            self.mine.insert(p.clone());
            self.wakers
                .insert(h.db.path().to_path_buf(), h.waker.clone());
            self.wakers
                .insert(h.db.wal_path().to_path_buf(), h.waker.clone());
            shared
                .dbs
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .push(h.clone());
            let t = spawn_db_tasks(tasks, &h, notified, armer.cloned());
            shared.db_tasks().insert(p.clone(), t);
            h.waker.notify_one();
        }
        true
    }
}

pub(super) async fn watch_dir(
    mut d: DirWatch,
    shared: std::sync::Weak<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let dc = d.config.clone();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<PathBuf>();
    // Kept for as long as the task runs: dropping it stops the notifications.
    let _watcher = start_dir_watcher(&dc, tx);
    let notified = _watcher.is_some();
    let armer = _watcher.as_ref().and_then(FsWatch::armer);
    let mut st = DirState {
        wakers: HashMap::new(),
        known: match shared.upgrade() {
            Some(s) => s.dbs().iter().map(|h| h.db.path().to_path_buf()).collect(),
            None => return,
        },
        mine: std::mem::take(&mut d.found),
    };
    let rescan_every = dc.template.monitor_interval.max(NOTIFIED_POLL_INTERVAL);
    let mut rescan = tokio::time::interval(rescan_every);
    rescan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    rescan.tick().await;
    loop {
        let (mut candidates, mut gone): (Vec<PathBuf>, Vec<PathBuf>) = tokio::select! {
            _ = stop.changed() => return,
            // Without a watcher the channel is closed and this branch stays disabled.
            Some(p) = rx.recv() => {
                if let Some(w) = st.wakers.get(&p) {
                    w.notify_one();
                    // Only the database file itself counts: its -wal and -shm come and go.
                    if !st.mine.contains(&p) {
                        continue;
                    }
                } else if p.is_dir() {
                    // A directory's own path: an inotify queue overflow lost events under it.
                    for (q, w) in &st.wakers {
                        if q.starts_with(&p) {
                            w.notify_one();
                        }
                    }
                    continue;
                }
                // In-place writes are not reported (see `Events::Writes`): a database being
                // created shows up through its -journal, -wal and -shm coming and going.
                let p = sidecar_of(&p).unwrap_or(p);
                if st.mine.contains(&p) {
                    (Vec::new(), vec![p])
                } else {
                    (vec![p], Vec::new())
                }
            }
            _ = rescan.tick() => {
                let dc = dc.clone();
                let mut gone: Vec<PathBuf> = st.mine.iter().cloned().collect();
                tokio::task::spawn_blocking(move || {
                    gone.retain(|p| absent(p));
                    (dc.scan(), gone)
                })
                .await
                .unwrap_or_default()
            }
        };
        gone.retain(|p| absent(p));
        if !gone.is_empty() {
            // A database replaced by delete-and-create, or moved away and back, is not
            // stopped: it must still be gone after the grace.
            tokio::select! {
                _ = stop.changed() => return,
                _ = tokio::time::sleep(REMOVED_GRACE) => {}
            }
            gone.retain(|p| absent(p));
            let Some(shared) = shared.upgrade() else {
                return;
            };
            st.remove(&shared, &dc, gone).await;
        }
        // Cheap name checks first: most events are about -wal and -shm files.
        candidates.retain(|p| !st.known.contains(p) && dc.relative(p).is_some());
        if candidates.is_empty() {
            continue;
        }
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if !st
            .add(&shared, &mut d, candidates, notified, armer.as_ref())
            .await
        {
            return; // shutting down
        }
    }
}
