//! A replica's upkeep besides shipping: retention (what may go, and deleting it) and
//! validation (restore the replica at a frozen position and compare it with the database).
use super::*;

impl Replica {
    /// Applies retention once (see [`crate::retention`]): deletes generations, snapshots
    /// and WAL segments that no restore inside the window needs, taking a snapshot first if
    /// the current generation has none inside the window.
    pub async fn enforce_retention(&self) -> Result<crate::retention::RetentionPlan> {
        let Some(keep) = self.opts.retention else {
            return Ok(Default::default());
        };
        // Retention deletes: only the lease's holder may.
        self.ensure_lease().await?;
        let cutoff = SystemTime::now()
            .checked_sub(keep)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let current = self.db.pos().map(|p| p.generation);
        let client = self.client.as_ref();
        let mut plan =
            crate::retention::plan(&crate::retention::list_all(client).await?, current, cutoff);
        if plan.snapshot_due && current.is_some() {
            self.snapshot().await?;
            plan =
                crate::retention::plan(&crate::retention::list_all(client).await?, current, cutoff);
        }
        crate::fault::point("retention.before_delete");
        crate::retention::execute(client, &plan).await?;
        if !(plan.generations.is_empty() && plan.snapshots.is_empty() && plan.segments.is_empty()) {
            info!(
                db = %self.db.path().display(),
                replica = %self.opts.name,
                generations = plan.generations.len(),
                snapshots = plan.snapshots.len(),
                wal_segments = plan.segments.len(),
                "retention deleted"
            );
        }
        Ok(plan)
    }

    /// Validates the replica once (see `crate::validate`): freezes the database at its
    /// current position, uploads up to exactly that position, restores the replica there
    /// into a temporary directory and compares the pages. On a mismatch (or a replica that
    /// no longer restores) it logs an error naming the database, replica, generation and
    /// position, counts `litestream_replica_validation_total{status="error"}`, and starts
    /// a new generation so the next sync writes a fresh snapshot. Other errors (the store
    /// is unreachable, the database moved to a new generation meanwhile) are returned and
    /// also counted as `error`, without a new generation.
    pub async fn validate(&self) -> Result<crate::validate::Outcome> {
        let r = self.validate_inner().await;
        match &r {
            Ok(crate::validate::Outcome::Skipped { reason }) => {
                debug!(db = %self.db.path().display(), replica = %self.opts.name, reason = %reason, "validator: skipped; trying again soon");
            }
            Ok(crate::validate::Outcome::Ok { pos, pages }) => {
                self.metrics.validation_ok.inc();
                info!(db = %self.db.path().display(), replica = %self.opts.name, generation = %pos.generation, position = %pos, pages, "validator: status=ok");
            }
            Ok(crate::validate::Outcome::Mismatch { pos, detail }) => {
                self.metrics.validation_error.inc();
                error!(
                    db = %self.db.path().display(),
                    replica = %self.opts.name,
                    location = %self.client.location(),
                    generation = %pos.generation,
                    position = %pos,
                    detail = %detail,
                    "validator: status=mismatch: the replica does not restore to the database; starting a new generation"
                );
                self.emit(Event::ReplicaError {
                    db: self.db.path().to_path_buf(),
                    replica: self.opts.name.clone(),
                    message: format!("validation mismatch at {pos}: {detail}"),
                });
                let db = self.db.clone();
                let reason = format!("replica {} failed validation at {pos}", self.opts.name);
                tokio::task::spawn_blocking(move || db.force_new_generation(&reason))
                    .await
                    .map_err(Error::task_failed("new generation"))??;
                self.set_pos(None);
            }
            Err(e) => {
                self.metrics.validation_error.inc();
                warn!(db = %self.db.path().display(), replica = %self.opts.name, error = %e, "validator: could not validate; will try again next interval");
            }
        }
        r
    }

    pub(super) async fn validate_inner(&self) -> Result<crate::validate::Outcome> {
        // Two copies of the database go here: beside it in the meta directory (where a
        // snapshot's temporary file goes too), not in $TMPDIR, often a small RAM-backed
        // tmpfs. A crash leaves the directory behind; the next start removes it.
        let meta = self.db.meta_dir();
        std::fs::create_dir_all(meta).map_err(Error::io("create directory", meta))?;
        let tmp = tempfile::Builder::new()
            .prefix(".validate-")
            .suffix(".tmp")
            .tempdir_in(meta)
            .map_err(Error::io("create temporary directory in", meta))?;
        let image = tmp.path().join("db");
        let restored = tmp.path().join("replica");
        let db = self.db.clone();
        let img = image.clone();
        let cap = CapGuard(self);
        cap.set(ValidationCap::Hold);
        let pos = tokio::task::spawn_blocking(move || {
            let (pos, reader) = db.validation_reader()?;
            crate::validate::write_image(&reader, &img)?;
            Ok::<_, Error>(pos)
        })
        .await
        .map_err(Error::task_failed("validation"))??;
        // Bring the replica exactly to `pos`: the run loop uploads up to it and no further
        // while the cap is set. Then it goes on as usual while the restore runs.
        cap.set(ValidationCap::At(pos));
        let wait = (self.opts.sync_interval * 3).max(Duration::from_secs(10));
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let progressed = self.db.progress().notified();
            tokio::pin!(progressed);
            progressed.as_mut().enable();
            match self.pos() {
                Some(p) if p == pos => break,
                Some(p) if p > pos => {
                    return Ok(crate::validate::Outcome::Skipped {
                        reason: format!("the replica passed the frozen position {pos} (at {p})"),
                    });
                }
                _ if self.db.pos().is_none_or(|d| d.generation != pos.generation) => {
                    return Ok(crate::validate::Outcome::Skipped {
                        reason: "the database started a new generation".into(),
                    });
                }
                _ => {}
            }
            self.wake();
            if tokio::time::timeout_at(deadline, progressed).await.is_err() {
                return Err(Error::Timeout(format!(
                    "validation: the replica did not reach {pos} within {wait:?} (at {})",
                    self.pos()
                        .map(|p| p.to_string())
                        .unwrap_or_else(|| "an unknown position".into())
                )));
            }
        }
        drop(cap);
        let client = self.client.as_ref();
        let snaps = backend::snapshots(client, pos.generation).await?;
        let segs = backend::wal_segments(client, pos.generation).await?;
        let plan = crate::validate::plan_at(&self.opts.name, pos, &snaps, &segs)?;
        let sources = [crate::restore::ReplicaSource {
            name: self.opts.name.clone(),
            client: self.client.clone(),
        }];
        let opts = crate::restore::RestoreOptions::default();
        match crate::restore::apply(&sources, &plan, &restored, &opts, &|_| {}).await {
            Ok(_) => {}
            // The replica's own objects do not restore: as bad as a mismatch.
            Err(e @ Error::Corrupt { .. }) | Err(e @ Error::Sqlite { .. }) => {
                return Ok(crate::validate::Outcome::Mismatch {
                    pos,
                    detail: format!("restore failed: {e}"),
                });
            }
            Err(e) => return Err(e),
        }
        let (pages, diff) =
            tokio::task::spawn_blocking(move || crate::validate::compare_files(&image, &restored))
                .await
                .map_err(Error::task_failed("compare"))??;
        Ok(match diff {
            None => crate::validate::Outcome::Ok { pos, pages },
            Some(detail) => crate::validate::Outcome::Mismatch { pos, detail },
        })
    }

    /// Validates every `validation-interval` until `shutdown` turns true (see
    /// [`Replica::validate`]); returns at once when validation is off. Runs beside
    /// [`Replica::run`], which keeps uploading while a restore is compared.
    pub async fn run_validation(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let Some(iv) = self.opts.validation_interval else {
            return;
        };
        let iv = iv.max(Duration::from_millis(100));
        let mut wait = iv;
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            if *shutdown.borrow() {
                return;
            }
            wait = iv;
            if self.db.pos().is_none() {
                continue;
            }
            // Errors are logged and counted inside.
            let r = tokio::select! {
                r = self.validate() => r,
                _ = shutdown.changed() => return,
            };
            if let Ok(crate::validate::Outcome::Skipped { .. }) = r {
                wait = iv.min(Duration::from_secs(1));
            }
        }
    }
}
