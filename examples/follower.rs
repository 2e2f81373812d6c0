//! An in-process read replica: `walship::follow::Follower` keeps a local copy of a
//! replica's latest state while this program reads it.
//!
//! Run: `cargo run --release --example follower -- [DIR] [COMMITS]` (default: a temp dir,
//! 20 commits). It creates a primary `DIR/app.db` replicated by walship (embedded) to the
//! file replica `DIR/replica`, starts a follower that keeps `DIR/copy.db`, commits one row
//! at a time, and after each commit waits for the follower's update that makes the row
//! visible to a plain read-only SQLite connection on the copy, printing how long the row
//! took from commit to copy. Then it stops both and checks that the copy equals the primary.
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use walship::backend::ReplicaClient;
use walship::backend::file::FileClient;
use walship::engine::{DbOptions, Durability, Engine, ReplicaOptions};
use walship::follow::{FollowOptions, Follower};
use walship::restore::ReplicaSource;

fn rows(path: &std::path::Path) -> rusqlite::Result<Vec<(i64, String)>> {
    let c = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let mut st = c.prepare("SELECT id, note FROM notes ORDER BY id")?;
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let tmp;
    let dir = match args.next() {
        Some(d) => PathBuf::from(d),
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    let n: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(20);
    std::fs::create_dir_all(&dir)?;
    let dir = std::fs::canonicalize(&dir)?;
    let (db_path, replica_dir, copy) =
        (dir.join("app.db"), dir.join("replica"), dir.join("copy.db"));
    for p in [&db_path, &replica_dir, &copy] {
        if p.exists() {
            return Err(format!("{} exists; pick an empty directory", p.display()).into());
        }
    }

    // The primary, replicated by walship on this runtime.
    let mut app = rusqlite::Connection::open(&db_path)?;
    app.execute_batch(
        "PRAGMA journal_mode=WAL; CREATE TABLE notes(id INTEGER PRIMARY KEY, note TEXT NOT NULL);",
    )?;
    let client: Arc<dyn ReplicaClient> = Arc::new(FileClient::new(&replica_dir));
    let mut engine = Engine::new();
    let mut ropts = ReplicaOptions::new(client.type_name());
    ropts.sync_interval = Duration::from_millis(200);
    engine.add_db(DbOptions::new(&db_path), vec![(client.clone(), ropts)]);
    let walship = engine.start();
    walship.attach(&mut app)?;
    app.execute("INSERT INTO notes(note) VALUES ('first')", [])?;
    walship
        .wait_durable(&db_path, Durability::AllReplicas, Duration::from_secs(10))
        .await?;

    // The follower: a copy of the replica, kept up to date in place.
    let follower = Follower::start(
        vec![ReplicaSource {
            name: "file".into(),
            client,
        }],
        copy.clone(),
        FollowOptions::default(),
    );
    let mut updates = follower.subscribe();
    while updates.borrow_and_update().position.is_none() {
        updates.changed().await?;
    }
    println!("copy ready at {}", copy.display());

    let mut delays = Vec::with_capacity(n);
    for i in 0..n {
        let note = format!("note {i}");
        let t = Instant::now();
        app.execute("INSERT INTO notes(note) VALUES (?1)", [&note])?;
        // Each status change is an update of the copy (or an error to show).
        loop {
            tokio::time::timeout(Duration::from_secs(10), updates.changed()).await??;
            let s = updates.borrow_and_update().clone();
            if let Some(e) = &s.last_error {
                eprintln!("follower: {e}");
            }
            if rows(&copy)?.last().map(|r| &r.1) == Some(&note) {
                break;
            }
        }
        delays.push(t.elapsed());
    }
    delays.sort();
    let pct = |p: f64| delays[((delays.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "{n} commits: commit to visible in the copy p50 {:?}, p99 {:?} (sync-interval 200ms, file replica watched with inotify)",
        pct(0.5),
        pct(0.99)
    );
    let status = follower.status();
    println!(
        "follower: {} updates, {} full restore(s), position {:?}",
        status.updates, status.full_restores, status.position
    );
    follower.shutdown().await?;
    walship.shutdown().await?;
    let (want, got) = (rows(&db_path)?, rows(&copy)?);
    if want != got {
        return Err(format!(
            "the copy has {} rows, the primary {}",
            got.len(),
            want.len()
        )
        .into());
    }
    println!("the copy equals the primary ({} rows)", got.len());
    Ok(())
}
