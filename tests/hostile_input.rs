//! Hostile and broken input (issue #7 §4), through the `walship` binary as a user runs it:
//! databases that are not SQLite, encrypted, locked or in rollback-journal mode; replica
//! directories holding names the layout does not allow; truncated, missing, reordered,
//! corrupt and oversized replica objects. Each must end in a clear error (or be ignored, for
//! foreign names) with nothing written where it should not be, and never in a wrong restore.
mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

/// Runs `walship replicate <db> <replica url>` for `secs` seconds, stops it with SIGTERM and
/// returns its logs (its exit status is not checked: a database that never opened fails the
/// final sync, which exits non-zero on purpose).
fn replicate_for(dir: &Path, db: &Path, replica: &Path, secs: u64) -> String {
    let bin = Tool::Walship.bin();
    let mut p = Proc::spawn(
        dir,
        "walship",
        &bin,
        &["replicate", s(db), &file_url(replica)],
    );
    std::thread::sleep(Duration::from_secs(secs));
    let _ = p.terminate();
    p.logs()
}

#[test]
fn files_that_are_not_sqlite_get_a_clear_error_and_stay_untouched() {
    let t = TestDir::new("hostile-not-sqlite");
    let mut rng = XorShift::new(test_seed("files_that_are_not_sqlite"));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "text.db",
            b"just some text, not a database at all\n".repeat(200),
        ),
        // What an encrypted database (SQLCipher) looks like from outside: no header.
        ("encrypted.db", rng.bytes(16 * 4096)),
    ];
    for (name, bytes) in cases {
        let db = t.join(name);
        fs::write(&db, &bytes).unwrap();
        let replica = t.join(format!("replica-{name}"));
        let logs = replicate_for(t.path(), &db, &replica, 2);
        assert!(
            logs.contains("is not a SQLite database (or is encrypted"),
            "{name}: the error should say what is wrong:\n{logs}"
        );
        assert_eq!(
            fs::read(&db).unwrap(),
            bytes,
            "{name} was modified by walship"
        );
        assert!(!replica.exists(), "{name}: a replica was written");
        for suffix in ["-wal", "-shm"] {
            let p = PathBuf::from(format!("{}{suffix}", db.display()));
            assert!(!p.exists(), "{name}: walship created {}", p.display());
        }
        let meta = t.join(format!(".{name}-litestream"));
        assert!(!meta.exists(), "{name}: walship created {}", meta.display());
    }
}

#[test]
fn a_locked_database_is_reported_then_replicated_once_released() {
    let t = TestDir::new("hostile-locked");
    let db = t.join("app.db");
    let replica = t.join("replica");
    let mut w = Workload::open(&db, test_seed("a_locked_database"));
    assert!(w.batch(3));
    let model = w.model.clone();
    drop(w);
    // An application holding the database exclusively (locking_mode=EXCLUSIVE keeps the
    // lock after its first write).
    let app = rusqlite::Connection::open(&db).unwrap();
    app.execute_batch("PRAGMA locking_mode=EXCLUSIVE; BEGIN IMMEDIATE; COMMIT;")
        .unwrap();
    let bin = Tool::Walship.bin();
    let mut p = Proc::spawn(
        t.path(),
        "walship",
        &bin,
        &["replicate", s(&db), &file_url(&replica)],
    );
    wait_until("the lock to be reported", Duration::from_secs(20), || {
        p.assert_running();
        let l = p.logs();
        if l.contains("is locked by another connection") {
            Ok(())
        } else {
            Err(l)
        }
    });
    assert!(
        !replica.join("generations").exists(),
        "nothing can be replicated while the lock is held"
    );
    drop(app);
    // walship keeps trying (monitor-interval poll) and catches up once the lock is gone.
    wait_replicated(
        &Tool::Walship,
        &file_url(&replica),
        t.path(),
        &model,
        &mut p,
        Duration::from_secs(30),
    );
    p.stop();
}

/// A replica written by walship with several WAL segments in one generation.
struct Built {
    _t: TestDir,
    dir: PathBuf,
    replica: PathBuf,
    model: Model,
}

fn build_replica(test: &str) -> Built {
    let t = TestDir::new(test);
    let dir = t.path().to_path_buf();
    let db = t.join("app.db");
    let replica = t.join("replica");
    let opts = ConfigOpts {
        checkpoint_interval: None,
        min_checkpoint_page_count: Some(100_000),
        ..ConfigOpts::default()
    };
    let cfg = write_config(t.path(), "litestream.yml", &db, &replica, &opts);
    let mut w = Workload::open(&db, test_seed(test));
    assert!(w.batch(2));
    let mut p = Proc::replicate(t.path(), &Tool::Walship, &cfg);
    let url = file_url(&replica);
    for _ in 0..4 {
        assert!(w.batch(2));
        wait_replicated(
            &Tool::Walship,
            &url,
            t.path(),
            &w.model,
            &mut p,
            Duration::from_secs(30),
        );
    }
    p.stop();
    let model = w.model.clone();
    Built {
        _t: t,
        dir,
        replica,
        model,
    }
}

fn only_generation(replica: &Path) -> PathBuf {
    let gens: Vec<PathBuf> = fs::read_dir(replica.join("generations"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(gens.len(), 1, "one generation expected: {gens:?}");
    gens.into_iter().next().unwrap()
}

fn segments(generation: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(generation.join("wal"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".wal.lz4"))
        .collect();
    v.sort();
    v
}

/// Restores `url` into a fresh directory and asserts that it fails, leaves that directory
/// empty, and (unless `needle` is empty) mentions `needle` in its output.
#[track_caller]
fn assert_restore_fails(dir: &Path, url: &str, needle: &str, what: &str) {
    let (out, r) = restore(&Tool::Walship, url, &[], dir);
    assert!(!r.ok(), "{what}: restore should fail: {}", r.describe());
    assert!(
        r.combined().to_lowercase().contains(&needle.to_lowercase()),
        "{what}: error should mention {needle:?}: {}",
        r.describe()
    );
    let left = dir_entries(out.parent().unwrap());
    assert!(left.is_empty(), "{what}: restore left {left:?}");
}

#[test]
fn names_outside_the_layout_are_ignored_not_followed() {
    let b = build_replica("hostile-names");
    let url = file_url(&b.replica);
    let gens = b.replica.join("generations");
    let g = only_generation(&b.replica);
    // A file outside the replica that a path traversal would reach.
    let secret = b.dir.join("outside.txt");
    fs::write(&secret, b"do not touch").unwrap();
    // Generation names the layout does not allow: too long, not hex, a traversal.
    for bad in ["ffffffffffffffffff", "ZZZZZZZZZZZZZZZZ", "..", "0123"] {
        let d = gens.join(bad);
        let _ = fs::create_dir_all(d.join("snapshots"));
    }
    // Snapshot and segment names with absurd numbers or wrong shapes in the real generation.
    for bad in [
        "snapshots/ffffffffffffffffffff.snapshot.lz4",
        "snapshots/-0000001.snapshot.lz4",
        "snapshots/00000001.snapshot.lz4.tmp",
        "wal/99999999999999999999_00000000.wal.lz4",
        "wal/00000000_zzzzzzzz.wal.lz4",
        "wal/../../../../outside.txt.wal.lz4",
    ] {
        let p = g.join(bad);
        if let Some(parent) = p.parent() {
            let _ = fs::create_dir_all(parent);
        }
        let _ = fs::write(&p, b"garbage");
    }
    let listed = walship(&["generations", &url], &b.dir);
    listed.assert_ok();
    for bad in ["ffffffffffffffffff", "ZZZZZZZZZZZZZZZZ", "0123"] {
        assert!(
            !listed.combined().contains(bad),
            "generations lists {bad}: {}",
            listed.describe()
        );
    }
    walship(&["snapshots", &url], &b.dir).assert_ok();
    walship(&["wal", &url], &b.dir).assert_ok();
    assert_restore(&Tool::Walship, &url, &[], &b.dir, &b.model);
    assert_eq!(fs::read(&secret).unwrap(), b"do not touch");
}

#[test]
fn damaged_segments_fail_the_restore_and_leave_nothing() {
    let b = build_replica("hostile-segments");
    let url = file_url(&b.replica);
    let g = only_generation(&b.replica);
    let segs = segments(&g);
    assert!(segs.len() >= 3, "need several segments: {segs:?}");
    let victim = segs[segs.len() / 2].clone();
    let original = fs::read(&victim).unwrap();
    let scratch = b.dir.join("scratch");

    // Truncated.
    fs::write(&victim, &original[..original.len() / 2]).unwrap();
    assert_restore_fails(&scratch, &url, &victim_name(&victim), "truncated segment");
    // Corrupt: a flipped byte in the compressed body.
    let mut flipped = original.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x5a;
    fs::write(&victim, &flipped).unwrap();
    assert_restore_fails(&scratch, &url, &victim_name(&victim), "corrupt segment");
    // Oversized: valid LZ4, far more data than the segment's name allows (a decompression
    // bomb of zeros); must fail without writing it out.
    let bomb = walship::compress::compress(&vec![0u8; 64 << 20]);
    fs::write(&victim, &bomb).unwrap();
    assert_restore_fails(&scratch, &url, "", "oversized segment");
    // Missing: a gap in the offsets.
    fs::remove_file(&victim).unwrap();
    assert_restore_fails(&scratch, &url, "", "missing segment must not restore");
    // Reordered: the segment's bytes under another offset's name.
    let other = segs[segs.len() / 2 + 1].clone();
    let other_bytes = fs::read(&other).unwrap();
    fs::write(&victim, &other_bytes).unwrap();
    fs::write(&other, &original).unwrap();
    assert_restore_fails(&scratch, &url, "", "reordered segments must not restore");
    // Put things back: the replica restores exactly again.
    fs::write(&victim, &original).unwrap();
    fs::write(&other, &other_bytes).unwrap();
    assert_restore(&Tool::Walship, &url, &[], &b.dir, &b.model);
}

fn victim_name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn damaged_snapshots_fail_the_restore_and_leave_nothing() {
    let b = build_replica("hostile-snapshot");
    let url = file_url(&b.replica);
    let g = only_generation(&b.replica);
    let snaps: Vec<PathBuf> = fs::read_dir(g.join("snapshots"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    let snap = &snaps[0];
    let original = fs::read(snap).unwrap();
    let scratch = b.dir.join("scratch");
    fs::write(snap, &original[..original.len() - 9]).unwrap();
    assert_restore_fails(&scratch, &url, "snapshot", "truncated snapshot");
    fs::write(snap, b"").unwrap();
    assert_restore_fails(&scratch, &url, "", "empty snapshot");
    // Not a database inside valid LZ4.
    fs::write(snap, walship::compress::compress(&[7u8; 8192])).unwrap();
    assert_restore_fails(&scratch, &url, "", "snapshot that is not a database");
    fs::write(snap, &original).unwrap();
    assert_restore(&Tool::Walship, &url, &[], &b.dir, &b.model);
}

/// An application holding the write lock for long (a long write transaction) keeps walship
/// from checkpointing. Short spells are routine under a bulk writer and must not be logged
/// as errors (the compare harness saw `ERROR monitor error ... database is locked` after
/// one 1 s busy timeout, and the soak saw `ERROR scheduled snapshot failed ... database is
/// locked`); a long one is said once at warn level for each thing it holds up, with what
/// to look for, and walship catches up exactly once the lock is released.
#[test]
fn a_long_write_lock_is_a_warning_not_an_error_loop() {
    let t = TestDir::new("hostile-long-lock");
    let db = t.join("app.db");
    let replica = t.join("replica");
    // Scheduled snapshots fall due during the lock too (the soak's application ran
    // `wal_checkpoint(TRUNCATE)`, which holds the write lock while it waits for readers,
    // and each busy snapshot was an ERROR line).
    let yaml = config_yaml(
        &db,
        &replica,
        &ConfigOpts {
            min_checkpoint_page_count: Some(4),
            ..ConfigOpts::default()
        },
    )
    .replacen(
        "        sync-interval:",
        "        snapshot-interval: 2s\n        sync-interval:",
        1,
    );
    let cfg = t.join("litestream.yml");
    fs::write(&cfg, yaml).unwrap();
    let mut w = Workload::open(&db, test_seed("a_long_write_lock"));
    assert!(w.batch(3));
    let mut p = Proc::replicate(t.path(), &Tool::Walship, &cfg);
    wait_replicated(
        &Tool::Walship,
        &file_url(&replica),
        t.path(),
        &w.model,
        &mut p,
        Duration::from_secs(30),
    );
    // Enough new pages for a checkpoint to be due, then the lock, held for 14 s.
    assert!(w.batch(5));
    let app = rusqlite::Connection::open(&db).unwrap();
    app.execute_batch("BEGIN IMMEDIATE").unwrap();
    std::thread::sleep(Duration::from_secs(14));
    p.assert_running();
    let during = p.logs();
    app.execute_batch("ROLLBACK").unwrap();
    drop(app);
    assert!(w.batch(2));
    wait_replicated(
        &Tool::Walship,
        &file_url(&replica),
        t.path(),
        &w.model,
        &mut p,
        Duration::from_secs(30),
    );
    p.stop();
    let logs = p.logs();
    let errors: Vec<&str> = logs.lines().filter(|l| l.contains("ERROR")).collect();
    assert!(
        errors.is_empty(),
        "busy spells logged as errors:\n{}",
        errors.join("\n")
    );
    // Said once for each thing it holds up (checkpoints, the scheduled snapshot), at warn.
    for what in ["cannot checkpoint", "scheduled snapshot delayed"] {
        let warned: Vec<&str> = during
            .lines()
            .filter(|l| l.contains("stays locked by another connection") && l.contains(what))
            .collect();
        assert_eq!(
            warned.len(),
            1,
            "a 14 s lock should be said once at warn level ({what}):\n{during}"
        );
        assert!(warned[0].contains("WARN"), "{}", warned[0]);
    }
}
