//! Guards the bound on concurrent uploads across databases: 40 databases commit at once to
//! file replicas whose uploads take 100 ms each (a wrapper around the real file backend that
//! delays and counts `put`s and `put_file`s); no more than `MAX_CONCURRENT_UPLOADS` uploads are ever in
//! flight, the bound is reached, and every database becomes durable.
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use walship::backend::file::FileClient;
use walship::backend::{ObjectInfo, ObjectStream, ReplicaClient};
use walship::db::DbOptions;
use walship::engine::{Durability, Engine};
use walship::replica::{MAX_CONCURRENT_UPLOADS, ReplicaOptions};

/// The file backend, with every `put` delayed and the puts in flight counted.
#[derive(Debug)]
struct Slow {
    inner: FileClient,
    in_flight: Arc<AtomicUsize>,
    max: Arc<AtomicUsize>,
}

impl Slow {
    /// Counts an upload in flight for 100 ms plus the upload itself.
    async fn slowly<T>(&self, upload: impl std::future::Future<Output = T>) -> T {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let r = upload.await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        r
    }
}

#[async_trait]
impl ReplicaClient for Slow {
    fn type_name(&self) -> &'static str {
        "file"
    }
    fn location(&self) -> String {
        self.inner.location()
    }
    async fn list(&self, dir: &str) -> walship::Result<Vec<ObjectInfo>> {
        self.inner.list(dir).await
    }
    async fn get(&self, path: &str) -> walship::Result<Bytes> {
        self.inner.get(path).await
    }
    async fn get_stream(&self, path: &str) -> walship::Result<ObjectStream> {
        self.inner.get_stream(path).await
    }
    async fn put(&self, path: &str, data: Bytes) -> walship::Result<ObjectInfo> {
        self.slowly(self.inner.put(path, data)).await
    }
    async fn put_file(&self, path: &str, local: &Path) -> walship::Result<ObjectInfo> {
        self.slowly(self.inner.put_file(path, local)).await
    }
    async fn delete(&self, path: &str) -> walship::Result<()> {
        self.inner.delete(path).await
    }
    async fn delete_all(&self, dir: &str) -> walship::Result<()> {
        self.inner.delete_all(dir).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_bounded_across_databases_and_all_progress() {
    let dir = tempfile::tempdir().unwrap();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let max = Arc::new(AtomicUsize::new(0));
    let mut engine = Engine::new();
    let mut paths = Vec::new();
    for i in 0..40 {
        let db = dir.path().join(format!("t{i}.db"));
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t(v);")
            .unwrap();
        let client = Slow {
            inner: FileClient::new(dir.path().join(format!("replica{i}"))),
            in_flight: in_flight.clone(),
            max: max.clone(),
        };
        let mut o = ReplicaOptions::new("file");
        o.sync_interval = Duration::from_millis(50);
        engine.add_db(DbOptions::new(&db), vec![(Arc::new(client), o)]);
        paths.push(db);
    }
    let handle = engine.start();
    // Everyone commits, then waits for durability at once.
    for p in &paths {
        rusqlite::Connection::open(p)
            .unwrap()
            .execute("INSERT INTO t VALUES (randomblob(100))", [])
            .unwrap();
    }
    let waits = paths
        .iter()
        .map(|p| handle.wait_durable(p, Durability::AllReplicas, Duration::from_secs(60)));
    for (p, r) in paths.iter().zip(futures::future::join_all(waits).await) {
        r.unwrap_or_else(|e| panic!("{} durable: {e}", p.display()));
    }
    let max = max.load(Ordering::SeqCst);
    eprintln!(
        "MEASURE: at most {max} uploads in flight for 40 databases (bound {MAX_CONCURRENT_UPLOADS})"
    );
    assert!(max <= MAX_CONCURRENT_UPLOADS, "{max} uploads at once");
    assert_eq!(
        max, MAX_CONCURRENT_UPLOADS,
        "the bound was reached, so the test means something"
    );
    handle.shutdown().await.unwrap();
}
