//! The tasks of each database: the monitor (tails the database on file-change
//! notifications, the application's commit hook and `monitor-interval` polling) and one
//! task per replica, and the watcher that wakes them.
use super::*;

/// The tasks of one database: its own stop signal, and a channel that closes once every
/// one of them has returned.
pub(super) struct DbTasks {
    pub(super) stop: watch::Sender<bool>,
    /// Nothing is ever sent: `recv` returns `None` once every task has returned (each
    /// holds a sender until then).
    pub(super) done: tokio::sync::mpsc::Receiver<()>,
}

/// Spawns the monitor and the replica tasks of `h` into `tasks`; they run until the
/// returned [`DbTasks`] says stop (or is dropped).
pub(super) fn spawn_db_tasks(
    tasks: &mut tokio::task::JoinSet<()>,
    h: &DbHandle,
    notified: bool,
) -> DbTasks {
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

/// Watches the directory of every database (not recursive) and wakes the database whose
/// file or `-wal` changed. Returns `None` (polling only) if the watcher cannot start.
pub(super) fn start_watcher(
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
