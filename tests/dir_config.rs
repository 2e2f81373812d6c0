//! Guards the directory form of a `dbs:` entry (`dir:` + `pattern:` + `recursive:` +
//! `watch:`, Litestream v0.5's keys) with the real `walship replicate`: a database there at
//! start and one created afterwards (also in a subdirectory) are each replicated to
//! `<replica>/<relative path>` and restore exactly (with `walship restore -config`, and with
//! the real Litestream v0.3.13 from the per-database replica); a file that matches the
//! pattern but is not SQLite is skipped with one warning however often it changes; `-wal`,
//! `-shm` and meta files are never taken for databases; a database deleted from a watched
//! directory leaves the running engine (tasks stopped, files closed, replica kept) and is
//! replicated again, in a new generation, when it comes back.
mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Proc, TestDir, Tool, s};
use walship::backend::file::FileClient;
use walship::config::Config;
use walship::engine::{Durability, Engine, EngineHandle};
use walship::restore::{self, ReplicaSource, RestoreOptions};

fn write_rows(db: &Path, n: usize) {
    let c = rusqlite::Connection::open(db).unwrap();
    c.execute_batch(
        "PRAGMA journal_mode=WAL; CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v TEXT);",
    )
    .unwrap();
    for i in 0..n {
        c.execute("INSERT INTO t(v) VALUES (?1)", [format!("row {i}")])
            .unwrap();
    }
}

fn count(db: &Path) -> Result<i64, String> {
    let c = rusqlite::Connection::open(db).map_err(|e| e.to_string())?;
    c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
        .map_err(|e| e.to_string())
}

/// Waits until `tool` restores `source` (with `extra` args) to exactly `rows` rows.
fn wait_restores(tool: &Tool, source: &str, extra: &[&str], dir: &Path, rows: i64, p: &mut Proc) {
    common::wait_until(
        &format!("{} to restore {source} with {rows} rows", tool.name()),
        Duration::from_secs(30),
        || {
            p.assert_running();
            let (out, r) = common::restore(tool, source, extra, dir);
            if !r.ok() {
                return Err(r.describe());
            }
            match count(&out)? {
                n if n == rows => Ok(()),
                n => Err(format!("{n} rows")),
            }
        },
    );
}

#[test]
fn directory_entry_replicates_new_databases_and_skips_other_files() {
    let t = TestDir::new("dir_config");
    let data = t.subdir("tenants");
    let replica = t.subdir("replica");
    write_rows(&data.join("a.db"), 5);
    // Longer than a page, so SQLite itself has to look at the header to refuse it.
    fs::write(
        data.join("notes.db"),
        "not a database, just notes\n".repeat(100),
    )
    .unwrap();
    fs::write(data.join("readme.txt"), "ignored by name\n").unwrap();
    let cfg = t.join("litestream.yml");
    fs::write(
        &cfg,
        format!(
            "dbs:\n  - dir: {}\n    pattern: \"*.db\"\n    recursive: true\n    watch: true\n    \
             monitor-interval: 100ms\n    replicas:\n      - path: {}\n        sync-interval: 100ms\n",
            data.display(),
            replica.display()
        ),
    )
    .unwrap();

    let mut p = Proc::replicate(t.path(), &Tool::Walship, &cfg);
    let cfg_args = ["-config", s(&cfg)];
    wait_restores(
        &Tool::Walship,
        s(&data.join("a.db")),
        &cfg_args,
        t.path(),
        5,
        &mut p,
    );

    // Created after start, at the top and in a new subdirectory.
    write_rows(&data.join("b.db"), 7);
    fs::create_dir(data.join("eu")).unwrap();
    write_rows(&data.join("eu").join("c.db"), 3);
    wait_restores(
        &Tool::Walship,
        s(&data.join("b.db")),
        &cfg_args,
        t.path(),
        7,
        &mut p,
    );
    wait_restores(
        &Tool::Walship,
        s(&data.join("eu").join("c.db")),
        &cfg_args,
        t.path(),
        3,
        &mut p,
    );
    // More writes to a database picked up while running are shipped too.
    write_rows(&data.join("b.db"), 4);
    wait_restores(
        &Tool::Walship,
        s(&data.join("b.db")),
        &cfg_args,
        t.path(),
        11,
        &mut p,
    );

    // The non-SQLite file changes a few times: still one warning.
    for i in 0..3 {
        fs::write(
            data.join("notes.db"),
            format!("more notes {i}\n").repeat(100),
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(200));
    }
    // The real Litestream restores the per-database replica walship wrote.
    if let Some(ls) = common::litestream("directory_entry_replicates_new_databases") {
        let url = common::file_url(&replica.join("eu").join("c.db"));
        wait_restores(&Tool::Litestream(ls), &url, &[], t.path(), 3, &mut p);
    }
    p.stop();
    let logs = p.logs();

    let warnings = logs
        .lines()
        .filter(|l| l.contains("not a SQLite database") && l.contains("notes.db"))
        .count();
    assert_eq!(warnings, 1, "one warning for notes.db:\n{logs}");
    assert!(!logs.contains("readme.txt"), "{logs}");
    // Exactly the three databases have replicas, each under its relative path.
    for d in ["a.db", "b.db", "eu/c.db"] {
        assert!(
            replica.join(d).join("generations").is_dir(),
            "replica of {d}"
        );
    }
    let top: Vec<String> = common::dir_entries(&replica);
    assert_eq!(
        top,
        vec!["a.db", "b.db", "eu"],
        "nothing else was replicated (no -wal, -shm, notes.db, meta dirs)"
    );
    assert_eq!(common::dir_entries(&replica.join("eu")), vec!["c.db"]);
    let initialized = logs
        .lines()
        .filter(|l| l.contains("initialized db") && l.contains("path="))
        .count();
    assert_eq!(initialized, 3, "three databases started:\n{logs}");
    // The listing commands know the directory's databases.
    let out = common::walship(&["databases", "-config", s(&cfg)], t.path());
    out.assert_ok();
    for db in ["a.db", "b.db", "eu/c.db"] {
        assert!(
            out.stdout.contains(s(&data.join(db))),
            "databases lists {db}: {}",
            out.stdout
        );
    }
    assert!(!out.stdout.contains("notes.db"), "{}", out.stdout);
    let picked_up = logs
        .lines()
        .filter(|l| l.contains("new database in watched directory"))
        .count();
    assert_eq!(
        picked_up, 2,
        "b.db and eu/c.db were picked up while running:\n{logs}"
    );
}

#[test]
fn directory_without_databases_and_without_watch_is_an_error() {
    let t = TestDir::new("dir_config_empty");
    let data = t.subdir("empty");
    let cfg = t.join("litestream.yml");
    fs::write(
        &cfg,
        format!(
            "dbs:\n  - dir: {}\n    pattern: \"*.db\"\n    replicas:\n      - path: {}\n",
            data.display(),
            t.join("replica").display()
        ),
    )
    .unwrap();
    let out = common::walship(&["replicate", "-config", s(&cfg)], t.path());
    assert!(!out.ok(), "{}", out.describe());
    assert!(
        out.combined()
            .contains("no SQLite databases found in directory"),
        "{}",
        out.describe()
    );
}

/// What the engine logs in this test process (the other tests run it as a child process).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Polls `f` every 50 ms until it holds; panics with `what` after `timeout`.
async fn poll_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !f() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every file under `dir`, relative to it, sorted.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path().strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

/// Deletes `db` and its `-wal` and `-shm`, as an application removing a database does.
fn remove_with_side_files(db: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = fs::remove_file(format!("{}{suffix}", db.display()));
    }
}

/// The descriptors of this process open on `db` or its `-wal`/`-shm` (deleted or not).
fn open_fds(db: &Path) -> Vec<String> {
    let db = db.to_string_lossy().into_owned();
    fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter_map(|e| fs::read_link(e.path()).ok())
        .map(|t| t.to_string_lossy().into_owned())
        .filter(|t| {
            let t = t.strip_suffix(" (deleted)").unwrap_or(t);
            [String::new(), "-wal".into(), "-shm".into()]
                .iter()
                .any(|suffix| t == format!("{db}{suffix}"))
        })
        .collect()
}

/// Waits until every replica of `db` holds everything committed to it.
async fn durable(h: &EngineHandle, db: &Path) -> walship::Pos {
    h.wait_durable(db, Durability::AllReplicas, Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{} durable: {e}", db.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_deleted_from_a_watched_directory_stops_and_comes_back() {
    let logs = Logs::default();
    let writer = logs.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish(),
    )
    .unwrap();
    let t = TestDir::new("dir_config_removed");
    let data = fs::canonicalize(t.subdir("tenants")).unwrap();
    let replica = fs::canonicalize(t.subdir("replica")).unwrap();
    let gone = data.join("gone.db");
    let kept = data.join("kept.db");
    write_rows(&gone, 5);
    write_rows(&kept, 2);
    let yaml = format!(
        "dbs:\n  - dir: {}\n    pattern: \"*.db\"\n    watch: true\n    monitor-interval: 100ms\n    \
         replicas:\n      - path: {}\n        sync-interval: 100ms\n",
        data.display(),
        replica.display()
    );
    let cfg = Config::from_yaml(&yaml, &t.join("litestream.yml"), false)
        .unwrap()
        .config;
    let h = Engine::from_config(&cfg).unwrap().start();
    let first = durable(&h, &gone).await;
    durable(&h, &kept).await;
    let objects = files_under(&replica.join("gone.db"));
    assert!(
        objects
            .iter()
            .any(|p| p.to_string_lossy().ends_with(".snapshot.lz4")),
        "gone.db was replicated: {objects:?}"
    );

    // kept.db is replaced: deleted with its side files, and 300 ms later a new database
    // (built under a hidden name the pattern ignores) is renamed into its place. Gone for
    // less than the grace: it keeps replicating, it is not stopped and started again.
    let tmp = data.join(".kept.db.tmp");
    write_rows(&tmp, 6);
    remove_with_side_files(&kept);
    tokio::time::sleep(Duration::from_millis(300)).await;
    fs::rename(&tmp, &kept).unwrap();
    remove_with_side_files(&gone);
    // The notification (or, failing that, the 10 s rescan) and the 1 s grace. The watcher
    // handles events in order, so kept.db's were handled by then.
    poll_until(
        "gone.db to leave the engine",
        Duration::from_secs(30),
        || h.db(&gone).is_none(),
    )
    .await;
    let listed: Vec<PathBuf> = h.dbs().iter().map(|d| d.db.path().to_path_buf()).collect();
    assert_eq!(listed, vec![kept.clone()], "only kept.db is left");
    assert!(
        !logs.text().contains("new database in watched directory"),
        "kept.db was not stopped and picked up again:\n{}",
        logs.text()
    );
    assert!(
        h.status().iter().all(|st| st.path != gone),
        "status no longer reports gone.db"
    );
    let removed: Vec<String> = logs
        .text()
        .lines()
        .filter(|l| {
            l.contains("database removed from directory; replication stopped, its replica is kept")
        })
        .map(str::to_owned)
        .collect();
    assert!(
        removed.len() == 1 && removed[0].contains("gone.db") && removed[0].contains("INFO"),
        "one info line, for gone.db:\n{}",
        logs.text()
    );
    poll_until(
        "the engine's descriptors on gone.db to be closed",
        Duration::from_secs(10),
        || open_fds(&gone).is_empty(),
    )
    .await;
    // Nothing was deleted from its replica.
    let after = files_under(&replica.join("gone.db"));
    for o in &objects {
        assert!(
            after.contains(o),
            "{} still on the replica: {after:?}",
            o.display()
        );
    }
    // The other database of the directory (now the replacement) is still replicated.
    write_rows(&kept, 3);
    durable(&h, &kept).await;
    let kept_replica = vec![ReplicaSource {
        name: "file".into(),
        client: Arc::new(FileClient::new(replica.join("kept.db"))),
    }];
    let restored = t.join("kept-restored.db");
    restore::restore(
        &kept_replica,
        &restored,
        &RestoreOptions::default(),
        &|_| {},
    )
    .await
    .unwrap();
    assert_eq!(
        count(&restored),
        Ok(9),
        "the replacement's 6 rows and 3 more"
    );

    // Back again: picked up as a new database, in a new generation.
    write_rows(&gone, 4);
    poll_until(
        "gone.db to be picked up again",
        Duration::from_secs(30),
        || h.db(&gone).is_some(),
    )
    .await;
    let second = durable(&h, &gone).await;
    assert_ne!(second.generation, first.generation, "a new generation");
    let generations = common::dir_entries(&replica.join("gone.db").join("generations"));
    assert_eq!(
        generations.len(),
        2,
        "both generations kept: {generations:?}"
    );
    let replicas = vec![ReplicaSource {
        name: "file".into(),
        client: Arc::new(FileClient::new(replica.join("gone.db"))),
    }];
    let out = t.join("restored.db");
    restore::restore(&replicas, &out, &RestoreOptions::default(), &|_| {})
        .await
        .unwrap();
    assert_eq!(
        count(&out),
        Ok(4),
        "the restore has the new database's rows"
    );
    h.shutdown().await.unwrap();
    assert_eq!(
        logs.text()
            .matches("new database in watched directory")
            .count(),
        1,
        "gone.db was picked up once, when it came back:\n{}",
        logs.text()
    );
}
