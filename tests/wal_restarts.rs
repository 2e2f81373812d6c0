//! Who restarts the WAL must not matter. SQLite writes each connection's own checkpoint
//! counter into the header of a restarted WAL, so when the application and walship take
//! turns restarting it, the checkpoint sequence jumps back and forth while salt-1 goes up
//! by exactly one per restart. walship read such a jump as "restarted more than once" and
//! started a new generation (a full snapshot upload) for nothing; `engine_smoke` failed on
//! it now and then.
//!
//! (It used a fault hook to slip the application in between walship's checkpoint and its
//! restart; walship now keeps the write lock across both, so the test closes walship's
//! connections instead, as a stop does.)

use std::sync::{Arc, Mutex};

use walship::db::{Db, DbOptions};

fn wal_header(path: &std::path::Path) -> (u32, u32) {
    let b = std::fs::read(path).unwrap();
    let be = |o: usize| u32::from_be_bytes(b[o..o + 4].try_into().unwrap());
    (be(12), be(16))
}

#[test]
fn a_wal_restarted_by_the_application_continues_the_generation() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("app.db");
    let wal = dir.path().join("app.db-wal");
    let app = rusqlite::Connection::open(&db_path).unwrap();
    app.execute_batch("PRAGMA journal_mode=wal; CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB);")
        .unwrap();
    let app = Arc::new(Mutex::new(app));
    let insert = |app: &Mutex<rusqlite::Connection>, n: usize| {
        let c = app.lock().unwrap();
        for _ in 0..n {
            c.execute("INSERT INTO t(b) VALUES (randomblob(4000))", [])
                .unwrap();
        }
    };

    let mut opts = DbOptions::new(&db_path);
    opts.min_checkpoint_page_count = 4;
    let db = Db::new(opts);
    db.sync().unwrap();
    let generation = db.pos().unwrap().generation;
    // walship checkpoints and restarts the WAL a few times: its connection's checkpoint
    // counter runs ahead of the application's.
    for _ in 0..3 {
        insert(&app, 8);
        db.sync().unwrap();
    }
    let (seq_before, salt_before) = wal_header(&wal);

    // walship's connections close (as when it stops; walship itself now keeps the write
    // lock from its checkpoint to its own restart, so the application cannot slip in there).
    // The application checkpoints, and its next write restarts the WAL with its own counter.
    db.close();
    {
        let c = app.lock().unwrap();
        let busy: i64 = c
            .query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| r.get(0))
            .unwrap();
        assert_eq!(busy, 0, "the application's checkpoint must complete");
    }
    insert(&app, 1);
    let (seq_after, salt_after) = wal_header(&wal);
    assert_eq!(
        salt_after,
        salt_before.wrapping_add(1),
        "the test expects one restart, by the application"
    );
    assert_ne!(
        seq_after,
        seq_before.wrapping_add(1),
        "the test expects the application's counter to differ from walship's"
    );
    db.sync().unwrap();
    insert(&app, 2);
    db.sync().unwrap();
    assert_eq!(
        db.pos().unwrap().generation,
        generation,
        "a restart by the application must not start a new generation"
    );
}
