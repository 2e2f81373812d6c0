//! Restore: rebuild a database from a replica's snapshot and WAL segments, to the latest
//! state or to a point in time (by WAL index or by storage timestamp).
//!
//! Two steps, usable separately:
//! - [`plan`] lists every replica and chooses replica, generation, snapshot and segments
//!   exactly as Litestream v0.3.13 does (spec §3); the choice inside one generation is the
//!   pure [`plan_generation`].
//! - [`apply`] executes a [`Plan`] into a new file.
//!
//! Where walship does better than Litestream (spec §9, items 1-7):
//! - the database is built in `.<name>.walship-restore-<random>.tmp` beside the output and
//!   appears at the output only complete and verified; any error or cancellation removes
//!   the temporary file and its `-wal`/`-shm`; no SQLite side files are left next to the
//!   restored database, and an output that appears meanwhile is never replaced;
//! - WAL frames are applied to pages directly, after checking segment contiguity, the WAL
//!   header, salts and the cumulative checksum chain across segments: a gap, an overlap that
//!   does not repeat the same frames, or a corrupt frame is an [`Error::Corrupt`] naming the
//!   object, never a silent truncation. A segment that repeats frames already read (Litestream
//!   v0.3.13 writes one when its final sync at shutdown races a regular one) is read past,
//!   and the segments after it still apply, where Litestream's own restore stops at it;
//! - the result must pass `PRAGMA integrity_check`;
//! - `index` beyond the last index is an error (Litestream restores everything); segments
//!   below the snapshot's index do not cut a timestamp walk short; segment downloads are
//!   retried on transient errors.
//!
//! Replica and generation selection is Litestream's, sharp edges included: a timestamp
//! after a generation's last write (e.g. "now" on an idle database) matches nothing
//! ([`Error::NoMatchingBackups`]), as `litestream restore` answers (spec §3.1, §9.2).
//!
//! As with Litestream, the restored file keeps journal mode WAL in its header (bytes 18-19)
//! and any `_litestream_*` tables the snapshot holds.
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;

use crate::backend::{self, ReplicaClient, SnapshotInfo, WalSegmentInfo};
use crate::error::{BackendErrorKind, Error, Result};
use crate::layout;
use crate::pos::Generation;

pub(crate) mod output;
pub(crate) mod replay;
mod segments;
mod select;

use segments::apply_segments;

pub use select::plan_generation;

/// One replica restore may read from.
#[derive(Debug, Clone)]
pub struct ReplicaSource {
    /// The replica's name (from the config, or the backend type in URL mode).
    pub name: String,
    /// Its storage.
    pub client: Arc<dyn ReplicaClient>,
}

/// What to restore.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Restore only from this generation; `None`: the generation with the latest write.
    pub generation: Option<Generation>,
    /// Restore through the end of this WAL index (inclusive). Exclusive with `timestamp`.
    pub index: Option<u32>,
    /// Point in time: apply the segments whose storage timestamp is `<=` this. Exclusive
    /// with `index`.
    pub timestamp: Option<SystemTime>,
    /// Segments downloaded concurrently; 0 means 8 (Litestream's default).
    pub parallelism: usize,
}

impl RestoreOptions {
    fn parallelism(&self) -> usize {
        if self.parallelism == 0 {
            8
        } else {
            self.parallelism
        }
    }
}

/// What [`apply`] will do: one replica, one generation, a snapshot and the segments to
/// apply on top of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Name of the [`ReplicaSource`] to read from.
    pub replica: String,
    /// The generation restored.
    pub generation: Generation,
    /// The snapshot the restore starts from.
    pub snapshot: SnapshotInfo,
    /// Segments to apply, in (index, offset) order; empty for a snapshot-only restore.
    pub segments: Vec<WalSegmentInfo>,
    /// The generation's last write: the latest storage timestamp of its snapshots and
    /// segments (what replica and generation selection compares).
    pub end: SystemTime,
}

/// Restore progress, reported to the caller's callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// The snapshot was written to the temporary file (`bytes` decompressed).
    Snapshot {
        /// Decompressed bytes written.
        bytes: u64,
    },
    /// `done` of `total` segments are applied.
    Segment {
        /// Segments applied so far.
        done: usize,
        /// Segments in the plan.
        total: usize,
    },
    /// The restored database is being checked with `PRAGMA integrity_check`.
    Verifying,
    /// The database is at the output path.
    Done,
}

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreSummary {
    /// The replica restored from.
    pub plan_replica: String,
    /// The generation restored.
    pub generation: Generation,
    /// The WAL index of the snapshot the restore started from.
    pub snapshot_index: u32,
    /// How many WAL segments were applied on top of it.
    pub segments_applied: usize,
    /// The last WAL index applied (the snapshot's index when no segment was applied).
    pub last_index: u32,
    /// Size of the restored database file.
    pub db_bytes: u64,
    /// Pages written from WAL frames: the newest version of each page is buffered and
    /// written once per buffer flush (8 MiB of pages), so this is at most the number of
    /// frames applied and usually far fewer.
    pub pages_written: u64,
}

/// One generation's listings and bounds, while choosing.
struct Candidate {
    replica: usize,
    generation: Generation,
    end: SystemTime,
    snapshots: Vec<SnapshotInfo>,
    segments: Vec<WalSegmentInfo>,
}

/// Lists every replica and chooses what to restore (spec §3.1), then the snapshot and
/// segments inside the chosen generation ([`plan_generation`]).
///
/// Per replica, generations are filtered by `opts.generation`, and with `opts.timestamp`
/// those whose time bounds (first and last write, over snapshots and segments) do not
/// contain the timestamp are skipped; the generation with the latest last write wins
/// (strictly; ties keep the first listed). Across replicas the same rule applies in the
/// given order. This is exactly Litestream's choice, so a timestamp after the last write
/// matches nothing.
///
/// Errors: [`Error::Config`] for `index` with `timestamp`; [`Error::NoMatchingBackups`] if
/// no generation qualifies; then [`plan_generation`]'s errors, with object paths prefixed by
/// the replica's location.
pub async fn plan(replicas: &[ReplicaSource], opts: &RestoreOptions) -> Result<Plan> {
    select::check_options(opts)?;
    let mut best: Option<Candidate> = None;
    for (i, r) in replicas.iter().enumerate() {
        let client = &*r.client;
        let mut replica_best: Option<Candidate> = None;
        for generation in backend::generations(client).await? {
            if opts.generation.is_some_and(|g| g != generation) {
                continue;
            }
            let snapshots = backend::snapshots(client, generation).await?;
            let segments = backend::wal_segments(client, generation).await?;
            let Some((start, end)) = select::time_bounds(&snapshots, &segments) else {
                continue;
            };
            if opts.timestamp.is_some_and(|ts| ts < start || ts > end) {
                continue;
            }
            if replica_best.as_ref().is_none_or(|b| end > b.end) {
                replica_best = Some(Candidate {
                    replica: i,
                    generation,
                    end,
                    snapshots,
                    segments,
                });
            }
        }
        if let Some(c) = replica_best
            && best.as_ref().is_none_or(|b| c.end > b.end)
        {
            best = Some(c);
        }
    }
    let Some(c) = best else {
        return Err(Error::NoMatchingBackups);
    };
    let source = &replicas[c.replica];
    let (snapshot, segments) =
        plan_generation(&c.snapshots, &c.segments, opts).map_err(|e| match e {
            Error::Corrupt { path, reason } => Error::Corrupt {
                path: object_name(&*source.client, &path),
                reason,
            },
            e => e,
        })?;
    Ok(Plan {
        replica: source.name.clone(),
        generation: c.generation,
        snapshot,
        segments,
        end: c.end,
    })
}

/// How an object is named in errors: the replica's location and the layout path.
pub(crate) fn object_name(client: &dyn ReplicaClient, path: &str) -> String {
    format!("{}/{}", client.location(), path)
}

/// Checks that a plan is one [`plan_generation`] could have made: one generation, segments
/// sorted by (index, offset) and covering every index from the snapshot's.
fn check_plan(plan: &Plan) -> Result<()> {
    let invalid = |what: String| Error::Config(format!("invalid restore plan: {what}"));
    if plan.snapshot.generation != plan.generation {
        return Err(invalid(format!(
            "snapshot of generation {} in a plan for {}",
            plan.snapshot.generation, plan.generation
        )));
    }
    if let Some(s) = plan
        .segments
        .iter()
        .find(|s| s.generation != plan.generation)
    {
        return Err(invalid(format!(
            "segment {} is not in generation {}",
            s.path(),
            plan.generation
        )));
    }
    if let Some(w) = plan
        .segments
        .windows(2)
        .find(|w| (w[0].index, w[0].offset) >= (w[1].index, w[1].offset))
    {
        return Err(invalid(format!(
            "segment {} after {}",
            w[1].path(),
            w[0].path()
        )));
    }
    select::check_index_chain(plan.generation, plan.snapshot.index, &plan.segments).map_err(|e| {
        match e {
            Error::Corrupt { reason, .. } => invalid(reason),
            e => e,
        }
    })
}

/// Attempts for one download; transient backend errors are retried (Litestream does not
/// retry and fails long restores on one network error).
const DOWNLOAD_ATTEMPTS: u32 = 3;

/// Backoff before download attempt `attempt + 1`.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(200 * u64::from(attempt * attempt))
}

/// True for the errors worth another download attempt: transient store trouble, or local
/// I/O. A refusal (403, a read-only or full store) or a bad answer fails at once.
fn retryable(e: &Error) -> bool {
    matches!(
        e,
        Error::Backend {
            kind: BackendErrorKind::Transient,
            ..
        } | Error::Io { .. }
    )
}

/// Downloads and decompresses a WAL segment whole (segments are small; see
/// [`backend::read_decompressed_sized`]), retrying transient errors.
pub(crate) async fn download(
    client: &dyn ReplicaClient,
    path: &str,
    listed: u64,
) -> Result<Vec<u8>> {
    let mut attempt = 1;
    loop {
        match backend::read_decompressed_sized(client, path, listed).await {
            Err(e) if retryable(&e) && attempt < DOWNLOAD_ATTEMPTS => {
                tracing::warn!(path, attempt, error = %e, "download failed, retrying");
                tokio::time::sleep(backoff(attempt)).await;
                attempt += 1;
            }
            res => return res,
        }
    }
}

/// Streams the snapshot into `file` (the new, empty temporary database): download,
/// decompression and the write run together through bounded buffers, so memory does not
/// grow with the database. Transient errors restart the snapshot from the beginning.
async fn download_snapshot(
    client: &Arc<dyn ReplicaClient>,
    snap: &SnapshotInfo,
    file: std::fs::File,
    tmp: &Path,
) -> Result<(output::DbWriter, u64)> {
    let path = snap.path();
    let object = object_name(&**client, &path);
    let backend = client.type_name();
    let mut file = file;
    let mut attempt = 1;
    // Set when this future is dropped, so the blocking copy stops too.
    struct Cancel(Arc<std::sync::atomic::AtomicBool>);
    impl Drop for Cancel {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
    let cancel = Cancel(Arc::new(std::sync::atomic::AtomicBool::new(false)));
    loop {
        let res = match backend::open_checked(&**client, &path, snap.size).await {
            Err(e) => Err(e),
            Ok(stream) => {
                let tmp2 = tmp.to_path_buf();
                let header_bound = snap.size == 0;
                let cancelled = cancel.0.clone();
                let body = Body {
                    stream,
                    limit: backend::MAX_DECOMPRESSED,
                    backend,
                    object: object.clone(),
                };
                let (f, res) = body
                    .decompress(tmp, file, move |f, r, object, read_err| {
                        output::write_snapshot(
                            f,
                            &tmp2,
                            r,
                            object,
                            header_bound,
                            read_err,
                            &cancelled,
                        )
                    })
                    .await?;
                file = f;
                res
            }
        };
        match res {
            Ok((header, bytes)) => {
                let writer = output::DbWriter::new(file, tmp.to_path_buf(), header.page_size);
                return Ok((writer, bytes));
            }
            Err(e) if retryable(&e) && attempt < DOWNLOAD_ATTEMPTS => {
                tracing::warn!(path, attempt, error = %e, "snapshot download failed, retrying");
                tokio::time::sleep(backoff(attempt)).await;
                attempt += 1;
                use std::io::Seek;
                file.set_len(0)
                    .and_then(|_| file.rewind())
                    .map_err(Error::io("truncate", tmp))?;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Runs `f` on the blocking pool; `path` names the file in the (unlikely) worker failure.
pub(crate) async fn blocking<T: Send + 'static>(
    path: &Path,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    worker(path, f).await?
}

/// Runs `f` on the blocking pool and returns what it returns; the only error is the
/// worker's own failure (a panic), reported against `path`.
pub(crate) async fn worker<T: Send + 'static>(
    path: &Path,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("restore worker for {}: {e}", path.display())))
}

/// An opened compressed object (snapshot or WAL segment) on its way to the temporary
/// database.
struct Body {
    stream: backend::ObjectStream,
    /// Most bytes the body may decompress to.
    limit: u64,
    backend: &'static str,
    /// The object's full name, for errors.
    object: String,
}

impl Body {
    /// Runs `f` on the blocking pool over the decompressed body, with `state` (the file or
    /// writer `f` writes to) and the mapping of read errors to the store's or a corruption
    /// error. `state` comes back whatever `f` returned, so the caller can retry with it.
    /// `tmp` names the temporary database in a worker failure.
    async fn decompress<S, T>(
        self,
        tmp: &Path,
        state: S,
        f: impl FnOnce(
            &mut S,
            &mut dyn std::io::Read,
            &str,
            &dyn Fn(std::io::Error) -> Error,
        ) -> Result<T>
        + Send
        + 'static,
    ) -> Result<(S, Result<T>)>
    where
        S: Send + 'static,
        T: Send + 'static,
    {
        let Body {
            stream,
            limit,
            backend,
            object,
        } = self;
        let reader = backend::blocking_reader(stream);
        worker(tmp, move || {
            let mut state = state;
            let mut r = crate::compress::FrameReader::new(reader, limit);
            let read_err = |e| backend::read_error(e, backend, &object);
            let res = f(&mut state, &mut r, &object, &read_err);
            (state, res)
        })
        .await
    }
}

/// Executes `plan` into `output`, which must not exist ([`Error::OutputExists`]).
///
/// The database is built in a temporary file beside `output`: snapshot, then each index's
/// segments (downloaded `opts.parallelism` at a time, applied in order after validation),
/// fsync, `PRAGMA integrity_check`, and a no-clobber move to `output` followed by a
/// directory fsync. On any error, or if the future is dropped, the temporary file and its
/// SQLite side files are removed and nothing is left at `output`. Only `opts.parallelism`
/// is used from `opts`; the plan fixes everything else.
pub async fn apply(
    replicas: &[ReplicaSource],
    plan: &Plan,
    output: &Path,
    opts: &RestoreOptions,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<RestoreSummary> {
    Ok(apply_keep(replicas, plan, output, opts, progress).await?.0)
}

/// [`apply`], also returning the replay state of the last WAL index applied (`None` for
/// a snapshot-only plan): where a follower continues.
pub(crate) async fn apply_keep(
    replicas: &[ReplicaSource],
    plan: &Plan,
    output: &Path,
    opts: &RestoreOptions,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<(RestoreSummary, Option<replay::IndexReplay>)> {
    let source = replicas
        .iter()
        .find(|r| r.name == plan.replica)
        .ok_or_else(|| {
            Error::Config(format!(
                "replica {:?} of the restore plan is not configured",
                plan.replica
            ))
        })?;
    check_plan(plan)?;
    let client: Arc<dyn ReplicaClient> = source.client.clone();
    let replica = source.name.as_str();
    let generation = plan.generation;
    let started = Instant::now();

    let out = output.to_path_buf();
    let (mut guard, file) = blocking(output, move || output::create_temp(&out)).await?;
    let tmp = guard.path().to_path_buf();

    // Snapshot.
    tracing::info!(
        replica,
        generation = %generation,
        index = plan.snapshot.index,
        path = %tmp.display(),
        output = %output.display(),
        "restoring snapshot"
    );
    let (mut writer, snapshot_bytes) =
        download_snapshot(&client, &plan.snapshot, file, &tmp).await?;
    progress(Progress::Snapshot {
        bytes: snapshot_bytes,
    });

    // WAL.
    let total = plan.segments.len();
    if total == 0 {
        tracing::info!(replica, generation = %generation, "snapshot only, finalizing database");
    } else {
        let (first, last) = (&plan.segments[0], &plan.segments[total - 1]);
        tracing::info!(
            replica,
            generation = %generation,
            index_min = first.index,
            index_max = last.index,
            segments = total,
            parallelism = opts.parallelism(),
            "restoring wal files"
        );
        writer = apply_segments(
            &client,
            replica,
            plan,
            writer,
            &tmp,
            opts.parallelism(),
            progress,
        )
        .await?;
    }
    let ((db_bytes, pages_written), last_replay, file) = blocking(&tmp, move || {
        let sizes = writer.write_out()?;
        Ok((sizes, writer.last_replay().cloned(), writer.into_file()))
    })
    .await?;

    // Verify while the file is fsynced (the check reads from the page cache, the fsync
    // waits on the disk: together they take the longer of the two), then install.
    progress(Progress::Verifying);
    let what = object_name(&*client, &layout::generation_dir(generation));
    let (tmp2, tmp3) = (tmp.clone(), tmp.clone());
    let (synced, checked) = tokio::join!(
        blocking(&tmp, move || file
            .sync_all()
            .map_err(Error::io("fsync", &tmp3))),
        blocking(&tmp, move || output::verify(&tmp2, &what)),
    );
    synced?;
    checked?;
    tracing::info!(replica, generation = %generation, output = %output.display(), "renaming database from temporary location");
    let (tmp2, out) = (tmp.clone(), output.to_path_buf());
    blocking(&tmp, move || output::install(&tmp2, &out)).await?;
    guard.disarm();
    progress(Progress::Done);

    let summary = RestoreSummary {
        plan_replica: plan.replica.clone(),
        generation,
        snapshot_index: plan.snapshot.index,
        segments_applied: total,
        last_index: plan
            .segments
            .last()
            .map_or(plan.snapshot.index, |s| s.index),
        db_bytes,
        pages_written,
    };
    // The caller says "restore complete" to the user (the command line does, with the
    // output path); this line has the details.
    tracing::debug!(
        replica,
        generation = %generation,
        snapshot_index = summary.snapshot_index,
        last_index = summary.last_index,
        segments = total,
        db_bytes,
        pages_written,
        elapsed = ?started.elapsed(),
        "restore complete"
    );
    Ok((summary, last_replay))
}

/// [`plan`] then [`apply`].
///
/// If an object listed by the plan has disappeared by the time it is downloaded (a restore
/// racing retention, which deletes old snapshots and segments), the restore is planned and
/// applied once more from fresh listings.
pub async fn restore(
    replicas: &[ReplicaSource],
    output: &Path,
    opts: &RestoreOptions,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<RestoreSummary> {
    let p = plan(replicas, opts).await?;
    match apply(replicas, &p, output, opts, progress).await {
        Err(Error::NotFound(what)) => {
            tracing::warn!(object = %what, "object vanished during restore (retention?), planning again");
            let p2 = plan(replicas, opts).await?;
            if p2 == p {
                return Err(Error::NotFound(what));
            }
            apply(replicas, &p2, output, opts, progress).await
        }
        res => res,
    }
}

#[cfg(test)]
mod tests;
