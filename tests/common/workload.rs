//! A SQLite workload that knows which of its transactions committed, and the comparisons
//! of a database with what it should hold.

use super::*;

// ------------------------------------------------------------------------------------------
// The workload

/// One row of `t` as the tests know it: `v` and a hash of `blob`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub v: String,
    /// `None` for a NULL blob, else (length, FNV-1a hash).
    pub blob: Option<(usize, u64)>,
}

/// The expected contents of `t`, by id.
pub type Model = BTreeMap<i64, Row>;

/// An application writing to a database the way real ones do: WAL mode,
/// `synchronous=NORMAL`, a 5 s busy timeout, its own autocheckpoints and forced
/// checkpoints. It keeps [`Workload::model`], the contents of `t` as of its last
/// *committed* transaction: a transaction that fails is rolled back and leaves the model
/// alone.
pub struct Workload {
    pub conn: Connection,
    pub path: PathBuf,
    rng: XorShift,
    /// Contents of `t` after the last committed transaction.
    pub model: Model,
    next_id: i64,
    /// Transactions committed.
    pub commits: u64,
    /// Operations that failed (rolled back; the model is unchanged).
    pub failures: u64,
    /// Checkpoints that reported busy.
    pub busy_checkpoints: u64,
}

/// The busy timeout of the application's connection.
pub const APP_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

impl Workload {
    /// Opens (creating if needed) the database at `path` and the table `t`.
    pub fn open(path: &Path, seed: u64) -> Workload {
        let conn = Connection::open(path).expect("open app db");
        conn.busy_timeout(APP_BUSY_TIMEOUT).expect("busy_timeout");
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .expect("journal_mode");
        assert_eq!(mode, "wal");
        conn.execute_batch(
            "PRAGMA synchronous=NORMAL;
             CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v TEXT, blob BLOB);",
        )
        .expect("create t");
        let model = read_rows_conn(&conn).expect("read t");
        let next_id = model.keys().next_back().map_or(1, |k| k + 1);
        Workload {
            conn,
            path: path.to_path_buf(),
            rng: XorShift::new(seed),
            model,
            next_id,
            commits: 0,
            failures: 0,
            busy_checkpoints: 0,
        }
    }

    /// Runs one transaction; `f` changes the database and the pending copy of the model.
    /// The model takes the pending copy only if COMMIT succeeded.
    fn txn(
        &mut self,
        f: impl FnOnce(
            &rusqlite::Transaction<'_>,
            &mut Model,
            &mut XorShift,
            &mut i64,
        ) -> rusqlite::Result<()>,
    ) -> bool {
        let Workload {
            conn,
            rng,
            model,
            next_id,
            ..
        } = self;
        let mut pending = model.clone();
        let result = (|| {
            let tx = conn.transaction()?;
            f(&tx, &mut pending, rng, next_id)?;
            tx.commit()
        })();
        match result {
            Ok(()) => {
                *model = pending;
                self.commits += 1;
                true
            }
            Err(e) => {
                eprintln!("workload: transaction rolled back: {e}");
                self.failures += 1;
                false
            }
        }
    }

    fn make_blob(rng: &mut XorShift, big: bool) -> Option<Vec<u8>> {
        if big {
            // 10-20 KB: several overflow pages with 4 KiB pages.
            let n = rng.range(10_000, 20_000) as usize;
            Some(rng.bytes(n))
        } else if rng.chance(10) {
            None
        } else {
            let n = rng.below(200) as usize;
            Some(rng.bytes(n))
        }
    }

    fn row_of(v: String, blob: &Option<Vec<u8>>) -> Row {
        Row {
            v,
            blob: blob.as_ref().map(|b| (b.len(), fnv1a(b))),
        }
    }

    /// Inserts `n` rows in one transaction, with 10-20 KB blobs when `big`.
    pub fn insert(&mut self, n: usize, big: bool) -> bool {
        self.txn(|tx, m, rng, next_id| {
            let mut st = tx.prepare_cached("INSERT INTO t(id, v, blob) VALUES (?1, ?2, ?3)")?;
            for _ in 0..n {
                let id = *next_id;
                *next_id += 1;
                let v = format!("row-{id}-{:x}", rng.next_u64() & 0xffff);
                let blob = Self::make_blob(rng, big);
                st.execute(params![id, v, blob])?;
                m.insert(id, Self::row_of(v, &blob));
            }
            Ok(())
        })
    }

    /// Updates up to `n` random rows in one transaction (new `v`, sometimes a new blob).
    pub fn update(&mut self, n: usize) -> bool {
        self.txn(|tx, m, rng, _| {
            for _ in 0..n {
                if m.is_empty() {
                    break;
                }
                let id = *m
                    .keys()
                    .nth(rng.below(m.len() as u64) as usize)
                    .expect("non-empty");
                let v = format!("upd-{id}-{:x}", rng.next_u64() & 0xffffff);
                if rng.chance(50) {
                    let big = rng.chance(50);
                    let blob = Self::make_blob(rng, big);
                    tx.execute(
                        "UPDATE t SET v = ?2, blob = ?3 WHERE id = ?1",
                        params![id, v, blob],
                    )?;
                    m.insert(id, Self::row_of(v, &blob));
                } else {
                    tx.execute("UPDATE t SET v = ?2 WHERE id = ?1", params![id, v])?;
                    m.get_mut(&id).expect("row exists").v = v;
                }
            }
            Ok(())
        })
    }

    /// Deletes up to `n` random rows in one transaction.
    pub fn delete(&mut self, n: usize) -> bool {
        self.txn(|tx, m, rng, _| {
            for _ in 0..n {
                if m.is_empty() {
                    break;
                }
                let id = *m
                    .keys()
                    .nth(rng.below(m.len() as u64) as usize)
                    .expect("non-empty");
                tx.execute("DELETE FROM t WHERE id = ?1", params![id])?;
                m.remove(&id);
            }
            Ok(())
        })
    }

    /// One transaction mixing inserts (some big), updates and a delete: a "batch".
    pub fn batch(&mut self, big_rows: usize) -> bool {
        self.txn(|tx, m, rng, next_id| {
            for i in 0..big_rows + 2 {
                let id = *next_id;
                *next_id += 1;
                let v = format!("batch-{id}");
                let blob = Self::make_blob(rng, i < big_rows);
                tx.execute(
                    "INSERT INTO t(id, v, blob) VALUES (?1, ?2, ?3)",
                    params![id, v, blob],
                )?;
                m.insert(id, Self::row_of(v, &blob));
            }
            if m.len() > 4 {
                let id = *m
                    .keys()
                    .nth(rng.below(m.len() as u64 / 2) as usize)
                    .expect("non-empty");
                let v = format!("batch-upd-{id}-{:x}", rng.next_u64() & 0xffff);
                tx.execute("UPDATE t SET v = ?2 WHERE id = ?1", params![id, v])?;
                m.get_mut(&id).expect("row exists").v = v;
                let id = *m.keys().next().expect("non-empty");
                tx.execute("DELETE FROM t WHERE id = ?1", params![id])?;
                m.remove(&id);
            }
            Ok(())
        })
    }

    /// `VACUUM` (rewrites every page; one transaction).
    pub fn vacuum(&mut self) -> bool {
        match self.conn.execute_batch("VACUUM") {
            Ok(()) => {
                self.commits += 1;
                true
            }
            Err(e) => {
                eprintln!("workload: VACUUM failed: {e}");
                self.failures += 1;
                false
            }
        }
    }

    /// `PRAGMA wal_checkpoint(<mode>)` from the application; returns (busy, log, checkpointed).
    /// A replicator's read lock makes TRUNCATE/RESTART wait for the busy timeout, so this
    /// uses a short one (300 ms) to keep tests quick; a busy result is normal.
    pub fn checkpoint(&mut self, mode: &str) -> Option<(i64, i64, i64)> {
        self.conn
            .busy_timeout(Duration::from_millis(300))
            .expect("busy_timeout");
        let r = self
            .conn
            .query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            });
        self.conn
            .busy_timeout(APP_BUSY_TIMEOUT)
            .expect("busy_timeout");
        match r {
            Ok(t) => {
                if t.0 != 0 {
                    self.busy_checkpoints += 1;
                }
                Some(t)
            }
            Err(e) => {
                eprintln!("workload: checkpoint({mode}) failed: {e}");
                self.busy_checkpoints += 1;
                None
            }
        }
    }

    /// One random operation: mostly small transactions, sometimes big rows, multi-row
    /// batches, deletes and forced checkpoints.
    pub fn step(&mut self) {
        match self.rng.below(100) {
            0..=29 => {
                let n = self.rng.range(1, 3) as usize;
                self.insert(n, false);
            }
            30..=49 => {
                let n = self.rng.range(1, 2) as usize;
                self.insert(n, true);
            }
            50..=54 => {
                let n = self.rng.range(4, 10) as usize;
                self.insert(n, true);
            }
            55..=74 => {
                let n = self.rng.range(1, 4) as usize;
                self.update(n);
            }
            75..=89 => {
                let n = self.rng.range(1, 2) as usize;
                self.delete(n);
            }
            90..=95 => {
                self.checkpoint("PASSIVE");
            }
            _ => {
                self.checkpoint("TRUNCATE");
            }
        }
    }

    /// `steps` random operations with `pause` after each.
    pub fn run(&mut self, steps: usize, pause: Duration) {
        for _ in 0..steps {
            self.step();
            std::thread::sleep(pause);
        }
    }

    /// Random operations for `dur`, with `pause` after each.
    pub fn run_for(&mut self, dur: Duration, pause: Duration) {
        let start = Instant::now();
        while start.elapsed() < dur {
            self.step();
            std::thread::sleep(pause);
        }
    }

    /// Checks that the model is what the source database holds (a sanity check of the
    /// workload itself, so that a later mismatch is the replica's fault).
    #[track_caller]
    pub fn assert_model_matches_source(&self) {
        let got = read_rows_conn(&self.conn).expect("read source");
        if got != self.model {
            panic!(
                "workload model disagrees with the source database: {}",
                diff_models(&self.model, &got)
            );
        }
    }
}

// ------------------------------------------------------------------------------------------
// Comparing databases

fn read_rows_conn(conn: &Connection) -> rusqlite::Result<Model> {
    let mut st = conn.prepare("SELECT id, v, blob FROM t ORDER BY id")?;
    let rows = st.query_map([], |r| {
        let id: i64 = r.get(0)?;
        let v: Option<String> = r.get(1)?;
        let blob: Option<Vec<u8>> = r.get(2)?;
        Ok((id, Workload::row_of(v.unwrap_or_default(), &blob)))
    })?;
    rows.collect()
}

/// Opens the database at `path` (which must exist), checks `PRAGMA integrity_check` is
/// `ok`, and returns the contents of `t`.
pub fn read_db(path: &Path) -> Result<Model, String> {
    if !path.is_file() {
        return Err(format!("{} does not exist", path.display()));
    }
    let conn = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| format!("open {}: {e}", path.display()))?;
    let checks: Vec<String> = conn
        .prepare("PRAGMA integrity_check")
        .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect())
        .map_err(|e| format!("integrity_check on {}: {e}", path.display()))?;
    if checks != ["ok"] {
        return Err(format!("integrity_check on {}: {checks:?}", path.display()));
    }
    let has_t: Option<i64> = conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 't'",
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if has_t.is_none() {
        return Ok(Model::new());
    }
    read_rows_conn(&conn).map_err(|e| format!("read t from {}: {e}", path.display()))
}

/// A short description of how `got` differs from `want`.
pub fn diff_models(want: &Model, got: &Model) -> String {
    let missing: Vec<i64> = want
        .keys()
        .filter(|k| !got.contains_key(k))
        .copied()
        .collect();
    let extra: Vec<i64> = got
        .keys()
        .filter(|k| !want.contains_key(k))
        .copied()
        .collect();
    let changed: Vec<i64> = want
        .iter()
        .filter(|(k, r)| got.get(k).is_some_and(|g| g != *r))
        .map(|(k, _)| *k)
        .collect();
    let head = |v: &[i64]| {
        let mut s = format!("{:?}", &v[..v.len().min(8)]);
        if v.len() > 8 {
            s.push_str(" ...");
        }
        s
    };
    format!(
        "want {} rows, got {}; missing {} {}, unexpected {} {}, different {} {}",
        want.len(),
        got.len(),
        missing.len(),
        head(&missing),
        extra.len(),
        head(&extra),
        changed.len(),
        head(&changed)
    )
}

/// `Ok` when the database at `path` passes `integrity_check` and `t` is exactly `want`.
pub fn check_db(path: &Path, want: &Model) -> Result<(), String> {
    let got = read_db(path)?;
    if &got == want {
        Ok(())
    } else {
        Err(diff_models(want, &got))
    }
}

/// Panics unless the database at `path` passes `integrity_check` and `t` is exactly `want`.
#[track_caller]
pub fn assert_db(path: &Path, want: &Model, what: &str) {
    if let Err(e) = check_db(path, want) {
        panic!("{what}: {} does not match: {e}", path.display());
    }
}

/// Which of `states` the database at `path` equals (the last one, if several are equal).
pub fn which_state(path: &Path, states: &[Model]) -> Result<usize, String> {
    let got = read_db(path)?;
    states.iter().rposition(|m| *m == got).ok_or_else(|| {
        format!(
            "{} matches none of the {} recorded states; against the last: {}",
            path.display(),
            states.len(),
            diff_models(states.last().expect("states"), &got)
        )
    })
}
