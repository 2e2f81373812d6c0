//! Guards the central-server setup: walship replicates to a file replica that a plain
//! static HTTP server serves, and laptops read it over http:// with nothing else:
//! 1. `python3 -m http.server`: restore and `generations|snapshots|wal` over plain HTTP
//!    match the file replica, while walship writes the directory underneath;
//! 2. the guides' configs as written (`config-examples/guide-*.yml`): two unnamed file
//!    replicas on the server, a laptop's `type: file` with an `http://` url that restores
//!    and refuses to replicate;
//! 3. a real nginx `autoindex` (HTML and JSON listings) over a replica with several
//!    generations, snapshots and many WAL segments: restores compared byte for byte,
//!    listings row for row, link texts nginx cuts short read whole.
//!
//! Tests fail under CI when python3 or nginx is missing; elsewhere they skip loudly.
#[path = "common/backends.rs"]
mod backends;
mod common;
#[path = "common/servers.rs"]
mod servers;

use std::fs;
use std::path::Path;

use backends::{CATCH_UP, churn, files_under, listing, timed_restore};
use common::*;
use servers::{Autoindex, NginxStatic, StaticHttp};

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
    let central = write_config_with(
        t.path(),
        "central.yml",
        &db,
        &format!(
            "      - type: file\n        path: \"{}\"\n      - type: file\n        path: \"{}\"\n",
            s(&served),
            s(&backup)
        ),
        &ConfigOpts::default(),
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
