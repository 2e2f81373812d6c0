//! The S3 replica (and S3-compatible stores: MinIO, B2, Spaces, ...) through object_store's
//! AWS store.
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStoreExt, PutPayload, WriteMultipart};

use super::objstore::{LocalFile, PART_SIZE, Store, client_options, retry_config};
use super::options::S3Config;
use super::{ObjectInfo, ObjectStream, OperationCounter, ReplicaClient};
use crate::error::{Error, Result};

/// Objects larger than this are uploaded in parts.
const MULTIPART_THRESHOLD: usize = 64 << 20;

/// A replica in an S3 bucket, below a key prefix.
pub struct S3Client {
    store: Store,
}

impl std::fmt::Debug for S3Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Client")
            .field("location", &self.store.location)
            .finish()
    }
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl S3Client {
    /// A client for `cfg`. Credentials: the config's keys, else `AWS_ACCESS_KEY_ID` /
    /// `AWS_SECRET_ACCESS_KEY` (or Litestream's `LITESTREAM_ACCESS_KEY_ID` /
    /// `LITESTREAM_SECRET_ACCESS_KEY`), else the AWS default chain object_store supports.
    pub fn new(cfg: &S3Config) -> Result<S3Client> {
        let mut b = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(&cfg.bucket);
        let region = cfg
            .region
            .clone()
            .or_else(|| env_nonempty("AWS_REGION"))
            .or_else(|| env_nonempty("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| "us-east-1".to_string());
        b = b.with_region(region);
        let mut allow_http = false;
        if let Some(ep) = &cfg.endpoint {
            let ep = if ep.contains("://") {
                ep.clone()
            } else {
                format!("https://{ep}")
            };
            allow_http = ep.starts_with("http://");
            b = b.with_endpoint(ep);
        }
        b = b.with_virtual_hosted_style_request(!cfg.force_path_style);
        let key = cfg
            .access_key_id
            .clone()
            .or_else(|| env_nonempty("AWS_ACCESS_KEY_ID"))
            .or_else(|| env_nonempty("LITESTREAM_ACCESS_KEY_ID"));
        let secret = cfg
            .secret_access_key
            .as_ref()
            .map(|s| s.expose().to_string())
            .or_else(|| env_nonempty("AWS_SECRET_ACCESS_KEY"))
            .or_else(|| env_nonempty("LITESTREAM_SECRET_ACCESS_KEY"));
        if let Some(k) = key {
            b = b.with_access_key_id(k);
        }
        if let Some(s) = secret {
            b = b.with_secret_access_key(s);
        }
        b = b
            .with_retry(retry_config())
            .with_client_options(client_options(cfg.skip_verify, allow_http));
        let store = b.build().map_err(|e| {
            Error::Config(format!("s3 replica s3://{}/{}: {e}", cfg.bucket, cfg.path))
        })?;
        let prefix = cfg
            .path
            .trim_matches('/')
            .trim_start_matches("./")
            .to_string();
        let prefix = if prefix == "." { String::new() } else { prefix };
        let location = format!("s3://{}/{}", cfg.bucket, prefix);
        Ok(S3Client {
            store: Store::new("s3", Arc::new(store), prefix, String::new(), location),
        })
    }

    /// Tells `counter` of every request this client makes from now on.
    pub fn with_operation_counter(mut self, counter: OperationCounter) -> S3Client {
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
impl ReplicaClient for S3Client {
    fn type_name(&self) -> &'static str {
        "s3"
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
        let size = match LocalFile::open(local).await? {
            LocalFile::Small(data) => return self.put(path, data).await,
            LocalFile::Large(size) => size,
        };
        let key = self.store.key(path)?;
        let upload = self.put_file_multipart(&key, path, local);
        self.store.upload(path, &key, size, upload).await
    }

    async fn put(&self, path: &str, data: Bytes) -> Result<ObjectInfo> {
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
