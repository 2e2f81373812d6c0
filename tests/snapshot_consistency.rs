//! A snapshot must be a committed state on its own, and a replica caught at any moment
//! between a generation's first snapshot and its segments must restore one (issue #7).
//! These are the deterministic regression tests for two failures the crash matrix found
//! only now and then: they act at the exact moment through `walship::fault::set_hook`.
//!
//! Hooks are process-wide, so the tests of this file take [`SERIAL`] first.
mod common;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::*;
use walship::backend::file::FileClient;
use walship::db::{Db, DbOptions};
use walship::replica::{Replica, ReplicaOptions};

static SERIAL: Mutex<()> = Mutex::new(());

/// Clears the hooks however a test ends.
struct Hooks;
impl Drop for Hooks {
    fn drop(&mut self) {
        walship::fault::clear_hooks();
    }
}

fn app(path: &Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch(
        "PRAGMA journal_mode=wal; PRAGMA wal_autocheckpoint=0;
         CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v INTEGER, b BLOB);",
    )
    .unwrap();
    c
}

fn rows(c: &rusqlite::Connection) -> Vec<(i64, i64, Vec<u8>)> {
    c.prepare("SELECT id, v, b FROM t ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn integrity(c: &rusqlite::Connection) -> String {
    c.query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap()
}

/// The page numbers of the frames in the WAL at `wal` (all of them, valid or not).
fn wal_pages(wal: &Path) -> (u64, Vec<u32>) {
    let w = std::fs::read(wal).unwrap();
    let ps = u64::from(u32::from_be_bytes(w[8..12].try_into().unwrap()));
    let mut pages = Vec::new();
    let mut at = 32u64;
    while at + 24 + ps <= w.len() as u64 {
        let a = at as usize;
        pages.push(u32::from_be_bytes(w[a..a + 4].try_into().unwrap()));
        at += 24 + ps;
    }
    pages.sort_unstable();
    pages.dedup();
    (ps, pages)
}

/// A checkpoint that runs while the snapshot reads the database file writes some pages and
/// not others: the file is torn. The snapshot must take every page that has a frame in the
/// current index from the shadow WAL, so whatever those pages hold in the file, the image is
/// exactly the database at its position. The hook fills them with garbage at the moment the
/// snapshot starts reading (after its checkpoint, under its locks): an image built from the
/// file alone fails integrity_check and loses rows.
#[test]
fn a_snapshot_ignores_pages_a_checkpoint_is_rewriting() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let t = TestDir::new("snapshot-torn");
    let db_path = t.join("app.db");
    let c = app(&db_path);
    c.execute_batch("BEGIN").unwrap();
    for i in 1..=400 {
        c.execute("INSERT INTO t(v, b) VALUES (?1, randomblob(900))", [i])
            .unwrap();
    }
    c.execute_batch("COMMIT; PRAGMA wal_checkpoint(TRUNCATE);")
        .unwrap();
    // Changes that live in the WAL only: every row, so most pages have a frame.
    c.execute_batch("UPDATE t SET v = v + 1000, b = randomblob(700) WHERE id % 2 = 0;")
        .unwrap();
    c.execute_batch("DELETE FROM t WHERE id % 7 = 0;").unwrap();
    let want = rows(&c);

    let db = Db::new(DbOptions::new(&db_path));
    db.sync().unwrap();
    let garbled = Arc::new(AtomicUsize::new(0));
    let _hooks = Hooks;
    {
        let db_path = db_path.clone();
        let wal = t.join("app.db-wal");
        let garbled = garbled.clone();
        walship::fault::set_hook("snapshot.after_checkpoint", move || {
            use std::os::unix::fs::FileExt;
            let (ps, pages) = wal_pages(&wal);
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&db_path)
                .unwrap();
            for p in pages {
                f.write_all_at(&vec![0xA5; ps as usize], u64::from(p - 1) * ps)
                    .unwrap();
                garbled.fetch_add(1, Ordering::SeqCst);
            }
        });
    }
    let (pos, file) = db.snapshot().unwrap();
    walship::fault::clear_hooks();
    let n = garbled.load(Ordering::SeqCst);
    assert!(
        n > 50,
        "the hook garbled only {n} pages: the test did not tear the file"
    );

    let compressed = std::fs::read(file.path()).unwrap();
    let image = walship::compress::decompress(&compressed, 1 << 30).unwrap();
    let out = t.join("snapshot.db");
    std::fs::write(&out, &image).unwrap();
    let r = rusqlite::Connection::open(&out).unwrap();
    assert_eq!(
        integrity(&r),
        "ok",
        "snapshot at {pos} is not a valid database"
    );
    assert_eq!(
        rows(&r),
        want,
        "snapshot at {pos} is not the database at its position"
    );
    db.close();
}

/// A new generation's first snapshot names index N and holds the database at the shadow's
/// end P; a restore replays index N's segments from offset 0 over it. When N's frames up to
/// P take more than one segment and the replica is caught after the first (a kill, or a
/// restore running at that moment), older page versions land on the newer image: a state
/// that was never committed. So everything up to P goes up as one object. The hook copies
/// the replica after every segment upload, as a kill at that moment would leave it, and
/// each copy must restore (with walship and with the real Litestream v0.3.13) to the one
/// committed state there is.
#[test]
fn a_replica_caught_after_any_segment_of_a_new_generation_restores_a_committed_state() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let t = TestDir::new("snapshot-first-segments");
    let db_path = t.join("app.db");
    let c = app(&db_path);
    // ~2 MB of rows, then rewritten 12 times: ~24 MB of WAL (more than the 16 MiB segment
    // limit), every transaction touching the same pages.
    c.execute_batch("BEGIN").unwrap();
    for i in 0..500 {
        c.execute(
            "INSERT INTO t(id, v, b) VALUES (?1, 0, randomblob(3500))",
            [i],
        )
        .unwrap();
    }
    c.execute_batch("COMMIT").unwrap();
    for k in 1..=12 {
        c.execute("UPDATE t SET v = ?1, b = randomblob(3500)", [k])
            .unwrap();
    }
    let wal_len = std::fs::metadata(t.join("app.db-wal")).unwrap().len();
    assert!(
        wal_len > walship::db::MAX_SEGMENT_BYTES + (4 << 20),
        "the WAL ({wal_len} bytes) must need more than one segment"
    );
    let want = rows(&c);
    assert!(want.iter().all(|r| r.1 == 12));
    // An application reader keeps the WAL from restarting, so the whole WAL stays one index.
    let reader = rusqlite::Connection::open(&db_path).unwrap();
    reader.execute_batch("BEGIN").unwrap();
    assert_eq!(rows(&reader), want);

    let replica_dir = t.join("replica");
    let copies = t.subdir("copies");
    let _hooks = Hooks;
    {
        let replica_dir = replica_dir.clone();
        let copies = copies.clone();
        let k = AtomicUsize::new(0);
        walship::fault::set_hook("sync.after_upload", move || {
            let n = k.fetch_add(1, Ordering::SeqCst);
            copy_tree(&replica_dir, &copies.join(format!("after-{n}")));
        });
    }
    let db = Db::new(DbOptions::new(&db_path));
    db.sync().unwrap();
    let replica = Replica::new(
        db.clone(),
        Arc::new(FileClient::new(&replica_dir)),
        ReplicaOptions::new("file"),
    );
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(replica.sync())
        .unwrap();
    walship::fault::clear_hooks();
    assert!(replica.up_to_date(), "the replica did not catch up");
    db.close();
    reader.execute_batch("COMMIT").unwrap();

    let mut caught: Vec<_> = std::fs::read_dir(&copies)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    caught.sort();
    assert!(!caught.is_empty(), "no segment upload was seen");
    caught.push(replica_dir.clone());

    let ls = litestream("a_replica_caught_after_any_segment");
    for (i, dir) in caught.iter().enumerate() {
        let mut tools = vec![Tool::Walship];
        if let Some(p) = &ls {
            tools.push(Tool::Litestream(p.clone()));
        }
        for tool in tools {
            let out = t.join(format!("restored-{i}-{}.db", tool.name()));
            tool.run(&["restore", "-o", s(&out), &file_url(dir)], t.path())
                .assert_ok();
            let r = rusqlite::Connection::open(&out).unwrap();
            assert_eq!(
                integrity(&r),
                "ok",
                "{}: restore of {} failed integrity_check",
                tool.name(),
                dir.display()
            );
            let got = rows(&r);
            let versions: std::collections::BTreeSet<i64> = got.iter().map(|r| r.1).collect();
            assert!(
                got == want,
                "{}: restore of {} is not the database the snapshot holds: rows of versions \
                 {versions:?}, expected all at 12",
                tool.name(),
                dir.display()
            );
        }
    }
}
