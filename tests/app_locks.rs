//! Guards the application's SQLite locks when walship runs inside it (the embedding API):
//! POSIX drops every lock a process holds on a file when any descriptor of that file in the
//! process is closed, so walship must never close a descriptor of the database or its
//! `-shm` of its own. Each test holds a read transaction in the application, makes the
//! engine let go of the database (shutdown, a failed sync, a database dropped from a
//! watched directory), and then has another process insert rows and run
//! `PRAGMA wal_checkpoint(TRUNCATE)`: the application's reader must still keep that
//! checkpoint from resetting the WAL, and the `-wal` file must survive the other process's
//! close, as with no walship at all.
//!
//! The other process is Python's `sqlite3` module: a real, separate SQLite in a separate
//! process, as the guides' services run several processes on one database.
mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::TestDir;
use walship::backend::file::FileClient;
use walship::config::Config;
use walship::db::DbOptions;
use walship::engine::{Durability, Engine, EngineHandle};
use walship::replica::ReplicaOptions;

/// What the other process saw: `PRAGMA wal_checkpoint(TRUNCATE)`'s three numbers and
/// whether the `-wal` file still existed after it closed its connection.
#[derive(Debug, PartialEq, Eq)]
struct OtherProcess {
    busy: i64,
    log: i64,
    checkpointed: i64,
    wal_kept: bool,
}

const OTHER_PROCESS: &str = r#"
import os, sqlite3, sys
c = sqlite3.connect(sys.argv[1], timeout=2, isolation_level=None)
for i in range(20):
    c.execute("INSERT INTO t(v) VALUES ('other process')")
busy, log, ckpt = c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
c.close()
print(busy, log, ckpt, int(os.path.exists(sys.argv[1] + "-wal")))
"#;

/// Runs the other process on `db` (blocking).
fn other_process(db: &Path) -> OtherProcess {
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(OTHER_PROCESS)
        .arg(db)
        .output()
        .expect("run python3 (the other process)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "other process failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let n: Vec<i64> = text
        .split_whitespace()
        .map(|w| w.parse().expect("a number"))
        .collect();
    assert_eq!(n.len(), 4, "other process printed {text:?}");
    OtherProcess {
        busy: n[0],
        log: n[1],
        checkpointed: n[2],
        wal_kept: n[3] == 1,
    }
}

fn app_db(path: &Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch(
        "PRAGMA journal_mode=WAL;
         CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v TEXT);",
    )
    .unwrap();
    c
}

fn count(c: &rusqlite::Connection) -> i64 {
    c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap()
}

fn insert(c: &rusqlite::Connection, n: usize) {
    for _ in 0..n {
        c.execute("INSERT INTO t(v) VALUES (?1)", ["x".repeat(500)])
            .unwrap();
    }
}

/// An engine replicating `db` to a file replica, with timers long enough that only the
/// test makes it sync.
fn engine_for(db: &Path, replica: &Path) -> Engine {
    let mut engine = Engine::new();
    let mut ropts = ReplicaOptions::new("file");
    ropts.sync_interval = Duration::from_secs(60);
    let mut dopts = DbOptions::new(db);
    dopts.monitor_interval = Duration::from_secs(60);
    dopts.checkpoint_interval = None;
    engine.add_db(dopts, vec![(Arc::new(FileClient::new(replica)), ropts)]);
    engine
}

/// With the application's read transaction `reader` open (it began when the table held
/// `seen` rows; the application committed `since` more on other connections), another
/// process must not be able to reset the WAL; then the application goes on normally.
async fn assert_reader_still_protects(
    reader: &rusqlite::Connection,
    (seen, since): (i64, i64),
    db: PathBuf,
    what: &str,
) {
    let other = tokio::task::spawn_blocking({
        let db = db.clone();
        move || other_process(&db)
    })
    .await
    .unwrap();
    assert!(
        other.busy == 1 && other.log > 0 && other.log > other.checkpointed && other.wal_kept,
        "{what}: another process reset the WAL under the application's open read transaction \
         (its locks were dropped): checkpoint(TRUNCATE) = ({}, {}, {}), -wal kept after its \
         close: {}",
        other.busy,
        other.log,
        other.checkpointed,
        other.wal_kept
    );
    assert_eq!(
        count(reader),
        seen,
        "{what}: the read transaction's snapshot"
    );
    reader.execute_batch("COMMIT").unwrap();
    assert_eq!(
        count(reader),
        seen + since + 20,
        "{what}: after the read transaction"
    );
    let ok: String = reader
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok", "{what}");
}

/// Commits 50 rows on `app` and waits until the replica has them.
async fn insert_durably(handle: &EngineHandle, app: &rusqlite::Connection, db: &Path) {
    insert(app, 50);
    handle
        .wait_durable(db, Durability::AllReplicas, Duration::from_secs(10))
        .await
        .unwrap();
}

/// Opens the application's read transaction on `c` and returns the row count it sees.
fn begin_read(c: &rusqlite::Connection) -> i64 {
    c.execute_batch("BEGIN").unwrap();
    count(c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_keeps_the_applications_locks() {
    let t = TestDir::new("app-locks-shutdown");
    let db = t.join("app.db");
    let mut app = app_db(&db);
    let handle = engine_for(&db, &t.join("replica")).start();
    handle.attach(&mut app).unwrap();
    insert_durably(&handle, &app, &db).await;

    let seen = begin_read(&app);
    handle.shutdown().await.unwrap();
    assert_reader_still_protects(&app, (seen, 0), db, "after shutdown").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_sync_keeps_the_applications_locks() {
    let t = TestDir::new("app-locks-error");
    let db = t.join("app.db");
    let app = app_db(&db);
    let writer = app_db(&db);
    let handle = engine_for(&db, &t.join("replica")).start();
    insert_durably(&handle, &app, &db).await;

    let seen = begin_read(&app);
    // Break the meta directory: the next copy of the WAL cannot write the shadow WAL, the
    // sync fails, and the engine drops its connections to reopen them later.
    let meta = DbOptions::new(&db).meta_dir();
    std::fs::rename(&meta, t.join("meta-moved")).unwrap();
    std::fs::write(&meta, b"not a directory").unwrap();
    insert(&writer, 1);
    let err = handle
        .capture(&db)
        .await
        .expect_err("a sync with its meta directory gone must fail");
    eprintln!("sync failed as planned: {err}");
    drop(writer);
    assert_reader_still_protects(&app, (seen, 1), db.clone(), "after a failed sync").await;
    // The engine still cannot sync; it stops cleanly all the same.
    let _ = handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_dropped_from_a_watched_directory_keeps_the_applications_locks() {
    let t = TestDir::new("app-locks-dir");
    let data = t.subdir("data");
    let db = data.join("app.db");
    let app = app_db(&db);
    insert(&app, 10);
    let yaml = format!(
        "dbs:\n  - dir: {}\n    pattern: \"*.db\"\n    watch: true\n    monitor-interval: 100ms\n    \
         replicas:\n      - path: {}\n        sync-interval: 100ms\n",
        data.display(),
        t.join("replica").display()
    );
    let cfg = Config::from_yaml(&yaml, &t.join("litestream.yml"), false).unwrap();
    let handle = Engine::from_config(&cfg.config).unwrap().start();
    wait_for(&handle, "the engine to replicate app.db", |h| {
        h.status()
            .iter()
            .any(|s| s.path == db && s.replicas.iter().all(|r| r.pos.is_some()))
    })
    .await;

    let seen = begin_read(&app);
    // Move the database out of the pattern, with its -wal and -shm (the application's
    // connection keeps its files open): the directory watch drops it after its grace time.
    let kept = data.join("app.keep");
    for suffix in ["", "-wal", "-shm"] {
        let from = PathBuf::from(format!("{}{suffix}", db.display()));
        let to = PathBuf::from(format!("{}{suffix}", kept.display()));
        std::fs::rename(from, to).unwrap();
    }
    wait_for(&handle, "the directory watch to drop app.db", |h| {
        h.dbs().iter().all(|d| d.db.path() != db)
    })
    .await;
    assert_reader_still_protects(
        &app,
        (seen, 0),
        kept,
        "after the directory watch dropped it",
    )
    .await;
    handle.shutdown().await.unwrap();
}

async fn wait_for(handle: &EngineHandle, what: &str, done: impl Fn(&EngineHandle) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done(handle) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
