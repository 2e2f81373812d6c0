//! The Azure Blob Storage replica (`type: abs`, `abs://[ACCOUNT@]CONTAINER/PATH`) through
//! object_store's Azure store.
//!
//! As Litestream v0.3.13: the account from `account-name` (or the URL), the key from
//! `account-key`, else `LITESTREAM_AZURE_ACCOUNT_KEY`, else object_store's other Azure
//! credentials (`AZURE_STORAGE_*` variables, managed identity, the Azure CLI); the endpoint
//! from `endpoint`, else `https://ACCOUNT.blob.core.windows.net`. An endpoint with a path
//! (Azurite's `http://127.0.0.1:10000/devstoreaccount1`) keeps it: containers go below.
use std::sync::Arc;

use super::bucket::BucketClient;
use super::objstore::{Store, client_options, env_nonempty, retry_config};
use crate::error::{Error, Result};
use crate::secret::Secret;

/// Azure Blob Storage replica settings (`type: abs`, `abs://[ACCOUNT@]CONTAINER/PATH`).
#[derive(Clone, Debug, PartialEq)]
pub struct AbsConfig {
    /// `account-name`, or the URL user part. `None`: `AZURE_STORAGE_ACCOUNT_NAME` from the
    /// environment.
    pub account_name: Option<String>,
    /// `account-key`. `None`: `LITESTREAM_AZURE_ACCOUNT_KEY`, else object_store's chain.
    /// Redacted in `Debug`.
    pub account_key: Option<Secret>,
    /// The container (`bucket`, or the URL host).
    pub bucket: String,
    /// Key prefix in the container; `""` = root.
    pub path: String,
    /// `endpoint`. `None`: `https://ACCOUNT.blob.core.windows.net`.
    pub endpoint: Option<String>,
}

impl BucketClient {
    /// A client for the blobs below `t.path` in the container `t.bucket`.
    pub fn azure(t: &AbsConfig) -> Result<BucketClient> {
        let mut b = object_store::azure::MicrosoftAzureBuilder::from_env()
            .with_container_name(&t.bucket)
            .with_retry(retry_config());
        if let Some(a) = &t.account_name {
            b = b.with_account(a);
        }
        let key = t
            .account_key
            .as_ref()
            .map(|k| k.expose().to_string())
            .or_else(|| env_nonempty("LITESTREAM_AZURE_ACCOUNT_KEY"));
        if let Some(k) = key {
            b = b.with_access_key(k);
        }
        let mut allow_http = false;
        if let Some(ep) = &t.endpoint {
            let ep = if ep.contains("://") {
                ep.to_string()
            } else {
                format!("https://{ep}")
            };
            allow_http = ep.starts_with("http://");
            b = b.with_endpoint(ep.trim_end_matches('/').to_string());
        }
        let b = b.with_client_options(client_options(false, allow_http));
        let store = b.build().map_err(|e| {
            Error::Config(format!(
                "abs replica abs://{}/{}: {e}; set account-name (or the url's ACCOUNT@) and \
                 account-key (or LITESTREAM_AZURE_ACCOUNT_KEY)",
                t.bucket, t.path
            ))
        })?;
        let prefix = t.path.trim_matches('/').to_string();
        let location = match &t.account_name {
            Some(a) => format!("abs://{a}@{}/{prefix}", t.bucket),
            None => format!("abs://{}/{prefix}", t.bucket),
        };
        Ok(BucketClient::new(Store::new(
            "abs",
            Arc::new(store),
            prefix,
            String::new(),
            location,
        )))
    }
}
