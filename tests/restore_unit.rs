//! Guards the public restore API from outside the crate: a replica built from a real WAL-mode
//! database through `FileClient`, planned with `restore::plan`, applied with
//! `restore::apply`, and compared with the source; a point-in-time restore by storage
//! timestamp; a corrupt segment that must fail without leaving any file behind; and, when
//! the real `litestream` v0.3.13 is on PATH, a replica written by it, restored to the same
//! bytes as `litestream restore` produces. Hostile object bodies (issue #7): a loopback
//! server whose snapshot or segment bodies never end or lie about their length must make
//! the restore fail fast, having read little and left nothing behind.
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use rusqlite::Connection;
use walship::backend::ReplicaClient;
use walship::backend::file::FileClient;
use walship::restore::{self, Progress, ReplicaSource, RestoreOptions};
use walship::{Error, Generation, compress, layout};

fn rows(conn: &Connection) -> Vec<(i64, String)> {
    let mut stmt = conn.prepare("SELECT id, v FROM t ORDER BY id").unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

fn wal_of(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push("-wal");
    PathBuf::from(s)
}

struct Source {
    _dir: tempfile::TempDir,
    out_dir: PathBuf,
    replica: Arc<FileClient>,
    generation: Generation,
    /// Rows after each transaction (= after each segment).
    states: Vec<Vec<(i64, String)>>,
    segment_paths: Vec<String>,
}

/// Snapshot = the raw database file; then four transactions in one WAL index, each its own
/// segment, cut at the WAL length after each commit.
async fn source() -> Source {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let conn = Connection::open(&db).unwrap();
    let _: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .unwrap();
    conn.execute_batch(
        "PRAGMA wal_autocheckpoint=0;
         CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
         INSERT INTO t VALUES (1, 'one');",
    )
    .unwrap();
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    let snapshot = std::fs::read(&db).unwrap();

    let mut states = Vec::new();
    let mut ends = Vec::new();
    for k in 0..4 {
        conn.execute_batch(&format!(
            "BEGIN; INSERT INTO t SELECT id + {k}00 + 100, v || '-{k}' FROM t WHERE id < 100; UPDATE t SET v = v || '!' WHERE id = 1; COMMIT;"
        ))
        .unwrap();
        states.push(rows(&conn));
        ends.push(std::fs::metadata(wal_of(&db)).unwrap().len() as usize);
    }
    let wal = std::fs::read(wal_of(&db)).unwrap();

    let replica = Arc::new(FileClient::new(dir.path().join("replica")));
    let generation = Generation::random();
    replica
        .put(
            &layout::snapshot_path(generation, 0),
            Bytes::from(compress::compress(&snapshot)),
        )
        .await
        .unwrap();
    let mut segment_paths = Vec::new();
    let mut start = 0;
    for end in ends {
        let path = layout::wal_segment_path(generation, 0, start as u32);
        replica
            .put(&path, Bytes::from(compress::compress(&wal[start..end])))
            .await
            .unwrap();
        segment_paths.push(path);
        start = end;
    }
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    Source {
        _dir: dir,
        out_dir,
        replica,
        generation,
        states,
        segment_paths,
    }
}

fn replicas(s: &Source) -> Vec<ReplicaSource> {
    vec![ReplicaSource {
        name: "local".into(),
        client: s.replica.clone(),
    }]
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn plan_then_apply_reproduces_the_source() {
    let s = source().await;
    let opts = RestoreOptions {
        parallelism: 2,
        ..Default::default()
    };
    let plan = restore::plan(&replicas(&s), &opts).await.unwrap();
    assert_eq!(plan.replica, "local");
    assert_eq!(plan.generation, s.generation);
    assert_eq!(plan.snapshot.index, 0);
    assert_eq!(plan.segments.len(), 4);

    let out = s.out_dir.join("restored.db");
    let seen = Mutex::new(Vec::new());
    let progress = |p: Progress| seen.lock().unwrap().push(p);
    let summary = restore::apply(&replicas(&s), &plan, &out, &opts, &progress)
        .await
        .unwrap();
    assert_eq!(summary.segments_applied, 4);
    assert_eq!(summary.last_index, 0);
    let conn = Connection::open(&out).unwrap();
    assert_eq!(rows(&conn), *s.states.last().unwrap());
    drop(conn);
    assert_eq!(seen.lock().unwrap().last(), Some(&Progress::Done));
    assert_eq!(entries(&s.out_dir), vec!["restored.db"]);

    // The same plan again: the output now exists.
    let err = restore::apply(&replicas(&s), &plan, &out, &opts, &|_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, Error::OutputExists(_)), "{err}");
}

#[tokio::test]
async fn timestamp_restore_stops_before_a_later_segment() {
    let s = source().await;
    let base = SystemTime::now() - Duration::from_secs(600);
    let touch = |rel: &str, t: SystemTime| {
        std::fs::File::options()
            .write(true)
            .open(s.replica.root().join(rel))
            .unwrap()
            .set_modified(t)
            .unwrap();
    };
    touch(&layout::snapshot_path(s.generation, 0), base);
    for (i, p) in s.segment_paths.iter().enumerate() {
        touch(p, base + Duration::from_secs(i as u64 + 1));
    }
    let opts = RestoreOptions {
        timestamp: Some(base + Duration::from_millis(2500)),
        ..Default::default()
    };
    let out = s.out_dir.join("pitr.db");
    let summary = restore::restore(&replicas(&s), &out, &opts, &|_| {})
        .await
        .unwrap();
    assert_eq!(summary.segments_applied, 2);
    assert_eq!(rows(&Connection::open(&out).unwrap()), s.states[1]);
}

#[tokio::test]
async fn corrupt_segment_fails_and_leaves_nothing() {
    let s = source().await;
    let rel = &s.segment_paths[2];
    let file = s.replica.root().join(rel);
    let mut wal = compress::decompress(&std::fs::read(&file).unwrap(), 1 << 30).unwrap();
    let last = wal.len() - 1;
    wal[last] ^= 1;
    std::fs::write(&file, compress::compress(&wal)).unwrap();

    let out = s.out_dir.join("restored.db");
    let err = restore::restore(&replicas(&s), &out, &RestoreOptions::default(), &|_| {})
        .await
        .unwrap_err();
    match &err {
        Error::Corrupt { path, .. } => assert!(path.ends_with(rel.as_str()), "{path}"),
        other => panic!("want Corrupt, got {other}"),
    }
    assert!(err.to_string().contains(rel.as_str()));
    assert!(entries(&s.out_dir).is_empty(), "{:?}", entries(&s.out_dir));
}

/// A replica written by the real Litestream v0.3.13 (when `litestream` is on PATH) restores
/// to the source's rows, byte-identical to what `litestream restore` itself produces.
#[tokio::test]
async fn restores_a_replica_written_by_litestream() {
    if std::process::Command::new("litestream")
        .arg("version")
        .output()
        .is_err()
    {
        eprintln!("litestream not on PATH: skipping the compatibility test");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let replica_dir = dir.path().join("replica");
    let config = dir.path().join("litestream.yml");
    std::fs::write(
        &config,
        format!(
            "dbs:\n  - path: {}\n    monitor-interval: 100ms\n    replicas:\n      - type: file\n        path: {}\n        sync-interval: 100ms\n",
            db.display(),
            replica_dir.display()
        ),
    )
    .unwrap();
    let conn = Connection::open(&db).unwrap();
    let _: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .unwrap();
    conn.execute_batch(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'one');",
    )
    .unwrap();
    let mut child = std::process::Command::new("litestream")
        .arg("replicate")
        .arg("-config")
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for k in 0..6 {
        // Big enough (about 2,500 pages in total) for Litestream to checkpoint and start
        // new WAL indexes along the way.
        conn.execute_batch(&format!(
            "WITH RECURSIVE s(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM s WHERE x < 500)
             INSERT INTO t(v) SELECT printf('%d-%d-%s', {k}, x, hex(randomblob(900))) FROM s"
        ))
        .unwrap();
        conn.execute("UPDATE t SET v = v || '+' WHERE id = 1", [])
            .unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    child.wait().unwrap();
    let want = rows(&conn);

    let replicas = vec![ReplicaSource {
        name: "file".into(),
        client: Arc::new(FileClient::new(&replica_dir)),
    }];
    let plan = restore::plan(&replicas, &RestoreOptions::default())
        .await
        .unwrap();
    let last_index = plan.segments.last().map_or(0, |s| s.index);
    assert!(
        last_index >= 1,
        "Litestream started new WAL indexes: {plan:?}"
    );
    let ours = dir.path().join("ours.db");
    restore::apply(&replicas, &plan, &ours, &RestoreOptions::default(), &|_| {})
        .await
        .unwrap();
    assert_eq!(rows(&Connection::open(&ours).unwrap()), want);

    let theirs = dir.path().join("theirs.db");
    let st = std::process::Command::new("litestream")
        .arg("restore")
        .arg("-o")
        .arg(&theirs)
        .arg(format!("file://{}", replica_dir.display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    assert!(
        std::fs::read(&ours).unwrap() == std::fs::read(&theirs).unwrap(),
        "walship and litestream restore the same bytes (plan: {} segments up to index {})",
        plan.segments.len(),
        plan.segments.last().map_or(0, |s| s.index)
    );
}

// ------------------------------------------------------------------------------------------
// Hostile object bodies (issue #7): a static HTTP server whose listing is honest but whose
// bodies run on forever, or lie about their length. The server is a few lines of std Rust
// on 127.0.0.1:0 that counts what it sends, so each test shows that walship stopped reading.

mod hostile {
    use std::io::{BufRead, BufReader, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    /// What the server answers for one path.
    #[derive(Clone)]
    pub enum Body {
        /// A fixed body with a correct `Content-Length`.
        Fixed(Vec<u8>),
        /// `prefix`, then `chunk` again and again, close-delimited (no length announced),
        /// until the client goes away (or 2 GiB / 30 s, so the test cannot hang).
        Endless { prefix: Vec<u8>, chunk: Vec<u8> },
        /// A fixed body announced with a wrong `Content-Length` header.
        WrongLength(Vec<u8>, u64),
    }

    #[derive(Clone)]
    pub struct Object {
        pub path: String,
        /// `Content-Length` of HEAD (`None`: not sent).
        pub head_len: Option<u64>,
        pub body: Body,
    }

    pub struct Server {
        pub port: u16,
        /// Body bytes sent for `Endless` objects.
        pub endless_sent: Arc<AtomicU64>,
        stop: Arc<AtomicBool>,
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
            // Wake the accept loop.
            let _ = TcpStream::connect(("127.0.0.1", self.port));
        }
    }

    /// Serves `objects` and directory index pages for their parent directories (python
    /// http.server style), 501 for anything but GET/HEAD (so walship sees a static server).
    pub fn start(objects: Vec<Object>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let (stop2, sent2) = (stop.clone(), sent.clone());
        let objects = Arc::new(objects);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (objects, sent, stop) = (objects.clone(), sent2.clone(), stop2.clone());
                std::thread::spawn(move || {
                    let _ = serve(conn, &objects, &sent, &stop);
                });
            }
        });
        Server {
            port,
            endless_sent: sent,
            stop,
        }
    }

    fn index_page(objects: &[Object], dir: &str) -> Option<Vec<u8>> {
        let mut names: Vec<String> = Vec::new();
        for o in objects {
            let Some(rest) = o.path.strip_prefix(dir) else {
                continue;
            };
            let name = match rest.split_once('/') {
                Some((d, _)) => format!("{d}/"),
                None => rest.to_string(),
            };
            if !names.contains(&name) {
                names.push(name);
            }
        }
        if names.is_empty() {
            return None;
        }
        let mut html = String::from("<html><body><ul>\n");
        for n in names {
            html.push_str(&format!("<li><a href=\"{n}\">{n}</a></li>\n"));
        }
        html.push_str("</ul></body></html>\n");
        Some(html.into_bytes())
    }

    fn serve(
        conn: TcpStream,
        objects: &[Object],
        sent: &AtomicU64,
        stop: &AtomicBool,
    ) -> std::io::Result<()> {
        conn.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut r = BufReader::new(conn.try_clone()?);
        let mut w = conn;
        let mut line = String::new();
        r.read_line(&mut line)?;
        let mut parts = line.split_whitespace();
        let (method, path) = (
            parts.next().unwrap_or("").to_string(),
            parts.next().unwrap_or("").to_string(),
        );
        loop {
            let mut h = String::new();
            if r.read_line(&mut h)? == 0 || h == "\r\n" {
                break;
            }
        }
        let status = |w: &mut TcpStream, code: &str, extra: &str, body: &[u8]| {
            write!(w, "HTTP/1.1 {code}\r\nConnection: close\r\n{extra}\r\n")?;
            w.write_all(body)
        };
        if method != "GET" && method != "HEAD" {
            return status(&mut w, "501 Not Implemented", "Content-Length: 0\r\n", b"");
        }
        let head = method == "HEAD";
        let rel = path.trim_start_matches('/');
        if rel.is_empty() || rel.ends_with('/') {
            return match index_page(objects, rel) {
                Some(p) => status(
                    &mut w,
                    "200 OK",
                    &format!("Content-Type: text/html\r\nContent-Length: {}\r\n", p.len()),
                    if head { b"" } else { &p },
                ),
                None => status(&mut w, "404 Not Found", "Content-Length: 0\r\n", b""),
            };
        }
        let Some(o) = objects.iter().find(|o| o.path == rel) else {
            return status(&mut w, "404 Not Found", "Content-Length: 0\r\n", b"");
        };
        let modified = "Last-Modified: Sun, 22 Nov 2026 01:00:00 GMT\r\n";
        if head {
            let len = o
                .head_len
                .map(|n| format!("Content-Length: {n}\r\n"))
                .unwrap_or_default();
            return status(&mut w, "200 OK", &format!("{modified}{len}"), b"");
        }
        match &o.body {
            Body::Fixed(b) => status(
                &mut w,
                "200 OK",
                &format!("{modified}Content-Length: {}\r\n", b.len()),
                b,
            ),
            Body::WrongLength(b, n) => status(
                &mut w,
                "200 OK",
                &format!("{modified}Content-Length: {n}\r\n"),
                b,
            ),
            Body::Endless { prefix, chunk } => {
                status(&mut w, "200 OK", modified, prefix)?;
                sent.fetch_add(prefix.len() as u64, Ordering::SeqCst);
                let started = Instant::now();
                while !stop.load(Ordering::SeqCst)
                    && sent.load(Ordering::SeqCst) < (2 << 30)
                    && started.elapsed() < Duration::from_secs(30)
                {
                    w.write_all(chunk)?;
                    sent.fetch_add(chunk.len() as u64, Ordering::SeqCst);
                }
                Ok(())
            }
        }
    }
}

/// A small real database (page size 4096), its bytes.
fn small_db(dir: &Path) -> Vec<u8> {
    let p = dir.join("small.db");
    let c = Connection::open(&p).unwrap();
    c.execute_batch(
        "PRAGMA page_size=4096; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
         INSERT INTO t(v) VALUES ('a'), ('b');",
    )
    .unwrap();
    drop(c);
    std::fs::read(&p).unwrap()
}

/// An LZ4 frame (Litestream's header) that never ends: page 1 of a database whose header
/// announces (and trusts) 2 pages as one uncompressed block, then uncompressed blocks of
/// zeros forever. Returns (prefix, repeated chunk).
fn endless_frame(db: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut page1 = db[..4096].to_vec();
    page1[28..32].copy_from_slice(&2u32.to_be_bytes());
    let counter = [page1[24], page1[25], page1[26], page1[27]];
    page1[92..96].copy_from_slice(&counter);
    let mut prefix = compress::compress(b"")[..7].to_vec();
    prefix.extend_from_slice(&(0x8000_0000u32 | 4096).to_le_bytes());
    prefix.extend_from_slice(&page1);
    let mut chunk = (0x8000_0000u32 | 65536).to_le_bytes().to_vec();
    chunk.extend_from_slice(&[0u8; 65536]);
    (prefix, chunk)
}

/// Restores from the hostile server into an empty directory; returns the error, after
/// checking that nothing was left behind and that the restore gave up quickly.
async fn hostile_restore(srv: &hostile::Server) -> Error {
    let url = format!("http://127.0.0.1:{}/replica", srv.port);
    let target = walship::config::ReplicaTarget::from_url(&url).unwrap();
    let client = walship::backend::open(&target, None).unwrap();
    let replicas = vec![ReplicaSource {
        name: "http".into(),
        client,
    }];
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.db");
    let started = std::time::Instant::now();
    let err = tokio::time::timeout(
        Duration::from_secs(60),
        restore::restore(&replicas, &out, &RestoreOptions::default(), &|_| {}),
    )
    .await
    .expect("restore gave up within 60 s")
    .expect_err("restore from a hostile server must fail");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));
    err
}

const HOSTILE_GEN: &str = "0123456789abcdef";

fn hostile_snapshot_path() -> String {
    format!("replica/generations/{HOSTILE_GEN}/snapshots/00000000.snapshot.lz4")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_snapshot_body_stops_at_the_listed_size() {
    let dir = tempfile::tempdir().unwrap();
    let (prefix, chunk) = endless_frame(&small_db(dir.path()));
    let listed = 1 << 20;
    let srv = hostile::start(vec![hostile::Object {
        path: hostile_snapshot_path(),
        head_len: Some(listed),
        body: hostile::Body::Endless { prefix, chunk },
    }]);
    let err = hostile_restore(&srv).await;
    let msg = err.to_string();
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
    assert!(
        msg.contains("runs past the 1048576 bytes its listing gave"),
        "{msg}"
    );
    assert!(msg.contains("00000000.snapshot.lz4"), "{msg}");
    // walship stopped reading: what the server got out is the listed size plus what the
    // socket buffers and one read-ahead hold, not gigabytes.
    let sent = srv.endless_sent.load(std::sync::atomic::Ordering::SeqCst);
    assert!(sent < listed + (64 << 20), "server sent {sent} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsized_endless_snapshot_stops_at_the_header_page_count() {
    let dir = tempfile::tempdir().unwrap();
    let (prefix, chunk) = endless_frame(&small_db(dir.path()));
    // HEAD announces no length: nothing but the SQLite header bounds the body.
    let srv = hostile::start(vec![hostile::Object {
        path: hostile_snapshot_path(),
        head_len: None,
        body: hostile::Body::Endless { prefix, chunk },
    }]);
    let err = hostile_restore(&srv).await;
    let msg = err.to_string();
    assert!(
        msg.contains("runs past the 2 pages its header announces"),
        "{msg}"
    );
    let sent = srv.endless_sent.load(std::sync::atomic::Ordering::SeqCst);
    assert!(sent < 64 << 20, "server sent {sent} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announced_length_must_match_the_listing() {
    let dir = tempfile::tempdir().unwrap();
    let snap = compress::compress(&small_db(dir.path()));
    let srv = hostile::start(vec![hostile::Object {
        path: hostile_snapshot_path(),
        head_len: Some(snap.len() as u64),
        body: hostile::Body::WrongLength(snap.clone(), snap.len() as u64 + 1000),
    }]);
    let err = hostile_restore(&srv).await;
    assert!(
        err.to_string().contains(&format!(
            "announces a body of {} bytes, its listing said {}",
            snap.len() + 1000,
            snap.len()
        )),
        "{err}"
    );
}

/// Restores from a hostile server that serves a good snapshot and then, as the first WAL
/// segment, an endless body announced with `head_len` (None: no length). Returns the
/// restore's error and how many bytes of the endless body the server got out.
async fn endless_wal_segment_restore(head_len: Option<u64>) -> (Error, u64) {
    let dir = tempfile::tempdir().unwrap();
    let db = small_db(dir.path());
    let snap = compress::compress(&db);
    let (prefix, chunk) = endless_frame(&db);
    let seg = format!(
        "replica/generations/{HOSTILE_GEN}/wal/{}",
        layout::wal_segment_name(0, 0)
    );
    let srv = hostile::start(vec![
        hostile::Object {
            path: hostile_snapshot_path(),
            head_len: Some(snap.len() as u64),
            body: hostile::Body::Fixed(snap),
        },
        hostile::Object {
            path: seg,
            head_len,
            body: hostile::Body::Endless { prefix, chunk },
        },
    ]);
    let err = hostile_restore(&srv).await;
    let sent = srv.endless_sent.load(std::sync::atomic::Ordering::SeqCst);
    (err, sent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_wal_segment_stops_at_the_listed_size() {
    let (err, sent) = endless_wal_segment_restore(Some(5000)).await;
    let msg = err.to_string();
    assert!(
        msg.contains("runs past the 5000 bytes its listing gave"),
        "{msg}"
    );
    assert!(msg.contains(&layout::wal_segment_name(0, 0)), "{msg}");
    assert!(sent < 64 << 20, "server sent {sent} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsized_endless_wal_segment_is_streamed_and_refused() {
    // No length for the segment: it is streamed, and its content (not a WAL) is refused
    // at the first bytes instead of being read to the end.
    let (err, sent) = endless_wal_segment_restore(None).await;
    let msg = err.to_string();
    assert!(msg.contains("invalid wal header"), "{msg}");
    assert!(sent < 64 << 20, "server sent {sent} bytes");
}
