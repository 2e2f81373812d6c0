//! Guards retention: after it runs, every moment inside the retention window still
//! restores to exactly the rows committed by then, and what only older moments needed is
//! gone from the replica; and that retention deletes in batches on S3 (one DeleteObjects
//! request per 1,000 objects, counted by a proxy in front of moto).
mod common;
#[path = "common/servers.rs"]
mod servers;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use walship::backend::file::FileClient;
use walship::backend::{self, ReplicaClient};
use walship::db::DbOptions;
use walship::engine::{Durability, Engine};
use walship::replica::ReplicaOptions;
use walship::restore::{self, ReplicaSource, RestoreOptions};

/// The window test is timing-driven (300 ms batches, a 2.5 s window): it runs alone, not
/// beside a starting S3 server on this 2-core machine.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn restore_count(
    dir: &std::path::Path,
    replica: &std::path::Path,
    at: SystemTime,
    n: usize,
) -> Result<i64, String> {
    let out = dir.join(format!("r{n}.db"));
    let sources = [ReplicaSource {
        name: "file".into(),
        client: Arc::new(FileClient::new(replica)),
    }];
    let opts = RestoreOptions {
        timestamp: Some(at),
        ..Default::default()
    };
    restore::restore(&sources, &out, &opts, &|_| {})
        .await
        .map_err(|e| e.to_string())?;
    let c = rusqlite::Connection::open(&out).unwrap();
    Ok(c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
        .unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_moment_in_the_window_stays_restorable() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let dir = std::fs::canonicalize(dir.path()).unwrap();
    let db_path = dir.join("app.db");
    let replica = dir.join("replica");
    let mut app = rusqlite::Connection::open(&db_path).unwrap();
    app.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);")
        .unwrap();

    let retention = Duration::from_millis(2500);
    let mut ropts = ReplicaOptions::new("file");
    ropts.sync_interval = Duration::from_millis(50);
    ropts.snapshot_interval = Some(Duration::from_millis(800));
    ropts.retention = Some(retention);
    // Retention runs by hand below, at chosen moments.
    ropts.retention_check_interval = Duration::from_secs(3600);
    let mut dopts = DbOptions::new(&db_path);
    dopts.min_checkpoint_page_count = 8;
    let mut engine = Engine::new();
    let h = engine.add_db(dopts, vec![(Arc::new(FileClient::new(&replica)), ropts)]);
    let handle = engine.start();
    handle.attach(&mut app).unwrap();

    // Batches every 300 ms for ~6 s; after each, wait until durable and note the time.
    let mut marks: Vec<(SystemTime, i64)> = Vec::new();
    let mut rows = 0i64;
    for _ in 0..20 {
        for _ in 0..5 {
            rows += 1;
            app.execute("INSERT INTO t(v) VALUES (?1)", [("x".repeat(3000))])
                .unwrap();
        }
        handle
            .wait_durable(&db_path, Durability::AllReplicas, Duration::from_secs(10))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        marks.push((SystemTime::now(), rows));
        tokio::time::sleep(Duration::from_millis(280)).await;
    }
    // One more write after the last mark: a timestamp after a generation's last write
    // matches nothing (Litestream's rule), so without it the last mark restored only when a
    // scheduled snapshot happened to land after it.
    app.execute("INSERT INTO t(v) VALUES ('after the last mark')", [])
        .unwrap();
    handle
        .wait_durable(&db_path, Durability::AllReplicas, Duration::from_secs(10))
        .await
        .unwrap();
    let client = FileClient::new(&replica);
    let g = backend::generations(&client).await.unwrap();
    assert_eq!(g.len(), 1);
    let snaps_before = backend::snapshots(&client, g[0]).await.unwrap();
    assert!(
        snaps_before.len() >= 3,
        "scheduled snapshots ran: {snaps_before:?}"
    );

    let plan = h.replicas[0].enforce_retention().await.unwrap();
    let now = SystemTime::now();
    let cutoff = now - retention;
    assert!(
        !plan.snapshots.is_empty() && !plan.segments.is_empty(),
        "something was old enough to go: {plan:?}"
    );

    // Every mark inside the window restores exactly.
    let inside: Vec<_> = marks
        .iter()
        .filter(|(t, _)| *t >= cutoff + Duration::from_millis(100))
        .collect();
    assert!(
        inside.len() >= 4,
        "marks inside the window: {}",
        inside.len()
    );
    for (k, (t, n)) in inside.iter().enumerate() {
        let got = restore_count(&dir, &replica, *t, k)
            .await
            .unwrap_or_else(|e| panic!("restore at mark {k}: {e}"));
        assert_eq!(got, *n, "restore at a moment inside the window");
    }
    // What is left starts with one snapshot at or before the cutoff (the anchor) and
    // nothing older.
    let snaps = backend::snapshots(&client, g[0]).await.unwrap();
    let at_or_before: Vec<_> = snaps.iter().filter(|s| s.created <= cutoff).collect();
    assert!(
        at_or_before.len() <= 1,
        "only the anchoring snapshot may predate the window: {snaps:?}"
    );
    let base = snaps.iter().map(|s| s.index).min().unwrap();
    let segs = backend::wal_segments(&client, g[0]).await.unwrap();
    assert!(
        segs.iter().all(|s| s.index >= base),
        "no segment below the base snapshot's index"
    );
    assert!(client.list("generations").await.unwrap().len() == 1);

    drop(app);
    handle.shutdown().await.unwrap();
}

/// Retention's deletes on S3 go out as DeleteObjects batches: 300 segments and snapshots
/// cost one POST instead of 300 DELETEs. Counted by a proxy in front of moto, with the
/// one-at-a-time way measured on the same store first, so the test shows the difference.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_in_batches_on_s3() {
    use walship::backend::{SnapshotInfo, WalSegmentInfo};
    use walship::retention::{self, RetentionPlan};
    let _serial = SERIAL.lock().await;

    let dir = tempfile::tempdir().unwrap();
    let Some(moto) = servers::MotoServer::start("retention_deletes_in_batches_on_s3", dir.path())
    else {
        return;
    };
    moto.create_bucket("ret");
    let proxy = servers::FaultProxy::start(moto.proc.addr());
    let walship::config::ReplicaTarget::S3(cfg) = servers::s3_target(proxy.port(), "ret", "db")
    else {
        unreachable!()
    };
    let client = walship::backend::BucketClient::s3(&cfg).unwrap();
    let g = walship::Generation(0x0123_4567_89ab_cdef);
    let now = SystemTime::now();
    let segs: Vec<WalSegmentInfo> = (0..150u32)
        .flat_map(|i| {
            (0..2u32).map(move |k| WalSegmentInfo {
                generation: g,
                index: i,
                offset: k * 4096,
                size: 1,
                created: now,
            })
        })
        .collect();
    let snaps: Vec<SnapshotInfo> = (0..20u32)
        .map(|i| SnapshotInfo {
            generation: g,
            index: i,
            size: 1,
            created: now,
        })
        .collect();
    let paths: Vec<String> = segs
        .iter()
        .map(WalSegmentInfo::path)
        .chain(snaps.iter().map(SnapshotInfo::path))
        .collect();
    let put_all = || async {
        for p in &paths {
            client
                .put(p, bytes::Bytes::from_static(b"x"))
                .await
                .unwrap();
        }
    };

    // One at a time (what retention did before).
    put_all().await;
    let before = proxy.stats().requests;
    for p in &paths {
        client.delete(p).await.unwrap();
    }
    let one_by_one = proxy.stats().requests - before;
    assert!(moto.list_keys("ret", "db/").is_empty());

    // Through retention.
    put_all().await;
    let plan = RetentionPlan {
        snapshots: snaps,
        segments: segs,
        ..Default::default()
    };
    let before = proxy.stats();
    retention::execute(&client, &plan).await.unwrap();
    let after = proxy.stats();
    let batched = after.requests - before.requests;
    let posts = after.by_method.get("POST").copied().unwrap_or(0)
        - before.by_method.get("POST").copied().unwrap_or(0);
    assert!(
        moto.list_keys("ret", "db/").is_empty(),
        "every planned object is gone"
    );
    eprintln!(
        "MEASURE: retention deleting {} objects on S3 (moto): {one_by_one} requests one at a time, \
         {batched} batched ({posts} POST)",
        paths.len()
    );
    assert_eq!(one_by_one, paths.len() as u64);
    // Two DeleteObjects requests: every later segment (and snapshot) first, then the
    // offset-0 segments, so a crash in between leaves each index starting at offset 0
    // (what Litestream's restore requires).
    assert_eq!(
        batched,
        2,
        "two DeleteObjects requests for {} keys",
        paths.len()
    );
    assert_eq!(posts, 2);
}
