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

mod failures;
mod selection;

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
    /// Restores into `out` with `opts`, which must fail: the error.
    async fn restore_err(&self, out: &std::path::Path, opts: &RestoreOptions) -> Error {
        restore(&self.replicas(), out, opts, &no_progress())
            .await
            .unwrap_err()
    }

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

/// A file replica under `dir` holding one snapshot (index 0) of `generation`.
async fn replica_with_snapshot(
    dir: &std::path::Path,
    generation: Generation,
    snapshot: &[u8],
) -> Arc<FileClient> {
    let client = Arc::new(FileClient::new(dir.join("replica")));
    client
        .put(
            &layout::snapshot_path(generation, 0),
            Bytes::from(compress::compress(snapshot)),
        )
        .await
        .unwrap();
    client
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

    let generation = Generation(0x0123_4567_89ab_cdef);
    let client = replica_with_snapshot(dir.path(), generation, &snapshot).await;
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
    let err = f.restore_err(&f.out_dir().join("x.db"), &opts).await;
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
    let err = f.restore_err(&f.out_dir().join("x.db"), &opts).await;
    assert!(matches!(err, Error::NoMatchingBackups), "{err}");
    // Before the first write: nothing.
    let opts = RestoreOptions {
        timestamp: Some(base - Duration::from_secs(1)),
        ..Default::default()
    };
    let err = f.restore_err(&f.out_dir().join("x.db"), &opts).await;
    assert!(matches!(err, Error::NoMatchingBackups), "{err}");
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
    let generation = Generation(0x00ab_cdef_0123_4567);
    let client = replica_with_snapshot(dir.path(), generation, &snapshot).await;
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
