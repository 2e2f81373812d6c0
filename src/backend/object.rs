//! S3 and HTTP replicas.
//!
//! - S3 (and S3-compatible stores) through `object_store`'s AWS store.
//! - HTTP through `object_store`'s HTTP store, which speaks WebDAV (PUT, GET, DELETE,
//!   PROPFIND): read and write.
//! - A plain static HTTP server (`python3 -m http.server`, nginx `autoindex on`) answers
//!   PROPFIND with 405/501; the HTTP client then reads directory index pages instead
//!   (read-only: restore and listings). Names read from a listing are returned as they are;
//!   every caller parses them with [`crate::layout`], which accepts only the fixed-width
//!   hex names of the layout, so a hostile server cannot point walship elsewhere.
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjPath;
use object_store::{
    ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig, WriteMultipart,
};

use super::options::{HttpConfig, S3Config};
use super::{ObjectInfo, ObjectStream, OperationCounter, ReplicaClient};
use crate::error::{BackendErrorKind, Error, Result};

/// Objects larger than this are uploaded in parts.
const MULTIPART_THRESHOLD: usize = 64 << 20;
/// Part size of multipart uploads.
const PART_SIZE: usize = 16 << 20;
/// Deadline of one operation moving `bytes`: 10 s plus 1 s per MiB (a floor of 1 MiB/s).
fn deadline(bytes: u64) -> Duration {
    Duration::from_secs(10 + bytes / (1 << 20))
}

/// Largest directory index page read from a static server.
const MAX_INDEX_PAGE: usize = 16 << 20;

fn retry_config() -> RetryConfig {
    // walship's replica loop retries with its own backoff and never advances past what the
    // store confirmed, so each request gives up after a few quick tries instead of
    // object_store's default of ten over three minutes.
    RetryConfig {
        max_retries: 3,
        retry_timeout: Duration::from_secs(30),
        ..Default::default()
    }
}

fn client_options(skip_verify: bool, allow_http: bool) -> ClientOptions {
    ClientOptions::new()
        .with_allow_http(allow_http)
        .with_allow_invalid_certificates(skip_verify)
        .with_connect_timeout(Duration::from_secs(10))
        // The whole-request bound is only a backstop: each operation has its own deadline
        // scaled to its size (see `deadline`), so a stalled server (accepts, never answers)
        // holds a sync for seconds, not minutes.
        .with_timeout(Duration::from_secs(3600))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    S3,
    Http,
}

const MODE_UNKNOWN: u8 = 0;
const MODE_WEBDAV: u8 = 1;
const MODE_STATIC: u8 = 2;

/// A replica in an object store (S3) or on an HTTP server (WebDAV, or a static server).
pub struct ObjectClient {
    kind: Kind,
    store: Arc<dyn ObjectStore>,
    /// Key prefix inside the bucket / below the URL (no leading or trailing `/`).
    prefix: String,
    location: String,
    /// HTTP only: base URL ending in `/`, and a plain client for static servers.
    base_url: String,
    /// HTTP only: the base URL's path without slashes at either end (`replica/app`).
    /// object_store's HTTP store reports locations with it in front.
    base_path: String,
    http: Option<reqwest::Client>,
    mode: AtomicU8,
    /// HTTP only: the collections of the base URL exist (created with MKCOL once).
    base_ready: std::sync::atomic::AtomicBool,
    /// Told of every request made, for the metrics; none by default.
    ops: Option<OperationCounter>,
}

impl std::fmt::Debug for ObjectClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectClient")
            .field("kind", &self.kind)
            .field("location", &self.location)
            .finish()
    }
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl ObjectClient {
    /// An S3 client for `cfg`. Credentials: the config's keys, else `AWS_ACCESS_KEY_ID` /
    /// `AWS_SECRET_ACCESS_KEY` (or Litestream's `LITESTREAM_ACCESS_KEY_ID` /
    /// `LITESTREAM_SECRET_ACCESS_KEY`), else the AWS default chain object_store supports.
    pub fn s3(cfg: &S3Config) -> Result<ObjectClient> {
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
        Ok(ObjectClient {
            kind: Kind::S3,
            store: Arc::new(store),
            location: format!("s3://{}/{}", cfg.bucket, prefix),
            prefix,
            base_url: String::new(),
            base_path: String::new(),
            http: None,
            mode: AtomicU8::new(MODE_WEBDAV),
            base_ready: std::sync::atomic::AtomicBool::new(true),
            ops: None,
        })
    }

    /// An HTTP client for `cfg`: WebDAV when the server speaks it, else a read-only reader
    /// of a static server's directory index pages.
    pub fn http(cfg: &HttpConfig) -> Result<ObjectClient> {
        let url = cfg.url.trim_end_matches('/').to_string();
        let base_url = format!("{url}/");
        let mut headers = reqwest::header::HeaderMap::new();
        let auth = match (&cfg.bearer_token, &cfg.user) {
            (Some(t), _) => Some(format!("Bearer {}", t.expose())),
            (None, Some(u)) => {
                use base64::Engine as _;
                let pw = cfg.password.as_ref().map(|p| p.expose()).unwrap_or("");
                Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{u}:{pw}"))
                ))
            }
            _ => None,
        };
        if let Some(a) = auth {
            let mut v = reqwest::header::HeaderValue::from_str(&a).map_err(|_| {
                Error::Config(
                    "http replica: credentials contain characters not allowed in a header".into(),
                )
            })?;
            v.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, v);
        }
        let allow_http = base_url.starts_with("http://");
        let opts =
            client_options(cfg.skip_verify, allow_http).with_default_headers(headers.clone());
        let store = object_store::http::HttpBuilder::new()
            .with_url(&url)
            .with_retry(retry_config())
            .with_client_options(opts)
            .build()
            .map_err(|e| Error::Config(format!("http replica {url}: {e}")))?;
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .danger_accept_invalid_certs(cfg.skip_verify)
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(600))
            .build()
            .map_err(|e| Error::Config(format!("http replica {url}: {e}")))?;
        Ok(ObjectClient {
            kind: Kind::Http,
            store: Arc::new(store),
            prefix: String::new(),
            base_path: reqwest::Url::parse(&base_url)
                .map(|u| u.path().trim_matches('/').to_string())
                .unwrap_or_default(),
            location: url,
            base_url,
            http: Some(http),
            mode: AtomicU8::new(MODE_UNKNOWN),
            base_ready: std::sync::atomic::AtomicBool::new(false),
            ops: None,
        })
    }

    /// Tells `counter` of every request this client makes from now on.
    pub fn with_operation_counter(mut self, counter: OperationCounter) -> ObjectClient {
        self.ops = Some(counter);
        self
    }

    /// One `operation` (`GET`, `PUT`, `LIST`, `DELETE`) of `bytes`, told to the counter.
    fn count(&self, operation: &'static str, bytes: u64) {
        if let Some(c) = &self.ops {
            c(self.type_name(), operation, bytes);
        }
    }

    fn key(&self, rel: &str) -> Result<ObjPath> {
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
    fn relative(&self, loc: &ObjPath) -> String {
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
    async fn timed<T>(
        &self,
        what: &str,
        rel: &str,
        bytes: u64,
        fut: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let d = deadline(bytes);
        match tokio::time::timeout(d, fut).await {
            Ok(r) => r,
            Err(_) => Err(Error::Backend {
                backend: self.type_name().into(),
                kind: BackendErrorKind::Transient,
                source: None,
                message: format!("{what} {}/{rel}: no answer within {d:?}", self.location),
            }),
        }
    }

    fn err(&self, what: &str, rel: &str, e: object_store::Error) -> Error {
        match e {
            object_store::Error::NotFound { .. } => {
                Error::NotFound(format!("{}/{rel}", self.location))
            }
            e => {
                let text = e.to_string();
                let kind = match &e {
                    _ if out_of_space(&text).is_some() => BackendErrorKind::OutOfSpace,
                    object_store::Error::PermissionDenied { .. }
                    | object_store::Error::Unauthenticated { .. } => BackendErrorKind::Denied,
                    // Retries exhausted on a 5xx, a reset or a timeout end up here.
                    object_store::Error::Generic { .. } => BackendErrorKind::Transient,
                    _ => BackendErrorKind::Other,
                };
                let message = match out_of_space(&text) {
                    // Not the whole answer: it carries a request id that changes on every
                    // try, and a message that changes on every try is logged every time.
                    Some(why) => format!("{what} {}/{rel}: {why}", self.location),
                    None => format!("{what} {}/{rel}: {text}", self.location),
                };
                Error::Backend {
                    backend: self.type_name().into(),
                    kind,
                    source: Some(Box::new(e)),
                    message,
                }
            }
        }
    }

    /// The error for an HTTP status `st` that the server answered to `what` on `url`.
    fn status_err(&self, what: &str, url: &str, st: u16) -> Error {
        let message = if st == 507 {
            format!(
                "{what} {url}: {}",
                out_of_space_advice("507 Insufficient Storage")
            )
        } else {
            format!("{what} {url}: status {st}")
        };
        Error::Backend {
            backend: self.type_name().into(),
            kind: BackendErrorKind::of_status(st),
            source: None,
            message,
        }
    }

    /// Decides once whether the HTTP server speaks WebDAV (PROPFIND) or is a static server.
    async fn http_mode(&self) -> Result<u8> {
        let m = self.mode.load(Ordering::Relaxed);
        if m != MODE_UNKNOWN {
            return Ok(m);
        }
        let http = self
            .http
            .as_ref()
            .ok_or_else(|| Error::Config("internal: no http client".into()))?;
        let method =
            reqwest::Method::from_bytes(b"PROPFIND").map_err(|e| Error::Config(e.to_string()))?;
        let resp = http
            .request(method, &self.base_url)
            .header("Depth", "0")
            .send()
            .await
            .map_err(|e| self.http_err("probe", "", e))?;
        let s = resp.status().as_u16();
        let mode = match s {
            207 | 200 => MODE_WEBDAV,
            // A WebDAV server with no replica there yet.
            404 | 409 => MODE_WEBDAV,
            400 | 403 | 405 | 501 => MODE_STATIC,
            401 => {
                return Err(Error::Backend {
                    backend: "http".into(),
                    kind: BackendErrorKind::Denied,
                    source: None,
                    message: format!(
                        "{}: 401 unauthorized: check the replica's user/password or bearer token",
                        self.location
                    ),
                });
            }
            other => {
                return Err(Error::Backend {
                    backend: "http".into(),
                    kind: BackendErrorKind::Other,
                    source: None,
                    message: format!("{}: unexpected answer {other} to PROPFIND", self.location),
                });
            }
        };
        if mode == MODE_STATIC {
            tracing::debug!(location = %self.location, status = s, "http replica is a static server: read-only, listing index pages");
        }
        self.mode.store(mode, Ordering::Relaxed);
        Ok(mode)
    }

    fn http_err(&self, what: &str, rel: &str, e: reqwest::Error) -> Error {
        Error::Backend {
            backend: "http".into(),
            // reqwest's Display names the URL, never the Authorization header.
            message: format!("{what} {}/{rel}: {e}", self.location),
            kind: match e.status() {
                Some(st) => BackendErrorKind::of_status(st.as_u16()),
                None => BackendErrorKind::Transient,
            },
            source: Some(Box::new(e)),
        }
    }

    async fn static_list(&self, dir: &str) -> Result<Vec<ObjectInfo>> {
        let http = self
            .http
            .as_ref()
            .ok_or_else(|| Error::Config("internal: no http client".into()))?;
        let dir = dir.trim_matches('/');
        let url = if dir.is_empty() {
            self.base_url.clone()
        } else {
            format!("{}{dir}/", self.base_url)
        };
        let resp = http
            .get(&url)
            .send()
            .await
            .map_err(|e| self.http_err("list", dir, e))?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(Vec::new());
        }
        if !resp.status().is_success() {
            return Err(Error::Backend {
                backend: "http".into(),
                kind: BackendErrorKind::of_status(resp.status().as_u16()),
                source: None,
                message: format!("list {url}: status {}", resp.status()),
            });
        }
        let body = read_limited(resp, MAX_INDEX_PAGE)
            .await
            .map_err(|e| match e {
                Some(e) => self.http_err("list", dir, e),
                None => Error::corrupt(
                    url.clone(),
                    format!("directory index larger than {MAX_INDEX_PAGE} bytes"),
                ),
            })?;
        let text = String::from_utf8_lossy(&body);
        // nginx `autoindex_format json;` carries exact sizes and times: no HEAD needed.
        if let Some(mut entries) = parse_json_index(&text) {
            entries.sort_by(|a, b| a.name.cmp(&b.name));
            entries.dedup_by(|a, b| a.name == b.name);
            return Ok(entries);
        }
        let mut names: Vec<(String, bool)> = parse_index(&text);
        names.sort();
        names.dedup();
        // Sizes and times of files come from HEAD (Content-Length, Last-Modified), as a
        // plain index page may not carry them.
        let heads = futures::stream::iter(names.into_iter().map(|(name, is_dir)| {
            let url = format!("{url}{}", percent_encode(&name));
            async move {
                if is_dir {
                    return Ok::<_, Error>(Some(ObjectInfo {
                        name,
                        size: 0,
                        modified: SystemTime::UNIX_EPOCH,
                        is_dir: true,
                    }));
                }
                let r = http
                    .head(&url)
                    .send()
                    .await
                    .map_err(|e| self.http_err("head", &name, e))?;
                if r.status() == reqwest::StatusCode::NOT_FOUND {
                    return Ok(None);
                }
                if !r.status().is_success() {
                    return Err(Error::Backend {
                        backend: "http".into(),
                        kind: BackendErrorKind::of_status(r.status().as_u16()),
                        source: None,
                        message: format!("head {url}: status {}", r.status()),
                    });
                }
                let size = r
                    .headers()
                    .get(reqwest::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let modified = r
                    .headers()
                    .get(reqwest::header::LAST_MODIFIED)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| httpdate::parse_http_date(v).ok())
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                Ok(Some(ObjectInfo {
                    name,
                    size,
                    modified,
                    is_dir: false,
                }))
            }
        }))
        // Small static servers (python's http.server) queue only a few connections.
        .buffered(4)
        .try_collect::<Vec<_>>()
        .await?;
        let mut out: Vec<ObjectInfo> = heads.into_iter().flatten().collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn static_get(&self, rel: &str) -> Result<Bytes> {
        let resp = self.static_get_response(rel).await?;
        resp.bytes().await.map_err(|e| self.http_err("get", rel, e))
    }

    /// URL of a relative path on the HTTP server.
    fn url_of(&self, rel: &str) -> String {
        format!(
            "{}{}",
            self.base_url,
            rel.split('/')
                .map(percent_encode)
                .collect::<Vec<_>>()
                .join("/")
        )
    }

    /// GET of a relative path on the static server: the response when it succeeded, a
    /// NotFound or Backend error naming the URL otherwise.
    async fn static_get_response(&self, rel: &str) -> Result<reqwest::Response> {
        let http = self
            .http
            .as_ref()
            .ok_or_else(|| Error::Config("internal: no http client".into()))?;
        let url = self.url_of(rel);
        let resp = http
            .get(&url)
            .send()
            .await
            .map_err(|e| self.http_err("get", rel, e))?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Err(Error::NotFound(url));
        }
        if !resp.status().is_success() {
            return Err(Error::Backend {
                backend: "http".into(),
                kind: BackendErrorKind::of_status(resp.status().as_u16()),
                source: None,
                message: format!("get {url}: status {}", resp.status()),
            });
        }
        Ok(resp)
    }

    async fn static_get_stream(&self, rel: &str) -> Result<ObjectStream> {
        let resp = self.static_get_response(rel).await?;
        let url = self.url_of(rel);
        let size = resp.content_length();
        let body = resp.bytes_stream().map(move |r| {
            r.map_err(|e| Error::Backend {
                backend: "http".into(),
                kind: BackendErrorKind::Transient,
                message: format!("get {url}: {e}"),
                source: Some(Box::new(e)),
            })
        });
        Ok(ObjectStream {
            size,
            body: body.boxed(),
        })
    }

    /// Creates the WebDAV collections that hold `rel` (below the base URL).
    async fn mkcol_parents(&self, rel: &str) -> Result<()> {
        let http = self
            .http
            .as_ref()
            .ok_or_else(|| Error::Config("internal: no http client".into()))?;
        let method =
            reqwest::Method::from_bytes(b"MKCOL").map_err(|e| Error::Config(e.to_string()))?;
        let parts: Vec<&str> = rel.split('/').collect();
        for i in 1..parts.len() {
            let url = format!("{}/", self.url_of(&parts[..i].join("/")));
            let r = http
                .request(method.clone(), &url)
                .send()
                .await
                .map_err(|e| self.http_err("mkcol", rel, e))?;
            let st = r.status().as_u16();
            if !(st == 201 || st == 405 || st == 301 || st == 200) {
                return Err(self.status_err("create collection", &url, st));
            }
        }
        Ok(())
    }

    /// WebDAV PUT of the local file `local` (`size` bytes) to `rel`, the body streamed from
    /// the file; missing collections are created once on 404/409.
    async fn webdav_put_file(&self, rel: &str, local: &std::path::Path, size: u64) -> Result<()> {
        let http = self
            .http
            .as_ref()
            .ok_or_else(|| Error::Config("internal: no http client".into()))?;
        let url = self.url_of(rel);
        for attempt in 0..2 {
            let f = tokio::fs::File::open(local)
                .await
                .map_err(Error::io("open", local))?;
            let body =
                reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(f, 1 << 20));
            let resp = http
                .put(&url)
                .header(reqwest::header::CONTENT_LENGTH, size)
                .body(body)
                .send()
                .await
                .map_err(|e| self.http_err("put", rel, e))?;
            let st = resp.status().as_u16();
            if matches!(st, 200 | 201 | 204) {
                return Ok(());
            }
            if attempt == 0 && matches!(st, 404 | 409) {
                self.mkcol_parents(rel).await?;
                continue;
            }
            return Err(self.status_err("put", &url, st));
        }
        Err(Error::Backend {
            backend: "http".into(),
            kind: BackendErrorKind::Other,
            source: None,
            message: format!("put {url}: collections missing after MKCOL"),
        })
    }

    /// MOVE `tmp_rel` over `rel` (`Overwrite: T`). `Ok(false)` when the server has no MOVE.
    async fn webdav_move(&self, tmp_rel: &str, rel: &str) -> Result<bool> {
        let http = self
            .http
            .as_ref()
            .ok_or_else(|| Error::Config("internal: no http client".into()))?;
        let method =
            reqwest::Method::from_bytes(b"MOVE").map_err(|e| Error::Config(e.to_string()))?;
        let resp = http
            .request(method, self.url_of(tmp_rel))
            .header("Destination", self.url_of(rel))
            .header("Overwrite", "T")
            .send()
            .await
            .map_err(|e| self.http_err("move", rel, e))?;
        let st = resp.status().as_u16();
        if matches!(st, 200 | 201 | 204) {
            return Ok(true);
        }
        if let Ok(k) = self.key(tmp_rel) {
            let _ = self.store.delete(&k).await;
        }
        if matches!(st, 405 | 501) {
            return Ok(false);
        }
        Err(self.status_err("move into place", &self.url_of(rel), st))
    }

    /// Uploads a large local file to S3 in parts of [`PART_SIZE`], read from the file with
    /// at most two parts in flight.
    async fn s3_put_file_multipart(
        &self,
        key: &ObjPath,
        rel: &str,
        local: &std::path::Path,
    ) -> Result<()> {
        use tokio::io::AsyncReadExt;
        let upload = self
            .store
            .put_multipart(key)
            .await
            .map_err(|e| self.err("put", rel, e))?;
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
                    .map_err(|e| self.err("put", rel, e))?;
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
                .map_err(|e| self.err("put", rel, e)),
            Err(e) => {
                let _ = w.abort().await;
                Err(e)
            }
        }
    }

    /// WebDAV: uploads with `put` to `<path>.<random>.tmp`, then `MOVE`s it over `<path>`
    /// (`Overwrite: T`), so readers never see a partial object (a WebDAV PUT may rewrite
    /// the file in place; rclone does). Servers without MOVE get `put` to `<path>` itself.
    async fn webdav_atomic<F, Fut>(&self, path: &str, put: F) -> Result<()>
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = Result<()>>,
    {
        let mut r = [0u8; 8];
        let _ = getrandom::fill(&mut r);
        let tmp_rel = format!("{path}.{:016x}.tmp", u64::from_be_bytes(r));
        put(tmp_rel.clone()).await?;
        if !self.webdav_move(&tmp_rel, path).await? {
            put(path.to_string()).await?;
        }
        Ok(())
    }

    /// The key of `path` for an upload: fails on a read-only static HTTP server, and creates
    /// the WebDAV collections of the base URL first.
    async fn writable_key(&self, path: &str) -> Result<ObjPath> {
        if self.kind == Kind::Http {
            if self.http_mode().await? == MODE_STATIC {
                return Err(self.read_only());
            }
            self.ensure_base().await?;
        }
        self.key(path)
    }

    /// Runs `upload` (`size` bytes to `path`, stored at `key`) under its deadline, counted in
    /// the metrics, and reports what it wrote.
    async fn upload(
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

    /// Creates the WebDAV collections of the base URL's path (`/backups/app/` needs
    /// `/backups/` and `/backups/app/`): object_store's HTTP store creates the collections
    /// below its base URL on demand, but not the base itself.
    async fn ensure_base(&self) -> Result<()> {
        if self.base_ready.load(Ordering::Relaxed) {
            return Ok(());
        }
        let http = self
            .http
            .as_ref()
            .ok_or_else(|| Error::Config("internal: no http client".into()))?;
        let url = reqwest::Url::parse(&self.base_url)
            .map_err(|e| Error::Config(format!("http replica {}: {e}", self.location)))?;
        let segments: Vec<String> = url
            .path_segments()
            .map(|s| s.filter(|x| !x.is_empty()).map(str::to_owned).collect())
            .unwrap_or_default();
        let method =
            reqwest::Method::from_bytes(b"MKCOL").map_err(|e| Error::Config(e.to_string()))?;
        let mut path = String::new();
        for seg in segments {
            path.push('/');
            path.push_str(&seg);
            let mut u = url.clone();
            u.set_path(&format!("{path}/"));
            let r = http
                .request(method.clone(), u.clone())
                .send()
                .await
                .map_err(|e| self.http_err("mkcol", "", e))?;
            // 201 created; 405 (or 301 on some servers) already exists.
            let st = r.status().as_u16();
            if !(st == 201 || st == 405 || st == 301 || st == 200) {
                return Err(self.status_err("create collection", u.as_ref(), st));
            }
        }
        self.base_ready.store(true, Ordering::Relaxed);
        Ok(())
    }

    fn read_only(&self) -> Error {
        Error::backend(
            "http",
            BackendErrorKind::ReadOnly,
            format!(
                "{} is a plain static HTTP server (no WebDAV): it can be restored from and listed, not written to; replicate to a WebDAV server or a file replica",
                self.location
            ),
        )
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
fn out_of_space_advice(detail: &str) -> String {
    format!(
        "the store is out of space and refused the upload ({detail}); free space on it or \
         raise its quota: until then walship keeps the changes in the local shadow WAL and \
         retries, and uploads them once the store accepts writes again"
    )
}

/// Reads a response body, refusing more than `limit` bytes (`Err(None)` when over).
async fn read_limited(
    resp: reqwest::Response,
    limit: usize,
) -> std::result::Result<Vec<u8>, Option<reqwest::Error>> {
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(Some)?;
        if out.len() + chunk.len() > limit {
            return Err(None);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Names in a directory index page: every `href="..."` that names a direct child
/// (`name` or `name/`), percent-decoded; parent links, queries, absolute URLs and anything
/// with a `/` inside are skipped. Works for python's http.server and nginx's autoindex.
pub fn parse_index(html: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find("href=\"") {
        rest = &rest[i + 6..];
        let Some(end) = rest.find('"') else { break };
        let raw = &rest[..end];
        rest = &rest[end..];
        if raw.starts_with('?')
            || raw.starts_with('#')
            || raw.contains("://")
            || raw.starts_with('/')
        {
            continue;
        }
        let decoded = percent_decode(raw);
        let (name, is_dir) = match decoded.strip_suffix('/') {
            Some(n) => (n.to_string(), true),
            None => (decoded, false),
        };
        if name.is_empty()
            || name == "."
            || name == ".."
            || name.contains('/')
            || name.contains('\\')
        {
            continue;
        }
        out.push((name, is_dir));
    }
    out
}

/// Entries of an nginx `autoindex_format json;` listing:
/// `[{"name":"x","type":"file","mtime":"<HTTP date>","size":470}, ...]`, directories with
/// `"type":"directory"` and no size. `None` when `text` is not such a JSON array (an HTML
/// page). Names pass the same filter as [`parse_index`]; entries of other types (links,
/// sockets) and unreadable ones are skipped.
pub fn parse_json_index(text: &str) -> Option<Vec<ObjectInfo>> {
    if !text.trim_start().starts_with('[') {
        return None;
    }
    let items: Vec<serde_json::Value> = serde_json::from_str(text).ok()?;
    let mut out = Vec::new();
    for it in items {
        let Some(name) = it.get("name").and_then(|v| v.as_str()) else {
            continue;
        };
        if name.is_empty()
            || name == "."
            || name == ".."
            || name.contains('/')
            || name.contains('\\')
        {
            continue;
        }
        let is_dir = match it.get("type").and_then(|v| v.as_str()) {
            Some("directory") => true,
            Some("file") => false,
            _ => continue,
        };
        let size = it.get("size").and_then(|v| v.as_u64()).unwrap_or(0);
        let modified = it
            .get("mtime")
            .and_then(|v| v.as_str())
            .and_then(|v| httpdate::parse_http_date(v).ok())
            .unwrap_or(SystemTime::UNIX_EPOCH);
        out.push(ObjectInfo {
            name: name.to_string(),
            size: if is_dir { 0 } else { size },
            modified: if is_dir {
                SystemTime::UNIX_EPOCH
            } else {
                modified
            },
            is_dir,
        });
    }
    Some(out)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.bytes() {
        if c.is_ascii_alphanumeric() || b"-._~".contains(&c) {
            out.push(c as char);
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    out
}

#[async_trait]
impl ReplicaClient for ObjectClient {
    fn type_name(&self) -> &'static str {
        match self.kind {
            Kind::S3 => "s3",
            Kind::Http => "http",
        }
    }

    fn location(&self) -> String {
        self.location.clone()
    }

    async fn list(&self, dir: &str) -> Result<Vec<ObjectInfo>> {
        self.count("LIST", 0);
        if self.kind == Kind::Http && self.http_mode().await? == MODE_STATIC {
            return self.static_list(dir).await;
        }
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

    async fn get(&self, path: &str) -> Result<Bytes> {
        if self.kind == Kind::Http && self.http_mode().await? == MODE_STATIC {
            let data = self.static_get(path).await?;
            self.count("GET", data.len() as u64);
            return Ok(data);
        }
        let key = self.key(path)?;
        let data = self
            .timed("get", path, 0, async {
                let r = self
                    .store
                    .get(&key)
                    .await
                    .map_err(|e| self.err("get", path, e))?;
                // The read timeout bounds a stalled body; a slow one may take its time.
                r.bytes().await.map_err(|e| self.err("get", path, e))
            })
            .await?;
        self.count("GET", data.len() as u64);
        Ok(data)
    }

    async fn get_stream(&self, path: &str) -> Result<ObjectStream> {
        if self.kind == Kind::Http && self.http_mode().await? == MODE_STATIC {
            let s = self.static_get_stream(path).await?;
            self.count("GET", s.size.unwrap_or(0));
            return Ok(s);
        }
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
        self.count("GET", size);
        let (backend, object) = (self.type_name(), format!("{}/{path}", self.location));
        let body = r.into_stream().map(move |c| {
            c.map_err(|e| Error::Backend {
                backend: backend.into(),
                kind: BackendErrorKind::Transient,
                message: format!("get {object}: {e}"),
                source: Some(Box::new(e)),
            })
        });
        Ok(ObjectStream {
            size: Some(size),
            body: body.boxed(),
        })
    }

    async fn put_file(&self, path: &str, local: &std::path::Path) -> Result<ObjectInfo> {
        let size = tokio::fs::metadata(local)
            .await
            .map_err(Error::io("stat", local))?
            .len();
        if size <= PART_SIZE as u64 {
            // Small: one request, as `put` does.
            let data = tokio::fs::read(local)
                .await
                .map_err(Error::io("read", local))?;
            return self.put(path, Bytes::from(data)).await;
        }
        let key = self.writable_key(path).await?;
        let upload = async {
            match self.kind {
                // A multipart upload becomes visible only when completed: never partial.
                Kind::S3 => self.s3_put_file_multipart(&key, path, local).await,
                Kind::Http => {
                    self.webdav_atomic(path, |rel| async move {
                        self.webdav_put_file(&rel, local, size).await
                    })
                    .await
                }
            }
        };
        self.upload(path, &key, size, upload).await
    }

    async fn put(&self, path: &str, data: Bytes) -> Result<ObjectInfo> {
        let key = self.writable_key(path).await?;
        let size = data.len() as u64;
        let upload = async {
            match self.kind {
                Kind::S3 if data.len() > MULTIPART_THRESHOLD => {
                    let upload = self
                        .store
                        .put_multipart(&key)
                        .await
                        .map_err(|e| self.err("put", path, e))?;
                    let mut w = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
                    w.put(data);
                    w.finish().await.map_err(|e| self.err("put", path, e))?;
                    Ok(())
                }
                Kind::S3 => {
                    self.store
                        .put(&key, PutPayload::from_bytes(data))
                        .await
                        .map_err(|e| self.err("put", path, e))?;
                    Ok(())
                }
                Kind::Http => {
                    self.webdav_atomic(path, |rel| {
                        let data = data.clone();
                        async move {
                            self.store
                                .put(&self.key(&rel)?, PutPayload::from_bytes(data))
                                .await
                                .map_err(|e| self.err("put", path, e))?;
                            Ok(())
                        }
                    })
                    .await
                }
            }
        };
        self.upload(path, &key, size, upload).await
    }

    async fn delete(&self, path: &str) -> Result<()> {
        if self.kind == Kind::Http && self.http_mode().await? == MODE_STATIC {
            return Err(self.read_only());
        }
        let key = self.key(path)?;
        self.count("DELETE", 0);
        match self.store.delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err("delete", path, e)),
        }
    }

    async fn delete_many(&self, paths: &[String]) -> Result<()> {
        if self.kind == Kind::Http && self.http_mode().await? == MODE_STATIC {
            return Err(self.read_only());
        }
        let mut keys = Vec::with_capacity(paths.len());
        for p in paths {
            keys.push(self.key(p)?);
            self.count("DELETE", 0);
        }
        // object_store batches these: DeleteObjects with up to 1,000 keys per request on
        // S3, one DELETE per key (a few at a time) over HTTP.
        let stream = futures::stream::iter(keys.into_iter().map(Ok)).boxed();
        let mut deleted = self.store.delete_stream(stream);
        while let Some(r) = deleted.next().await {
            match r {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => {
                    let what = paths.first().map(String::as_str).unwrap_or_default();
                    return Err(self.err("delete", what, e));
                }
            }
        }
        Ok(())
    }

    async fn delete_all(&self, dir: &str) -> Result<()> {
        if self.kind == Kind::Http && self.http_mode().await? == MODE_STATIC {
            return Err(self.read_only());
        }
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
        let stream = futures::stream::iter(keys.into_iter().map(Ok)).boxed();
        let mut deleted = self.store.delete_stream(stream);
        while let Some(r) = deleted.next().await {
            match r {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.err("delete", dir, e)),
            }
        }
        if self.kind == Kind::Http {
            // Remove the now-empty collection too (ignore servers that refuse).
            let _ = self.store.delete(&prefix).await;
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_pages_of_python_and_nginx() {
        let py = r#"<ul><li><a href="generations/">generations/</a></li><li><a href="a%20b.txt">a b.txt</a></li>
            <li><a href="../">../</a></li><li><a href="?C=M">sort</a></li><li><a href="http://evil/x">x</a></li>
            <li><a href="/etc/passwd">p</a></li><li><a href="..%2F..%2Fetc">t</a></li></ul>"#;
        assert_eq!(
            parse_index(py),
            vec![
                ("generations".to_string(), true),
                ("a b.txt".to_string(), false)
            ]
        );
        let nginx = "<pre><a href=\"../\">../</a>\n<a href=\"00000000_00000000.wal.lz4\">00000000_00000000.wal.lz4</a>   21-Nov-2026 23:15  470\n</pre>";
        assert_eq!(
            parse_index(nginx),
            vec![("00000000_00000000.wal.lz4".to_string(), false)]
        );
        // nginx cuts link texts longer than 50 characters ("..>"); the href is whole.
        let long = format!("{}.snapshot.lz4", "0".repeat(48));
        let cut = format!(
            "<pre><a href=\"../\">../</a>\n<a href=\"{long}\">{}..&gt;</a> 22-Nov-2026 07:59  9\n</pre>",
            &long[..47]
        );
        assert_eq!(parse_index(&cut), vec![(long, false)]);
        assert_eq!(parse_json_index(nginx), None);
    }

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

    #[test]
    fn nginx_json_index() {
        let json = r#"[
{ "name":"generations", "type":"directory", "mtime":"Sat, 21 Nov 2026 23:15:22 GMT" },
{ "name":"00000000_00000000.wal.lz4", "type":"file", "mtime":"Sat, 21 Nov 2026 23:15:22 GMT", "size":470 },
{ "name":"..", "type":"directory" }, { "name":"a/b", "type":"file", "size":1 },
{ "name":"link", "type":"other" }, { "type":"file" }
]"#;
        let got = parse_json_index(json).expect("a json listing");
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].name, "generations");
        assert!(got[0].is_dir);
        assert_eq!(got[1].name, "00000000_00000000.wal.lz4");
        assert_eq!((got[1].size, got[1].is_dir), (470, false));
        assert_eq!(
            got[1].modified,
            httpdate::parse_http_date("Sat, 21 Nov 2026 23:15:22 GMT").unwrap()
        );
        assert_eq!(parse_json_index("[not json"), None);
    }
}
