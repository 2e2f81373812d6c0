//! Choosing what to restore: the generation and replica with the latest end, and errors
//! that name the replica's object.
use super::*;

/// Writes placeholder objects (content does not matter to `plan`) with given mtimes.
async fn put_objects(client: &FileClient, objects: &[(&str, u64)], base: SystemTime) {
    for &(rel, secs) in objects {
        client.put(rel, Bytes::from_static(b"x")).await.unwrap();
        let f = std::fs::File::options()
            .write(true)
            .open(client.root().join(rel))
            .unwrap();
        f.set_modified(base + Duration::from_secs(secs)).unwrap();
    }
}

const GA: &str = "aaaaaaaaaaaaaaaa";
const GB: &str = "bbbbbbbbbbbbbbbb";

fn source(name: &str, c: &Arc<FileClient>) -> ReplicaSource {
    ReplicaSource {
        name: name.into(),
        client: c.clone(),
    }
}

#[tokio::test]
async fn plan_picks_generation_and_replica_with_latest_end() {
    let dir = tempfile::tempdir().unwrap();
    let base = SystemTime::now() - Duration::from_secs(3600);
    let r1 = Arc::new(FileClient::new(dir.path().join("r1")));
    let r2 = Arc::new(FileClient::new(dir.path().join("r2")));
    // r1: generation A [0, 10], generation B [20, 40]. r2: generation A [0, 40] (tie with r1's B).
    put_objects(
        &r1,
        &[
            (
                &format!("generations/{GA}/snapshots/00000000.snapshot.lz4"),
                0,
            ),
            (
                &format!("generations/{GA}/wal/00000000_00000000.wal.lz4"),
                10,
            ),
            (
                &format!("generations/{GB}/snapshots/00000000.snapshot.lz4"),
                20,
            ),
            (
                &format!("generations/{GB}/wal/00000000_00000000.wal.lz4"),
                30,
            ),
            (
                &format!("generations/{GB}/wal/00000001_00000000.wal.lz4"),
                40,
            ),
        ],
        base,
    )
    .await;
    put_objects(
        &r2,
        &[
            (
                &format!("generations/{GA}/snapshots/00000000.snapshot.lz4"),
                0,
            ),
            (
                &format!("generations/{GA}/wal/00000000_00000000.wal.lz4"),
                40,
            ),
        ],
        base,
    )
    .await;
    let replicas = vec![source("one", &r1), source("two", &r2)];
    let ga = Generation::parse(GA).unwrap();
    let gb = Generation::parse(GB).unwrap();

    let p = plan(&replicas, &RestoreOptions::default()).await.unwrap();
    assert_eq!(
        (p.replica.as_str(), p.generation),
        ("one", gb),
        "tie keeps the first replica"
    );
    assert_eq!(p.segments.len(), 2);
    assert_eq!(p.end, base + Duration::from_secs(40));

    let p = plan(&replicas[1..], &RestoreOptions::default())
        .await
        .unwrap();
    assert_eq!((p.replica.as_str(), p.generation), ("two", ga));

    // Generation filter.
    let opts = RestoreOptions {
        generation: Some(ga),
        ..Default::default()
    };
    let p = plan(&replicas, &opts).await.unwrap();
    assert_eq!((p.replica.as_str(), p.generation), ("two", ga));
    let opts = RestoreOptions {
        generation: Some(Generation(7)),
        ..Default::default()
    };
    assert!(matches!(
        plan(&replicas, &opts).await,
        Err(Error::NoMatchingBackups)
    ));

    // Timestamp: r1's B starts at 20, so at 15 only the A generations qualify; r2's A ends
    // later (40) than r1's A (10).
    let at = |secs| RestoreOptions {
        timestamp: Some(base + Duration::from_secs(secs)),
        ..Default::default()
    };
    let p = plan(&replicas, &at(15)).await.unwrap();
    assert_eq!((p.replica.as_str(), p.generation), ("two", ga));
    assert!(
        p.segments.is_empty(),
        "r2's segment at 40 is after the timestamp"
    );
    // r1 alone: 15 is after A's end and before B's start (spec §3.1, §9.2).
    assert!(matches!(
        plan(&replicas[..1], &at(15)).await,
        Err(Error::NoMatchingBackups)
    ));
    let p = plan(&replicas[..1], &at(10)).await.unwrap();
    assert_eq!((p.generation, p.segments.len()), (ga, 1));
    // After every generation's last write: nothing, as in Litestream.
    assert!(matches!(
        plan(&replicas, &at(41)).await,
        Err(Error::NoMatchingBackups)
    ));
    let p = plan(&replicas[..1], &at(35)).await.unwrap();
    assert_eq!((p.generation, p.segments.len()), (gb, 1));

    // Index and timestamp together.
    let opts = RestoreOptions {
        index: Some(0),
        timestamp: Some(base),
        ..Default::default()
    };
    let err = plan(&replicas, &opts).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot specify index & timestamp to restore"
    );

    // Nothing at all.
    let empty = Arc::new(FileClient::new(dir.path().join("empty")));
    assert!(matches!(
        plan(&[source("e", &empty)], &RestoreOptions::default()).await,
        Err(Error::NoMatchingBackups)
    ));
}

#[tokio::test]
async fn plan_errors_name_the_replica_object() {
    let dir = tempfile::tempdir().unwrap();
    let base = SystemTime::now() - Duration::from_secs(3600);
    let r = Arc::new(FileClient::new(dir.path().join("r")));
    put_objects(
        &r,
        &[
            (
                &format!("generations/{GA}/snapshots/00000000.snapshot.lz4"),
                0,
            ),
            (
                &format!("generations/{GA}/wal/00000000_00000000.wal.lz4"),
                1,
            ),
            (
                &format!("generations/{GA}/wal/00000001_00001038.wal.lz4"),
                2,
            ),
        ],
        base,
    )
    .await;
    let err = plan(&[source("r", &r)], &RestoreOptions::default())
        .await
        .unwrap_err();
    let Error::Corrupt { path, reason } = &err else {
        panic!("{err}")
    };
    assert_eq!(
        path,
        &format!(
            "{}/generations/{GA}/wal/00000001_00000000.wal.lz4",
            r.root().display()
        )
    );
    assert!(reason.contains("missing initial wal segment"), "{reason}");
}
