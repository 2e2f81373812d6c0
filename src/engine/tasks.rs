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
    armer: Option<Armer>,
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
        armer,
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
    // A directory's own path (an inotify queue overflow) wakes every database in it.
    let mut by_dir: HashMap<PathBuf, Vec<Arc<Notify>>> = HashMap::new();
    for (p, n) in &wakers {
        if let Some(d) = p.parent() {
            by_dir.entry(d.to_path_buf()).or_default().push(n.clone());
        }
    }
    let on_change: OnChange = Arc::new(move |p: PathBuf| {
        if let Some(n) = wakers.get(&p) {
            n.notify_one();
        } else if let Some(all) = by_dir.get(&p) {
            all.iter().for_each(|n| n.notify_one());
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

/// When to look at the `-wal` file's size again while a copy waits for its upload: when
/// the growth seen so far, at the rate seen so far, would reach `heavy`, but not sooner
/// than `period`. Without growth, twice the last wait. (At 20 commits a second the WAL grows
/// ~400 KB/s against a 4 MB threshold: no look before the copy is due; a bulk writer is
/// looked at every `period`, as before.)
fn next_look(
    grown: u64,
    heavy: u64,
    since_sync: Duration,
    last: Duration,
    period: Duration,
) -> Duration {
    if grown == 0 || since_sync.is_zero() {
        return (last * 2).max(period);
    }
    let rate = grown as f64 / since_sync.as_secs_f64();
    let left = heavy.saturating_sub(grown) as f64;
    Duration::from_secs_f64((left / rate).min(3600.0)).max(period)
}

async fn monitor(
    db: Arc<Db>,
    replicas: Vec<Arc<Replica>>,
    waker: Arc<Notify>,
    notified: bool,
    armer: Option<Armer>,
    mut stop: watch::Receiver<bool>,
) {
    // Coalesce bursts of notifications (a commit touches the -wal and the -shm several
    // times): at most one sync per tenth of monitor-interval, between 10 and 100 ms. A
    // durability wait does not wait for this: it copies the WAL itself.
    let throttle = (db.options().monitor_interval / 10)
        .clamp(Duration::from_millis(10), Duration::from_millis(100));
    let mut last_error: Option<String> = None;
    let mut busy = BusySpell::default();
    // The -wal's writes cannot be heard (see `Armer::arm`): poll at monitor-interval.
    let mut unheard: Option<String> = None;
    loop {
        let db2 = db.clone();
        let armer2 = armer.clone();
        let started = tokio::time::Instant::now();
        // Armed before the copy, so that a commit landing after the copy read the WAL is
        // heard.
        let r = tokio::task::spawn_blocking(move || {
            let armed = armer2.map(|a| a.arm(db2.wal_path()));
            (armed, db2.sync())
        })
        .await;
        let r = match r {
            Ok((armed, r)) => {
                match armed {
                    Some(Err(e)) if e.kind() != std::io::ErrorKind::NotFound => {
                        let msg = e.to_string();
                        if unheard.as_deref() != Some(msg.as_str()) {
                            warn!(db = %db.path().display(), error = %msg, "cannot watch the -wal file for commits (at the per-user inotify watch limit? raise fs.inotify.max_user_watches); looking at the database every monitor-interval instead");
                        }
                        unheard = Some(msg);
                    }
                    Some(_) if unheard.take().is_some() => {
                        info!(db = %db.path().display(), "watching the -wal file for commits again");
                    }
                    _ => {}
                }
                Ok(r)
            }
            Err(e) => Err(e),
        };
        match r {
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
        let interval = if notified && unheard.is_none() {
            db.options().monitor_interval.max(NOTIFIED_POLL_INTERVAL)
        } else {
            db.options().monitor_interval
        };
        tokio::select! {
            _ = stop.changed() => return,
            _ = waker.notified() => {
                let at = copy_at(&replicas, started + throttle, db.options().monitor_interval);
                let at_latest = tokio::time::sleep_until(at);
                tokio::pin!(at_latest);
                // Until the copy is due the writer may turn out a heavy one, whose WAL must
                // not grow for a whole sync-interval (a big WAL ends in a RESTART checkpoint,
                // which blocks the application's writers): once the -wal file has grown by
                // a checkpoint's worth, copy as soon as the burst throttle is over.
                // (Measured, 20,000-transaction bulk writer, `compare.py --size full --only
                // 1 --reps 3`: writer 2.60 s without this, 1.85 s with it.)
                //
                // The -wal's writes are heard once per copy (see `Armer`), so its size is
                // looked at on a clock instead: every 100 ms at most (the throttle is 10 ms at
                // monitor-interval 100ms), and only as often as the growth seen so far makes
                // a heavy writer possible (see `next_look`): a light writer is not looked at
                // before its copy is due.
                let period = throttle.max(Duration::from_millis(100));
                let mut wait = throttle;
                let look = tokio::time::sleep_until(started + throttle);
                tokio::pin!(look);
                loop {
                    tokio::select! {
                        _ = stop.changed() => return,
                        _ = &mut at_latest => break,
                        _ = &mut look => {
                            let (grown, heavy) = db.wal_growth();
                            if grown >= heavy {
                                break;
                            }
                            wait = next_look(grown, heavy, started.elapsed(), wait, period);
                            look.as_mut().reset(tokio::time::Instant::now() + wait);
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

    #[test]
    fn a_light_writer_is_looked_at_once_its_growth_could_matter_a_heavy_one_every_period() {
        let p = Duration::from_millis(100);
        let heavy = 4_000_000;
        // 20 commits a second: 40 KB in 100 ms, ~10 s from a checkpoint's worth.
        let w = next_look(40_000, heavy, p, p, p);
        assert!(
            w > Duration::from_secs(9) && w < Duration::from_secs(11),
            "{w:?}"
        );
        // A bulk writer: half of it in 100 ms; looked at again after the period.
        assert_eq!(next_look(2_000_000, heavy, p, p, p), p);
        // No growth (a WAL rewritten inside its old length): twice the last wait.
        assert_eq!(next_look(0, heavy, p, 3 * p, p), 6 * p);
    }
}
