//! Where a replica lives ([`ReplicaTarget`]) and the one place a storage client is opened
//! for it ([`open`]): the engine, restore, the follower, the command line and the tests all
//! read and write a replica through what this returns.
use std::path::PathBuf;
use std::sync::Arc;

use super::file::FileClient;
use super::sftp::{SftpClient, SftpConfig};
use super::{
    AbsConfig, BucketClient, GcsConfig, HttpClient, HttpConfig, OperationCounter, ReplicaClient,
    S3Config,
};
use crate::error::Result;

/// Where a replica's objects live: one variant per backend, each with its backend's own
/// settings type. The config resolves `url:` or `type:` plus the type's keys into one.
///
/// Every object-store prefix (`path` of S3, GCS, ABS) is cleaned and has no leading or
/// trailing `/`; `""` is the bucket root (keys start at `generations/`).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum ReplicaTarget {
    /// A local directory (`type: file`, `path:` or `url: file:///dir`); absolute, cleaned.
    File {
        /// The replica root directory.
        path: PathBuf,
    },
    /// An S3-compatible bucket.
    S3(S3Config),
    /// An HTTP server: WebDAV for replication, or any static file server for restore.
    Http(HttpConfig),
    /// A Google Cloud Storage bucket (Application Default Credentials).
    Gcs(GcsConfig),
    /// An Azure Blob Storage container.
    Abs(AbsConfig),
    /// A directory on an SFTP server.
    Sftp(SftpConfig),
}

impl ReplicaTarget {
    /// The replica type, as Litestream names it and as used for a replica's default name:
    /// `"file"`, `"s3"`, `"http"`, `"gcs"`, `"abs"` or `"sftp"`.
    pub fn type_name(&self) -> &'static str {
        match self {
            ReplicaTarget::File { .. } => "file",
            ReplicaTarget::S3(_) => "s3",
            ReplicaTarget::Http(_) => "http",
            ReplicaTarget::Gcs(_) => "gcs",
            ReplicaTarget::Abs(_) => "abs",
            ReplicaTarget::Sftp(_) => "sftp",
        }
    }
}

/// Opens the storage client of `target`. A network backend tells `counter`, when given, of
/// each request it makes (the engine passes one that records Prometheus metrics); the file
/// backend makes no requests to count.
///
/// Opening sends no request: a network client connects on first use, so an unreachable store is
/// an error of the first operation, not of this call. Settings that cannot work (an SFTP
/// `host-key` that does not parse, an object store that rejects its options) are
/// [`Error::Config`](crate::Error::Config) here.
pub fn open(
    target: &ReplicaTarget,
    counter: Option<OperationCounter>,
) -> Result<Arc<dyn ReplicaClient>> {
    let client: Arc<dyn ReplicaClient> = match target {
        ReplicaTarget::File { path } => Arc::new(FileClient::new(path.clone())),
        ReplicaTarget::S3(c) => Arc::new(counted(BucketClient::s3(c)?, counter)),
        ReplicaTarget::Gcs(c) => Arc::new(counted(BucketClient::gcs(c)?, counter)),
        ReplicaTarget::Abs(c) => Arc::new(counted(BucketClient::azure(c)?, counter)),
        ReplicaTarget::Http(c) => {
            let client = HttpClient::new(c)?;
            Arc::new(match counter {
                Some(counter) => client.with_operation_counter(counter),
                None => client,
            })
        }
        ReplicaTarget::Sftp(c) => {
            let client = SftpClient::new(c.clone())?;
            Arc::new(match counter {
                Some(counter) => client.with_operation_counter(counter),
                None => client,
            })
        }
    };
    Ok(client)
}

fn counted(client: BucketClient, counter: Option<OperationCounter>) -> BucketClient {
    match counter {
        Some(counter) => client.with_operation_counter(counter),
        None => client,
    }
}
