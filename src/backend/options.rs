//! Settings of the network backends, as the config resolves them: the config's
//! `ReplicaTarget` holds these, and the backends take them as they are.
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
