//! Guards the directory form of a `dbs:` entry (`dir:` + `pattern:` + `recursive:` +
//! `watch:`, Litestream v0.5's keys) with the real `walship replicate`: a database there at
//! start and one created afterwards (also in a subdirectory) are each replicated to
//! `<replica>/<relative path>` and restore exactly (with `walship restore -config`, and with
//! the real Litestream v0.3.13 from the per-database replica); a file that matches the
//! pattern but is not SQLite is skipped with one warning however often it changes; `-wal`,
//! `-shm` and meta files are never taken for databases.
mod common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use common::{Proc, TestDir, Tool, s};

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
