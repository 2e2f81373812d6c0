//! Replica storage: the [`ReplicaClient`] trait, its backends, [`open`] (the one place a
//! client is built for a [`ReplicaTarget`]), and the layout-aware operations every part of
//! walship uses on top of it.
//!
//! The trait is object-level on purpose: a backend only stores, lists and deletes opaque
//! objects under `/`-separated relative paths. Everything that knows Litestream's layout
//! lives in this module's free functions and in [`crate::layout`], once, for all backends.
use std::fmt;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;

use crate::compress;
use crate::error::{BackendErrorKind, Error, Result};
use crate::layout;
use crate::pos::Generation;

pub mod age;
mod azure;
mod bucket;
pub mod file;
mod gcs;
mod http;
mod objstore;
mod ranged;
mod s3;
pub mod sftp;
mod static_http;
mod target;
mod webdav;

pub use azure::AbsConfig;
pub use bucket::BucketClient;
pub use gcs::GcsConfig;
pub use http::{HttpClient, HttpConfig};
pub use ranged::{RANGED_READS, RangedReads};
pub use s3::S3Config;
pub use sftp::SftpConfig;
pub use target::{ReplicaTarget, open};

/// Told of each request a network backend makes: (replica type, operation, bytes), with
/// operation one of `GET`, `PUT`, `LIST`, `DELETE`. The engine passes one that records
/// Litestream's `litestream_replica_operation_*` metrics; the backends know nothing of
/// metrics.
pub type OperationCounter = Arc<dyn Fn(&'static str, &'static str, u64) + Send + Sync>;

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
/// - `put_file` is atomic like `put` and reads the local file through a bounded buffer;
/// - `get` and `get_stream` of a missing object are [`Error::NotFound`]; `get_stream` yields
///   exactly the bytes `get` returns, and its announced size, when given, is theirs;
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
    /// Opens an object for reading as a stream of chunks, holding a bounded amount in memory
    /// (about one chunk; up to [`RANGED_READS`]' `in_flight * chunk` where large objects are
    /// read in parallel ranges).
    /// A missing object is [`Error::NotFound`] here, not in the stream; an error while the
    /// body is read comes as an `Err` item. `size` is the length the store announces for
    /// the body (file length, `Content-Length`), if it announces one.
    async fn get_stream(&self, path: &str) -> Result<ObjectStream>;
    /// Writes a whole object atomically and returns what the store recorded.
    async fn put(&self, path: &str, data: Bytes) -> Result<ObjectInfo>;
    /// Writes the local file `local` as the object `path`, atomically as [`put`] does,
    /// reading the file through a bounded buffer (large snapshots are never held in memory).
    /// The file must not change while it is uploaded.
    ///
    /// [`put`]: ReplicaClient::put
    async fn put_file(&self, path: &str, local: &Path) -> Result<ObjectInfo>;
    /// Deletes one object; a missing object is not an error.
    async fn delete(&self, path: &str) -> Result<()>;
    /// Deletes everything under `dir`; a missing directory is not an error.
    async fn delete_all(&self, dir: &str) -> Result<()>;
    /// Whether the replica can only be read from (a plain static HTTP server). A backend
    /// that can only tell by asking its server asks here; an unreachable server is an
    /// error. The default: writable.
    async fn read_only(&self) -> Result<bool> {
        Ok(false)
    }
    /// Whether [`ReplicaClient::get_stream`] yields as many bytes as [`ReplicaClient::list`]
    /// gives as the object's size, so [`open_checked`] can hold a body to its listed size.
    /// Not so for a client that transforms bodies (age decryption), which checks them
    /// itself.
    fn bodies_match_listed_sizes(&self) -> bool {
        true
    }
    /// Whether [`ReplicaClient::get_versioned`] and [`ReplicaClient::put_if`] work: the
    /// replica lease (`crate::replica::lease`) needs them. The default: no.
    fn conditional_writes(&self) -> bool {
        false
    }
    /// Whether this replica's server can hold the lease, for backends where that depends on
    /// the server (an SFTP server without `hardlink@openssh.com`, a WebDAV server that does
    /// not enforce locks): `Ok(None)` when it can, `Ok(Some(why))` when it cannot. Asks the
    /// server where it must; the lease asks once, before its first read or write. The
    /// default: what [`ReplicaClient::conditional_writes`] says.
    async fn lease_unsupported(&self) -> Result<Option<String>> {
        Ok((!self.conditional_writes())
            .then(|| format!("the {} backend has no conditional writes", self.type_name())))
    }
    /// The object(s) that hold the small object `path` written by
    /// [`ReplicaClient::put_if`], as a user would look for them (to delete a lease whose
    /// holder is gone for good). The default: `path` under [`ReplicaClient::location`].
    fn conditional_object(&self, path: &str) -> String {
        format!("{}/{path}", self.location())
    }
    /// Reads the small object at `path` with the version a conditional write names (the
    /// ETag on object stores, a content hash for files); `None` when it does not exist.
    async fn get_versioned(&self, path: &str) -> Result<Option<(Bytes, String)>> {
        Err(no_conditional_writes(self.type_name(), path))
    }
    /// Compare-and-swap: writes `data` to `path` only if the object is still at version
    /// `expected` (`None`: only if it does not exist), atomically with respect to every
    /// other writer that uses this method. Returns the new version, or `None` when the
    /// condition did not hold (someone else wrote first).
    async fn put_if(
        &self,
        path: &str,
        data: Bytes,
        expected: Option<&str>,
    ) -> Result<Option<String>> {
        let _ = (data, expected);
        Err(no_conditional_writes(self.type_name(), path))
    }
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

/// The error of a conditional read or write on a backend that has none.
fn no_conditional_writes(backend: &str, path: &str) -> Error {
    Error::backend(
        backend,
        BackendErrorKind::Other,
        format!("{path}: the {backend} backend has no conditional writes"),
    )
}

/// An object being read (see [`ReplicaClient::get_stream`]).
pub struct ObjectStream {
    /// The body's length as the store announces it, when it does.
    pub size: Option<u64>,
    /// The body, in chunks.
    pub body: BoxStream<'static, Result<Bytes>>,
}

impl fmt::Debug for ObjectStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectStream")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// A snapshot as listed on a replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The generation it belongs to.
    pub generation: Generation,
    /// The WAL index it was taken at.
    pub index: u32,
    /// Stored (compressed) size in bytes.
    pub size: u64,
    /// When the store says it was written.
    pub created: SystemTime,
}

/// A WAL segment as listed on a replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalSegmentInfo {
    /// The generation it belongs to.
    pub generation: Generation,
    /// The shadow WAL index it is part of.
    pub index: u32,
    /// Bytes into that shadow WAL where the segment starts.
    pub offset: u32,
    /// Stored (compressed) size in bytes.
    pub size: u64,
    /// When the store says it was written.
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

/// Longest wait for the next chunk of a body before the read fails (a stalled server).
pub const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Largest compressed object read whole into memory when its listing gives no size (a WAL
/// segment on a static server that announces no length): far above the 16 MiB walship cuts
/// segments at, and a bound on what a hostile endless body can make walship hold.
pub const MAX_UNSIZED_OBJECT: u64 = 1 << 30;

/// Compressed objects up to this size are decompressed on the calling task.
const SMALL_OBJECT: u64 = 256 << 10;

/// Opens `path` for reading and checks its body against `listed`, the size its listing
/// gave (0: unknown): an announced length that differs, or a body that runs past the listed
/// size or ends short of it, is [`Error::Corrupt`]; a body that stalls for
/// [`BODY_IDLE_TIMEOUT`] is [`Error::Backend`]. A hostile or broken server therefore cannot
/// make a reader take more than the listed bytes.
pub async fn open_checked(c: &dyn ReplicaClient, path: &str, listed: u64) -> Result<ObjectStream> {
    let object = format!("{}/{path}", c.location());
    let listed = if c.bodies_match_listed_sizes() {
        listed
    } else {
        0
    };
    let s = c.get_stream(path).await?;
    if listed > 0
        && let Some(size) = s.size
        && size != listed
    {
        return Err(Error::corrupt(
            object,
            format!("the store announces a body of {size} bytes, its listing said {listed}"),
        ));
    }
    let backend = c.type_name();
    let state = (s.body, 0u64, false);
    let body = futures::stream::unfold(state, move |(mut body, seen, ended)| {
        let object = object.clone();
        async move {
            if ended {
                return None;
            }
            let fail = |e: Error| Some((Err(e), (futures::stream::empty().boxed(), seen, true)));
            match tokio::time::timeout(BODY_IDLE_TIMEOUT, body.next()).await {
                Err(_) => fail(Error::backend(
                    backend,
                    BackendErrorKind::Transient,
                    format!("get {object}: no data for {BODY_IDLE_TIMEOUT:?}"),
                )),
                Ok(None) if listed > 0 && seen < listed => fail(Error::corrupt(
                    object,
                    format!("body ended after {seen} bytes, its listing said {listed}"),
                )),
                Ok(None) => None,
                Ok(Some(Err(e))) => fail(e),
                Ok(Some(Ok(chunk))) => {
                    let seen = seen + chunk.len() as u64;
                    if listed > 0 && seen > listed {
                        return fail(Error::corrupt(
                            object,
                            format!(
                                "body runs past the {listed} bytes its listing gave; refusing the rest"
                            ),
                        ));
                    }
                    Some((Ok(chunk), (body, seen, false)))
                }
            }
        }
    });
    Ok(ObjectStream {
        size: s.size,
        body: body.boxed(),
    })
}

/// A blocking reader of a body's bytes, for the blocking pool. Must be created inside the
/// tokio runtime; must be read outside it (`spawn_blocking`). Read errors carry the
/// walship [`Error`]; [`read_error`] takes it back out.
pub fn blocking_reader(s: ObjectStream) -> impl Read + Send + 'static {
    let body = s.body.map(|r| r.map_err(std::io::Error::other));
    tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(body))
}

/// The error behind an I/O error from a [`blocking_reader`] (possibly through a
/// [`compress::FrameReader`]): the store's own error, a corrupt frame of `object`, or a
/// backend error naming `object`.
pub fn read_error(e: std::io::Error, backend: &str, object: &str) -> Error {
    if e.get_ref().is_some_and(|i| i.is::<Error>()) {
        if let Some(inner) = e.into_inner()
            && let Ok(err) = inner.downcast::<Error>()
        {
            return *err;
        }
        return Error::backend(
            backend,
            BackendErrorKind::Other,
            format!("read {object}: lost error"),
        );
    }
    if e.get_ref()
        .is_some_and(|i| i.is::<compress::DecompressError>())
    {
        return decompress_error(object, compress::DecompressError::from_io(e));
    }
    let message = format!("read {object}: {e}");
    Error::backend_from(backend, BackendErrorKind::Transient, message, e)
}

/// The error for an object that does not decompress: corrupt, unless it is an age file read
/// without a key, which is a missing setting rather than damage.
fn decompress_error(object: &str, e: compress::DecompressError) -> Error {
    match e {
        compress::DecompressError::AgeEncrypted => Error::Config(format!("{object}: {e}")),
        e => Error::corrupt(object, e.to_string()),
    }
}

/// Reads and decompresses one object, naming it in any error.
pub async fn read_decompressed(c: &dyn ReplicaClient, path: &str) -> Result<Vec<u8>> {
    read_decompressed_sized(c, path, 0).await
}

/// Reads and decompresses one object whose listing gave `listed` bytes (0: unknown), held
/// whole in memory: for WAL segments, which are small. The body is checked as
/// [`open_checked`] does; without a listed size at most [`MAX_UNSIZED_OBJECT`] compressed
/// bytes are read.
pub async fn read_decompressed_sized(
    c: &dyn ReplicaClient,
    path: &str,
    listed: u64,
) -> Result<Vec<u8>> {
    let location = c.location();
    let object = format!("{location}/{path}");
    let mut s = open_checked(c, path, listed).await?;
    let cap = if listed > 0 {
        listed
    } else {
        MAX_UNSIZED_OBJECT
    };
    let mut data = Vec::with_capacity(s.size.unwrap_or(listed).min(cap) as usize);
    while let Some(chunk) = s.body.next().await {
        let chunk = chunk?;
        if data.len() as u64 + chunk.len() as u64 > cap {
            return Err(Error::corrupt(
                object,
                format!("object larger than {cap} bytes; refusing to read it whole"),
            ));
        }
        data.extend_from_slice(&chunk);
    }
    let small = data.len() as u64 <= SMALL_OBJECT;
    let decompress = move || {
        compress::decompress(&data, MAX_DECOMPRESSED).map_err(|e| decompress_error(&object, e))
    };
    // A small object decompresses in microseconds: a trip to the blocking pool would cost
    // more than the work.
    if small {
        return decompress();
    }
    tokio::task::spawn_blocking(decompress)
        .await
        .map_err(Error::task_failed("decompress"))?
}

/// The replica's position in `generation` as Litestream computes it: the end of the last
/// WAL segment (which needs its decompressed length), else the start of the highest
/// snapshot's index. `None` when the generation has no snapshot.
pub async fn replica_position(
    c: &dyn ReplicaClient,
    generation: Generation,
) -> Result<Option<crate::Pos>> {
    replica_position_known(c, generation, |_, _| None).await
}

/// [`replica_position`], where `known_end(index, offset)` may already know where the
/// segment starting there ends (the writer recorded it): then the segment is not read.
pub async fn replica_position_known(
    c: &dyn ReplicaClient,
    generation: Generation,
    known_end: impl Fn(u32, u64) -> Option<u64>,
) -> Result<Option<crate::Pos>> {
    let snaps = snapshots(c, generation).await?;
    let Some(max_snap) = snaps.iter().map(|s| s.index).max() else {
        return Ok(None);
    };
    let segs = wal_segments(c, generation).await?;
    match segs.last() {
        Some(last) if last.index >= max_snap => {
            let end = match known_end(last.index, u64::from(last.offset)) {
                Some(end) => end,
                None => {
                    let data = read_decompressed_sized(c, &last.path(), last.size).await?;
                    u64::from(last.offset) + data.len() as u64
                }
            };
            Ok(Some(crate::Pos::new(generation, last.index, end)))
        }
        _ => Ok(Some(crate::Pos::new(generation, max_snap, 0))),
    }
}
