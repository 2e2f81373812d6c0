//! The HTTP replica (`url: http(s)://...`): a WebDAV server, read and written, or a plain
//! static server (`python3 -m http.server`, nginx `autoindex on`), read only. Which one is
//! probed once, with a PROPFIND on first use, and from then on one of the two does the work
//! ([`super::webdav`], [`super::static_http`]).
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use super::objstore::{Store, client_options, out_of_space_advice, retry_config};
use super::static_http::StaticHttp;
use super::webdav::WebDav;
use super::{ObjectInfo, ObjectStream, OperationCounter, ReplicaClient};
use crate::error::{BackendErrorKind, Error, Result};
use crate::secret::Secret;

/// HTTP replica settings (`url: https://...`, `webdav://...`; `type: http`).
#[derive(Clone, Debug, PartialEq)]
pub struct HttpConfig {
    /// The base URL (`http` or `https`), without credentials.
    pub url: String,
    /// `skip-verify` — default false — disables TLS certificate verification.
    pub skip_verify: bool,
    /// Basic-auth user: `user`, or the URL user part.
    pub user: Option<String>,
    /// Basic-auth password: `password`, or the URL password. Redacted in `Debug`.
    pub password: Option<Secret>,
    /// `bearer-token`, sent as `Authorization: Bearer ...`. Redacted in `Debug`.
    pub bearer_token: Option<Secret>,
}

/// The server, as both kinds of HTTP replica reach it outside object_store.
#[derive(Clone)]
pub(super) struct Http {
    pub(super) client: reqwest::Client,
    /// The base URL, ending in `/`.
    pub(super) base_url: String,
    /// The base URL without the final `/`, for messages.
    pub(super) location: String,
}

impl Http {
    /// URL of a relative path on the server.
    pub(super) fn url_of(&self, rel: &str) -> String {
        format!(
            "{}{}",
            self.base_url,
            rel.split('/')
                .map(percent_encode)
                .collect::<Vec<_>>()
                .join("/")
        )
    }

    /// The error for a request that got no answer, or an answer reqwest refused.
    pub(super) fn err(&self, what: &str, rel: &str, e: reqwest::Error) -> Error {
        // reqwest's Display names the URL, never the Authorization header.
        let message = format!("{what} {}/{rel}: {e}", self.location);
        let kind = match e.status() {
            Some(st) => BackendErrorKind::of_status(st.as_u16()),
            None => BackendErrorKind::Transient,
        };
        Error::backend_from("http", kind, message, e)
    }

    /// The error for an HTTP status `st` that the server answered to `what` on `url`.
    pub(super) fn status_err(&self, what: &str, url: &str, st: u16) -> Error {
        let message = if st == 507 {
            format!(
                "{what} {url}: {}",
                out_of_space_advice("507 Insufficient Storage")
            )
        } else {
            format!("{what} {url}: status {st}")
        };
        Error::backend("http", BackendErrorKind::of_status(st), message)
    }

    /// The error for a write to a static server.
    pub(super) fn read_only(&self) -> Error {
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

/// What the server turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    WebDav,
    Static,
}

/// A replica on an HTTP server: WebDAV when it speaks it, else a read-only static server.
pub struct HttpClient {
    http: Http,
    webdav: WebDav,
    static_http: StaticHttp,
    /// Set by the first successful probe; a failed probe is tried again on the next call.
    mode: tokio::sync::OnceCell<Mode>,
    ops: Option<OperationCounter>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("location", &self.http.location)
            .field("mode", &self.mode.get())
            .finish()
    }
}

impl HttpClient {
    /// A client for `cfg` (no request is made until the first call).
    pub fn new(cfg: &HttpConfig) -> Result<HttpClient> {
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
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .danger_accept_invalid_certs(cfg.skip_verify)
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(600))
            .build()
            .map_err(|e| Error::Config(format!("http replica {url}: {e}")))?;
        let base_path = reqwest::Url::parse(&base_url)
            .map(|u| u.path().trim_matches('/').to_string())
            .unwrap_or_default();
        let http = Http {
            client,
            base_url,
            location: url.clone(),
        };
        let store = Store::new("http", Arc::new(store), String::new(), base_path, url);
        Ok(HttpClient {
            webdav: WebDav::new(store, http.clone()),
            static_http: StaticHttp::new(http.clone()),
            http,
            mode: tokio::sync::OnceCell::new(),
            ops: None,
        })
    }

    /// Tells `counter` of every request this client makes from now on.
    pub fn with_operation_counter(mut self, counter: OperationCounter) -> HttpClient {
        self.webdav.store.ops = Some(counter.clone());
        self.ops = Some(counter);
        self
    }

    fn count(&self, operation: &'static str, bytes: u64) {
        if let Some(c) = &self.ops {
            c("http", operation, bytes);
        }
    }

    /// Whether the server speaks WebDAV (PROPFIND), asked once.
    async fn mode(&self) -> Result<Mode> {
        self.mode.get_or_try_init(|| self.probe()).await.copied()
    }

    async fn probe(&self) -> Result<Mode> {
        let method =
            reqwest::Method::from_bytes(b"PROPFIND").map_err(|e| Error::Config(e.to_string()))?;
        let resp = self
            .http
            .client
            .request(method, &self.http.base_url)
            .header("Depth", "0")
            .send()
            .await
            .map_err(|e| self.http.err("probe", "", e))?;
        let s = resp.status().as_u16();
        let location = &self.http.location;
        let mode = match s {
            207 | 200 => Mode::WebDav,
            // A WebDAV server with no replica there yet.
            404 | 409 => Mode::WebDav,
            400 | 403 | 405 | 501 => Mode::Static,
            401 => {
                return Err(Error::backend(
                    "http",
                    BackendErrorKind::Denied,
                    format!(
                        "{location}: 401 unauthorized: check the replica's user/password or bearer token"
                    ),
                ));
            }
            other => {
                return Err(Error::backend(
                    "http",
                    BackendErrorKind::of_status(other),
                    format!("{location}: unexpected answer {other} to PROPFIND"),
                ));
            }
        };
        if mode == Mode::Static {
            tracing::debug!(%location, status = s, "http replica is a static server: read-only, listing index pages");
        }
        Ok(mode)
    }

    /// The WebDAV side, or the read-only error on a static server.
    async fn writable(&self) -> Result<&WebDav> {
        match self.mode().await? {
            Mode::WebDav => Ok(&self.webdav),
            Mode::Static => Err(self.http.read_only()),
        }
    }
}

#[async_trait]
impl ReplicaClient for HttpClient {
    fn type_name(&self) -> &'static str {
        "http"
    }

    fn location(&self) -> String {
        self.http.location.clone()
    }

    async fn list(&self, dir: &str) -> Result<Vec<ObjectInfo>> {
        match self.mode().await? {
            Mode::WebDav => self.webdav.store.list(dir).await,
            Mode::Static => {
                self.count("LIST", 0);
                self.static_http.list(dir).await
            }
        }
    }

    async fn get(&self, path: &str) -> Result<Bytes> {
        match self.mode().await? {
            Mode::WebDav => self.webdav.store.get(path).await,
            Mode::Static => {
                let data = self.static_http.get(path).await?;
                self.count("GET", data.len() as u64);
                Ok(data)
            }
        }
    }

    async fn get_stream(&self, path: &str) -> Result<ObjectStream> {
        match self.mode().await? {
            Mode::WebDav => self.webdav.store.get_stream(path).await,
            Mode::Static => {
                let s = self.static_http.get_stream(path).await?;
                self.count("GET", s.size.unwrap_or(0));
                Ok(s)
            }
        }
    }

    async fn put_file(&self, path: &str, local: &std::path::Path) -> Result<ObjectInfo> {
        self.writable().await?.put_file(path, local).await
    }

    async fn put(&self, path: &str, data: Bytes) -> Result<ObjectInfo> {
        self.writable().await?.put(path, data).await
    }

    async fn delete(&self, path: &str) -> Result<()> {
        self.writable().await?.store.delete(path).await
    }

    async fn delete_many(&self, paths: &[String]) -> Result<()> {
        self.writable().await?.store.delete_many(paths).await
    }

    async fn delete_all(&self, dir: &str) -> Result<()> {
        self.writable().await?.store.delete_all(dir, true).await
    }

    async fn read_only(&self) -> Result<bool> {
        Ok(self.mode().await? == Mode::Static)
    }

    fn conditional_writes(&self) -> bool {
        true
    }

    async fn lease_unsupported(&self) -> Result<Option<String>> {
        match self.mode().await? {
            Mode::WebDav => {
                self.webdav
                    .lease_unsupported(crate::layout::LEASE_PATH)
                    .await
            }
            Mode::Static => Ok(Some(format!(
                "{} is a plain static HTTP server (read-only)",
                self.http.location
            ))),
        }
    }

    async fn get_versioned(&self, path: &str) -> Result<Option<(Bytes, String)>> {
        self.writable().await?.get_versioned(path).await
    }

    async fn put_if(
        &self,
        path: &str,
        data: Bytes,
        expected: Option<&str>,
    ) -> Result<Option<String>> {
        self.writable().await?.put_if(path, data, expected).await
    }
}

/// Percent-encodes one path segment for a URL.
pub(super) fn percent_encode(s: &str) -> String {
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
