//! The backends the end-to-end scenarios run over, as one table. [`Backend`] names each one
//! and says what it supports; [`Backend::start`] starts its server (`servers.rs`) and gives a
//! [`Store`], which writes the `replicas:` item of a replica in it (reached directly or
//! through a [`FaultProxy`]) and reads back what the store holds, past any proxy.
//!
//! A scenario is one function `fn(Backend, test: &str)`, written once; [`per_backend!`]
//! makes one `#[test]` of it per backend, named `scenario::backend`, so a failure names both.
//! The invocation lists the backends the scenario runs over.
//!
//! Below the table: the steps the scenarios share (the workload, timed restores, listings,
//! request counts).
//!
//! Include it after `mod common;` and the servers module:
//! `#[macro_use] #[path = "common/backends.rs"] mod backends;`.
#![allow(dead_code)]

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use walship::backend::{BucketClient, GcsConfig, ReplicaClient, ReplicaTarget};

use crate::common::{
    ChildEnv, Model, TestDir, Tool, Workload, assert_db, cells, child_env, file_url, restore, s,
};
use crate::servers::{
    AZURITE_ACCOUNT, Azurite, FakeGcs, FaultProxy, Mode, MotoServer, Sshd, WebDav,
    abs_replica_yaml, abs_target, gcs_replica_yaml, http_request, s3_replica_yaml, s3_target,
};

/// One `#[test]` per backend for a scenario: `per_backend!(scenario: s3, webdav)` calls
/// `scenario(Backend::S3, "scenario-s3")` in a test named `scenario::s3`, and so on.
#[allow(unused_macros)]
macro_rules! per_backend {
    (@backend file) => { crate::backends::Backend::File };
    (@backend s3) => { crate::backends::Backend::S3 };
    (@backend abs) => { crate::backends::Backend::Abs };
    (@backend sftp) => { crate::backends::Backend::Sftp };
    (@backend gcs) => { crate::backends::Backend::Gcs };
    (@backend webdav) => { crate::backends::Backend::WebDav };
    ($scenario:ident: $($backend:ident),+ $(,)?) => {
        mod $scenario {
            $(
                #[test]
                fn $backend() {
                    super::$scenario(
                        per_backend!(@backend $backend),
                        concat!(stringify!($scenario), "-", stringify!($backend)),
                    );
                }
            )+
        }
    };
}

/// The bucket (S3, GCS) or container (Azure) that holds every replica of a [`Store`].
const BUCKET: &str = "e2e";

/// A kind of replica, with the server the tests run it against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A local directory (no server).
    File,
    /// S3 on moto.
    S3,
    /// Azure Blob Storage on Azurite.
    Abs,
    /// SFTP on OpenSSH's sshd (the remote directory is local).
    Sftp,
    /// Google Cloud Storage on fake-gcs-server.
    Gcs,
    /// WebDAV on `rclone serve webdav` (the served directory is local).
    WebDav,
}

impl Backend {
    /// The name in test names and messages.
    pub fn name(self) -> &'static str {
        match self {
            Backend::File => "file",
            Backend::S3 => "s3",
            Backend::Abs => "abs",
            Backend::Sftp => "sftp",
            Backend::Gcs => "gcs",
            Backend::WebDav => "webdav",
        }
    }

    /// Litestream v0.3.13 has a client for it (it has none for WebDAV).
    pub fn litestream_speaks(self) -> bool {
        self != Backend::WebDav
    }

    /// The secret in its replicas' settings, which must never show in a location or a log.
    pub fn secret(self) -> Option<&'static str> {
        match self {
            Backend::S3 => Some(crate::servers::S3_SECRET),
            Backend::Abs => Some(crate::servers::AZURITE_KEY),
            _ => None,
        }
    }

    /// `name`, at a replica's root, is walship's replica lease on this backend:
    /// `walship-lease.json`, with the file backend's lock beside it and SFTP's chain of
    /// versions (`walship-lease.json.<version>`, files never overwritten).
    pub fn is_lease_object(self, name: &str) -> bool {
        name == "walship-lease.json"
            || match self {
                Backend::File => name == "walship-lease.json.lock",
                Backend::Sftp => name
                    .strip_prefix("walship-lease.json.")
                    .is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())),
                _ => false,
            }
    }

    /// It is reached over HTTP: the fault proxy can answer it with 500s and count its
    /// requests.
    pub fn speaks_http(self) -> bool {
        matches!(
            self,
            Backend::S3 | Backend::Abs | Backend::Gcs | Backend::WebDav
        )
    }

    /// The faults the proxy puts it through, in order: 500 answers (HTTP only), resets, a
    /// black hole.
    pub fn faults(self) -> &'static [Mode] {
        if self.speaks_http() {
            &[Mode::Http500, Mode::Reset, Mode::Blackhole]
        } else {
            &[Mode::Reset, Mode::Blackhole]
        }
    }

    /// How long walship may take to catch up once the faults end: a retry backoff begun
    /// during the black hole, then a request under its deadline. An SFTP session and a GCS
    /// upload on a connection that was black-holed wait for longer deadlines.
    pub fn catch_up_after_faults(self) -> Duration {
        match self {
            Backend::Sftp | Backend::Gcs => Duration::from_secs(90),
            _ => Duration::from_secs(30),
        }
    }

    /// Starts the backend's server with an empty bucket (container) for the replicas;
    /// `None` (after a loud skip) when the server is missing outside CI.
    pub fn start(self, test: &str, t: &TestDir) -> Option<Store> {
        let dir = t.path().to_path_buf();
        let mut env = None;
        let server = match self {
            Backend::File => Server::None,
            Backend::S3 => {
                let moto = MotoServer::start(test, &dir)?;
                moto.create_bucket(BUCKET);
                Server::S3(moto)
            }
            Backend::Abs => {
                let az = Azurite::start(test, &dir)?;
                az.create_container(BUCKET);
                Server::Abs(az)
            }
            Backend::Sftp => Server::Sftp(Sshd::start(test, &dir)?),
            Backend::Gcs => {
                let gcs = FakeGcs::start(test, &dir)?;
                gcs.create_bucket(BUCKET);
                // Both tools find the emulator only through the environment.
                env = Some(child_env("STORAGE_EMULATOR_HOST", &gcs.host()));
                Server::Gcs(gcs)
            }
            Backend::WebDav => Server::WebDav(WebDav::start(test, &dir, &dir.join("dav"))?),
        };
        Some(Store {
            backend: self,
            server,
            dir,
            _env: env,
        })
    }
}

/// A running backend: its server, and the replicas the tests put in it by name.
pub struct Store {
    pub backend: Backend,
    server: Server,
    /// The test's directory.
    dir: PathBuf,
    /// GCS: the emulator's address for this test's children.
    _env: Option<ChildEnv>,
}

enum Server {
    None,
    S3(MotoServer),
    Abs(Azurite),
    Sftp(Sshd),
    Gcs(FakeGcs),
    WebDav(WebDav),
}

impl Store {
    /// The server's address, to put a fault proxy in front of.
    pub fn addr(&self) -> SocketAddr {
        match &self.server {
            Server::None => panic!("a file replica has no server to put a proxy in front of"),
            Server::S3(m) => m.proc.addr(),
            Server::Abs(a) => a.proc.addr(),
            Server::Sftp(d) => d.proc.addr(),
            Server::Gcs(g) => g.proc.addr(),
            Server::WebDav(d) => d.proc.addr(),
        }
    }

    /// A fault proxy, in pass mode, in front of the server.
    pub fn proxy(&self) -> FaultProxy {
        FaultProxy::start(self.addr())
    }

    /// The `replicas:` item (indented for a `dbs:` entry) of replica `name`, reached through
    /// `via` or directly, in the keys both walship and Litestream v0.3.13 read. GCS is
    /// reached through the environment: see [`Store::route`].
    pub fn replica_yaml(
        &self,
        name: &str,
        sync_interval: &str,
        via: Option<&FaultProxy>,
    ) -> String {
        let port = |direct: u16| via.map_or(direct, FaultProxy::port);
        match &self.server {
            Server::None => {
                assert!(via.is_none(), "a file replica cannot go through a proxy");
                format!(
                    "      - type: file\n        path: \"{}\"\n        sync-interval: \
                     {sync_interval}\n",
                    s(&self.dir.join("file").join(name))
                )
            }
            Server::S3(m) => s3_replica_yaml(port(m.port()), BUCKET, name, sync_interval),
            Server::Abs(a) => abs_replica_yaml(
                &format!("http://127.0.0.1:{}/{AZURITE_ACCOUNT}", port(a.proc.port)),
                BUCKET,
                name,
                sync_interval,
            ),
            Server::Sftp(d) => d.replica_yaml(
                port(d.proc.port),
                &self.dir.join("remote").join(name),
                sync_interval,
            ),
            Server::Gcs(_) => gcs_replica_yaml(BUCKET, name, sync_interval),
            Server::WebDav(_) => format!(
                "      - url: {}\n        sync-interval: {sync_interval}\n",
                self.url(name, via).expect("webdav url")
            ),
        }
    }

    /// For GCS, whose address is in the environment rather than the config: makes the
    /// children this thread starts until the guard drops reach it through `via`. `None`
    /// (nothing to do) for every other backend, or without a proxy.
    #[must_use]
    pub fn route(&self, via: Option<&FaultProxy>) -> Option<ChildEnv> {
        match (&self.server, via) {
            (Server::Gcs(_), Some(p)) => Some(child_env(
                "STORAGE_EMULATOR_HOST",
                &format!("127.0.0.1:{}", p.port()),
            )),
            _ => None,
        }
    }

    /// The bare URL `walship restore` takes for replica `name` without a config, where
    /// there is one (file and WebDAV).
    pub fn url(&self, name: &str, via: Option<&FaultProxy>) -> Option<String> {
        match &self.server {
            Server::None => Some(file_url(&self.dir.join("file").join(name))),
            Server::WebDav(d) => Some(format!(
                "http://127.0.0.1:{}/replica/{name}",
                via.map_or(d.proc.port, FaultProxy::port)
            )),
            _ => None,
        }
    }

    /// A client of replica `name`, opened as the engine opens it: through
    /// `walship::backend::open`, counting its requests in the metrics. GCS's names the
    /// emulator itself (the config has no key for it).
    pub fn client(&self, name: &str) -> Arc<dyn ReplicaClient> {
        let counter = walship::metrics::operation_counter();
        let target = match &self.server {
            Server::Gcs(g) => {
                let cfg = GcsConfig {
                    bucket: BUCKET.into(),
                    path: name.into(),
                };
                let client = BucketClient::gcs_at(&cfg, Some(g.host())).expect("gcs client");
                return Arc::new(client.with_operation_counter(counter));
            }
            Server::S3(m) => s3_target(m.port(), BUCKET, name),
            Server::Abs(a) => abs_target(&a.endpoint(), BUCKET, name),
            Server::Sftp(d) => d.target(&self.dir.join("remote").join(name)),
            Server::None | Server::WebDav(_) => {
                let url = self.url(name, None).expect("url");
                ReplicaTarget::from_url(&url).expect("replica url")
            }
        };
        walship::backend::open(&target, Some(counter))
            .unwrap_or_else(|e| panic!("backend::open({target:?}) failed: {e}"))
    }

    /// The local directory that holds replica `name`, for the backends that keep it in one
    /// (file, SFTP, WebDAV).
    pub fn local_dir(&self, name: &str) -> Option<PathBuf> {
        match &self.server {
            Server::None => Some(self.dir.join("file").join(name)),
            Server::Sftp(_) => Some(self.dir.join("remote").join(name)),
            Server::WebDav(d) => Some(d.root.join("replica").join(name)),
            _ => None,
        }
    }

    /// What the store holds of replica `name`, read from the server (or its directory), not
    /// through walship: `(path below the replica's root, size)`, sorted. `None` where the
    /// tests have no reader of their own (Azure).
    pub fn holdings(&self, name: &str) -> Option<Vec<(String, u64)>> {
        let prefix = format!("{name}/");
        let mut out: Vec<(String, u64)> = match &self.server {
            Server::S3(m) => m
                .list_keys(BUCKET, &prefix)
                .into_iter()
                .map(|(k, n)| (k[prefix.len()..].to_string(), n))
                .collect(),
            Server::Gcs(g) => gcs_objects(g, &prefix),
            Server::Abs(_) => return None,
            _ => files_under(&self.local_dir(name).expect("local replica")),
        };
        out.sort();
        Some(out)
    }
}

/// Every file below `dir` as `(relative path, size)`, sorted; empty if `dir` is missing.
pub fn files_under(dir: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            match e.metadata() {
                Ok(m) if m.is_dir() => todo.push(p),
                Ok(m) => {
                    let rel = p.strip_prefix(dir).unwrap_or(&p).display().to_string();
                    out.push((rel, m.len()));
                }
                Err(_) => {}
            }
        }
    }
    out.sort();
    out
}

/// The objects under `prefix` in the GCS bucket, from the emulator's JSON API (first 1,000).
fn gcs_objects(g: &FakeGcs, prefix: &str) -> Vec<(String, u64)> {
    let r = http_request(
        g.proc.port,
        "GET",
        &format!("/storage/v1/b/{BUCKET}/o?maxResults=1000&prefix={prefix}"),
        &[],
        b"",
        Duration::from_secs(10),
    )
    .unwrap_or_else(|e| panic!("list gcs {prefix}: {e}"));
    assert_eq!(r.status, 200, "list gcs {prefix}: {}", r.text());
    let body = if r
        .head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(&r.body)
    } else {
        r.body.clone()
    };
    let v: serde_json::Value = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("gcs listing is not JSON ({e}): {}", r.text()));
    let items = v["items"].as_array().cloned().unwrap_or_default();
    items
        .iter()
        .map(|o| {
            let name = o["name"].as_str().expect("object name");
            let size = o["size"]
                .as_str()
                .and_then(|n| n.parse().ok())
                .or_else(|| o["size"].as_u64())
                .unwrap_or(u64::MAX);
            (name[prefix.len()..].to_string(), size)
        })
        .collect()
}

/// The body of a chunked HTTP/1.1 reply.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(nl) = raw.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = String::from_utf8_lossy(&raw[..nl]);
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
            .expect("chunk size");
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[nl + 2..nl + 2 + size]);
        raw = &raw[nl + 2 + size + 2..];
    }
}

// ------------------------------------------------------------------------------------------
// Steps the scenarios share

/// Pause between workload steps.
pub const PAUSE: Duration = Duration::from_millis(10);
/// How long replication may take to catch up before a test fails.
pub const CATCH_UP: Duration = Duration::from_secs(30);

/// The common workload: overflow pages, updates, deletes, checkpoints.
pub fn churn(w: &mut Workload, steps: usize) {
    w.run(steps / 2, PAUSE);
    w.checkpoint("TRUNCATE");
    assert!(w.batch(3));
    w.run(steps - steps / 2, PAUSE);
}

/// Restores with `tool` (`extra` then `source`) twice, checks each result is exactly `want`,
/// and prints the better throughput as a `MEASURE:` line (the machine is shared, and the
/// slower run measures the neighbours).
#[track_caller]
pub fn timed_restore(
    tool: &Tool,
    what: &str,
    source: &str,
    extra: &[&str],
    dir: &Path,
    want: &Model,
) {
    let mut best = Duration::MAX;
    let mut bytes = 0;
    for _ in 0..2 {
        let start = Instant::now();
        let (out, r) = restore(tool, source, extra, dir);
        let took = start.elapsed();
        assert!(r.ok(), "{what}: restore failed: {}", r.describe());
        assert_db(&out, want, what);
        bytes = fs::metadata(&out).expect("restored db").len();
        best = best.min(took);
    }
    let mb = bytes as f64 / 1e6;
    eprintln!(
        "MEASURE: restore {what} with {}: {mb:.2} MB in {:.3} s = {:.1} MB/s (best of 2, whole \
         command incl. process start)",
        tool.name(),
        best.as_secs_f64(),
        mb / best.as_secs_f64()
    );
}

/// Listing rows of `<tool> <cmd> <args>` without the first (replica name) column and the
/// time columns: `snapshots` → generation, index, size; `wal` → generation, index, offset,
/// size; `generations` → generation.
pub fn listing(tool: &Tool, cmd: &str, args: &[&str], dir: &Path) -> Vec<Vec<String>> {
    let mut a = vec![cmd];
    a.extend_from_slice(args);
    let out = tool.run(&a, dir);
    out.assert_ok();
    let keep = match cmd {
        "snapshots" => 1..4,
        "wal" => 1..5,
        "generations" => 1..2,
        other => panic!("no listing {other}"),
    };
    cells(&out.stdout)
        .into_iter()
        .skip(1)
        .map(|row| row[keep.clone()].to_vec())
        .collect()
}

/// Runs 1,000 one-row transactions (~4 s) while `proxy` (in pass mode, in front of the
/// store of a replicator at sync-interval 1s) counts requests; prints a `MEASURE:` line.
pub fn measure_requests(proxy: &FaultProxy, w: &mut Workload, who: &str, store: Backend) {
    // Let the replicator start up and write its first snapshot first.
    std::thread::sleep(Duration::from_millis(1500));
    let before = proxy.stats();
    let commits = w.commits;
    let start = Instant::now();
    for _ in 0..1000 {
        assert!(w.insert(1, false));
        std::thread::sleep(Duration::from_millis(3));
    }
    let took = start.elapsed();
    let after = proxy.stats();
    let txns = w.commits - commits;
    let reqs = after.requests - before.requests;
    let mut by_method = after.by_method.clone();
    for (m, n) in &before.by_method {
        *by_method.entry(m.clone()).or_default() -= n;
    }
    eprintln!(
        "MEASURE: {who}: {reqs} requests to {} for {txns} transactions in {:.1} s at \
         sync-interval 1s: {:.0} per 1,000 transactions, {:.1} per second; by method \
         {by_method:?}; {} new connections, {:.0} KB sent",
        store.name(),
        took.as_secs_f64(),
        reqs as f64 * 1000.0 / txns as f64,
        reqs as f64 / took.as_secs_f64(),
        after.connections - before.connections,
        (after.bytes_up - before.bytes_up) as f64 / 1e3,
    );
}
