//! The write side of a WebDAV replica: object_store's HTTP store reads, lists and deletes
//! (PROPFIND, GET, DELETE); uploads go to a temporary name and are `MOVE`d over the final
//! one, so no reader ever sees a partial object, and the collections they need are created
//! with MKCOL.
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use object_store::{ObjectStoreExt, PutPayload};

use super::ObjectInfo;
use super::http::Http;
use super::objstore::{LocalFile, Store};
use crate::error::{BackendErrorKind, Error, Result};

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
