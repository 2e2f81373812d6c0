//! What the engine tells an embedding application: events as they happen, and a status
//! snapshot on demand.
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::pos::{Generation, Pos};

/// Something the engine did. Delivered through
/// [`EngineHandle::subscribe`](crate::engine::EngineHandle::subscribe); a slow subscriber
/// misses events (it sees `RecvError::Lagged`) rather than slowing the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A database started a new generation (and so a new snapshot).
    GenerationStarted {
        /// The database file.
        db: PathBuf,
        /// The new generation.
        generation: Generation,
        /// Why the old one ended (first start, WAL restarted, mismatch, ...).
        reason: String,
    },
    /// A replica stored a snapshot.
    SnapshotWritten {
        /// The database file.
        db: PathBuf,
        /// The replica's name.
        replica: String,
        /// The position the snapshot holds the database at.
        pos: Pos,
    },
    /// A replica stored WAL up to `pos`.
    Synced {
        /// The database file.
        db: PathBuf,
        /// The replica's name.
        replica: String,
        /// The replica's new position.
        pos: Pos,
    },
    /// Another writer took the replica's lease: this engine uploads nothing more to it
    /// (see `walship::replica::lease`). Its syncs fail from here on with the same message.
    LeaseLost {
        /// The database file.
        db: PathBuf,
        /// The replica's name.
        replica: String,
        /// Who holds the lease now, and what to do.
        message: String,
    },
    /// A replica sync failed; it will be retried with backoff.
    ReplicaError {
        /// The database file.
        db: PathBuf,
        /// The replica's name.
        replica: String,
        /// What failed.
        message: String,
    },
}

/// The state of one replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaStatus {
    /// The replica's name.
    pub name: String,
    /// Backend type (`file`, `s3`, `http`).
    pub kind: String,
    /// Last position the store confirmed; `None` until the first sync (or after an error,
    /// until it is read back from the store).
    pub pos: Option<Pos>,
    /// Bytes of shadow WAL the replica does not have yet: exact within one WAL index, a
    /// lower bound (the database's offset in its index) when it is whole indexes behind,
    /// `None` when the position is unknown or in another generation.
    pub lag_bytes: Option<u64>,
    /// How long the replica has been behind the database (zero when up to date).
    pub lag: Duration,
    /// When the last sync succeeded.
    pub last_sync: Option<SystemTime>,
    /// The last error, cleared by the next successful sync.
    pub last_error: Option<String>,
    /// While the replica holds less than the database: how long since its last successful
    /// sync (since the replica started, when it has not synced yet). `None` while it is up
    /// to date: an idle database's replica is never "unshipped", however old its last
    /// upload.
    pub unshipped_for: Option<Duration>,
    /// The replica's `sync-interval`, the unit of [`stalls`]' threshold.
    pub sync_interval: Duration,
    /// The replica lease (one writer per replica): `held`, `not taken yet` (before the
    /// first upload), `expired` (renewed at the next upload), `renewing`, or `lost: ...`
    /// naming the writer that took it; `None` when this replica has no lease (the backend
    /// cannot hold one, or `lease: false`).
    pub lease: Option<String>,
}

/// The default of `stall-intervals:` (see [`stalls`]): a replica is stalled once it has
/// not shipped for 30 of its sync intervals (30 s at Litestream's default of 1 s).
pub const DEFAULT_STALL_INTERVALS: u32 = 30;

/// A replica that has not shipped what the database holds for too long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stall {
    /// The database file.
    pub db: PathBuf,
    /// The replica's name.
    pub replica: String,
    /// How long it has not shipped (see [`ReplicaStatus::unshipped_for`]).
    pub unshipped_for: Duration,
    /// Its last error, if a sync failed.
    pub last_error: Option<String>,
}

/// [`ReplicaStatus::lag_bytes`] of a replica at `replica` behind a database at `db`: exact
/// within one WAL index, the database's offset in its index when the replica is whole
/// indexes behind, `None` when either is unknown or they are in different generations.
pub fn lag_bytes(replica: Option<Pos>, db: Option<Pos>) -> Option<u64> {
    match (replica, db) {
        (Some(r), Some(d)) if r.generation == d.generation => Some(if r.index == d.index {
            d.offset.saturating_sub(r.offset)
        } else {
            d.offset
        }),
        _ => None,
    }
}

/// The replicas of `status` that have held less than their database, without a successful
/// sync, for longer than `intervals` of their sync intervals (`intervals` 0: never). What
/// `/healthz` and [`EngineHandle::health`](crate::engine::EngineHandle::health) report.
pub fn stalls(status: &[DbStatus], intervals: u32) -> Vec<Stall> {
    if intervals == 0 {
        return Vec::new();
    }
    let mut out = Vec::new();
    for d in status {
        for r in &d.replicas {
            let Some(unshipped_for) = r.unshipped_for else {
                continue;
            };
            if unshipped_for > r.sync_interval.saturating_mul(intervals) {
                out.push(Stall {
                    db: d.path.clone(),
                    replica: r.name.clone(),
                    unshipped_for,
                    last_error: r.last_error.clone(),
                });
            }
        }
    }
    out
}

/// The state of one database and its replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbStatus {
    /// The database path.
    pub path: PathBuf,
    /// Position of the shadow WAL (everything committed that walship has copied).
    pub pos: Option<Pos>,
    /// One entry per replica, in configuration order.
    pub replicas: Vec<ReplicaStatus>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(name: &str, unshipped: Option<u64>, error: Option<&str>) -> ReplicaStatus {
        ReplicaStatus {
            name: name.into(),
            kind: "file".into(),
            pos: None,
            lag_bytes: None,
            lag: Duration::ZERO,
            last_sync: None,
            last_error: error.map(str::to_string),
            unshipped_for: unshipped.map(Duration::from_secs),
            sync_interval: Duration::from_secs(1),
            lease: None,
        }
    }

    #[test]
    fn a_replica_stalls_after_its_intervals_and_idle_ones_never_do() {
        let status = vec![DbStatus {
            path: "/data/app.db".into(),
            pos: None,
            replicas: vec![
                replica("idle", None, None),
                replica("slow", Some(30), None),
                replica("broken", Some(31), Some("403 forbidden")),
            ],
        }];
        let s = stalls(&status, 30);
        assert_eq!(s.len(), 1, "{s:?}");
        assert_eq!(s[0].replica, "broken");
        assert_eq!(s[0].last_error.as_deref(), Some("403 forbidden"));
        assert_eq!(stalls(&status, 10).len(), 2);
        assert!(stalls(&status, 0).is_empty(), "0 turns the check off");
    }
}
