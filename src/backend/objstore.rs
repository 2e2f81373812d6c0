//! What the S3 and WebDAV backends share: an `object_store` store under a key prefix, with a
//! deadline on every operation, errors mapped to a [`BackendErrorKind`] where the store
//! answers, and every request told to the [`OperationCounter`].
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjPath;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, RetryConfig};

use super::ranged::{self, RangedReads};
use super::{ObjectInfo, ObjectStream, OperationCounter};
use crate::error::{BackendErrorKind, Error, Result};

/// Part size of multipart uploads, and the size above which a file upload is streamed.
pub(super) const PART_SIZE: usize = 16 << 20;

/// Deadline of one operation moving `bytes`: 10 s plus 1 s per MiB (a floor of 1 MiB/s).
fn deadline(bytes: u64) -> Duration {
    Duration::from_secs(10 + bytes / (1 << 20))
}

/// Retries of one request inside object_store.
pub(super) fn retry_config() -> RetryConfig {
    // walship's replica loop retries with its own backoff and never advances past what the
    // store confirmed, so each request gives up after a few quick tries instead of
    // object_store's default of ten over three minutes.
    RetryConfig {
        max_retries: 3,
        retry_timeout: Duration::from_secs(30),
        ..Default::default()
    }
}

/// An environment variable's value, when it is set and not empty.
pub(super) fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// HTTP client settings of a store.
pub(super) fn client_options(skip_verify: bool, allow_http: bool) -> ClientOptions {
    ClientOptions::new()
        .with_allow_http(allow_http)
        .with_allow_invalid_certificates(skip_verify)
        .with_connect_timeout(Duration::from_secs(10))
        // The whole-request bound is only a backstop: each operation has its own deadline
        // scaled to its size (see `deadline`), so a stalled server (accepts, never answers)
        // holds a sync for seconds, not minutes.
        .with_timeout(Duration::from_secs(3600))
}

/// An object_store store holding one replica below `prefix`.
#[derive(Clone)]
pub(super) struct Store {
    pub(super) store: Arc<dyn ObjectStore>,
    /// `s3` or `http`: the replica type in errors and metrics.
    type_name: &'static str,
    /// Key prefix inside the bucket / below the URL (no leading or trailing `/`).
    prefix: String,
    /// HTTP only: the base URL's path without slashes at either end (`replica/app`).
    /// object_store's HTTP store reports locations with it in front.
    base_path: String,
    /// The replica, for messages (`s3://bucket/prefix`, the base URL).
    pub(super) location: String,
    /// Told of every request made, for the metrics; none by default.
    pub(super) ops: Option<OperationCounter>,
    /// How `get_stream` reads large objects in parallel ranges; `None` (the default): one
    /// GET whatever the size.
    pub(super) ranged: Option<RangedReads>,
}

impl Store {
    pub(super) fn new(
        type_name: &'static str,
        store: Arc<dyn ObjectStore>,
        prefix: String,
        base_path: String,
        location: String,
    ) -> Store {
        Store {
            store,
            type_name,
            prefix,
            base_path,
            location,
            ops: None,
            ranged: None,
        }
    }

    /// The replica type, for errors and metrics.
    pub(super) fn type_name(&self) -> &'static str {
        self.type_name
    }

    /// One `operation` (`GET`, `PUT`, `LIST`, `DELETE`) of `bytes`, told to the counter.
    pub(super) fn count(&self, operation: &'static str, bytes: u64) {
        if let Some(c) = &self.ops {
            c(self.type_name, operation, bytes);
        }
    }

    /// The key of a path relative to the replica root; refuses paths that leave it.
    pub(super) fn key(&self, rel: &str) -> Result<ObjPath> {
        if rel.starts_with('/') || rel.split('/').any(|c| c == ".." || c == ".") {
            return Err(Error::corrupt(rel, "path escapes the replica root"));
        }
        let full = if self.prefix.is_empty() {
            rel.to_string()
        } else if rel.is_empty() {
            self.prefix.clone()
        } else {
            format!("{}/{rel}", self.prefix)
        };
        ObjPath::parse(&full).map_err(|e| Error::corrupt(rel, e.to_string()))
    }

    /// A location as object_store reports it, relative to the replica root (strips the
    /// HTTP base path and the S3 key prefix).
    pub(super) fn relative(&self, loc: &ObjPath) -> String {
        let mut s = loc.as_ref();
        for base in [self.base_path.as_str(), self.prefix.as_str()] {
            if base.is_empty() {
                continue;
            }
            if let Some(rest) = s.strip_prefix(base) {
                if rest.is_empty() {
                    s = "";
                } else if let Some(r) = rest.strip_prefix('/') {
                    s = r;
                }
            }
        }
        s.to_string()
    }

    /// Runs a store operation under its deadline.
    pub(super) async fn timed<T>(
        &self,
        what: &str,
        rel: &str,
        bytes: u64,
        fut: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let d = deadline(bytes);
        match tokio::time::timeout(d, fut).await {
            Ok(r) => r,
            Err(_) => Err(Error::backend(
                self.type_name,
                BackendErrorKind::Transient,
                format!("{what} {}/{rel}: no answer within {d:?}", self.location),
            )),
        }
    }

    /// The error for `what` on `rel`, with the kind the store's answer tells.
    pub(super) fn err(&self, what: &str, rel: &str, e: object_store::Error) -> Error {
        if let object_store::Error::NotFound { .. } = e {
            return Error::NotFound(format!("{}/{rel}", self.location));
        }
        let text = e.to_string();
        let space = out_of_space(&text);
        let kind = match &e {
            _ if space.is_some() => BackendErrorKind::OutOfSpace,
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. } => BackendErrorKind::Denied,
            // Retries exhausted on a 5xx, a reset or a timeout end up here.
            object_store::Error::Generic { .. } => BackendErrorKind::Transient,
            _ => BackendErrorKind::Other,
        };
        let message = match space {
            // Not the whole answer: it carries a request id that changes on every try, and a
            // message that changes on every try is logged every time.
            Some(why) => format!("{what} {}/{rel}: {why}", self.location),
            None => format!("{what} {}/{rel}: {text}", self.location),
        };
        Error::backend_from(self.type_name, kind, message, e)
    }

    /// The direct children of `dir`, sorted; a missing directory lists as empty.
    pub(super) async fn list(&self, dir: &str) -> Result<Vec<ObjectInfo>> {
        self.count("LIST", 0);
        let prefix = self.key(dir)?;
        let prefix_opt = if prefix.as_ref().is_empty() {
            None
        } else {
            Some(&prefix)
        };
        let res = match self
            .timed("list", dir, 0, async {
                Ok(self.store.list_with_delimiter(prefix_opt).await)
            })
            .await?
        {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(self.err("list", dir, e)),
        };
        let dir_rel = dir.trim_matches('/');
        // Only direct children of `dir`: WebDAV servers also list the directory itself.
        let child = |loc: &ObjPath| -> Option<String> {
            let rel = self.relative(loc);
            let rest = if dir_rel.is_empty() {
                rel.as_str()
            } else {
                rel.strip_prefix(dir_rel)?.strip_prefix('/')?
            };
            (!rest.is_empty() && !rest.contains('/')).then(|| rest.to_string())
        };
        let mut out = Vec::new();
        for p in res.common_prefixes {
            if let Some(name) = child(&p) {
                out.push(ObjectInfo {
                    name,
                    size: 0,
                    modified: SystemTime::UNIX_EPOCH,
                    is_dir: true,
                });
            }
        }
        for o in res.objects {
            if let Some(name) = child(&o.location) {
                out.push(ObjectInfo {
                    name,
                    size: o.size,
                    modified: SystemTime::from(o.last_modified),
                    is_dir: false,
                });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out.dedup_by(|a, b| a.name == b.name);
        Ok(out)
    }

    /// The whole object at `path`.
    pub(super) async fn get(&self, path: &str) -> Result<Bytes> {
        let key = self.key(path)?;
        let data = self
            .timed("get", path, 0, async {
                // A body cut off mid-read (a WebDAV server whose file was just replaced by a
                // MOVE; seen with rclone) is read once more, within the same deadline.
                let mut cut_off = false;
                loop {
                    let r = self
                        .store
                        .get(&key)
                        .await
                        .map_err(|e| self.err("get", path, e))?;
                    // The read timeout bounds a stalled body; a slow one may take its time.
                    match r.bytes().await {
                        Ok(data) => return Ok(data),
                        Err(e)
                            if !cut_off && !matches!(e, object_store::Error::NotFound { .. }) =>
                        {
                            tracing::debug!(path, error = %e, "get: body cut off, reading again");
                            cut_off = true;
                        }
                        Err(e) => return Err(self.err("get", path, e)),
                    }
                }
            })
            .await?;
        self.count("GET", data.len() as u64);
        Ok(data)
    }

    /// The object at `path` as a stream of its body. With [`Store::ranged`] set, an object
    /// larger than its threshold is read in parallel ranges of the version the first GET
    /// found (see `ranged.rs`): that GET's body gives the first range only.
    pub(super) async fn get_stream(&self, path: &str) -> Result<ObjectStream> {
        let key = self.key(path)?;
        let r = self
            .timed("get", path, 0, async {
                self.store
                    .get(&key)
                    .await
                    .map_err(|e| self.err("get", path, e))
            })
            .await?;
        let size = r.meta.size;
        if let Some(plan) = self.ranged.filter(|p| size > p.threshold && p.chunk > 0)
            && let Some(e_tag) = r.meta.e_tag.clone().filter(|t| !t.is_empty())
        {
            self.count("GET", plan.chunk.min(size));
            let body = ranged::read(self, path, key, e_tag, size, plan, r.into_stream());
            return Ok(ObjectStream {
                size: Some(size),
                body,
            });
        }
        self.count("GET", size);
        let (backend, object) = (self.type_name, format!("{}/{path}", self.location));
        let body = r.into_stream().map(move |c| {
            c.map_err(|e| {
                let message = format!("get {object}: {e}");
                Error::backend_from(backend, BackendErrorKind::Transient, message, e)
            })
        });
        Ok(ObjectStream {
            size: Some(size),
            body: body.boxed(),
        })
    }

    /// Runs `upload` (`size` bytes to `path`, stored at `key`) under its deadline, counted,
    /// and reports what it wrote.
    pub(super) async fn upload(
        &self,
        path: &str,
        key: &ObjPath,
        size: u64,
        upload: impl std::future::Future<Output = Result<()>>,
    ) -> Result<ObjectInfo> {
        self.count("PUT", size);
        self.timed("put", path, size, upload).await?;
        Ok(written(key, size))
    }

    /// Deletes `path`; a missing object is fine.
    pub(super) async fn delete(&self, path: &str) -> Result<()> {
        let key = self.key(path)?;
        self.count("DELETE", 0);
        match self.store.delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err("delete", path, e)),
        }
    }

    /// Deletes every path of `paths`; missing ones are fine.
    pub(super) async fn delete_many(&self, paths: &[String]) -> Result<()> {
        let mut keys = Vec::with_capacity(paths.len());
        for p in paths {
            keys.push(self.key(p)?);
            self.count("DELETE", 0);
        }
        let what = paths.first().map(String::as_str).unwrap_or_default();
        self.delete_keys(keys, what).await
    }

    /// Deletes `keys` (counted by the caller); missing ones are fine. `what` names them in
    /// an error. object_store batches these: DeleteObjects with up to 1,000 keys per
    /// request on S3, one DELETE per key (a few at a time) over HTTP.
    async fn delete_keys(&self, keys: Vec<ObjPath>, what: &str) -> Result<()> {
        let stream = futures::stream::iter(keys.into_iter().map(Ok)).boxed();
        let mut deleted = self.store.delete_stream(stream);
        while let Some(r) = deleted.next().await {
            match r {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.err("delete", what, e)),
            }
        }
        Ok(())
    }

    /// Deletes everything below `dir`, and with `collection` the (now empty) directory
    /// itself, as WebDAV has them.
    pub(super) async fn delete_all(&self, dir: &str, collection: bool) -> Result<()> {
        let prefix = self.key(dir)?;
        self.count("LIST", 0);
        let listed: Vec<ObjPath> = match self
            .timed("list", dir, 0, async {
                Ok(self
                    .store
                    .list(Some(&prefix))
                    .map_ok(|m| m.location)
                    .try_collect::<Vec<_>>()
                    .await)
            })
            .await?
        {
            Ok(k) => k,
            Err(object_store::Error::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(self.err("list", dir, e)),
        };
        // Listings report full locations (with the HTTP base path); deletes take keys.
        let mut keys = Vec::with_capacity(listed.len());
        for loc in &listed {
            keys.push(self.key(&self.relative(loc))?);
        }
        for _ in &keys {
            self.count("DELETE", 0);
        }
        self.delete_keys(keys, dir).await?;
        if collection {
            // Remove the now-empty collection too (ignore servers that refuse).
            let _ = self.store.delete(&prefix).await;
        }
        Ok(())
    }
}

/// A local file to upload: read whole when it is small (one request, as a put of bytes),
/// else only its size (streamed or sent in parts by the backend).
pub(super) enum LocalFile {
    Small(Bytes),
    Large(u64),
}

impl LocalFile {
    pub(super) async fn open(local: &std::path::Path) -> Result<LocalFile> {
        let size = tokio::fs::metadata(local)
            .await
            .map_err(Error::io("stat", local))?
            .len();
        if size > PART_SIZE as u64 {
            return Ok(LocalFile::Large(size));
        }
        let data = tokio::fs::read(local)
            .await
            .map_err(Error::io("read", local))?;
        Ok(LocalFile::Small(Bytes::from(data)))
    }
}

/// What a put reports for the object it wrote at `key`: the time is the client's clock at
/// the end of the upload (the stores here do not return theirs on a put).
fn written(key: &ObjPath, size: u64) -> ObjectInfo {
    ObjectInfo {
        name: key.filename().unwrap_or_default().to_string(),
        size,
        modified: SystemTime::now(),
        is_dir: false,
    }
}

/// S3 error codes that mean "no room for this upload" (MinIO's; AWS S3 itself has none).
const OUT_OF_SPACE_CODES: [&str; 2] = ["XMinioStorageFull", "XMinioAdminBucketQuotaExceeded"];

/// When the store's error `text` (object_store's message, which includes the server's
/// answer) says it is out of space: `507 Insufficient Storage` (RFC 4918; MinIO sends it
/// when its drives are full) or one of [`OUT_OF_SPACE_CODES`], the advice for the user,
/// naming the status, the code and the server's own message (not its request id).
fn out_of_space(text: &str) -> Option<String> {
    let tag = |t: &str| -> Option<&str> {
        let from = text.find(&format!("<{t}>"))? + t.len() + 2;
        let len = text[from..].find(&format!("</{t}>"))?;
        Some(text[from..from + len].trim())
    };
    let code = tag("Code").filter(|c| OUT_OF_SPACE_CODES.contains(c));
    let status = text.contains("507 Insufficient Storage");
    if code.is_none() && !status {
        return None;
    }
    let mut detail = Vec::new();
    if status {
        detail.push("507 Insufficient Storage".to_string());
    }
    if let Some(c) = code.or_else(|| tag("Code")) {
        match tag("Message") {
            Some(m) => detail.push(format!("{c}: {m}")),
            None => detail.push(c.to_string()),
        }
    }
    Some(out_of_space_advice(&detail.join(", ")))
}

/// What to tell the user when the store refused an upload for lack of space (`detail`: what
/// the server said).
pub(super) fn out_of_space_advice(detail: &str) -> String {
    format!(
        "the store is out of space and refused the upload ({detail}); free space on it or \
         raise its quota: until then walship keeps the changes in the local shadow WAL and \
         retries, and uploads them once the store accepts writes again"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_space_answers_are_explained_without_request_ids() {
        let minio = |id: &str| {
            format!(
                "Generic S3 error: Error performing PUT http://127.0.0.1:9/b/k in 1.2ms, after 3 \
                 retries, max_retries: 3, retry_timeout: 30s  - Server returned non-2xx status \
                 code: 507 Insufficient Storage: <?xml version=\"1.0\"?><Error><Code>XMinioStorageFull\
                 </Code><Message>Storage backend has reached its minimum free drive threshold. \
                 Please delete a few objects to proceed.</Message><RequestId>{id}</RequestId></Error>"
            )
        };
        let a = out_of_space(&minio("1879A5C3D2E00001")).expect("out of space");
        assert_eq!(a, out_of_space(&minio("1879A5C3D2EFFFFF")).unwrap());
        assert!(a.contains("out of space") && a.contains("507 Insufficient Storage"));
        assert!(
            a.contains("XMinioStorageFull: Storage backend has reached"),
            "{a}"
        );
        assert!(a.contains("free space") && !a.contains("RequestId"), "{a}");
        // A quota error comes with 400, not 507.
        let quota = "status code: 400 Bad Request: <Error><Code>XMinioAdminBucketQuotaExceeded</Code><Message>Bucket quota exceeded</Message></Error>";
        let q = out_of_space(quota).expect("quota");
        assert!(
            q.contains("XMinioAdminBucketQuotaExceeded: Bucket quota exceeded"),
            "{q}"
        );
        assert!(!q.contains("507"), "{q}");
        // A bare 507 (a WebDAV server) and unrelated errors.
        assert!(out_of_space("status code: 507 Insufficient Storage: ").is_some());
        assert_eq!(
            out_of_space(
                "status code: 500 Internal Server Error: <Error><Code>InternalError</Code></Error>"
            ),
            None
        );
        assert_eq!(out_of_space("connection reset by peer"), None);
    }
}
