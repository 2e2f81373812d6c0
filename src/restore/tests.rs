//! End-to-end restore tests: replicas built from a real SQLite database in WAL mode
//! (its raw file as the snapshot, its real `-wal` bytes split at commits as segments),
//! restored with [`restore`] and compared row by row; plus failure, cancellation and
//! replica/generation selection.
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use rusqlite::Connection;

use super::*;
use crate::backend::file::FileClient;
use crate::backend::{ObjectInfo, ObjectStream};
use crate::compress;

type Rows = Vec<(i64, String, Vec<u8>)>;

fn rows(conn: &Connection) -> Rows {
    let mut stmt = conn.prepare("SELECT id, v, b FROM t ORDER BY id").unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

fn restored_rows(path: &Path) -> Rows {
    let conn = Connection::open(path).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    rows(&conn)
}

fn wal_path(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push("-wal");
    PathBuf::from(s)
}

/// A replica written from a real database: one snapshot (index 0) and WAL segments of
/// indexes 0 and 1, one transaction per segment.
struct Fixture {
    dir: tempfile::TempDir,
    client: Arc<FileClient>,
    generation: Generation,
    /// Rows after each segment, in segment order.
    states: Vec<Rows>,
    /// The segments' (index, offset), in order.
    segments: Vec<(u32, u32)>,
    /// Index of the first segment of index 1 in `segments`.
    first_of_index_1: usize,
    /// The source database file after index 0, and at the end, each fully checkpointed:
    /// a restore must reproduce them byte for byte.
    index0_file: Vec<u8>,
    final_file: Vec<u8>,
}

impl Fixture {
    fn replicas(&self) -> Vec<ReplicaSource> {
        vec![ReplicaSource {
            name: "file".into(),
            client: self.client.clone(),
        }]
    }

    fn out_dir(&self) -> PathBuf {
        let d = self.dir.path().join("out");
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn object(&self, rel: &str) -> PathBuf {
        self.client.root().join(rel)
    }

    fn segment_path(&self, i: usize) -> String {
        let (index, offset) = self.segments[i];
        layout::wal_segment_path(self.generation, index, offset)
    }

    fn set_mtime(&self, rel: &str, t: SystemTime) {
        let f = std::fs::File::options()
            .write(true)
            .open(self.object(rel))
            .unwrap();
        f.set_modified(t).unwrap();
    }
}

fn dir_entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn txn(conn: &mut Connection, f: impl FnOnce(&rusqlite::Transaction)) {
    let tx = conn.transaction().unwrap();
    f(&tx);
    tx.commit().unwrap();
}

fn blob(n: i64, len: usize) -> Vec<u8> {
    (0..len).map(|i| (n as usize * 31 + i * 7) as u8).collect()
}

/// Splits `wal` at `ends` (WAL lengths after each transaction) and uploads the pieces.
async fn put_segments(
    client: &FileClient,
    g: Generation,
    index: u32,
    wal: &[u8],
    ends: &[usize],
    out: &mut Vec<(u32, u32)>,
) {
    let mut start = 0;
    for &end in ends {
        client
            .put(
                &layout::wal_segment_path(g, index, start as u32),
                Bytes::from(compress::compress(&wal[start..end])),
            )
            .await
            .unwrap();
        out.push((index, start as u32));
        start = end;
    }
    assert_eq!(start, wal.len(), "every WAL byte is in a segment");
}

async fn fixture(page_size: u32) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("src.db");
    let mut conn = Connection::open(&db).unwrap();
    conn.execute_batch(&format!("PRAGMA page_size={page_size};"))
        .unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    conn.execute_batch(
        "PRAGMA wal_autocheckpoint=0;
         CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL, b BLOB NOT NULL);
         CREATE INDEX t_v ON t(v);",
    )
    .unwrap();
    for i in 0..20 {
        conn.execute(
            "INSERT INTO t VALUES (?1, ?2, ?3)",
            rusqlite::params![i, format!("base{i}"), blob(i, 300)],
        )
        .unwrap();
    }
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    assert_eq!(std::fs::metadata(wal_path(&db)).unwrap().len(), 0);
    let snapshot = std::fs::read(&db).unwrap();

    let wal_len = |db: &Path| std::fs::metadata(wal_path(db)).unwrap().len() as usize;
    let mut states = Vec::new();
    let mut ends = Vec::new();

    // Index 0: three transactions, one segment each.
    txn(&mut conn, |tx| {
        for i in 100..160 {
            tx.execute(
                "INSERT INTO t VALUES (?1, ?2, ?3)",
                rusqlite::params![i, format!("a{i}"), blob(i, 2000)],
            )
            .unwrap();
        }
    });
    states.push(rows(&conn));
    ends.push(wal_len(&db));
    txn(&mut conn, |tx| {
        tx.execute("UPDATE t SET v = v || '-upd' WHERE id % 3 = 0", [])
            .unwrap();
    });
    states.push(rows(&conn));
    ends.push(wal_len(&db));
    txn(&mut conn, |tx| {
        tx.execute("DELETE FROM t WHERE id BETWEEN 110 AND 140", [])
            .unwrap();
        tx.execute("INSERT INTO t VALUES (999, 'last of index 0', x'00')", [])
            .unwrap();
    });
    states.push(rows(&conn));
    ends.push(wal_len(&db));
    let wal0 = std::fs::read(wal_path(&db)).unwrap();
    assert_eq!(wal0.len(), *ends.last().unwrap());

    // A new WAL cycle (new salt): index 1, ending with a VACUUM that shrinks the database.
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    let index0_file = std::fs::read(&db).unwrap();
    let mut ends1 = Vec::new();
    txn(&mut conn, |tx| {
        tx.execute("DELETE FROM t WHERE id >= 100 AND id < 150", [])
            .unwrap();
    });
    states.push(rows(&conn));
    ends1.push(wal_len(&db));
    conn.execute_batch("VACUUM").unwrap();
    states.push(rows(&conn));
    ends1.push(wal_len(&db));
    let wal1 = std::fs::read(wal_path(&db)).unwrap();
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    let final_file = std::fs::read(&db).unwrap();
    assert!(
        final_file.len() < index0_file.len(),
        "the VACUUM shrank the database"
    );

    let client = Arc::new(FileClient::new(dir.path().join("replica")));
    let generation = Generation(0x0123_4567_89ab_cdef);
    client
        .put(
            &layout::snapshot_path(generation, 0),
            Bytes::from(compress::compress(&snapshot)),
        )
        .await
        .unwrap();
    let mut segments = Vec::new();
    put_segments(&client, generation, 0, &wal0, &ends, &mut segments).await;
    let first_of_index_1 = segments.len();
    put_segments(&client, generation, 1, &wal1, &ends1, &mut segments).await;
    drop(conn);
    Fixture {
        dir,
        client,
        generation,
        states,
        segments,
        first_of_index_1,
        index0_file,
        final_file,
    }
}

fn no_progress() -> impl Fn(Progress) + Send + Sync {
    |_| {}
}

#[tokio::test]
async fn restore_latest_matches_source() {
    for page_size in [4096, 65536] {
        let f = fixture(page_size).await;
        let out = f.out_dir().join("restored.db");
        let seen = Mutex::new(Vec::new());
        let progress = |p: Progress| seen.lock().unwrap().push(p);
        let summary = restore(&f.replicas(), &out, &RestoreOptions::default(), &progress)
            .await
            .unwrap();
        assert_eq!(
            restored_rows(&out),
            *f.states.last().unwrap(),
            "page size {page_size}"
        );
        assert_eq!(summary.generation, f.generation);
        assert_eq!(summary.snapshot_index, 0);
        assert_eq!(summary.last_index, 1);
        assert_eq!(summary.segments_applied, f.segments.len());
        assert_eq!(summary.plan_replica, "file");
        assert!(summary.pages_written > 0);
        let bytes = std::fs::read(&out).unwrap();
        assert!(
            bytes == f.final_file,
            "restored file is byte-identical to the checkpointed source"
        );
        assert_eq!(summary.db_bytes, bytes.len() as u64);
        assert_eq!(
            &bytes[18..20],
            &[2, 2],
            "journal mode WAL kept in the header"
        );
        // Nothing but the database in the output directory (no -wal/-shm, no temp files).
        assert_eq!(dir_entries(&f.out_dir()), vec!["restored.db"]);
        let seen = seen.into_inner().unwrap();
        assert!(matches!(seen[0], Progress::Snapshot { bytes } if bytes > 0));
        assert_eq!(
            seen[seen.len() - 2..],
            [Progress::Verifying, Progress::Done]
        );
        assert!(seen.contains(&Progress::Segment {
            done: f.segments.len(),
            total: f.segments.len()
        }));
        // The VACUUM at the end shrank the database: the restored size follows the last commit.
        let conn = Connection::open(&out).unwrap();
        let pages: i64 = conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap();
        assert_eq!(pages as u64 * u64::from(page_size), summary.db_bytes);
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }
}

#[tokio::test]
async fn restore_by_index_stops_after_that_index() {
    let f = fixture(4096).await;
    let out = f.out_dir().join("idx.db");
    let opts = RestoreOptions {
        index: Some(0),
        parallelism: 1,
        ..Default::default()
    };
    let summary = restore(&f.replicas(), &out, &opts, &no_progress())
        .await
        .unwrap();
    assert_eq!(summary.last_index, 0);
    assert!(std::fs::read(&out).unwrap() == f.index0_file);
    assert_eq!(restored_rows(&out), f.states[f.first_of_index_1 - 1]);
    // Beyond the last index: an error, not "everything".
    let opts = RestoreOptions {
        index: Some(2),
        ..Default::default()
    };
    let err = restore(
        &f.replicas(),
        &f.out_dir().join("x.db"),
        &opts,
        &no_progress(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");
}

#[tokio::test]
async fn restore_by_timestamp_excludes_later_segments() {
    let f = fixture(4096).await;
    let base = SystemTime::now() - Duration::from_secs(3600);
    f.set_mtime(&layout::snapshot_path(f.generation, 0), base);
    for i in 0..f.segments.len() {
        f.set_mtime(
            &f.segment_path(i),
            base + Duration::from_secs(10 * (i as u64 + 1)),
        );
    }
    // Segments 0 and 1 (at +10 s, +20 s) qualify, segment 2 (+30 s) does not.
    let out = f.out_dir().join("ts.db");
    let opts = RestoreOptions {
        timestamp: Some(base + Duration::from_secs(25)),
        ..Default::default()
    };
    let summary = restore(&f.replicas(), &out, &opts, &no_progress())
        .await
        .unwrap();
    assert_eq!(summary.segments_applied, 2);
    assert_eq!(restored_rows(&out), f.states[1]);
    // Exactly at a segment's timestamp includes it.
    let out = f.out_dir().join("ts2.db");
    let opts = RestoreOptions {
        timestamp: Some(base + Duration::from_secs(30)),
        ..Default::default()
    };
    restore(&f.replicas(), &out, &opts, &no_progress())
        .await
        .unwrap();
    assert_eq!(restored_rows(&out), f.states[2]);
    // Snapshot only.
    let out = f.out_dir().join("ts3.db");
    let opts = RestoreOptions {
        timestamp: Some(base + Duration::from_secs(5)),
        ..Default::default()
    };
    let summary = restore(&f.replicas(), &out, &opts, &no_progress())
        .await
        .unwrap();
    assert_eq!(summary.segments_applied, 0);
    assert_eq!(restored_rows(&out).len(), 20);
    // At the last write: everything.
    let out = f.out_dir().join("ts4.db");
    let last = base + Duration::from_secs(10 * f.segments.len() as u64);
    let opts = RestoreOptions {
        timestamp: Some(last),
        ..Default::default()
    };
    restore(&f.replicas(), &out, &opts, &no_progress())
        .await
        .unwrap();
    assert_eq!(restored_rows(&out), *f.states.last().unwrap());
    // After the last write: no generation qualifies (Litestream's §3.1 rule).
    let opts = RestoreOptions {
        timestamp: Some(last + Duration::from_millis(1)),
        ..Default::default()
    };
    let err = restore(
        &f.replicas(),
        &f.out_dir().join("x.db"),
        &opts,
        &no_progress(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::NoMatchingBackups), "{err}");
    // Before the first write: nothing.
    let opts = RestoreOptions {
        timestamp: Some(base - Duration::from_secs(1)),
        ..Default::default()
    };
    let err = restore(
        &f.replicas(),
        &f.out_dir().join("x.db"),
        &opts,
        &no_progress(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::NoMatchingBackups), "{err}");
}

/// A failed restore leaves nothing in the output directory.
async fn assert_fails_clean(f: &Fixture, check: impl FnOnce(&Error)) {
    let out_dir = f.out_dir();
    let out = out_dir.join("restored.db");
    let err = restore(
        &f.replicas(),
        &out,
        &RestoreOptions::default(),
        &no_progress(),
    )
    .await
    .unwrap_err();
    check(&err);
    assert!(!out.exists());
    assert_eq!(
        dir_entries(&out_dir),
        Vec::<String>::new(),
        "no temp files left"
    );
}

#[tokio::test]
async fn corrupt_byte_in_a_segment_is_an_error_naming_it() {
    let f = fixture(4096).await;
    let rel = f.segment_path(1);
    let path = f.object(&rel);
    let mut data = compress::decompress(&std::fs::read(&path).unwrap(), 1 << 30).unwrap();
    data[24 + 1000] ^= 0x40; // inside the first frame's page
    std::fs::write(&path, compress::compress(&data)).unwrap();
    assert_fails_clean(&f, |err| {
        let Error::Corrupt { path, reason } = err else {
            panic!("{err}")
        };
        assert!(path.ends_with(&rel), "{path}");
        assert!(reason.contains("checksum mismatch"), "{reason}");
    })
    .await;
}

#[tokio::test]
async fn missing_middle_segment_is_an_error() {
    let f = fixture(4096).await;
    std::fs::remove_file(f.object(&f.segment_path(1))).unwrap();
    assert_fails_clean(&f, |err| {
        let Error::Corrupt { path, reason } = err else {
            panic!("{err}")
        };
        assert!(path.ends_with(&f.segment_path(2)), "{path}");
        assert!(reason.contains("gap"), "{reason}");
        let (index, offset) = f.segments[1];
        assert!(
            reason.contains(&layout::wal_segment_name(index, offset)),
            "{reason}"
        );
    })
    .await;
}

#[tokio::test]
async fn segment_from_another_wal_cycle_is_an_error() {
    // Index 1's second segment replaced by index 0's second one: wrong salt.
    let f = fixture(4096).await;
    let i = f.first_of_index_1;
    let foreign = std::fs::read(f.object(&f.segment_path(1))).unwrap();
    // Its offset comes from the name, so the chain is contiguous up to it; its first frame
    // carries index 0's salt.
    std::fs::write(f.object(&f.segment_path(i + 1)), foreign).unwrap();
    assert_fails_clean(&f, |err| {
        let Error::Corrupt { path, reason } = err else {
            panic!("{err}")
        };
        assert!(path.ends_with(&f.segment_path(i + 1)), "{path}");
        assert!(
            reason.contains("salt change inside wal index 00000001"),
            "{reason}"
        );
    })
    .await;
}

#[tokio::test]
async fn bad_snapshot_is_an_error_naming_it() {
    let f = fixture(4096).await;
    let rel = layout::snapshot_path(f.generation, 0);
    std::fs::write(
        f.object(&rel),
        compress::compress(b"not a database, just some bytes here"),
    )
    .unwrap();
    assert_fails_clean(&f, |err| {
        let Error::Corrupt { path, .. } = err else {
            panic!("{err}")
        };
        assert!(path.ends_with(&rel), "{path}");
    })
    .await;
    // Not LZ4 at all.
    std::fs::write(f.object(&rel), b"SQLite format 3\0").unwrap();
    assert_fails_clean(&f, |err| assert!(err.to_string().contains(&rel), "{err}")).await;
}

#[tokio::test]
async fn output_exists_is_refused() {
    let f = fixture(4096).await;
    let out = f.out_dir().join("restored.db");
    std::fs::write(&out, b"keep me").unwrap();
    let err = restore(
        &f.replicas(),
        &out,
        &RestoreOptions::default(),
        &no_progress(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::OutputExists(_)), "{err}");
    assert_eq!(std::fs::read(&out).unwrap(), b"keep me");
    assert_eq!(dir_entries(&f.out_dir()), vec!["restored.db"]);
}

/// Wraps a client and never answers `get` for one path.
#[derive(Debug)]
struct Stall {
    inner: Arc<FileClient>,
    path: String,
}

#[async_trait]
impl ReplicaClient for Stall {
    fn type_name(&self) -> &'static str {
        "stall"
    }
    fn location(&self) -> String {
        self.inner.location()
    }
    async fn list(&self, dir: &str) -> Result<Vec<ObjectInfo>> {
        self.inner.list(dir).await
    }
    async fn get(&self, path: &str) -> Result<Bytes> {
        if path == self.path {
            futures::future::pending::<()>().await;
        }
        self.inner.get(path).await
    }
    async fn get_stream(&self, path: &str) -> Result<ObjectStream> {
        if path == self.path {
            futures::future::pending::<()>().await;
        }
        self.inner.get_stream(path).await
    }
    async fn put(&self, path: &str, data: Bytes) -> Result<ObjectInfo> {
        self.inner.put(path, data).await
    }
    async fn put_file(&self, path: &str, local: &Path) -> Result<ObjectInfo> {
        self.inner.put_file(path, local).await
    }
    async fn delete(&self, path: &str) -> Result<()> {
        self.inner.delete(path).await
    }
    async fn delete_all(&self, dir: &str) -> Result<()> {
        self.inner.delete_all(dir).await
    }
}

#[tokio::test]
async fn cancelled_restore_leaves_nothing() {
    let f = fixture(4096).await;
    let replicas = vec![ReplicaSource {
        name: "stall".into(),
        client: Arc::new(Stall {
            inner: f.client.clone(),
            path: f.segment_path(2),
        }),
    }];
    let out_dir = f.out_dir();
    let out = out_dir.join("restored.db");
    let temp_seen = Mutex::new(false);
    let stalled = tokio::sync::Notify::new();
    let progress = |p: Progress| {
        if let Progress::Segment { done: 2, .. } = p {
            // Segments 0 and 1 are applied, segment 2 never arrives. The temporary
            // database exists while the restore runs.
            *temp_seen.lock().unwrap() = !dir_entries(&out_dir).is_empty();
            stalled.notify_one();
        }
    };
    let opts = RestoreOptions::default();
    let run = restore(&replicas, &out, &opts, &progress);
    tokio::select! {
        res = run => panic!("the restore cannot finish: {res:?}"),
        _ = stalled.notified() => {}
    }
    // `run` is dropped here, mid-restore.
    assert!(*temp_seen.lock().unwrap());
    assert_eq!(dir_entries(&out_dir), Vec::<String>::new());
}

#[tokio::test]
async fn apply_rejects_an_invalid_plan() {
    let f = fixture(4096).await;
    let mut p = plan(&f.replicas(), &RestoreOptions::default())
        .await
        .unwrap();
    p.segments.swap(0, 1);
    let out = f.out_dir().join("r.db");
    let err = apply(
        &f.replicas(),
        &p,
        &out,
        &RestoreOptions::default(),
        &no_progress(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");
    p.replica = "nope".into();
    assert!(
        apply(
            &f.replicas(),
            &p,
            &out,
            &RestoreOptions::default(),
            &no_progress()
        )
        .await
        .is_err()
    );
    assert_eq!(dir_entries(&f.out_dir()), Vec::<String>::new());
}

// ---- replica and generation selection (§3.1) ----

/// Writes placeholder objects (content does not matter to `plan`) with given mtimes.
async fn put_objects(client: &FileClient, objects: &[(&str, u64)], base: SystemTime) {
    for &(rel, secs) in objects {
        client.put(rel, Bytes::from_static(b"x")).await.unwrap();
        let f = std::fs::File::options()
            .write(true)
            .open(client.root().join(rel))
            .unwrap();
        f.set_modified(base + Duration::from_secs(secs)).unwrap();
    }
}

const GA: &str = "aaaaaaaaaaaaaaaa";
const GB: &str = "bbbbbbbbbbbbbbbb";

fn source(name: &str, c: &Arc<FileClient>) -> ReplicaSource {
    ReplicaSource {
        name: name.into(),
        client: c.clone(),
    }
}

#[tokio::test]
async fn plan_picks_generation_and_replica_with_latest_end() {
    let dir = tempfile::tempdir().unwrap();
    let base = SystemTime::now() - Duration::from_secs(3600);
    let r1 = Arc::new(FileClient::new(dir.path().join("r1")));
    let r2 = Arc::new(FileClient::new(dir.path().join("r2")));
    // r1: generation A [0, 10], generation B [20, 40]. r2: generation A [0, 40] (tie with r1's B).
    put_objects(
        &r1,
        &[
            (
                &format!("generations/{GA}/snapshots/00000000.snapshot.lz4"),
                0,
            ),
            (
                &format!("generations/{GA}/wal/00000000_00000000.wal.lz4"),
                10,
            ),
            (
                &format!("generations/{GB}/snapshots/00000000.snapshot.lz4"),
                20,
            ),
            (
                &format!("generations/{GB}/wal/00000000_00000000.wal.lz4"),
                30,
            ),
            (
                &format!("generations/{GB}/wal/00000001_00000000.wal.lz4"),
                40,
            ),
        ],
        base,
    )
    .await;
    put_objects(
        &r2,
        &[
            (
                &format!("generations/{GA}/snapshots/00000000.snapshot.lz4"),
                0,
            ),
            (
                &format!("generations/{GA}/wal/00000000_00000000.wal.lz4"),
                40,
            ),
        ],
        base,
    )
    .await;
    let replicas = vec![source("one", &r1), source("two", &r2)];
    let ga = Generation::parse(GA).unwrap();
    let gb = Generation::parse(GB).unwrap();

    let p = plan(&replicas, &RestoreOptions::default()).await.unwrap();
    assert_eq!(
        (p.replica.as_str(), p.generation),
        ("one", gb),
        "tie keeps the first replica"
    );
    assert_eq!(p.segments.len(), 2);
    assert_eq!(p.end, base + Duration::from_secs(40));

    let p = plan(&replicas[1..], &RestoreOptions::default())
        .await
        .unwrap();
    assert_eq!((p.replica.as_str(), p.generation), ("two", ga));

    // Generation filter.
    let opts = RestoreOptions {
        generation: Some(ga),
        ..Default::default()
    };
    let p = plan(&replicas, &opts).await.unwrap();
    assert_eq!((p.replica.as_str(), p.generation), ("two", ga));
    let opts = RestoreOptions {
        generation: Some(Generation(7)),
        ..Default::default()
    };
    assert!(matches!(
        plan(&replicas, &opts).await,
        Err(Error::NoMatchingBackups)
    ));

    // Timestamp: r1's B starts at 20, so at 15 only the A generations qualify; r2's A ends
    // later (40) than r1's A (10).
    let at = |secs| RestoreOptions {
        timestamp: Some(base + Duration::from_secs(secs)),
        ..Default::default()
    };
    let p = plan(&replicas, &at(15)).await.unwrap();
    assert_eq!((p.replica.as_str(), p.generation), ("two", ga));
    assert!(
        p.segments.is_empty(),
        "r2's segment at 40 is after the timestamp"
    );
    // r1 alone: 15 is after A's end and before B's start (spec §3.1, §9.2).
    assert!(matches!(
        plan(&replicas[..1], &at(15)).await,
        Err(Error::NoMatchingBackups)
    ));
    let p = plan(&replicas[..1], &at(10)).await.unwrap();
    assert_eq!((p.generation, p.segments.len()), (ga, 1));
    // After every generation's last write: nothing, as in Litestream.
    assert!(matches!(
        plan(&replicas, &at(41)).await,
        Err(Error::NoMatchingBackups)
    ));
    let p = plan(&replicas[..1], &at(35)).await.unwrap();
    assert_eq!((p.generation, p.segments.len()), (gb, 1));

    // Index and timestamp together.
    let opts = RestoreOptions {
        index: Some(0),
        timestamp: Some(base),
        ..Default::default()
    };
    let err = plan(&replicas, &opts).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot specify index & timestamp to restore"
    );

    // Nothing at all.
    let empty = Arc::new(FileClient::new(dir.path().join("empty")));
    assert!(matches!(
        plan(&[source("e", &empty)], &RestoreOptions::default()).await,
        Err(Error::NoMatchingBackups)
    ));
}

#[tokio::test]
async fn plan_errors_name_the_replica_object() {
    let dir = tempfile::tempdir().unwrap();
    let base = SystemTime::now() - Duration::from_secs(3600);
    let r = Arc::new(FileClient::new(dir.path().join("r")));
    put_objects(
        &r,
        &[
            (
                &format!("generations/{GA}/snapshots/00000000.snapshot.lz4"),
                0,
            ),
            (
                &format!("generations/{GA}/wal/00000000_00000000.wal.lz4"),
                1,
            ),
            (
                &format!("generations/{GA}/wal/00000001_00001038.wal.lz4"),
                2,
            ),
        ],
        base,
    )
    .await;
    let err = plan(&[source("r", &r)], &RestoreOptions::default())
        .await
        .unwrap_err();
    let Error::Corrupt { path, reason } = &err else {
        panic!("{err}")
    };
    assert_eq!(
        path,
        &format!(
            "{}/generations/{GA}/wal/00000001_00000000.wal.lz4",
            r.root().display()
        )
    );
    assert!(reason.contains("missing initial wal segment"), "{reason}");
}

#[test]
fn restore_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let replicas: Vec<ReplicaSource> = Vec::new();
    let progress = |_: Progress| {};
    let opts = RestoreOptions::default();
    let fut = restore(&replicas, Path::new("x"), &opts, &progress);
    assert_send(&fut);
}

/// Segments of about 3 MiB compressed each (incompressible blobs) against the 8 MiB
/// in-flight budget: downloads must wait for earlier segments to be applied, never for
/// later ones, and the restore must complete with the right rows (a deadlock would hang
/// and time out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_larger_than_the_budget_restore_without_deadlock() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("src.db");
    let mut conn = Connection::open(&db).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;
         CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL, b BLOB NOT NULL);",
    )
    .unwrap();
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    let snapshot = std::fs::read(&db).unwrap();
    let mut ends = Vec::new();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for t in 0..7i64 {
        txn(&mut conn, |tx| {
            for i in 0..3 {
                let noise: Vec<u8> = (0..1_000_000)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        seed as u8
                    })
                    .collect();
                tx.execute(
                    "INSERT INTO t VALUES (?1, ?2, ?3)",
                    rusqlite::params![t * 10 + i, format!("r{t}-{i}"), noise],
                )
                .unwrap();
            }
        });
        ends.push(std::fs::metadata(wal_path(&db)).unwrap().len() as usize);
    }
    let want = rows(&conn);
    let wal = std::fs::read(wal_path(&db)).unwrap();
    drop(conn);
    let client = Arc::new(FileClient::new(dir.path().join("replica")));
    let generation = Generation(0x00ab_cdef_0123_4567);
    client
        .put(
            &layout::snapshot_path(generation, 0),
            Bytes::from(compress::compress(&snapshot)),
        )
        .await
        .unwrap();
    let mut segments = Vec::new();
    put_segments(&client, generation, 0, &wal, &ends, &mut segments).await;
    let listed = backend::wal_segments(&*client, generation).await.unwrap();
    assert!(
        listed.iter().all(|s| s.size > 3_000_000),
        "segments of 3 MB compressed: {listed:?}"
    );
    let replicas = vec![ReplicaSource {
        name: "file".into(),
        client,
    }];
    let out = dir.path().join("out.db");
    let summary = tokio::time::timeout(
        Duration::from_secs(60),
        restore(&replicas, &out, &RestoreOptions::default(), &no_progress()),
    )
    .await
    .expect("restore finished (no deadlock)")
    .unwrap();
    assert_eq!(summary.segments_applied, 7);
    assert_eq!(restored_rows(&out), want);
}
