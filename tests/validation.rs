//! Guards `validation-interval`: a replica corrupted behind the engine's back (a snapshot
//! page rewritten with valid LZ4, which restore's own checks cannot see; a WAL segment
//! rewritten with valid LZ4) is detected within the interval, counted in
//! `litestream_replica_validation_total{status="error"}`, and a new generation starts; an
//! intact replica validates clean over several intervals while a writer runs.
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use walship::backend::file::FileClient;
use walship::backend::{self, ReplicaClient};
use walship::db::DbOptions;
use walship::engine::{Engine, EngineHandle};
use walship::replica::ReplicaOptions;

const INTERVAL: Duration = Duration::from_millis(700);

struct Setup {
    _dir: tempfile::TempDir,
    db: PathBuf,
    replica: PathBuf,
    handle: EngineHandle,
    stop: Arc<AtomicBool>,
    writer: Option<std::thread::JoinHandle<u64>>,
}

impl Setup {
    /// A database with 40 rows of 6 KB blobs (overflow pages), replicated to a file replica
    /// that validates every [`INTERVAL`], and a writer inserting a small row every 20 ms.
    fn start() -> Setup {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(dir.path()).unwrap();
        let db = base.join("app.db");
        let replica = base.join("replica");
        let app = rusqlite::Connection::open(&db).unwrap();
        app.execute_batch(
            "PRAGMA journal_mode=WAL; CREATE TABLE big(id INTEGER PRIMARY KEY, b BLOB);
             CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);",
        )
        .unwrap();
        for _ in 0..40 {
            app.execute("INSERT INTO big(b) VALUES (randomblob(6000))", [])
                .unwrap();
        }
        // The blobs go into the database file before the engine starts: left in the WAL,
        // they would also be in the generation's first WAL segment, whose frames overwrite
        // a corrupted snapshot page on every restore, so validation could never see it.
        app.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
            .unwrap();
        let mut dopts = DbOptions::new(&db);
        dopts.monitor_interval = Duration::from_millis(50);
        dopts.min_checkpoint_page_count = 50;
        let mut ropts = ReplicaOptions::new("file");
        ropts.sync_interval = Duration::from_millis(100);
        ropts.validation_interval = Some(INTERVAL);
        let mut engine = Engine::new();
        engine.add_db(dopts, vec![(Arc::new(FileClient::new(&replica)), ropts)]);
        let handle = engine.start();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let writer = std::thread::spawn(move || {
            let mut n = 0u64;
            while !s.load(Ordering::SeqCst) {
                app.execute("INSERT INTO t(v) VALUES (hex(randomblob(40)))", [])
                    .unwrap();
                n += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            n
        });
        Setup {
            _dir: dir,
            db,
            replica,
            handle,
            stop,
            writer: Some(writer),
        }
    }

    fn counts(&self) -> (u64, u64) {
        let m = walship::metrics::global().replica(&self.db, "file");
        (m.validation_ok.get(), m.validation_error.get())
    }

    async fn wait_for(&self, what: &str, timeout: Duration, f: impl Fn(&Setup) -> bool) {
        let start = Instant::now();
        while !f(self) {
            assert!(
                start.elapsed() < timeout,
                "timed out after {timeout:?} waiting for {what}; validations (ok, error) = {:?}",
                self.counts()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn generations(&self) -> Vec<walship::Generation> {
        backend::generations(&FileClient::new(&self.replica))
            .await
            .unwrap()
    }

    async fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        let n = self.writer.take().unwrap().join().unwrap();
        self.handle.shutdown().await.unwrap();
        n
    }
}

/// Generation directories on the file replica (read directly: checked from sync code).
fn generation_dirs(replica: &Path) -> usize {
    std::fs::read_dir(replica.join("generations"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Rewrites a replica object in place with its decompressed bytes changed by `f` (valid
/// LZ4 again, the same name), as a bad disk or a buggy tool would.
fn rewrite(replica: &Path, rel: &str, f: impl FnOnce(&mut Vec<u8>)) {
    let path = replica.join(rel);
    let raw = std::fs::read(&path).unwrap();
    let mut data = walship::compress::decompress(&raw, 1 << 30).unwrap();
    f(&mut data);
    let tmp = path.with_extension("corrupt-tmp");
    std::fs::write(&tmp, walship::compress::compress(&data)).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intact_replica_validates_clean_while_writing() {
    let s = Setup::start();
    let (ok0, err0) = s.counts();
    s.wait_for("4 validations", INTERVAL * 12, |s| s.counts().0 >= ok0 + 4)
        .await;
    let (ok, err) = s.counts();
    assert_eq!(err, err0, "no false alarm over {} validations", ok - ok0);
    assert_eq!(s.generations().await.len(), 1, "no new generation");
    let rows = s.finish().await;
    assert!(rows > 50, "the writer ran throughout ({rows} rows)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_snapshot_page_is_detected_and_starts_a_new_generation() {
    let s = Setup::start();
    s.wait_for("a first clean validation", INTERVAL * 8, |s| {
        s.counts().0 >= 1
    })
    .await;
    let (ok0, err0) = s.counts();
    assert_eq!(err0, 0);
    let gens = s.generations().await;
    assert_eq!(gens.len(), 1);
    let g = gens[0];

    // An overflow page of the `big` table: pure row payload, so restore's integrity check
    // passes and only the page comparison can tell.
    let page: i64 = {
        let c = rusqlite::Connection::open(&s.db).unwrap();
        c.query_row(
            "SELECT pageno FROM dbstat WHERE name = 'big' AND pagetype = 'overflow' \
             ORDER BY pageno LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap()
    };
    let snaps = backend::snapshots(&FileClient::new(&s.replica), g)
        .await
        .unwrap();
    assert_eq!(snaps.len(), 1);
    rewrite(&s.replica, &snaps[0].path(), |data| {
        let at = ((page - 1) * 4096 + 2000) as usize;
        assert!(at < data.len(), "page {page} is in the snapshot");
        data[at] ^= 0xff;
    });

    // Detected within the next interval or two (one validation may be under way).
    let corrupted = Instant::now();
    s.wait_for("the mismatch", INTERVAL * 6, |s| s.counts().1 > err0)
        .await;
    eprintln!(
        "MEASURE: corrupted snapshot page detected {:?} after the corruption (validation-interval {INTERVAL:?})",
        corrupted.elapsed()
    );
    s.wait_for(
        "a new generation on the replica",
        Duration::from_secs(10),
        |s| generation_dirs(&s.replica) == 2,
    )
    .await;
    let now = s.handle.status()[0].pos.unwrap().generation;
    assert_ne!(now, g, "the database moved to a new generation");
    // The new generation validates clean.
    let (ok1, err1) = s.counts();
    s.wait_for(
        "a clean validation of the new generation",
        INTERVAL * 8,
        |s| s.counts().0 > ok1.max(ok0),
    )
    .await;
    assert_eq!(s.counts().1, err1, "no further mismatch");
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_wal_segment_is_detected() {
    let s = Setup::start();
    s.wait_for("a first clean validation", INTERVAL * 8, |s| {
        s.counts().0 >= 1
    })
    .await;
    let (_, err0) = s.counts();
    let g = s.generations().await[0];
    let client = FileClient::new(&s.replica);
    let segs = backend::wal_segments(&client, g).await.unwrap();
    // The first segment with a frame: every later validation replays it.
    let seg = segs
        .iter()
        .find(|x| x.size > 0 && x.offset == 0)
        .expect("a segment")
        .clone();
    rewrite(&s.replica, &seg.path(), |data| {
        assert!(data.len() > 32 + 24 + 100, "the segment holds a frame");
        // A byte inside the first frame's page.
        data[32 + 24 + 100] ^= 0xff;
    });
    s.wait_for("the mismatch", INTERVAL * 6, |s| s.counts().1 > err0)
        .await;
    s.wait_for(
        "a new generation on the replica",
        Duration::from_secs(10),
        |s| generation_dirs(&s.replica) == 2,
    )
    .await;
    assert!(client.list("generations").await.unwrap().len() == 2);
    s.finish().await;
}
