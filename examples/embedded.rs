//! walship embedded in an application: the application acknowledges a write only once it is
//! on the replica.
//!
//! Run: `cargo run --release --example embedded -- [DIR] [TRANSACTIONS] [REPLICA_URL]`
//! (default: a temp dir, 500 transactions, the file replica `DIR/replica`; a URL such as
//! `s3://bucket.localhost:9000/app` replicates there instead, credentials from `AWS_*`).
//! It creates `DIR/app.db`, replicates it on this program's own tokio runtime, commits transactions one by one and
//! waits for each to be durable on the replica, prints the commit-to-durable latency
//! (p50/p99), shuts down with a final sync, then restores the replica and checks that every
//! acknowledged row is there.
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use walship::backend::ReplicaClient;
use walship::backend::file::FileClient;
use walship::engine::{DbOptions, Durability, Engine, ReplicaOptions};
use walship::restore::{self, ReplicaSource, RestoreOptions};

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
    let n: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(500);
    let url = args.next();
    std::fs::create_dir_all(&dir)?;
    let dir = std::fs::canonicalize(&dir)?;
    let db_path = dir.join("app.db");
    let replica_dir = dir.join("replica");
    for p in [&db_path, &replica_dir] {
        if p.exists() {
            return Err(format!("{} exists; pick an empty directory", p.display()).into());
        }
    }

    // The application's database.
    let mut app = rusqlite::Connection::open(&db_path)?;
    app.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;
         CREATE TABLE orders(id INTEGER PRIMARY KEY, item TEXT NOT NULL, qty INTEGER NOT NULL);",
    )?;

    // walship on the same runtime: one database, one replica.
    let client: Arc<dyn ReplicaClient> = match &url {
        Some(u) => walship::backend::open(&walship::config::ReplicaTarget::from_url(u)?, None)?,
        None => Arc::new(FileClient::new(&replica_dir)),
    };
    let mut engine = Engine::new();
    let mut ropts = ReplicaOptions::new(client.type_name());
    ropts.sync_interval = Duration::from_secs(1);
    engine.add_db(DbOptions::new(&db_path), vec![(client.clone(), ropts)]);
    let walship = engine.start();
    // Commits wake walship directly; SQLite's auto-checkpoint is off on this connection.
    walship.attach(&mut app)?;

    let mut latencies = Vec::with_capacity(n);
    for i in 0..n {
        app.execute(
            "INSERT INTO orders(item, qty) VALUES (?1, ?2)",
            rusqlite::params![format!("item-{i}"), (i % 7 + 1) as i64],
        )?;
        let t = Instant::now();
        walship
            .wait_durable(&db_path, Durability::AllReplicas, Duration::from_secs(10))
            .await?;
        latencies.push(t.elapsed());
        // Only now would the service answer "ok" to its client.
    }
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "{n} transactions, commit-to-durable on a {} replica: p50 {:?}, p99 {:?}, max {:?}",
        client.type_name(),
        pct(0.50),
        pct(0.99),
        latencies.last().copied().unwrap_or_default()
    );
    for s in walship.status() {
        for r in s.replicas {
            println!(
                "{} -> {}: position {:?}, lag {} bytes",
                s.path.display(),
                r.name,
                r.pos,
                r.lag_bytes.unwrap_or(0)
            );
        }
    }
    drop(app);
    walship.shutdown().await?;

    // Disaster: restore the replica elsewhere and check every acknowledged order is there.
    let out = dir.join("restored.db");
    let sources = [ReplicaSource {
        name: client.type_name().into(),
        client,
    }];
    restore::restore(&sources, &out, &RestoreOptions::default(), &|_| {}).await?;
    let restored = rusqlite::Connection::open(&out)?;
    let count: i64 = restored.query_row("SELECT COUNT(*) FROM orders", [], |r| r.get(0))?;
    println!(
        "restored {count} of {n} acknowledged orders into {}",
        out.display()
    );
    if count != n as i64 {
        return Err(format!("lost {} acknowledged orders", n as i64 - count).into());
    }
    Ok(())
}
