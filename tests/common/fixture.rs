//! A replica built by hand in Litestream's layout, with known contents and times.

use super::*;

// ------------------------------------------------------------------------------------------
// A replica built by hand in Litestream's layout

/// A file replica written directly in Litestream v0.3.13's layout (spec §1) from a real
/// SQLite database, with chosen file mtimes, so restore results are known exactly:
///
/// ```text
/// generations/<g>/snapshots/00000000.snapshot.lz4   mtime base+0s   -> states[0]
/// generations/<g>/wal/00000000_00000000.wal.lz4     mtime base+10s  -> states[1]
/// generations/<g>/wal/00000000_<off>.wal.lz4        mtime base+20s  -> states[2]
/// generations/<g>/wal/00000001_00000000.wal.lz4     mtime base+30s  -> states[3]
/// ```
pub struct Fixture {
    pub replica: PathBuf,
    pub generation: String,
    /// `t` after the snapshot alone, then after each segment.
    pub states: Vec<Model>,
    /// The mtime of the snapshot (a whole second, two minutes ago).
    pub base: SystemTime,
}

impl Fixture {
    /// `base + secs` (`secs` may be negative) as an RFC 3339 timestamp.
    pub fn at(&self, secs: f64) -> String {
        let d = Duration::from_secs_f64(secs.abs());
        rfc3339(if secs < 0.0 {
            self.base - d
        } else {
            self.base + d
        })
    }
}

fn write_object(path: &Path, data: &[u8], mtime: SystemTime) {
    fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    fs::write(path, walship::compress::compress(data)).expect("write object");
    File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(mtime))
        .expect("set mtime");
}

fn wal_bytes(db: &Path) -> Vec<u8> {
    let mut p = db.as_os_str().to_owned();
    p.push("-wal");
    fs::read(PathBuf::from(p)).unwrap_or_default()
}

/// Builds the [`Fixture`] replica under `dir/fixture-replica`.
pub fn build_fixture(dir: &Path, seed: u64) -> Fixture {
    let src = dir.join("fixture-src");
    fs::create_dir_all(&src).expect("mkdir");
    let db = src.join("src.db");
    let mut w = Workload::open(&db, seed);
    w.conn
        .execute_batch("PRAGMA wal_autocheckpoint = 0")
        .expect("autocheckpoint off");
    let mut states = Vec::new();

    // Snapshot: the raw database file right after a TRUNCATE checkpoint (WAL empty).
    assert!(w.insert(3, true) && w.insert(3, false));
    let ck = w.checkpoint("TRUNCATE").expect("checkpoint");
    assert_eq!(ck.0, 0, "fixture checkpoint busy");
    assert!(wal_bytes(&db).is_empty(), "WAL not truncated");
    let snapshot = fs::read(&db).expect("read db");
    states.push(w.model.clone());

    // Index 0, segment at offset 0: WAL header + the frames of one transaction.
    assert!(w.insert(2, true));
    let w1 = wal_bytes(&db);
    states.push(w.model.clone());
    // Index 0, second segment: the frames appended by two more transactions.
    assert!(w.update(2) && w.delete(1) && w.insert(1, true));
    let w2 = wal_bytes(&db);
    assert!(
        w2.len() > w1.len() && w2.starts_with(&w1),
        "WAL did not grow in place"
    );
    states.push(w.model.clone());
    // Index 1: a new WAL cycle after another TRUNCATE checkpoint.
    let ck = w.checkpoint("TRUNCATE").expect("checkpoint");
    assert_eq!(ck.0, 0, "fixture checkpoint busy");
    assert!(w.insert(2, true) && w.update(1));
    let w3 = wal_bytes(&db);
    states.push(w.model.clone());

    // Every segment must end on a commit frame (spec §1.4).
    use walship::sqlite::wal::{WalHeader, scan_frames};
    for (whole, from) in [(&w1, 32usize), (&w2, w1.len()), (&w3, 32)] {
        let h = WalHeader::parse(whole).expect("fixture WAL header");
        let sc = scan_frames(&whole[32..], &h, h.checksum);
        assert_eq!(
            32 + sc.committed_len as usize,
            whole.len(),
            "fixture WAL ends on a commit"
        );
        assert!(from <= whole.len());
    }

    let mut rng = XorShift::new(seed ^ 0x5eed);
    let generation = format!("{:016x}", rng.next_u64());
    let replica = dir.join("fixture-replica");
    let g = replica.join("generations").join(&generation);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let base = UNIX_EPOCH + Duration::from_secs(now - 120);
    let at = |secs| base + Duration::from_secs(secs);
    write_object(&g.join("snapshots/00000000.snapshot.lz4"), &snapshot, at(0));
    write_object(&g.join("wal/00000000_00000000.wal.lz4"), &w1, at(10));
    write_object(
        &g.join(format!("wal/00000000_{:08x}.wal.lz4", w1.len())),
        &w2[w1.len()..],
        at(20),
    );
    write_object(&g.join("wal/00000001_00000000.wal.lz4"), &w3, at(30));
    Fixture {
        replica,
        generation,
        states,
        base,
    }
}

/// Where walship keeps the proof of a clean stop for `db` (default meta directory).
pub fn clean_stop_proof(db: &Path) -> PathBuf {
    walship::db::DbOptions::new(db).clean_stop_proof()
}

/// Removes the proof a clean stop of walship left for `db`, which must exist: walship then
/// treats its next start as after a crash.
pub fn forget_clean_stop(db: &Path) {
    let p = clean_stop_proof(db);
    fs::remove_file(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
}
