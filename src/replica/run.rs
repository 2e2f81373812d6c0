//! A replica's run loop: uploads after each change of the database (at most once per
//! `sync-interval`), scheduled snapshots, retention, and backoff after failures.
use super::*;

impl Replica {
    pub(super) fn retention_interval(&self) -> Option<Duration> {
        let keep = self.opts.retention?;
        Some(
            self.opts
                .retention_check_interval
                .min(keep)
                .max(Duration::from_millis(100)),
        )
    }

    pub(super) fn snapshot_due(&self) -> Option<Duration> {
        let iv = self.opts.snapshot_interval?;
        let last = (*self.last_snapshot.lock().unwrap_or_else(|e| e.into_inner()))?;
        let age = SystemTime::now().duration_since(last).unwrap_or_default();
        Some(iv.saturating_sub(age))
    }

    /// Runs until `shutdown` turns true: uploads after each change of the database, at most
    /// once per `sync-interval`, and takes snapshots on `snapshot-interval`. Never issues a
    /// request while the database is idle.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut changes = self.db.subscribe();
        let mut last_sync: Option<Instant> = None;
        let mut failures = 0u32;
        let mut last_error: Option<String> = None;
        // Like Litestream: the first retention run comes one interval after start.
        let mut next_retention = self.retention_interval().map(|iv| Instant::now() + iv);
        let mut snapshot_busy = crate::busy::BusySpell::default();
        loop {
            if *shutdown.borrow() {
                return;
            }
            // Scheduled work is due whatever the write load.
            if failures == 0
                && self.db.pos().is_some()
                && self.snapshot_due().is_some_and(|w| w.is_zero())
                && let Err(e) = self.snapshot().await.inspect(|_| {
                    snapshot_busy.end();
                })
            {
                if e.is_busy() {
                    // Another connection holds the write lock (a long write, or an
                    // application's TRUNCATE checkpoint waiting for readers): routine, said
                    // at warn level once if it lasts.
                    if let Some(for_s) = snapshot_busy.busy() {
                        warn!(db = %self.db.path().display(), replica = %self.opts.name, for_s, "scheduled snapshot delayed: the database stays locked by another connection; look for a long write transaction");
                    } else {
                        debug!(db = %self.db.path().display(), replica = %self.opts.name, error = %e, "scheduled snapshot waits for the write lock; trying again");
                    }
                } else {
                    error!(db = %self.db.path().display(), replica = %self.opts.name, error = %e, "scheduled snapshot failed");
                }
            }
            if let Some(at) = next_retention
                && Instant::now() >= at
            {
                if let Err(e) = self.enforce_retention().await {
                    error!(db = %self.db.path().display(), replica = %self.opts.name, error = %e, "retention failed; will try again");
                }
                next_retention = self.retention_interval().map(|iv| Instant::now() + iv);
            }
            // Wait for something to do.
            if self.up_to_date() && failures == 0 {
                let snap_wait = self.snapshot_due();
                tokio::select! {
                    _ = shutdown.changed() => return,
                    r = changes.changed() => {
                        if r.is_err() {
                            return;
                        }
                        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
                        if st.behind_since.is_none() {
                            st.behind_since = Some(Instant::now());
                        }
                    }
                    _ = self.wake.notified() => {}
                    // Scheduled snapshots and retention run at the top of the loop.
                    _ = sleep_opt(snap_wait) => continue,
                    _ = sleep_opt(next_retention.map(|at| at.saturating_duration_since(Instant::now()))) => continue,
                }
            }
            // Respect sync-interval between uploads (and back off after failures).
            let urgent = self.urgent.swap(false, std::sync::atomic::Ordering::SeqCst);
            let wait = if failures > 0 {
                backoff(self.opts.sync_interval, failures)
            } else if urgent {
                Duration::ZERO
            } else {
                last_sync
                    .map(|t| self.opts.sync_interval.saturating_sub(t.elapsed()))
                    .unwrap_or_default()
            };
            if !wait.is_zero() {
                tokio::select! {
                    _ = shutdown.changed() => return,
                    _ = tokio::time::sleep(wait) => {}
                    // A durability wait wants it now (not while backing off from errors).
                    _ = self.wake.notified(), if failures == 0 => {}
                }
            }
            last_sync = Some(Instant::now());
            self.state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .next_upload = last_sync.map(|t| t + self.opts.sync_interval);
            // Shutdown interrupts a sync stalled on the store; the engine's final sync
            // tries again, under the store's per-operation deadlines.
            let res = tokio::select! {
                r = self.sync() => r,
                _ = shutdown.changed() => return,
            };
            match res {
                Ok(()) => {
                    if failures > 0 {
                        info!(db = %self.db.path().display(), replica = %self.opts.name, "replica sync recovered");
                    }
                    failures = 0;
                    last_error = None;
                }
                Err(Error::NoGeneration) => {
                    failures = 0;
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let msg = e.to_string();
                    // Log a persistent error once, not once per retry. Messages carry
                    // timings and counters ("in 366µs"), so compare them without digits.
                    let shape = error_shape(&msg);
                    if last_error.as_deref() != Some(shape.as_str()) {
                        error!(db = %self.db.path().display(), replica = %self.opts.name, error = %msg, "replica sync failed; retrying");
                    } else {
                        debug!(replica = %self.opts.name, error = %msg, attempt = failures, "replica sync failed again");
                    }
                    last_error = Some(shape);
                }
            }
            if failures > 0 && failures.is_multiple_of(20) {
                warn!(db = %self.db.path().display(), replica = %self.opts.name, attempts = failures, "replica still failing; the shadow wal is kept until it recovers");
            }
        }
    }
}

/// An error message with every number (and a duration unit right after it) replaced by
/// `#`, so that the same failure with another timing or count compares equal.
pub(crate) fn error_shape(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut in_number = false;
    for c in msg.chars() {
        let continues = in_number && (c == '.' || "µnmsh".contains(c));
        if c.is_ascii_digit() || continues {
            if !in_number {
                out.push('#');
            }
            in_number = true;
        } else {
            in_number = false;
            out.push(c);
        }
    }
    out
}

async fn sleep_opt(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// Exponential backoff from the sync interval to 30 s, with jitter.
fn backoff(base: Duration, failures: u32) -> Duration {
    let base = base.max(Duration::from_millis(100));
    let exp = base.saturating_mul(1u32 << failures.min(10).saturating_sub(1));
    let capped = exp.min(Duration::from_secs(30));
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    // Up to +25% jitter so many replicas do not retry in lockstep.
    capped + capped.mul_f64(f64::from(nanos % 1000) / 4000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_shape_ignores_timings() {
        assert_eq!(
            error_shape("put x: 409 Conflict in 366.622µs"),
            error_shape("put x: 409 Conflict in 1.5ms")
        );
        assert_ne!(
            error_shape("put x: timeout"),
            error_shape("put x: 403 Forbidden")
        );
        assert!(backoff(Duration::from_secs(1), 1) >= Duration::from_secs(1));
        assert!(backoff(Duration::from_secs(1), 30) <= Duration::from_secs(38));
    }
}
