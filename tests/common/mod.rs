//! Shared support for the integration tests: temp dirs, `litestream.yml` files, child
//! processes (`walship` and the real Litestream v0.3.13), a SQLite workload that knows which
//! of its transactions committed, restore helpers, comparisons, and a replica built by hand
//! in Litestream's layout.
//!
//! Everything here drives real components: the `walship` binary, the real `litestream`
//! binary, SQLite through rusqlite, and files on disk. Nothing is mocked.
#![allow(dead_code)]

mod fixture;
mod process;
mod workload;

// One `common::` namespace for the tests; a test binary uses only part of it.
#[allow(unused_imports)]
pub use fixture::*;
#[allow(unused_imports)]
pub use process::*;
#[allow(unused_imports)]
pub use workload::*;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{Read, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};

/// The `walship` binary under test.
pub const WALSHIP: &str = env!("CARGO_BIN_EXE_walship");

/// The Litestream version every compatibility test is pinned to.
pub const LITESTREAM_VERSION: &str = "v0.3.13";

/// How long one CLI invocation (restore, listing) may take before the test fails.
const CMD_TIMEOUT: Duration = Duration::from_secs(120);

/// How long a replicator may take to exit after SIGTERM (it runs a final sync first).
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

// ------------------------------------------------------------------------------------------
// Randomness

/// A tiny seeded PRNG (xorshift64*), so every random choice in a test can be replayed.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    /// A generator for `seed` (any value, 0 included).
    pub fn new(seed: u64) -> XorShift {
        // splitmix64 once, so that nearby seeds give unrelated streams and 0 is usable.
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        XorShift(if z == 0 { 0x2545_f491_4f6c_dd1d } else { z })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// A value in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `pct` percent.
    pub fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        v.truncate(n);
        v
    }
}

/// The seed for a randomized test: `WALSHIP_TEST_SEED` if set, else the clock. Printed, so a
/// failing run can be replayed.
pub fn test_seed(test: &str) -> u64 {
    let seed = match std::env::var("WALSHIP_TEST_SEED") {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("WALSHIP_TEST_SEED={s:?} is not a u64")),
        Err(_) => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_nanos() as u64,
    };
    eprintln!("{test}: seed {seed} (replay with WALSHIP_TEST_SEED={seed})");
    seed
}

/// FNV-1a, 64 bits: a stable content hash for blobs (stable across Rust versions, unlike
/// `DefaultHasher`).
pub fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

// ------------------------------------------------------------------------------------------
// Temp dirs

/// A temp directory for one test. Kept (and its path printed) when the test panics, so the
/// database, the replica and the process logs can be inspected.
pub struct TestDir {
    dir: tempfile::TempDir,
}

impl TestDir {
    /// A new empty directory whose name starts with `name`.
    pub fn new(name: &str) -> TestDir {
        let dir = tempfile::Builder::new()
            .prefix(&format!("walship-{name}-"))
            .tempdir()
            .expect("create temp dir");
        TestDir { dir }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A path inside the directory.
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// A new, empty subdirectory.
    pub fn subdir(&self, rel: impl AsRef<Path>) -> PathBuf {
        let p = self.join(rel);
        fs::create_dir_all(&p).expect("create subdir");
        p
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dir.disable_cleanup(true);
            eprintln!("test files kept in {}", self.dir.path().display());
        }
    }
}

/// Copies the directory tree `from` to `to` (created), as it is at this moment.
pub fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            fs::copy(e.path(), &dest).unwrap();
        }
    }
}

/// The names of the entries of `dir`, sorted.
pub fn dir_entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read dir {}: {e}", dir.display()))
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    v.sort();
    v
}

// ------------------------------------------------------------------------------------------
// litestream.yml

/// Settings for one database with one file replica.
#[derive(Debug, Clone)]
pub struct ConfigOpts {
    pub monitor_interval: &'static str,
    pub sync_interval: &'static str,
    /// `None` keeps Litestream's default (1m).
    pub checkpoint_interval: Option<&'static str>,
    /// `None` keeps Litestream's default (1000).
    pub min_checkpoint_page_count: Option<u32>,
    /// `None` leaves the name to default to the type (`file`).
    pub replica_name: Option<&'static str>,
}

impl Default for ConfigOpts {
    fn default() -> Self {
        ConfigOpts {
            monitor_interval: "100ms",
            sync_interval: "200ms",
            checkpoint_interval: Some("1s"),
            min_checkpoint_page_count: Some(64),
            replica_name: None,
        }
    }
}

/// The YAML of a `litestream.yml` for `db` replicated to the file replica `replica`.
pub fn config_yaml(db: &Path, replica: &Path, o: &ConfigOpts) -> String {
    let mut item = String::new();
    match o.replica_name {
        Some(n) => writeln!(item, "      - name: {n}\n        type: file").unwrap(),
        None => writeln!(item, "      - type: file").unwrap(),
    }
    writeln!(item, "        path: \"{}\"", s(replica)).unwrap();
    writeln!(item, "        sync-interval: {}", o.sync_interval).unwrap();
    config_yaml_with(db, &item, o)
}

/// The YAML of a `litestream.yml` for `db` with the database settings of `o` and the
/// replicas `replicas`, given as YAML list items indented for a `dbs:` entry (what
/// `servers::s3_replica_yaml` and the like return). `o.sync_interval` and `o.replica_name`
/// are the items' business.
pub fn config_yaml_with(db: &Path, replicas: &str, o: &ConfigOpts) -> String {
    let mut y = String::new();
    writeln!(y, "dbs:").unwrap();
    writeln!(y, "  - path: \"{}\"", s(db)).unwrap();
    writeln!(y, "    monitor-interval: {}", o.monitor_interval).unwrap();
    if let Some(c) = o.checkpoint_interval {
        writeln!(y, "    checkpoint-interval: {c}").unwrap();
    }
    if let Some(n) = o.min_checkpoint_page_count {
        writeln!(y, "    min-checkpoint-page-count: {n}").unwrap();
    }
    writeln!(y, "    replicas:").unwrap();
    y.push_str(replicas);
    y
}

/// Writes `dir/<name>` with [`config_yaml`] and returns its path.
pub fn write_config(dir: &Path, name: &str, db: &Path, replica: &Path, o: &ConfigOpts) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, config_yaml(db, replica, o)).expect("write config");
    p
}

/// Writes `dir/<name>` with [`config_yaml_with`] and returns its path.
pub fn write_config_with(
    dir: &Path,
    name: &str,
    db: &Path,
    replicas: &str,
    o: &ConfigOpts,
) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, config_yaml_with(db, replicas, o)).expect("write config");
    p
}

// ------------------------------------------------------------------------------------------
// Restoring and waiting

static OUT_SEQ: AtomicUsize = AtomicUsize::new(0);

/// A fresh, not yet existing output path `dir/<tag>-<n>/restored.db` (each in its own
/// directory, so leftovers of one restore never meet another).
pub fn fresh_output(dir: &Path, tag: &str) -> PathBuf {
    let n = OUT_SEQ.fetch_add(1, Ordering::Relaxed);
    let d = dir.join(format!("{tag}-{n}"));
    fs::create_dir_all(&d).expect("create restore dir");
    d.join("restored.db")
}

/// `<tool> restore -o <out> <extra...> <source>`: returns the output path and what the
/// command printed.
pub fn restore(tool: &Tool, source: &str, extra: &[&str], dir: &Path) -> (PathBuf, CmdOut) {
    let out = fresh_output(dir, &format!("restore-{}", tool.name()));
    let mut args: Vec<&str> = vec!["restore", "-o", s(&out)];
    args.extend_from_slice(extra);
    args.push(source);
    let r = tool.run(&args, dir);
    (out, r)
}

/// Restores with `tool` and checks the result is exactly `want`.
pub fn restore_and_check(
    tool: &Tool,
    source: &str,
    extra: &[&str],
    dir: &Path,
    want: &Model,
) -> Result<(), String> {
    let (out, r) = restore(tool, source, extra, dir);
    if !r.ok() {
        return Err(r.describe());
    }
    check_db(&out, want).map_err(|e| format!("{} restore {extra:?} {source}: {e}", tool.name()))
}

/// Restores with `tool` and panics unless the result is exactly `want`.
#[track_caller]
pub fn assert_restore(tool: &Tool, source: &str, extra: &[&str], dir: &Path, want: &Model) {
    if let Err(e) = restore_and_check(tool, source, extra, dir, want) {
        panic!("{} restore {extra:?} {source} failed: {e}", tool.name());
    }
}

/// Waits (30 s at most) until `rep`, a running `replicate`, has started a generation in
/// the file replica `replica`; fails if it exits first.
pub fn wait_first_generation(rep: &mut Proc, replica: &Path) {
    wait_until("a first generation", Duration::from_secs(30), || {
        rep.assert_running();
        let any = replica
            .join("generations")
            .read_dir()
            .ok()
            .and_then(|mut d| d.next());
        any.map(|_| ())
            .ok_or_else(|| "no generation yet".to_string())
    });
}

/// Polls `f` every 100 ms until it returns `Ok`, or panics after `timeout` with the last
/// error. Use instead of fixed sleeps.
#[track_caller]
pub fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) if start.elapsed() > timeout => {
                panic!("timed out after {timeout:?} waiting for {what}; last: {e}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Waits until `tool restore -config cfg db` gives exactly `want`, while `replicator` runs.
#[track_caller]
pub fn wait_replicated_cfg(
    tool: &Tool,
    cfg: &Path,
    db: &Path,
    dir: &Path,
    want: &Model,
    replicator: &mut Proc,
    timeout: Duration,
) -> Duration {
    try_wait_replicated_cfg(tool, cfg, db, dir, want, replicator, timeout)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Like [`wait_replicated_cfg`], returning the last mismatch instead of panicking on timeout
/// (it still panics if the replicator exits).
pub fn try_wait_replicated_cfg(
    tool: &Tool,
    cfg: &Path,
    db: &Path,
    dir: &Path,
    want: &Model,
    replicator: &mut Proc,
    timeout: Duration,
) -> Result<Duration, String> {
    let scratch = dir.join("wait");
    let start = Instant::now();
    loop {
        replicator.assert_running();
        let _ = fs::remove_dir_all(&scratch);
        let r = restore_and_check(tool, s(db), &["-config", s(cfg)], &scratch, want);
        let _ = fs::remove_dir_all(&scratch);
        match r {
            Ok(()) => return Ok(start.elapsed()),
            Err(e) if start.elapsed() > timeout => {
                return Err(format!(
                    "timed out after {timeout:?} waiting for {} to replicate {} rows; last: {e}",
                    replicator.name,
                    want.len()
                ));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Waits until a restore of `source` with `tool` gives exactly `want`, while `replicator`
/// keeps running (its exit fails the test at once, with its logs).
#[track_caller]
pub fn wait_replicated(
    tool: &Tool,
    source: &str,
    dir: &Path,
    want: &Model,
    replicator: &mut Proc,
    timeout: Duration,
) {
    let scratch = dir.join("wait");
    wait_until(
        &format!("{} to replicate {} rows", replicator.name, want.len()),
        timeout,
        || {
            replicator.assert_running();
            let _ = fs::remove_dir_all(&scratch);
            restore_and_check(tool, source, &[], &scratch, want)
        },
    );
    let _ = fs::remove_dir_all(&scratch);
}

/// RFC 3339 UTC with fractional seconds, as `restore -timestamp` takes it.
pub fn rfc3339(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format time")
}

/// The listing's lines split into whitespace-separated cells.
pub fn cells(listing: &str) -> Vec<Vec<String>> {
    listing
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

/// Every WAL index present in the file replica at `replica` (all generations), sorted.
pub fn replica_wal_indexes(replica: &Path) -> Vec<(String, u32)> {
    let mut v = Vec::new();
    let gens = replica.join("generations");
    for g in dir_entries(&gens) {
        let wal = gens.join(&g).join("wal");
        if !wal.is_dir() {
            continue;
        }
        for name in dir_entries(&wal) {
            if let Some((i, _)) = name
                .strip_suffix(".wal.lz4")
                .and_then(|st| st.split_once('_'))
                && let Ok(i) = u32::from_str_radix(i, 16)
            {
                v.push((g.clone(), i));
            }
        }
    }
    v.sort();
    v.dedup();
    v
}
