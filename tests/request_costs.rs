//! Measures object-store requests per hour (issue #5, cost) for walship and the real
//! Litestream v0.3.13, each replicating to S3 (moto) through its own counting proxy, all four
//! at once with default settings (sync-interval 1s, monitor-interval 1s,
//! checkpoint-interval 1m, retention 24h checked hourly):
//! - an idle database (no writes after start-up);
//! - a database with one committed transaction every second;
//! - the same with `retention: 1m` checked every 20 s, so that retention's listing, snapshots
//!   and deletes are in the count (with the defaults they come once an hour).
//!
//! Counting starts after a 75 s warm-up (start-up, first snapshot, first segments, and the
//! first time-based checkpoint one checkpoint-interval after start, which ships one segment
//! even for the idle database) and runs for `WALSHIP_COST_SECS` seconds (default 120); the
//! counts are scaled to one hour. Retention
//! runs once an hour in both tools, so a run shorter than an hour does not see it (a few
//! LIST and DELETE requests per hour per database in either). Run with:
//!
//! `cargo test --test request_costs -- --ignored --nocapture`
//!
//! It prints `MEASURE:` lines and fails if walship sends more requests than Litestream for
//! either workload, not counting walship's replica lease (which Litestream v0.3.13 does not
//! have); the lease's own requests are counted apart and must stay at zero for the idle
//! database and at most one renewal per half TTL (15 s by default) for the busy ones.
mod common;
#[path = "common/servers.rs"]
mod servers;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Proc, TestDir, Tool, s};
use servers::{FaultProxy, MotoServer, ProxyStats, s3_replica_yaml};

fn config(
    dir: &Path,
    name: &str,
    db: &Path,
    proxy: &FaultProxy,
    bucket: &str,
    retention: bool,
) -> PathBuf {
    let mut y = format!(
        "dbs:\n  - path: \"{}\"\n    replicas:\n{}",
        s(db),
        s3_replica_yaml(proxy.port(), bucket, "db", "1s")
    );
    if retention {
        y.push_str("        retention: 1m\n        retention-check-interval: 20s\n");
    }
    let p = dir.join(name);
    fs::write(&p, y).expect("write config");
    p
}

fn create_db(path: &Path) {
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch(
        "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
         INSERT INTO t(v) VALUES ('a'), ('b'), ('c');",
    )
    .unwrap();
}

/// (requests, of which on the lease, by method) between two counts.
fn delta(before: &ProxyStats, after: &ProxyStats) -> (u64, u64, String) {
    let mut by = after.by_method.clone();
    for (m, n) in &before.by_method {
        *by.entry(m.clone()).or_default() -= n;
    }
    by.retain(|_, n| *n > 0);
    (
        after.requests - before.requests,
        after.lease_requests - before.lease_requests,
        format!("{by:?}"),
    )
}

#[test]
#[ignore = "measurement: ~3.5 minutes; run with --ignored --nocapture"]
fn requests_per_hour_idle_and_one_commit_per_second() {
    let test = "requests_per_hour";
    let Some(ls) = common::litestream(test) else {
        return;
    };
    let secs: u64 = std::env::var("WALSHIP_COST_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(120);
    let t = TestDir::new("request-costs");
    let Some(moto) = MotoServer::start(test, t.path()) else {
        return;
    };
    let tools = [Tool::Walship, Tool::Litestream(ls)];
    let mut runs = Vec::new();
    for tool in &tools {
        for load in ["idle", "busy", "retention"] {
            let bucket = format!("{}-{load}", tool.name());
            moto.create_bucket(&bucket);
            let proxy = FaultProxy::start(moto.proc.addr());
            let db = t.join(format!("{bucket}.db"));
            create_db(&db);
            let cfg = config(
                t.path(),
                &format!("{bucket}.yml"),
                &db,
                &proxy,
                &bucket,
                load == "retention",
            );
            let p = Proc::replicate(t.path(), tool, &cfg);
            runs.push((tool.name(), load, db, proxy, p));
        }
    }
    // One commit per second on each busy database, from the start.
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = runs
        .iter()
        .filter(|r| r.1 != "idle")
        .map(|r| {
            let (db, stop) = (r.2.clone(), stop.clone());
            std::thread::spawn(move || {
                let c = rusqlite::Connection::open(&db).unwrap();
                c.busy_timeout(Duration::from_secs(5)).unwrap();
                let mut n = 0u64;
                let start = Instant::now();
                while !stop.load(Ordering::SeqCst) {
                    c.execute("INSERT INTO t(v) VALUES (hex(randomblob(50)))", [])
                        .unwrap();
                    n += 1;
                    // Paced on the wall clock: one commit per elapsed second.
                    let next = start + Duration::from_secs(n);
                    std::thread::sleep(next.saturating_duration_since(Instant::now()));
                }
                n
            })
        })
        .collect();

    std::thread::sleep(Duration::from_secs(75));
    let before: Vec<ProxyStats> = runs.iter().map(|r| r.3.stats()).collect();
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let took = start.elapsed().as_secs_f64();
    let after: Vec<ProxyStats> = runs.iter().map(|r| r.3.stats()).collect();
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.join().unwrap();
    }

    let mut per_hour = std::collections::BTreeMap::new();
    for (i, r) in runs.iter_mut().enumerate() {
        r.4.assert_running();
        let (n, lease, by) = delta(&before[i], &after[i]);
        let hourly = (n - lease) as f64 * 3600.0 / took;
        let lease_hourly = lease as f64 * 3600.0 / took;
        eprintln!(
            "MEASURE: {} {} database ({}): {n} S3 requests in {took:.0} s, {lease} of them on \
             the replica lease = {hourly:.0} per hour without the lease, {lease_hourly:.0} for \
             it; by method {by}",
            r.0,
            r.1,
            match r.1 {
                "idle" => "no writes",
                "busy" => "one commit per second",
                _ => "one commit per second, retention 1m checked every 20 s",
            },
        );
        per_hour.insert((r.0, r.1), hourly);
        // One renewal per half TTL at most (30 s default), plus the first claim.
        let most = (took / 15.0).ceil() as u64 + 1;
        match r.1 {
            "idle" => assert_eq!(lease, 0, "{} idle: the lease cost requests", r.0),
            _ => assert!(
                lease <= most,
                "{} {}: {lease} lease requests > {most}",
                r.0,
                r.1
            ),
        }
    }
    for mut r in runs {
        r.4.stop();
    }
    for load in ["idle", "busy", "retention"] {
        let w = per_hour[&("walship", load)];
        let l = per_hour[&("litestream", load)];
        assert!(
            w <= l,
            "{load}: walship sends more requests per hour ({w:.0}) than Litestream ({l:.0})"
        );
    }
}
