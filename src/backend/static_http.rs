//! A plain static HTTP server as a read-only replica: directory index pages (python's
//! `http.server`, nginx `autoindex`, in HTML or nginx's JSON) list a directory, HEAD gives
//! sizes and times, GET reads an object. Names read from a listing are returned as they
//! are; every caller parses them with [`crate::layout`], which accepts only the fixed-width
//! hex names of the layout, so a hostile server cannot point walship elsewhere.
use std::time::SystemTime;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use super::http::{Http, percent_encode};
use super::{ObjectInfo, ObjectStream};
use crate::error::{BackendErrorKind, Error, Result};

/// The error for a status other than success (and 404, which callers handle) that the
/// server answered to `what` on `url`.
fn status_error(what: &str, url: &str, status: reqwest::StatusCode) -> Error {
    Error::backend(
        "http",
        BackendErrorKind::of_status(status.as_u16()),
        format!("{what} {url}: status {status}"),
    )
}

/// Largest directory index page read from a static server.
const MAX_INDEX_PAGE: usize = 16 << 20;

/// The read side of a static server.
pub(super) struct StaticHttp {
    http: Http,
    /// Size and time HEAD gave for each file URL still listed: the layout's objects are
    /// written once and never changed, so a follower that lists a directory every second
    /// sends one GET for the index and a HEAD only for the files that are new.
    heads: std::sync::Mutex<std::collections::HashMap<String, (u64, SystemTime)>>,
}

impl StaticHttp {
    pub(super) fn new(http: Http) -> StaticHttp {
        StaticHttp {
            http,
            heads: Default::default(),
        }
    }

    pub(super) async fn list(&self, dir: &str) -> Result<Vec<ObjectInfo>> {
        let http = &self.http.client;
        let dir = dir.trim_matches('/');
        let url = if dir.is_empty() {
            self.http.base_url.clone()
        } else {
            format!("{}{dir}/", self.http.base_url)
        };
        let resp = http
            .get(&url)
            .send()
            .await
            .map_err(|e| self.http.err("list", dir, e))?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(Vec::new());
        }
        if !resp.status().is_success() {
            return Err(status_error("list", &url, resp.status()));
        }
        let body = read_limited(resp, MAX_INDEX_PAGE)
            .await
            .map_err(|e| match e {
                Some(e) => self.http.err("list", dir, e),
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
        let known: std::collections::HashMap<String, (u64, SystemTime)> = {
            let mut heads = self.heads.lock().unwrap_or_else(|e| e.into_inner());
            // Forget the files of this directory that are no longer listed.
            let listed: std::collections::HashSet<String> = names
                .iter()
                .map(|(n, _)| format!("{url}{}", percent_encode(n)))
                .collect();
            heads.retain(|u, _| {
                let in_this_dir = u.starts_with(&url) && !u[url.len()..].contains('/');
                !in_this_dir || listed.contains(u)
            });
            listed
                .iter()
                .filter_map(|u| heads.get(u).map(|v| (u.clone(), *v)))
                .collect()
        };
        let known = &known;
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
                if let Some(&(size, modified)) = known.get(&url) {
                    return Ok(Some(ObjectInfo {
                        name,
                        size,
                        modified,
                        is_dir: false,
                    }));
                }
                let r = http
                    .head(&url)
                    .send()
                    .await
                    .map_err(|e| self.http.err("head", &name, e))?;
                if r.status() == reqwest::StatusCode::NOT_FOUND {
                    return Ok(None);
                }
                if !r.status().is_success() {
                    return Err(status_error("head", &url, r.status()));
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
                // Only a complete answer is kept (a server that announces no length or
                // time is asked again next time).
                if size > 0 && modified != SystemTime::UNIX_EPOCH {
                    self.heads
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(url, (size, modified));
                }
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

    pub(super) async fn get(&self, rel: &str) -> Result<Bytes> {
        let resp = self.get_response(rel).await?;
        resp.bytes().await.map_err(|e| self.http.err("get", rel, e))
    }

    /// GET of a relative path on the static server: the response when it succeeded, a
    /// NotFound or Backend error naming the URL otherwise.
    async fn get_response(&self, rel: &str) -> Result<reqwest::Response> {
        let http = &self.http.client;
        let url = self.http.url_of(rel);
        let resp = http
            .get(&url)
            .send()
            .await
            .map_err(|e| self.http.err("get", rel, e))?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Err(Error::NotFound(url));
        }
        if !resp.status().is_success() {
            return Err(status_error("get", &url, resp.status()));
        }
        Ok(resp)
    }

    pub(super) async fn get_stream(&self, rel: &str) -> Result<ObjectStream> {
        let resp = self.get_response(rel).await?;
        let url = self.http.url_of(rel);
        let size = resp.content_length();
        let body = resp.bytes_stream().map(move |r| {
            r.map_err(|e| {
                let message = format!("get {url}: {e}");
                Error::backend_from("http", BackendErrorKind::Transient, message, e)
            })
        });
        Ok(ObjectStream {
            size,
            body: body.boxed(),
        })
    }
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
