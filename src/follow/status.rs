//! What a follower reports and records: its options, its status, and the state file beside
//! the copy that lets a restarted follower resume.
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::pos::Generation;
use crate::restore::replay::SavedReplay;

/// How a [`Follower`](super::Follower) follows.
#[derive(Debug, Clone)]
pub struct FollowOptions {
    /// How often a replica is listed (a file replica is watched instead and listed when it
    /// changes). Default 1 s.
    pub interval: Duration,
    /// Segments downloaded at once. Default 8.
    pub parallelism: usize,
}

impl Default for FollowOptions {
    fn default() -> Self {
        FollowOptions {
            interval: Duration::from_secs(1),
            parallelism: 8,
        }
    }
}

/// Where the copy is: the state of the replica it equals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowPosition {
    /// The replica followed.
    pub replica: String,
    /// The generation followed.
    pub generation: Generation,
    /// The WAL index the next segment belongs to.
    pub index: u32,
    /// Where in that index's WAL the next segment starts (bytes).
    pub offset: u64,
}

/// What a follower is doing, for status pages and subscribers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowStatus {
    /// The copy's position; `None` before the first restore.
    pub position: Option<FollowPosition>,
    /// When the copy last changed.
    pub updated_at: Option<SystemTime>,
    /// When the replica was last read successfully.
    pub checked_at: Option<SystemTime>,
    /// Storage time of the newest segment or snapshot applied.
    pub replica_time: Option<SystemTime>,
    /// How long the last applied change sat on the replica before the copy had it (from
    /// its storage time to the commit into the copy).
    pub apply_delay: Option<Duration>,
    /// The last error reading the replica, until a read succeeds again.
    pub last_error: Option<String>,
    /// Updates applied since start (incremental or full).
    pub updates: u64,
    /// Full restores since start (first restore, new generation, gap).
    pub full_restores: u64,
    /// Pages in the copy.
    pub pages: u32,
}

/// The state file beside the copy: the committed position and hash, and the one an
/// update is about to commit.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct StateFile {
    pub(super) version: u32,
    pub(super) committed: Saved,
    pub(super) pending: Option<Saved>,
    pub(super) status: FollowStatus,
}

/// A copy position with what is needed to continue from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Saved {
    pub(super) pos: FollowPosition,
    /// The replay of `pos.index` when the copy is inside it.
    pub(super) replay: Option<SavedReplay>,
    /// Content hash of the copy ([`copy::page_hash`] summed), hex.
    pub(super) hash: String,
    pub(super) pages: u32,
}

/// The follower's state file for the copy at `copy`: `<copy>-walship-follow.json`. It
/// holds the copy's position and status (readable JSON) and lets a restarted follower
/// resume.
pub fn state_path(copy: &Path) -> PathBuf {
    let mut s = copy.as_os_str().to_owned();
    s.push("-walship-follow.json");
    PathBuf::from(s)
}

pub(super) fn write_state(path: &Path, st: &StateFile) -> Result<()> {
    let data = serde_json::to_vec_pretty(st)
        .map_err(|e| Error::Internal(format!("encode the follower state: {e}")))?;
    crate::fsutil::write_atomic(&state_path(path), &data).map(|_| ())
}

/// The status and position a follower last recorded for the copy at `copy` (from its
/// state file); `None` when no follower has written that copy.
pub fn recorded_status(copy: &Path) -> Result<Option<FollowStatus>> {
    Ok(read_state(copy)?.map(|st| {
        let mut s = st.status;
        s.position = Some(st.pending.unwrap_or(st.committed).pos);
        s
    }))
}

pub(super) fn read_state(path: &Path) -> Result<Option<StateFile>> {
    let sp = state_path(path);
    match std::fs::read(&sp) {
        Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| {
            Error::Config(format!(
                "{}: not a walship follower state ({e}); remove the copy and this file to follow afresh",
                sp.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("read", &sp)(e)),
    }
}
