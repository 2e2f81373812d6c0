//! Guards the parallel ranged reads of large objects on S3 (moto), Azure (Azurite) and GCS
//! (fake-gcs-server), against the real servers:
//! 1. with small ranges (a test-only plan), an object of many ranges comes back byte for
//!    byte, one counted GET per range; an object replaced during the read is an error that
//!    says so, never a body spliced from two versions;
//! 2. at the real plan (`RANGED_READS`), a snapshot-sized object on S3 comes back byte for
//!    byte with one GET per 8 MiB range, as counted by walship and as seen on the wire;
//! 3. `walship restore` from S3 of a database whose snapshot spans several ranges gives
//!    exactly the source's rows, with one GET of the snapshot per range on the wire.
//!
//! Tests fail under CI when a server is missing; elsewhere they skip loudly.
mod common;
#[path = "common/servers.rs"]
mod servers;

use std::fs;
use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use walship::backend::{
    BucketClient, GcsConfig, RANGED_READS, RangedReads, ReplicaClient, ReplicaTarget,
};

use common::*;
use servers::{Azurite, FakeGcs, FaultProxy, MotoServer, s3_replica_yaml};

/// A plan of 64 KiB ranges, 4 at once, for objects over 256 KiB.
const SMALL: RangedReads = RangedReads {
    threshold: 256 << 10,
    chunk: 64 << 10,
    in_flight: 4,
};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// The GETs a client counts, with their bytes.
type Gets = Arc<Mutex<Vec<u64>>>;

fn counted(c: BucketClient) -> (BucketClient, Gets) {
    let gets: Gets = Arc::default();
    let g = gets.clone();
    let c = c.with_operation_counter(Arc::new(move |_, op, bytes| {
        if op == "GET" {
            g.lock().unwrap().push(bytes);
        }
    }));
    (c, gets)
}

fn s3_client(port: u16, bucket: &str) -> BucketClient {
    let ReplicaTarget::S3(cfg) = servers::s3_target(port, bucket, "db") else {
        unreachable!()
    };
    BucketClient::s3(&cfg).expect("s3 client")
}

/// The body of `path` read through `get_stream`.
async fn read_all(c: &BucketClient, path: &str) -> walship::Result<Vec<u8>> {
    let s = c.get_stream(path).await?;
    let pieces: Vec<Bytes> = s.body.try_collect().await?;
    Ok(pieces.concat())
}

/// Part 1 against one store: `c` reads by [`SMALL`] and counts into `gets`.
async fn small_ranges(what: &str, c: &BucketClient, gets: &Gets) {
    let mut rng = XorShift::new(test_seed(what));
    // 20 ranges and a short last one.
    let size = 20 * SMALL.chunk as usize + 4_321;
    let data = rng.bytes(size);
    c.put("big", Bytes::from(data.clone())).await.expect("put");
    let got = read_all(c, "big").await.expect("ranged read");
    assert!(got == data, "{what}: the body read in ranges differs");
    let counted = std::mem::take(&mut *gets.lock().unwrap());
    assert_eq!(counted.len(), 21, "{what}: GETs counted: {counted:?}");
    assert_eq!(counted.iter().sum::<u64>(), size as u64, "{what}");
    eprintln!("{what}: {size} bytes in {} ranged GETs", counted.len());

    // At the threshold: one GET, as before.
    let at = rng.bytes(SMALL.threshold as usize);
    c.put("at", Bytes::from(at.clone())).await.expect("put");
    assert!(read_all(c, "at").await.expect("read") == at, "{what}");
    assert_eq!(
        gets.lock().unwrap().len(),
        1,
        "{what}: {:?}",
        gets.lock().unwrap()
    );

    // Replaced while it is read: the ranges after the replacement refuse the new version.
    let mut s = c.get_stream("big").await.expect("open");
    let mut read = s
        .body
        .next()
        .await
        .expect("a first piece")
        .expect("ok")
        .len();
    let other = rng.bytes(size);
    c.put("big", Bytes::from(other)).await.expect("overwrite");
    let err = loop {
        match s.body.next().await {
            Some(Ok(b)) => read += b.len(),
            Some(Err(e)) => break e,
            None => panic!("{what}: a replaced object was read whole ({read} bytes)"),
        }
    };
    let msg = err.to_string();
    assert!(
        msg.contains("changed while it was read in ranges") && msg.contains("read it again"),
        "{what}: {msg}"
    );
    assert!(read < size, "{what}: {read}");
    eprintln!("{what}: replaced after {read} bytes: {msg}");
}

#[test]
fn s3_reads_many_ranges_of_one_version() {
    let test = "s3_ranged_small";
    let t = TestDir::new("ranged-s3");
    let Some(moto) = MotoServer::start(test, t.path()) else {
        return;
    };
    moto.create_bucket("ranged");
    let (c, gets) = counted(s3_client(moto.port(), "ranged").with_ranged_reads(SMALL));
    runtime().block_on(small_ranges("s3", &c, &gets));
}

#[test]
fn azure_reads_many_ranges_of_one_version() {
    let test = "azure_ranged_small";
    let t = TestDir::new("ranged-abs");
    let Some(az) = Azurite::start(test, t.path()) else {
        return;
    };
    az.create_container("ranged");
    let ReplicaTarget::Abs(cfg) = servers::abs_target(&az.endpoint(), "ranged", "db") else {
        unreachable!()
    };
    let c = BucketClient::azure(&cfg).expect("azure client");
    let (c, gets) = counted(c.with_ranged_reads(SMALL));
    runtime().block_on(small_ranges("abs", &c, &gets));
}

#[test]
fn gcs_reads_many_ranges_of_one_version() {
    let test = "gcs_ranged_small";
    let t = TestDir::new("ranged-gcs");
    let Some(gcs) = FakeGcs::start(test, t.path()) else {
        return;
    };
    gcs.create_bucket("ranged");
    let cfg = GcsConfig {
        bucket: "ranged".into(),
        path: "db".into(),
    };
    // Built inside the runtime: the GCS client's uploader wants one.
    let rt = runtime();
    rt.block_on(async {
        let c = BucketClient::gcs_at(&cfg, Some(gcs.host())).expect("gcs client");
        let (c, gets) = counted(c.with_ranged_reads(SMALL));
        small_ranges("gcs", &c, &gets).await;
    });
}

/// Part 2: the real plan, through a proxy that counts what goes over the wire.
#[test]
fn s3_snapshot_sized_object_in_8_mib_ranges() {
    let test = "s3_ranged_real_plan";
    let t = TestDir::new("ranged-s3-real");
    let Some(moto) = MotoServer::start(test, t.path()) else {
        return;
    };
    moto.create_bucket("ranged");
    let proxy = FaultProxy::start(moto.proc.addr());
    let (c, gets) = counted(s3_client(proxy.port(), "ranged"));
    // Five ranges, the last one short.
    let size = 4 * RANGED_READS.chunk as usize + 12_345;
    let data = XorShift::new(test_seed(test)).bytes(size);
    runtime().block_on(async {
        c.put("snap", Bytes::from(data.clone())).await.expect("put");
        let before = proxy.stats();
        let got = read_all(&c, "snap").await.expect("ranged read");
        let after = proxy.stats();
        assert!(got == data, "the body read in ranges differs");
        let counted = gets.lock().unwrap().clone();
        let wire = after.by_method.get("GET").copied().unwrap_or(0)
            - before.by_method.get("GET").copied().unwrap_or(0);
        eprintln!(
            "{size} bytes: {} GETs counted, {wire} on the wire over {} new connections",
            counted.len(),
            after.connections - before.connections
        );
        assert_eq!(counted.len(), 5, "{counted:?}");
        assert_eq!(wire, 5, "GETs on the wire");
        // The first GET's connection is dropped after its range: the other four ran
        // beside it, each on a connection of its own.
        assert!(after.connections - before.connections >= 5, "{after:?}");
    });
}

/// Part 3: `walship replicate` puts a snapshot of several ranges on S3, `walship restore`
/// reads it back.
#[test]
fn walship_restores_a_multi_range_snapshot_from_s3() {
    let test = "s3_ranged_restore";
    let t = TestDir::new("ranged-restore");
    let Some(moto) = MotoServer::start(test, t.path()) else {
        return;
    };
    moto.create_bucket("ranged");
    let proxy = FaultProxy::start(moto.proc.addr());
    let db = t.join("app.db");
    // 40 MB of incompressible rows: a snapshot of six 8 MiB ranges (the last one short).
    let mut rng = XorShift::new(test_seed(test));
    let mut want = Vec::new();
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);")
            .unwrap();
        for i in 0..40 {
            let v = rng.bytes(1 << 20);
            c.execute(
                "INSERT INTO t(id, v) VALUES (?1, ?2)",
                rusqlite::params![i, v],
            )
            .unwrap();
            want.push(fnv1a(&v));
        }
        c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);").unwrap();
    }
    let cfg = t.join("s3.yml");
    fs::write(
        &cfg,
        format!(
            "dbs:\n  - path: \"{}\"\n    replicas:\n{}",
            s(&db),
            s3_replica_yaml(proxy.port(), "ranged", "app", "1s")
        ),
    )
    .unwrap();
    let mut p = Proc::replicate(t.path(), &Tool::Walship, &cfg);
    let snap = wait_snapshot(&moto, &mut p);
    p.stop();
    assert!(snap > 2 * RANGED_READS.chunk, "snapshot of {snap} bytes");

    let before = proxy.stats();
    let (out, r) = restore(&Tool::Walship, s(&db), &["-config", s(&cfg)], t.path());
    let after = proxy.stats();
    assert!(r.ok(), "restore failed: {}", r.describe());
    assert_eq!(rows(&out), want, "restored rows differ");
    let conns = after.connections - before.connections;
    let gets = after.snapshot_gets - before.snapshot_gets;
    let ranges = snap.div_ceil(RANGED_READS.chunk);
    eprintln!("restore of a {snap}-byte snapshot: {gets} snapshot GETs, {conns} connections");
    assert_eq!(gets, ranges, "snapshot GETs on the wire");
}

/// The size of the first snapshot `p` puts in the bucket (60 s at most).
fn wait_snapshot(moto: &MotoServer, p: &mut Proc) -> u64 {
    let t0 = std::time::Instant::now();
    loop {
        let snaps: Vec<u64> = moto
            .list_keys("ranged", "app/")
            .into_iter()
            .filter(|(k, _)| k.ends_with(".snapshot.lz4"))
            .map(|(_, n)| n)
            .collect();
        if let Some(n) = snaps.first() {
            return *n;
        }
        p.assert_running();
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(60),
            "no snapshot after 60 s: {}",
            p.logs()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// The hash of each row's blob, by id.
fn rows(db: &Path) -> Vec<u64> {
    let c = rusqlite::Connection::open(db).unwrap();
    let mut st = c.prepare("SELECT v FROM t ORDER BY id").unwrap();
    st.query_map([], |r| r.get::<_, Vec<u8>>(0))
        .unwrap()
        .map(|v| fnv1a(&v.unwrap()))
        .collect()
}
