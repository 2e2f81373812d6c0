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
