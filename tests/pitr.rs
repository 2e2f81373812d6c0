//! Guards point-in-time restore (spec §3.5): `-timestamp T` restores exactly the
//! transactions replicated before T (storage timestamps, sub-second on the file backend), and
//! `-index N` restores through the end of WAL index N. Checked on a replica built by hand with
//! known mtimes, on replicas written by walship and by the real Litestream, with walship and
//! with Litestream restoring (Litestream's answer is checked first: it is the reference).
mod common;

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use common::*;

/// Batches after the first; each is one transaction, >1.2 s apart.
const BATCHES: usize = 4;

/// Restorers, the reference first.
fn restorers(test: &str) -> Vec<Tool> {
    let mut v = Vec::new();
    if let Some(ls) = litestream(test) {
        v.push(Tool::Litestream(ls));
    }
    v.push(Tool::Walship);
    v
}

#[test]
fn pitr_on_a_hand_built_replica() {
    let t = TestDir::new("pitr-fixture");
    let fx = build_fixture(t.path(), test_seed("pitr_on_a_hand_built_replica"));
    let url = file_url(&fx.replica);
    let st = &fx.states;
    // (flags, expected state)
    let cases: Vec<(Vec<String>, usize)> = vec![
        (vec![], 3),
        (vec!["-timestamp".into(), fx.at(5.0)], 0), // snapshot only
        (vec!["-timestamp".into(), fx.at(15.5)], 1),
        (vec!["-timestamp".into(), fx.at(20.0)], 2), // mtime == timestamp is included
        (vec!["-timestamp".into(), fx.at(29.999)], 2),
        (vec!["-timestamp".into(), fx.at(30.0)], 3),
        (vec!["-index".into(), "0".into()], 2),
        (vec!["-index".into(), "1".into()], 3),
        (vec!["-index".into(), "00000001".into()], 3),
        (vec!["-generation".into(), fx.generation.clone()], 3),
    ];
    for tool in restorers("pitr_on_a_hand_built_replica") {
        for (flags, want) in &cases {
            let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
            let (out, r) = restore(&tool, &url, &flags, t.path());
            assert!(
                r.ok(),
                "{} restore {flags:?}: {}",
                tool.name(),
                r.describe()
            );
            if let Err(e) = check_db(&out, &st[*want]) {
                panic!(
                    "{} restore {flags:?} should give state {want}: {e}",
                    tool.name()
                );
            }
        }
        // Before the first object, or after the last: no generation qualifies.
        for ts in [fx.at(-5.0), fx.at(31.0)] {
            let (out, r) = restore(&tool, &url, &["-timestamp", &ts], t.path());
            r.assert_fails_with(1, "no matching backups found");
            assert!(!out.exists());
        }
    }
}

/// One replicator writes batches >1.2 s apart; after each batch is visible in a restore the
/// wall time is noted. A restore at each noted time must hold exactly the batches before it.
fn pitr_scenario(test: &str, replicator: Tool) {
    let t = TestDir::new(test);
    let seed = test_seed(test);
    let restorers = restorers(test);
    // Waiting uses the reference implementation when there is one.
    let waiter = restorers[0].clone();
    let db = t.join("app.db");
    let replica = t.join("replica");
    let url = file_url(&replica);
    let opts = ConfigOpts {
        monitor_interval: "100ms",
        sync_interval: "200ms",
        checkpoint_interval: None,
        // Small, so most batches end a WAL index and `-index` has several to choose from.
        min_checkpoint_page_count: Some(16),
        replica_name: None,
    };
    let cfg = write_config(t.path(), "litestream.yml", &db, &replica, &opts);

    let mut w = Workload::open(&db, seed);
    let before_any = w.model.clone();
    assert!(w.batch(4));
    let mut states = vec![w.model.clone()];
    let mut p = Proc::replicate(t.path(), &replicator, &cfg);
    wait_replicated(
        &waiter,
        &url,
        t.path(),
        &states[0],
        &mut p,
        Duration::from_secs(30),
    );
    let mut marks: Vec<SystemTime> = vec![SystemTime::now()];
    for _ in 0..BATCHES {
        let started = Instant::now();
        std::thread::sleep(Duration::from_millis(300));
        assert!(w.batch(6), "batch failed");
        states.push(w.model.clone());
        wait_replicated(
            &waiter,
            &url,
            t.path(),
            &w.model,
            &mut p,
            Duration::from_secs(30),
        );
        marks.push(SystemTime::now());
        let gap = Duration::from_millis(1300);
        if started.elapsed() < gap {
            std::thread::sleep(gap - started.elapsed());
        }
    }
    p.stop();
    w.assert_model_matches_source();

    // -timestamp at each mark but the last (a timestamp after the last write of a
    // generation matches nothing, spec §9.2).
    for tool in &restorers {
        for (k, mark) in marks.iter().enumerate().take(BATCHES) {
            let ts = rfc3339(*mark);
            if let Err(e) =
                restore_and_check(tool, &url, &["-timestamp", &ts], t.path(), &states[k])
            {
                panic!(
                    "{} restore -timestamp {ts} should hold batches 0..={k}: {e}",
                    tool.name()
                );
            }
        }
        assert_restore(tool, &url, &[], t.path(), states.last().unwrap());
    }

    // -index: every index gives a committed state, never going back, ending at the last;
    // every restorer gives the same one.
    let indexes = replica_wal_indexes(&replica);
    let generations: std::collections::BTreeSet<&str> =
        indexes.iter().map(|(g, _)| g.as_str()).collect();
    assert_eq!(generations.len(), 1, "one generation expected: {indexes:?}");
    eprintln!(
        "{test}: WAL indexes {:?}",
        indexes.iter().map(|x| x.1).collect::<Vec<_>>()
    );
    let mut all_states = vec![before_any];
    all_states.extend(states.iter().cloned());
    let mut prev = 0;
    for (_, index) in &indexes {
        let hex = format!("{index:x}");
        let mut got = Vec::new();
        for tool in &restorers {
            let (out, r) = restore(tool, &url, &["-index", &hex], t.path());
            assert!(
                r.ok(),
                "{} restore -index {hex}: {}",
                tool.name(),
                r.describe()
            );
            let k = which_state(&out, &all_states)
                .unwrap_or_else(|e| panic!("{} restore -index {hex}: {e}", tool.name()));
            got.push((tool.name(), k));
        }
        let k = got[0].1;
        assert!(
            got.iter().all(|g| g.1 == k),
            "restorers disagree on -index {hex}: {got:?}"
        );
        assert!(
            k >= prev,
            "-index {hex} gives state {k}, an earlier index gave {prev}"
        );
        prev = k;
    }
    assert_eq!(
        prev,
        all_states.len() - 1,
        "the last index must hold everything"
    );
}

#[test]
fn pitr_on_a_walship_replica() {
    pitr_scenario("pitr-walship-replica", Tool::Walship);
}

#[test]
fn pitr_on_a_litestream_replica() {
    let Some(ls) = litestream("pitr_on_a_litestream_replica") else {
        return;
    };
    pitr_scenario("pitr-litestream-replica", Tool::Litestream(ls));
}

#[test]
fn hand_built_replica_has_the_documented_layout() {
    // Guards the fixture itself: names and mtimes as spec §1 describes.
    let t = TestDir::new("fixture-layout");
    let fx = build_fixture(t.path(), 9);
    let g = fx.replica.join("generations").join(&fx.generation);
    assert_eq!(dir_entries(&g.join("snapshots")), ["00000000.snapshot.lz4"]);
    let wal = dir_entries(&g.join("wal"));
    assert_eq!(wal.len(), 3);
    assert_eq!(wal[0], "00000000_00000000.wal.lz4");
    assert!(wal[1].starts_with("00000000_") && wal[1] != wal[0]);
    assert_eq!(wal[2], "00000001_00000000.wal.lz4");
    let mtime = |p: &Path| std::fs::metadata(p).unwrap().modified().unwrap();
    assert_eq!(mtime(&g.join("snapshots/00000000.snapshot.lz4")), fx.base);
    assert_eq!(
        mtime(&g.join("wal").join(&wal[2])),
        fx.base + Duration::from_secs(30)
    );
}
