//! The S3 replica (and S3-compatible stores: MinIO, B2, Spaces, ...) through object_store's
//! AWS store.
use std::sync::Arc;

use super::bucket::BucketClient;
use super::objstore::{Store, client_options, env_nonempty, retry_config};
use crate::error::{Error, Result};
use crate::secret::Secret;

/// S3 replica settings.
#[derive(Clone, Debug, PartialEq)]
pub struct S3Config {
    /// `bucket` (required), or from the URL host.
    pub bucket: String,
    /// `path`: key prefix inside the bucket; `""` = root.
    pub path: String,
    /// `region`; `None` = discover it (AWS), or `us-east-1` when an endpoint is set.
    pub region: Option<String>,
    /// `endpoint` of an S3-compatible service (`http://127.0.0.1:9000`); a value without a
    /// scheme gets `https://`. `None` = AWS.
    pub endpoint: Option<String>,
    /// `force-path-style` — default: true when an endpoint is configured or inferred from the
    /// URL host, else false. An explicit value wins.
    pub force_path_style: bool,
    /// `skip-verify` — default false — disables TLS certificate verification.
    pub skip_verify: bool,
    /// `access-key-id` (or the top-level one). `None` = the AWS default credential chain.
    pub access_key_id: Option<String>,
    /// `secret-access-key` (or the top-level one). Redacted in `Debug`.
    pub secret_access_key: Option<Secret>,
}

impl BucketClient {
    /// A client for `cfg`. Credentials: the config's keys, else `AWS_ACCESS_KEY_ID` /
    /// `AWS_SECRET_ACCESS_KEY` (or Litestream's `LITESTREAM_ACCESS_KEY_ID` /
    /// `LITESTREAM_SECRET_ACCESS_KEY`), else the AWS default chain object_store supports.
    pub fn s3(cfg: &S3Config) -> Result<BucketClient> {
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
        Ok(BucketClient::new(Store::new(
            "s3",
            Arc::new(store),
            prefix,
            String::new(),
            location,
        )))
    }
}
