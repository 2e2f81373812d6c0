//! Prometheus metrics under Litestream v0.3.13's names, types and labels, plus walship's
//! own replica lag gauges, and the `addr:` HTTP server that serves them (`GET /metrics`,
//! Prometheus text format 0.0.4) together with `GET /status` (JSON of
//! [`EngineHandle::status`]).
//!
//! One process-global registry ([`global`]): databases, replicas and object-store clients
//! record into it as they work; the lag gauges are computed from the engine's status at
//! scrape time. As with Litestream, a database's and a replica's series appear (at zero) as
//! soon as it is created; the per-mode checkpoint series and the object-store operation
//! series appear once used (the file backend records no operations, as in Litestream).
use std::convert::Infallible;
use std::path::Path;
use std::sync::LazyLock;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode, header};
use prometheus::{
    Counter, CounterVec, Encoder, GaugeVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use tokio::net::TcpListener;
use tracing::{debug, info};

use crate::engine::EngineHandle;
use crate::error::{Error, Result};
use crate::event::DbStatus;
use crate::pos::Pos;

/// Every metric walship exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    db_size: IntGaugeVec,
    wal_size: IntGaugeVec,
    total_wal_bytes: IntCounterVec,
    shadow_wal_index: IntGaugeVec,
    shadow_wal_size: IntGaugeVec,
    sync_count: IntCounterVec,
    sync_error_count: IntCounterVec,
    sync_seconds: CounterVec,
    checkpoint_count: IntCounterVec,
    checkpoint_error_count: IntCounterVec,
    checkpoint_seconds: CounterVec,
    replica_wal_bytes: IntCounterVec,
    replica_wal_index: IntGaugeVec,
    replica_wal_offset: IntGaugeVec,
    replica_validation_total: IntCounterVec,
    operation_total: IntCounterVec,
    operation_bytes: IntCounterVec,
    lag_bytes: IntGaugeVec,
    lag_seconds: GaugeVec,
}

static GLOBAL: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process-global metrics.
pub fn global() -> &'static Metrics {
    &GLOBAL
}

fn reg<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, m: T) -> T {
    // Names are fixed and distinct: registration cannot fail.
    r.register(Box::new(m.clone()))
        .expect("metric names are distinct");
    m
}

impl Metrics {
    fn new() -> Metrics {
        let r = Registry::new();
        #[cfg(target_os = "linux")]
        {
            let _ = r.register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ));
        }
        let igv = |name: &str, help: &str, labels: &[&str]| {
            reg(
                &r,
                IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        let icv = |name: &str, help: &str, labels: &[&str]| {
            reg(
                &r,
                IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        let fcv = |name: &str, help: &str, labels: &[&str]| {
            reg(
                &r,
                CounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        let db = &["db"];
        let dbm = &["db", "mode"];
        let dbn = &["db", "name"];
        let ops = &["replica_type", "operation"];
        Metrics {
            db_size: igv("litestream_db_size", "The current size of the real DB", db),
            wal_size: igv(
                "litestream_wal_size",
                "The current size of the real WAL",
                db,
            ),
            total_wal_bytes: icv(
                "litestream_total_wal_bytes",
                "Total number of bytes written to shadow WAL",
                db,
            ),
            shadow_wal_index: igv(
                "litestream_shadow_wal_index",
                "The current index of the shadow WAL",
                db,
            ),
            shadow_wal_size: igv(
                "litestream_shadow_wal_size",
                "Current size of shadow WAL, in bytes",
                db,
            ),
            sync_count: icv("litestream_sync_count", "Number of sync operations", db),
            sync_error_count: icv("litestream_sync_error_count", "Number of sync errors", db),
            sync_seconds: fcv(
                "litestream_sync_seconds",
                "Time spent syncing shadow WAL, in seconds",
                db,
            ),
            checkpoint_count: icv(
                "litestream_checkpoint_count",
                "Number of checkpoint operations",
                dbm,
            ),
            checkpoint_error_count: icv(
                "litestream_checkpoint_error_count",
                "Number of checkpoint errors",
                dbm,
            ),
            checkpoint_seconds: fcv(
                "litestream_checkpoint_seconds",
                "Time spent checkpointing WAL, in seconds",
                dbm,
            ),
            replica_wal_bytes: icv(
                "litestream_replica_wal_bytes",
                "The number wal bytes written by a replica",
                dbn,
            ),
            replica_wal_index: igv("litestream_replica_wal_index", "The current WAL index", dbn),
            replica_wal_offset: igv(
                "litestream_replica_wal_offset",
                "The current WAL offset",
                dbn,
            ),
            replica_validation_total: icv(
                "litestream_replica_validation_total",
                "The number of validations performed",
                &["db", "name", "status"],
            ),
            operation_total: icv(
                "litestream_replica_operation_total",
                "The number of replica operations performed",
                ops,
            ),
            operation_bytes: icv(
                "litestream_replica_operation_bytes",
                "The number of bytes used by replica operations",
                ops,
            ),
            lag_bytes: igv(
                "walship_replica_lag_bytes",
                "Bytes of shadow WAL the replica does not have yet (absent when unknown)",
                dbn,
            ),
            lag_seconds: reg(
                &r,
                GaugeVec::new(
                    Opts::new(
                        "walship_replica_lag_seconds",
                        "How long the replica has been behind the database, in seconds",
                    ),
                    dbn,
                )
                .expect("valid metric"),
            ),
            registry: r,
        }
    }

    /// The series of one database (created at zero).
    pub fn db(&self, path: &Path) -> DbMetrics {
        let label = path.display().to_string();
        let l = &[label.as_str()];
        DbMetrics {
            db_size: self.db_size.with_label_values(l),
            wal_size: self.wal_size.with_label_values(l),
            total_wal_bytes: self.total_wal_bytes.with_label_values(l),
            shadow_wal_index: self.shadow_wal_index.with_label_values(l),
            shadow_wal_size: self.shadow_wal_size.with_label_values(l),
            sync_count: self.sync_count.with_label_values(l),
            sync_error_count: self.sync_error_count.with_label_values(l),
            sync_seconds: self.sync_seconds.with_label_values(l),
            label,
        }
    }

    /// The series of one replica of the database at `db` (created at zero).
    pub fn replica(&self, db: &Path, name: &str) -> ReplicaMetrics {
        let db = db.display().to_string();
        let l = &[db.as_str(), name];
        let validation = |status: &str| {
            self.replica_validation_total
                .with_label_values(&[db.as_str(), name, status])
        };
        ReplicaMetrics {
            validation_ok: validation("ok"),
            validation_error: validation("error"),
            wal_bytes: self.replica_wal_bytes.with_label_values(l),
            wal_index: self.replica_wal_index.with_label_values(l),
            wal_offset: self.replica_wal_offset.with_label_values(l),
        }
    }

    /// Records one object-store request (`GET`, `PUT`, `LIST`, `DELETE`) and its bytes.
    pub fn operation(&self, replica_type: &str, operation: &str, bytes: u64) {
        let l = &[replica_type, operation];
        self.operation_total.with_label_values(l).inc();
        if bytes > 0 {
            self.operation_bytes.with_label_values(l).inc_by(bytes);
        }
    }

    /// Sets the lag gauges from an engine status (a replica whose lag in bytes is unknown
    /// has no `walship_replica_lag_bytes` series).
    pub fn update_lag(&self, status: &[DbStatus]) {
        for d in status {
            let db = d.path.display().to_string();
            for r in &d.replicas {
                let l = &[db.as_str(), r.name.as_str()];
                match r.lag_bytes {
                    Some(b) => self
                        .lag_bytes
                        .with_label_values(l)
                        .set(i64::try_from(b).unwrap_or(i64::MAX)),
                    None => {
                        let _ = self.lag_bytes.remove_label_values(l);
                    }
                }
                self.lag_seconds
                    .with_label_values(l)
                    .set(r.lag.as_secs_f64());
            }
        }
    }

    /// Everything in Prometheus text format 0.0.4.
    pub fn encode(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// The pre-resolved series of one database.
#[derive(Debug, Clone)]
pub struct DbMetrics {
    label: String,
    /// `litestream_db_size`.
    pub db_size: IntGauge,
    /// `litestream_wal_size`.
    pub wal_size: IntGauge,
    /// `litestream_total_wal_bytes`.
    pub total_wal_bytes: IntCounter,
    /// `litestream_shadow_wal_index`.
    pub shadow_wal_index: IntGauge,
    /// `litestream_shadow_wal_size`.
    pub shadow_wal_size: IntGauge,
    /// `litestream_sync_count`.
    pub sync_count: IntCounter,
    /// `litestream_sync_error_count`.
    pub sync_error_count: IntCounter,
    /// `litestream_sync_seconds`.
    pub sync_seconds: Counter,
}

impl DbMetrics {
    /// Records one database sync.
    pub fn sync(&self, elapsed: Duration, ok: bool) {
        self.sync_count.inc();
        if !ok {
            self.sync_error_count.inc();
        }
        self.sync_seconds.inc_by(elapsed.as_secs_f64());
    }

    /// Records one checkpoint in `mode` (`PASSIVE`, `RESTART`, `TRUNCATE`).
    pub fn checkpoint(&self, mode: &str, elapsed: Duration, ok: bool) {
        let m = global();
        let l = &[self.label.as_str(), mode];
        m.checkpoint_count.with_label_values(l).inc();
        if !ok {
            m.checkpoint_error_count.with_label_values(l).inc();
        }
        m.checkpoint_seconds
            .with_label_values(l)
            .inc_by(elapsed.as_secs_f64());
    }

    /// Sets the shadow WAL index gauge and the total size of the shadow WAL files kept in
    /// `dir` (the current generation's `wal/` directory).
    pub fn shadow(&self, index: u32, dir: &Path) {
        self.shadow_wal_index.set(i64::from(index));
        let total: u64 = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_str().is_some_and(|n| n.ends_with(".wal")))
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum();
        self.shadow_wal_size
            .set(i64::try_from(total).unwrap_or(i64::MAX));
    }
}

/// The pre-resolved series of one replica.
#[derive(Debug, Clone)]
pub struct ReplicaMetrics {
    /// `litestream_replica_wal_bytes`: uncompressed bytes sent in WAL segments.
    pub wal_bytes: IntCounter,
    /// `litestream_replica_wal_index`.
    pub wal_index: IntGauge,
    /// `litestream_replica_wal_offset`.
    pub wal_offset: IntGauge,
    /// `litestream_replica_validation_total{status="ok"}`: validations that matched.
    pub validation_ok: IntCounter,
    /// `litestream_replica_validation_total{status="error"}`: validations that found a
    /// mismatch or could not run.
    pub validation_error: IntCounter,
}

impl ReplicaMetrics {
    /// Records the replica's position.
    pub fn set_pos(&self, pos: Pos) {
        self.wal_index.set(i64::from(pos.index));
        self.wal_offset
            .set(i64::try_from(pos.offset).unwrap_or(i64::MAX));
    }
}

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

/// RFC 3339 UTC with whole seconds (`2026-11-21T22:43:33Z`).
pub fn rfc3339(t: SystemTime) -> String {
    let t = time::OffsetDateTime::from(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// The engine's status as JSON (the body of `GET /status`):
/// `{"dbs":[{"path","position","replicas":[{"name","type","position","lag_bytes",
/// "lag_seconds","last_sync","last_error"}]}]}`; a position is
/// `{"generation","index","offset"}` or `null`.
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
        info!(url = %format!("{}/metrics", self.url), "serving metrics on");
        let task = tokio::spawn(accept_loop(self.listener, handle));
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

async fn accept_loop(listener: TcpListener, handle: EngineHandle) {
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

fn respond(handle: &EngineHandle, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let reply = |code: StatusCode, ctype: &'static str, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = code;
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static(ctype),
        );
        r
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

    #[test]
    fn text_format_has_litestream_names() {
        let d = global().db(Path::new("/tmp/metrics-unit.db"));
        d.sync(Duration::from_millis(5), true);
        d.checkpoint("PASSIVE", Duration::from_millis(1), true);
        global().replica(Path::new("/tmp/metrics-unit.db"), "file");
        let text = global().encode();
        assert!(
            text.contains("# TYPE litestream_sync_count counter"),
            "{text}"
        );
        assert!(text.contains("litestream_sync_count{db=\"/tmp/metrics-unit.db\"} 1"));
        assert!(text.contains(
            "litestream_checkpoint_count{db=\"/tmp/metrics-unit.db\",mode=\"PASSIVE\"} 1"
        ));
        assert!(text.contains("# TYPE litestream_db_size gauge"));
        assert!(text.contains(
            "litestream_replica_validation_total{db=\"/tmp/metrics-unit.db\",name=\"file\",status=\"ok\"} 0"
        ));
    }
}
