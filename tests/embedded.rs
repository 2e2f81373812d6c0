//! Guards the embedding API: durable-commit waits (every acknowledged commit survives a
//! restore), the commit hook, events, status, a clear timeout when no replica can store, and
//! an age-encrypted replica built from a config.
use std::sync::Arc;
use std::time::Duration;

use walship::backend::file::FileClient;
use walship::db::DbOptions;
use walship::engine::{Durability, Engine};
use walship::event::Event;
use walship::replica::ReplicaOptions;
use walship::restore::{self, ReplicaSource, RestoreOptions};

fn app_db(path: &std::path::Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);")
        .unwrap();
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_commits_survive_restore() {
    let dir = tempfile::tempdir().unwrap();
    let dir = std::fs::canonicalize(dir.path()).unwrap();
    let db_path = dir.join("app.db");
    let mut app = app_db(&db_path);
    let mut engine = Engine::new();
    let mut ropts = ReplicaOptions::new("file");
    // A long interval: only the durability waits can make uploads this prompt.
    ropts.sync_interval = Duration::from_secs(30);
    let mut dopts = DbOptions::new(&db_path);
    dopts.monitor_interval = Duration::from_secs(30);
    dopts.min_checkpoint_page_count = 50;
    engine.add_db(
        dopts,
        vec![(Arc::new(FileClient::new(dir.join("replica"))), ropts)],
    );
    let handle = engine.start();
    let mut events = handle.subscribe();
    handle.attach(&mut app).unwrap();
    let autockpt: i64 = app
        .query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))
        .unwrap();
    assert_eq!(autockpt, 0, "attach turns SQLite's auto-checkpoint off");

    let mut acked = Vec::new();
    for i in 0..150i64 {
        app.execute(
            "INSERT INTO t(id, v) VALUES (?1, ?2)",
            rusqlite::params![i, "x".repeat(2000)],
        )
        .unwrap();
        let pos = handle
            .wait_durable(&db_path, Durability::AllReplicas, Duration::from_secs(10))
            .await
            .unwrap();
        acked.push((i, pos));
    }
    // Positions never go back within a generation.
    for w in acked.windows(2) {
        if w[0].1.generation == w[1].1.generation {
            assert!((w[0].1.index, w[0].1.offset) <= (w[1].1.index, w[1].1.offset));
        }
    }
    let st = handle.status();
    assert_eq!(st.len(), 1);
    assert_eq!(st[0].replicas[0].lag_bytes, Some(0), "{st:?}");
    assert!(st[0].replicas[0].last_sync.is_some() && st[0].replicas[0].last_error.is_none());

    let mut seen_gen = false;
    let mut seen_snap = false;
    let mut synced = 0;
    while let Ok(e) = events.try_recv() {
        match e {
            Event::GenerationStarted { .. } => seen_gen = true,
            Event::SnapshotWritten { .. } => seen_snap = true,
            Event::Synced { .. } => synced += 1,
            _ => {}
        }
    }
    assert!(
        seen_gen && seen_snap && synced > 0,
        "events: gen {seen_gen} snap {seen_snap} synced {synced}"
    );

    // Simulate the disaster without a clean shutdown's final sync: restore what the
    // replica holds right now; every acknowledged row must be there.
    let out = dir.join("restored.db");
    let sources = [ReplicaSource {
        name: "file".into(),
        client: Arc::new(FileClient::new(dir.join("replica"))),
    }];
    restore::restore(&sources, &out, &RestoreOptions::default(), &|_| {})
        .await
        .unwrap();
    let r = rusqlite::Connection::open(&out).unwrap();
    let ids: Vec<i64> = r
        .prepare("SELECT id FROM t ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(ids, (0..150).collect::<Vec<_>>());
    drop(app);
    handle.shutdown().await.unwrap();
    // Idempotent.
    handle.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durability_wait_times_out_when_no_replica_can_store() {
    let dir = tempfile::tempdir().unwrap();
    let dir = std::fs::canonicalize(dir.path()).unwrap();
    let db_path = dir.join("app.db");
    let app = app_db(&db_path);
    // The replica root is a regular file: every write fails.
    let blocker = dir.join("not-a-dir");
    std::fs::write(&blocker, b"x").unwrap();
    let mut engine = Engine::new();
    let mut ropts = ReplicaOptions::new("broken");
    ropts.sync_interval = Duration::from_millis(50);
    engine.add_db(
        DbOptions::new(&db_path),
        vec![(Arc::new(FileClient::new(&blocker)), ropts)],
    );
    let handle = engine.start();
    app.execute("INSERT INTO t(v) VALUES ('a')", []).unwrap();
    let err = handle
        .wait_durable(&db_path, Durability::AnyReplica, Duration::from_millis(700))
        .await
        .unwrap_err();
    assert!(matches!(err, walship::Error::Timeout(_)), "{err}");
    assert!(err.to_string().contains("app.db"), "{err}");
    let st = handle.status();
    assert!(st[0].replicas[0].last_error.is_some(), "{st:?}");
    assert!(
        handle.shutdown().await.is_err(),
        "the final sync cannot succeed, and shutdown says so"
    );
    // Unknown databases are an error, not a hang.
    let e = handle
        .wait_durable(
            &dir.join("other.db"),
            Durability::AnyReplica,
            Duration::from_secs(1),
        )
        .await
        .unwrap_err();
    assert!(e.is_not_found(), "{e}");
}

/// The embedding API with an age-encrypted replica: `Engine::from_config` builds the
/// encrypting client from `age:`, durable waits cover encrypted uploads, every object is an
/// age file, and a library restore through `AgeClient` with the identity gives every
/// acknowledged row back (without it, the error names the missing key).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn age_encrypted_replica_through_the_library() {
    use walship::backend::age::{AgeClient, is_age};
    use walship::config::{Config, Secret};
    const PUBLIC: &str = "age162vu4dqq6l0k8z6p60kduud6fxq90me65k8tpplxgx4rqyad9fdsg293t9";
    const SECRET: &str =
        "AGE-SECRET-KEY-1N9EG8AY36NK2RNG76JPUAJL36KY244NN84KTS9UY7FN3XATML9MQX7C5WK";
    let dir = tempfile::tempdir().unwrap();
    let dir = std::fs::canonicalize(dir.path()).unwrap();
    let db_path = dir.join("app.db");
    let replica = dir.join("replica");
    let mut app = app_db(&db_path);
    let yaml = format!(
        "dbs:\n  - path: {}\n    replicas:\n      - path: {}\n        age:\n          recipients: [{PUBLIC}]\n          identities: [{SECRET}]\n",
        db_path.display(),
        replica.display()
    );
    let config = Config::from_yaml(&yaml, &dir.join("litestream.yml"), false)
        .unwrap()
        .config;
    let handle = Engine::from_config(&config).unwrap().start();
    handle.attach(&mut app).unwrap();
    for i in 0..20i64 {
        app.execute("INSERT INTO t(id, v) VALUES (?1, 'x')", [i])
            .unwrap();
        handle
            .wait_durable(&db_path, Durability::AllReplicas, Duration::from_secs(10))
            .await
            .unwrap();
    }
    // Every object of the generations is encrypted (the lease at the root is walship's
    // bookkeeping, not data).
    let mut objects = Vec::new();
    let mut stack = vec![replica.join("generations")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                objects.push(e.path());
            }
        }
    }
    assert!(!objects.is_empty());
    for o in &objects {
        assert!(
            is_age(&std::fs::read(o).unwrap()),
            "{} is not encrypted",
            o.display()
        );
    }

    let file = Arc::new(FileClient::new(replica.clone()));
    let with_key = AgeClient::new(file.clone(), &[], &[Secret::new(SECRET)]).unwrap();
    let out = dir.join("restored.db");
    let sources = [ReplicaSource {
        name: "file".into(),
        client: Arc::new(with_key),
    }];
    restore::restore(&sources, &out, &RestoreOptions::default(), &|_| {})
        .await
        .unwrap();
    let n: i64 = rusqlite::Connection::open(&out)
        .unwrap()
        .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 20);

    let without = AgeClient::new(file, &[PUBLIC.into()], &[]).unwrap();
    let sources = [ReplicaSource {
        name: "file".into(),
        client: Arc::new(without),
    }];
    let e = restore::restore(
        &sources,
        &dir.join("no.db"),
        &RestoreOptions::default(),
        &|_| {},
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains("has no age.identities"), "{e}");
    assert!(!dir.join("no.db").exists());
    drop(app);
    handle.shutdown().await.unwrap();
}
