//! Guards Google Cloud Storage replicas end to end against fake-gcs-server and the real
//! Litestream v0.3.13 (both reach it through `STORAGE_EMULATOR_HOST`, as their Go and Rust
//! clients read it): walship replicates and both tools restore; Litestream replicates and
//! walship restores; through resets and a stall, walship catches up with exactly the
//! committed rows.
//!
//! One test in its own binary: it sets `STORAGE_EMULATOR_HOST` for the whole process (every
//! child inherits it), which no other test may see.
mod common;
#[path = "common/servers.rs"]
mod servers;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use servers::{FakeGcs, FaultProxy, gcs_replica_yaml};

const CATCH_UP: Duration = Duration::from_secs(30);
const PAUSE: Duration = Duration::from_millis(10);

fn config(dir: &Path, name: &str, db: &Path, replica_yaml: &str) -> PathBuf {
    let y = format!(
        "dbs:\n  - path: \"{}\"\n    monitor-interval: 100ms\n    replicas:\n{replica_yaml}",
        s(db)
    );
    let p = dir.join(name);
    fs::write(&p, y).expect("write config");
    p
}

#[test]
fn gcs_both_ways_with_litestream_and_through_faults() {
    let test = "gcs_end_to_end";
    let t = TestDir::new("e2e-gcs");
    let Some(gcs) = FakeGcs::start(test, t.path()) else {
        return;
    };
    gcs.create_bucket("e2e");
    // SAFETY: set before this binary's only test starts any thread that reads the
    // environment (the children spawned below inherit it).
    unsafe { std::env::set_var("STORAGE_EMULATOR_HOST", gcs.host()) };
    let ls = litestream(test);
    let mut tools = vec![Tool::Walship];
    tools.extend(ls.clone().map(Tool::Litestream));
    for (i, writer) in tools.iter().enumerate() {
        let db = t.join(format!("app{i}.db"));
        let cfg = config(
            t.path(),
            &format!("gcs{i}.yml"),
            &db,
            &gcs_replica_yaml("e2e", &format!("app{i}"), "200ms"),
        );
        let mut w = Workload::open(&db, test_seed(test) + i as u64);
        assert!(w.insert(5, true));
        let mut p = Proc::replicate(t.path(), writer, &cfg);
        w.run(60, PAUSE);
        wait_replicated_cfg(writer, &cfg, &db, t.path(), &w.model, &mut p, CATCH_UP);
        assert!(w.insert(2, true));
        p.stop();
        w.assert_model_matches_source();
        for reader in &tools {
            assert_restore(reader, s(&db), &["-config", s(&cfg)], t.path(), &w.model);
        }
    }

    // Through the fault proxy: resets, then a black hole, while the application writes.
    let proxy = FaultProxy::start(gcs.proc.addr());
    // SAFETY: as above; no thread of this test reads the environment now.
    unsafe {
        std::env::set_var(
            "STORAGE_EMULATOR_HOST",
            format!("127.0.0.1:{}", proxy.port()),
        )
    };
    let db = t.join("fault.db");
    let cfg = config(
        t.path(),
        "fault.yml",
        &db,
        &gcs_replica_yaml("e2e", "fault", "500ms"),
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
