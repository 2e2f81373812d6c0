//! The Google Cloud Storage replica (`type: gcs`, `gcs://BUCKET/PATH`): object_store's GCP
//! store for listing, reading and deleting, and GCS's JSON API for uploads.
//!
//! Why two APIs: object_store uploads with the XML API (`PUT /BUCKET/OBJECT`), which GCS
//! takes but fake-gcs-server, the emulator walship is tested against (and that Litestream's
//! Go client works with), answers with `400 invalid uploadType`. A JSON-API media upload
//! (`POST /upload/storage/v1/b/BUCKET/o?uploadType=media&name=KEY`) is what Litestream's
//! client sends, works on both, and is atomic like every GCS upload (an object appears
//! whole or not at all). The bearer token comes from object_store's own credential chain.
//!
//! Credentials as Litestream's Go client finds them: `GOOGLE_APPLICATION_CREDENTIALS` (a
//! service account or authorized-user file), else the gcloud Application Default
//! Credentials file, else the metadata server of a GCE/GKE machine. `STORAGE_EMULATOR_HOST`
//! (`host:port`, or a URL) points the client at an emulator, without credentials, as the
//! Go client does.
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use object_store::gcp::GcpCredentialProvider;

use super::ObjectInfo;
use super::bucket::BucketClient;
use super::objstore::{Store, client_options, env_nonempty, retry_config};
use crate::error::{BackendErrorKind, Error, Result};

const GCS_BASE_URL: &str = "https://storage.googleapis.com";

/// Google Cloud Storage replica settings (`type: gcs`, `gcs://BUCKET/PATH`); credentials
/// come from the environment (Application Default Credentials).
#[derive(Clone, Debug, PartialEq)]
pub struct GcsConfig {
    /// `bucket`, or the URL host.
    pub bucket: String,
    /// Key prefix inside the bucket; `""` = root.
    pub path: String,
}

/// Uploads through GCS's JSON API.
pub(super) struct GcsUploader {
    http: reqwest::Client,
    base_url: String,
    bucket: String,
    credentials: GcpCredentialProvider,
}

impl BucketClient {
    /// A client for the objects below `cfg.path` in `cfg.bucket`, at the emulator that
    /// `STORAGE_EMULATOR_HOST` names if it is set.
    pub fn gcs(cfg: &GcsConfig) -> Result<BucketClient> {
        BucketClient::gcs_at(cfg, env_nonempty("STORAGE_EMULATOR_HOST"))
    }

    /// A client for the objects below `cfg.path` in `cfg.bucket`, at `emulator`
    /// (`host:port` or a URL; no credentials) when given, else at Google.
    pub fn gcs_at(cfg: &GcsConfig, emulator: Option<String>) -> Result<BucketClient> {
        let GcsConfig { bucket, path } = cfg;
        let mut b = object_store::gcp::GoogleCloudStorageBuilder::from_env()
            .with_bucket_name(bucket)
            .with_retry(retry_config());
        let mut allow_http = false;
        let mut base_url = GCS_BASE_URL.to_string();
        if let Some(host) = emulator {
            let url = if host.contains("://") {
                host
            } else {
                format!("http://{host}")
            };
            allow_http = url.starts_with("http://");
            base_url = url.trim_end_matches('/').to_string();
            b = b.with_base_url(&base_url).with_credentials(Arc::new(
                object_store::StaticCredentialProvider::new(object_store::gcp::GcpCredential {
                    bearer: String::new(),
                }),
            ));
        }
        let store = b
            .with_client_options(client_options(false, allow_http))
            .build()
            .map_err(|e| Error::Config(format!("gcs replica gcs://{bucket}/{path}: {e}")))?;
        let uploader = GcsUploader {
            http: reqwest::Client::builder()
                .connect_timeout(std::time::Duration::from_secs(10))
                .build()
                .map_err(|e| Error::Config(format!("gcs replica: http client: {e}")))?,
            base_url,
            bucket: bucket.to_string(),
            credentials: store.credentials().clone(),
        };
        let prefix = path.trim_matches('/').to_string();
        let location = format!("gcs://{bucket}/{prefix}");
        let mut c = BucketClient::new(Store::new(
            "gcs",
            Arc::new(store),
            prefix,
            String::new(),
            location,
        ));
        c.gcs_upload = Some(Arc::new(uploader));
        Ok(c)
    }
}

impl GcsUploader {
    /// Uploads `body` (`size` bytes) as the object `key`, relative path `rel` for messages.
    pub(super) async fn upload(
        &self,
        store: &Store,
        rel: &str,
        size: u64,
        body: reqwest::Body,
    ) -> Result<ObjectInfo> {
        let key = store.key(rel)?;
        let fail = |kind, e: String| {
            Error::backend("gcs", kind, format!("put {}/{rel}: {e}", store.location))
        };
        let mut url = reqwest::Url::parse(&format!(
            "{}/upload/storage/v1/b/{}/o",
            self.base_url, self.bucket
        ))
        .map_err(|e| fail(BackendErrorKind::Other, e.to_string()))?;
        url.query_pairs_mut()
            .append_pair("uploadType", "media")
            .append_pair("name", key.as_ref());
        let token = self
            .credentials
            .get_credential()
            .await
            .map_err(|e| fail(BackendErrorKind::Denied, format!("credentials: {e}")))?;
        let mut req = self
            .http
            .post(url)
            .header("Content-Type", "application/octet-stream")
            .header("Content-Length", size)
            .body(body);
        if !token.bearer.is_empty() {
            req = req.bearer_auth(&token.bearer);
        }
        store.count("PUT", size);
        let send = async {
            let resp = req
                .send()
                .await
                .map_err(|e| fail(BackendErrorKind::Transient, e.to_string()))?;
            let status = resp.status().as_u16();
            if !(200..300).contains(&status) {
                let text = resp.text().await.unwrap_or_default();
                let text: String = text.chars().take(300).collect();
                return Err(fail(
                    BackendErrorKind::of_status(status),
                    format!("status {status}: {text}"),
                ));
            }
            let body = resp
                .bytes()
                .await
                .map_err(|e| fail(BackendErrorKind::Transient, e.to_string()))?;
            let meta: serde_json::Value = serde_json::from_slice(&body)
                .map_err(|e| fail(BackendErrorKind::Other, format!("bad answer: {e}")))?;
            Ok(meta)
        };
        let meta = store.timed("put", rel, size, send).await?;
        let modified = meta
            .get("updated")
            .and_then(|v| v.as_str())
            .and_then(|s| {
                time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
            })
            .map(SystemTime::from)
            .unwrap_or_else(SystemTime::now);
        Ok(ObjectInfo {
            name: rel.rsplit('/').next().unwrap_or(rel).to_string(),
            size,
            modified,
            is_dir: false,
        })
    }

    /// Uploads in-memory data.
    pub(super) async fn put(&self, store: &Store, rel: &str, data: Bytes) -> Result<ObjectInfo> {
        let size = data.len() as u64;
        self.upload(store, rel, size, reqwest::Body::from(data))
            .await
    }

    /// Uploads a local file, streamed.
    pub(super) async fn put_file(
        &self,
        store: &Store,
        rel: &str,
        local: &Path,
    ) -> Result<ObjectInfo> {
        let f = tokio::fs::File::open(local)
            .await
            .map_err(Error::io("open", local))?;
        let size = f.metadata().await.map_err(Error::io("stat", local))?.len();
        let body =
            reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(f, 1 << 20));
        self.upload(store, rel, size, body).await
    }
}
