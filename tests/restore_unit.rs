//! Guards the public restore API from outside the crate: a replica built from a real WAL-mode
//! database through `FileClient`, planned with `restore::plan`, applied with
//! `restore::apply`, and compared with the source; a point-in-time restore by storage
//! timestamp; a corrupt segment that must fail without leaving any file behind; and, when
//! the real `litestream` v0.3.13 is on PATH, a replica written by it, restored to the same
//! bytes as `litestream restore` produces.
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use rusqlite::Connection;
use walship::backend::ReplicaClient;
use walship::backend::file::FileClient;
use walship::restore::{self, Progress, ReplicaSource, RestoreOptions};
use walship::{Error, Generation, compress, layout};

fn rows(conn: &Connection) -> Vec<(i64, String)> {
    let mut stmt = conn.prepare("SELECT id, v FROM t ORDER BY id").unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

fn wal_of(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push("-wal");
    PathBuf::from(s)
}

struct Source {
    _dir: tempfile::TempDir,
    out_dir: PathBuf,
    replica: Arc<FileClient>,
    generation: Generation,
    /// Rows after each transaction (= after each segment).
    states: Vec<Vec<(i64, String)>>,
    segment_paths: Vec<String>,
}

/// Snapshot = the raw database file; then four transactions in one WAL index, each its own
/// segment, cut at the WAL length after each commit.
async fn source() -> Source {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let conn = Connection::open(&db).unwrap();
    let _: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .unwrap();
    conn.execute_batch(
        "PRAGMA wal_autocheckpoint=0;
         CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
         INSERT INTO t VALUES (1, 'one');",
    )
    .unwrap();
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    let snapshot = std::fs::read(&db).unwrap();

    let mut states = Vec::new();
    let mut ends = Vec::new();
    for k in 0..4 {
        conn.execute_batch(&format!(
            "BEGIN; INSERT INTO t SELECT id + {k}00 + 100, v || '-{k}' FROM t WHERE id < 100; UPDATE t SET v = v || '!' WHERE id = 1; COMMIT;"
        ))
        .unwrap();
        states.push(rows(&conn));
        ends.push(std::fs::metadata(wal_of(&db)).unwrap().len() as usize);
    }
    let wal = std::fs::read(wal_of(&db)).unwrap();

    let replica = Arc::new(FileClient::new(dir.path().join("replica")));
    let generation = Generation::random();
    replica
        .put(
            &layout::snapshot_path(generation, 0),
            Bytes::from(compress::compress(&snapshot)),
        )
        .await
        .unwrap();
    let mut segment_paths = Vec::new();
    let mut start = 0;
    for end in ends {
        let path = layout::wal_segment_path(generation, 0, start as u32);
        replica
            .put(&path, Bytes::from(compress::compress(&wal[start..end])))
            .await
            .unwrap();
        segment_paths.push(path);
        start = end;
    }
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    Source {
        _dir: dir,
        out_dir,
        replica,
        generation,
        states,
        segment_paths,
    }
}

fn replicas(s: &Source) -> Vec<ReplicaSource> {
    vec![ReplicaSource {
        name: "local".into(),
        client: s.replica.clone(),
    }]
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn plan_then_apply_reproduces_the_source() {
    let s = source().await;
    let opts = RestoreOptions {
        parallelism: 2,
        ..Default::default()
    };
    let plan = restore::plan(&replicas(&s), &opts).await.unwrap();
    assert_eq!(plan.replica, "local");
    assert_eq!(plan.generation, s.generation);
    assert_eq!(plan.snapshot.index, 0);
    assert_eq!(plan.segments.len(), 4);

    let out = s.out_dir.join("restored.db");
    let seen = Mutex::new(Vec::new());
    let progress = |p: Progress| seen.lock().unwrap().push(p);
    let summary = restore::apply(&replicas(&s), &plan, &out, &opts, &progress)
        .await
        .unwrap();
    assert_eq!(summary.segments_applied, 4);
    assert_eq!(summary.last_index, 0);
    let conn = Connection::open(&out).unwrap();
    assert_eq!(rows(&conn), *s.states.last().unwrap());
    drop(conn);
    assert_eq!(seen.lock().unwrap().last(), Some(&Progress::Done));
    assert_eq!(entries(&s.out_dir), vec!["restored.db"]);

    // The same plan again: the output now exists.
    let err = restore::apply(&replicas(&s), &plan, &out, &opts, &|_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, Error::OutputExists(_)), "{err}");
}

#[tokio::test]
async fn timestamp_restore_stops_before_a_later_segment() {
    let s = source().await;
    let base = SystemTime::now() - Duration::from_secs(600);
    let touch = |rel: &str, t: SystemTime| {
        std::fs::File::options()
            .write(true)
            .open(s.replica.root().join(rel))
            .unwrap()
            .set_modified(t)
            .unwrap();
    };
    touch(&layout::snapshot_path(s.generation, 0), base);
    for (i, p) in s.segment_paths.iter().enumerate() {
        touch(p, base + Duration::from_secs(i as u64 + 1));
    }
    let opts = RestoreOptions {
        timestamp: Some(base + Duration::from_millis(2500)),
        ..Default::default()
    };
    let out = s.out_dir.join("pitr.db");
    let summary = restore::restore(&replicas(&s), &out, &opts, &|_| {})
        .await
        .unwrap();
    assert_eq!(summary.segments_applied, 2);
    assert_eq!(rows(&Connection::open(&out).unwrap()), s.states[1]);
}

#[tokio::test]
async fn corrupt_segment_fails_and_leaves_nothing() {
    let s = source().await;
    let rel = &s.segment_paths[2];
    let file = s.replica.root().join(rel);
    let mut wal = compress::decompress(&std::fs::read(&file).unwrap(), 1 << 30).unwrap();
    let last = wal.len() - 1;
    wal[last] ^= 1;
    std::fs::write(&file, compress::compress(&wal)).unwrap();

    let out = s.out_dir.join("restored.db");
    let err = restore::restore(&replicas(&s), &out, &RestoreOptions::default(), &|_| {})
        .await
        .unwrap_err();
    match &err {
        Error::Corrupt { path, .. } => assert!(path.ends_with(rel.as_str()), "{path}"),
        other => panic!("want Corrupt, got {other}"),
    }
    assert!(err.to_string().contains(rel.as_str()));
    assert!(entries(&s.out_dir).is_empty(), "{:?}", entries(&s.out_dir));
}

/// A replica written by the real Litestream v0.3.13 (when `litestream` is on PATH) restores
/// to the source's rows, byte-identical to what `litestream restore` itself produces.
#[tokio::test]
async fn restores_a_replica_written_by_litestream() {
    if std::process::Command::new("litestream")
        .arg("version")
        .output()
        .is_err()
    {
        eprintln!("litestream not on PATH: skipping the compatibility test");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let replica_dir = dir.path().join("replica");
    let config = dir.path().join("litestream.yml");
    std::fs::write(
        &config,
        format!(
            "dbs:\n  - path: {}\n    monitor-interval: 100ms\n    replicas:\n      - type: file\n        path: {}\n        sync-interval: 100ms\n",
            db.display(),
            replica_dir.display()
        ),
    )
    .unwrap();
    let conn = Connection::open(&db).unwrap();
    let _: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .unwrap();
    conn.execute_batch(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'one');",
    )
    .unwrap();
    let mut child = std::process::Command::new("litestream")
        .arg("replicate")
        .arg("-config")
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for k in 0..6 {
        // Big enough (about 2,500 pages in total) for Litestream to checkpoint and start
        // new WAL indexes along the way.
        conn.execute_batch(&format!(
            "WITH RECURSIVE s(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM s WHERE x < 500)
             INSERT INTO t(v) SELECT printf('%d-%d-%s', {k}, x, hex(randomblob(900))) FROM s"
        ))
        .unwrap();
        conn.execute("UPDATE t SET v = v || '+' WHERE id = 1", [])
            .unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    child.wait().unwrap();
    let want = rows(&conn);

    let replicas = vec![ReplicaSource {
        name: "file".into(),
        client: Arc::new(FileClient::new(&replica_dir)),
    }];
    let plan = restore::plan(&replicas, &RestoreOptions::default())
        .await
        .unwrap();
    let last_index = plan.segments.last().map_or(0, |s| s.index);
    assert!(
        last_index >= 1,
        "Litestream started new WAL indexes: {plan:?}"
    );
    let ours = dir.path().join("ours.db");
    restore::apply(&replicas, &plan, &ours, &RestoreOptions::default(), &|_| {})
        .await
        .unwrap();
    assert_eq!(rows(&Connection::open(&ours).unwrap()), want);

    let theirs = dir.path().join("theirs.db");
    let st = std::process::Command::new("litestream")
        .arg("restore")
        .arg("-o")
        .arg(&theirs)
        .arg(format!("file://{}", replica_dir.display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    assert!(
        std::fs::read(&ours).unwrap() == std::fs::read(&theirs).unwrap(),
        "walship and litestream restore the same bytes (plan: {} segments up to index {})",
        plan.segments.len(),
        plan.segments.last().map_or(0, |s| s.index)
    );
}
