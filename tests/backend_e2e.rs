//! Guards replication through the S3 and HTTP backends end to end, with real servers and the
//! real binaries:
//! 1. `walship replicate` to S3 (moto) and to WebDAV (rclone) under the common workload;
//!    `walship restore` from each gives exactly the source rows, and so does the real
//!    Litestream v0.3.13 from the S3 replica;
//! 2. the real Litestream replicates to S3; `walship restore -config` gives exactly its rows,
//!    and both list the same snapshots and WAL segments;
//! 3. a central server: walship replicates to a file replica that `python3 -m http.server`
//!    serves; restore and `generations|snapshots|wal` over plain HTTP match the file replica;
//!    the same with a real nginx `autoindex` (HTML and JSON listings) over a replica with
//!    several generations, snapshots and many WAL segments, restores compared byte for byte;
//! 4. S3 through a fault proxy that resets, then blackholes, then passes again: after
//!    recovery and a clean stop, restore gives exactly the source rows;
//! 5. S3 and WebDAV out of space (the proxy answers uploads with MinIO's `507 Insufficient
//!    Storage`, reads pass): nothing unconfirmed shows in the replica, the log says once
//!    what happened and what to do, and walship catches up when space is back;
//! 6. S3 stalled for 75 s, longer than every deadline and the backoff cap: walship keeps the
//!    shadow WAL, does not spin (CPU time measured), logs once, and catches up in bounded
//!    time on the same generation.
//!
//! 7. Azure Blob Storage (Azurite): walship replicates and both tools restore; Litestream
//!    replicates and walship restores; through resets and a stall, walship catches up with
//!    exactly the committed rows.
//! 8. SFTP (OpenSSH's sshd): the same three, and the server's host key is checked against
//!    `host-key:` or `~/.ssh/known_hosts`, refused when unknown or changed, skipped only on
//!    `insecure-skip-host-key-check: true`.
//!
//! Along the way it prints (`MEASURE:` lines) the number of requests walship sends to S3 per
//! 1,000 transactions at sync-interval 1s, and the restore throughput from each backend.
//! Tests fail under CI when a server or Litestream is missing; elsewhere they skip loudly.
mod common;
#[path = "common/servers.rs"]
mod servers;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use servers::{
    Autoindex, Azurite, FaultProxy, Mode, MotoServer, NginxStatic, Sshd, StaticHttp, WebDav,
    abs_replica_yaml, s3_replica_yaml,
};

/// Pause between workload steps.
const PAUSE: Duration = Duration::from_millis(10);
/// How long replication may take to catch up before a test fails.
const CATCH_UP: Duration = Duration::from_secs(30);

/// A `litestream.yml` for `db` with one replica given as its YAML list item.
fn config_with(dir: &Path, name: &str, db: &Path, replica_yaml: &str) -> PathBuf {
    let o = ConfigOpts::default();
    let mut y = String::new();
    writeln!(y, "dbs:").unwrap();
    writeln!(y, "  - path: \"{}\"", s(db)).unwrap();
    writeln!(y, "    monitor-interval: {}", o.monitor_interval).unwrap();
    if let Some(c) = o.checkpoint_interval {
        writeln!(y, "    checkpoint-interval: {c}").unwrap();
    }
    if let Some(n) = o.min_checkpoint_page_count {
        writeln!(y, "    min-checkpoint-page-count: {n}").unwrap();
    }
    writeln!(y, "    replicas:").unwrap();
    y.push_str(replica_yaml);
    let p = dir.join(name);
    fs::write(&p, y).expect("write config");
    p
}

/// Restores with `tool` (`extra` then `source`) twice, checks each result is exactly `want`,
/// and prints the better throughput as a `MEASURE:` line (the machine is shared, and the
/// slower run measures the neighbours).
#[track_caller]
fn timed_restore(tool: &Tool, what: &str, source: &str, extra: &[&str], dir: &Path, want: &Model) {
    let mut best = Duration::MAX;
    let mut bytes = 0;
    for _ in 0..2 {
        let start = Instant::now();
        let (out, r) = restore(tool, source, extra, dir);
        let took = start.elapsed();
        assert!(r.ok(), "{what}: restore failed: {}", r.describe());
        assert_db(&out, want, what);
        bytes = fs::metadata(&out).expect("restored db").len();
        best = best.min(took);
    }
    let mb = bytes as f64 / 1e6;
    eprintln!(
        "MEASURE: restore {what} with {}: {mb:.2} MB in {:.3} s = {:.1} MB/s (best of 2, whole \
         command incl. process start)",
        tool.name(),
        best.as_secs_f64(),
        mb / best.as_secs_f64()
    );
}

/// The common workload: overflow pages, updates, deletes, checkpoints.
fn churn(w: &mut Workload, steps: usize) {
    w.run(steps / 2, PAUSE);
    w.checkpoint("TRUNCATE");
    assert!(w.batch(3));
    w.run(steps - steps / 2, PAUSE);
}

/// Listing rows of `walship <cmd> <args>` without the first (replica name) column and the
/// time columns: `snapshots` → generation, index, size; `wal` → generation, index, offset,
/// size; `generations` → generation.
fn listing(tool: &Tool, cmd: &str, args: &[&str], dir: &Path) -> Vec<Vec<String>> {
    let mut a = vec![cmd];
    a.extend_from_slice(args);
    let out = tool.run(&a, dir);
    out.assert_ok();
    let keep = match cmd {
        "snapshots" => 1..4,
        "wal" => 1..5,
        "generations" => 1..2,
        other => panic!("no listing {other}"),
    };
    cells(&out.stdout)
        .into_iter()
        .skip(1)
        .map(|row| row[keep.clone()].to_vec())
        .collect()
}

/// Runs 1,000 one-row transactions (~4 s) while `proxy` (in pass mode, in front of the S3
/// server of a replicator at sync-interval 1s) counts requests; prints a `MEASURE:` line.
fn measure_requests(proxy: &FaultProxy, w: &mut Workload, who: &str) {
    // Let the replicator start up and write its first snapshot first.
    std::thread::sleep(Duration::from_millis(1500));
    let before = proxy.stats();
    let commits = w.commits;
    let start = Instant::now();
    for _ in 0..1000 {
        assert!(w.insert(1, false));
        std::thread::sleep(Duration::from_millis(3));
    }
    let took = start.elapsed();
    let after = proxy.stats();
    let txns = w.commits - commits;
    let reqs = after.requests - before.requests;
    let mut by_method = after.by_method.clone();
    for (m, n) in &before.by_method {
        *by_method.entry(m.clone()).or_default() -= n;
    }
    eprintln!(
        "MEASURE: {who}: {reqs} requests to S3 for {txns} transactions in {:.1} s at \
         sync-interval 1s: {:.0} per 1,000 transactions, {:.1} per second; by method \
         {by_method:?}; {} new connections, {:.0} KB sent",
        took.as_secs_f64(),
        reqs as f64 * 1000.0 / txns as f64,
        reqs as f64 / took.as_secs_f64(),
        after.connections - before.connections,
        (after.bytes_up - before.bytes_up) as f64 / 1e3,
    );
}

// ------------------------------------------------------------------------------------------
// 1. walship → S3 and WebDAV

#[test]
fn walship_to_s3_restores_with_walship_and_litestream() {
    let test = "walship_to_s3";
    let t = TestDir::new("e2e-s3");
    let Some(moto) = MotoServer::start(test, t.path()) else {
        return;
    };
    moto.create_bucket("e2e");
    let db = t.join("app.db");
    let cfg = config_with(
        t.path(),
        "s3.yml",
        &db,
        &s3_replica_yaml(moto.port(), "e2e", "app", "200ms"),
    );
    let mut w = Workload::open(&db, test_seed(test));
    assert!(w.insert(5, true));
    let mut p = Proc::replicate(t.path(), &Tool::Walship, &cfg);
    churn(&mut w, 200);
    let lag = wait_replicated_cfg(
        &Tool::Walship,
        &cfg,
        &db,
        t.path(),
        &w.model,
        &mut p,
        CATCH_UP,
    );
    eprintln!("walship → s3 caught up {lag:?} after the workload");
    // Shipped only by the final sync on SIGTERM.
    assert!(w.insert(2, true));
    p.stop();
    w.assert_model_matches_source();

    // Only layout keys under the prefix: no temporary objects, no directory markers.
    let keys = moto.list_keys("e2e", "app/");
    assert!(!keys.is_empty(), "nothing in the bucket");
    for (k, size) in &keys {
        // The replica lease, beside generations/.
        if k == "app/walship-lease.json" {
            continue;
        }
        let rel = k.strip_prefix("app/generations/").unwrap_or("");
        let parts: Vec<&str> = rel.split('/').collect();
        let ok = parts.len() == 3
            && walship::layout::parse_generation_name(parts[0]).is_some()
            && match parts[1] {
                "snapshots" => walship::layout::parse_snapshot_name(parts[2]).is_some(),
                "wal" => walship::layout::parse_wal_segment_name(parts[2]).is_some(),
                _ => false,
            };
        assert!(ok && *size > 0, "unexpected key {k:?} ({size} bytes)");
    }
    eprintln!("walship wrote {} layout keys to s3", keys.len());

    timed_restore(
        &Tool::Walship,
        "s3",
        s(&db),
        &["-config", s(&cfg)],
        t.path(),
        &w.model,
    );
    if let Some(ls) = litestream(test) {
        timed_restore(
            &Tool::Litestream(ls),
            "s3",
            s(&db),
            &["-config", s(&cfg)],
            t.path(),
            &w.model,
        );
    }
}

#[test]
fn walship_to_webdav_restores() {
    let test = "walship_to_webdav";
    let t = TestDir::new("e2e-dav");
    let Some(dav) = WebDav::start(test, t.path(), &t.join("dav")) else {
        return;
    };
    let db = t.join("app.db");
    let url = dav.url("replica");
    let cfg = config_with(
        t.path(),
        "dav.yml",
        &db,
        &format!("      - url: {url}\n        sync-interval: 200ms\n"),
    );
    let mut w = Workload::open(&db, test_seed(test));
    assert!(w.insert(5, true));
    let mut p = Proc::replicate(t.path(), &Tool::Walship, &cfg);
    churn(&mut w, 200);
    // The URL form restores while replication runs.
    wait_replicated(&Tool::Walship, &url, t.path(), &w.model, &mut p, CATCH_UP);
    assert!(w.insert(2, true));
    p.stop();
    w.assert_model_matches_source();

    // The served tree is the layout, under the URL's path.
    let gens = dir_entries(&t.join("dav/replica/generations"));
    assert!(!gens.is_empty(), "no generation on the WebDAV server");
    timed_restore(&Tool::Walship, "webdav", &url, &[], t.path(), &w.model);
    timed_restore(
        &Tool::Walship,
        "webdav (config)",
        s(&db),
        &["-config", s(&cfg)],
        t.path(),
        &w.model,
    );
    // What is on the server is also a valid file replica.
    let file = file_url(&t.join("dav/replica"));
    assert_restore(&Tool::Walship, &file, &[], t.path(), &w.model);
}

// ------------------------------------------------------------------------------------------
// 2. Litestream → S3, walship restores

#[test]
fn litestream_to_s3_walship_restores() {
    let test = "litestream_to_s3";
    let t = TestDir::new("e2e-ls-s3");
    let Some(ls) = litestream(test) else {
        return;
    };
    let Some(moto) = MotoServer::start(test, t.path()) else {
        return;
    };
    moto.create_bucket("lsbucket");
    let lst = Tool::Litestream(ls);
    let proxy = FaultProxy::start(moto.proc.addr());
    let db = t.join("app.db");
    let cfg = config_with(
        t.path(),
        "s3.yml",
        &db,
        &s3_replica_yaml(proxy.port(), "lsbucket", "db", "1s"),
    );
    let mut w = Workload::open(&db, test_seed(test));
    assert!(w.insert(5, true));
    let mut p = Proc::replicate(t.path(), &lst, &cfg);
    measure_requests(&proxy, &mut w, "litestream");
    churn(&mut w, 150);
    wait_replicated_cfg(&lst, &cfg, &db, t.path(), &w.model, &mut p, CATCH_UP);
    assert!(w.insert(2, true));
    p.stop();
    w.assert_model_matches_source();

    timed_restore(
        &Tool::Walship,
        "s3 (written by litestream)",
        s(&db),
        &["-config", s(&cfg)],
        t.path(),
        &w.model,
    );
    for cmd in ["snapshots", "wal"] {
        let args = ["-config", s(&cfg), s(&db)];
        let want = listing(&lst, cmd, &args, t.path());
        let got = listing(&Tool::Walship, cmd, &args, t.path());
        assert!(!want.is_empty(), "litestream {cmd} listed nothing");
        assert_eq!(got, want, "walship {cmd} vs litestream {cmd} on s3");
    }
}

// ------------------------------------------------------------------------------------------
// 3. Central server: a file replica served over plain HTTP

#[test]
fn file_replica_served_by_static_http() {
    let test = "static_http";
    let t = TestDir::new("e2e-static");
    let db = t.join("app.db");
    let replica = t.join("replica");
    fs::create_dir_all(&replica).expect("mkdir");
    let Some(srv) = StaticHttp::start(test, t.path(), &replica) else {
        return;
    };
    let url = srv.url("");
    let cfg = write_config(t.path(), "file.yml", &db, &replica, &ConfigOpts::default());
    let mut w = Workload::open(&db, test_seed(test));
    assert!(w.insert(5, true));
    let mut p = Proc::replicate(t.path(), &Tool::Walship, &cfg);
    churn(&mut w, 200);
    // Restores over HTTP while walship writes the directory underneath.
    wait_replicated(&Tool::Walship, &url, t.path(), &w.model, &mut p, CATCH_UP);
    assert!(w.insert(2, true));
    p.stop();
    w.assert_model_matches_source();

    timed_restore(&Tool::Walship, "static http", &url, &[], t.path(), &w.model);
    timed_restore(
        &Tool::Walship,
        "file",
        &file_url(&replica),
        &[],
        t.path(),
        &w.model,
    );
    for cmd in ["generations", "snapshots", "wal"] {
        let want = listing(&Tool::Walship, cmd, &[&file_url(&replica)], t.path());
        let got = listing(&Tool::Walship, cmd, &[&url], t.path());
        assert!(!want.is_empty(), "{cmd} of the file replica is empty");
        assert_eq!(got, want, "walship {cmd} over http vs file");
    }
    // Times: whole seconds in both; report any difference rather than fail on it.
    for cmd in ["snapshots", "wal"] {
        let a = walship(&[cmd, &file_url(&replica)], t.path());
        let b = walship(&[cmd, url.as_str()], t.path());
        let last = |o: &CmdOut| -> Vec<String> {
            cells(&o.stdout)
                .into_iter()
                .skip(1)
                .map(|r| r.last().cloned().unwrap_or_default())
                .collect()
        };
        let (ta, tb) = (last(&a), last(&b));
        let differ = ta.iter().zip(&tb).filter(|(x, y)| x != y).count();
        eprintln!(
            "{cmd}: created times differ between file and http listings in {differ} of {} rows",
            ta.len()
        );
    }
}

/// The guides' setup, with their configs as written (`config-examples/guide-*.yml`): the
/// central server replicates to two unnamed `type: file` replicas (a served directory and a
/// backup); `python3 -m http.server` serves the first; a laptop's config says `type: file`
/// with the server's `http://` url. The laptop restores to its database path and gets the
/// central rows; `walship replicate` with the laptop's config stops at once, saying that
/// the replica is read-only and what to run instead.
#[test]
fn guide_central_server_and_laptop_configs() {
    let test = "guide_configs";
    let t = TestDir::new("e2e-guide");
    let db = t.join("central/sqlite_vec.db");
    let served = t.join("srv/litestream/mcp-memory");
    let backup = t.join("backup/litestream/mcp-memory");
    fs::create_dir_all(db.parent().unwrap()).expect("mkdir");
    fs::create_dir_all(&served).expect("mkdir");
    let Some(srv) = StaticHttp::start(test, t.path(), &t.join("srv")) else {
        return;
    };
    let central = config_with(
        t.path(),
        "central.yml",
        &db,
        &format!(
            "      - type: file\n        path: \"{}\"\n      - type: file\n        path: \"{}\"\n",
            s(&served),
            s(&backup)
        ),
    );
    let mut w = Workload::open(&db, test_seed(test));
    assert!(w.insert(5, true));
    let mut p = Proc::replicate(t.path(), &Tool::Walship, &central);
    churn(&mut w, 50);
    let url = srv.url("litestream/mcp-memory");
    wait_replicated(&Tool::Walship, &url, t.path(), &w.model, &mut p, CATCH_UP);
    wait_replicated(
        &Tool::Walship,
        &file_url(&backup),
        t.path(),
        &w.model,
        &mut p,
        CATCH_UP,
    );
    p.stop();
    let log = p.logs();
    assert!(
        log.contains("both unnamed file replicas") && log.contains("\"file-2\""),
        "the central replicate log does not warn about the derived name: {log}"
    );

    let laptop_db = t.join("laptop/sqlite_vec.db");
    let laptop = t.join("laptop.yml");
    fs::write(
        &laptop,
        format!(
            "dbs:\n  - path: \"{}\"\n    replicas:\n      - type: file\n        url: {url}\n",
            s(&laptop_db)
        ),
    )
    .expect("write laptop.yml");
    let r = walship(&["restore", "-config", s(&laptop), s(&laptop_db)], t.path());
    r.assert_ok();
    assert!(
        r.stderr.contains("type: file does not match the url")
            && r.stderr.contains("the url decides"),
        "restore does not warn about the type/url mismatch: {}",
        r.describe()
    );
    assert_db(
        &laptop_db,
        &w.model,
        "laptop restore from the central server",
    );

    let files_before = files_under(&t.join("srv"));
    let r = walship(&["replicate", "-config", s(&laptop)], t.path());
    r.assert_fails_with(1, "is read-only");
    for want in ["walship restore -f", "static HTTP"] {
        assert!(
            r.stderr.contains(want),
            "{want:?} missing: {}",
            r.describe()
        );
    }
    assert_eq!(
        files_under(&t.join("srv")),
        files_before,
        "the served directory changed"
    );
}

/// A file replica with several generations, several snapshots in each and many WAL
/// segments: walship replicates in three runs (snapshot-interval 1s, sync-interval 200ms),
/// and a TRUNCATE checkpoint while it is down between runs (its clean-stop proof removed)
/// starts a new generation.
fn replica_with_history(t: &TestDir, test: &str, db: &Path, replica: &Path) -> Workload {
    let cfg = write_config(t.path(), "file.yml", db, replica, &ConfigOpts::default());
    let mut yaml = fs::read_to_string(&cfg).expect("read config");
    yaml.push_str("        snapshot-interval: 1s\n");
    fs::write(&cfg, yaml).expect("write config");
    let mut w = Workload::open(db, test_seed(test));
    assert!(w.insert(5, true));
    for run in 0..3 {
        if run > 0 {
            // As after a crash: a clean stop's proof would (rightly) let walship go on with
            // the generation (tests/clean_stop.rs); this history wants new ones.
            forget_clean_stop(db);
            let ck = w
                .checkpoint("TRUNCATE")
                .expect("checkpoint while walship is down");
            assert_eq!(ck.0, 0, "TRUNCATE checkpoint was busy");
        }
        let mut p = Proc::replicate(t.path(), &Tool::Walship, &cfg);
        churn(&mut w, 120);
        wait_replicated(
            &Tool::Walship,
            &file_url(replica),
            t.path(),
            &w.model,
            &mut p,
            CATCH_UP,
        );
        p.stop();
    }
    w.assert_model_matches_source();
    let gens = dir_entries(&replica.join("generations"));
    assert!(gens.len() >= 3, "expected 3 generations, got {gens:?}");
    w
}

/// A file replica with several generations, snapshots and many WAL segments, served by a
/// real nginx with `autoindex on;` (HTML) and with `autoindex_format json;`: `restore` over
/// http:// gives the same bytes as a restore from the file replica (latest, and each
/// generation on its own), and `generations`, `snapshots` and `wal` list the same rows.
#[test]
fn file_replica_served_by_nginx_autoindex() {
    let test = "nginx_autoindex";
    let t = TestDir::new("e2e-nginx");
    let replica = t.join("replica");
    let servers = [Autoindex::Html, Autoindex::Json].map(|ix| {
        let name = format!("nginx-{ix:?}").to_lowercase();
        NginxStatic::start(test, t.path(), &name, &replica, ix)
    });
    let [Some(html), Some(json)] = servers else {
        return;
    };
    let db = t.join("app.db");
    let w = replica_with_history(&t, test, &db, &replica);
    let file = file_url(&replica);
    let rows = |cmd: &str, src: &str, extra: &[&str]| {
        let mut a = extra.to_vec();
        a.push(src);
        listing(&Tool::Walship, cmd, &a, t.path())
    };
    let gens: Vec<String> = rows("generations", &file, &[])
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    let wal_rows = rows("wal", &file, &[]);
    let snap_rows = rows("snapshots", &file, &[]);
    eprintln!(
        "replica: {} generations, {} snapshots, {} wal segments",
        gens.len(),
        snap_rows.len(),
        wal_rows.len()
    );
    assert!(gens.len() >= 3, "generations: {gens:?}");
    assert!(
        snap_rows.len() > gens.len(),
        "one snapshot per generation only"
    );
    assert!(wal_rows.len() >= 30, "only {} wal segments", wal_rows.len());

    for (srv, what) in [(&html, "nginx html"), (&json, "nginx json")] {
        let url = srv.url("");
        // The listings.
        for cmd in ["generations", "snapshots", "wal"] {
            let want = rows(cmd, &file, &[]);
            assert_eq!(
                rows(cmd, &url, &[]),
                want,
                "{what}: {cmd} over http vs file"
            );
        }
        // The latest state, and each generation's own.
        let mut sources: Vec<Vec<&str>> = vec![vec![]];
        sources.extend(gens.iter().map(|g| vec!["-generation", g.as_str()]));
        for extra in sources {
            let (a, ra) = restore(&Tool::Walship, &file, &extra, t.path());
            assert!(ra.ok(), "file restore {extra:?}: {}", ra.describe());
            let (b, rb) = restore(&Tool::Walship, &url, &extra, t.path());
            assert!(rb.ok(), "{what} restore {extra:?}: {}", rb.describe());
            read_db(&b).unwrap_or_else(|e| panic!("{what} restore {extra:?}: {e}"));
            assert!(
                fs::read(&a).expect("read file restore") == fs::read(&b).expect("read restore"),
                "{what}: restore {extra:?} differs from the file replica's"
            );
        }
        timed_restore(&Tool::Walship, what, &url, &[], t.path(), &w.model);
    }
    // The JSON listing carries sizes and times: no HEAD per file, unlike the HTML one.
    let heads = |srv: &NginxStatic| {
        srv.access_log()
            .lines()
            .filter(|l| l.contains("\"HEAD "))
            .count()
    };
    let (h_html, h_json) = (heads(&html), heads(&json));
    eprintln!("HEAD requests: nginx html {h_html}, nginx json {h_json}");
    assert!(h_html > 0, "the HTML listing needs HEADs for sizes");
    assert_eq!(
        h_json, 0,
        "the JSON listing has sizes and times: no HEAD expected"
    );

    // nginx cuts HTML link texts longer than 50 characters ("..>"), not the hrefs: the
    // reader lists the whole name, with its size, in both formats.
    let long = format!(
        "{}-a-name-longer-than-nginx-shows.txt",
        "0123456789".repeat(4)
    );
    fs::write(replica.join(&long), b"12345").expect("write long-named file");
    let page = servers::http_request(html.proc.port, "GET", "/", &[], b"", CATCH_UP)
        .expect("GET / from nginx")
        .text();
    assert!(
        page.contains("..&gt;</a>") && !page.contains(&format!(">{long}<")),
        "nginx did not cut the long link text:\n{page}"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    for (srv, what) in [(&html, "nginx html"), (&json, "nginx json")] {
        let client =
            walship::backend::open(&servers::http_target(&srv.url("")), None).expect("http client");
        let listed = rt.block_on(client.list("")).expect("list the root");
        // The replica lease and its lock file sit at the root too (their sizes vary).
        let names: Vec<(&str, u64, bool)> = listed
            .iter()
            .map(|e| (e.name.as_str(), e.size, e.is_dir))
            .filter(|e| !e.0.starts_with("walship-lease.json"))
            .collect();
        assert_eq!(
            names,
            [(long.as_str(), 5, false), ("generations", 0, true)],
            "{what}: root listing"
        );
        let lease: Vec<&str> = listed
            .iter()
            .map(|e| e.name.as_str())
            .filter(|n| n.starts_with("walship-lease.json"))
            .collect();
        assert_eq!(
            lease,
            ["walship-lease.json", "walship-lease.json.lock"],
            "{what}: root listing"
        );
    }
}

// ------------------------------------------------------------------------------------------
// 4. S3 through faults

#[test]
fn s3_through_resets_and_blackhole_recovers() {
    let test = "s3_faults";
    let t = TestDir::new("e2e-fault");
    let Some(moto) = MotoServer::start(test, t.path()) else {
        return;
    };
    moto.create_bucket("fault");
    let proxy = FaultProxy::start(moto.proc.addr());
    let db = t.join("app.db");
    let cfg = config_with(
        t.path(),
        "s3.yml",
        &db,
        &s3_replica_yaml(proxy.port(), "fault", "app", "1s"),
    );
    let mut w = Workload::open(&db, test_seed(test));
    assert!(w.insert(5, true));
    let mut p = Proc::replicate(t.path(), &Tool::Walship, &cfg);

    measure_requests(&proxy, &mut w, "walship");

    // Faults while the application keeps writing.
    proxy.resets_then_blackhole(&mut w, PAUSE);
    let faults_ended = Instant::now();
    let caught_up = try_wait_replicated_cfg(
        &Tool::Walship,
        &cfg,
        &db,
        t.path(),
        &w.model,
        &mut p,
        Duration::from_secs(20),
    );
    if let Err(e) = caught_up {
        // Diagnose before failing: is a request still hanging on a dead connection, and
        // does the process still stop on SIGTERM?
        let st = proxy.stats();
        p.signal(libc::SIGTERM);
        let stop_start = Instant::now();
        while p.is_running() && stop_start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let stopped = if p.is_running() {
            "still running 5 s after SIGTERM".to_string()
        } else {
            format!("exited {:?} after SIGTERM", stop_start.elapsed())
        };
        p.kill9();
        panic!(
            "walship did not catch up within {:?} after the faults ended ({e}); proxy: \
             {st:?} ({} blackholed connection(s) still held open by the client); walship {stopped}\n{}",
            faults_ended.elapsed(),
            st.blackholed_open,
            p.logs()
        );
    }
    let lag = faults_ended.elapsed();
    eprintln!("walship caught up {lag:?} after the faults ended");
    assert!(w.insert(2, true));
    p.stop();
    w.assert_model_matches_source();
    assert_restore(
        &Tool::Walship,
        s(&db),
        &["-config", s(&cfg)],
        t.path(),
        &w.model,
    );
    let logs = p.logs();
    let count = |lvl: &str| logs.lines().filter(|l| l.contains(lvl)).count();
    eprintln!(
        "walship logged {} ERROR and {} WARN lines over the run",
        count("ERROR"),
        count("WARN")
    );
}

/// Azure Blob Storage (Azurite), both ways with the real Litestream v0.3.13, whose ABS client
/// takes the same `endpoint:`.
#[test]
fn azure_blob_both_ways_with_litestream() {
    let test = "azure_both_ways";
    let t = TestDir::new("e2e-abs");
    let Some(az) = Azurite::start(test, t.path()) else {
        return;
    };
    az.create_container("e2e");
    let ls = litestream(test);
    let mut tools = vec![Tool::Walship];
    tools.extend(ls.clone().map(Tool::Litestream));
    for (i, writer) in tools.iter().enumerate() {
        let db = t.join(format!("app{i}.db"));
        let cfg = config_with(
            t.path(),
            &format!("abs{i}.yml"),
            &db,
            &abs_replica_yaml(&az.endpoint(), "e2e", &format!("app{i}"), "200ms"),
        );
        let mut w = Workload::open(&db, test_seed(test) + i as u64);
        assert!(w.insert(5, true));
        let mut p = Proc::replicate(t.path(), writer, &cfg);
        churn(&mut w, 100);
        wait_replicated_cfg(writer, &cfg, &db, t.path(), &w.model, &mut p, CATCH_UP);
        assert!(w.insert(2, true));
        p.stop();
        w.assert_model_matches_source();
        for reader in &tools {
            timed_restore(
                reader,
                &format!("abs written by {}", writer.name()),
                s(&db),
                &["-config", s(&cfg)],
                t.path(),
                &w.model,
            );
        }
    }
}

/// Azurite behind the fault proxy: resets, then a black hole (a stall), while the
/// application writes. walship stays up and catches up with exactly the committed rows.
#[test]
fn azure_through_resets_and_blackhole_recovers() {
    let test = "azure_faults";
    let t = TestDir::new("e2e-abs-fault");
    let Some(az) = Azurite::start(test, t.path()) else {
        return;
    };
    az.create_container("fault");
    let proxy = FaultProxy::start(az.proc.addr());
    let db = t.join("app.db");
    let endpoint = format!(
        "http://127.0.0.1:{}/{}",
        proxy.port(),
        servers::AZURITE_ACCOUNT
    );
    let cfg = config_with(
        t.path(),
        "abs.yml",
        &db,
        &abs_replica_yaml(&endpoint, "fault", "app", "500ms"),
    );
    let mut w = Workload::open(&db, test_seed(test));
    assert!(w.insert(5, true));
    let mut p = Proc::replicate(t.path(), &Tool::Walship, &cfg);
    proxy.resets_then_blackhole(&mut w, PAUSE);
    wait_replicated_cfg(
        &Tool::Walship,
        &cfg,
        &db,
        t.path(),
        &w.model,
        &mut p,
        CATCH_UP,
    );
    assert!(w.insert(2, true));
    p.stop();
    w.assert_model_matches_source();
    assert_restore(
        &Tool::Walship,
        s(&db),
        &["-config", s(&cfg)],
        t.path(),
        &w.model,
    );
}

/// SFTP (sshd), both ways with the real Litestream v0.3.13 (whose SFTP client takes the
/// same `host`, `user`, `key-path`, `path` and ignores `host-key`), then through resets
/// and a stall.
#[test]
fn sftp_both_ways_with_litestream_and_through_faults() {
    let test = "sftp_both_ways";
    let t = TestDir::new("e2e-sftp");
    let Some(sshd) = Sshd::start(test, t.path()) else {
        return;
    };
    let ls = litestream(test);
    let mut tools = vec![Tool::Walship];
    tools.extend(ls.clone().map(Tool::Litestream));
    for (i, writer) in tools.iter().enumerate() {
        let db = t.join(format!("app{i}.db"));
        let remote = t.join(format!("remote/app{i}"));
        let cfg = config_with(
            t.path(),
            &format!("sftp{i}.yml"),
            &db,
            &sshd.replica_yaml(sshd.proc.port, &remote, "200ms"),
        );
        let mut w = Workload::open(&db, test_seed(test) + i as u64);
        assert!(w.insert(5, true));
        let mut p = Proc::replicate(t.path(), writer, &cfg);
        churn(&mut w, 100);
        wait_replicated_cfg(writer, &cfg, &db, t.path(), &w.model, &mut p, CATCH_UP);
        assert!(w.insert(2, true));
        p.stop();
        w.assert_model_matches_source();
        for reader in &tools {
            timed_restore(
                reader,
                &format!("sftp written by {}", writer.name()),
                s(&db),
                &["-config", s(&cfg)],
                t.path(),
                &w.model,
            );
        }
    }

    // Through the fault proxy: resets, then a black hole, while the application writes.
    let proxy = FaultProxy::start(sshd.proc.addr());
    let db = t.join("fault.db");
    let cfg = config_with(
        t.path(),
        "sftp-fault.yml",
        &db,
        &sshd.replica_yaml(proxy.port(), &t.join("remote/fault"), "500ms"),
    );
    let mut w = Workload::open(&db, test_seed(test) + 7);
    assert!(w.insert(5, true));
    let mut p = Proc::replicate(t.path(), &Tool::Walship, &cfg);
    proxy.resets_then_blackhole(&mut w, PAUSE);
    wait_replicated_cfg(
        &Tool::Walship,
        &cfg,
        &db,
        t.path(),
        &w.model,
        &mut p,
        Duration::from_secs(90),
    );
    assert!(w.insert(2, true));
    p.stop();
    w.assert_model_matches_source();
    assert_restore(
        &Tool::Walship,
        s(&db),
        &["-config", s(&cfg)],
        t.path(),
        &w.model,
    );
}

/// The server's host key: `host-key:` must match; without it `~/.ssh/known_hosts` must list
/// the server with that key; an unknown or changed key is refused before login, and the
/// restore fails leaving nothing at `-o`; `insecure-skip-host-key-check: true` skips the
/// check and says so.
#[test]
fn sftp_host_keys_are_checked() {
    let test = "sftp_host_keys";
    let t = TestDir::new("e2e-sftp-keys");
    let Some(sshd) = Sshd::start(test, t.path()) else {
        return;
    };
    let db = t.join("app.db");
    let mut w = Workload::open(&db, test_seed(test));
    assert!(w.insert(5, true));
    let remote = t.join("remote");
    let home = t.join("home");
    fs::create_dir_all(home.join(".ssh")).unwrap();
    let with_key = sshd.replica_yaml(sshd.proc.port, &remote, "200ms");
    let without_key: String = with_key
        .lines()
        .filter(|l| !l.contains("host-key:"))
        .map(|l| format!("{l}\n"))
        .collect();
    let other_key =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMGqNFgw6gm7Hg0Rk+aQS0Z3KN1N2mDf5oMnA3yCC2W8";
    // A replica to restore from, written with the right host-key.
    let cfg = config_with(t.path(), "write.yml", &db, &with_key);
    let mut p = Proc::replicate(t.path(), &Tool::Walship, &cfg);
    wait_replicated_cfg(
        &Tool::Walship,
        &cfg,
        &db,
        t.path(),
        &w.model,
        &mut p,
        CATCH_UP,
    );
    p.stop();
    let run = |name: &str, yaml: &str| {
        let cfg = config_with(t.path(), name, &db, yaml);
        let out_db = t.join(format!("{name}.db"));
        let out = std::process::Command::new(Tool::Walship.bin())
            .args(["restore", "-config", s(&cfg), "-o", s(&out_db), s(&db)])
            .env("HOME", &home)
            .output()
            .unwrap();
        if out.status.success() {
            assert_db(&out_db, &w.model, name);
        } else {
            assert!(
                !out_db.exists(),
                "{name}: a refused restore left {}",
                out_db.display()
            );
        }
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (ok, out) = run("fixed.yml", &with_key);
    assert!(ok, "the right host-key was refused: {out}");
    let (ok, out) = run("wrong.yml", &with_key.replace(&sshd.host_key, other_key));
    assert!(
        !ok && out.contains("is not the replica's host-key"),
        "{out}"
    );
    let (ok, out) = run("unknown.yml", &without_key);
    assert!(
        !ok && out.contains("not in ~/.ssh/known_hosts") && out.contains("ssh-keyscan"),
        "{out}"
    );
    let known = home.join(".ssh/known_hosts");
    fs::write(
        &known,
        format!("[127.0.0.1]:{} {other_key}\n", sshd.proc.port),
    )
    .unwrap();
    let (ok, out) = run("changed.yml", &without_key);
    assert!(
        !ok && out.contains("differs from line 1 of ~/.ssh/known_hosts"),
        "{out}"
    );
    fs::write(
        &known,
        format!("[127.0.0.1]:{} {}\n", sshd.proc.port, sshd.host_key),
    )
    .unwrap();
    let (ok, out) = run("known.yml", &without_key);
    assert!(ok, "a known host was refused: {out}");
    fs::remove_file(&known).unwrap();
    let skip = format!("{without_key}        insecure-skip-host-key-check: true\n");
    let (ok, out) = run("skip.yml", &skip);
    assert!(ok && out.contains("host key is not checked"), "{out}");
}

/// WebDAV (rclone) behind the fault proxy: 500s, then resets, then a black hole, while the
/// application writes. walship stays up, logs the failures, and catches up with exactly
/// the committed rows once the store answers again; the replica never breaks in between.
#[test]
fn webdav_through_500s_resets_and_blackhole_recovers() {
    let test = "webdav_faults";
    let t = TestDir::new("e2e-dav-fault");
    let Some(dav) = WebDav::start(test, t.path(), &t.join("dav")) else {
        return;
    };
    let proxy = FaultProxy::start(dav.proc.addr());
    let url = format!("http://127.0.0.1:{}/replica", proxy.port());
    let db = t.join("app.db");
    let cfg = config_with(
        t.path(),
        "dav.yml",
        &db,
        &format!("      - url: {url}\n        sync-interval: 200ms\n"),
    );
    let mut w = Workload::open(&db, test_seed(test));
    assert!(w.insert(5, true));
    let mut p = Proc::replicate(t.path(), &Tool::Walship, &cfg);
    let direct = dav.url("replica");
    wait_replicated(
        &Tool::Walship,
        &direct,
        t.path(),
        &w.model,
        &mut p,
        CATCH_UP,
    );

    for mode in [Mode::Http500, Mode::Reset, Mode::Blackhole] {
        proxy.set_mode(mode);
        w.run_for(Duration::from_secs(2), PAUSE);
        p.assert_running();
        // The replica as the fault leaves it still restores (read past the proxy).
        let (_, r) = restore(&Tool::Walship, &direct, &[], t.path());
        assert!(r.ok(), "restore during {mode:?}: {}", r.describe());
    }
    proxy.set_mode(Mode::Pass);
    let st = proxy.stats();
    assert!(
        st.errors_500 > 0 && st.resets > 0 && st.blackholed > 0,
        "walship sent nothing during some fault: {st:?}"
    );
    let faults_ended = Instant::now();
    assert!(w.insert(2, true));
    wait_replicated(
        &Tool::Walship,
        &direct,
        t.path(),
        &w.model,
        &mut p,
        CATCH_UP,
    );
    eprintln!(
        "MEASURE: webdav caught up {:?} after 2 s each of 500s, resets and a black hole",
        faults_ended.elapsed()
    );
    p.stop();
    let logs = p.logs();
    assert!(
        logs.contains("500"),
        "the 500 answers should be in the log:\n{logs}"
    );
    w.assert_model_matches_source();
    assert_restore(&Tool::Walship, &url, &[], t.path(), &w.model);
}

// ------------------------------------------------------------------------------------------
// 5. A store that is out of space

/// What a store holds, read past the proxy (so it sees only what the store confirmed).
type Holdings<'a> = Box<dyn Fn() -> Vec<String> + 'a>;

/// `walship replicate` through `proxy` (config `cfg`) while the application writes; the
/// proxy answers every upload with MinIO's `507 Insufficient Storage` for `full_for`:
/// - nothing new appears in the store (`holdings`) while uploads are refused, and the
///   replica's `wal` listing (reads pass the proxy) stays what the store confirmed;
/// - the log says once, not per retry, that the store is out of space and what to do;
/// - once uploads are accepted again walship catches up, and a restore gives exactly the
///   source rows.
fn out_of_space_recovers(
    t: &TestDir,
    test: &str,
    proxy: &FaultProxy,
    cfg: &Path,
    db: &Path,
    holdings: Holdings<'_>,
    full_for: Duration,
) {
    let mut w = Workload::open(db, test_seed(test));
    assert!(w.insert(5, true));
    let mut p = Proc::replicate(t.path(), &Tool::Walship, cfg);
    let cfg_args = ["-config", s(cfg), s(db)];
    wait_replicated_cfg(
        &Tool::Walship,
        cfg,
        db,
        t.path(),
        &w.model,
        &mut p,
        CATCH_UP,
    );
    w.run_for(Duration::from_secs(1), PAUSE);

    proxy.set_mode(Mode::StorageFull);
    let full_since = Instant::now();
    // From the first refused upload on, nothing can reach the store.
    wait_until("walship to try an upload", CATCH_UP, || {
        w.step();
        std::thread::sleep(PAUSE);
        match proxy.stats().refused_uploads {
            0 => Err("no upload refused yet".to_string()),
            _ => Ok(()),
        }
    });
    let held = holdings();
    let wal = listing(&Tool::Walship, "wal", &cfg_args, t.path());
    assert!(
        !held.is_empty() && !wal.is_empty(),
        "nothing replicated before the fault"
    );
    let mut rounds = 0;
    while full_since.elapsed() < full_for {
        w.run_for(Duration::from_millis(700), PAUSE);
        p.assert_running();
        assert_eq!(
            holdings(),
            held,
            "the store changed while it refused every upload"
        );
        assert_eq!(
            listing(&Tool::Walship, "wal", &cfg_args, t.path()),
            wal,
            "the replica's wal listing changed while the store refused every upload"
        );
        rounds += 1;
    }
    // The replica as the fault left it restores (reads pass).
    let (_, r) = restore(&Tool::Walship, s(db), &["-config", s(cfg)], t.path());
    assert!(r.ok(), "restore while the store is full: {}", r.describe());
    proxy.set_mode(Mode::Pass);
    let st = proxy.stats();
    assert!(
        st.refused_uploads >= 3,
        "walship did not retry the refused upload: {st:?}"
    );
    let cleared = Instant::now();
    assert!(w.insert(2, true));
    let lag = wait_replicated_cfg(
        &Tool::Walship,
        cfg,
        db,
        t.path(),
        &w.model,
        &mut p,
        CATCH_UP,
    );
    eprintln!(
        "MEASURE: {test}: {} uploads refused with 507 over {:.1} s ({rounds} checks of the \
         store); caught up {:.2} s after the store had space again",
        st.refused_uploads,
        full_for.as_secs_f64(),
        lag.as_secs_f64(),
    );
    assert!(cleared.elapsed() >= lag);
    p.stop();
    w.assert_model_matches_source();
    assert_restore(
        &Tool::Walship,
        s(db),
        &["-config", s(cfg)],
        t.path(),
        &w.model,
    );

    let logs = p.logs();
    let full: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("out of space"))
        .collect();
    assert_eq!(
        full.len(),
        1,
        "the out-of-space error should be logged once, not per retry ({} refused \
         uploads):\n{}",
        st.refused_uploads,
        full.join("\n")
    );
    for needle in [
        "ERROR",
        "507 Insufficient Storage",
        "refused the upload",
        "free space",
    ] {
        assert!(full[0].contains(needle), "no {needle:?} in: {}", full[0]);
    }
    assert!(
        logs.contains("replica sync recovered"),
        "no recovery in the log:\n{logs}"
    );
    // object_store's own per-retry lines stay out of the default log.
    let retries = logs
        .lines()
        .filter(|l| l.contains("Encountered server error"))
        .count();
    assert_eq!(retries, 0, "object_store retry lines in the log:\n{logs}");
    eprintln!("the log line: {}", full[0]);
}

#[test]
fn s3_out_of_space_refuses_uploads_then_catches_up() {
    let test = "s3_out_of_space";
    let t = TestDir::new("e2e-s3-full");
    let Some(moto) = MotoServer::start(test, t.path()) else {
        return;
    };
    moto.create_bucket("full");
    let proxy = FaultProxy::start(moto.proc.addr());
    let db = t.join("app.db");
    let cfg = config_with(
        t.path(),
        "s3.yml",
        &db,
        &s3_replica_yaml(proxy.port(), "full", "app", "200ms"),
    );
    let holdings: Holdings<'_> = Box::new(|| {
        moto.list_keys("full", "app/")
            .into_iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect()
    });
    out_of_space_recovers(
        &t,
        test,
        &proxy,
        &cfg,
        &db,
        holdings,
        Duration::from_secs(6),
    );
    let logs = fs::read_to_string(t.join("moto.log")).unwrap_or_default();
    assert!(logs.contains("PUT"), "moto saw no upload at all");
}

/// The same with WebDAV (rclone), where `507 Insufficient Storage` is the standard answer
/// (RFC 4918 §11.5).
#[test]
fn webdav_out_of_space_refuses_uploads_then_catches_up() {
    let test = "webdav_out_of_space";
    let t = TestDir::new("e2e-dav-full");
    let Some(dav) = WebDav::start(test, t.path(), &t.join("dav")) else {
        return;
    };
    let proxy = FaultProxy::start(dav.proc.addr());
    let db = t.join("app.db");
    let url = format!("http://127.0.0.1:{}/replica", proxy.port());
    let cfg = config_with(
        t.path(),
        "dav.yml",
        &db,
        &format!("      - url: {url}\n        sync-interval: 200ms\n"),
    );
    let root = t.join("dav/replica");
    let holdings: Holdings<'_> = Box::new(move || files_under(&root));
    out_of_space_recovers(
        &t,
        test,
        &proxy,
        &cfg,
        &db,
        holdings,
        Duration::from_secs(5),
    );
}

/// Every file below `dir` as `relative/path size`, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            match e.metadata() {
                Ok(m) if m.is_dir() => todo.push(p),
                Ok(m) => {
                    let rel = p.strip_prefix(dir).unwrap_or(&p).display().to_string();
                    out.push(format!("{rel} {}", m.len()));
                }
                Err(_) => {}
            }
        }
    }
    out.sort();
    out
}

// ------------------------------------------------------------------------------------------
// 6. A stall of minutes

/// CPU time (user + system, all threads) of process `pid` so far.
fn cpu_time(pid: i32) -> Duration {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    // The fields after the command name (which may hold spaces) in parentheses: state is
    // field 3, utime field 14, stime field 15.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // SAFETY: sysconf(3) has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Duration::from_secs_f64((f[11] + f[12]) as f64 / hz)
}

/// The shadow WAL files of `db` (`<generation>/<index>.wal`) with their sizes.
fn shadow_wal(db: &Path) -> BTreeMap<String, u64> {
    let name = db.file_name().expect("db name").to_string_lossy();
    let gens = db.with_file_name(format!(".{name}-litestream/generations"));
    let mut out = BTreeMap::new();
    for g in dir_entries(&gens) {
        for f in dir_entries(&gens.join(&g).join("wal")) {
            let size = fs::metadata(gens.join(&g).join("wal").join(&f)).map_or(0, |m| m.len());
            out.insert(format!("{g}/{f}"), size);
        }
    }
    out
}

/// The store stops answering for 75 s (accepts connections, never replies), longer than
/// every per-operation deadline (10 s + 1 s/MiB) and than the 30 s backoff cap, while the
/// application commits. walship stays up without spinning (CPU time over the stall under
/// 5% of one core, a bounded number of connection attempts), keeps every shadow WAL file
/// the replica still needs, logs the failure once rather than per retry, and after the
/// stall catches up within 70 s (backoff cap with jitter, one deadline, the upload) on the same
/// generation; a restore then gives exactly the source rows.
#[test]
fn s3_stall_of_minutes_keeps_shadow_wal_and_catches_up() {
    let test = "s3_long_stall";
    const STALL: Duration = Duration::from_secs(75);
    let t = TestDir::new("e2e-stall");
    let Some(moto) = MotoServer::start(test, t.path()) else {
        return;
    };
    moto.create_bucket("stall");
    let proxy = FaultProxy::start(moto.proc.addr());
    let db = t.join("app.db");
    let cfg = config_with(
        t.path(),
        "s3.yml",
        &db,
        &s3_replica_yaml(proxy.port(), "stall", "app", "1s"),
    );
    let cfg_args = ["-config", s(&cfg), s(&db)];
    let mut w = Workload::open(&db, test_seed(test));
    assert!(w.insert(5, true));
    let mut p = Proc::replicate(t.path(), &Tool::Walship, &cfg);
    churn(&mut w, 60);
    wait_replicated_cfg(
        &Tool::Walship,
        &cfg,
        &db,
        t.path(),
        &w.model,
        &mut p,
        CATCH_UP,
    );
    let gens = listing(&Tool::Walship, "generations", &cfg_args, t.path());
    let errors_before = p.logs().lines().filter(|l| l.contains("ERROR")).count();

    proxy.set_mode(Mode::Blackhole);
    let start = Instant::now();
    let (cpu0, conns0) = (cpu_time(p.pid()), proxy.stats().connections);
    // The WAL index the replica has reached, as the store holds it (read past the proxy;
    // nothing reaches the store from now on): its shadow WAL file and every later one must
    // stay until they are uploaded.
    let replica_index = moto
        .list_keys("stall", "app/generations/")
        .iter()
        .filter_map(|(k, _)| k.rsplit('/').next())
        .filter_map(walship::layout::parse_wal_segment_name)
        .map(|(index, _)| index)
        .max()
        .expect("no wal segment in the store before the stall");
    let needed = |shadow: &BTreeMap<String, u64>| -> BTreeMap<u32, u64> {
        shadow
            .iter()
            .filter_map(|(f, n)| {
                let name = f.rsplit('/').next()?.strip_suffix(".wal")?;
                let index = u32::from_str_radix(name, 16).ok()?;
                (index >= replica_index).then_some((index, *n))
            })
            .collect()
    };
    let shadow0 = needed(&shadow_wal(&db));
    // The replica's index itself, or the next one when it has uploaded all of it.
    let first = shadow0.keys().next().copied();
    assert!(
        first == Some(replica_index) || first == Some(replica_index + 1),
        "no shadow wal for the replica's index {replica_index:08x} before the stall: {:?}",
        shadow_wal(&db)
    );
    let first = first.expect("checked above");
    let mut commits = 0;
    while start.elapsed() < STALL {
        w.step();
        commits += 1;
        std::thread::sleep(Duration::from_millis(200));
        if commits % 25 == 0 {
            p.assert_running();
        }
    }
    p.assert_running();
    let (cpu, wall) = (cpu_time(p.pid()) - cpu0, start.elapsed());
    let st = proxy.stats();
    let shadow1 = needed(&shadow_wal(&db));
    proxy.set_mode(Mode::Pass);
    let stall_ended = Instant::now();
    assert!(w.insert(2, true));

    let cpu_share = cpu.as_secs_f64() / wall.as_secs_f64();
    let conns = st.connections - conns0;
    eprintln!(
        "MEASURE: over a {:.1} s stall with {commits} commits, walship used {:.3} s of CPU \
         ({:.2}% of one core) and opened {conns} connections ({} blackholed)",
        wall.as_secs_f64(),
        cpu.as_secs_f64(),
        cpu_share * 100.0,
        st.blackholed
    );
    assert!(
        st.blackholed > 0,
        "walship sent nothing during the stall: {st:?}"
    );
    assert!(
        cpu_share < 0.05,
        "walship used {:.1}% of a core while the store was stalled",
        cpu_share * 100.0
    );
    assert!(
        conns < 100,
        "{conns} connections in {wall:?}: retries are not backing off"
    );
    // Nothing the replica still needs went away, and the new commits were kept: every
    // index from the replica's on, without a gap, none shorter than before.
    for (index, size) in &shadow0 {
        let now = shadow1.get(index).copied();
        assert!(
            now.is_some_and(|n| n >= *size),
            "shadow wal index {index:08x} ({size} bytes) is {now:?} after the stall; before: \
             {shadow0:?}, after: {shadow1:?}"
        );
    }
    let indexes: Vec<u32> = shadow1.keys().copied().collect();
    let want: Vec<u32> = (first..=*indexes.last().expect("shadow wal")).collect();
    assert_eq!(indexes, want, "the shadow wal the replica needs has a gap");
    let grew = shadow1.values().sum::<u64>() > shadow0.values().sum::<u64>();
    assert!(grew, "the shadow wal did not grow over {commits} commits");
    eprintln!(
        "shadow wal kept over the stall: indexes {first:08x}..={:08x}, {} bytes",
        indexes.last().expect("shadow wal"),
        shadow1.values().sum::<u64>()
    );

    try_wait_replicated_cfg(
        &Tool::Walship,
        &cfg,
        &db,
        t.path(),
        &w.model,
        &mut p,
        Duration::from_secs(120),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", p.logs()));
    let caught_up = stall_ended.elapsed();
    eprintln!(
        "MEASURE: walship caught up {:.1} s after a {:.0} s stall ended (restore polled every \
         100 ms)",
        caught_up.as_secs_f64(),
        STALL.as_secs_f64()
    );
    // The longest wait: a backoff at its cap (30 s + 25% jitter) begun just before the
    // end, then the requests of one sync under their deadline (10 s), then uploading what
    // the stall held back (~8 MB here) and a restore to see it: 70 s.
    assert!(
        caught_up < Duration::from_secs(70),
        "caught up only {caught_up:?} after the stall ended"
    );
    assert_eq!(
        listing(&Tool::Walship, "generations", &cfg_args, t.path()),
        gens,
        "a new generation after a stall: continuity was lost"
    );
    p.stop();
    w.assert_model_matches_source();
    assert_restore(
        &Tool::Walship,
        s(&db),
        &["-config", s(&cfg)],
        t.path(),
        &w.model,
    );

    let logs = p.logs();
    let errors: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("ERROR"))
        .skip(errors_before)
        .collect();
    eprintln!("ERROR lines from the stall on:\n{}", errors.join("\n"));
    assert!(
        !errors.is_empty() && errors.len() <= 2,
        "the stall should be logged once (at most once per kind of failed request), got {} \
         ERROR lines",
        errors.len()
    );
}
