//! Follow mode: keep a local copy of a replica's latest state that SQLite programs read
//! while walship applies each change (`walship restore -f`, and [`Follower`] in-process).
//!
//! The first start restores the latest state (with every check a restore makes) into the
//! copy. After that, each poll lists the followed generation's WAL segments once and
//! downloads only the segments past the copy's position; their pages (the newest version
//! of each) are written into the copy in **one SQLite write transaction** through the
//! `sqlite_dbpage` virtual table, with the database size set by the last commit. The copy
//! stays in WAL mode, so readers with the copy open (the sqlite3 shell, Python, an
//! application's long-lived connection) keep reading the state they started on and see
//! the next one at their next read transaction: never a mix, never an error but a short
//! `SQLITE_BUSY` that a busy timeout absorbs.
//!
//! What a follower meets:
//! - **a new generation** on the primary (or a gap in the segments, e.g. retention removed
//!   what the follower needed while it was down, or a catch-up that would download more
//!   than the snapshot): the latest state is restored into a temporary file beside the
//!   copy and the copy takes it in one transaction, writing only the pages that differ;
//! - **an unreachable replica**: the copy keeps serving its last state; the follower says so
//!   once and retries with backoff (up to a minute between tries);
//! - **someone writing to the copy**: detected (SQLite's `data_version` while running, the
//!   content hash at start) and refused with an error that says what to do;
//! - **kill -9**: SQLite discards the unfinished transaction. Before each commit the
//!   follower records, in `<copy>-walship-follow.json`, the position and content hash the
//!   copy is about to have (beside the last committed ones), so the next start finds which
//!   of the two the copy holds and resumes there without downloading anything again.
//!
//! A file replica is watched with inotify (no polling when idle but a safety check every
//! minute); other replicas are listed every interval (one listing of the followed
//! generation's WAL, plus one of the generations when that showed nothing new), and nothing
//! is downloaded when nothing changed.
mod apply;
mod copy;
mod status;
mod watch;

use std::collections::BTreeSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use futures::StreamExt;

use crate::backend::{self, WalSegmentInfo};
use crate::error::{Error, Result};
use crate::pos::Generation;
use crate::restore::{
    Plan, ReplicaSource, RestoreOptions, apply_keep, blocking, download, object_name, plan, worker,
};
use apply::{
    Next, apply_batch, classify_copy_error, clean_temp_files, next_segments,
    remove_with_side_files, temp_beside,
};
use copy::Copy;
pub use status::{FollowOptions, FollowPosition, FollowStatus, recorded_status, state_path};
use status::{Saved, StateFile, read_state, write_state};

/// An in-process read replica: keeps a local copy of a replica's latest state while the
/// application reads it with any SQLite connection.
///
/// ```no_run
/// # async fn demo(replicas: Vec<walship::restore::ReplicaSource>) -> walship::Result<()> {
/// use walship::follow::{FollowOptions, Follower};
/// let follower = Follower::start(replicas, "/data/copy.db".into(), FollowOptions::default());
/// let mut updates = follower.subscribe();
/// updates.changed().await.ok(); // the copy exists once the first update is in
/// let reader = rusqlite::Connection::open("/data/copy.db").unwrap();
/// // ... read; each read transaction sees one committed state of the primary ...
/// follower.shutdown().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Follower {
    status: tokio::sync::watch::Receiver<FollowStatus>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<()>>>,
}

impl Follower {
    /// Starts following on the current tokio runtime. `copy` is created by the first
    /// restore, or, if it exists with its `-walship-follow.json`, resumed. Errors that
    /// stop the follower (a copy written by another program, a copy that is not a
    /// follower's) come from [`Follower::shutdown`] or [`Follower::wait`].
    pub fn start(replicas: Vec<ReplicaSource>, copy: PathBuf, opts: FollowOptions) -> Follower {
        let (tx, rx) = tokio::sync::watch::channel(FollowStatus::default());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let stop = async move {
                let _ = stop_rx.await;
            };
            run(&replicas, &copy, &opts, stop, &|s: &FollowStatus| {
                // A look that found nothing new changes only `checked_at`: kept for
                // `status()`, but subscribers are not woken every interval for it.
                tx.send_if_modified(|cur| {
                    let mut old = cur.clone();
                    old.checked_at = s.checked_at;
                    *cur = s.clone();
                    old != *s
                });
            })
            .await
        });
        Follower {
            status: rx,
            stop: Some(stop_tx),
            task: Some(task),
        }
    }

    /// The latest status.
    pub fn status(&self) -> FollowStatus {
        self.status.borrow().clone()
    }

    /// A receiver that is told of each status change (every update of the copy, every
    /// error; not of a look at the replica that found nothing new).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<FollowStatus> {
        self.status.clone()
    }

    /// Stops following (an update in progress finishes or is rolled back) and returns the
    /// follower's error, if it stopped on one.
    pub async fn shutdown(mut self) -> Result<()> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.wait().await
    }

    /// Waits until the follower stops: on its own (on an error), or after
    /// [`Follower::shutdown`]. Cancel-safe (it can be a `select!` branch); once it has
    /// returned, later calls return `Ok(())` at once.
    pub async fn wait(&mut self) -> Result<()> {
        let Some(task) = self.task.as_mut() else {
            return Ok(());
        };
        let r = task.await;
        self.task = None;
        match r {
            Ok(r) => r,
            Err(e) => Err(Error::task_failed("follower")(e)),
        }
    }
}

/// Longest wait between tries while the replica cannot be read.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// With inotify on a file replica, it is still listed this often.
const WATCHED_SAFETY_POLL: Duration = Duration::from_secs(60);
/// While the replica holds generations other than the followed one and nothing new comes
/// in the followed one, all generations are weighed again this often.
const RECHECK_OTHERS: Duration = Duration::from_secs(5);
/// Most decompressed bytes of segments applied in one transaction; a longer catch-up is
/// applied in several (each ends on a commit of the primary).
const BATCH_BYTES: usize = 64 << 20;
/// A catch-up whose segments add up to more than this (compressed) is compared with a
/// full restore from the latest snapshot, and the cheaper one is taken.
const COMPARE_RESTORE_ABOVE: u64 = 8 << 20;

async fn run(
    replicas: &[ReplicaSource],
    output: &Path,
    opts: &FollowOptions,
    stop: impl Future<Output = ()>,
    on_status: &(dyn Fn(&FollowStatus) + Send + Sync),
) -> Result<()> {
    if replicas.is_empty() {
        return Err(Error::Config("follow: no replica to follow".into()));
    }
    let output = std::path::absolute(output).unwrap_or_else(|_| output.to_path_buf());
    let mut f = Follow {
        replicas: replicas.to_vec(),
        output: output.clone(),
        opts: opts.clone(),
        at: None,
        status: FollowStatus::default(),
        known_generations: None,
        last_plan: None,
        recheck_owed: false,
        failures: 0,
    };
    f.resume().await?;
    if f.at.is_some() {
        on_status(&f.status);
    }
    let mut wake = watch_file_replicas(replicas);
    tokio::pin!(stop);
    loop {
        let before = f.status.clone();
        let more = match f.step().await {
            Ok(more) => {
                let recovered = f.failures > 0;
                f.failures = 0;
                f.status.last_error = None;
                if recovered {
                    tracing::info!(copy = %output.display(), "follow: replica readable again");
                    f.persist_status();
                }
                f.status.checked_at = Some(SystemTime::now());
                more
            }
            Err(Step::Fatal(e)) => {
                f.status.last_error = Some(e.to_string());
                on_status(&f.status);
                return Err(e);
            }
            Err(Step::Retry(e)) => {
                let msg = e.to_string();
                let first = f.status.last_error.as_deref() != Some(&msg);
                if first {
                    tracing::warn!(copy = %output.display(), error = %msg,
                        "follow: cannot update from the replica; the copy keeps its last state, retrying with backoff");
                }
                f.failures += 1;
                f.status.last_error = Some(msg);
                if first {
                    f.persist_status();
                }
                false
            }
        };
        if f.status != before {
            on_status(&f.status);
        }
        if more {
            continue;
        }
        let wait = if f.failures > 0 {
            (opts.interval * 2u32.saturating_pow(f.failures.min(16))).min(MAX_BACKOFF)
        } else if wake.is_some() {
            match f.last_plan.filter(|_| f.recheck_owed) {
                Some(t) => RECHECK_OTHERS.saturating_sub(t.elapsed()),
                None => WATCHED_SAFETY_POLL,
            }
        } else {
            opts.interval
        };
        tokio::select! {
            _ = &mut stop => return Ok(()),
            _ = tokio::time::sleep(wait) => {}
            _ = async {
                match wake.as_mut() {
                    Some(w) => w.changed().await,
                    None => std::future::pending::<()>().await,
                }
            }, if f.failures == 0 => {}
        }
    }
}

/// A watch on the replicas when all are local directories.
fn watch_file_replicas(replicas: &[ReplicaSource]) -> Option<watch::ReplicaWatch> {
    if replicas.iter().any(|r| r.client.type_name() != "file") {
        return None;
    }
    watch::ReplicaWatch::new(
        replicas
            .iter()
            .map(|r| PathBuf::from(r.client.location()))
            .collect(),
    )
}

/// Why a step stopped.
enum Step {
    /// Reading the replica failed: keep the copy, try again later.
    Retry(Error),
    /// The copy cannot be kept in step (written by another program, not a follower's
    /// copy): stop.
    Fatal(Error),
}

impl From<Error> for Step {
    fn from(e: Error) -> Step {
        Step::Retry(e)
    }
}

fn fatal(e: Error) -> Step {
    Step::Fatal(e)
}

/// Where the copy is, with the open copy.
struct At {
    copy: Copy,
    saved: Saved,
    /// Index of the followed replica in `replicas`.
    replica: usize,
}

struct Follow {
    replicas: Vec<ReplicaSource>,
    output: PathBuf,
    opts: FollowOptions,
    at: Option<At>,
    status: FollowStatus,
    /// Generations listed on the followed replica when the copy last took a new state.
    known_generations: Option<BTreeSet<Generation>>,
    /// When the replicas were last planned (all generations weighed).
    last_plan: Option<std::time::Instant>,
    /// A change was seen while other generations exist but not weighed (the last plan was
    /// less than [`RECHECK_OTHERS`] ago): the next look is due then, not at the next
    /// change, which may never come (the primary's new generation wrote its first files
    /// right after a plan that could not use it yet, then went quiet).
    recheck_owed: bool,
    failures: u32,
}

pub(super) fn hex(h: u64) -> String {
    format!("{h:016x}")
}

impl Follow {
    fn restore_opts(&self) -> RestoreOptions {
        RestoreOptions {
            parallelism: self.opts.parallelism,
            ..RestoreOptions::default()
        }
    }

    /// At start: an existing copy must have its state file and hold one of the two states
    /// it names; no copy (or a state file alone) starts afresh.
    async fn resume(&mut self) -> std::result::Result<(), Error> {
        let out = self.output.clone();
        clean_temp_files(&out);
        let state = read_state(&out)?;
        if !out.exists() {
            if state.is_some() {
                let _ = std::fs::remove_file(state_path(&out));
            }
            return Ok(());
        }
        let Some(state) = state else {
            return Err(Error::Config(format!(
                "{} exists but is not a walship follower copy (no {}): remove it, or follow \
                 into another path",
                out.display(),
                state_path(&out).display()
            )));
        };
        let o2 = out.clone();
        let copy = blocking(&out, move || Copy::open(&o2)).await?;
        let h = hex(copy.hash());
        let saved = [state.pending.clone(), Some(state.committed.clone())]
            .into_iter()
            .flatten()
            .find(|s| s.hash == h && s.pages == copy.pages())
            .ok_or_else(|| copy::foreign_write(&out))?;
        let Some(replica) = self
            .replicas
            .iter()
            .position(|r| r.name == saved.pos.replica)
        else {
            return Err(Error::Config(format!(
                "the follower copy {} follows replica {:?}, which is not configured now: remove \
                 the copy to follow afresh",
                out.display(),
                saved.pos.replica
            )));
        };
        tracing::info!(copy = %out.display(), generation = %saved.pos.generation,
            index = saved.pos.index, offset = saved.pos.offset, "follow: resuming where the copy is");
        self.status = state.status;
        self.status.position = Some(saved.pos.clone());
        self.status.last_error = None;
        self.status.pages = copy.pages();
        self.at = Some(At {
            copy,
            saved,
            replica,
        });
        Ok(())
    }

    /// Writes the status into the state file (positions unchanged), so `walship status`
    /// shows the last error. Best effort: a failure is logged.
    fn persist_status(&self) {
        let Some(at) = &self.at else {
            return;
        };
        let st = StateFile {
            version: 1,
            committed: at.saved.clone(),
            pending: None,
            status: self.status.clone(),
        };
        if let Err(e) = write_state(&self.output, &st) {
            tracing::warn!(error = %e, "follow: cannot write the state file");
        }
    }

    /// One look at the replica, applying what is new. `Ok(true)`: more is waiting.
    async fn step(&mut self) -> std::result::Result<bool, Step> {
        let Some(at) = &self.at else {
            self.full_restore(None).await?;
            return Ok(false);
        };
        let source = self.replicas[at.replica].clone();
        let pos = at.saved.pos.clone();
        let listed = match backend::wal_segments(&*source.client, pos.generation).await {
            Ok(l) => l,
            Err(Error::NotFound(_)) => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        let chain = match next_segments(&listed, pos.index, pos.offset) {
            Next::Nothing => {
                // Nothing new here: has the primary moved to another generation?
                let gens: BTreeSet<Generation> = backend::generations(&*source.client)
                    .await?
                    .into_iter()
                    .collect();
                // The same generations as at the last look: nothing to do, unless others
                // exist, which are weighed again every RECHECK_OTHERS (a generation that
                // ties with ours on its last write time, as static servers give times to
                // the second, wins once it writes again).
                let others = gens.iter().any(|g| *g != pos.generation);
                let recheck =
                    others && self.last_plan.is_none_or(|t| t.elapsed() >= RECHECK_OTHERS);
                if self.known_generations.as_ref() == Some(&gens)
                    && gens.contains(&pos.generation)
                    && !recheck
                {
                    self.recheck_owed = others;
                    return Ok(false);
                }
                let p = plan(&self.replicas, &self.restore_opts()).await?;
                self.last_plan = Some(std::time::Instant::now());
                self.recheck_owed = false;
                if p.generation == pos.generation && p.replica == pos.replica {
                    self.known_generations = Some(gens);
                    return Ok(false);
                }
                tracing::info!(copy = %self.output.display(), from = %pos.generation,
                    to = %p.generation, "follow: the primary started a new generation");
                self.full_restore(Some(p)).await?;
                return Ok(false);
            }
            Next::Gap => {
                tracing::info!(copy = %self.output.display(), generation = %pos.generation,
                    index = pos.index, offset = pos.offset,
                    "follow: the segments after the copy's position are gone (retention?); restoring the latest snapshot");
                self.full_restore(None).await?;
                return Ok(false);
            }
            Next::Segments(c) => c,
        };
        let total: u64 = chain.iter().map(|s| s.size).sum();
        if total > COMPARE_RESTORE_ABOVE {
            let p = plan(&self.replicas, &self.restore_opts()).await?;
            let full: u64 = p.snapshot.size + p.segments.iter().map(|s| s.size).sum::<u64>();
            if p.generation != pos.generation || full < total {
                tracing::info!(copy = %self.output.display(), segments_bytes = total, restore_bytes = full,
                    "follow: a full restore downloads less than the segments; restoring");
                self.full_restore(Some(p)).await?;
                return Ok(false);
            }
        }
        self.apply_segments(&source, chain).await
    }

    /// Downloads the segments (in order, `parallelism` at a time) up to [`BATCH_BYTES`] of
    /// them, and applies them in one transaction. `Ok(true)`: segments are left.
    async fn apply_segments(
        &mut self,
        source: &ReplicaSource,
        chain: Vec<WalSegmentInfo>,
    ) -> std::result::Result<bool, Step> {
        let client = source.client.clone();
        let mut got: Vec<(WalSegmentInfo, Vec<u8>)> = Vec::new();
        let mut bytes = 0usize;
        let mut stream = futures::stream::iter(chain.iter().cloned())
            .map(|seg| {
                let client = client.clone();
                async move {
                    let data = download(&*client, &seg.path(), seg.size).await;
                    (seg, data)
                }
            })
            .buffered(self.opts.parallelism.max(1));
        while let Some((seg, data)) = stream.next().await {
            let data = data?;
            bytes += data.len();
            got.push((seg, data));
            if bytes >= BATCH_BYTES {
                break;
            }
        }
        drop(stream);
        let more = got.len() < chain.len();
        let at = self.at.take().expect("a copy to apply to");
        let out = self.output.clone();
        let status = self.status.clone();
        let objects: Vec<String> = got
            .iter()
            .map(|(s, _)| object_name(&*client, &s.path()))
            .collect();
        let res = worker(&out, move || {
            let mut at = at;
            let res = apply_batch(&mut at, &got, &objects, status);
            (at, res)
        })
        .await;
        let (at, res) = match res {
            Ok(v) => v,
            Err(e) => return Err(fatal(e)),
        };
        self.at = Some(at);
        let mut status = res?;
        status.last_error = None;
        self.status = status;
        Ok(more)
    }

    /// Restores `p` (or the latest plan) and makes the copy that state: installs it when
    /// there is no copy yet, else replaces the copy's content in one transaction.
    async fn full_restore(&mut self, p: Option<Plan>) -> std::result::Result<(), Step> {
        let ropts = self.restore_opts();
        let p = match p {
            Some(p) => p,
            None => plan(&self.replicas, &ropts).await?,
        };
        let replica = self
            .replicas
            .iter()
            .position(|r| r.name == p.replica)
            .expect("plan names a configured replica");
        let gens: BTreeSet<Generation> = backend::generations(&*self.replicas[replica].client)
            .await?
            .into_iter()
            .collect();
        let tmp = temp_beside(&self.output);
        let res = apply_keep(&self.replicas, &p, &tmp, &ropts, &|_| {}).await;
        let (summary, replay) = match res {
            Ok(v) => v,
            Err(e) => {
                remove_with_side_files(&tmp);
                return Err(e.into());
            }
        };
        let pos = match &replay {
            Some(r) => FollowPosition {
                replica: p.replica.clone(),
                generation: p.generation,
                index: r.index(),
                offset: r.next_offset(),
            },
            None => FollowPosition {
                replica: p.replica.clone(),
                generation: p.generation,
                index: summary.snapshot_index,
                offset: 0,
            },
        };
        let saved_replay = replay.as_ref().map(|r| r.saved());
        let out = self.output.clone();
        let mut status = self.status.clone();
        let now = SystemTime::now();
        status.position = Some(pos.clone());
        status.updated_at = Some(now);
        status.replica_time = Some(p.end);
        status.apply_delay = now.duration_since(p.end).ok();
        status.updates += 1;
        status.full_restores += 1;
        status.last_error = None;
        let status_after = status.clone();
        let at = self.at.take();
        let tmp2 = tmp.clone();
        let res = worker(&self.output, move || -> (Option<At>, Result<At>) {
            match at {
                None => {
                    // First restore: record the state, then move the file into place.
                    let r = (|| {
                        let c = Copy::open(&tmp2)?;
                        let saved = Saved {
                            pos,
                            replay: saved_replay,
                            hash: hex(c.hash()),
                            pages: c.pages(),
                        };
                        drop(c);
                        let mut status = status;
                        status.pages = saved.pages;
                        write_state(
                            &out,
                            &StateFile {
                                version: 1,
                                committed: saved.clone(),
                                pending: None,
                                status,
                            },
                        )?;
                        crate::restore::output::install(&tmp2, &out)?;
                        let copy = Copy::open(&out)?;
                        Ok(At {
                            copy,
                            saved,
                            replica,
                        })
                    })();
                    (None, r)
                }
                Some(mut at) => {
                    let committed = at.saved.clone();
                    let mut next = None;
                    let pages = (std::fs::metadata(&tmp2).map(|m| m.len()).unwrap_or(0)
                        / u64::from(at.copy.page_size())) as u32;
                    let r = at.copy.replace_with(&tmp2, |hash| {
                        let pend = Saved {
                            pos,
                            replay: saved_replay,
                            hash: hex(hash),
                            pages,
                        };
                        next = Some(pend.clone());
                        let mut status = status;
                        status.pages = pages;
                        write_state(
                            &out,
                            &StateFile {
                                version: 1,
                                committed,
                                pending: Some(pend),
                                status,
                            },
                        )
                    });
                    match r {
                        Ok(written) => {
                            tracing::info!(copy = %out.display(), pages_written = written,
                                "follow: the copy took the restored state");
                            at.saved = next.expect("set before commit");
                            at.replica = replica;
                            (None, Ok(at))
                        }
                        Err(e) => (Some(at), Err(e)),
                    }
                }
            }
        })
        .await;
        remove_with_side_files(&tmp);
        let (back, res) = res.map_err(fatal)?;
        let at = match res {
            Ok(at) => at,
            Err(e) => {
                self.at = back;
                return Err(classify_copy_error(e));
            }
        };
        self.status = status_after;
        self.status.pages = at.saved.pages;
        self.known_generations = Some(gens);
        tracing::info!(copy = %self.output.display(), generation = %at.saved.pos.generation,
            index = at.saved.pos.index, "follow: copy restored");
        self.at = Some(at);
        Ok(())
    }
}
