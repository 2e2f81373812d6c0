//! Guards follow mode (`walship restore -f`): while a writer commits on the primary and
//! `walship replicate` ships to a file replica, the follower's copy is always a database
//! that passes integrity_check, and it catches up with the primary.
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        // SAFETY: kill(2) on a child we spawned.
        unsafe {
            libc::kill(self.0.id() as i32, libc::SIGTERM);
        }
        let _ = self.0.wait();
    }
}

fn count(path: &std::path::Path) -> Option<i64> {
    let c = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .ok()?;
    let ok: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .ok()?;
    assert_eq!(ok, "ok", "the follower's copy must always be consistent");
    c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0)).ok()
}

#[test]
fn follower_stays_consistent_and_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let replica = dir.path().join("replica");
    let copy = dir.path().join("follow.db");
    let app = rusqlite::Connection::open(&db).unwrap();
    app.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);")
        .unwrap();
    app.execute("INSERT INTO t(v) VALUES ('first')", [])
        .unwrap();
    let cfg = dir.path().join("cfg.yml");
    std::fs::write(
        &cfg,
        format!(
            "dbs:\n  - path: {}\n    monitor-interval: 100ms\n    replicas:\n      - path: {}\n        sync-interval: 200ms\n",
            db.display(),
            replica.display()
        ),
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_walship");
    let _rep = Kill(
        Command::new(bin)
            .args(["replicate", "-config"])
            .arg(&cfg)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Wait for the first snapshot before starting the follower.
    let start = Instant::now();
    while !replica.join("generations").exists() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no replica appeared"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    let _fol = Kill(
        Command::new(bin)
            .args(["restore", "-f", "-interval", "200ms", "-o"])
            .arg(&copy)
            .arg(&replica)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut reads = 0;
    for i in 0..30 {
        app.execute(
            "INSERT INTO t(v) VALUES (?1)",
            [format!("row {i} {}", "x".repeat(2000))],
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        if count(&copy).is_some() {
            reads += 1;
        }
    }
    let want: i64 = app
        .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
        .unwrap();
    let start = Instant::now();
    loop {
        if count(&copy) == Some(want) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "follower did not catch up: has {:?}, want {want}",
            count(&copy)
        );
        std::thread::sleep(Duration::from_millis(50));
        reads += 1;
    }
    assert!(
        reads > 10,
        "the copy was read while following ({reads} reads)"
    );
    // The copy is in WAL mode: readers never wait for the follower's writes.
    let mode: String = rusqlite::Connection::open(&copy)
        .unwrap()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}
