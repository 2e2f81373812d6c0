//! Guards retention: after it runs, every moment inside the retention window still
//! restores to exactly the rows committed by then, and what only older moments needed is
//! gone from the replica.
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use walship::backend::file::FileClient;
use walship::backend::{self, ReplicaClient};
use walship::db::DbOptions;
use walship::engine::{Durability, Engine};
use walship::replica::ReplicaOptions;
use walship::restore::{self, ReplicaSource, RestoreOptions};

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
