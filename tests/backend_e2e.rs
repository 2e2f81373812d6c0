//! Guards replication through every backend end to end, with real servers and the real
//! binaries, each scenario written once and run over the backend table
//! (`tests/common/backends.rs`), one test per (scenario, backend):
//! 1. `walship_writes`: `walship replicate` under the common workload; `walship restore`
//!    gives exactly the source rows (from the config, and from the bare URL where the backend
//!    has one, also while replication runs), and so does the real Litestream v0.3.13 where it
//!    speaks the backend; the store holds layout objects only (no temporary objects, no
//!    directory markers), and a replica kept in a local directory is a valid file replica too;
//! 2. `litestream_writes`: the real Litestream replicates; walship and Litestream restore
//!    exactly its rows, and both list the same snapshots and WAL segments;
//! 3. SFTP's host key is checked against `host-key:` or `~/.ssh/known_hosts`, refused when
//!    unknown or changed, skipped only on `insecure-skip-host-key-check: true`.
//!
//! Faults (the fault proxy, a full store, a stall of minutes) are in `backend_faults.rs`;
//! a file replica served over plain HTTP in `static_http.rs`.
//!
//! Along the way it prints (`MEASURE:` lines) the number of requests each tool sends to an
//! HTTP store per 1,000 transactions at sync-interval 1s, and the restore throughput from
//! each backend. Tests fail under CI when a server or Litestream is missing; elsewhere they
//! skip loudly.
mod common;
#[path = "common/servers.rs"]
mod servers;
#[macro_use]
#[path = "common/backends.rs"]
mod backends;

use std::fs;
use std::time::Instant;

use backends::{Backend, CATCH_UP, churn, listing, measure_requests, timed_restore};
use common::*;
use servers::Sshd;

per_backend!(walship_writes: file, s3, abs, sftp, gcs, webdav);
per_backend!(litestream_writes: file, s3, abs, sftp, gcs);

/// walship replicates `app.db` under the common workload (through a counting proxy where
/// the store speaks HTTP); both tools restore it.
fn walship_writes(b: Backend, test: &str) {
    let t = TestDir::new(test);
    let Some(store) = b.start(test, &t) else {
        return;
    };
    let ls = b.litestream_speaks().then(|| litestream(test)).flatten();
    let proxy = b.speaks_http().then(|| store.proxy());
    let _via = store.route(proxy.as_ref());
    let sync = if proxy.is_some() { "1s" } else { "200ms" };
    let db = t.join("app.db");
    let yaml = store.replica_yaml("app", sync, proxy.as_ref());
    let cfg = write_config_with(t.path(), "w.yml", &db, &yaml, &ConfigOpts::default());
    let url = store.url("app", proxy.as_ref());
    let mut w = Workload::open(&db, test_seed(test));
    assert!(w.insert(5, true));
    let mut p = Proc::replicate(t.path(), &Tool::Walship, &cfg);
    if let Some(proxy) = &proxy {
        measure_requests(proxy, &mut w, "walship", b);
    }
    churn(&mut w, 150);
    let start = Instant::now();
    match &url {
        // The URL form restores while replication runs.
        Some(url) => wait_replicated(&Tool::Walship, url, t.path(), &w.model, &mut p, CATCH_UP),
        None => {
            wait_replicated_cfg(
                &Tool::Walship,
                &cfg,
                &db,
                t.path(),
                &w.model,
                &mut p,
                CATCH_UP,
            );
        }
    }
    eprintln!(
        "walship → {} caught up {:?} after the workload",
        b.name(),
        start.elapsed()
    );
    // Shipped only by the final sync on SIGTERM.
    assert!(w.insert(2, true));
    p.stop();
    w.assert_model_matches_source();

    // Only layout objects under the replica's root: no temporary objects, no directory
    // markers.
    if let Some(held) = store.holdings("app") {
        assert!(!held.is_empty(), "nothing in the store");
        for (k, size) in &held {
            // The replica lease, beside generations/.
            if b.is_lease_object(k) {
                continue;
            }
            let rel = k.strip_prefix("generations/").unwrap_or("");
            let parts: Vec<&str> = rel.split('/').collect();
            let ok = parts.len() == 3
                && walship::layout::parse_generation_name(parts[0]).is_some()
                && match parts[1] {
                    "snapshots" => walship::layout::parse_snapshot_name(parts[2]).is_some(),
                    "wal" => walship::layout::parse_wal_segment_name(parts[2]).is_some(),
                    _ => false,
                };
            assert!(ok && *size > 0, "unexpected object {k:?} ({size} bytes)");
        }
        eprintln!(
            "walship wrote {} layout objects to {}",
            held.len(),
            b.name()
        );
    }

    let cfg_args = ["-config", s(&cfg)];
    timed_restore(
        &Tool::Walship,
        b.name(),
        s(&db),
        &cfg_args,
        t.path(),
        &w.model,
    );
    if let Some(ls) = ls {
        let ls = Tool::Litestream(ls);
        timed_restore(&ls, b.name(), s(&db), &cfg_args, t.path(), &w.model);
    }
    if let Some(url) = &url {
        let what = format!("{} (url)", b.name());
        timed_restore(&Tool::Walship, &what, url, &[], t.path(), &w.model);
    }
    // What is in a local directory is also a valid file replica.
    if let Some(dir) = store.local_dir("app") {
        assert_restore(&Tool::Walship, &file_url(&dir), &[], t.path(), &w.model);
    }
}

/// The real Litestream replicates `app.db` under the common workload (through a counting
/// proxy where the store speaks HTTP); both tools restore it and list the same replica.
fn litestream_writes(b: Backend, test: &str) {
    let Some(ls) = litestream(test) else {
        return;
    };
    let t = TestDir::new(test);
    let Some(store) = b.start(test, &t) else {
        return;
    };
    let lst = Tool::Litestream(ls);
    let proxy = b.speaks_http().then(|| store.proxy());
    let _via = store.route(proxy.as_ref());
    let sync = if proxy.is_some() { "1s" } else { "200ms" };
    let db = t.join("app.db");
    let yaml = store.replica_yaml("app", sync, proxy.as_ref());
    let cfg = write_config_with(t.path(), "l.yml", &db, &yaml, &ConfigOpts::default());
    let mut w = Workload::open(&db, test_seed(test));
    assert!(w.insert(5, true));
    let mut p = Proc::replicate(t.path(), &lst, &cfg);
    if let Some(proxy) = &proxy {
        measure_requests(proxy, &mut w, "litestream", b);
    }
    churn(&mut w, 150);
    wait_replicated_cfg(&lst, &cfg, &db, t.path(), &w.model, &mut p, CATCH_UP);
    assert!(w.insert(2, true));
    p.stop();
    w.assert_model_matches_source();

    let what = format!("{} (written by litestream)", b.name());
    for reader in [&Tool::Walship, &lst] {
        timed_restore(
            reader,
            &what,
            s(&db),
            &["-config", s(&cfg)],
            t.path(),
            &w.model,
        );
    }
    for cmd in ["snapshots", "wal"] {
        let args = ["-config", s(&cfg), s(&db)];
        let want = listing(&lst, cmd, &args, t.path());
        let got = listing(&Tool::Walship, cmd, &args, t.path());
        assert!(!want.is_empty(), "litestream {cmd} listed nothing");
        assert_eq!(
            got,
            want,
            "walship {cmd} vs litestream {cmd} on {}",
            b.name()
        );
    }
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
    let cfg = write_config_with(
        t.path(),
        "write.yml",
        &db,
        &with_key,
        &ConfigOpts::default(),
    );
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
        let cfg = write_config_with(t.path(), name, &db, yaml, &ConfigOpts::default());
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
