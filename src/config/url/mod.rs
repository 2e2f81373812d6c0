//! Replica URLs (`s3://bucket/path`, `file:///dir`, ...): parsing and S3 host inference.

use std::path::Path;

use super::paths::{absolutize, clean_key_prefix, clean_path};
use super::{
    AbsConfig, ConfigError, GcsConfig, HttpConfig, ReplicaTarget, S3Config, Secret, SftpConfig,
};

/// The schemes [`ReplicaTarget::from_url`] accepts, for error messages.
pub(crate) const KNOWN_SCHEMES: &str =
    "file, s3, gcs (or gs), abs, sftp, http, https, webdav and webdavs";

/// True when `arg` looks like a replica URL rather than a database path: it starts with
/// `<word characters>://`, the test Litestream's CLI applies (`^\w+://`).
pub fn is_url(arg: &str) -> bool {
    match arg.find("://") {
        Some(0) | None => false,
        Some(i) => arg[..i]
            .bytes()
            .all(|b| b == b'_' || b.is_ascii_alphanumeric()),
    }
}

impl ReplicaTarget {
    /// Parses a replica URL as given on the command line (URL mode) or in a replica's `url:`.
    ///
    /// | URL | target |
    /// |---|---|
    /// | `file:///abs/dir`, `file:/abs/dir` | file, that directory (cleaned) |
    /// | `file:rel/dir`, `file:~/dir`, `file://~/dir`, `file://./dir` | file, `~`-expanded and made absolute against the current directory |
    /// | `file://host/p` | file, `/host/p` (as Litestream) |
    /// | `s3://bucket/prefix` | S3; provider hosts are recognised, see below |
    /// | `gcs://bucket/prefix`, `gs://bucket/prefix` | Google Cloud Storage |
    /// | `abs://account@container/prefix`, `abs://container/prefix` | Azure Blob Storage |
    /// | `abs://account.blob.core.windows.net/container/prefix` | Azure Blob Storage, endpoint from the host |
    /// | `sftp://user:password@host[:port]/dir` | SFTP; port 22 when absent |
    /// | `http(s)://[user:password@]host/dir`, `webdav(s)://...` | HTTP: WebDAV, or a read-only static server |
    ///
    /// S3 host inference (Litestream's table; a `:port` is kept on the endpoint; path-style
    /// addressing is set for every provider endpoint):
    ///
    /// | host | bucket | region | endpoint |
    /// |---|---|---|---|
    /// | `B.localhost[:port]` | B | us-east-1 | `http://localhost[:port]` |
    /// | `B.s3.R.backblazeb2.com` | B | R | `https://s3.R.backblazeb2.com` |
    /// | `B.s3.filebase.com` | B | — | `https://s3.filebase.com` |
    /// | `B.R.digitaloceanspaces.com` | B | R | `https://R.digitaloceanspaces.com` |
    /// | `B.s3.R.scw.cloud` | B | R | `https://s3.R.scw.cloud` |
    /// | `B.R.linodeobjects.com` | B | R | `https://R.linodeobjects.com` |
    /// | `B.s3.amazonaws.com`, `B.s3.R.amazonaws.com`, `B.s3-R.amazonaws.com` | B | R | AWS |
    /// | anything else | the whole host (without port) | — | AWS |
    ///
    /// Two improvements over Litestream: it took `B.s3.amazonaws.com` as the bucket name
    /// (`bucket.s3.amazonaws.com`); and when a provider host has no bucket label
    /// (`s3://localhost:9000/bkt/db`, `s3://s3.us-west-2.amazonaws.com/bkt/db`) the first path
    /// segment is the bucket (path-style URL) instead of an error.
    ///
    /// Credentials in a URL's user part end up in the target's secret fields, never in its
    /// `url`; error messages redact them.
    pub fn from_url(url: &str) -> Result<ReplicaTarget, ConfigError> {
        target_from_url(url).map_err(|message| ConfigError::Url {
            url: redact_url(url),
            message,
        })
    }
}

/// Maps a `type:` value or URL scheme to the canonical type name, or `None` if unknown.
pub(crate) fn canonical_type(name: &str) -> Option<&'static str> {
    Some(match name.to_ascii_lowercase().as_str() {
        "file" => "file",
        "s3" => "s3",
        "gcs" | "gs" => "gcs",
        "abs" => "abs",
        "sftp" => "sftp",
        "http" | "https" | "webdav" | "webdavs" => "http",
        _ => return None,
    })
}

/// Replaces the password of a URL's user part with `<redacted>`, for messages.
pub(crate) fn redact_url(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let end = url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| start + i);
    let authority = &url[start..end];
    match authority.rsplit_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            format!("{}{user}:<redacted>@{host}{}", &url[..start], &url[end..])
        }
        _ => url.to_string(),
    }
}

/// The parts of a URL this module needs, split like Go's `net/url`.
struct ParsedUrl<'a> {
    /// Lower-cased scheme.
    scheme: String,
    /// The text after `scheme:` when it does not start with `/` (`file:rel/dir`).
    opaque: Option<&'a str>,
    user: Option<String>,
    password: Option<String>,
    /// `host[:port]`, undecoded.
    host: &'a str,
    /// Percent-decoded path.
    path: String,
    /// Everything after the authority, undecoded, without the fragment (path and query).
    raw_after_host: &'a str,
}

fn parse_url(url: &str) -> Result<ParsedUrl<'_>, String> {
    let colon = url.find(':').filter(|&i| {
        i > 0
            && url.as_bytes()[0].is_ascii_alphabetic()
            && url[..i]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
    });
    let Some(colon) = colon else {
        let file_url = if url.starts_with('/') {
            format!("file://{url}")
        } else {
            format!("file:{url}")
        };
        return Err(format!(
            "replica url scheme required: {url}; write {file_url} for a local directory, or \
             use one of the schemes {KNOWN_SCHEMES}"
        ));
    };
    let scheme = url[..colon].to_ascii_lowercase();
    let rest = &url[colon + 1..];
    let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
    let mut parsed = ParsedUrl {
        scheme,
        opaque: None,
        user: None,
        password: None,
        host: "",
        path: String::new(),
        raw_after_host: "",
    };
    if let Some(after) = rest.strip_prefix("//") {
        let end = after.find(['/', '?']).unwrap_or(after.len());
        let authority = &after[..end];
        parsed.raw_after_host = &after[end..];
        let host = match authority.rsplit_once('@') {
            Some((userinfo, host)) => {
                let (user, password) = match userinfo.split_once(':') {
                    Some((u, p)) => (u, Some(p)),
                    None => (userinfo, None),
                };
                parsed.user = Some(percent_decode(user)?).filter(|u| !u.is_empty());
                parsed.password = password.map(percent_decode).transpose()?;
                host
            }
            None => authority,
        };
        parsed.host = host;
        let raw_path = parsed.raw_after_host;
        let raw_path = raw_path.split_once('?').map_or(raw_path, |(p, _)| p);
        parsed.path = percent_decode(raw_path)?;
    } else {
        let before_query = rest.split_once('?').map_or(rest, |(p, _)| p);
        if before_query.starts_with('/') || before_query.is_empty() {
            parsed.path = percent_decode(before_query)?;
        } else {
            parsed.opaque = Some(before_query);
        }
    }
    Ok(parsed)
}

fn percent_decode(s: &str) -> Result<String, String> {
    if !s.contains('%') {
        return Ok(s.to_string());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| {
                    format!("invalid percent-escape in {s:?}; write %25 for a literal %")
                })?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("percent-escapes in {s:?} are not UTF-8"))
}

/// Splits `host:port` (port all digits) into its parts; IPv6 literals keep their brackets.
fn split_port(host: &str) -> (&str, Option<&str>) {
    match host.rsplit_once(':') {
        Some((h, p))
            if !p.is_empty()
                && p.bytes().all(|b| b.is_ascii_digit())
                && (!h.contains(':') || h.ends_with(']')) =>
        {
            (h, Some(p))
        }
        _ => (host, None),
    }
}

/// Splits the URL path into its first segment and the rest (for path-style bucket URLs).
fn first_segment(path: &str) -> (&str, &str) {
    let path = path.trim_start_matches('/');
    path.split_once('/').unwrap_or((path, ""))
}

fn target_from_url(url: &str) -> Result<ReplicaTarget, String> {
    let u = parse_url(url)?;
    match canonical_type(&u.scheme) {
        Some("file") => file_target(&u),
        Some("s3") => s3_target(&u).map(ReplicaTarget::S3),
        Some("gcs") => {
            if u.host.is_empty() {
                return Err("gcs url needs a bucket: gcs://BUCKET/PATH".into());
            }
            Ok(ReplicaTarget::Gcs(GcsConfig {
                bucket: u.host.to_string(),
                path: clean_key_prefix(&u.path),
            }))
        }
        Some("abs") => abs_target(&u),
        Some("sftp") => sftp_target(&u),
        Some("http") => http_target(&u),
        _ => Err(format!(
            "unknown replica url scheme {:?}; supported schemes are {KNOWN_SCHEMES}",
            u.scheme
        )),
    }
}

fn file_target(u: &ParsedUrl<'_>) -> Result<ReplicaTarget, String> {
    let raw = match (u.opaque, u.host) {
        (Some(opaque), _) => opaque.to_string(),
        // `file://~/dir` and `file://./dir` mean what they look like.
        (None, host @ ("~" | "." | "..")) => format!("{host}{}", u.path),
        (None, "") => u.path.clone(),
        // `file://server/share/dir`: a Windows UNC path (`\\server\share\dir`).
        #[cfg(windows)]
        (None, host) => format!(r"\\{host}{}", u.path),
        #[cfg(not(windows))]
        (None, host) => format!("/{host}{}", u.path),
    };
    // `file:///C:/backups/app`: the drive letter follows the URL's leading `/`.
    #[cfg(windows)]
    let raw = match raw.as_bytes() {
        [b'/', d, b':', ..] if d.is_ascii_alphabetic() => raw[1..].to_string(),
        _ => raw,
    };
    if raw.is_empty() {
        return Err("file url has no path; write file:///absolute/dir or file:relative/dir".into());
    }
    let path = absolutize(Path::new(&raw))?;
    Ok(ReplicaTarget::File {
        path: clean_path(&path),
    })
}

/// What an S3 URL host says about the bucket and service.
#[derive(Debug, PartialEq)]
struct S3Host {
    bucket: Option<String>,
    region: Option<String>,
    endpoint: Option<String>,
    force_path_style: bool,
}

/// Splits `[B.]tail` into `Some(bucket)` / `Some(None)` when `name` ends with `tail`.
fn strip_bucket<'a>(name: &'a str, lower: &str, tail: &str) -> Option<Option<&'a str>> {
    if lower == tail {
        return Some(None);
    }
    let dotted = lower.len().checked_sub(tail.len() + 1)?;
    if lower.ends_with(tail) && lower.as_bytes()[dotted] == b'.' && dotted > 0 {
        return Some(Some(&name[..dotted]));
    }
    None
}

/// Splits `[B.]s3.R` (the part before a provider's domain) into bucket and region.
fn bucket_s3_region<'a>(name: &'a str, lower: &str) -> Option<(Option<&'a str>, &'a str)> {
    let (pre_len, _) = lower.rsplit_once('.')?;
    let region = &name[pre_len.len() + 1..];
    let bucket = strip_bucket(&name[..pre_len.len()], pre_len, "s3")?;
    (!region.is_empty()).then_some((bucket, region))
}

/// Splits `[B.]R` into bucket and region.
fn bucket_region(name: &str) -> Option<(Option<&str>, &str)> {
    match name.rsplit_once('.') {
        Some((b, r)) if !b.is_empty() && !r.is_empty() => Some((Some(b), r)),
        Some(_) => None,
        None => (!name.is_empty()).then_some((None, name)),
    }
}

fn parse_s3_host(host: &str) -> S3Host {
    let (name, port) = split_port(host);
    let lower = name.to_ascii_lowercase();
    let with_port = |endpoint: String| match port {
        Some(p) => format!("{endpoint}:{p}"),
        None => endpoint,
    };
    let provider = |bucket: Option<&str>, region: Option<&str>, endpoint: String| S3Host {
        bucket: bucket.map(str::to_string),
        region: region.map(str::to_string),
        endpoint: Some(with_port(endpoint)),
        force_path_style: true,
    };
    // Strips `.domain` from the end of the host, keeping the original case.
    let before = |domain: &str| -> Option<(&str, String)> {
        let cut = lower.strip_suffix(domain)?;
        Some((&name[..cut.len()], cut.to_string()))
    };

    if let Some(bucket) = strip_bucket(name, &lower, "localhost") {
        return provider(bucket, Some("us-east-1"), "http://localhost".into());
    }
    if let Some((rest, rest_lower)) = before(".backblazeb2.com")
        && let Some((bucket, region)) = bucket_s3_region(rest, &rest_lower)
    {
        let endpoint = format!("https://s3.{region}.backblazeb2.com");
        return provider(bucket, Some(region), endpoint);
    }
    if let Some(bucket) = strip_bucket(name, &lower, "s3.filebase.com") {
        return provider(bucket, None, "https://s3.filebase.com".into());
    }
    if let Some((rest, _)) = before(".digitaloceanspaces.com")
        && let Some((bucket, region)) = bucket_region(rest)
    {
        let endpoint = format!("https://{region}.digitaloceanspaces.com");
        return provider(bucket, Some(region), endpoint);
    }
    if let Some((rest, rest_lower)) = before(".scw.cloud")
        && let Some((bucket, region)) = bucket_s3_region(rest, &rest_lower)
    {
        let endpoint = format!("https://s3.{region}.scw.cloud");
        return provider(bucket, Some(region), endpoint);
    }
    if let Some((rest, _)) = before(".linodeobjects.com")
        && let Some((bucket, region)) = bucket_region(rest)
    {
        let endpoint = format!("https://{region}.linodeobjects.com");
        return provider(bucket, Some(region), endpoint);
    }
    if let Some((rest, rest_lower)) = before(".amazonaws.com") {
        let aws = |bucket: Option<&str>, region: Option<&str>| S3Host {
            bucket: bucket.map(str::to_string),
            region: region.map(str::to_string),
            endpoint: None,
            force_path_style: false,
        };
        // B.s3.amazonaws.com
        if let Some(bucket) = strip_bucket(rest, &rest_lower, "s3") {
            return aws(bucket, None);
        }
        // B.s3.R.amazonaws.com
        if let Some((bucket, region)) = bucket_s3_region(rest, &rest_lower) {
            return aws(bucket, Some(region));
        }
        // B.s3-R.amazonaws.com (legacy dash form)
        let (bucket, last) = match rest.rsplit_once('.') {
            Some((b, last)) => (Some(b), last),
            None => (None, rest),
        };
        if let Some(region) = last.strip_prefix("s3-").filter(|r| !r.is_empty())
            && bucket.is_none_or(|b| !b.is_empty())
        {
            return aws(bucket, Some(region));
        }
    }
    S3Host {
        bucket: Some(name.to_string()).filter(|b| !b.is_empty()),
        region: None,
        endpoint: None,
        force_path_style: false,
    }
}

fn s3_target(u: &ParsedUrl<'_>) -> Result<S3Config, String> {
    let host = parse_s3_host(u.host);
    let (bucket, prefix) = match host.bucket {
        Some(bucket) => (bucket, u.path.as_str()),
        None => {
            let (bucket, rest) = first_segment(&u.path);
            (bucket.to_string(), rest)
        }
    };
    if bucket.is_empty() {
        return Err("s3 url needs a bucket: s3://BUCKET/PATH".into());
    }
    Ok(S3Config {
        bucket,
        path: clean_key_prefix(prefix),
        region: host.region,
        endpoint: host.endpoint,
        force_path_style: host.force_path_style,
        skip_verify: false,
        access_key_id: None,
        secret_access_key: None,
    })
}

fn abs_target(u: &ParsedUrl<'_>) -> Result<ReplicaTarget, String> {
    let (name, _) = split_port(u.host);
    let lower = name.to_ascii_lowercase();
    let mut account_name = u.user.clone();
    let (bucket, prefix, endpoint) = if lower.ends_with(".blob.core.windows.net") {
        // v0.5 form: abs://[account@]ACCOUNT.blob.core.windows.net/CONTAINER/PATH
        if account_name.is_none() {
            account_name = name.split('.').next().map(str::to_string);
        }
        let (container, rest) = first_segment(&u.path);
        (
            container.to_string(),
            rest,
            Some(format!("https://{}", u.host)),
        )
    } else {
        (u.host.to_string(), u.path.as_str(), None)
    };
    if bucket.is_empty() {
        return Err("abs url needs a container: abs://ACCOUNT@CONTAINER/PATH".into());
    }
    Ok(ReplicaTarget::Abs(AbsConfig {
        account_name,
        account_key: None,
        bucket,
        path: clean_key_prefix(prefix),
        endpoint,
    }))
}

fn sftp_target(u: &ParsedUrl<'_>) -> Result<ReplicaTarget, String> {
    if u.host.is_empty() {
        return Err("sftp url needs a host: sftp://USER@HOST[:PORT]/PATH".into());
    }
    let Some(user) = u.user.clone() else {
        return Err("sftp url needs a user: sftp://USER@HOST[:PORT]/PATH".into());
    };
    Ok(ReplicaTarget::Sftp(SftpConfig {
        host: with_default_port(u.host, 22),
        user,
        password: u.password.clone().map(Secret::new),
        key_path: None,
        host_key: None,
        skip_host_key_check: false,
        path: if u.path.is_empty() {
            String::new()
        } else {
            // A path on the server: `/`-separated whatever this machine uses.
            format!("/{}", clean_key_prefix(&u.path))
        },
    }))
}

/// Appends `:port` unless the host already names one.
pub(crate) fn with_default_port(host: &str, port: u16) -> String {
    match split_port(host) {
        (_, Some(_)) => host.to_string(),
        (h, None) => format!("{h}:{port}"),
    }
}

fn http_target(u: &ParsedUrl<'_>) -> Result<ReplicaTarget, String> {
    if u.host.is_empty() {
        return Err(format!(
            "{} url needs a host: {}://HOST/PATH",
            u.scheme, u.scheme
        ));
    }
    let scheme = match u.scheme.as_str() {
        "webdav" => "http",
        "webdavs" => "https",
        other => other,
    };
    Ok(ReplicaTarget::Http(HttpConfig {
        url: format!("{scheme}://{}{}", u.host, u.raw_after_host),
        skip_verify: false,
        user: u.user.clone(),
        password: u.password.clone().map(Secret::new),
        bearer_token: None,
    }))
}

#[cfg(test)]
mod tests;
