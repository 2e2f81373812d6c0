//! A replica in a bucket of an object store (S3, Google Cloud Storage, Azure Blob Storage)
//! through object_store: one client for the three, built by [`BucketClient::s3`],
//! [`BucketClient::gcs`] and [`BucketClient::azure`] (one module each). Large files go up
//! in parts and large objects come down in parallel ranges ([`RANGED_READS`]); deletes go
//! in batches where the store has them.
use async_trait::async_trait;
use bytes::Bytes;
use object_store::path::Path as ObjPath;
use object_store::{
    ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion, WriteMultipart,
};

use std::sync::Arc;

use super::gcs::GcsUploader;
use super::objstore::{LocalFile, PART_SIZE, Store};
use super::ranged::{RANGED_READS, RangedReads};
use super::{ObjectInfo, ObjectStream, OperationCounter, ReplicaClient};
use crate::error::{Error, Result};

/// Objects larger than this are uploaded in parts.
const MULTIPART_THRESHOLD: usize = 64 << 20;

/// A replica in a bucket (or container), below a key prefix.
pub struct BucketClient {
    pub(super) store: Store,
    /// GCS only: uploads go through the JSON API (see `gcs.rs`).
    pub(super) gcs_upload: Option<Arc<GcsUploader>>,
}

impl std::fmt::Debug for BucketClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BucketClient")
            .field("type", &self.store.type_name())
            .field("location", &self.store.location)
            .finish()
    }
}

impl BucketClient {
    pub(super) fn new(mut store: Store) -> BucketClient {
        store.ranged = Some(RANGED_READS);
        BucketClient {
            store,
            gcs_upload: None,
        }
    }

    /// Reads large objects as `reads` says instead of [`RANGED_READS`]: for tests, which
    /// need many ranges from small objects.
    #[doc(hidden)]
    pub fn with_ranged_reads(mut self, reads: RangedReads) -> BucketClient {
        self.store.ranged = Some(reads);
        self
    }

    /// Tells `counter` of every request this client makes from now on.
    pub fn with_operation_counter(mut self, counter: OperationCounter) -> BucketClient {
        self.store.ops = Some(counter);
        self
    }

    /// Uploads a large local file in parts of [`PART_SIZE`], read from the file with at most
    /// two parts in flight. A multipart upload becomes visible only when completed: never
    /// partial.
    async fn put_file_multipart(
        &self,
        key: &ObjPath,
        rel: &str,
        local: &std::path::Path,
    ) -> Result<()> {
        use tokio::io::AsyncReadExt;
        let s = &self.store;
        let upload = s
            .store
            .put_multipart(key)
            .await
            .map_err(|e| s.err("put", rel, e))?;
        let mut w = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let res = async {
            let mut f = tokio::fs::File::open(local)
                .await
                .map_err(Error::io("open", local))?;
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = f.read(&mut buf).await.map_err(Error::io("read", local))?;
                if n == 0 {
                    break;
                }
                w.wait_for_capacity(2)
                    .await
                    .map_err(|e| s.err("put", rel, e))?;
                w.write(&buf[..n]);
            }
            Ok::<(), Error>(())
        }
        .await;
        match res {
            Ok(()) => w
                .finish()
                .await
                .map(|_| ())
                .map_err(|e| s.err("put", rel, e)),
            Err(e) => {
                let _ = w.abort().await;
                Err(e)
            }
        }
    }
}

#[async_trait]
impl ReplicaClient for BucketClient {
    fn type_name(&self) -> &'static str {
        self.store.type_name()
    }

    fn location(&self) -> String {
        self.store.location.clone()
    }

    async fn list(&self, dir: &str) -> Result<Vec<ObjectInfo>> {
        self.store.list(dir).await
    }

    async fn get(&self, path: &str) -> Result<Bytes> {
        self.store.get(path).await
    }

    async fn get_stream(&self, path: &str) -> Result<ObjectStream> {
        self.store.get_stream(path).await
    }

    async fn put_file(&self, path: &str, local: &std::path::Path) -> Result<ObjectInfo> {
        if let Some(u) = &self.gcs_upload {
            return u.put_file(&self.store, path, local).await;
        }
        let size = match LocalFile::open(local).await? {
            LocalFile::Small(data) => return self.put(path, data).await,
            LocalFile::Large(size) => size,
        };
        let key = self.store.key(path)?;
        let upload = self.put_file_multipart(&key, path, local);
        self.store.upload(path, &key, size, upload).await
    }

    async fn put(&self, path: &str, data: Bytes) -> Result<ObjectInfo> {
        if let Some(u) = &self.gcs_upload {
            return u.put(&self.store, path, data).await;
        }
        let s = &self.store;
        let key = s.key(path)?;
        let size = data.len() as u64;
        let upload = async {
            if data.len() > MULTIPART_THRESHOLD {
                let upload = s
                    .store
                    .put_multipart(&key)
                    .await
                    .map_err(|e| s.err("put", path, e))?;
                let mut w = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
                w.put(data);
                w.finish().await.map_err(|e| s.err("put", path, e))?;
            } else {
                s.store
                    .put(&key, PutPayload::from_bytes(data))
                    .await
                    .map_err(|e| s.err("put", path, e))?;
            }
            Ok(())
        };
        s.upload(path, &key, size, upload).await
    }

    fn conditional_writes(&self) -> bool {
        // GCS uploads go through its JSON API (see gcs.rs), which walship does not yet send
        // with generation preconditions.
        self.gcs_upload.is_none()
    }

    async fn get_versioned(&self, path: &str) -> Result<Option<(Bytes, String)>> {
        let s = &self.store;
        let key = s.key(path)?;
        let r = s
            .timed("get", path, 0, async {
                let r = match s.store.get(&key).await {
                    Ok(r) => r,
                    Err(object_store::Error::NotFound { .. }) => return Ok(None),
                    Err(e) => return Err(s.err("get", path, e)),
                };
                let version = r.meta.e_tag.clone().unwrap_or_default();
                let data = r.bytes().await.map_err(|e| s.err("get", path, e))?;
                Ok(Some((data, version)))
            })
            .await?;
        s.count("GET", r.as_ref().map_or(0, |(d, _)| d.len() as u64));
        Ok(r)
    }

    async fn put_if(
        &self,
        path: &str,
        data: Bytes,
        expected: Option<&str>,
    ) -> Result<Option<String>> {
        let s = &self.store;
        let key = s.key(path)?;
        let size = data.len() as u64;
        let mode = match expected {
            None => PutMode::Create,
            Some(e_tag) => PutMode::Update(UpdateVersion {
                e_tag: Some(e_tag.to_string()),
                version: None,
            }),
        };
        s.count("PUT", size);
        s.timed("put", path, size, async {
            let opts = PutOptions {
                mode,
                ..PutOptions::default()
            };
            match s
                .store
                .put_opts(&key, PutPayload::from_bytes(data), opts)
                .await
            {
                Ok(r) => Ok(Some(r.e_tag.unwrap_or_default())),
                Err(
                    object_store::Error::AlreadyExists { .. }
                    | object_store::Error::Precondition { .. },
                ) => Ok(None),
                Err(e) => Err(s.err("put", path, e)),
            }
        })
        .await
    }

    async fn delete(&self, path: &str) -> Result<()> {
        self.store.delete(path).await
    }

    async fn delete_many(&self, paths: &[String]) -> Result<()> {
        self.store.delete_many(paths).await
    }

    async fn delete_all(&self, dir: &str) -> Result<()> {
        self.store.delete_all(dir, false).await
    }
}
