//! Guards the `ReplicaClient` contract (src/backend/mod.rs) with one suite of checks
//! (`tests/common/conformance.rs`) that takes `&dyn ReplicaClient` and runs against every
//! backend of the table (`tests/common/backends.rs`) on a real store, one test each
//! (`conformance::s3`, ...): file, S3 on moto, Azure on Azurite, SFTP on sshd, GCS on
//! fake-gcs-server, WebDAV on `rclone serve webdav`; and the read-only static-HTTP client on
//! `python3 -m http.server` (read checks only; its directory is seeded through the file
//! system). After the suite: no directory markers and no temporary objects are left, and
//! every request was counted in the metrics.
//!
//! Clients are built only through `walship::backend::open`, with the metrics counter the
//! engine gives them (GCS: its emulator named in the client).
//! Every check runs even when an earlier one failed; the test fails at the end with the list
//! of failed checks. A last test checks the test servers and the fault proxy themselves.
mod common;
#[path = "common/servers.rs"]
mod servers;
#[macro_use]
#[path = "common/backends.rs"]
mod backends;
#[path = "common/conformance.rs"]
mod checks;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backends::Backend;
use checks::*;
use common::TestDir;
use servers::{FaultProxy, Mode, MotoServer, StaticHttp, WebDav, http_request};
use walship::backend::ReplicaClient;
use walship::backend::file::FileClient;
use walship::config::ReplicaTarget;

/// Longest one check may take before it counts as hung.
const CHECK_TIMEOUT: Duration = Duration::from_secs(30);

per_backend!(conformance: file, s3, abs, sftp, gcs, webdav);

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// The client for `target`, built as the engine builds it (counting its requests in the
/// metrics); panics with the exact error.
fn client(target: &ReplicaTarget) -> Arc<dyn ReplicaClient> {
    walship::backend::open(target, Some(walship::metrics::operation_counter()))
        .unwrap_or_else(|e| panic!("backend::open({target:?}) failed: {e}"))
}

/// Runs the whole suite against `t`; panics at the end listing the checks that failed.
async fn run_suite(t: Target<'_>) {
    let mut results: Vec<(&'static str, CheckResult, Duration)> = Vec::new();
    async fn one(
        results: &mut Vec<(&'static str, CheckResult, Duration)>,
        backend: &str,
        name: &'static str,
        f: impl Future<Output = CheckResult>,
    ) {
        let start = Instant::now();
        let r = match tokio::time::timeout(CHECK_TIMEOUT, f).await {
            Ok(r) => r,
            Err(_) => Err(format!("hung: no result within {CHECK_TIMEOUT:?}")),
        };
        let took = start.elapsed();
        match &r {
            Ok(()) => eprintln!("conformance[{backend}] PASS {name} ({took:.1?})"),
            Err(e) => eprintln!("conformance[{backend}] FAIL {name} ({took:.1?}): {e}"),
        }
        results.push((name, r, took));
    }
    let b = t.name;
    one(
        &mut results,
        b,
        "location_has_no_secret",
        location_has_no_secret(&t),
    )
    .await;
    one(&mut results, b, "layout_helpers", layout_helpers(&t)).await;
    one(&mut results, b, "put_then_get", put_then_get(&t)).await;
    one(&mut results, b, "large_object_round_trip", large_object(&t)).await;
    one(&mut results, b, "get_missing_is_not_found", get_missing(&t)).await;
    one(&mut results, b, "get_stream_matches_get", get_stream(&t)).await;
    one(
        &mut results,
        b,
        "list_missing_dir_is_empty",
        list_missing(&t),
    )
    .await;
    one(&mut results, b, "list_children_sorted", list_children(&t)).await;
    if t.sibling.is_some() {
        one(
            &mut results,
            b,
            "sibling_prefix_isolated",
            sibling_isolated(&t),
        )
        .await;
    }
    if t.writable {
        one(&mut results, b, "put_replaces_whole", put_replaces(&t)).await;
        one(&mut results, b, "put_atomic_under_reads", put_atomic(&t)).await;
        one(
            &mut results,
            b,
            "new_object_never_partial",
            put_new_never_partial(&t),
        )
        .await;
        one(&mut results, b, "put_file_round_trip", put_file(&t)).await;
        one(&mut results, b, "delete_missing_is_ok", delete_missing(&t)).await;
        one(
            &mut results,
            b,
            "delete_then_get_not_found",
            delete_then_get(&t),
        )
        .await;
        one(
            &mut results,
            b,
            "delete_all_removes_subtree",
            delete_all(&t),
        )
        .await;
        one(&mut results, b, "delete_many", delete_many(&t)).await;
    } else {
        one(&mut results, b, "read_only_refuses_put", read_only_put(&t)).await;
    }
    let failed: Vec<String> = results
        .iter()
        .filter_map(|(n, r, _)| r.as_ref().err().map(|e| format!("  {n}: {e}")))
        .collect();
    eprintln!(
        "conformance[{b}]: {} of {} checks passed",
        results.len() - failed.len(),
        results.len()
    );
    assert!(
        failed.is_empty(),
        "conformance[{b}] ({}): {} check(s) failed:\n{}",
        t.client.location(),
        failed.len(),
        failed.join("\n")
    );
}

// ------------------------------------------------------------------------------------------
// The backends

/// The suite against replica `conf` of backend `b` (its sibling `confx` beside it); then:
/// the store holds no directory markers (directories are only key prefixes on object
/// stores) and no temporary files of the client's (`.NAME.RANDOM.tmp`, `*.partial`,
/// `.tmp*`; the suite writes `NAME.tmp` objects of its own on purpose), and a network
/// client counted each kind of request in Litestream's metrics.
fn conformance(b: Backend, test: &str) {
    let t = TestDir::new(test);
    let Some(store) = b.start(test, &t) else {
        return;
    };
    let c = store.client("conf");
    let s = store.client("confx");
    let type_name = match b {
        Backend::WebDav => "http",
        _ => b.name(),
    };
    assert_eq!(c.type_name(), type_name);
    rt().block_on(run_suite(Target {
        name: b.name(),
        client: c.as_ref(),
        seed: c.as_ref(),
        sibling: Some(s.as_ref()),
        writable: true,
        secret: b.secret(),
    }));
    for name in ["conf", "confx"] {
        let held = store.holdings(name).unwrap_or_default();
        let odd: Vec<&String> = held
            .iter()
            .map(|(k, _)| k)
            .filter(|k| {
                let file = k.rsplit('/').next().unwrap_or(k);
                k.ends_with('/')
                    || (file.starts_with('.') && file.ends_with(".tmp"))
                    || file.contains(".partial")
                    || file.starts_with(".tmp")
            })
            .collect();
        assert!(odd.is_empty(), "unexpected objects in {name}: {odd:?}");
    }
    if b == Backend::File {
        return;
    }
    let metrics = walship::metrics::global().encode();
    for op in ["GET", "PUT", "LIST", "DELETE"] {
        let series = format!(
            "litestream_replica_operation_total{{operation=\"{op}\",replica_type=\"{type_name}\"}} "
        );
        let count: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix(&series))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        assert!(count > 0, "no {op} counted for {type_name}:\n{metrics}");
    }
}

#[test]
fn conformance_static_http() {
    let t = TestDir::new("conf-static");
    let root = t.join("srv");
    let Some(srv) = StaticHttp::start("conformance_static_http", t.path(), &root) else {
        return;
    };
    let seed = FileClient::new(root.join("replica/conf"));
    let c = client(&ReplicaTarget::from_url(&srv.url("replica/conf")).expect("http url"));
    // The sibling is written through the file system too, but read through nothing: the
    // check only needs it to exist.
    let sib = FileClient::new(root.join("replica/confx"));
    assert_eq!(c.type_name(), "http");
    rt().block_on(run_suite(Target {
        name: "static-http",
        client: c.as_ref(),
        seed: &seed,
        sibling: Some(&sib),
        writable: false,
        secret: None,
    }));
}

// ------------------------------------------------------------------------------------------
// The test servers themselves

/// Every server starts, answers, and is gone (with its process group) after drop; the fault
/// proxy passes, resets, blackholes and passes again, and counts requests.
#[test]
fn test_servers_and_fault_proxy_work() {
    let t = TestDir::new("servers");
    let short = Duration::from_secs(5);
    let mut pids = Vec::new();

    if let Some(moto) = MotoServer::start("test_servers", t.path()) {
        moto.create_bucket("probe");
        let r = http_request(moto.port(), "PUT", "/probe/a/b.txt", &[], b"hello", short)
            .expect("moto put");
        assert_eq!(r.status, 200, "moto unsigned put: {}", r.text());
        assert_eq!(moto.list_keys("probe", "a/"), [("a/b.txt".to_string(), 5)]);
        pids.push(moto.proc.pid());
    }
    if let Some(dav) = WebDav::start("test_servers", t.path(), &t.join("dav")) {
        let r = http_request(dav.proc.port, "PUT", "/f.txt", &[], b"dav", short).expect("put");
        assert!(r.status == 201 || r.status == 204, "rclone put: {r:?}");
        let r = http_request(dav.proc.port, "GET", "/f.txt", &[], b"", short).expect("get");
        assert_eq!((r.status, r.body.as_slice()), (200, &b"dav"[..]));
        assert_eq!(std::fs::read(t.join("dav/f.txt")).expect("file"), b"dav");
        pids.push(dav.proc.pid());
    }
    if let Some(st) = StaticHttp::start("test_servers", t.path(), &t.join("static")) {
        std::fs::write(t.join("static/hello.txt"), b"hi there").expect("write");
        let port = st.proc.port;
        let r = http_request(port, "GET", "/hello.txt", &[], b"", short).expect("get");
        assert_eq!((r.status, r.body.as_slice()), (200, &b"hi there"[..]));

        let proxy = FaultProxy::start(st.proc.addr());
        let pp = proxy.port();
        let r = http_request(pp, "GET", "/hello.txt", &[], b"", short).expect("via proxy");
        assert_eq!((r.status, r.body.as_slice()), (200, &b"hi there"[..]));
        let r = http_request(pp, "POST", "/nope", &[], b"GET / HTTP/1.1\r\n\r\n", short)
            .expect("post via proxy");
        assert_eq!(r.status, 501, "python has no POST");
        let s = proxy.stats();
        assert_eq!(s.requests, 2, "requests counted: {s:?}");
        assert_eq!(s.by_method.get("GET"), Some(&1), "{s:?}");
        assert_eq!(s.by_method.get("POST"), Some(&1), "{s:?}");

        // An open connection is reset when reset mode begins.
        let mut open = std::net::TcpStream::connect(("127.0.0.1", pp)).expect("connect");
        std::thread::sleep(Duration::from_millis(100));
        proxy.set_mode(Mode::Reset);
        open.set_read_timeout(Some(short)).expect("timeout");
        let mut buf = [0u8; 16];
        let r = std::io::Read::read(&mut open, &mut buf);
        assert!(
            matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
            "open connection after reset: {r:?}"
        );
        let e = http_request(pp, "GET", "/hello.txt", &[], b"", short).expect_err("reset mode");
        eprintln!("reset mode: {e}");

        proxy.set_mode(Mode::Blackhole);
        let start = Instant::now();
        let e = http_request(
            pp,
            "GET",
            "/hello.txt",
            &[],
            b"",
            Duration::from_millis(700),
        )
        .expect_err("blackhole mode");
        assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "blackhole should time out, got {e}"
        );
        assert!(start.elapsed() >= Duration::from_millis(650));

        proxy.set_mode(Mode::Pass);
        let r = http_request(pp, "GET", "/hello.txt", &[], b"", short).expect("pass again");
        assert_eq!(r.status, 200);
        let s = proxy.stats();
        assert!(s.resets >= 2 && s.blackholed == 1, "{s:?}");
        assert_eq!(s.requests, 3, "{s:?}");
        pids.push(st.proc.pid());
        drop(proxy);
    }
    // Dropped above: every server process is gone.
    for pid in pids {
        // SAFETY: signal 0 only checks whether the process exists.
        let rc = unsafe { libc::kill(pid, 0) };
        assert_eq!(rc, -1, "server pid {pid} still exists after drop");
    }
    if !common::in_ci() {
        assert!(servers::require_bin("probe", "walship-no-such-binary", "nothing").is_none());
    }
}
