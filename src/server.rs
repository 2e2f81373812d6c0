//! The `addr:` HTTP server: `GET /metrics` (Prometheus text format 0.0.4, from
//! [`crate::metrics`]), `GET /status` (JSON of
//! [`EngineHandle::status`](crate::engine::EngineHandle::status)) and `GET /healthz` (200,
//! or 503 naming the replicas that stopped shipping: [`EngineHandle::health`]), or, for a
//! follower
//! (`walship restore -f -addr`), its [`FollowStatus`] as gauges and JSON. It sits above the
//! engine: nothing below imports it.
use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode, header};
use tokio::net::TcpListener;
use tracing::{debug, info};

use crate::engine::EngineHandle;
use crate::error::{Error, Result};
use crate::event::{DbStatus, Stall};
use crate::follow::FollowStatus;
use crate::metrics::{global, rfc3339};
use crate::pos::Pos;

// ---------------------------------------------------------------------------------------
// /status JSON

fn pos_json(p: Option<Pos>) -> serde_json::Value {
    match p {
        Some(p) => serde_json::json!({
            "generation": p.generation.to_string(),
            "index": p.index,
            "offset": p.offset,
        }),
        None => serde_json::Value::Null,
    }
}

/// The engine's status as JSON (the body of `GET /status`):
/// `{"dbs":[{"path","position","replicas":[{"name","type","position","lag_bytes",
/// "lag_seconds","last_sync","last_error","unshipped_seconds","lease"}]}]}`; a position is
/// `{"generation","index","offset"}` or `null`; `unshipped_seconds` is `null` while the
/// replica is up to date.
pub fn status_json(status: &[DbStatus]) -> serde_json::Value {
    let dbs: Vec<serde_json::Value> = status
        .iter()
        .map(|d| {
            let replicas: Vec<serde_json::Value> = d
                .replicas
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "name": r.name,
                        "type": r.kind,
                        "position": pos_json(r.pos),
                        "lag_bytes": r.lag_bytes,
                        "lag_seconds": r.lag.as_secs_f64(),
                        "last_sync": r.last_sync.map(rfc3339),
                        "last_error": r.last_error,
                        "unshipped_seconds": r.unshipped_for.map(|d| d.as_secs_f64()),
                        "lease": r.lease,
                    })
                })
                .collect();
            serde_json::json!({
                "path": d.path.display().to_string(),
                "position": pos_json(d.pos),
                "replicas": replicas,
            })
        })
        .collect();
    serde_json::json!({ "dbs": dbs })
}

/// The body of `GET /healthz`: `{"status":"ok"}`, or `{"status":"stalled","stalled":[{"db",
/// "replica","unshipped_seconds","last_error"}]}` (served with 503).
pub fn health_json(stalls: &[Stall]) -> serde_json::Value {
    if stalls.is_empty() {
        return serde_json::json!({"status": "ok"});
    }
    let stalled: Vec<serde_json::Value> = stalls
        .iter()
        .map(|s| {
            serde_json::json!({
                "db": s.db.display().to_string(),
                "replica": s.replica,
                "unshipped_seconds": s.unshipped_for.as_secs_f64(),
                "last_error": s.last_error,
            })
        })
        .collect();
    serde_json::json!({"status": "stalled", "stalled": stalled})
}

// ---------------------------------------------------------------------------------------
// HTTP server

/// Splits `addr` (`host:port`, `:port`, `[v6]:port`) into host (empty for all interfaces)
/// and port, with Litestream's message when the port is missing.
pub fn parse_addr(addr: &str) -> Result<(String, u16)> {
    let no_port = || Error::Config(format!("must specify port for bind address: {addr:?}"));
    let (host, port) = addr.rsplit_once(':').ok_or_else(no_port)?;
    if port.is_empty() {
        return Err(no_port());
    }
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.contains(':') && !addr.starts_with('[') {
        return Err(Error::Config(format!(
            "bind address {addr:?}: write an IPv6 host in brackets, e.g. \"[::1]:9090\""
        )));
    }
    let port = port
        .parse::<u16>()
        .map_err(|_| Error::Config(format!("bind address {addr:?}: invalid port {port:?}")))?;
    Ok((host.to_string(), port))
}

/// A bound metrics listener, not yet serving.
#[derive(Debug)]
pub struct MetricsListener {
    listener: TcpListener,
    url: String,
}

impl MetricsListener {
    /// Binds `addr` (see [`parse_addr`]); an empty host binds every interface.
    pub async fn bind(addr: &str) -> Result<MetricsListener> {
        let (host, port) = parse_addr(addr)?;
        let bind_err = |e: std::io::Error| Error::Io {
            op: "bind",
            path: addr.into(),
            source: e,
        };
        let listener = if host.is_empty() {
            // Dual-stack where IPv6 exists, as Go's net/http does; else IPv4 only.
            match TcpListener::bind(("::", port)).await {
                Ok(l) => l,
                Err(_) => TcpListener::bind(("0.0.0.0", port))
                    .await
                    .map_err(bind_err)?,
            }
        } else {
            TcpListener::bind((host.as_str(), port))
                .await
                .map_err(bind_err)?
        };
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(port);
        let url_host = if host.is_empty() {
            "localhost".to_string()
        } else if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        Ok(MetricsListener {
            listener,
            url: format!("http://{url_host}:{port}"),
        })
    }

    /// The base URL (`http://localhost:9090`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Serves `/metrics` and `/status` for `handle` on a task until the returned server is
    /// stopped (or dropped).
    pub fn serve(self, handle: EngineHandle) -> MetricsServer {
        self.serve_source(Source::Engine(handle))
    }

    /// Serves a follower's status: `/metrics` has `walship_follower_*` gauges (and the
    /// process-wide operation counters), `/status` the [`FollowStatus`] of the copy at
    /// `copy` as JSON.
    pub fn serve_follower(
        self,
        copy: std::path::PathBuf,
        status: tokio::sync::watch::Receiver<FollowStatus>,
    ) -> MetricsServer {
        self.serve_source(Source::Follower(std::sync::Arc::new((copy, status))))
    }

    fn serve_source(self, source: Source) -> MetricsServer {
        info!(url = %format!("{}/metrics", self.url), "serving metrics on");
        let task = tokio::spawn(accept_loop(self.listener, source));
        MetricsServer { task }
    }
}

/// A running metrics server. Stops when [`MetricsServer::stop`] is called or it is dropped.
#[derive(Debug)]
pub struct MetricsServer {
    task: tokio::task::JoinHandle<()>,
}

impl MetricsServer {
    /// Stops accepting and closes every open connection.
    pub async fn stop(self) {
        self.task.abort();
        let _ = (&mut { self }.task).await;
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the server reports on.
#[derive(Clone)]
enum Source {
    Engine(EngineHandle),
    Follower(
        std::sync::Arc<(
            std::path::PathBuf,
            tokio::sync::watch::Receiver<FollowStatus>,
        )>,
    ),
}

/// The follower's gauges, in the Prometheus text format.
fn follower_metrics(copy: &std::path::Path, s: &FollowStatus) -> String {
    use std::fmt::Write as _;
    let label = format!(
        "copy=\"{}\"",
        copy.display()
            .to_string()
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
    );
    let secs = |t: Option<std::time::SystemTime>| {
        t.and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0.0, |d| d.as_secs_f64())
    };
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, kind: &str, v: f64| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let _ = writeln!(out, "{name}{{{label}}} {v}");
    };
    let p = s.position.as_ref();
    gauge(
        "walship_follower_index",
        "WAL index of the copy's position.",
        "gauge",
        p.map_or(0.0, |p| f64::from(p.index)),
    );
    gauge(
        "walship_follower_offset",
        "Offset in that WAL index of the copy's position.",
        "gauge",
        p.map_or(0.0, |p| p.offset as f64),
    );
    gauge(
        "walship_follower_pages",
        "Pages in the copy.",
        "gauge",
        f64::from(s.pages),
    );
    gauge(
        "walship_follower_updates_total",
        "Updates of the copy since start.",
        "counter",
        s.updates as f64,
    );
    gauge(
        "walship_follower_full_restores_total",
        "Full restores since start (first restore, new generation, gap).",
        "counter",
        s.full_restores as f64,
    );
    gauge(
        "walship_follower_last_update_timestamp_seconds",
        "When the copy last changed (Unix time; 0: never).",
        "gauge",
        secs(s.updated_at),
    );
    gauge(
        "walship_follower_last_check_timestamp_seconds",
        "When the replica was last read successfully (Unix time; 0: never).",
        "gauge",
        secs(s.checked_at),
    );
    gauge(
        "walship_follower_apply_delay_seconds",
        "From the storage time of the last applied change to its commit into the copy.",
        "gauge",
        s.apply_delay.map_or(0.0, |d| d.as_secs_f64()),
    );
    gauge(
        "walship_follower_error",
        "1 while the follower cannot read the replica (see /status for the error).",
        "gauge",
        if s.last_error.is_some() { 1.0 } else { 0.0 },
    );
    out
}

async fn accept_loop(listener: TcpListener, handle: Source) {
    // Connection tasks live in this set, so stopping the loop closes them too.
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                debug!(error = %e, "metrics accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        while conns.try_join_next().is_some() {}
        let handle = handle.clone();
        conns.spawn(async move {
            let io = hyper_util::rt::TokioIo::new(stream);
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let handle = handle.clone();
                async move { Ok::<_, Infallible>(respond(&handle, &req)) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(io, svc)
                .await
            {
                debug!(%peer, error = %e, "metrics connection ended");
            }
        });
    }
}

fn respond(source: &Source, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let reply = |code: StatusCode, ctype: &'static str, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = code;
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static(ctype),
        );
        r
    };
    if let Source::Follower(f) = source {
        let (copy, rx) = &**f;
        let st = rx.borrow().clone();
        return match req.uri().path() {
            "/metrics" => reply(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                follower_metrics(copy, &st) + &global().encode(),
            ),
            "/status" => {
                let mut body = serde_json::json!({
                    "follower": {"copy": copy.display().to_string(), "status": st},
                })
                .to_string();
                body.push('\n');
                reply(StatusCode::OK, "application/json", body)
            }
            // A follower is unhealthy while it cannot read the replica.
            "/healthz" => {
                let (code, body) = match &st.last_error {
                    None => (StatusCode::OK, serde_json::json!({"status": "ok"})),
                    Some(e) => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        serde_json::json!({"status": "failing", "last_error": e}),
                    ),
                };
                reply(code, "application/json", format!("{body}\n"))
            }
            _ => reply(
                StatusCode::NOT_FOUND,
                "text/plain; charset=utf-8",
                "404 page not found\n".into(),
            ),
        };
    }
    let Source::Engine(handle) = source else {
        unreachable!("follower handled above")
    };
    match req.uri().path() {
        "/metrics" => {
            let m = global();
            m.update_lag(&handle.status());
            reply(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                m.encode(),
            )
        }
        "/status" => {
            let mut body = status_json(&handle.status()).to_string();
            body.push('\n');
            reply(StatusCode::OK, "application/json", body)
        }
        "/healthz" => {
            let stalls = handle.health();
            let code = if stalls.is_empty() {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            let mut body = health_json(&stalls).to_string();
            body.push('\n');
            reply(code, "application/json", body)
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "404 page not found\n".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addr_needs_a_port() {
        assert_eq!(parse_addr(":9090").unwrap(), (String::new(), 9090));
        assert_eq!(
            parse_addr("127.0.0.1:9090").unwrap(),
            ("127.0.0.1".into(), 9090)
        );
        assert_eq!(parse_addr("[::1]:9090").unwrap(), ("::1".into(), 9090));
        assert_eq!(
            parse_addr("localhost").unwrap_err().to_string(),
            Error::Config("must specify port for bind address: \"localhost\"".into()).to_string()
        );
        assert!(parse_addr("localhost:").is_err());
        assert!(parse_addr("localhost:http").is_err());
    }
}
