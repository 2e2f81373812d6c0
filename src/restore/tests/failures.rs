//! Restores that must fail and leave nothing behind: corrupt, missing or foreign segments,
//! a bad snapshot, an existing output, a stalled store, an invalid plan.
use super::*;

/// A failed restore leaves nothing in the output directory.
async fn assert_fails_clean(f: &Fixture, check: impl FnOnce(&Error)) {
    let out_dir = f.out_dir();
    let out = out_dir.join("restored.db");
    let err = f.restore_err(&out, &RestoreOptions::default()).await;
    check(&err);
    assert!(!out.exists());
    assert_eq!(
        dir_entries(&out_dir),
        Vec::<String>::new(),
        "no temp files left"
    );
}

#[tokio::test]
async fn corrupt_byte_in_a_segment_is_an_error_naming_it() {
    let f = fixture(4096).await;
    let rel = f.segment_path(1);
    let path = f.object(&rel);
    let mut data = compress::decompress(&std::fs::read(&path).unwrap(), 1 << 30).unwrap();
    data[24 + 1000] ^= 0x40; // inside the first frame's page
    std::fs::write(&path, compress::compress(&data)).unwrap();
    assert_fails_clean(&f, |err| {
        let Error::Corrupt { path, reason } = err else {
            panic!("{err}")
        };
        assert!(path.ends_with(&rel), "{path}");
        assert!(reason.contains("checksum mismatch"), "{reason}");
    })
    .await;
}

#[tokio::test]
async fn missing_middle_segment_is_an_error() {
    let f = fixture(4096).await;
    std::fs::remove_file(f.object(&f.segment_path(1))).unwrap();
    assert_fails_clean(&f, |err| {
        let Error::Corrupt { path, reason } = err else {
            panic!("{err}")
        };
        assert!(path.ends_with(&f.segment_path(2)), "{path}");
        assert!(reason.contains("gap"), "{reason}");
        let (index, offset) = f.segments[1];
        assert!(
            reason.contains(&layout::wal_segment_name(index, offset)),
            "{reason}"
        );
    })
    .await;
}

#[tokio::test]
async fn segment_from_another_wal_cycle_is_an_error() {
    // Index 1's second segment replaced by index 0's second one: wrong salt.
    let f = fixture(4096).await;
    let i = f.first_of_index_1;
    let foreign = std::fs::read(f.object(&f.segment_path(1))).unwrap();
    // Its offset comes from the name, so the chain is contiguous up to it; its first frame
    // carries index 0's salt.
    std::fs::write(f.object(&f.segment_path(i + 1)), foreign).unwrap();
    assert_fails_clean(&f, |err| {
        let Error::Corrupt { path, reason } = err else {
            panic!("{err}")
        };
        assert!(path.ends_with(&f.segment_path(i + 1)), "{path}");
        assert!(
            reason.contains("salt change inside wal index 00000001"),
            "{reason}"
        );
    })
    .await;
}

#[tokio::test]
async fn bad_snapshot_is_an_error_naming_it() {
    let f = fixture(4096).await;
    let rel = layout::snapshot_path(f.generation, 0);
    std::fs::write(
        f.object(&rel),
        compress::compress(b"not a database, just some bytes here"),
    )
    .unwrap();
    assert_fails_clean(&f, |err| {
        let Error::Corrupt { path, .. } = err else {
            panic!("{err}")
        };
        assert!(path.ends_with(&rel), "{path}");
    })
    .await;
    // Not LZ4 at all.
    std::fs::write(f.object(&rel), b"SQLite format 3\0").unwrap();
    assert_fails_clean(&f, |err| assert!(err.to_string().contains(&rel), "{err}")).await;
}

#[tokio::test]
async fn output_exists_is_refused() {
    let f = fixture(4096).await;
    let out = f.out_dir().join("restored.db");
    std::fs::write(&out, b"keep me").unwrap();
    let err = f.restore_err(&out, &RestoreOptions::default()).await;
    assert!(matches!(err, Error::OutputExists(_)), "{err}");
    assert_eq!(std::fs::read(&out).unwrap(), b"keep me");
    assert_eq!(dir_entries(&f.out_dir()), vec!["restored.db"]);
}

/// Wraps a client and never answers `get` for one path.
#[derive(Debug)]
struct Stall {
    inner: Arc<FileClient>,
    path: String,
}

#[async_trait]
impl ReplicaClient for Stall {
    fn type_name(&self) -> &'static str {
        "stall"
    }
    fn location(&self) -> String {
        self.inner.location()
    }
    async fn list(&self, dir: &str) -> Result<Vec<ObjectInfo>> {
        self.inner.list(dir).await
    }
    async fn get(&self, path: &str) -> Result<Bytes> {
        if path == self.path {
            futures::future::pending::<()>().await;
        }
        self.inner.get(path).await
    }
    async fn get_stream(&self, path: &str) -> Result<ObjectStream> {
        if path == self.path {
            futures::future::pending::<()>().await;
        }
        self.inner.get_stream(path).await
    }
    async fn put(&self, path: &str, data: Bytes) -> Result<ObjectInfo> {
        self.inner.put(path, data).await
    }
    async fn put_file(&self, path: &str, local: &Path) -> Result<ObjectInfo> {
        self.inner.put_file(path, local).await
    }
    async fn delete(&self, path: &str) -> Result<()> {
        self.inner.delete(path).await
    }
    async fn delete_all(&self, dir: &str) -> Result<()> {
        self.inner.delete_all(dir).await
    }
}

#[tokio::test]
async fn cancelled_restore_leaves_nothing() {
    let f = fixture(4096).await;
    let replicas = vec![ReplicaSource {
        name: "stall".into(),
        client: Arc::new(Stall {
            inner: f.client.clone(),
            path: f.segment_path(2),
        }),
    }];
    let out_dir = f.out_dir();
    let out = out_dir.join("restored.db");
    let temp_seen = Mutex::new(false);
    let stalled = tokio::sync::Notify::new();
    let progress = |p: Progress| {
        if let Progress::Segment { done: 2, .. } = p {
            // Segments 0 and 1 are applied, segment 2 never arrives. The temporary
            // database exists while the restore runs.
            *temp_seen.lock().unwrap() = !dir_entries(&out_dir).is_empty();
            stalled.notify_one();
        }
    };
    let opts = RestoreOptions::default();
    let run = restore(&replicas, &out, &opts, &progress);
    tokio::select! {
        res = run => panic!("the restore cannot finish: {res:?}"),
        _ = stalled.notified() => {}
    }
    // `run` is dropped here, mid-restore.
    assert!(*temp_seen.lock().unwrap());
    assert_eq!(dir_entries(&out_dir), Vec::<String>::new());
}

#[tokio::test]
async fn apply_rejects_an_invalid_plan() {
    let f = fixture(4096).await;
    let mut p = plan(&f.replicas(), &RestoreOptions::default())
        .await
        .unwrap();
    p.segments.swap(0, 1);
    let out = f.out_dir().join("r.db");
    let err = apply(
        &f.replicas(),
        &p,
        &out,
        &RestoreOptions::default(),
        &no_progress(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");
    p.replica = "nope".into();
    assert!(
        apply(
            &f.replicas(),
            &p,
            &out,
            &RestoreOptions::default(),
            &no_progress()
        )
        .await
        .is_err()
    );
    assert_eq!(dir_entries(&f.out_dir()), Vec::<String>::new());
}

// ---- replica and generation selection (§3.1) ----
