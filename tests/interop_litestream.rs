//! Guards byte compatibility with the real Litestream v0.3.13, both ways:
//! - a replica written by `walship replicate` (with a restart mid-workload) restores with
//!   `litestream restore` and with `walship restore` to exactly the source rows;
//! - a replica written by `litestream replicate` restores with `walship restore` (URL, bare
//!   path, `-config`), and `walship generations|snapshots|wal` print what Litestream prints.
//!
//! The workload has overflow pages, updates, deletes, a VACUUM and forced checkpoints. The
//! tests fail under CI when the real binary is missing; elsewhere they skip loudly.
mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

/// Replicates a changing database with `replicator`, stopping it once mid-way (with writes
/// and a checkpoint while it is down) and starting it again, then stops it cleanly. Returns
/// the workload (its model is the expected content) and the processes (kept for their logs).
fn replicate_with_restart(
    t: &TestDir,
    replicator: &Tool,
    waiter: &Tool,
    seed: u64,
) -> (Workload, Vec<Proc>) {
    let db = t.join("app.db");
    let replica = t.join("replica");
    let url = file_url(&replica);
    let cfg = write_config(
        t.path(),
        "litestream.yml",
        &db,
        &replica,
        &ConfigOpts::default(),
    );
    let pause = Duration::from_millis(15);

    let mut w = Workload::open(&db, seed);
    assert!(w.insert(5, true));
    let mut procs = vec![Proc::replicate(t.path(), replicator, &cfg)];
    w.run(60, pause);
    wait_replicated(
        waiter,
        &url,
        t.path(),
        &w.model,
        procs.last_mut().unwrap(),
        Duration::from_secs(30),
    );
    procs.last_mut().unwrap().stop();

    // Down: the application keeps writing and checkpoints on its own.
    assert!(w.insert(3, true));
    assert!(w.update(2));
    w.checkpoint("PASSIVE");
    assert!(w.insert(2, false));

    procs.push(Proc::replicate(t.path(), replicator, &cfg));
    w.run(40, pause);
    assert!(w.vacuum(), "VACUUM failed");
    w.run(20, pause);
    w.checkpoint("TRUNCATE");
    assert!(w.insert(4, true));
    w.run(20, pause);
    wait_replicated(
        waiter,
        &url,
        t.path(),
        &w.model,
        procs.last_mut().unwrap(),
        Duration::from_secs(30),
    );
    // Written after the last wait: only the final sync on SIGTERM ships these.
    assert!(w.insert(2, true));
    procs.last_mut().unwrap().stop();
    w.assert_model_matches_source();
    eprintln!(
        "workload: {} rows, {} commits, {} failed, {} busy checkpoints",
        w.model.len(),
        w.commits,
        w.failures,
        w.busy_checkpoints
    );
    (w, procs)
}

#[test]
fn walship_replica_restores_with_litestream() {
    let Some(ls) = litestream("walship_replica_restores_with_litestream") else {
        return;
    };
    let ls = Tool::Litestream(ls);
    let t = TestDir::new("interop-walship-replica");
    let seed = test_seed("walship_replica_restores_with_litestream");
    let (w, _procs) = replicate_with_restart(&t, &Tool::Walship, &ls, seed);
    let replica = t.join("replica");
    let url = file_url(&replica);

    assert_restore(&ls, &url, &[], t.path(), &w.model);
    assert_restore(&Tool::Walship, &url, &[], t.path(), &w.model);
    assert_restore(&Tool::Walship, s(&replica), &[], t.path(), &w.model);
    let cfg = t.join("litestream.yml");
    let db = t.join("app.db");
    assert_restore(&ls, s(&db), &["-config", s(&cfg)], t.path(), &w.model);
    compare_listings(&ls, &replica, t.path());
}

#[test]
fn litestream_replica_restores_with_walship() {
    let Some(ls) = litestream("litestream_replica_restores_with_walship") else {
        return;
    };
    let ls = Tool::Litestream(ls);
    let t = TestDir::new("interop-litestream-replica");
    let seed = test_seed("litestream_replica_restores_with_walship");
    let (w, _procs) = replicate_with_restart(&t, &ls, &ls, seed);
    let replica = t.join("replica");
    let url = file_url(&replica);
    let cfg = t.join("litestream.yml");
    let db = t.join("app.db");

    // The reference first: if this fails, the test (not walship) is wrong.
    assert_restore(&ls, &url, &[], t.path(), &w.model);
    assert_restore(&Tool::Walship, &url, &[], t.path(), &w.model);
    assert_restore(&Tool::Walship, s(&replica), &[], t.path(), &w.model);
    assert_restore(
        &Tool::Walship,
        s(&db),
        &["-config", s(&cfg)],
        t.path(),
        &w.model,
    );
    compare_listings(&ls, &replica, t.path());
}

#[test]
fn listings_of_a_hand_built_replica_match_litestream() {
    let Some(ls) = litestream("listings_of_a_hand_built_replica_match_litestream") else {
        return;
    };
    let t = TestDir::new("interop-listings");
    let fx = build_fixture(t.path(), 11);
    compare_listings(&Tool::Litestream(ls), &fx.replica, t.path());
}

/// `walship generations|snapshots|wal` against Litestream's on the same (quiet) replica, by
/// URL, and walship's bare-path form against its URL form. `snapshots` and `wal` must be
/// identical byte for byte; `generations` identical except the `lag` column, which depends
/// on the moment it is computed.
fn compare_listings(ls: &Tool, replica: &Path, dir: &Path) {
    let url = file_url(replica);
    for cmd in ["snapshots", "wal", "generations"] {
        let l = ls.run(&[cmd, url.as_str()], dir);
        l.assert_ok();
        let w = walship(&[cmd, url.as_str()], dir);
        w.assert_ok();
        let wb = walship(&[cmd, s(replica)], dir);
        wb.assert_ok();
        assert!(
            cells(&l.stdout).len() >= 2,
            "litestream {cmd} listed nothing: {}",
            l.describe()
        );
        if cmd == "generations" {
            compare_generations(&l.stdout, &w.stdout, "litestream vs walship (URL)");
            compare_generations(&w.stdout, &wb.stdout, "walship URL vs bare path");
        } else {
            assert_eq!(
                l.stdout, w.stdout,
                "`{cmd}` differs\n--- litestream ---\n{}\n--- walship ---\n{}",
                l.stdout, w.stdout
            );
            assert_eq!(
                w.stdout, wb.stdout,
                "walship `{cmd}` by URL and by bare path differ"
            );
        }
    }
}

fn compare_generations(want: &str, got: &str, what: &str) {
    let msg = || format!("`generations` {what}\n--- expected ---\n{want}\n--- got ---\n{got}");
    let (wc, gc) = (cells(want), cells(got));
    assert_eq!(wc.len(), gc.len(), "{}", msg());
    assert_eq!(
        wc[0],
        ["name", "generation", "lag", "start", "end"],
        "{}",
        msg()
    );
    assert_eq!(wc[0], gc[0], "{}", msg());
    let wh = want.lines().next().unwrap();
    let gh = got.lines().next().unwrap();
    // The header is byte-identical up to the lag column; after it, only when the widest
    // lag value has the same width in both.
    let lag_at = wh.find("lag").unwrap();
    assert_eq!(
        &wh[..lag_at + 3],
        &gh[..(lag_at + 3).min(gh.len())],
        "{}",
        msg()
    );
    let lag_width = |c: &[Vec<String>]| c[1..].iter().map(|r| r[2].len()).max();
    if lag_width(&wc) == lag_width(&gc) {
        assert_eq!(wh, gh, "{}", msg());
    }
    for (w, g) in wc[1..].iter().zip(&gc[1..]) {
        let drop_lag = |r: &[String]| -> Vec<String> {
            r.iter()
                .enumerate()
                .filter(|(i, _)| *i != 2)
                .map(|(_, c)| c.clone())
                .collect()
        };
        assert_eq!(drop_lag(w), drop_lag(g), "{}", msg());
    }
}
