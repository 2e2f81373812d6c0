//! Prometheus metrics under Litestream v0.3.13's names, types and labels, plus walship's
//! own replica lag gauges. [`crate::server`] serves them on `addr:`.
//!
//! One process-global registry ([`global`]): databases, replicas and object-store clients
//! record into it as they work; the lag gauges are computed from the engine's status at
//! scrape time. As with Litestream, a database's and a replica's series appear (at zero) as
//! soon as it is created; the per-mode checkpoint series and the object-store operation
//! series appear once used (the file backend records no operations, as in Litestream).
use std::path::Path;
use std::sync::LazyLock;
use std::time::{Duration, SystemTime};

use prometheus::{
    Counter, CounterVec, Encoder, GaugeVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

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
    unshipped_seconds: GaugeVec,
}

static GLOBAL: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process-global metrics.
pub fn global() -> &'static Metrics {
    &GLOBAL
}

/// A counter for a network backend's requests (`backend::OperationCounter`) that records
/// them in the process-global metrics (`litestream_replica_operation_*`).
#[allow(clippy::type_complexity)]
pub fn operation_counter() -> std::sync::Arc<dyn Fn(&'static str, &'static str, u64) + Send + Sync>
{
    std::sync::Arc::new(|replica_type, operation, bytes| {
        global().operation(replica_type, operation, bytes)
    })
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
            unshipped_seconds: reg(
                &r,
                GaugeVec::new(
                    Opts::new(
                        "walship_replica_unshipped_seconds",
                        "Seconds since the replica's last successful sync while it holds less \
                         than the database (0 while it is up to date); /healthz fails past \
                         stall-intervals sync intervals",
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
                self.unshipped_seconds
                    .with_label_values(l)
                    .set(r.unshipped_for.map_or(0.0, |d| d.as_secs_f64()));
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

#[cfg(test)]
mod tests {
    use super::*;

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
