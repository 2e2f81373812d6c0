//! Where each type of replica lives: its keys (or its URL) resolved into a
//! [`ReplicaTarget`], with an error that names the key to fix.
use super::*;
use crate::config::{AbsConfig, GcsConfig, SftpConfig};

impl Resolver<'_> {
    pub(super) fn file_target(
        &self,
        label: &str,
        path: Option<String>,
        url_target: Option<ReplicaTarget>,
    ) -> Result<ReplicaTarget, ConfigError> {
        if let Some(target) = url_target {
            return Ok(target);
        }
        let Some(path) = path else {
            return Err(self.invalid(
                label,
                "file replica path required; add path: /backups/app (a local directory) or \
                 url: s3://BUCKET/PATH for another type",
            ));
        };
        let path = absolutize(Path::new(&path)).map_err(|m| self.invalid(label, m))?;
        Ok(ReplicaTarget::File { path })
    }

    pub(super) fn s3_target(
        &self,
        label: &str,
        r: &RawReplica,
        url_target: Option<ReplicaTarget>,
        top_key_id: &Option<String>,
        top_secret: &Option<String>,
    ) -> Result<S3Config, ConfigError> {
        let bucket = non_empty(r.bucket.clone());
        let endpoint = non_empty(r.endpoint.clone()).map(|e| {
            if e.contains("://") {
                e
            } else {
                format!("https://{e}")
            }
        });
        let mut s3 = match url_target {
            Some(ReplicaTarget::S3(from_url)) => {
                if bucket.is_some() {
                    return Err(self.invalid(
                        label,
                        "url and bucket are both set; the url host is the bucket \
                         (s3://BUCKET/PATH), so remove bucket: (or remove url: and use bucket: \
                         and path:)",
                    ));
                }
                from_url
            }
            _ => {
                let Some(bucket) = bucket else {
                    return Err(self.invalid(
                        label,
                        "bucket required for s3 replica; add bucket: NAME (and path: PREFIX), \
                         or use url: s3://BUCKET/PATH",
                    ));
                };
                S3Config {
                    bucket,
                    path: clean_key_prefix(r.path.as_deref().unwrap_or("")),
                    region: None,
                    endpoint: None,
                    force_path_style: false,
                    skip_verify: false,
                    access_key_id: None,
                    secret_access_key: None,
                }
            }
        };
        // Config keys win over what the URL host implied.
        if let Some(region) = non_empty(r.region.clone()) {
            s3.region = Some(region);
        }
        if let Some(endpoint) = endpoint {
            s3.endpoint = Some(endpoint);
            s3.force_path_style = true;
        }
        if let Some(v) = r.force_path_style {
            s3.force_path_style = v;
        }
        s3.skip_verify = r.skip_verify.unwrap_or(false);
        s3.access_key_id = non_empty(r.access_key_id.clone()).or_else(|| top_key_id.clone());
        s3.secret_access_key = non_empty(r.secret_access_key.clone())
            .or_else(|| top_secret.clone())
            .map(Secret::new);
        Ok(s3)
    }

    pub(super) fn gcs_target(
        &self,
        label: &str,
        r: &RawReplica,
        url_target: Option<ReplicaTarget>,
    ) -> Result<ReplicaTarget, ConfigError> {
        let bucket = non_empty(r.bucket.clone());
        match url_target {
            Some(_) if bucket.is_some() => Err(self.invalid(
                label,
                "url and bucket are both set; the url host is the bucket \
                     (gcs://BUCKET/PATH), so remove bucket:",
            )),
            Some(target) => Ok(target),
            None => {
                let Some(bucket) = bucket else {
                    return Err(self.invalid(
                        label,
                        "bucket required for gcs replica; add bucket: NAME (and path: PREFIX), \
                         or use url: gcs://BUCKET/PATH",
                    ));
                };
                Ok(ReplicaTarget::Gcs(GcsConfig {
                    bucket,
                    path: clean_key_prefix(r.path.as_deref().unwrap_or("")),
                }))
            }
        }
    }

    pub(super) fn abs_target(
        &self,
        label: &str,
        r: &RawReplica,
        url_target: Option<ReplicaTarget>,
    ) -> Result<ReplicaTarget, ConfigError> {
        let bucket = non_empty(r.bucket.clone());
        let (url_account, url_endpoint, bucket, path) = match url_target {
            Some(ReplicaTarget::Abs(AbsConfig {
                account_name,
                bucket: url_bucket,
                path,
                endpoint,
                ..
            })) => {
                if bucket.is_some() {
                    return Err(self.invalid(
                        label,
                        "url and bucket are both set; the url names the container \
                         (abs://ACCOUNT@CONTAINER/PATH), so remove bucket:",
                    ));
                }
                (account_name, endpoint, url_bucket, path)
            }
            _ => {
                let Some(bucket) = bucket else {
                    return Err(self.invalid(
                        label,
                        "bucket (the container) required for abs replica; add bucket: \
                         CONTAINER, or use url: abs://ACCOUNT@CONTAINER/PATH",
                    ));
                };
                let path = clean_key_prefix(r.path.as_deref().unwrap_or(""));
                (None, None, bucket, path)
            }
        };
        Ok(ReplicaTarget::Abs(AbsConfig {
            account_name: non_empty(r.account_name.clone()).or(url_account),
            account_key: non_empty(r.account_key.clone()).map(Secret::new),
            bucket,
            path,
            endpoint: non_empty(r.endpoint.clone()).or(url_endpoint),
        }))
    }

    pub(super) fn sftp_target(
        &self,
        label: &str,
        r: &RawReplica,
        url_target: Option<ReplicaTarget>,
    ) -> Result<ReplicaTarget, ConfigError> {
        let host = non_empty(r.host.clone());
        let key_path = match non_empty(r.key_path.clone()) {
            Some(p) => Some(absolutize(Path::new(&p)).map_err(|m| self.invalid(label, m))?),
            None => None,
        };
        let password = non_empty(r.password.clone()).map(Secret::new);
        let user = non_empty(r.user.clone());
        let host_key = non_empty(r.host_key.clone());
        let skip_host_key_check = r.insecure_skip_host_key_check.unwrap_or(false);
        match url_target {
            Some(ReplicaTarget::Sftp(SftpConfig {
                host: url_host,
                user: url_user,
                password: url_password,
                path,
                ..
            })) => {
                if host.is_some() {
                    return Err(self.invalid(
                        label,
                        "url and host are both set; the url holds the host \
                         (sftp://USER@HOST:PORT/PATH), so remove host:",
                    ));
                }
                Ok(ReplicaTarget::Sftp(SftpConfig {
                    host: url_host,
                    user: user.unwrap_or(url_user),
                    password: password.or(url_password),
                    key_path,
                    host_key,
                    skip_host_key_check,
                    path,
                }))
            }
            _ => {
                let Some(host) = host else {
                    return Err(self.invalid(
                        label,
                        "host required for sftp replica; add host: HOST[:PORT], or use url: \
                         sftp://USER@HOST/PATH",
                    ));
                };
                let Some(user) = user else {
                    return Err(
                        self.invalid(label, "user required for sftp replica; add user: NAME")
                    );
                };
                Ok(ReplicaTarget::Sftp(SftpConfig {
                    host: with_default_port(&host, 22),
                    user,
                    password,
                    key_path,
                    host_key,
                    skip_host_key_check,
                    path: r.path.clone().unwrap_or_default(),
                }))
            }
        }
    }

    pub(super) fn http_target(
        &self,
        label: &str,
        r: &RawReplica,
        url_target: Option<ReplicaTarget>,
    ) -> Result<ReplicaTarget, ConfigError> {
        let Some(ReplicaTarget::Http(from_url)) = url_target else {
            return Err(self.invalid(
                label,
                "http replica needs a url; add url: https://HOST/PATH (WebDAV, or a static \
                 server for restore)",
            ));
        };
        Ok(ReplicaTarget::Http(HttpConfig {
            url: from_url.url,
            skip_verify: r.skip_verify.unwrap_or(false),
            user: non_empty(r.user.clone()).or(from_url.user),
            password: non_empty(r.password.clone())
                .map(Secret::new)
                .or(from_url.password),
            bearer_token: non_empty(r.bearer_token.clone()).map(Secret::new),
        }))
    }
}
