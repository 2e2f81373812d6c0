//! `addr:` metrics and status server, and `walship status`, against the real binary: a
//! `walship replicate` with `addr: 127.0.0.1:PORT` while rows are written; `/metrics`
//! carries Litestream's metric lines with sensible values, `/status` is JSON with the
//! replica's position, and `walship status` prints the table both from the running
//! process and, after it stopped, from disk.
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const WALSHIP: &str = env!("CARGO_BIN_EXE_walship");

/// Kills the replicator if a test fails before stopping it.
struct Proc(Option<Child>);

impl Proc {
    fn pid(&self) -> i32 {
        self.0.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    /// SIGTERM, then wait (bounded) for a clean exit.
    fn stop(&mut self) -> std::process::ExitStatus {
        let mut c = self.0.take().expect("running");
        // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
        unsafe {
            libc::kill(c.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = c.try_wait().expect("wait") {
                return st;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                panic!("walship did not exit within 30s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind :0");
    l.local_addr().expect("local addr").port()
}

/// A plain HTTP/1.1 GET; returns (status code, body).
fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("not HTTP: {text:?}")))?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status: {head:?}")))?;
    Ok((code, body.to_string()))
}

/// The value of the sample line `series` (name with its labels, exactly as printed).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Runs a walship command to completion within 60s.
fn walship(args: &[&str]) -> Output {
    let mut c = Command::new(WALSHIP)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn walship");
    let mut out = c.stdout.take().expect("stdout");
    let mut err = c.stderr.take().expect("stderr");
    let t_out = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = c.try_wait().expect("wait") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = c.kill();
            let _ = c.wait();
            panic!("walship {args:?} did not finish within 60s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: t_out.join().expect("stdout reader"),
        stderr: t_err.join().expect("stderr reader"),
    }
}

fn write_config(dir: &Path, port: u16) -> (PathBuf, PathBuf, PathBuf) {
    let db = dir.join("app.db");
    let replica = dir.join("replica");
    let cfg = dir.join("cfg.yml");
    std::fs::write(
        &cfg,
        format!(
            "addr: 127.0.0.1:{port}\ndbs:\n  - path: {}\n    replicas:\n      - name: backup\n        path: {}\n",
            db.display(),
            replica.display()
        ),
    )
    .expect("write config");
    (cfg, db, replica)
}

/// Starts `walship replicate -config cfg`, its log in `dir/replicate.log`.
fn replicate(dir: &Path, cfg: &Path) -> Proc {
    let log = std::fs::File::create(dir.join("replicate.log")).expect("log file");
    Proc(Some(
        Command::new(WALSHIP)
            .args(["replicate", "-config"])
            .arg(cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn walship replicate"),
    ))
}

/// Polls until `f` returns `Some`, at most `secs` seconds.
fn wait_for<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Splits a `walship status` table into rows of cells (cells hold no spaces except the
/// last column, which is re-joined).
fn table(stdout: &str) -> Vec<Vec<String>> {
    stdout
        .lines()
        .map(|l| {
            let mut cells: Vec<String> = l.split_whitespace().map(str::to_string).collect();
            if cells.len() > 7 {
                let last = cells.split_off(6).join(" ");
                cells.push(last);
            }
            cells
        })
        .collect()
}

const HEADER: [&str; 7] = [
    "db",
    "replica",
    "type",
    "position",
    "lag",
    "last-sync",
    "last-error",
];

#[test]
fn metrics_and_status_live_and_from_disk() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let (cfg, db, replica) = write_config(tmp.path(), port);
    let db_label = db.display().to_string();

    let conn = rusqlite::Connection::open(&db).expect("open db");
    conn.pragma_update(None, "journal_mode", "wal")
        .expect("wal mode");
    conn.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        .expect("create table");

    let mut proc = replicate(tmp.path(), &cfg);
    assert!(proc.pid() > 0);

    for i in 0..50 {
        conn.execute(
            "INSERT INTO t(v) VALUES (?1)",
            [format!("row {i} {}", "x".repeat(200))],
        )
        .expect("insert");
    }

    // /metrics: wait until the replica has shipped WAL.
    let offset_series =
        format!("litestream_replica_wal_offset{{db=\"{db_label}\",name=\"backup\"}}");
    let metrics = wait_for(30, "replica_wal_offset > 0 in /metrics", || {
        let (code, body) = http_get(port, "/metrics").ok()?;
        assert_eq!(code, 200, "{body}");
        (sample(&body, &offset_series)? > 0.0).then_some(body)
    });
    let log_text = || std::fs::read_to_string(tmp.path().join("replicate.log")).unwrap_or_default();
    assert!(
        metrics.contains("# TYPE litestream_sync_count counter"),
        "{metrics}"
    );
    assert!(metrics.contains("# TYPE litestream_db_size gauge"));
    assert!(metrics.contains("# TYPE litestream_replica_wal_offset gauge"));
    let db_series = |name: &str| format!("{name}{{db=\"{db_label}\"}}");
    let replica_series = |name: &str| format!("{name}{{db=\"{db_label}\",name=\"backup\"}}");
    let v = |series: &str| {
        sample(&metrics, series).unwrap_or_else(|| panic!("no {series} in\n{metrics}"))
    };
    assert!(v(&db_series("litestream_sync_count")) > 0.0);
    assert_eq!(v(&db_series("litestream_sync_error_count")), 0.0);
    assert!(v(&db_series("litestream_sync_seconds")) >= 0.0);
    assert!(v(&db_series("litestream_db_size")) >= 4096.0);
    assert!(v(&db_series("litestream_wal_size")) > 32.0);
    assert!(v(&db_series("litestream_total_wal_bytes")) > 32.0);
    assert_eq!(v(&db_series("litestream_shadow_wal_index")), 0.0);
    assert!(v(&db_series("litestream_shadow_wal_size")) > 32.0);
    assert!(v(&replica_series("litestream_replica_wal_bytes")) > 0.0);
    assert_eq!(v(&replica_series("litestream_replica_wal_index")), 0.0);
    assert!(v(&replica_series("litestream_replica_wal_offset")) > 32.0);
    assert!(v(&replica_series("walship_replica_lag_seconds")) >= 0.0);
    assert!(
        v(&format!(
            "litestream_replica_validation_total{{db=\"{db_label}\",name=\"backup\",status=\"ok\"}}"
        )) == 0.0
    );
    // The file backend records no object-store operations, as in Litestream.
    assert!(!metrics.contains("litestream_replica_operation_total{"));

    // /status: JSON with the replica's position, up to date once the writes are shipped.
    let status = wait_for(30, "replica caught up in /status", || {
        let (code, body) = http_get(port, "/status").ok()?;
        assert_eq!(code, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("status is JSON");
        let d = &v["dbs"][0];
        let r = &d["replicas"][0];
        (r["lag_bytes"].as_u64() == Some(0) && d["position"] == r["position"]).then_some(v)
    });
    let d = &status["dbs"][0];
    assert_eq!(d["path"].as_str(), Some(db_label.as_str()));
    let r = &d["replicas"][0];
    assert_eq!(r["name"], "backup");
    assert_eq!(r["type"], "file");
    assert!(r["position"]["offset"].as_u64().unwrap() > 32, "{status}");
    assert_eq!(r["position"]["generation"].as_str().unwrap().len(), 16);
    assert!(r["last_sync"].as_str().unwrap().ends_with('Z'), "{status}");
    assert!(r["last_error"].is_null());
    let live_pos = format!(
        "{}/{:08x}:{}",
        r["position"]["generation"].as_str().unwrap(),
        r["position"]["index"].as_u64().unwrap(),
        r["position"]["offset"].as_u64().unwrap()
    );

    // Anything else is 404.
    assert_eq!(http_get(port, "/").unwrap().0, 404);
    assert_eq!(http_get(port, "/nope").unwrap().0, 404);

    // walship status while running: the live state.
    let cfg_s = cfg.to_str().unwrap();
    let out = walship(&["status", "-config", cfg_s]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(!stderr.contains("on disk"), "{stderr}");
    let rows = table(&stdout);
    assert_eq!(rows[0], HEADER, "{stdout}");
    assert_eq!(rows.len(), 2, "{stdout}");
    assert_eq!(rows[1][0], db_label);
    assert_eq!(rows[1][1], "backup");
    assert_eq!(rows[1][2], "file");
    assert_eq!(rows[1][3], live_pos, "{stdout}");
    assert!(rows[1][4].starts_with("0B/"), "{stdout}");
    assert_eq!(rows[1][6], "-", "{stdout}");
    // The `replicas` alias answers the same.
    let alias = walship(&["replicas", "-config", cfg_s]);
    assert!(alias.status.success());
    assert_eq!(table(&String::from_utf8_lossy(&alias.stdout))[0], HEADER);

    let st = proc.stop();
    assert!(st.success(), "replicate exited with {st}\n{}", log_text());
    assert!(
        log_text().contains(&format!(
            "serving metrics on url=http://127.0.0.1:{port}/metrics"
        )),
        "{}",
        log_text()
    );
    // The server is gone with the process.
    assert!(http_get(port, "/metrics").is_err());

    // walship status after stop: from disk, the replica's position as the store has it.
    let out = walship(&["status", "-config", cfg_s]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("on disk"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    let rows = table(&stdout);
    assert_eq!(rows[0], HEADER, "{stdout}");
    assert_eq!(rows[1][0], db_label);
    assert_eq!(rows[1][1], "backup");
    assert_eq!(rows[1][2], "file");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let stored = rt.block_on(async {
        let client = walship::backend::file::FileClient::new(replica.clone());
        let g = walship::backend::generations(&client)
            .await
            .expect("generations");
        assert_eq!(g.len(), 1, "{g:?}");
        walship::backend::replica_position(&client, g[0])
            .await
            .expect("replica position")
            .expect("a snapshot exists")
    });
    assert_eq!(rows[1][3], stored.to_string(), "{stdout}");
    assert_eq!(rows[1][4], "0B", "{stdout}");
    assert!(rows[1][5].ends_with('Z'), "{stdout}");
    assert_eq!(
        rows[1][6], "unknown (live from a running walship only)",
        "{stdout}"
    );
}

#[test]
fn addr_without_port_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (cfg, db, _) = write_config(tmp.path(), free_port());
    rusqlite::Connection::open(&db)
        .and_then(|c| c.pragma_update(None, "journal_mode", "wal"))
        .expect("create db");
    let out = walship(&[
        "replicate",
        "-addr",
        "localhost",
        "-config",
        cfg.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("must specify port for bind address: \"localhost\""),
        "{stderr}"
    );
}

#[test]
fn status_reports_an_unreachable_replica_and_exits_zero() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let db = tmp.path().join("app.db");
    let cfg = tmp.path().join("cfg.yml");
    // No addr; an S3 replica at a closed port.
    let port = free_port();
    std::fs::write(
        &cfg,
        format!(
            "dbs:\n  - path: {}\n    replicas:\n      - name: remote\n        type: s3\n        bucket: b\n        path: p\n        endpoint: http://127.0.0.1:{port}\n        region: us-east-1\n        access-key-id: x\n        secret-access-key: y\n",
            db.display()
        ),
    )
    .expect("write config");
    // A generation on disk, so the replica is asked for its position.
    let g = "0123456789abcdef";
    let meta = tmp.path().join(".app.db-litestream");
    std::fs::create_dir_all(meta.join("generations").join(g).join("wal")).unwrap();
    std::fs::write(meta.join("generation"), format!("{g}\n")).unwrap();
    std::fs::write(
        meta.join("generations")
            .join(g)
            .join("wal")
            .join("00000000.wal"),
        vec![0u8; 32],
    )
    .unwrap();
    let out = walship(&["status", "-config", cfg.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let rows = table(&stdout);
    assert_eq!(rows[0], HEADER, "{stdout}");
    assert_eq!(rows[1][1], "remote");
    assert_eq!(rows[1][2], "s3");
    assert_eq!(rows[1][3], "-");
    assert!(rows[1][6].contains("s3"), "{stdout}");
}

/// A replica that fails every sync (its directory replaced by a file, as a revoked key or
/// a full bucket would) is loud: `/healthz` answers 503 and names it with its error once it
/// has not shipped for `stall-intervals` sync intervals, `/metrics` shows how long, `/status`
/// carries the error; and all of it clears once the replica ships again.
#[test]
fn a_replica_that_ships_nothing_fails_healthz_until_it_ships_again() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let db = tmp.path().join("app.db");
    let replica = tmp.path().join("replica");
    let cfg = tmp.path().join("cfg.yml");
    std::fs::write(
        &cfg,
        format!(
            "addr: 127.0.0.1:{port}\nstall-intervals: 5\ndbs:\n  - path: {}\n    monitor-interval: 100ms\n    \
             replicas:\n      - name: backup\n        path: {}\n        sync-interval: 100ms\n",
            db.display(),
            replica.display()
        ),
    )
    .expect("write config");
    let conn = rusqlite::Connection::open(&db).expect("open db");
    conn.execute_batch("PRAGMA journal_mode=wal; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        .expect("create table");
    let insert = |n: usize| {
        for _ in 0..n {
            conn.execute("INSERT INTO t(v) VALUES (randomblob(300))", [])
                .expect("insert");
        }
    };
    let mut proc = replicate(tmp.path(), &cfg);
    insert(20);
    // Healthy, and shipped: the replica has a position and holds everything.
    let healthy = || {
        let (code, body) = http_get(port, "/healthz").ok()?;
        let st: serde_json::Value =
            serde_json::from_str(&http_get(port, "/status").ok()?.1).ok()?;
        let r = &st["dbs"][0]["replicas"][0];
        (code == 200 && r["position"].is_object() && r["unshipped_seconds"].is_null())
            .then_some(body)
    };
    let body = wait_for(30, "a healthy, up-to-date replica", healthy);
    assert_eq!(body.trim(), r#"{"status":"ok"}"#);

    // Break the replica: every sync fails from here on.
    let moved = tmp.path().join("replica-moved");
    std::fs::rename(&replica, &moved).expect("move replica");
    std::fs::write(&replica, b"not a directory").expect("block replica");
    insert(20);
    let body = wait_for(30, "/healthz to report the stalled replica", || {
        let (code, body) = http_get(port, "/healthz").ok()?;
        (code == 503).then_some(body)
    });
    let v: serde_json::Value = serde_json::from_str(&body).expect("healthz JSON");
    assert_eq!(v["status"], "stalled", "{body}");
    let s = &v["stalled"][0];
    assert_eq!(s["replica"], "backup", "{body}");
    assert_eq!(s["db"], db.display().to_string(), "{body}");
    assert!(s["unshipped_seconds"].as_f64().unwrap() > 0.5, "{body}");
    assert!(
        s["last_error"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
    let (_, metrics) = http_get(port, "/metrics").expect("metrics");
    let series = format!(
        "walship_replica_unshipped_seconds{{db=\"{}\",name=\"backup\"}}",
        db.display()
    );
    let unshipped = sample(&metrics, &series).unwrap_or_else(|| panic!("no {series}"));
    assert!(unshipped > 0.5, "{series} = {unshipped}");
    let (_, status) = http_get(port, "/status").expect("status");
    let st: serde_json::Value = serde_json::from_str(&status).expect("status JSON");
    let r = &st["dbs"][0]["replicas"][0];
    assert!(r["last_error"].is_string(), "{status}");
    assert!(r["unshipped_seconds"].as_f64().unwrap() > 0.5, "{status}");

    // Mend it: the replica ships again and /healthz clears.
    std::fs::remove_file(&replica).expect("unblock replica");
    std::fs::rename(&moved, &replica).expect("move replica back");
    insert(1);
    wait_for(
        60,
        "/healthz to clear once the replica ships again",
        healthy,
    );
    let (_, metrics) = http_get(port, "/metrics").expect("metrics");
    assert_eq!(sample(&metrics, &series), Some(0.0), "{metrics}");
    assert!(proc.stop().success());
}
