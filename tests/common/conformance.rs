//! The `ReplicaClient` contract (src/backend/mod.rs) as checks that take a [`Target`] (a
//! client under test, and how to reach it) and return what failed instead of panicking, so
//! that `tests/backend_conformance.rs` runs every check against every backend and lists all
//! the failures at once.
//!
//! Include it next to `mod common;`: `#[path = "common/conformance.rs"] mod checks;`.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use walship::backend::{self, ReplicaClient};
use walship::{Generation, Pos, layout};

use crate::common::{self, XorShift};

/// How far a store's `modified` may be from the time of the write (stores keep whole
/// seconds, clocks are the same machine's).
const CLOCK_SLACK: Duration = Duration::from_secs(3);

pub type CheckResult = Result<(), String>;

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

/// Maps a walship error into a check failure naming the call.
trait Ctx<T> {
    fn ctx(self, what: impl std::fmt::Display) -> Result<T, String>;
}

impl<T> Ctx<T> for walship::Result<T> {
    fn ctx(self, what: impl std::fmt::Display) -> Result<T, String> {
        self.map_err(|e| format!("{what}: unexpected error: {e} ({e:?})"))
    }
}

fn payload(rng: &mut XorShift, n: usize) -> Bytes {
    Bytes::from(rng.bytes(n))
}

fn describe(b: &[u8]) -> String {
    format!("{} bytes (fnv {:016x})", b.len(), common::fnv1a(b))
}

/// `modified` must lie within [from - slack, to + slack].
fn check_time(what: &str, t: SystemTime, from: SystemTime, to: SystemTime) -> CheckResult {
    let lo = from - CLOCK_SLACK;
    let hi = to + CLOCK_SLACK;
    ensure!(
        t >= lo && t <= hi,
        "{what}: modified {} is not within {CLOCK_SLACK:?} of the write window {}..{}",
        common::rfc3339(t),
        common::rfc3339(from),
        common::rfc3339(to)
    );
    Ok(())
}

/// What a backend under test is, for the suite.
pub struct Target<'a> {
    pub name: &'static str,
    /// The client under test.
    pub client: &'a dyn ReplicaClient,
    /// Where test objects are written: the client itself, or (read-only clients) a file
    /// client on the directory the server serves.
    pub seed: &'a dyn ReplicaClient,
    /// A client whose root is the client's root with `x` appended (`.../confx`): what it
    /// writes must stay invisible to the client.
    pub sibling: Option<&'a dyn ReplicaClient>,
    pub writable: bool,
    /// A secret that must never appear in `location()`.
    pub secret: Option<&'a str>,
}

// ------------------------------------------------------------------------------------------
// The checks

pub async fn location_has_no_secret(t: &Target<'_>) -> CheckResult {
    let loc = t.client.location();
    ensure!(!loc.is_empty(), "location() is empty");
    if let Some(s) = t.secret {
        ensure!(!loc.contains(s), "location() {loc:?} contains the secret");
        let dbg = format!("{:?}", t.client);
        ensure!(
            !dbg.contains(s),
            "Debug of the client contains the secret: {dbg}"
        );
    }
    Ok(())
}

/// Objects written at layout paths come back from `generations`/`snapshots`/`wal_segments`,
/// sorted, with their sizes and times; names that are not layout names are ignored.
pub async fn layout_helpers(t: &Target<'_>) -> CheckResult {
    let mut rng = XorShift::new(11);
    let g1 = Generation(0x0123_4567_89ab_cdef);
    let g2 = Generation(0xfedc_ba98_7654_3210);
    let from = SystemTime::now();
    let mut snaps = Vec::new();
    // Written out of order on purpose.
    for index in [0x10u32, 0, 2] {
        let raw = rng.bytes(3000 + index as usize);
        let data = Bytes::from(walship::compress::compress(&raw));
        t.seed
            .put(&layout::snapshot_path(g1, index), data.clone())
            .await
            .ctx(format!("put snapshot {index}"))?;
        snaps.push((index, data.len() as u64, raw));
    }
    snaps.sort_by_key(|s| s.0);
    let mut segs = Vec::new();
    for (index, offset) in [(1u32, 0u32), (0, 0x1000), (0x10, 0x20), (0, 0)] {
        let raw = rng.bytes(500 + offset as usize % 300);
        let data = Bytes::from(walship::compress::compress(&raw));
        t.seed
            .put(&layout::wal_segment_path(g1, index, offset), data.clone())
            .await
            .ctx(format!("put wal {index}/{offset}"))?;
        segs.push((index, offset, data.len() as u64, raw));
    }
    segs.sort_by_key(|s| (s.0, s.1));
    t.seed
        .put(
            &layout::snapshot_path(g2, 0),
            Bytes::from(walship::compress::compress(b"g2")),
        )
        .await
        .ctx("put g2 snapshot")?;
    // Junk: names Litestream ignores.
    let junk = [
        "generations/zz/snapshots/00000000.snapshot.lz4".to_string(),
        "generations/0123456789ABCDEF/snapshots/00000000.snapshot.lz4".to_string(),
        "generations/0123456789abcde/snapshots/00000000.snapshot.lz4".to_string(),
        // An object (not a directory) with a generation's name.
        "generations/aaaaaaaaaaaaaaaa".to_string(),
        format!("{}.tmp", layout::snapshot_path(g1, 1)),
        format!("{}.tmp", layout::wal_segment_path(g1, 0, 0x2000)),
        format!("{}/junk.txt", layout::wal_dir(g1)),
        format!("{}/0000001.snapshot.lz4", layout::snapshots_dir(g1)),
        format!("{}/00000003.SNAPSHOT.LZ4", layout::snapshots_dir(g1)),
        format!("{}/00000000-00000000.wal.lz4", layout::wal_dir(g1)),
        // A directory where a snapshot would be.
        format!("{}/00000005.snapshot.lz4/x", layout::snapshots_dir(g1)),
    ];
    for j in &junk {
        t.seed
            .put(j, Bytes::from_static(b"junk"))
            .await
            .ctx(format!("put junk {j}"))?;
    }
    let to = SystemTime::now();

    let gens = backend::generations(t.client).await.ctx("generations")?;
    ensure!(
        gens == vec![g1, g2],
        "generations: want [{g1}, {g2}], got {gens:?}"
    );
    let got = backend::snapshots(t.client, g1).await.ctx("snapshots")?;
    let got_idx: Vec<(u32, u64)> = got.iter().map(|s| (s.index, s.size)).collect();
    let want_idx: Vec<(u32, u64)> = snaps.iter().map(|s| (s.0, s.1)).collect();
    ensure!(
        got_idx == want_idx,
        "snapshots({g1}) (index, size): want {want_idx:?}, got {got_idx:?}"
    );
    for s in &got {
        ensure!(
            s.generation == g1,
            "snapshot {s:?} has the wrong generation"
        );
        check_time(&format!("snapshot {}", s.index), s.created, from, to)?;
    }
    let got = backend::wal_segments(t.client, g1)
        .await
        .ctx("wal_segments")?;
    let got_idx: Vec<(u32, u32, u64)> = got.iter().map(|s| (s.index, s.offset, s.size)).collect();
    let want_idx: Vec<(u32, u32, u64)> = segs.iter().map(|s| (s.0, s.1, s.2)).collect();
    ensure!(
        got_idx == want_idx,
        "wal_segments({g1}) (index, offset, size): want {want_idx:?}, got {got_idx:?}"
    );
    for s in &got {
        check_time(
            &format!("wal {}/{}", s.index, s.offset),
            s.created,
            from,
            to,
        )?;
    }
    let g2_snaps = backend::snapshots(t.client, g2).await.ctx("snapshots g2")?;
    ensure!(
        g2_snaps.len() == 1 && g2_snaps[0].index == 0,
        "snapshots({g2}): {g2_snaps:?}"
    );
    let g2_wal = backend::wal_segments(t.client, g2).await.ctx("wal g2")?;
    ensure!(
        g2_wal.is_empty(),
        "wal_segments({g2}) of no wal dir: {g2_wal:?}"
    );

    // Objects read back through the layout helpers decompress to what was written.
    let (idx, _, raw) = &snaps[1];
    let back = backend::read_decompressed(t.client, &layout::snapshot_path(g1, *idx))
        .await
        .ctx("read_decompressed snapshot")?;
    ensure!(
        &back == raw,
        "snapshot {idx} decompressed to {}, want {}",
        describe(&back),
        describe(raw)
    );
    let last = segs.last().expect("segments");
    let pos = backend::replica_position(t.client, g1)
        .await
        .ctx("replica_position")?;
    let want = Pos::new(g1, last.0, u64::from(last.1) + last.3.len() as u64);
    ensure!(
        pos == Some(want),
        "replica_position({g1}): want {want:?}, got {pos:?}"
    );
    Ok(())
}

pub async fn put_then_get(t: &Target<'_>) -> CheckResult {
    let mut rng = XorShift::new(1);
    for (i, n) in [1usize, 0, 1000, 200_000, 6 << 20].into_iter().enumerate() {
        let path = format!("c/put/obj{i}.bin");
        let data = payload(&mut rng, n);
        let from = SystemTime::now();
        let info = t
            .seed
            .put(&path, data.clone())
            .await
            .ctx(format!("put {path} ({n} bytes)"))?;
        let to = SystemTime::now();
        if t.writable {
            let want_name = format!("obj{i}.bin");
            ensure!(
                info.name == want_name && info.size == n as u64 && !info.is_dir,
                "put {path}: returned {info:?}, want name {want_name:?}, size {n}, not a dir"
            );
            check_time(&format!("put {path} result"), info.modified, from, to)?;
        }
        let got = t.client.get(&path).await.ctx(format!("get {path}"))?;
        ensure!(
            got == data,
            "get {path}: got {}, want {}",
            describe(&got),
            describe(&data)
        );
    }
    Ok(())
}

/// An object above 64 MiB (where the S3 backend switches to multipart uploads): a big
/// database's snapshot.
pub async fn large_object(t: &Target<'_>) -> CheckResult {
    let mut rng = XorShift::new(6);
    let n = (64 << 20) + 4097;
    let data = payload(&mut rng, n);
    let start = Instant::now();
    t.seed
        .put("c/large/snapshot", data.clone())
        .await
        .ctx("put large object")?;
    let put = start.elapsed();
    let got = t
        .client
        .get("c/large/snapshot")
        .await
        .ctx("get large object")?;
    let get = start.elapsed() - put;
    ensure!(
        got == data,
        "large object: got {}, want {}",
        describe(&got),
        describe(&data)
    );
    let l = t.client.list("c/large").await.ctx("list")?;
    ensure!(
        l.len() == 1 && l[0].size == n as u64,
        "list after a large put: {l:?}"
    );
    eprintln!(
        "conformance[{}] large object ({:.1} MB): put {put:.2?}, get {get:.2?}",
        t.name,
        n as f64 / 1e6
    );
    Ok(())
}

/// Reads a whole object through `get_stream`, checking the announced size.
pub async fn read_stream(c: &dyn ReplicaClient, path: &str) -> Result<Vec<u8>, String> {
    use futures::StreamExt;
    let mut s = c.get_stream(path).await.ctx(format!("get_stream {path}"))?;
    let mut out = Vec::new();
    let mut chunks = 0;
    while let Some(chunk) = s.body.next().await {
        out.extend_from_slice(&chunk.ctx(format!("body of {path}"))?);
        chunks += 1;
    }
    if let Some(size) = s.size {
        ensure!(
            size == out.len() as u64,
            "get_stream {path}: announced {size} bytes, body has {}",
            out.len()
        );
    }
    ensure!(
        out.is_empty() || chunks >= 1,
        "get_stream {path}: no chunks"
    );
    Ok(out)
}

/// `get_stream` yields exactly what `get` does, for small and multi-chunk objects, and a
/// missing object is `NotFound` at open.
pub async fn get_stream(t: &Target<'_>) -> CheckResult {
    let mut rng = XorShift::new(11);
    for (i, n) in [0usize, 1000, (5 << 20) + 17].into_iter().enumerate() {
        let path = format!("c/stream/obj{i}");
        let data = payload(&mut rng, n);
        t.seed.put(&path, data.clone()).await.ctx("put")?;
        let got = read_stream(t.client, &path).await?;
        ensure!(
            got == data,
            "get_stream {path}: got {}, want {}",
            describe(&got),
            describe(&data)
        );
    }
    match t.client.get_stream("c/stream/missing").await {
        Err(walship::Error::NotFound(_)) => Ok(()),
        Err(e) => Err(format!(
            "get_stream of a missing object: {e:?}, want NotFound"
        )),
        Ok(s) => Err(format!("get_stream of a missing object opened: {s:?}")),
    }
}

/// `put_file` stores a local file whole, small (one request) and larger than a part
/// (S3 multipart, WebDAV streamed body + MOVE), replacing an existing object, and leaves
/// no temporary object in the listing.
pub async fn put_file(t: &Target<'_>) -> CheckResult {
    let mut rng = XorShift::new(12);
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    for (i, n) in [1000usize, (16 << 20) + 4097, 3000].into_iter().enumerate() {
        // The last one replaces the first.
        let name = if i == 2 { "obj0" } else { ["obj0", "obj1"][i] };
        let path = format!("c/putfile/{name}");
        let data = payload(&mut rng, n);
        let local = dir.path().join(format!("f{i}"));
        std::fs::write(&local, &data).map_err(|e| e.to_string())?;
        let info = t
            .client
            .put_file(&path, &local)
            .await
            .ctx(format!("put_file {path} ({n} bytes)"))?;
        ensure!(
            info.name == name && info.size == n as u64,
            "put_file {path}: returned {info:?}"
        );
        let got = read_stream(t.client, &path).await?;
        ensure!(
            got == data,
            "put_file {path}: read back {}, want {}",
            describe(&got),
            describe(&data)
        );
    }
    let l = t.client.list("c/putfile").await.ctx("list")?;
    let names: Vec<(&str, u64)> = l.iter().map(|e| (e.name.as_str(), e.size)).collect();
    ensure!(
        names == [("obj0", 3000), ("obj1", (16 << 20) + 4097)],
        "listing after put_file: {names:?}"
    );
    Ok(())
}

pub async fn get_missing(t: &Target<'_>) -> CheckResult {
    t.seed
        .put("c/missing/present", Bytes::from_static(b"here"))
        .await
        .ctx("put c/missing/present")?;
    for path in [
        "c/missing/absent",
        "c/no/such/dir/x",
        "generations/0000000000000000/snapshots/00000000.snapshot.lz4",
    ] {
        match t.client.get(path).await {
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(format!("get {path}: want NotFound, got {e} ({e:?})")),
            Ok(b) => return Err(format!("get {path}: want NotFound, got {}", describe(&b))),
        }
    }
    Ok(())
}

pub async fn list_missing(t: &Target<'_>) -> CheckResult {
    for dir in ["c/never/created", "generations/1111111111111111/wal"] {
        let l = t.client.list(dir).await.ctx(format!("list {dir}"))?;
        ensure!(l.is_empty(), "list {dir} (missing): want empty, got {l:?}");
    }
    Ok(())
}

/// Only immediate children, sorted by name, directories flagged, file sizes and times; no
/// entries from sibling names that merely share the prefix.
pub async fn list_children(t: &Target<'_>) -> CheckResult {
    let mut rng = XorShift::new(2);
    // name -> size; names chosen so that key order ("a-b" < "a/") differs from name order
    // ("a" < "a-b"), and upper case sorts before lower case.
    let files = [
        ("c/list/d/z", 5usize),
        ("c/list/d/a-b", 17),
        ("c/list/d/B", 1),
        ("c/list/d/0", 300),
        ("c/list/d/a/x", 3),
        ("c/list/d/a/y/deep", 4),
        ("c/list/d/c/d/e", 9),
        // Traps: siblings of `d` that share its name as a prefix.
        ("c/list/dx/y", 2),
        ("c/list/d-file", 2),
        ("c/list/d.txt", 2),
    ];
    let from = SystemTime::now();
    for (p, n) in files {
        t.seed
            .put(p, payload(&mut rng, n))
            .await
            .ctx(format!("put {p}"))?;
    }
    let to = SystemTime::now();
    let l = t.client.list("c/list/d").await.ctx("list c/list/d")?;
    let got: Vec<(String, bool, u64)> = l
        .iter()
        .map(|e| (e.name.clone(), e.is_dir, if e.is_dir { 0 } else { e.size }))
        .collect();
    let want: Vec<(String, bool, u64)> = [
        ("0", false, 300),
        ("B", false, 1),
        ("a", true, 0),
        ("a-b", false, 17),
        ("c", true, 0),
        ("z", false, 5),
    ]
    .into_iter()
    .map(|(n, d, s)| (n.to_string(), d, s))
    .collect();
    ensure!(
        got == want,
        "list c/list/d (name, is_dir, size): want {want:?}, got {got:?}"
    );
    for e in l.iter().filter(|e| !e.is_dir) {
        check_time(&format!("list entry {}", e.name), e.modified, from, to)?;
    }
    let l = t.client.list("c/list/d/c").await.ctx("list c/list/d/c")?;
    ensure!(
        l.len() == 1 && l[0].name == "d" && l[0].is_dir,
        "list c/list/d/c: want [d/], got {l:?}"
    );
    let l = t.client.list("c/list").await.ctx("list c/list")?;
    let names: Vec<(&str, bool)> = l.iter().map(|e| (e.name.as_str(), e.is_dir)).collect();
    ensure!(
        names
            == [
                ("d", true),
                ("d-file", false),
                ("d.txt", false),
                ("dx", true)
            ],
        "list c/list: got {names:?}"
    );
    Ok(())
}

pub async fn sibling_isolated(t: &Target<'_>) -> CheckResult {
    let s = t.sibling.expect("sibling");
    let g9 = Generation(0x9999_9999_9999_9999);
    s.put(&layout::snapshot_path(g9, 0), Bytes::from_static(b"other"))
        .await
        .ctx("sibling put snapshot")?;
    s.put("c/iso/x", Bytes::from_static(b"other"))
        .await
        .ctx("sibling put c/iso/x")?;
    let gens = backend::generations(t.client).await.ctx("generations")?;
    ensure!(
        !gens.contains(&g9),
        "generations sees the sibling replica's generation: {gens:?}"
    );
    match t.client.get("c/iso/x").await {
        Err(e) if e.is_not_found() => {}
        other => return Err(format!("get c/iso/x (only in the sibling): {other:?}")),
    }
    let l = t.client.list("c/iso").await.ctx("list c/iso")?;
    ensure!(l.is_empty(), "list c/iso sees the sibling's objects: {l:?}");
    Ok(())
}

pub async fn put_replaces(t: &Target<'_>) -> CheckResult {
    let mut rng = XorShift::new(3);
    let path = "c/replace/obj";
    for n in [300_000usize, 1000, 0, 70_000] {
        let data = payload(&mut rng, n);
        t.client.put(path, data.clone()).await.ctx("put")?;
        let got = t.client.get(path).await.ctx("get")?;
        ensure!(
            got == data,
            "after replacing with {}: got {}",
            describe(&data),
            describe(&got)
        );
        let l = t.client.list("c/replace").await.ctx("list")?;
        let sizes: Vec<(&str, u64)> = l.iter().map(|e| (e.name.as_str(), e.size)).collect();
        ensure!(
            sizes == [("obj", n as u64)],
            "list after replace: want [(obj, {n})], got {sizes:?}"
        );
    }
    Ok(())
}

/// Readers running during repeated replacements only ever see one whole version.
pub async fn put_atomic(t: &Target<'_>) -> CheckResult {
    let mut rng = XorShift::new(4);
    let path = "c/atomic/obj";
    let versions: Vec<Bytes> = (0..2).map(|_| payload(&mut rng, 2 << 20)).collect();
    t.client
        .put(path, versions[0].clone())
        .await
        .ctx("first put")?;
    let done = AtomicBool::new(false);
    let reads = AtomicU64::new(0);
    let writer = async {
        let r: CheckResult = async {
            for i in 1..=8 {
                t.client
                    .put(path, versions[i % 2].clone())
                    .await
                    .ctx(format!("put #{i}"))?;
            }
            Ok(())
        }
        .await;
        done.store(true, Ordering::SeqCst);
        r
    };
    let reader = || async {
        while !done.load(Ordering::SeqCst) {
            match t.client.get(path).await {
                Ok(b) if versions.contains(&b) => {}
                Ok(b) => {
                    return Err(format!(
                        "a get during replacement saw a partial or mixed object: {} (versions \
                         are {} and {})",
                        describe(&b),
                        describe(&versions[0]),
                        describe(&versions[1])
                    ));
                }
                // rclone's WebDAV MOVE with `Overwrite: T` deletes the destination and
                // then renames, so for an instant the name is missing. Walship tolerates it
                // (restore lists again once; snapshots are the only objects ever
                // replaced), and it is never a partial object; every other backend must
                // keep the name readable throughout.
                Err(e) if e.is_not_found() && t.client.type_name() == "http" => {}
                Err(e) => {
                    return Err(format!(
                        "a get during replacement failed (the object always exists): {e}"
                    ));
                }
            }
            reads.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    };
    let (w, r1, r2) = tokio::join!(writer, reader(), reader());
    w?;
    r1?;
    r2?;
    eprintln!(
        "conformance[{}] put_atomic: {} concurrent reads saw whole versions",
        t.name,
        reads.load(Ordering::Relaxed)
    );
    let got = t.client.get(path).await.ctx("final get")?;
    ensure!(got == versions[0], "final get: {}", describe(&got));
    Ok(())
}

/// A listing taken while new objects are being written shows each one either not yet or
/// whole (its listed size and its content), as Litestream's layout is write-once: restore
/// and listings run while replication writes new segments.
pub async fn put_new_never_partial(t: &Target<'_>) -> CheckResult {
    let mut rng = XorShift::new(5);
    let objects: Vec<(String, Bytes)> = (0..6)
        .map(|i| (format!("obj{i}"), payload(&mut rng, 2 << 20)))
        .collect();
    let done = AtomicBool::new(false);
    let seen = AtomicU64::new(0);
    let others = std::sync::Mutex::new(std::collections::BTreeSet::new());
    let writer = async {
        let r: CheckResult = async {
            for (name, data) in &objects {
                t.client
                    .put(&format!("c/fresh/{name}"), data.clone())
                    .await
                    .ctx(format!("put {name}"))?;
            }
            Ok(())
        }
        .await;
        done.store(true, Ordering::SeqCst);
        r
    };
    let reader = async {
        loop {
            let last_round = done.load(Ordering::SeqCst);
            let listed = t.client.list("c/fresh").await.ctx("list c/fresh")?;
            for e in listed {
                let Some((_, want)) = objects.iter().find(|(n, _)| *n == e.name) else {
                    // Not a name anyone reads (a backend's temporary file, say): noted only.
                    others.lock().expect("lock").insert(format!(
                        "{}{} ({} bytes)",
                        e.name,
                        if e.is_dir { "/" } else { "" },
                        e.size
                    ));
                    continue;
                };
                ensure!(
                    e.size == want.len() as u64,
                    "list showed {} with size {} while it was being written (whole: {})",
                    e.name,
                    e.size,
                    want.len()
                );
                match t.client.get(&format!("c/fresh/{}", e.name)).await {
                    Ok(b) if b == *want => {}
                    Ok(b) => {
                        return Err(format!(
                            "listed object {} read back partial: {} (whole: {})",
                            e.name,
                            describe(&b),
                            describe(want)
                        ));
                    }
                    Err(err) => {
                        return Err(format!(
                            "listed object {} could not be read while others were written: {err}",
                            e.name
                        ));
                    }
                }
                seen.fetch_add(1, Ordering::Relaxed);
            }
            if last_round {
                return Ok(());
            }
        }
    };
    let (w, r) = tokio::join!(writer, reader);
    w?;
    r?;
    let others = others.into_inner().expect("lock");
    eprintln!(
        "conformance[{}] new_object_never_partial: {} listed objects read whole; other \
         entries seen while writing: {others:?}",
        t.name,
        seen.load(Ordering::Relaxed)
    );
    Ok(())
}

pub async fn delete_missing(t: &Target<'_>) -> CheckResult {
    t.client
        .delete("c/delmiss/never/existed")
        .await
        .ctx("delete in a missing directory")?;
    t.client
        .put("c/delmiss/present", Bytes::from_static(b"x"))
        .await
        .ctx("put")?;
    t.client
        .delete("c/delmiss/absent")
        .await
        .ctx("delete a missing object in an existing directory")?;
    t.client
        .delete_all("c/delmiss/no/such/dir")
        .await
        .ctx("delete_all of a missing directory")?;
    let got = t.client.get("c/delmiss/present").await.ctx("get")?;
    ensure!(&got[..] == b"x", "neighbour changed: {}", describe(&got));
    Ok(())
}

pub async fn delete_then_get(t: &Target<'_>) -> CheckResult {
    t.client
        .put("c/del/a", Bytes::from_static(b"aaa"))
        .await
        .ctx("put a")?;
    t.client
        .put("c/del/b", Bytes::from_static(b"bbb"))
        .await
        .ctx("put b")?;
    t.client.delete("c/del/a").await.ctx("delete a")?;
    match t.client.get("c/del/a").await {
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(format!("get after delete: want NotFound, got {e} ({e:?})")),
        Ok(b) => return Err(format!("get after delete returned {}", describe(&b))),
    }
    let l = t.client.list("c/del").await.ctx("list")?;
    let names: Vec<&str> = l.iter().map(|e| e.name.as_str()).collect();
    ensure!(names == ["b"], "list after delete: want [b], got {names:?}");
    t.client.delete("c/del/a").await.ctx("delete a again")?;
    Ok(())
}

pub async fn delete_all(t: &Target<'_>) -> CheckResult {
    for p in [
        "c/tree/a/1",
        "c/tree/a/b/2",
        "c/tree/a/b/c/3",
        "c/tree/ab/4",
        "c/tree/a-5",
        "c/tree/x",
    ] {
        t.client
            .put(p, Bytes::from(p.as_bytes().to_vec()))
            .await
            .ctx(format!("put {p}"))?;
    }
    t.client.delete_all("c/tree/a").await.ctx("delete_all")?;
    for p in ["c/tree/a/1", "c/tree/a/b/2", "c/tree/a/b/c/3"] {
        match t.client.get(p).await {
            Err(e) if e.is_not_found() => {}
            other => return Err(format!("get {p} after delete_all: {other:?}")),
        }
    }
    let l = t.client.list("c/tree/a").await.ctx("list c/tree/a")?;
    ensure!(l.is_empty(), "list c/tree/a after delete_all: {l:?}");
    let l = t.client.list("c/tree/a/b").await.ctx("list c/tree/a/b")?;
    ensure!(l.is_empty(), "list c/tree/a/b after delete_all: {l:?}");
    // Names that only share the prefix survive.
    for p in ["c/tree/ab/4", "c/tree/a-5", "c/tree/x"] {
        let got = t
            .client
            .get(p)
            .await
            .ctx(format!("get {p} (must survive)"))?;
        ensure!(&got[..] == p.as_bytes(), "{p} changed");
    }
    let l = t.client.list("c/tree").await.ctx("list c/tree")?;
    let names: Vec<&str> = l.iter().map(|e| e.name.as_str()).collect();
    ensure!(
        names == ["a-5", "ab", "x"],
        "list c/tree after delete_all: want [a-5, ab, x], got {names:?}"
    );
    Ok(())
}

pub async fn delete_many(t: &Target<'_>) -> CheckResult {
    let paths: Vec<String> = (0..30).map(|i| format!("c/many/{i:02}")).collect();
    for p in &paths {
        t.client
            .put(p, Bytes::from(p.as_bytes().to_vec()))
            .await
            .ctx(format!("put {p}"))?;
    }
    t.client
        .put("c/many/keep", Bytes::from_static(b"k"))
        .await
        .ctx("put keep")?;
    let mut gone = paths.clone();
    gone.push("c/many/never-existed".into());
    t.client.delete_many(&gone).await.ctx("delete_many")?;
    let l = t.client.list("c/many").await.ctx("list c/many")?;
    let names: Vec<&str> = l.iter().map(|e| e.name.as_str()).collect();
    ensure!(
        names == ["keep"],
        "list after delete_many: want [keep], got {names:?}"
    );
    t.client
        .delete_many(&[])
        .await
        .ctx("delete_many of nothing")?;
    Ok(())
}

pub async fn read_only_put(t: &Target<'_>) -> CheckResult {
    let r = t
        .client
        .put("c/ro/new", Bytes::from_static(b"must not be written"))
        .await;
    ensure!(r.is_err(), "put on a read-only client returned {r:?}");
    let kind = r.as_ref().err().and_then(|e| e.backend_kind());
    ensure!(
        kind == Some(walship::error::BackendErrorKind::ReadOnly),
        "a refused put says {kind:?}, not ReadOnly: {r:?}"
    );
    match t.seed.get("c/ro/new").await {
        Err(e) if e.is_not_found() => Ok(()),
        other => Err(format!("the store changed after a refused put: {other:?}")),
    }
}
