//! walship as a SQLite loadable extension, in real hosts: Debian's python3 (with a SQLite
//! new enough for the extension on LD_LIBRARY_PATH) with sqlite-vec, pysqlite3-binary (its
//! own static SQLite), the sqlite3 shell, and Debian's python3 with its own SQLite 3.40.1,
//! which the extension must refuse. The roles the hosts play are in tests/python/ext_host.py.
//!
//! `.ci/extension` builds the extension and `.ci/extension-hosts` the hosts (both cached in
//! target/); the first test that needs them runs both.
mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{CmdOut, Proc, TestDir, file_url, s};
use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

struct Hosts {
    /// libwalship.so
    ext: PathBuf,
    /// target/ext-hosts: lib/, bin/sqlite3, venv/
    dir: PathBuf,
}

fn hosts() -> &'static Hosts {
    static HOSTS: OnceLock<Hosts> = OnceLock::new();
    HOSTS.get_or_init(|| {
        let script = |name: &str| {
            let out = Command::new("bash")
                .arg(Path::new(ROOT).join(".ci").join(name))
                .current_dir(ROOT)
                .output()
                .unwrap_or_else(|e| panic!("run .ci/{name}: {e}"));
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(
                out.status.success(),
                ".ci/{name} failed:\n{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            stdout.lines().last().unwrap_or_default().to_string()
        };
        let ext = PathBuf::from(script("extension"));
        let dir = script("extension-hosts");
        let dir = PathBuf::from(dir.strip_prefix("WALSHIP_EXT_HOSTS=").expect("hosts dir"));
        assert!(ext.is_file(), "no extension at {}", ext.display());
        Hosts { ext, dir }
    })
}

/// Debian's python3 of the hosts' venv running tests/python/ext_host.py; `new_sqlite`
/// puts the newer SQLite on LD_LIBRARY_PATH (Debian 12's is too old for the extension).
fn python(new_sqlite: bool) -> Command {
    let h = hosts();
    let mut c = Command::new(h.dir.join("venv/bin/python"));
    c.arg(Path::new(ROOT).join("tests/python/ext_host.py"))
        .env("WALSHIP_EXTENSION", &h.ext)
        .env("PYTHONPATH", Path::new(ROOT).join("src/python"))
        .env("PYTHONUNBUFFERED", "1");
    if new_sqlite {
        c.env("LD_LIBRARY_PATH", h.dir.join("lib"));
    } else {
        c.env_remove("LD_LIBRARY_PATH");
    }
    c
}

fn run_py(dir: &Path, args: &[&str]) -> CmdOut {
    let mut c = python(true);
    c.args(args).current_dir(dir);
    let out = c.output().expect("run python");
    let out = CmdOut {
        cmdline: format!("ext_host.py {}", args.join(" ")),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    out.assert_ok();
    out
}

/// The last line of a role's stdout, as JSON.
fn json_of(out: &str) -> Value {
    let line = out
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| {
            panic!("no JSON in:\n{out}");
        });
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

/// `dump` of a database: integrity, documents and vectors.
fn dump(dir: &Path, db: &Path) -> Value {
    let v = json_of(&run_py(dir, &["dump", s(db)]).stdout);
    assert_eq!(v["integrity"], "ok", "{}: {v}", db.display());
    v
}

fn spawn_py(dir: &Path, name: &str, args: &[&str]) -> Proc {
    let h = hosts();
    let mut all = vec![s(&Path::new(ROOT).join("tests/python/ext_host.py")).to_string()];
    all.extend(args.iter().map(|a| a.to_string()));
    // Proc::spawn inherits this process's environment: the hosts' variables go through
    // `env` on the command line.
    let mut env_args = vec![
        format!("WALSHIP_EXTENSION={}", h.ext.display()),
        format!(
            "PYTHONPATH={}",
            Path::new(ROOT).join("src/python").display()
        ),
        format!("LD_LIBRARY_PATH={}", h.dir.join("lib").display()),
        "PYTHONUNBUFFERED=1".to_string(),
        s(&h.dir.join("venv/bin/python")).to_string(),
    ];
    env_args.extend(all);
    Proc::spawn(dir, name, Path::new("/usr/bin/env"), &env_args)
}

/// A test directory, a database path in it and a file replica's URL beside it.
fn case(name: &str, db: &str) -> (TestDir, PathBuf, String) {
    let t = TestDir::new(name);
    let db = t.join(db);
    let url = file_url(&t.join("replica"));
    (t, db, url)
}

/// A JSON array of row ids as a set.
fn id_set(v: &Value) -> BTreeSet<i64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|i| i.as_i64().expect("row id"))
        .collect()
}

fn acked(p: &Proc) -> BTreeSet<i64> {
    std::fs::read_to_string(p.stdout_path())
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix("ack "))
        .map(|n| n.trim().parse().expect("ack id"))
        .collect()
}

fn wait_exit(p: &mut Proc, timeout: Duration) {
    let st = p
        .wait_timeout(timeout)
        .unwrap_or_else(|| panic!("{} still running after {timeout:?}:\n{}", p.name, p.logs()));
    assert!(st.success(), "{} failed ({st}):\n{}", p.name, p.logs());
}

fn restore_both(dir: &Path, url: &str, name: &str) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let w = dir.join(format!("{name}-walship.db"));
    common::walship(&["restore", "-o", s(&w), url], dir).assert_ok();
    out.push(("walship".to_string(), dump(dir, &w)));
    if let Some(ls) = common::litestream(name) {
        let l = dir.join(format!("{name}-litestream.db"));
        common::run(&ls, &["restore", "-o", s(&l), url], dir).assert_ok();
        out.push(("litestream".to_string(), dump(dir, &l)));
    }
    out
}

/// The guides' service: one process runs walship in-process and acknowledges each row once
/// `wait_durable` returns; two more processes write vectors and rows beside it without
/// walship. Both restores (walship's and Litestream's) equal the database, and hold every
/// acknowledged row.
#[test]
fn python_service_with_sqlite_vec_and_other_writers() {
    let (t, db, url) = case("ext-service", "sqlite_vec.db");
    let done = t.join("writers.done");
    // The schema first, so the writers can start at once.
    run_py(t.path(), &["setup", s(&db)]);
    let mut service = spawn_py(
        t.path(),
        "service",
        &["service", s(&db), &url, "150", "--wait-for", s(&done)],
    );
    let mut writers: Vec<Proc> = (0..2)
        .map(|_| spawn_py(t.path(), "writer", &["writer", s(&db), "200"]))
        .collect();
    for w in &mut writers {
        wait_exit(w, Duration::from_secs(120));
    }
    std::fs::write(&done, b"").unwrap();
    wait_exit(&mut service, Duration::from_secs(120));
    let acks = acked(&service);
    assert_eq!(acks.len(), 150, "{}", service.logs());
    let stopped = json_of(&std::fs::read_to_string(service.stdout_path()).unwrap());
    let replica = &stopped["status"]["dbs"][0]["replicas"][0];
    assert!(replica["last_error"].is_null(), "{stopped}");
    assert_eq!(replica["lease"], "held", "{stopped}");

    let original = dump(t.path(), &db);
    assert_eq!(original["ids"].as_array().unwrap().len(), 150 + 2 * 200);
    for (tool, restored) in restore_both(t.path(), &url, "service") {
        assert_eq!(
            restored["docs"], original["docs"],
            "{tool}'s restore differs"
        );
        assert_eq!(
            restored["vecs"], original["vecs"],
            "{tool}'s restore differs"
        );
        let ids = id_set(&restored["ids"]);
        assert!(
            acks.is_subset(&ids),
            "{tool}: an acknowledged row is missing"
        );
    }
}

/// An asyncio service: concurrent requests, each acknowledged after
/// `wait_durable_async`; every acknowledged row restores.
#[test]
fn asyncio_service_waits_without_blocking_the_loop() {
    let (t, db, url) = case("ext-asyncio", "app.db");
    let v = json_of(&run_py(t.path(), &["asyncio", s(&db), &url, "8", "10"]).stdout);
    let acks = id_set(&v["acks"]);
    assert_eq!(acks.len(), 80, "{v}");
    let original = dump(t.path(), &db);
    for (tool, restored) in restore_both(t.path(), &url, "asyncio") {
        assert_eq!(restored["docs"], original["docs"], "{tool}");
    }
}

/// A service that exits without `stop()` (and never waited) still gets the final sync:
/// the Python wrapper stops walship at interpreter exit.
#[test]
fn a_clean_exit_without_stop_runs_the_final_sync() {
    let (t, db, url) = case("ext-no-stop", "app.db");
    run_py(t.path(), &["no-stop", s(&db), &url, "300"]);
    let original = dump(t.path(), &db);
    assert_eq!(original["ids"].as_array().unwrap().len(), 300);
    for (tool, restored) in restore_both(t.path(), &url, "no-stop") {
        assert_eq!(restored["docs"], original["docs"], "{tool}");
    }
}

/// kill -9 of the host while it writes: every acknowledged row is in the restore.
#[test]
fn kill9_of_the_host_loses_no_acknowledged_row() {
    let (t, db, url) = case("ext-kill9", "app.db");
    let mut service = spawn_py(t.path(), "service", &["service", s(&db), &url, "-1"]);
    let start = Instant::now();
    while acked(&service).len() < 120 {
        service.assert_running();
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{}",
            service.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    service.kill9();
    let acks = acked(&service);
    for (tool, restored) in restore_both(t.path(), &url, "kill9") {
        let ids = id_set(&restored["ids"]);
        let missing: Vec<_> = acks.difference(&ids).collect();
        assert!(
            missing.is_empty(),
            "{tool}: acknowledged rows missing: {missing:?}"
        );
    }
}

/// The host holds a read transaction; another process's TRUNCATE checkpoint must not reset
/// the WAL before, while and after walship runs and stops in that host. The control phase
/// (a descriptor of the -shm opened and closed in the host, as a `File` does) shows that the
/// same check does see a lost lock.
#[test]
fn host_locks_survive_walship_in_the_host() {
    let (t, db, url) = case("ext-locks", "app.db");
    let v = json_of(&run_py(t.path(), &["locks", s(&db), &url]).stdout);
    assert_locks_held(&v);
    assert_eq!(
        v["after_close_fd"],
        serde_json::json!([0, 0, 0]),
        "the control phase should reset the WAL once the host's -shm lock is gone: {v}"
    );
}

/// The same in a pysqlite3 host (its own static SQLite; the extension runs on it through
/// its API table), whose control phase is a second SQLite copy in the process (the stdlib
/// `sqlite3` module) opening and closing the database: that drops the host's locks and the
/// checkpoint resets the WAL. An extension that brought its own SQLite would do the same.
#[test]
fn host_locks_survive_walship_and_a_second_sqlite_copy_does_not() {
    let (t, db, url) = case("ext-locks-copy", "app.db");
    let v = json_of(&run_py(t.path(), &["locks", s(&db), &url, "pysqlite3"]).stdout);
    assert_locks_held(&v);
    assert_eq!(
        v["after_second_copy"],
        serde_json::json!([0, 0, 0]),
        "a second SQLite copy closing the database should drop the host's lock: {v}"
    );
}

fn assert_locks_held(v: &Value) {
    for phase in ["before", "during", "after_stop"] {
        assert_eq!(
            v[phase][0], 1,
            "{phase}: the checkpoint was not blocked by the host's reader: {v}"
        );
    }
    assert_eq!(v["reader_still_sees"], v["seen"], "{v}");
}

/// The sqlite3 shell loads the extension, replicates, waits and stops; Litestream restores.
#[test]
fn sqlite3_shell_loads_the_extension() {
    let h = hosts();
    let (t, db, url) = case("ext-shell", "shell.db");
    let ext = h.ext.with_extension("");
    let script = format!(
        "PRAGMA journal_mode=WAL;\n\
         CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);\n\
         INSERT INTO t(v) VALUES ('before');\n\
         .load {}\n\
         SELECT json_array_length(walship_replicate('{url}'));\n\
         INSERT INTO t(v) SELECT 'row-' || value FROM generate_series(1, 500);\n\
         SELECT walship_wait_durable(10000) <> '';\n\
         INSERT INTO t(v) VALUES ('last');\n\
         SELECT json_extract(walship_stop(), '$[0]') = '{}';\n",
        ext.display(),
        db.display()
    );
    let out = Command::new(h.dir.join("bin/sqlite3"))
        .arg(&db)
        .env("LD_LIBRARY_PATH", h.dir.join("lib"))
        .stdin({
            std::fs::write(t.join("script.sql"), &script).unwrap();
            std::fs::File::open(t.join("script.sql")).unwrap()
        })
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && !String::from_utf8_lossy(&out.stderr).contains("Error"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.lines().collect::<Vec<_>>(), ["wal", "1", "1", "1"]);
    for (tool, restored) in restore_tables(t.path(), &url) {
        assert_eq!(restored, "502", "{tool}");
    }
}

/// `SELECT count(*) FROM t` of walship's and Litestream's restores.
fn restore_tables(dir: &Path, url: &str) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let count = |p: &Path| {
        rusqlite::Connection::open(p)
            .unwrap()
            .query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0))
            .unwrap()
            .to_string()
    };
    let w = dir.join("restored-walship.db");
    common::walship(&["restore", "-o", s(&w), url], dir).assert_ok();
    out.push(("walship", count(&w)));
    if let Some(ls) = common::litestream("sqlite3_shell_loads_the_extension") {
        let l = dir.join("restored-litestream.db");
        common::run(&ls, &["restore", "-o", s(&l), url], dir).assert_ok();
        out.push(("litestream", count(&l)));
    }
    out
}

/// pysqlite3-binary: a Python sqlite3 module with its own statically linked SQLite 3.51.1.
/// The extension works through that SQLite's API table, and warns about the WAL-reset bug
/// of SQLite before 3.51.3, naming the version.
#[test]
fn pysqlite3_host_with_its_own_static_sqlite() {
    let (t, db, url) = case("ext-pysqlite3", "app.db");
    let mut c = python(false);
    let out = c
        .args(["service", s(&db), &url, "40", "--module", "pysqlite3"])
        .current_dir(t.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(stdout.lines().filter(|l| l.starts_with("ack ")).count(), 40);
    assert!(
        stderr.contains("WAL-reset bug") && stderr.contains("3.51.1"),
        "no WAL-reset warning naming the host's SQLite: {stderr}"
    );
    let original = dump(t.path(), &db);
    for (tool, restored) in restore_both(t.path(), &url, "pysqlite3") {
        assert_eq!(restored["docs"], original["docs"], "{tool}");
    }
}

/// Debian 12's python3 with its own SQLite (3.40.1): the extension refuses to load, naming
/// both versions, and the host goes on.
#[test]
fn a_host_too_old_is_refused_with_both_versions() {
    let t = TestDir::new("ext-old-host");
    let h = hosts();
    let code = format!(
        "import sqlite3\n\
         c = sqlite3.connect('x.db')\n\
         c.enable_load_extension(True)\n\
         try:\n    c.load_extension({:?})\n    print('loaded')\n\
         except sqlite3.OperationalError as e:\n    print('refused:', e)\n\
         print(c.execute('select 1').fetchone()[0])\n",
        s(&h.ext)
    );
    let out = Command::new("/usr/bin/python3")
        .args(["-c", &code])
        .env_remove("LD_LIBRARY_PATH")
        .current_dir(t.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let host: String = String::from_utf8_lossy(
        &Command::new("/usr/bin/python3")
            .args(["-c", "import sqlite3; print(sqlite3.sqlite_version)"])
            .env_remove("LD_LIBRARY_PATH")
            .output()
            .unwrap()
            .stdout,
    )
    .trim()
    .to_string();
    let parts: Vec<u32> = host.split('.').filter_map(|p| p.parse().ok()).collect();
    if parts >= vec![3, 45, 0] {
        common::skip_loudly(&format!(
            "the old-host refusal: this machine's python3 has SQLite {host}, new enough"
        ));
        return;
    }
    assert!(
        stdout.contains("refused:")
            && stdout.contains("needs SQLite 3.45.0 or later")
            && stdout.contains(&format!("the host's SQLite is {host}")),
        "{stdout}"
    );
    assert!(
        stdout.trim_end().ends_with('1'),
        "the host must go on: {stdout}"
    );
}

/// Bad input: clear errors, nothing written. And `walship_restore` (with an existing output
/// refused), and `walship_follow`, refused with what to use instead.
#[test]
fn bad_input_is_refused_and_nothing_written() {
    let t = TestDir::new("ext-bad-input");
    let v = json_of(&run_py(t.path(), &["bad-input", s(t.path())]).stdout);
    let err = |k: &str| -> String {
        v[k]["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{k} was not refused: {v}"))
            .to_string()
    };
    assert!(err("config_missing").contains("config file not found"));
    assert!(err("config_invalid").contains("cannot parse config file"));
    assert!(err("config_exec").contains("exec:"));
    assert!(err("not_wal").contains("journal_mode=delete"));
    assert_eq!(v["not_wal_replica_exists"], false);
    assert!(err("bad_url").contains("unknown replica url scheme"));
    assert!(err("second_start").contains("already replicated by this process"));
    assert!(err("second_start_sql").contains("already replicated by this process"));
    assert_eq!(v["second_start_replica_exists"], false);
    assert!(err("stopped_twice").contains("is not replicated by this process"));
    assert!(err("wait_bad_timeout").contains("milliseconds"));
    assert!(err("in_memory").contains("in memory"));
    let follow = err("follow");
    assert!(
        follow.contains("not in the extension") && follow.contains("walship_restore"),
        "{follow}"
    );
    assert!(v["restore"]["ok"]["generation"].is_string(), "{v}");
    assert_eq!(v["restored_rows"], 1, "{v}");
    assert!(err("restore_existing").contains("already exists"));
    assert!(!t.join("exec-replica").exists());
}

/// A worker forked from the process that runs the engine is refused with a message that
/// says why; the parent goes on replicating.
#[test]
fn a_forked_worker_is_refused_and_the_parent_goes_on() {
    let (t, db, url) = case("ext-fork", "app.db");
    let v = json_of(&run_py(t.path(), &["fork", s(&db), &url]).stdout);
    for k in ["wait", "status_sql", "start_sql"] {
        let e = v["child"][k]["error"].as_str().unwrap_or_default();
        assert!(e.contains("was forked from pid"), "{k}: {v}");
    }
    assert!(v["parent_wait"]["ok"].is_string(), "{v}");
    assert!(!t.join("replica-child").exists());
}
