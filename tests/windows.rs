//! The Windows test set: `walship.exe` (target `x86_64-pc-windows-gnu`) run under Wine beside
//! the Linux walship, the real Litestream v0.3.13 and a plain `python3 -m http.server`.
//!
//! `.ci/run` builds `walship.exe` and `app_writer.exe` (examples/app_writer.rs, the stand-in
//! application: Windows SQLite locks live in Wine's server, not in Linux's `fcntl` locks, so
//! the process writing or reading a database beside `walship.exe` must be a Windows
//! program too) and sets:
//! - `WALSHIP_WINDOWS_BIN`: the directory holding both `.exe` files;
//! - `WALSHIP_WINE_RUN`: the runner (`.ci/wine-run.sh`), with `WALSHIP_WINEPREFIX` its
//!   prefix (made by `.ci/wine-prefix.sh`).
//!
//! Without them the tests say loudly that they skip; under CI they fail instead. Each test
//! works under `C:\walship tests\<test>-<n>\` (a space on purpose), with Windows paths in
//! its configs and command lines.
mod common;
#[path = "common/servers.rs"]
mod servers;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{CmdOut, Proc, TestDir};
use servers::StaticHttp;

/// Where a test's Windows files live, in both spellings.
struct Win {
    runner: PathBuf,
    prefix: PathBuf,
    /// `C:\walship tests\bin`, holding walship.exe and app_writer.exe.
    bin_c: String,
    /// This test's directory as Windows names it (`C:\walship tests\<test>-<n>`).
    c: String,
    /// The same directory on Linux (`$WINEPREFIX/drive_c/walship tests/<test>-<n>`).
    linux: PathBuf,
    /// Logs of the processes this test starts (a Linux temp dir, kept on failure).
    logs: TestDir,
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

impl Win {
    /// The Windows set-up, or `None` after a loud skip (a failure under CI).
    fn get(test: &str) -> Option<Win> {
        let (Some(bin), Some(runner)) = (
            std::env::var_os("WALSHIP_WINDOWS_BIN"),
            std::env::var_os("WALSHIP_WINE_RUN"),
        ) else {
            let msg = format!(
                "{test}: the Windows test set needs WALSHIP_WINDOWS_BIN and WALSHIP_WINE_RUN \
                 (bash .ci/run sets them; see docs/testing.md)"
            );
            assert!(!common::in_ci(), "{msg}");
            common::skip_loudly(&msg);
            return None;
        };
        let prefix = PathBuf::from(
            std::env::var_os("WALSHIP_WINEPREFIX").unwrap_or_else(|| "/tmp/walship-wine".into()),
        );
        let root = prefix.join("drive_c").join("walship tests");
        // Copied once per test process, before any test runs them.
        static COPIED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
        COPIED.get_or_init(|| {
            let bin_dir = root.join("bin");
            std::fs::create_dir_all(&bin_dir).unwrap();
            for exe in ["walship.exe", "app_writer.exe"] {
                std::fs::copy(Path::new(&bin).join(exe), bin_dir.join(exe))
                    .unwrap_or_else(|e| panic!("copy {exe} from {bin:?}: {e}"));
            }
        });
        let name = format!(
            "{test}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let linux = root.join(&name);
        let _ = std::fs::remove_dir_all(&linux);
        std::fs::create_dir_all(&linux).unwrap();
        Some(Win {
            runner: PathBuf::from(runner),
            prefix,
            bin_c: r"C:\walship tests\bin".into(),
            c: format!(r"C:\walship tests\{name}"),
            linux,
            logs: TestDir::new(test),
        })
    }

    /// `C:\walship tests\<test>-<n>\<rel>` (`rel` with `\`).
    fn c(&self, rel: &str) -> String {
        format!(r"{}\{rel}", self.c)
    }

    /// The Linux path of `self.c(rel)`.
    fn linux(&self, rel: &str) -> PathBuf {
        self.linux.join(rel.replace('\\', "/"))
    }

    /// `C:\walship tests\bin\<exe>`.
    fn exe(&self, exe: &str) -> String {
        format!(r"{}\{exe}", self.bin_c)
    }

    fn argv(&self, exe: &str, args: &[&str]) -> Vec<String> {
        let mut v = vec![self.exe(exe)];
        v.extend(args.iter().map(|s| s.to_string()));
        v
    }

    /// Runs `exe args...` under Wine to the end.
    fn run(&self, exe: &str, args: &[&str]) -> CmdOut {
        common::run(&self.runner, &self.argv(exe, args), self.logs.path())
    }

    /// Starts `exe args...` under Wine with extra environment variables (Wine hands the
    /// Linux environment to Windows programs).
    fn spawn(&self, name: &str, exe: &str, env: &[&str], args: &[&str]) -> Proc {
        let mut argv: Vec<String> = env.iter().map(|s| s.to_string()).collect();
        argv.push(self.runner.display().to_string());
        argv.extend(self.argv(exe, args));
        Proc::spawn(self.logs.path(), name, Path::new("/usr/bin/env"), &argv)
    }

    /// A `-exec` command line running app_writer.exe, quoted as a Windows user writes it.
    fn app(&self, args: &str) -> String {
        format!(r#""{}" {args}"#, self.exe("app_writer.exe"))
    }

    /// `walship.exe restore -o <C:\...\out> <args...>`, which must succeed; the rows of
    /// what it restored.
    fn restore(&self, out: &str, args: &[&str]) -> (i64, i64) {
        let o = self.c(out);
        let mut a = vec!["restore", "-o", o.as_str()];
        a.extend_from_slice(args);
        let r = self.run("walship.exe", &a);
        assert!(r.ok(), "{}", r.describe());
        rows(&self.linux(out))
    }

    /// `Ok` once the file replica at `rel` holds a generation.
    fn has_generation(&self, rel: &str) -> Result<(), String> {
        let gens = std::fs::read_dir(self.linux(rel).join("generations")).map_or(0, |d| d.count());
        if gens > 0 {
            Ok(())
        } else {
            Err(format!("no generation in {rel} yet"))
        }
    }

    fn write_file(&self, rel: &str, text: &str) {
        let p = self.linux(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
}

impl Drop for Win {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.linux);
        } else {
            eprintln!("Windows files kept in {}", self.linux.display());
        }
    }
}

/// A config of one database with one file replica (paths as given: Windows or Linux).
fn one_replica_yaml(
    db: impl std::fmt::Display,
    replica: impl std::fmt::Display,
    sync: &str,
) -> String {
    format!(
        "dbs:\n  - path: {db}\n    replicas:\n      - path: {replica}\n        sync-interval: {sync}\n"
    )
}

/// Rows of `t` in the database at `p` (read on Linux once no Windows process has it open):
/// (count, max id), after an `integrity_check` that must pass.
fn rows(p: &Path) -> (i64, i64) {
    let c = rusqlite::Connection::open_with_flags(p, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap_or_else(|e| panic!("open {}: {e}", p.display()));
    let ok: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok", "{}", p.display());
    c.query_row("SELECT count(*), coalesce(max(id), 0) FROM t", [], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })
    .unwrap()
}

/// Writes rows `from..=to` into a Linux database at `p` (same table as app_writer).
fn linux_write(p: &Path, from: i64, to: i64, pause: Duration) {
    let c = rusqlite::Connection::open(p).unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    c.execute_batch(
        "PRAGMA journal_mode=WAL;
         CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v TEXT NOT NULL);",
    )
    .unwrap();
    for id in from..=to {
        c.execute(
            "INSERT INTO t(id, v) VALUES (?1, ?2)",
            rusqlite::params![id, format!("row {id} {}", "x".repeat(200))],
        )
        .unwrap();
        std::thread::sleep(pause);
    }
}

#[test]
fn windows_commands_answer_help_and_exit_codes_as_on_linux() {
    let Some(w) = Win::get("cli") else { return };
    for args in [
        &["--help"][..],
        &["version"],
        &["replicate", "-h"],
        &["restore", "-h"],
        &["snapshots", "-h"],
        &["generations", "-h"],
        &["wal", "-h"],
        &["databases", "-h"],
        &["status", "-h"],
    ] {
        let r = w.run("walship.exe", args);
        assert!(r.ok(), "walship.exe {args:?}: {}", r.describe());
        assert!(
            r.stdout.contains("walship"),
            "walship.exe {args:?}: {}",
            r.describe()
        );
    }
    // Errors: the same exit code as on Linux, and a message that says what is wrong.
    let missing = w.c(r"nothing here\replica");
    let cases: Vec<(Vec<String>, Vec<String>, &str)> = vec![
        (
            vec!["nosuchcommand".into()],
            vec!["nosuchcommand".into()],
            "nosuchcommand",
        ),
        (
            vec![
                "restore".into(),
                "-config".into(),
                w.c(r"nope\litestream.yml"),
                w.c("x.db"),
            ],
            vec![
                "restore".into(),
                "-config".into(),
                "/nonexistent/walship/litestream.yml".into(),
                "/x.db".into(),
            ],
            "config file not found",
        ),
        (
            vec![
                "restore".into(),
                "-o".into(),
                w.c(r"out\x.db"),
                format!("file:///{}", missing.replace('\\', "/")),
            ],
            vec![
                "restore".into(),
                "-o".into(),
                w.logs.join("out/x.db").display().to_string(),
                format!("file://{}", w.logs.join("nothing-here").display()),
            ],
            "no matching backups",
        ),
    ];
    for (win_args, linux_args, needle) in cases {
        let wa: Vec<&str> = win_args.iter().map(String::as_str).collect();
        let r = w.run("walship.exe", &wa);
        let l = common::walship(&linux_args, w.logs.path());
        assert!(!l.ok(), "linux {linux_args:?}: {}", l.describe());
        assert_eq!(
            r.code,
            l.code,
            "exit code of walship.exe {wa:?} vs linux:\n{}\n{}",
            r.describe(),
            l.describe()
        );
        assert!(
            r.combined().contains(needle),
            "walship.exe {wa:?} should say {needle:?}: {}",
            r.describe()
        );
    }
    assert!(
        !w.linux(r"out\x.db").exists(),
        "a failed restore leaves nothing"
    );
}

/// The round trip on `C:\` paths (backslashes, a space, a `file:///C:/` URL), with the writer
/// run by `-exec`, restored by walship.exe, by the Linux walship and by Linux Litestream.
#[test]
fn windows_replicates_on_c_paths_and_linux_tools_restore_it() {
    let Some(w) = Win::get("round-trip") else {
        return;
    };
    let url_dir = w.c(r"backups\app").replace('\\', "/");
    w.write_file(
        r"My Data\litestream.yml",
        &format!(
            "dbs:\n  - path: {db}\n    replicas:\n      - name: local\n        path: {rep}\n        \
             sync-interval: 100ms\n      - name: url\n        url: file:///{url_dir}\n        \
             sync-interval: 100ms\n",
            db = w.c(r"My Data\app.db"),
            rep = w.c(r"My Data\replica"),
        ),
    );
    let cfg = w.c(r"My Data\litestream.yml");
    let exec = w.app(&format!(r#"write "{}" 1 200 2"#, w.c(r"My Data\app.db")));
    let r = w.run(
        "walship.exe",
        &["replicate", "-config", &cfg, "-exec", &exec],
    );
    assert!(r.ok(), "{}", r.describe());
    assert!(r.stdout.contains("committed 200"), "{}", r.describe());
    assert_eq!(rows(&w.linux(r"My Data\app.db")), (200, 200));

    // walship.exe, from the config (both replicas), and each replica's generations.
    assert_eq!(
        w.restore(
            r"out\restored.db",
            &["-config", &cfg, &w.c(r"My Data\app.db")]
        ),
        (200, 200)
    );
    for (rep, tag) in [("local", "local"), ("url", "url")] {
        let r = w.run(
            "walship.exe",
            &[
                "generations",
                "-config",
                &cfg,
                "-replica",
                rep,
                &w.c(r"My Data\app.db"),
            ],
        );
        assert!(r.ok() && r.stdout.contains(tag), "{}", r.describe());
    }

    // The Linux tools read what walship.exe wrote.
    let linux_out = w.logs.join("linux-restored.db");
    common::walship(
        &[
            "restore",
            "-o",
            common::s(&linux_out),
            &common::file_url(&w.linux(r"My Data\replica")),
        ],
        w.logs.path(),
    )
    .assert_ok();
    assert_eq!(rows(&linux_out), (200, 200));
    if let Some(ls) = common::litestream("windows_replicates_on_c_paths") {
        let ls_out = w.logs.join("litestream-restored.db");
        // Litestream v0.3.13 finds nothing at a file URL with a space, escaped or not: it
        // reads the replica through a link without one.
        let view = w.logs.join("replica-view");
        std::os::unix::fs::symlink(w.linux(r"backups\app"), &view).unwrap();
        let r = common::run(
            &ls,
            &[
                "restore",
                "-o",
                common::s(&ls_out),
                &common::file_url(&view),
            ],
            w.logs.path(),
        );
        assert!(r.ok(), "{}", r.describe());
        assert_eq!(rows(&ls_out), (200, 200));
    }
}

/// A replica written by Linux Litestream v0.3.13, restored by walship.exe.
#[test]
fn windows_restores_what_linux_litestream_wrote() {
    let Some(ls) = common::litestream("windows_restores_what_linux_litestream_wrote") else {
        return;
    };
    let Some(w) = Win::get("from-litestream") else {
        return;
    };
    let db = w.logs.join("app.db");
    linux_write(&db, 1, 150, Duration::ZERO);
    let replica = w.linux("ls-replica");
    let cfg = w.logs.join("litestream.yml");
    std::fs::write(
        &cfg,
        one_replica_yaml(db.display(), replica.display(), "100ms"),
    )
    .unwrap();
    let mut p = Proc::spawn(
        w.logs.path(),
        "litestream-replicate",
        &ls,
        &["replicate", "-config", common::s(&cfg)],
    );
    linux_write(&db, 151, 170, Duration::from_millis(5));
    let source = format!("file:///{}", w.c("ls-replica").replace('\\', "/"));
    let out = w.c(r"out\from-litestream.db");
    common::wait_until(
        "walship.exe restores all 170 rows",
        Duration::from_secs(60),
        || {
            p.assert_running();
            let _ = std::fs::remove_file(w.linux(r"out\from-litestream.db"));
            let r = w.run("walship.exe", &["restore", "-o", &out, &source]);
            if !r.ok() {
                return Err(r.describe());
            }
            match rows(&w.linux(r"out\from-litestream.db")) {
                (170, 170) => Ok(()),
                other => Err(format!("restored {other:?}")),
            }
        },
    );
    p.stop();
}

/// The guides' laptop: a Linux walship replicates into a directory a plain static server
/// publishes; walship.exe follows it with the laptop's config (`type: file` beside an
/// `http://` url) while a Windows reader holds the copy open in read transactions; the
/// reader is the follower's `-exec` command and exits once it has seen every row.
#[test]
fn windows_laptop_follows_the_central_server_over_http() {
    let Some(w) = Win::get("laptop") else { return };
    let served = w.logs.subdir("served");
    let Some(http) = StaticHttp::start("windows_laptop_follows", w.logs.path(), &served) else {
        return;
    };
    let db = w.logs.join("central.db");
    linux_write(&db, 1, 50, Duration::ZERO);
    let cfg = w.logs.join("central.yml");
    std::fs::write(
        &cfg,
        one_replica_yaml(db.display(), served.join("mcp-memory").display(), "100ms"),
    )
    .unwrap();
    let mut central = Proc::replicate(w.logs.path(), &common::Tool::Walship, &cfg);
    // The example the README gives Windows users, pointed at this test's server and folder.
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("config-examples/guide-windows.yml"),
    )
    .unwrap();
    let laptop_yml = example
        .replace(
            r"C:\Users\me\.local\share\mcp-memory\sqlite_vec.db",
            &w.c(r"mcp-memory\sqlite_vec.db"),
        )
        .replace(
            "http://central/litestream/mcp-memory",
            &http.url("mcp-memory"),
        );
    assert!(
        !laptop_yml.contains(r"C:\Users\me") && !laptop_yml.contains("//central/"),
        "{laptop_yml}"
    );
    w.write_file("laptop.yml", &laptop_yml);
    let copy = w.c(r"mcp-memory\sqlite_vec.db");
    let wait = w.app(&format!(r#"wait "{copy}" 400 120"#));
    let mut laptop = w.spawn(
        "walship.exe-follow",
        "walship.exe",
        &[],
        &[
            "restore",
            "-f",
            "-config",
            &w.c("laptop.yml"),
            "-exec",
            &wait,
            &copy,
        ],
    );
    // The central database goes on changing while the laptop follows.
    linux_write(&db, 51, 400, Duration::from_millis(10));
    let st = laptop
        .wait_timeout(Duration::from_secs(150))
        .unwrap_or_else(|| panic!("the follower did not finish\n{}", laptop.logs()));
    assert!(st.success(), "follower exited with {st}\n{}", laptop.logs());
    assert!(laptop.logs().contains("seen 400"), "{}", laptop.logs());
    central.stop();
    assert_eq!(rows(&w.linux(r"mcp-memory\sqlite_vec.db")), (400, 400));
}

/// walship.exe ended at once (TerminateProcess at a crash point, as `kill -9` on Linux)
/// while the application writes: the replica restores to a committed state, and a restart
/// ships the rest.
#[test]
fn windows_crash_mid_write_restores_a_committed_state() {
    let Some(w) = Win::get("crash") else { return };
    let db = w.c("app.db");
    w.write_file(
        "litestream.yml",
        &one_replica_yaml(&db, w.c("replica"), "50ms"),
    );
    let cfg = w.c("litestream.yml");
    // The database exists before walship starts, so the crash lands mid-write.
    let r = w.run("app_writer.exe", &["write", &db, "1", "10"]);
    assert!(r.ok(), "{}", r.describe());
    let mut writer = w.spawn(
        "app_writer",
        "app_writer.exe",
        &[],
        &["write", &db, "11", "300", "20"],
    );
    let mut walship = w.spawn(
        "walship.exe-replicate",
        "walship.exe",
        &["WALSHIP_FAULT=sync.after_upload@6"],
        &["replicate", "-config", &cfg],
    );
    let st = walship
        .wait_timeout(Duration::from_secs(60))
        .unwrap_or_else(|| {
            panic!(
                "walship.exe did not reach its crash point\n{}",
                walship.logs()
            )
        });
    assert!(!st.success(), "{}", walship.logs());
    assert!(
        walship
            .logs()
            .contains("fault point sync.after_upload hit 6"),
        "{}",
        walship.logs()
    );
    let wst = writer
        .wait_timeout(Duration::from_secs(60))
        .expect("writer ends");
    assert!(wst.success(), "{}", writer.logs());

    // What the replica holds now is a committed state: rows 1..=k, whole.
    let (n, max) = w.restore(r"out\after-crash.db", &["-config", &cfg, &db]);
    assert_eq!(n, max, "rows are a prefix 1..=k");
    assert!((10..300).contains(&n), "restored {n} rows");

    // The restart ships everything, plus what is written after it.
    let exec = w.app(&format!(r#"write "{db}" 301 320"#));
    let r = w.run(
        "walship.exe",
        &["replicate", "-config", &cfg, "-exec", &exec],
    );
    assert!(r.ok(), "{}", r.describe());
    assert_eq!(
        w.restore(r"out\after-restart.db", &["-config", &cfg, &db]),
        (320, 320)
    );
}

#[test]
fn windows_paths_helpers_agree() {
    // The test's own spelling of paths: C:\ maps to the prefix's drive_c.
    let Some(w) = Win::get("paths") else { return };
    w.write_file(r"a\b.txt", "x");
    assert!(w.prefix.join("drive_c/walship tests").is_dir());
    assert_eq!(std::fs::read_to_string(w.linux(r"a\b.txt")).unwrap(), "x");
    let r = Command::new(&w.runner)
        .args(["cmd", "/c", "type", &w.c(r"a\b.txt")])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&r.stdout).trim(), "x");
}

/// `walship service install`, then the Service Control Manager runs it (`sc start`), and a
/// stop from it (`sc stop`) runs the final sync: what was written just before is on the
/// replica. Under Wine a service lives only as long as the Wine session, so a sleeping
/// process keeps the session up while the service runs; on Windows it is started at boot.
#[test]
fn windows_service_runs_replicate_and_stops_with_a_final_sync() {
    let Some(w) = Win::get("service") else { return };
    let name = format!("walship-test-{}", std::process::id());
    let db = w.c("app.db");
    w.write_file(
        "litestream.yml",
        &one_replica_yaml(&db, w.c("replica"), "1h"),
    );
    // Wine ends its services (with a shutdown control) when the last ordinary Windows
    // process of the session exits, and a Wine session that is ending while a new process
    // starts comes back with a fresh service manager. So one process keeps the session up
    // from before the first Windows command of this test until its end, and a moment is
    // left for a session that was ending (another test's) to be gone.
    let _session = w.spawn("session", "app_writer.exe", &[], &["sleep", "120"]);
    std::thread::sleep(Duration::from_secs(3));
    let r = w.run("app_writer.exe", &["write", &db, "1", "20"]);
    assert!(r.ok(), "{}", r.describe());
    let r = w.run(
        "walship.exe",
        &[
            "service",
            "install",
            "-name",
            &name,
            "-start",
            "manual",
            "--",
            "replicate",
            "-config",
            &w.c("litestream.yml"),
        ],
    );
    assert!(r.ok(), "{}", r.describe());
    assert!(
        r.stdout.contains("installed the service"),
        "{}",
        r.describe()
    );
    let sc = |args: &[&str]| common::run(&w.runner, &[&["sc"], args].concat(), w.logs.path());
    let state = |sc_out: &CmdOut| {
        sc_out
            .stdout
            .lines()
            .find(|l| l.contains("STATE"))
            .unwrap_or("")
            .to_string()
    };
    let uninstall = scopeguard(|| {
        let _ = common::run(
            &w.runner,
            &[
                w.exe("walship.exe").as_str(),
                "service",
                "uninstall",
                "-name",
                &name,
            ],
            w.logs.path(),
        );
    });
    assert!(sc(&["start", &name]).ok());
    common::wait_until("the service replicates", Duration::from_secs(30), || {
        let q = sc(&["query", &name]);
        if !state(&q).contains("RUNNING") {
            return Err(q.describe());
        }
        w.has_generation("replica")
    });
    // Written while the service runs; with a 1 h sync interval only the final sync ships it.
    let r = w.run("app_writer.exe", &["write", &db, "21", "60"]);
    assert!(r.ok(), "{}", r.describe());
    assert!(sc(&["stop", &name]).ok());
    common::wait_until("the service stops", Duration::from_secs(60), || {
        let q = sc(&["query", &name]);
        if state(&q).contains("STOPPED") {
            Ok(())
        } else {
            Err(q.describe())
        }
    });
    // Its log (%ProgramData%, which Wine puts at C:\users\Public).
    let log = ["ProgramData", "users/Public"]
        .iter()
        .map(|d| {
            w.prefix
                .join("drive_c")
                .join(d)
                .join("walship")
                .join(format!("{name}.log"))
        })
        .find(|p| p.exists())
        .expect("the service's log file");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("stop=service stop"), "{text}");
    assert!(text.contains("walship shut down"), "{text}");
    let url = format!("file:///{}", w.c("replica").replace('\\', "/"));
    assert_eq!(w.restore(r"out\after-service.db", &[&url]), (60, 60));
    drop(uninstall);
    let q = sc(&["query", &name]);
    assert!(
        !q.stdout.contains("SERVICE_NAME"),
        "still installed: {}",
        q.describe()
    );
}

/// Runs `f` when dropped (also when the test panics): cleanup of what a test set up.
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

/// A follower of a file replica on the same Windows machine wakes on the replica's changes
/// (notify's ReadDirectoryChangesW in `src/watch.rs`), not on its timer: with
/// `-interval 60s` (and the safety poll at 60 s) only the watcher can bring the rows
/// written over ~15 s after the follower's first restore into the copy within 45 s.
#[test]
fn windows_follower_of_a_file_replica_wakes_on_changes() {
    let Some(w) = Win::get("watch") else { return };
    let db = w.c("app.db");
    w.write_file(
        "litestream.yml",
        &one_replica_yaml(&db, w.c("replica"), "100ms"),
    );
    let r = w.run("app_writer.exe", &["write", &db, "1", "10"]);
    assert!(r.ok(), "{}", r.describe());
    let exec = w.app(&format!(r#"write "{db}" 11 300 50"#));
    let mut primary = w.spawn(
        "walship.exe-replicate",
        "walship.exe",
        &[],
        &[
            "replicate",
            "-config",
            &w.c("litestream.yml"),
            "-exec",
            &exec,
        ],
    );
    common::wait_until(
        "the primary's first generation",
        Duration::from_secs(30),
        || {
            primary.assert_running();
            w.has_generation("replica")
        },
    );
    let copy = w.c("copy.db");
    let wait = w.app(&format!(r#"wait "{copy}" 300 45"#));
    let started = std::time::Instant::now();
    let source = format!("file:///{}", w.c("replica").replace('\\', "/"));
    let mut follower = w.spawn(
        "walship.exe-follow",
        "walship.exe",
        &[],
        &[
            "restore",
            "-f",
            "-interval",
            "60s",
            "-exec",
            &wait,
            "-o",
            &copy,
            &source,
        ],
    );
    let st = follower
        .wait_timeout(Duration::from_secs(90))
        .unwrap_or_else(|| panic!("the follower did not finish\n{}", follower.logs()));
    assert!(
        st.success(),
        "follower exited with {st}\n{}",
        follower.logs()
    );
    assert!(follower.logs().contains("seen 300"), "{}", follower.logs());
    assert!(
        started.elapsed() < Duration::from_secs(55),
        "the follower took {:?}: its timer, not the watcher, woke it",
        started.elapsed()
    );
    // The copy was brought up to date by updates after its first restore.
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(w.linux("copy.db-walship-follow.json")).unwrap())
            .unwrap();
    let updates = state["status"]["updates"].as_u64().unwrap_or(0);
    assert!(updates >= 2, "{state:#}");
    let pst = primary
        .wait_timeout(Duration::from_secs(60))
        .unwrap_or_else(|| panic!("the primary did not finish\n{}", primary.logs()));
    assert!(pst.success(), "{}", primary.logs());
    assert_eq!(rows(&w.linux("copy.db")), (300, 300));
}
