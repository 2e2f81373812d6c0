//! Guards `walship replicate -exec`: the child's exit code becomes walship's after a final
//! sync, and SIGTERM sent to walship reaches the child.
use std::process::Command;
use std::time::{Duration, Instant};

fn setup() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t(x);")
        .unwrap();
    (dir, db)
}

#[test]
fn exit_code_of_the_child_after_a_final_sync() {
    let (dir, db) = setup();
    let replica = dir.path().join("replica");
    // The child writes a row and exits 3; the row must be on the replica afterwards.
    let child = format!(
        "sh -c 'sleep 0.3; python3 -c \"import sqlite3; c = sqlite3.connect(\\\"{}\\\"); c.execute(\\\"INSERT INTO t VALUES (42)\\\"); c.commit()\"; exit 3'",
        db.display()
    );
    let st = Command::new(env!("CARGO_BIN_EXE_walship"))
        .args(["replicate", "-exec", &child])
        .arg(&db)
        .arg(format!("file://{}", replica.display()))
        .status()
        .unwrap();
    assert_eq!(st.code(), Some(3));
    let out = dir.path().join("out.db");
    let st = Command::new(env!("CARGO_BIN_EXE_walship"))
        .args(["restore", "-o"])
        .arg(&out)
        .arg(&replica)
        .status()
        .unwrap();
    assert!(st.success());
    let v: i64 = rusqlite::Connection::open(&out)
        .unwrap()
        .query_row("SELECT x FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, 42);
}

#[test]
fn sigterm_reaches_the_child() {
    let (dir, db) = setup();
    let marker = dir.path().join("got-term");
    let child = format!(
        "sh -c 'trap \"touch {} ; exit 0\" TERM; while true; do sleep 0.05; done'",
        marker.display()
    );
    let mut p = Command::new(env!("CARGO_BIN_EXE_walship"))
        .args(["replicate", "-exec", &child])
        .arg(&db)
        .arg(format!("file://{}", dir.path().join("replica").display()))
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    // SAFETY: kill(2) on the child process we spawned.
    unsafe {
        libc::kill(p.id() as i32, libc::SIGTERM);
    }
    let start = Instant::now();
    let st = loop {
        if let Some(st) = p.try_wait().unwrap() {
            break st;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "walship did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(marker.exists(), "the child never saw SIGTERM");
    assert_eq!(st.code(), Some(0));
}
