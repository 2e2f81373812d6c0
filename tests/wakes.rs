//! What wakes a database: a commit is heard through a file-system notification that is
//! re-armed before every copy (`src/watch.rs`, `Armer`), not through the safety poll. With
//! `monitor-interval: 60s` the poll comes a minute apart, so every commit below that is
//! shipped within seconds was heard.
mod common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use common::{Proc, TestDir, Tool, s};
use rusqlite::Connection;

/// The application's connection: WAL mode, table `t`.
fn app(db: &Path) -> Connection {
    let c = Connection::open(db).unwrap();
    c.pragma_update(None, "journal_mode", "WAL").unwrap();
    c.execute_batch("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)")
        .unwrap();
    c
}

fn count(db: &Path) -> Result<i64, String> {
    let c = Connection::open(db).map_err(|e| e.to_string())?;
    c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .map_err(|e| e.to_string())
}

/// Waits (at most 15 s, a quarter of the safety poll) until a restore of `source` holds
/// `rows` rows.
#[track_caller]
fn wait_rows(source: &str, extra: &[&str], dir: &Path, rows: i64, p: &mut Proc) {
    common::wait_until(
        &format!("a restore of {source} with {rows} rows"),
        Duration::from_secs(15),
        || {
            p.assert_running();
            let (out, r) = common::restore(&Tool::Walship, source, extra, dir);
            if !r.ok() {
                return Err(r.describe());
            }
            let n = count(&out);
            let _ = fs::remove_dir_all(out.parent().unwrap());
            match n? {
                n if n == rows => Ok(()),
                n => Err(format!("{n} rows")),
            }
        },
    );
}

/// Commits after quiet spells, on a connection the application keeps open, are each
/// heard: the notification is one-shot, so this fails if it is not armed again after a
/// copy.
#[test]
fn every_commit_after_a_quiet_spell_is_heard() {
    let t = TestDir::new("wakes_db");
    let db = t.join("app.db");
    let replica = t.join("replica");
    let c = app(&db);
    c.execute("INSERT INTO t (v) VALUES ('first')", []).unwrap();
    let cfg = t.join("litestream.yml");
    fs::write(
        &cfg,
        format!(
            "dbs:\n  - path: {}\n    monitor-interval: 60s\n    replicas:\n      - path: {}\n        sync-interval: 100ms\n",
            db.display(),
            replica.display()
        ),
    )
    .unwrap();
    let mut p = Proc::replicate(t.path(), &Tool::Walship, &cfg);
    let source = common::file_url(&replica);
    wait_rows(&source, &[], t.path(), 1, &mut p);
    for round in 0..4 {
        // Quiet for longer than a copy takes, so the next commit finds the watch armed
        // again (or not at all).
        std::thread::sleep(Duration::from_millis(700));
        for _ in 0..=round {
            c.execute("INSERT INTO t (v) VALUES ('more')", []).unwrap();
        }
        let want = 1 + (1..=round + 1).sum::<i64>();
        wait_rows(&source, &[], t.path(), want, &mut p);
    }
}

/// A database created in a watched directory after start (in WAL mode, so its file holds
/// one page and the rest sits in its `-wal`) is found through its side files coming and
/// going, not at the rescan a minute later; its later commits are heard too.
#[test]
fn a_new_database_in_a_watched_directory_is_found_and_heard() {
    let t = TestDir::new("wakes_dir");
    let data = t.subdir("data");
    let replica = t.join("replica");
    let cfg = t.join("litestream.yml");
    fs::write(
        &cfg,
        format!(
            "dbs:\n  - dir: {}\n    pattern: \"*.db\"\n    watch: true\n    monitor-interval: 60s\n    \
             replicas:\n      - path: {}\n        sync-interval: 100ms\n",
            data.display(),
            replica.display()
        ),
    )
    .unwrap();
    let mut p = Proc::replicate(t.path(), &Tool::Walship, &cfg);
    // Let the engine start and do its first scan of the (empty) directory.
    std::thread::sleep(Duration::from_millis(1500));
    p.assert_running();
    let db = data.join("new.db");
    let c = app(&db);
    c.execute("INSERT INTO t (v) VALUES ('a')", []).unwrap();
    let args = ["-config", s(&cfg)];
    wait_rows(s(&db), &args, t.path(), 1, &mut p);
    std::thread::sleep(Duration::from_millis(700));
    c.execute("INSERT INTO t (v) VALUES ('b')", []).unwrap();
    wait_rows(s(&db), &args, t.path(), 2, &mut p);
}
