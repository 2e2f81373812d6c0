//! The write side of a WebDAV replica: object_store's HTTP store reads, lists and deletes
//! (PROPFIND, GET, DELETE); uploads go to a temporary name and are `MOVE`d over the final
//! one, so no reader ever sees a partial object, and the collections they need are created
//! with MKCOL.
//!
//! The replica lease's compare-and-swap ([`super::ReplicaClient::put_if`]) rests on WebDAV
//! locking (RFC 4918 class 2), because servers may ignore `If-Match` and `If-None-Match` on
//! PUT (`rclone serve webdav` does). A swap takes an exclusive write LOCK on the lease object
//! (a [`LOCK_TIMEOUT_S`] timeout), reads and compares it, writes the new content to a
//! temporary name and MOVEs it over the object with the lock token in an `If:` header, then
//! UNLOCKs. The server checks the token as it performs the MOVE, so:
//! - of two writers, only the lock holder can write, and it compares under the lock;
//! - a holder paused between its compare and its MOVE past the lock's timeout (its lock
//!   expired, another writer may have swapped meanwhile) gets 412 or 423 from the MOVE and
//!   starts over; nothing it sends lands without a live lock;
//! - a holder that dies holding the lock delays the next swap by the timeout at most.
//!
//! A server that does not advertise class 2 (`DAV:` header of OPTIONS), refuses LOCK, or
//! grants a second exclusive lock on a locked object holds no lease
//! ([`WebDav::lease_unsupported`] says why).
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use object_store::{ObjectStoreExt, PutPayload};

use super::ObjectInfo;
use super::http::Http;
use super::objstore::{LocalFile, Store};
use crate::error::{BackendErrorKind, Error, Result};

/// How long, in seconds, a lock on the lease object lasts on the server: held for one
/// swap (milliseconds), it only matters when its holder dies or stalls holding it.
const LOCK_TIMEOUT_S: u64 = 10;

/// How long a swap waits for another writer's lock on the lease object to go.
const LOCK_WAIT: Duration = Duration::from_secs(LOCK_TIMEOUT_S + 5);

/// How a swap under a lock ended.
enum Swap {
    /// Written: the new version.
    Done(String),
    /// The object is not at the expected version.
    Mismatch,
    /// The server refused the write under the token: the lock expired meanwhile.
    LockLost,
}

/// The answer to a LOCK.
enum Locked {
    /// Granted: the token, with its angle brackets, as `If:` and `Lock-Token:` take it.
    Token(String),
    /// Another lock holds the object (423).
    Busy,
    /// The server has no LOCK (405, 501).
    Refused(u16),
}

/// A WebDAV server holding one replica below its base URL.
pub(super) struct WebDav {
    pub(super) store: Store,
    http: Http,
    /// The collections of the base URL exist (created with MKCOL once).
    base_ready: AtomicBool,
}

impl WebDav {
    pub(super) fn new(store: Store, http: Http) -> WebDav {
        WebDav {
            store,
            http,
            base_ready: AtomicBool::new(false),
        }
    }

    /// Uploads `data` to `path`.
    pub(super) async fn put(&self, path: &str, data: Bytes) -> Result<ObjectInfo> {
        let key = self.writable_key(path).await?;
        let size = data.len() as u64;
        let upload = self.atomic(path, |rel| {
            let data = data.clone();
            async move {
                self.store
                    .store
                    .put(&self.store.key(&rel)?, PutPayload::from_bytes(data))
                    .await
                    .map_err(|e| self.store.err("put", path, e))?;
                Ok(())
            }
        });
        self.store.upload(path, &key, size, upload).await
    }

    /// Uploads the local file `local` to `path`; a large one is streamed from the file.
    pub(super) async fn put_file(&self, path: &str, local: &std::path::Path) -> Result<ObjectInfo> {
        let size = match LocalFile::open(local).await? {
            LocalFile::Small(data) => return self.put(path, data).await,
            LocalFile::Large(size) => size,
        };
        let key = self.writable_key(path).await?;
        let upload = self.atomic(path, |rel| async move {
            self.put_streamed(&rel, local, size).await
        });
        self.store.upload(path, &key, size, upload).await
    }

    /// The key of `path` for an upload, once the collections of the base URL exist.
    async fn writable_key(&self, path: &str) -> Result<object_store::path::Path> {
        self.ensure_base().await?;
        self.store.key(path)
    }

    /// Uploads with `put` to `<path>.<random>.tmp`, then `MOVE`s it over `<path>`
    /// (`Overwrite: T`), so readers never see a partial object (a WebDAV PUT may rewrite the
    /// file in place; rclone does). Servers without MOVE get `put` to `<path>` itself.
    async fn atomic<F, Fut>(&self, path: &str, put: F) -> Result<()>
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = Result<()>>,
    {
        let mut r = [0u8; 8];
        let _ = getrandom::fill(&mut r);
        let tmp_rel = format!("{path}.{:016x}.tmp", u64::from_be_bytes(r));
        put(tmp_rel.clone()).await?;
        if !self.move_into_place(&tmp_rel, path).await? {
            put(path.to_string()).await?;
        }
        Ok(())
    }

    /// PUT of the local file `local` (`size` bytes) to `rel`, the body streamed from the
    /// file; missing collections are created once on 404/409.
    async fn put_streamed(&self, rel: &str, local: &std::path::Path, size: u64) -> Result<()> {
        let url = self.http.url_of(rel);
        for attempt in 0..2 {
            let f = tokio::fs::File::open(local)
                .await
                .map_err(Error::io("open", local))?;
            let body =
                reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(f, 1 << 20));
            let resp = self
                .http
                .client
                .put(&url)
                .header(reqwest::header::CONTENT_LENGTH, size)
                .body(body)
                .send()
                .await
                .map_err(|e| self.http.err("put", rel, e))?;
            let st = resp.status().as_u16();
            if matches!(st, 200 | 201 | 204) {
                return Ok(());
            }
            if attempt == 0 && matches!(st, 404 | 409) {
                self.mkcol_parents(rel).await?;
                continue;
            }
            return Err(self.http.status_err("put", &url, st));
        }
        Err(Error::backend(
            "http",
            BackendErrorKind::Other,
            format!("put {url}: collections missing after MKCOL"),
        ))
    }

    /// Whether the server can hold the lease (see the module docs): `Some(why)` when it
    /// cannot. Asks with OPTIONS, then LOCKs `rel` twice: a server that grants the second
    /// exclusive lock does not enforce locks. Both are released.
    pub(super) async fn lease_unsupported(&self, rel: &str) -> Result<Option<String>> {
        let location = &self.http.location;
        let resp = self
            .http
            .client
            .request(reqwest::Method::OPTIONS, &self.http.base_url)
            .send()
            .await
            .map_err(|e| self.http.err("options", "", e))?;
        let dav = resp
            .headers()
            .get("dav")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        if !dav.split(',').any(|c| c.trim() == "2") {
            return Ok(Some(format!(
                "the WebDAV server at {location} does not offer locking (its DAV header is \
                 {dav:?}, without class 2), which the lease's compare-and-swap needs because \
                 WebDAV servers may ignore If-Match on PUT"
            )));
        }
        let refused = |st: u16| {
            Some(format!(
                "the WebDAV server at {location} advertises locking but refuses LOCK (status \
                 {st}), which the lease's compare-and-swap needs"
            ))
        };
        let first = match self.lock(rel).await? {
            Locked::Token(t) => t,
            // Someone else holds a lock on it: enforced.
            Locked::Busy => return Ok(None),
            Locked::Refused(st) => return Ok(refused(st)),
        };
        let second = self.lock(rel).await;
        self.unlock(rel, &first).await;
        match second? {
            Locked::Busy => Ok(None),
            Locked::Token(token) => {
                self.unlock(rel, &token).await;
                Ok(Some(format!(
                    "the WebDAV server at {location} granted two exclusive locks on one object \
                     at once: it does not enforce locks, which the lease's compare-and-swap needs"
                )))
            }
            Locked::Refused(st) => Ok(refused(st)),
        }
    }

    /// Asks for an exclusive write lock on `rel` for [`LOCK_TIMEOUT_S`].
    async fn lock(&self, rel: &str) -> Result<Locked> {
        self.ensure_base().await?;
        let method =
            reqwest::Method::from_bytes(b"LOCK").map_err(|e| Error::Config(e.to_string()))?;
        let owner = format!(
            "walship pid {} on {}",
            std::process::id(),
            crate::platform::hostname()
        );
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\
             <D:lockinfo xmlns:D=\"DAV:\"><D:lockscope><D:exclusive/></D:lockscope>\
             <D:locktype><D:write/></D:locktype><D:owner>{}</D:owner></D:lockinfo>",
            xml_escape(&owner)
        );
        let url = self.http.url_of(rel);
        let resp = self
            .http
            .client
            .request(method, &url)
            .header("Timeout", format!("Second-{LOCK_TIMEOUT_S}"))
            .header("Depth", "0")
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/xml; charset=utf-8",
            )
            .body(body)
            .send()
            .await
            .map_err(|e| self.http.err("lock", rel, e))?;
        match resp.status().as_u16() {
            200 | 201 => {}
            423 => return Ok(Locked::Busy),
            st @ (405 | 501) => return Ok(Locked::Refused(st)),
            st => return Err(self.http.status_err("lock", &url, st)),
        }
        let token = resp
            .headers()
            .get("lock-token")
            .and_then(|v| v.to_str().ok())
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Error::backend(
                    "http",
                    BackendErrorKind::Other,
                    format!("lock {url}: the server granted a lock without a Lock-Token header"),
                )
            })?;
        Ok(Locked::Token(if token.starts_with('<') {
            token
        } else {
            format!("<{token}>")
        }))
    }

    /// Releases the lock `token` on `rel`; a failure only leaves it to expire.
    async fn unlock(&self, rel: &str, token: &str) {
        let Ok(method) = reqwest::Method::from_bytes(b"UNLOCK") else {
            return;
        };
        let r = self
            .http
            .client
            .request(method, self.http.url_of(rel))
            .header("Lock-Token", token)
            .send()
            .await;
        if let Err(e) = r {
            tracing::debug!(object = %self.http.url_of(rel), error = %e, "unlock failed; the lock expires by itself");
        }
    }

    /// The lease object `rel` and its version (its content's hash); an empty object (left by
    /// a LOCK of a missing one, which creates it on some servers) counts as none.
    pub(super) async fn get_versioned(&self, rel: &str) -> Result<Option<(Bytes, String)>> {
        match self.store.get(rel).await {
            Ok(data) if data.is_empty() => Ok(None),
            Ok(data) => {
                let v = super::file::content_version(&data);
                Ok(Some((data, v)))
            }
            Err(Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The compare-and-swap of the lease object under a lock (see the module docs).
    pub(super) async fn put_if(
        &self,
        rel: &str,
        data: Bytes,
        expected: Option<&str>,
    ) -> Result<Option<String>> {
        let give_up = Instant::now() + LOCK_WAIT;
        let busy = || {
            Error::backend(
                "http",
                BackendErrorKind::Transient,
                format!(
                    "{}/{rel} stayed locked by another writer for {LOCK_WAIT:?}",
                    self.http.location
                ),
            )
        };
        loop {
            let token = loop {
                match self.lock(rel).await? {
                    Locked::Token(t) => break t,
                    Locked::Busy => {}
                    Locked::Refused(st) => {
                        let url = self.http.url_of(rel);
                        return Err(self.http.status_err("lock", &url, st));
                    }
                }
                if Instant::now() > give_up {
                    return Err(busy());
                }
                let mut r = [0u8; 1];
                let _ = getrandom::fill(&mut r);
                tokio::time::sleep(Duration::from_millis(50 + u64::from(r[0]))).await;
            };
            let swapped = self.swap_locked(rel, &token, &data, expected).await;
            self.unlock(rel, &token).await;
            match swapped? {
                Swap::Done(v) => {
                    self.store.count("PUT", data.len() as u64);
                    return Ok(Some(v));
                }
                Swap::Mismatch => return Ok(None),
                Swap::LockLost if Instant::now() < give_up => continue,
                Swap::LockLost => return Err(busy()),
            }
        }
    }

    /// Under the lock `token` on `rel`: compares, then writes `data` through a temporary
    /// object MOVEd over `rel` with the token.
    async fn swap_locked(
        &self,
        rel: &str,
        token: &str,
        data: &Bytes,
        expected: Option<&str>,
    ) -> Result<Swap> {
        let current = self.get_versioned(rel).await?.map(|(_, v)| v);
        if current.as_deref() != expected {
            return Ok(Swap::Mismatch);
        }
        let mut r = [0u8; 8];
        let _ = getrandom::fill(&mut r);
        let tmp_rel = format!("{rel}.{:016x}.tmp", u64::from_be_bytes(r));
        self.store
            .store
            .put(
                &self.store.key(&tmp_rel)?,
                PutPayload::from_bytes(data.clone()),
            )
            .await
            .map_err(|e| self.store.err("put", &tmp_rel, e))?;
        let url = self.http.url_of(rel);
        let method =
            reqwest::Method::from_bytes(b"MOVE").map_err(|e| Error::Config(e.to_string()))?;
        let resp = self
            .http
            .client
            .request(method, self.http.url_of(&tmp_rel))
            .header("Destination", &url)
            .header("Overwrite", "T")
            .header("If", format!("<{url}> ({token})"))
            .send()
            .await
            .map_err(|e| self.http.err("move", rel, e));
        let st = match resp {
            Ok(r) => r.status().as_u16(),
            Err(e) => {
                let _ = self.store.delete(&tmp_rel).await;
                return Err(e);
            }
        };
        if matches!(st, 200 | 201 | 204) {
            return Ok(Swap::Done(super::file::content_version(data)));
        }
        let _ = self.store.delete(&tmp_rel).await;
        match st {
            412 | 423 => Ok(Swap::LockLost),
            st => Err(self.http.status_err("move into place", &url, st)),
        }
    }

    /// MOVE `tmp_rel` over `rel` (`Overwrite: T`). `Ok(false)` when the server has no MOVE.
    async fn move_into_place(&self, tmp_rel: &str, rel: &str) -> Result<bool> {
        let method =
            reqwest::Method::from_bytes(b"MOVE").map_err(|e| Error::Config(e.to_string()))?;
        let resp = self
            .http
            .client
            .request(method, self.http.url_of(tmp_rel))
            .header("Destination", self.http.url_of(rel))
            .header("Overwrite", "T")
            .send()
            .await
            .map_err(|e| self.http.err("move", rel, e))?;
        let st = resp.status().as_u16();
        if matches!(st, 200 | 201 | 204) {
            return Ok(true);
        }
        if let Ok(k) = self.store.key(tmp_rel) {
            let _ = self.store.store.delete(&k).await;
        }
        if matches!(st, 405 | 501) {
            return Ok(false);
        }
        Err(self
            .http
            .status_err("move into place", &self.http.url_of(rel), st))
    }

    /// Creates the collections that hold `rel` (below the base URL).
    async fn mkcol_parents(&self, rel: &str) -> Result<()> {
        let method =
            reqwest::Method::from_bytes(b"MKCOL").map_err(|e| Error::Config(e.to_string()))?;
        let parts: Vec<&str> = rel.split('/').collect();
        for i in 1..parts.len() {
            let url = format!("{}/", self.http.url_of(&parts[..i].join("/")));
            self.mkcol(&method, &url, rel).await?;
        }
        Ok(())
    }

    /// One MKCOL; 201 created, 405 (or 301, 200 on some servers) already there.
    async fn mkcol(&self, method: &reqwest::Method, url: &str, rel: &str) -> Result<()> {
        let r = self
            .http
            .client
            .request(method.clone(), url)
            .send()
            .await
            .map_err(|e| self.http.err("mkcol", rel, e))?;
        let st = r.status().as_u16();
        if !(st == 201 || st == 405 || st == 301 || st == 200) {
            return Err(self.http.status_err("create collection", url, st));
        }
        Ok(())
    }

    /// Creates the collections of the base URL's path (`/backups/app/` needs `/backups/`
    /// and `/backups/app/`): object_store's HTTP store creates the collections below its
    /// base URL on demand, but not the base itself.
    async fn ensure_base(&self) -> Result<()> {
        if self.base_ready.load(Ordering::Relaxed) {
            return Ok(());
        }
        let url = reqwest::Url::parse(&self.http.base_url)
            .map_err(|e| Error::Config(format!("http replica {}: {e}", self.http.location)))?;
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
            self.mkcol(&method, u.as_ref(), "").await?;
        }
        self.base_ready.store(true, Ordering::Relaxed);
        Ok(())
    }
}

/// `s` as XML character data.
fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
