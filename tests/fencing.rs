//! Guards "one replicator per database": a second walship on the same database (another
//! `replicate` process, or a second engine inside one application) is refused at start
//! with an error that names the first, and starts normally once the first has stopped.
//! Two replicators sharing a meta directory would overwrite each other's shadow WAL and
//! generations.
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use walship::backend::file::FileClient;
use walship::db::DbOptions;
use walship::engine::Engine;
use walship::replica::ReplicaOptions;

#[test]
fn a_second_replicate_of_the_same_database_is_refused_naming_the_first() {
    let t = TestDir::new("fence-local");
    let db = t.join("app.db");
    let cfg = write_config(
        t.path(),
        "a.yml",
        &db,
        &t.join("replica"),
        &ConfigOpts::default(),
    );
    // Another config file, another replica: the same database all the same.
    let other = write_config(
        t.path(),
        "b.yml",
        &db,
        &t.join("other"),
        &ConfigOpts::default(),
    );
    let mut w = Workload::open(&db, test_seed("fence-local"));
    assert!(w.insert(10, false));
    let mut first = Proc::replicate(t.path(), &Tool::Walship, &cfg);
    wait_replicated_cfg(
        &Tool::Walship,
        &cfg,
        &db,
        t.path(),
        &w.model,
        &mut first,
        Duration::from_secs(30),
    );

    let second = walship(&["replicate", "-config", s(&other)], t.path());
    second.assert_fails_with(
        1,
        &format!("already replicated by another walship (pid {}", first.pid()),
    );
    assert!(
        second.combined().contains("stop the other one first"),
        "{}",
        second.describe()
    );
    first.assert_running();

    first.stop();
    let mut second = Proc::replicate(t.path(), &Tool::Walship, &other);
    assert!(w.insert(10, false));
    wait_replicated_cfg(
        &Tool::Walship,
        &other,
        &db,
        t.path(),
        &w.model,
        &mut second,
        Duration::from_secs(30),
    );
    second.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_engine_on_the_same_database_is_refused_in_the_same_process() {
    let t = TestDir::new("fence-embedded");
    let db = t.join("app.db");
    let app = rusqlite::Connection::open(&db).unwrap();
    app.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t(x);")
        .unwrap();
    let engine = |replica: &str| {
        let mut e = Engine::new();
        e.add_db(
            DbOptions::new(&db),
            vec![(
                Arc::new(FileClient::new(t.join(replica))),
                ReplicaOptions::new("file"),
            )],
        );
        e
    };
    let first = engine("r1");
    first.claim().await.unwrap();
    let handle = first.start();
    let second = engine("r2");
    let err = second
        .claim()
        .await
        .expect_err("a second engine on one database");
    assert!(
        matches!(err, walship::Error::InUse(_)) && err.to_string().contains("already replicated"),
        "{err}"
    );
    handle.shutdown().await.unwrap();
    second
        .claim()
        .await
        .expect("free once the first engine shut down");
}
