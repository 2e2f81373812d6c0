//! Guards crash safety at chosen points and at random moments (issue #7, crash matrix).
//!
//! A writer process (python3's sqlite3, WAL mode) commits transactions whose contents are a
//! pure function of the highest id `N` they reach, and logs `try N` before each COMMIT and
//! `ok N` after it returns. `walship replicate` runs beside it with a file replica, short
//! sync, checkpoint, snapshot and retention intervals. Each round ends with walship dead:
//!
//! - named round: walship starts with `WALSHIP_FAULT=<point>@<n>` (see `src/fault.rs`) and
//!   SIGKILLs itself inside sync, snapshot, checkpoint, the WAL restart, retention or an
//!   atomic file write; a point not reached in time is counted and walship is killed;
//! - random round: walship is SIGKILLed after a random delay;
//! - in some rounds the writer is SIGKILLed too (alone, or at the same moment as walship)
//!   and restarted.
//!
//! While walship is down, a restore (walship's and the real Litestream v0.3.13's) must pass
//! `integrity_check`, hold exactly the state of some transaction the writer tried (every
//! row checked), and never go back from what an earlier restore showed. At the end a clean
//! walship run catches up and stops with SIGTERM, and both restores must hold exactly what
//! the source holds, which must include every transaction logged `ok`.
//!
//! Seeds: printed; replay with `WALSHIP_TEST_SEED=<seed>`. Rounds: `WALSHIP_CRASH_ROUNDS`
//! (default 23 for the CI run: every named point once, and random kills). The long run:
//!
//! ```text
//! WALSHIP_CRASH_ROUNDS=300 cargo test --test crash_matrix -- --ignored --nocapture
//! ```
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use rusqlite::OpenFlags;

/// The writer: commits forever, continuing from the `N` the database holds.
const WRITER_PY: &str = r#"
import random, sqlite3, sys, time
db, log, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng = random.Random(seed)
M = (1 << 64) - 1

def blob(i):
    n = 12000 + (i * 7919) % 8000 if i % 11 == 0 else (i * 31) % 300
    x = (i * 0x9E3779B97F4A7C15 + 1) & M
    out = bytearray()
    while len(out) < n:
        x ^= (x << 13) & M
        x ^= x >> 7
        x ^= (x << 17) & M
        out += x.to_bytes(8, "little")
    return bytes(out[:n])

con = sqlite3.connect(db, isolation_level=None, timeout=5)
con.execute("PRAGMA journal_mode=WAL")
con.execute("PRAGMA synchronous=NORMAL")
con.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v TEXT NOT NULL, b BLOB NOT NULL)")
con.execute("CREATE TABLE IF NOT EXISTS meta(k INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
con.execute("INSERT OR IGNORE INTO meta VALUES (0, 0)")
n = con.execute("SELECT n FROM meta WHERE k = 0").fetchone()[0]
logf = open(log, "a", buffering=1)
logf.write(f"start {n}\n")
while True:
    r = rng.random()
    if r < 0.02:
        mode = "TRUNCATE" if r < 0.005 else "PASSIVE"
        con.execute("PRAGMA busy_timeout=300")
        try:
            con.execute(f"PRAGMA wal_checkpoint({mode})").fetchall()
        except sqlite3.Error as e:
            print("checkpoint:", e, file=sys.stderr)
        con.execute("PRAGMA busy_timeout=5000")
        continue
    k = 40 if rng.random() < 0.03 else rng.randint(1, 4)
    new = n + k
    try:
        con.execute("BEGIN IMMEDIATE")
        con.executemany("INSERT INTO t VALUES (?, ?, ?)",
                        [(i, f"r{i}", blob(i)) for i in range(n + 1, new + 1)])
        con.execute("DELETE FROM t WHERE id <= ? AND id % 50 != 0", (new - 1000,))
        con.execute("UPDATE meta SET n = ? WHERE k = 0", (new,))
        logf.write(f"try {new}\n")
        con.execute("COMMIT")
    except sqlite3.Error as e:
        print("rolled back:", e, file=sys.stderr)
        try:
            con.execute("ROLLBACK")
        except sqlite3.Error:
            pass
        continue
    n = new
    logf.write(f"ok {new}\n")
    time.sleep(rng.uniform(0.002, 0.02))
"#;

/// The blob of row `i`, as the writer makes it.
fn blob(i: i64) -> Vec<u8> {
    let i = i as u64;
    let n = if i.is_multiple_of(11) {
        12000 + (i * 7919) % 8000
    } else {
        (i * 31) % 300
    } as usize;
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    out
}

/// The ids present after the transaction that reached `n`.
fn expected_ids(n: i64) -> impl Iterator<Item = i64> {
    (1..=n).filter(move |i| !(i % 50 != 0 && *i <= n - 1000))
}

/// Checks that the database at `path` passes `integrity_check` and is exactly the state
/// after the transaction that reached its `N`, every row and blob compared. Returns `N`.
fn check_state(path: &Path) -> Result<i64, String> {
    if !path.is_file() {
        return Err(format!("{} does not exist", path.display()));
    }
    let conn = rusqlite::Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE)
        .map_err(|e| format!("open {}: {e}", path.display()))?;
    let what = |e: rusqlite::Error| format!("{}: {e}", path.display());
    let checks: Vec<String> = conn
        .prepare("PRAGMA integrity_check")
        .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect())
        .map_err(what)?;
    if checks != ["ok"] {
        return Err(format!("integrity_check on {}: {checks:?}", path.display()));
    }
    let n: i64 = conn
        .query_row("SELECT n FROM meta WHERE k = 0", [], |r| r.get(0))
        .map_err(what)?;
    let mut st = conn
        .prepare("SELECT id, v, b FROM t ORDER BY id")
        .map_err(what)?;
    let mut rows = st.query([]).map_err(what)?;
    let mut want = expected_ids(n);
    loop {
        let got = rows.next().map_err(what)?;
        match (got, want.next()) {
            (None, None) => break,
            (Some(r), Some(id)) => {
                let (gid, v, b): (i64, String, Vec<u8>) = (
                    r.get(0).map_err(what)?,
                    r.get(1).map_err(what)?,
                    r.get(2).map_err(what)?,
                );
                if gid != id {
                    return Err(format!("N = {n}: expected row {id}, found row {gid}"));
                }
                if v != format!("r{id}") || b != blob(id) {
                    return Err(format!("N = {n}: row {id} has wrong contents"));
                }
            }
            (Some(r), None) => {
                let gid: i64 = r.get(0).map_err(what)?;
                return Err(format!("N = {n}: unexpected row {gid}"));
            }
            (None, Some(id)) => return Err(format!("N = {n}: row {id} missing")),
        }
    }
    Ok(n)
}

/// What the writer's log says: every `N` it tried to commit and every `N` whose COMMIT
/// returned.
fn read_log(path: &Path) -> (BTreeSet<i64>, BTreeSet<i64>) {
    let text = fs::read_to_string(path).unwrap_or_default();
    let (mut tried, mut ok) = (BTreeSet::from([0]), BTreeSet::from([0]));
    for line in text.lines() {
        let mut w = line.split(' ');
        match (w.next(), w.next().and_then(|n| n.parse::<i64>().ok())) {
            (Some("try"), Some(n)) => {
                tried.insert(n);
            }
            (Some("ok"), Some(n)) => {
                ok.insert(n);
            }
            _ => {}
        }
    }
    (tried, ok)
}

fn config(db: &Path, replica: &Path) -> String {
    config_with(
        db,
        replica,
        "checkpoint-interval: 1s\n    min-checkpoint-page-count: 32",
        "sync-interval: 100ms\n        snapshot-interval: 2s\n        retention: 3s\n        \
         retention-check-interval: 1s",
    )
}

/// A config with a 50 ms monitor interval, the database keys `db_keys` and one file replica
/// with the keys `replica_keys` (each a YAML block at its indentation).
fn config_with(db: &Path, replica: &Path, db_keys: &str, replica_keys: &str) -> String {
    format!(
        "dbs:
  - path: \"{}\"
    monitor-interval: 50ms
    {db_keys}
    replicas:
      - type: file
        path: \"{}\"
        {replica_keys}
",
        s(db),
        s(replica)
    )
}

/// How often each thing happened in one run.
#[derive(Default)]
struct Stats {
    /// Named crash points that fired, by name.
    fired: BTreeMap<&'static str, u32>,
    /// Named crash points not reached before the round's deadline, by name.
    missed: BTreeMap<&'static str, u32>,
    random_kills: u32,
    writer_kills: u32,
    restores_checked: u32,
}

struct Matrix {
    t: TestDir,
    db: PathBuf,
    log: PathBuf,
    cfg: PathBuf,
    url: String,
    script: PathBuf,
    seed: u64,
    writer: Option<Proc>,
    restorers: Vec<Tool>,
    /// The highest `N` a restore has shown, per restorer.
    seen: Vec<i64>,
    stats: Stats,
}

impl Matrix {
    fn new(test: &str, seed: u64) -> Matrix {
        let t = TestDir::new(test);
        let db = t.join("app.db");
        let replica = t.join("replica");
        let cfg = t.join("litestream.yml");
        fs::write(&cfg, config(&db, &replica)).unwrap();
        let script = t.join("writer.py");
        fs::write(&script, WRITER_PY).unwrap();
        let mut restorers = vec![Tool::Walship];
        if let Some(ls) = litestream(test) {
            restorers.push(Tool::Litestream(ls));
        }
        let seen = vec![-1; restorers.len()];
        Matrix {
            log: t.join("writer.log"),
            url: file_url(&replica),
            t,
            db,
            cfg,
            script,
            seed,
            writer: None,
            restorers,
            seen,
            stats: Stats::default(),
        }
    }

    fn start_writer(&mut self, round: u64) {
        let seed = (self.seed ^ round.wrapping_mul(0x9E37_79B9)).to_string();
        let w = Proc::spawn(
            self.t.path(),
            "writer",
            Path::new("python3"),
            &[s(&self.script), s(&self.db), s(&self.log), &seed],
        );
        self.writer = Some(w);
        // The database and its tables exist once the writer logged its start.
        let log = self.log.clone();
        let starts = fs::read_to_string(&log)
            .unwrap_or_default()
            .matches("start ")
            .count();
        wait_until("the writer to start", Duration::from_secs(20), || {
            self.writer.as_mut().unwrap().assert_running();
            let now = fs::read_to_string(&log)
                .unwrap_or_default()
                .matches("start ")
                .count();
            if now > starts {
                Ok(())
            } else {
                Err("no start line yet".into())
            }
        });
    }

    fn walship(&self, fault: Option<String>) -> Proc {
        let mut args: Vec<String> = Vec::new();
        if let Some(f) = fault {
            args.push(format!("WALSHIP_FAULT={f}"));
        }
        args.extend([WALSHIP.to_string(), "replicate".into(), "-config".into()]);
        args.push(s(&self.cfg).to_string());
        // `env` execs walship, so the pid is walship's own.
        Proc::spawn(self.t.path(), "walship-replicate", Path::new("env"), &args)
    }

    /// With walship down: every restorer must give a state the writer tried, at or past
    /// the one it showed before.
    fn check_restores(&mut self, round: u64) {
        for (i, tool) in self.restorers.iter().enumerate() {
            let (out, r) = restore(tool, &self.url, &[], self.t.path());
            if !r.ok() {
                // Before the first snapshot there is nothing to restore.
                assert!(
                    self.seen[i] < 0,
                    "round {round}: {} restore failed after it had succeeded: {}",
                    tool.name(),
                    r.describe()
                );
                continue;
            }
            let n = check_state(&out)
                .unwrap_or_else(|e| panic!("round {round}: {} restore: {e}", tool.name()));
            let (tried, _) = read_log(&self.log);
            assert!(
                tried.contains(&n),
                "round {round}: {} restore holds N = {n}, which the writer never tried",
                tool.name()
            );
            assert!(
                n >= self.seen[i],
                "round {round}: {} restore went back from N = {} to N = {n}",
                tool.name(),
                self.seen[i]
            );
            self.seen[i] = n;
            self.stats.restores_checked += 1;
            let _ = fs::remove_dir_all(out.parent().unwrap());
        }
    }

    fn run(&mut self, rounds: u64) {
        let mut rng = XorShift::new(self.seed);
        let mut points: Vec<&'static str> = walship::fault::POINTS.to_vec();
        self.start_writer(0);
        let mut next_point = points.len();
        for round in 1..=rounds {
            if self.writer.as_mut().is_none_or(|w| !w.is_running()) {
                self.start_writer(round);
            }
            let writer_too = rng.chance(25);
            let named = round % 3 != 0;
            let mut p = if named {
                if next_point == points.len() {
                    // A new random order of the points for each pass over them.
                    for i in (1..points.len()).rev() {
                        points.swap(i, rng.below(i as u64 + 1) as usize);
                    }
                    next_point = 0;
                }
                let point = points[next_point];
                next_point += 1;
                let rare = point.starts_with("retention")
                    || point.starts_with("generation")
                    || point.starts_with("snapshot");
                // Reached once, at a clean stop (SIGTERM), after the proof that lets the
                // next start go on with the generation is written (src/db/clean_stop.rs).
                let clean_stop = point.starts_with("clean_stop");
                let nth = if clean_stop {
                    1
                } else if rare {
                    rng.range(1, 2)
                } else {
                    rng.range(1, 25)
                };
                if point.starts_with("generation") {
                    // The application truncates the WAL while walship is down, so walship
                    // must start a new generation.
                    let c = rusqlite::Connection::open(&self.db).unwrap();
                    c.busy_timeout(Duration::from_secs(5)).unwrap();
                    let _ = c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
                }
                eprintln!("round {round}: crash point {point}@{nth}");
                let mut p = self.walship(Some(format!("{point}@{nth}")));
                if clean_stop {
                    std::thread::sleep(Duration::from_millis(rng.range(300, 1500)));
                    p.assert_running();
                    p.signal(libc::SIGTERM);
                }
                let start = Instant::now();
                while p.is_running() && start.elapsed() < Duration::from_secs(8) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                if p.is_running() {
                    eprintln!("round {round}: {point}@{nth} not reached in 8 s");
                    *self.stats.missed.entry(point).or_default() += 1;
                    p.kill9();
                } else if clean_stop
                    && !p
                        .logs()
                        .contains(&format!("walship: fault point {point} hit {nth}"))
                {
                    // A clean exit without a proof (the write lock or a complete checkpoint
                    // was not to be had): allowed, the next start checks the WAL as usual.
                    eprintln!("round {round}: clean stop without a proof");
                    *self.stats.missed.entry(point).or_default() += 1;
                } else {
                    let logs = p.logs();
                    assert!(
                        logs.contains(&format!("walship: fault point {point} hit {nth}")),
                        "round {round}: walship exited, but not at {point}@{nth}\n{logs}"
                    );
                    *self.stats.fired.entry(point).or_default() += 1;
                }
                p
            } else {
                let after = rng.range(200, 2500);
                eprintln!("round {round}: kill -9 after {after} ms");
                let mut p = self.walship(None);
                std::thread::sleep(Duration::from_millis(after));
                p.assert_running();
                p.kill9();
                self.stats.random_kills += 1;
                p
            };
            if writer_too {
                let w = self.writer.as_mut().unwrap();
                w.assert_running();
                w.kill9();
                self.stats.writer_kills += 1;
                eprintln!("round {round}: writer killed too");
            }
            p.kill9();
            self.check_restores(round);
            // Sometimes let the writer run on while walship is down.
            if rng.chance(30) {
                std::thread::sleep(Duration::from_millis(rng.range(100, 1000)));
            }
        }
        // The end: stop the writer, let a clean walship catch up, stop it with SIGTERM.
        if let Some(w) = self.writer.as_mut() {
            w.kill9();
        }
        let (tried, ok) = read_log(&self.log);
        let n_src = check_state(&self.db).unwrap_or_else(|e| panic!("source database: {e}"));
        let last_ok = *ok.last().unwrap();
        assert!(
            n_src >= last_ok && tried.contains(&n_src),
            "the source database holds N = {n_src}; the writer committed up to {last_ok}"
        );
        let mut p = self.walship(None);
        let url = self.url.clone();
        let scratch = self.t.join("catch-up");
        wait_until(
            "walship to catch up",
            Duration::from_secs(60),
            || -> Result<(), String> {
                p.assert_running();
                let _ = fs::remove_dir_all(&scratch);
                let (out, r) = restore(&Tool::Walship, &url, &[], &scratch);
                if !r.ok() {
                    return Err(r.describe());
                }
                match check_state(&out)? {
                    n if n == n_src => Ok(()),
                    n => Err(format!("restore holds N = {n}, the source {n_src}")),
                }
            },
        );
        p.stop();
        for tool in &self.restorers {
            let (out, r) = restore(tool, &self.url, &[], self.t.path());
            assert!(r.ok(), "final {} restore: {}", tool.name(), r.describe());
            let n =
                check_state(&out).unwrap_or_else(|e| panic!("final {} restore: {e}", tool.name()));
            assert_eq!(n, n_src, "final {} restore", tool.name());
            self.stats.restores_checked += 1;
        }
        let st = &self.stats;
        let fired: u32 = st.fired.values().sum();
        let missed: u32 = st.missed.values().sum();
        eprintln!(
            "crash matrix: {rounds} rounds, seed {}: {fired} named crash points fired ({} distinct), {missed} not reached, {} random kills, {} writer kills, {} restores checked, final N = {n_src} ({} commits logged)",
            self.seed,
            st.fired.len(),
            st.random_kills,
            st.writer_kills,
            st.restores_checked,
            ok.len() - 1
        );
        eprintln!("  fired: {:?}", st.fired);
        eprintln!("  not reached: {:?}", st.missed);
    }
}

fn rounds(default: u64) -> u64 {
    match std::env::var("WALSHIP_CRASH_ROUNDS") {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("WALSHIP_CRASH_ROUNDS={v:?} is not a number")),
        Err(_) => default,
    }
}

#[test]
fn crash_matrix_short() {
    let seed = test_seed("crash_matrix_short");
    Matrix::new("crash-matrix", seed).run(rounds(23));
}

#[test]
#[ignore = "long run (minutes): WALSHIP_CRASH_ROUNDS=300 cargo test --test crash_matrix -- --ignored"]
fn crash_matrix_long() {
    let seed = test_seed("crash_matrix_long");
    Matrix::new("crash-matrix-long", seed).run(rounds(300));
}

/// A file replica whose deletes stop working after `left` of them: a retention run cut
/// short by a crash.
#[derive(Debug)]
struct CutShort {
    inner: walship::backend::file::FileClient,
    left: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl walship::backend::ReplicaClient for CutShort {
    fn type_name(&self) -> &'static str {
        "file"
    }
    fn location(&self) -> String {
        self.inner.location()
    }
    async fn list(&self, dir: &str) -> walship::Result<Vec<walship::backend::ObjectInfo>> {
        self.inner.list(dir).await
    }
    async fn get(&self, path: &str) -> walship::Result<bytes::Bytes> {
        self.inner.get(path).await
    }
    async fn put(
        &self,
        path: &str,
        data: bytes::Bytes,
    ) -> walship::Result<walship::backend::ObjectInfo> {
        self.inner.put(path, data).await
    }
    async fn get_stream(&self, path: &str) -> walship::Result<walship::backend::ObjectStream> {
        self.inner.get_stream(path).await
    }
    async fn put_file(
        &self,
        path: &str,
        local: &Path,
    ) -> walship::Result<walship::backend::ObjectInfo> {
        self.inner.put_file(path, local).await
    }
    async fn delete(&self, path: &str) -> walship::Result<()> {
        use std::sync::atomic::Ordering;
        if self
            .left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_err()
        {
            return Err(walship::Error::Config("crashed".into()));
        }
        self.inner.delete(path).await
    }
    async fn delete_all(&self, dir: &str) -> walship::Result<()> {
        self.inner.delete_all(dir).await
    }
}

/// Regression (found by the crash matrix, round 13 of seed 1795315730483303495): a crash
/// between retention deletes left an index whose offset-0 segment was gone while a later
/// one stayed, and Litestream then refused to restore the whole generation ("missing
/// initial wal segment"). Cut a real retention run short after every few deletes: each
/// index must still start at offset 0, and both restores must give the source.
#[test]
fn retention_cut_short_leaves_litestream_restorable() {
    let seed = test_seed("retention_cut_short");
    let t = TestDir::new("retention-cut-short");
    let db = t.join("app.db");
    let replica = t.join("replica");
    let cfg = t.join("litestream.yml");
    fs::write(
        &cfg,
        config_with(
            &db,
            &replica,
            "checkpoint-interval: 200ms\n    min-checkpoint-page-count: 8",
            "sync-interval: 50ms\n        snapshot-interval: 700ms\n        retention: 24h",
        ),
    )
    .unwrap();
    let mut w = Workload::open(&db, seed);
    w.insert(5, true);
    let mut p = Proc::replicate(t.path(), &Tool::Walship, &cfg);
    // Several snapshots and many indexes, most of them with more than one segment.
    w.run_for(Duration::from_secs(4), Duration::from_millis(15));
    wait_replicated(
        &Tool::Walship,
        &file_url(&replica),
        t.path(),
        &w.model,
        &mut p,
        Duration::from_secs(30),
    );
    p.stop();

    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = walship::backend::file::FileClient::new(&replica);
    let listing = rt.block_on(walship::retention::list_all(&client)).unwrap();
    let current = listing.last().map(|(g, _)| *g);
    let plan = walship::retention::plan(&listing, current, std::time::SystemTime::now());
    let deletes = plan.snapshots.len() + plan.segments.len();
    let split = plan
        .segments
        .iter()
        .filter(|s| s.offset != 0)
        .filter(|s| {
            plan.segments
                .iter()
                .any(|z| z.index == s.index && z.offset == 0)
        })
        .count();
    assert!(
        split >= 2,
        "the replica needs indexes with several segments to delete, got {split} ({deletes} deletes planned)"
    );
    let ls = litestream("retention_cut_short_leaves_litestream_restorable");
    let mut cuts: Vec<usize> = vec![1, 2, 3, deletes / 3, deletes / 2, deletes - 1];
    cuts.dedup();
    for cut in cuts.into_iter().filter(|c| *c < deletes) {
        let copy = t.join(format!("cut-{cut}"));
        copy_tree(&replica, &copy);
        let c = CutShort {
            inner: walship::backend::file::FileClient::new(&copy),
            left: cut.into(),
        };
        assert!(
            rt.block_on(walship::retention::execute(&c, &plan)).is_err(),
            "the cut after {cut} of {deletes} deletes did not stop retention"
        );
        let after = rt.block_on(walship::retention::list_all(&c)).unwrap();
        for (g, l) in &after {
            let mut first: BTreeMap<u32, u32> = BTreeMap::new();
            for s in &l.segments {
                first.entry(s.index).or_insert(s.offset);
            }
            for (index, offset) in first {
                assert_eq!(
                    offset, 0,
                    "cut after {cut} deletes: generation {g} index {index:08x} starts at offset {offset}"
                );
            }
        }
        let url = file_url(&copy);
        assert_restore(&Tool::Walship, &url, &[], t.path(), &w.model);
        if let Some(ls) = &ls {
            assert_restore(&Tool::Litestream(ls.clone()), &url, &[], t.path(), &w.model);
        }
    }
}

/// Regression (crash matrix long runs, seeds 1795319264158059902 round 7 and
/// 1795320090066745890 round 93): killed right after a *scheduled* snapshot was uploaded,
/// the replica held a snapshot newer than its segments, and a restore replayed older page
/// versions over it (integrity_check failed). The replica now uploads the segments up to
/// the snapshot's position first. Several scheduled snapshots under a steady writer, each
/// followed at once by a kill; every restore must be a committed state.
#[test]
fn killed_after_a_scheduled_snapshot_restores_a_committed_state() {
    let test = "killed_after_a_scheduled_snapshot";
    let t = TestDir::new("scheduled-snapshot-kill");
    let db = t.join("app.db");
    let replica = t.join("replica");
    let url = file_url(&replica);
    let cfg = t.join("litestream.yml");
    let opts = ConfigOpts {
        checkpoint_interval: None,
        min_checkpoint_page_count: Some(100_000),
        ..ConfigOpts::default()
    };
    let yaml = config_yaml(&db, &replica, &opts).replacen(
        "        sync-interval:",
        "        snapshot-interval: 1s\n        sync-interval:",
        1,
    );
    fs::write(&cfg, yaml).unwrap();
    let mut w = Workload::open(&db, test_seed(test));
    assert!(w.insert(5, true));
    let mut history = vec![w.model.clone()];
    let bin = Tool::Walship.bin();
    for round in 0..4 {
        // The first snapshot of a run is the generation's (or none, when it goes on); the
        // second one a run uploads is a scheduled one.
        let mut p = Proc::spawn(
            t.path(),
            "walship-replicate",
            Path::new("env"),
            &[
                "WALSHIP_FAULT=snapshot.after_upload@2",
                s(&bin),
                "replicate",
                "-config",
                s(&cfg),
            ],
        );
        let start = std::time::Instant::now();
        while p.is_running() && start.elapsed() < Duration::from_secs(20) {
            assert!(w.batch(1));
            history.push(w.model.clone());
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            !p.is_running(),
            "round {round}: the fault point was never reached\n{}",
            p.logs()
        );
        let (out, r) = restore(&Tool::Walship, &url, &[], t.path());
        assert!(r.ok(), "round {round}: {}", r.describe());
        if let Err(e) = which_state(&out, &history) {
            panic!("round {round}: restore after the kill is not a committed state: {e}");
        }
        if let Some(ls) = litestream(test) {
            let (out, r) = restore(&Tool::Litestream(ls), &url, &[], t.path());
            assert!(r.ok(), "round {round}: litestream: {}", r.describe());
            if let Err(e) = which_state(&out, &history) {
                panic!("round {round}: litestream's restore is not a committed state: {e}");
            }
        }
    }
}
