//! Replica storage: the [`ReplicaClient`] trait, its backends, and the layout-aware
//! operations every part of walship uses on top of it.
//!
//! The trait is object-level on purpose: a backend only stores, lists and deletes opaque
//! objects under `/`-separated relative paths. Everything that knows Litestream's layout
//! lives in this module's free functions and in [`crate::layout`], once, for all backends.
use std::fmt;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;

use crate::compress;
use crate::error::{Error, Result};
use crate::layout;
use crate::pos::Generation;

pub mod file;
pub mod object;

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Base name (no `/`).
    pub name: String,
    /// Stored size in bytes (0 for directories).
    pub size: u64,
    /// The store's own timestamp: file mtime, S3 `LastModified`. Litestream derives every
    /// time (restore by timestamp, retention) from it.
    pub modified: SystemTime,
    /// True for a directory (or a common prefix on object stores).
    pub is_dir: bool,
}

/// A replica's storage.
///
/// Contract, checked for every backend by the conformance tests:
/// - paths are relative, `/`-separated, made only by [`crate::layout`];
/// - `put` is atomic: no reader ever sees a partial object, and an existing object is
///   replaced whole;
/// - `get` of a missing object is [`Error::NotFound`];
/// - `delete` of a missing object is `Ok`;
/// - `list` of a missing directory is an empty list; entries are sorted by name.
#[async_trait]
pub trait ReplicaClient: Send + Sync + fmt::Debug {
    /// Short type name for logs and listings: `file`, `s3`, `http`.
    fn type_name(&self) -> &'static str;
    /// Where the replica is, for messages (never contains secrets).
    fn location(&self) -> String;
    /// Lists the immediate children of `dir`.
    async fn list(&self, dir: &str) -> Result<Vec<ObjectInfo>>;
    /// Reads a whole object.
    async fn get(&self, path: &str) -> Result<Bytes>;
    /// Writes a whole object atomically and returns what the store recorded.
    async fn put(&self, path: &str, data: Bytes) -> Result<ObjectInfo>;
    /// Deletes one object; a missing object is not an error.
    async fn delete(&self, path: &str) -> Result<()>;
    /// Deletes everything under `dir`; a missing directory is not an error.
    async fn delete_all(&self, dir: &str) -> Result<()>;
    /// Deletes many objects; missing ones are not an error. Backends that can delete in
    /// batches override this (S3: DeleteObjects, up to 1,000 keys per request); the default
    /// deletes one object at a time, 16 concurrently.
    async fn delete_many(&self, paths: &[String]) -> Result<()> {
        for chunk in paths.chunks(16) {
            for r in futures::future::join_all(chunk.iter().map(|p| self.delete(p))).await {
                r?;
            }
        }
        Ok(())
    }
}

/// A snapshot as listed on a replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub generation: Generation,
    pub index: u32,
    pub size: u64,
    pub created: SystemTime,
}

/// A WAL segment as listed on a replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalSegmentInfo {
    pub generation: Generation,
    pub index: u32,
    pub offset: u32,
    pub size: u64,
    pub created: SystemTime,
}

impl WalSegmentInfo {
    /// The segment's path in the layout.
    pub fn path(&self) -> String {
        layout::wal_segment_path(self.generation, self.index, self.offset)
    }
}

impl SnapshotInfo {
    /// The snapshot's path in the layout.
    pub fn path(&self) -> String {
        layout::snapshot_path(self.generation, self.index)
    }
}

/// Largest decompressed object walship accepts (a guard against decompression bombs):
/// 1 TiB, far above any SQLite database walship is meant for.
pub const MAX_DECOMPRESSED: u64 = 1 << 40;

/// Generations on a replica, sorted. Names that are not 16 lowercase hex characters are
/// ignored, as Litestream ignores them.
pub async fn generations(c: &dyn ReplicaClient) -> Result<Vec<Generation>> {
    let mut out: Vec<Generation> = c
        .list(layout::GENERATIONS_DIR)
        .await?
        .into_iter()
        .filter(|e| e.is_dir)
        .filter_map(|e| layout::parse_generation_name(&e.name))
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

/// Snapshots of one generation, sorted by index.
pub async fn snapshots(c: &dyn ReplicaClient, generation: Generation) -> Result<Vec<SnapshotInfo>> {
    let mut out: Vec<SnapshotInfo> = c
        .list(&layout::snapshots_dir(generation))
        .await?
        .into_iter()
        .filter(|e| !e.is_dir)
        .filter_map(|e| {
            Some(SnapshotInfo {
                generation,
                index: layout::parse_snapshot_name(&e.name)?,
                size: e.size,
                created: e.modified,
            })
        })
        .collect();
    out.sort_by_key(|s| s.index);
    Ok(out)
}

/// WAL segments of one generation, sorted by (index, offset).
pub async fn wal_segments(
    c: &dyn ReplicaClient,
    generation: Generation,
) -> Result<Vec<WalSegmentInfo>> {
    let mut out: Vec<WalSegmentInfo> = c
        .list(&layout::wal_dir(generation))
        .await?
        .into_iter()
        .filter(|e| !e.is_dir)
        .filter_map(|e| {
            let (index, offset) = layout::parse_wal_segment_name(&e.name)?;
            Some(WalSegmentInfo {
                generation,
                index,
                offset,
                size: e.size,
                created: e.modified,
            })
        })
        .collect();
    out.sort_by_key(|s| (s.index, s.offset));
    Ok(out)
}

/// Reads and decompresses one object, naming it in any error.
pub async fn read_decompressed(c: &dyn ReplicaClient, path: &str) -> Result<Vec<u8>> {
    let data = c.get(path).await?;
    let location = c.location();
    let path = path.to_string();
    tokio::task::spawn_blocking(move || {
        compress::decompress(&data, MAX_DECOMPRESSED)
            .map_err(|e| Error::corrupt(format!("{location}/{path}"), e.to_string()))
    })
    .await
    .map_err(|e| Error::Backend {
        backend: "decompress".into(),
        message: e.to_string(),
    })?
}

/// The replica's position in `generation` as Litestream computes it: the end of the last
/// WAL segment (which needs its decompressed length), else the start of the highest
/// snapshot's index. `None` when the generation has no snapshot.
pub async fn replica_position(
    c: &dyn ReplicaClient,
    generation: Generation,
) -> Result<Option<crate::Pos>> {
    let snaps = snapshots(c, generation).await?;
    let Some(max_snap) = snaps.iter().map(|s| s.index).max() else {
        return Ok(None);
    };
    let segs = wal_segments(c, generation).await?;
    match segs.last() {
        Some(last) if last.index >= max_snap => {
            let data = read_decompressed(c, &last.path()).await?;
            Ok(Some(crate::Pos::new(
                generation,
                last.index,
                u64::from(last.offset) + data.len() as u64,
            )))
        }
        _ => Ok(Some(crate::Pos::new(generation, max_snap, 0))),
    }
}
