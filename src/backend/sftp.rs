//! The SFTP replica (`type: sftp`, `sftp://USER@HOST[:PORT]/PATH`) over russh and
//! russh-sftp: a pure-Rust SSH stack, so walship needs no C SSH library (libssh2) and no
//! OpenSSL beside the TLS stack it already has.
//!
//! Safer than Litestream v0.3.13, which neither checks the server's key nor writes
//! atomically:
//! - the server's host key must match `host-key:` (`ssh-ed25519 AAAA...`, Litestream v0.5's
//!   key) or the entry for the host in `~/.ssh/known_hosts`; `insecure-skip-host-key-check:
//!   true` accepts any key, with a warning;
//! - every object is written to a temporary name, flushed (`fsync@openssh.com` where the
//!   server has it) and renamed into place with `posix-rename@openssh.com` (an atomic
//!   replace); servers without it get a plain rename, after removing an existing object.
//!
//! One SSH connection per client, opened on first use and opened again after an error.
//! Every operation has a deadline, so a stalled server fails a sync instead of holding it.
//!
//! The replica lease's compare-and-swap ([`ReplicaClient::put_if`]) needs an operation the
//! server performs atomically and that fails when someone else did it first. SFTP has no
//! conditional overwrite, and a lock file would have to be broken when its holder dies,
//! which is unsafe while that holder is only paused. So the lease object is a chain of
//! files that are never overwritten: version `n` of `walship-lease.json` is the file
//! `walship-lease.json.<n>` (20 digits), and the current version is the highest `n`
//! present.
//! - Swapping version `n` for new content writes the content to a temporary file and
//!   hard-links it as `<n+1>` (`hardlink@openssh.com`: `link(2)` on the server, which fails
//!   when the name exists). Of two writers that both read `n`, exactly one link succeeds;
//!   readers see the whole new file or none of it.
//! - Older versions are then removed. A stale writer could therefore recreate a removed
//!   name (`<n+1>` once `<n+2>` exists): so after linking, the writer lists the chain, and
//!   its write counts only if no higher version exists. The highest version only ever
//!   grows (only versions below an existing one are removed), so one that does not exist
//!   after the link never existed before it either, and the check cannot miss a winner.
//! - A writer that dies at any step leaves the chain consistent (a temporary file at most;
//!   listings skip `*.tmp`). Nothing is ever locked, so nothing must be broken.
//!
//! A server without `hardlink@openssh.com` (OpenSSH has had it since 5.7) holds no lease
//! ([`ReplicaClient::lease_unsupported`] says why).
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use russh::keys::{PrivateKeyWithHashAlg, PublicKey};
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::client::{RawSftpSession, SftpSession};
use russh_sftp::protocol::{OpenFlags, StatusCode};
use tokio::io::AsyncWriteExt;

use super::{ObjectInfo, ObjectStream, OperationCounter, ReplicaClient};
use crate::error::{BackendErrorKind, Error, Result};
use crate::secret::Secret;

/// SFTP replica settings (`type: sftp`, `sftp://USER@HOST[:PORT]/PATH`): where the
/// replica is, how to sign in and how to check the server.
#[derive(Clone, Debug, PartialEq)]
pub struct SftpConfig {
    /// `host:port` (port 22 added when absent).
    pub host: String,
    /// Login user (required).
    pub user: String,
    /// Password, if password authentication is used. Redacted in `Debug`.
    pub password: Option<Secret>,
    /// Private key file (`key-path`) for public-key authentication, `~` expanded and
    /// absolute.
    pub key_path: Option<PathBuf>,
    /// `host-key`: the server's public key (`ssh-ed25519 AAAA...`). `None`: the server's
    /// key must be in `~/.ssh/known_hosts`.
    pub host_key: Option<String>,
    /// `insecure-skip-host-key-check: true`: accept any server key (with a warning).
    pub skip_host_key_check: bool,
    /// The replica directory on the server, as given (URL paths are absolute; otherwise
    /// relative to the login directory).
    pub path: String,
}

/// How the server's key is checked.
#[derive(Clone)]
enum HostKeyPolicy {
    Fixed(PublicKey),
    KnownHosts,
    Skip,
}

/// The SSH client handler: checks the server's key and records why it refused one.
struct Checker {
    host: String,
    port: u16,
    policy: HostKeyPolicy,
    refusal: Arc<StdMutex<Option<String>>>,
}

impl russh::client::Handler for Checker {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &russh::keys::PublicKeyOrCertificate,
    ) -> std::result::Result<bool, Self::Error> {
        if let HostKeyPolicy::Skip = self.policy {
            return Ok(true);
        }
        let key = match key {
            russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } => key,
            russh::keys::PublicKeyOrCertificate::Certificate(_) => {
                *self.refusal.lock().expect("refusal lock") = Some(
                    "the server offers an SSH certificate as its host key, which walship does \
                     not check yet; set host-key: to the server's plain key"
                        .into(),
                );
                return Ok(false);
            }
        };
        let refuse = |why: String| {
            *self.refusal.lock().expect("refusal lock") = Some(why);
            Ok(false)
        };
        let shown = key.to_openssh().unwrap_or_else(|_| "?".into());
        match &self.policy {
            HostKeyPolicy::Skip => Ok(true),
            HostKeyPolicy::Fixed(want) if want.key_data() == key.key_data() => Ok(true),
            HostKeyPolicy::Fixed(_) => refuse(format!(
                "the server's host key ({shown}) is not the replica's host-key; if the server's \
                 key changed on purpose, update host-key"
            )),
            HostKeyPolicy::KnownHosts => {
                match russh::keys::check_known_hosts(&self.host, self.port, key) {
                    Ok(true) => Ok(true),
                    Ok(false) => refuse(format!(
                        "the server's host key is not in ~/.ssh/known_hosts; add it (ssh-keyscan \
                         -p {} {} >> ~/.ssh/known_hosts, after checking it), or set host-key: \
                         {shown} on the replica, or insecure-skip-host-key-check: true to accept \
                         any key",
                        self.port, self.host
                    )),
                    Err(russh::keys::Error::KeyChanged { line }) => refuse(format!(
                        "the server's host key ({shown}) differs from line {line} of \
                         ~/.ssh/known_hosts: someone may be impersonating the server; if the \
                         key changed on purpose, update known_hosts"
                    )),
                    Err(e) => refuse(format!("cannot read ~/.ssh/known_hosts: {e}")),
                }
            }
        }
    }
}

/// An open connection: a high-level session for most operations and a raw one for the
/// `posix-rename@openssh.com` extension, each on its own channel.
struct Conn {
    _ssh: russh::client::Handle<Checker>,
    sftp: SftpSession,
    raw: RawSftpSession,
    posix_rename: bool,
    /// The server offers `hardlink@openssh.com` (the lease needs it).
    hardlink: bool,
}

/// A replica in a directory on an SFTP server.
pub struct SftpClient {
    opts: SftpConfig,
    host: String,
    port: u16,
    policy: HostKeyPolicy,
    location: String,
    conn: tokio::sync::Mutex<Option<Arc<Conn>>>,
    ops: Option<OperationCounter>,
}

impl std::fmt::Debug for SftpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SftpClient")
            .field("location", &self.location)
            .finish()
    }
}

/// Deadline of one operation moving `bytes`: 30 s plus 1 s per MiB.
fn deadline(bytes: u64) -> Duration {
    Duration::from_secs(30 + bytes / (1 << 20))
}

fn is_not_found(e: &SftpError) -> bool {
    matches!(e, SftpError::Status(s) if s.status_code == StatusCode::NoSuchFile)
}

/// An SSH string (length, then bytes), as extended requests carry their arguments.
fn ssh_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

impl SftpClient {
    /// A client for `opts`; connects on first use. A `host-key` that does not parse is an
    /// error here.
    pub fn new(opts: SftpConfig) -> Result<SftpClient> {
        let (host, port) = match opts.host.rsplit_once(':') {
            Some((h, p)) if p.parse::<u16>().is_ok() => (
                h.trim_matches(['[', ']']).to_string(),
                p.parse().unwrap_or(22),
            ),
            _ => (opts.host.clone(), 22),
        };
        let policy = if opts.skip_host_key_check {
            tracing::warn!(host = %opts.host, "sftp: insecure-skip-host-key-check is set: the server's host key is not checked, so anyone who can intercept the connection can read and alter the replica");
            HostKeyPolicy::Skip
        } else if let Some(k) = &opts.host_key {
            let key = PublicKey::from_openssh(k.trim()).map_err(|e| {
                Error::Config(format!(
                    "sftp replica {}: host-key is not an OpenSSH public key \
                     (ssh-ed25519 AAAA...; ssh-keyscan prints one): {e}",
                    opts.host
                ))
            })?;
            HostKeyPolicy::Fixed(key)
        } else {
            HostKeyPolicy::KnownHosts
        };
        let location = format!(
            "sftp://{}@{}/{}",
            opts.user,
            opts.host,
            opts.path.trim_start_matches('/')
        );
        Ok(SftpClient {
            opts,
            host,
            port,
            policy,
            location,
            conn: tokio::sync::Mutex::new(None),
            ops: None,
        })
    }

    /// Tells `counter` of every request this client makes from now on.
    pub fn with_operation_counter(mut self, counter: OperationCounter) -> SftpClient {
        self.ops = Some(counter);
        self
    }

    fn count(&self, op: &'static str, bytes: u64) {
        if let Some(c) = &self.ops {
            c("sftp", op, bytes);
        }
    }

    /// The remote path of `rel`.
    fn full(&self, rel: &str) -> Result<String> {
        if rel.starts_with('/') || rel.split('/').any(|c| c == "..") {
            return Err(Error::corrupt(rel, "path escapes the replica root"));
        }
        let root = self.opts.path.trim_end_matches('/');
        Ok(match (root.is_empty(), rel.is_empty()) {
            (true, _) => rel.to_string(),
            (false, true) => root.to_string(),
            (false, false) => format!("{root}/{rel}"),
        })
    }

    fn err(
        &self,
        what: &str,
        rel: &str,
        e: impl std::fmt::Display,
        kind: BackendErrorKind,
    ) -> Error {
        Error::backend("sftp", kind, format!("{what} {}/{rel}: {e}", self.location))
    }

    /// The error for a failed SFTP request; a missing file is [`Error::NotFound`].
    fn sftp_err(&self, what: &str, rel: &str, e: SftpError) -> Error {
        let kind = match &e {
            SftpError::Status(s) => match s.status_code {
                StatusCode::NoSuchFile => {
                    return Error::NotFound(format!("{}/{rel}", self.location));
                }
                StatusCode::PermissionDenied => BackendErrorKind::Denied,
                StatusCode::NoConnection | StatusCode::ConnectionLost => {
                    BackendErrorKind::Transient
                }
                _ if s.error_message.to_lowercase().contains("no space") => {
                    BackendErrorKind::OutOfSpace
                }
                _ => BackendErrorKind::Other,
            },
            SftpError::IO(_) | SftpError::Timeout => BackendErrorKind::Transient,
            _ => BackendErrorKind::Other,
        };
        self.err(what, rel, e, kind)
    }

    async fn connect(&self) -> Result<Conn> {
        let fail = |e: String, kind| self.err("connect", "", e, kind);
        let refusal = Arc::new(StdMutex::new(None));
        let checker = Checker {
            host: self.host.clone(),
            port: self.port,
            policy: self.policy.clone(),
            refusal: refusal.clone(),
        };
        let config = Arc::new(russh::client::Config {
            inactivity_timeout: Some(Duration::from_secs(300)),
            keepalive_interval: Some(Duration::from_secs(30)),
            ..Default::default()
        });
        let connecting = russh::client::connect(config, (self.host.as_str(), self.port), checker);
        let mut ssh = match tokio::time::timeout(Duration::from_secs(30), connecting).await {
            Err(_) => {
                return Err(fail(
                    "no answer within 30 s".into(),
                    BackendErrorKind::Transient,
                ));
            }
            Ok(Err(e)) => {
                if let Some(why) = refusal.lock().expect("refusal lock").take() {
                    return Err(fail(why, BackendErrorKind::Denied));
                }
                return Err(fail(e.to_string(), BackendErrorKind::Transient));
            }
            Ok(Ok(h)) => h,
        };
        let user = self.opts.user.clone();
        let mut authed = false;
        if let Some(path) = &self.opts.key_path {
            let key = russh::keys::load_secret_key(path, None).map_err(|e| {
                Error::Config(format!(
                    "sftp replica {}: cannot load key-path {} (an unencrypted OpenSSH private \
                     key): {e}",
                    self.location,
                    path.display()
                ))
            })?;
            let hash = ssh.best_supported_rsa_hash().await.ok().flatten().flatten();
            let r = ssh
                .authenticate_publickey(
                    user.clone(),
                    PrivateKeyWithHashAlg::new(Arc::new(key), hash),
                )
                .await
                .map_err(|e| fail(e.to_string(), BackendErrorKind::Transient))?;
            authed = r.success();
        }
        if !authed && let Some(pw) = &self.opts.password {
            let r = ssh
                .authenticate_password(user.clone(), pw.expose())
                .await
                .map_err(|e| fail(e.to_string(), BackendErrorKind::Transient))?;
            authed = r.success();
        }
        if !authed {
            return Err(fail(
                format!(
                    "the server refused user {user:?}: check the replica's key-path (whose public \
                     key must be in the user's authorized_keys) or password"
                ),
                BackendErrorKind::Denied,
            ));
        }
        let s1 = sftp_channel(&ssh)
            .await
            .map_err(|e| fail(e.to_string(), BackendErrorKind::Transient))?;
        let s2 = sftp_channel(&ssh)
            .await
            .map_err(|e| fail(e.to_string(), BackendErrorKind::Transient))?;
        let sftp = SftpSession::new(s1)
            .await
            .map_err(|e| fail(e.to_string(), BackendErrorKind::Transient))?;
        let raw = RawSftpSession::new(s2);
        let version = raw
            .init()
            .await
            .map_err(|e| fail(e.to_string(), BackendErrorKind::Transient))?;
        let posix_rename = version
            .extensions
            .get("posix-rename@openssh.com")
            .is_some_and(|v| v == "1");
        let hardlink = version
            .extensions
            .get("hardlink@openssh.com")
            .is_some_and(|v| v == "1");
        Ok(Conn {
            _ssh: ssh,
            sftp,
            raw,
            posix_rename,
            hardlink,
        })
    }

    /// The open connection, opening one if needed.
    async fn conn(&self) -> Result<Arc<Conn>> {
        let mut g = self.conn.lock().await;
        if let Some(c) = g.as_ref() {
            return Ok(c.clone());
        }
        let c = Arc::new(self.connect().await?);
        *g = Some(c.clone());
        Ok(c)
    }

    /// Runs `f` on the connection within `limit`; any failure other than a missing file
    /// drops the connection, so the next call opens a new one.
    async fn with_conn<T, F, Fut>(&self, what: &str, rel: &str, limit: Duration, f: F) -> Result<T>
    where
        F: FnOnce(Arc<Conn>) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let conn = self.conn().await?;
        let r = match tokio::time::timeout(limit, f(conn)).await {
            Ok(r) => r,
            Err(_) => Err(self.err(
                what,
                rel,
                format!("no answer within {limit:?}"),
                BackendErrorKind::Transient,
            )),
        };
        if let Err(e) = &r
            && !matches!(e, Error::NotFound(_))
        {
            *self.conn.lock().await = None;
        }
        r
    }

    /// Creates `dir` and its missing parents.
    async fn mkdir_all(&self, c: &Conn, dir: &str) -> std::result::Result<(), SftpError> {
        if dir.is_empty() || dir == "/" || c.sftp.try_exists(dir).await? {
            return Ok(());
        }
        let mut at = String::new();
        for part in dir.split('/') {
            if part.is_empty() {
                at.push('/');
                continue;
            }
            if !at.is_empty() && !at.ends_with('/') {
                at.push('/');
            }
            at.push_str(part);
            if !c.sftp.try_exists(at.as_str()).await?
                && let Err(e) = c.sftp.create_dir(at.as_str()).await
                // Another writer may have made it meanwhile.
                && !c.sftp.try_exists(at.as_str()).await?
            {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Moves `tmp` over `target` (see the module docs).
    async fn rename_over(
        &self,
        c: &Conn,
        tmp: &str,
        target: &str,
    ) -> std::result::Result<(), SftpError> {
        if c.posix_rename {
            let mut data = Vec::new();
            ssh_string(&mut data, tmp);
            ssh_string(&mut data, target);
            let reply = c.raw.extended("posix-rename@openssh.com", data).await?;
            return match reply {
                russh_sftp::protocol::Packet::Status(s) if s.status_code == StatusCode::Ok => {
                    Ok(())
                }
                russh_sftp::protocol::Packet::Status(s) => Err(SftpError::Status(s)),
                _ => Err(SftpError::UnexpectedPacket),
            };
        }
        if c.sftp.try_exists(target).await? {
            c.sftp.remove_file(target).await?;
        }
        c.sftp.rename(tmp, target).await
    }

    /// Writes the object at `rel` from `write`, which fills the open temporary file.
    async fn put_with<W, WFut>(&self, rel: &str, size: u64, write: W) -> Result<ObjectInfo>
    where
        W: FnOnce(russh_sftp::client::fs::File) -> WFut,
        WFut: std::future::Future<
                Output = std::result::Result<russh_sftp::client::fs::File, SftpError>,
            >,
    {
        let target = self.full(rel)?;
        let (dir, name) = match target.rsplit_once('/') {
            Some((d, n)) => (d.to_string(), n.to_string()),
            None => (String::new(), target.clone()),
        };
        let tmp = format!(
            "{}.{name}.{:016x}.tmp",
            if dir.is_empty() {
                String::new()
            } else {
                format!("{dir}/")
            },
            rand_u64()
        );
        let info = self
            .with_conn("put", rel, deadline(size), |c| async move {
                let res = async {
                    self.mkdir_all(&c, &dir).await?;
                    let f = c
                        .sftp
                        .open_with_flags(
                            tmp.as_str(),
                            OpenFlags::CREATE | OpenFlags::TRUNCATE | OpenFlags::WRITE,
                        )
                        .await?;
                    let f = write(f).await?;
                    // fsync@openssh.com where the server has it; not an error where it does not.
                    let _ = f.sync_all().await;
                    f.close().await.map_err(SftpError::from)?;
                    self.rename_over(&c, &tmp, &target).await?;
                    c.sftp.metadata(target.as_str()).await
                }
                .await;
                match res {
                    Ok(m) => Ok(ObjectInfo {
                        name: name.clone(),
                        size: m.size.unwrap_or(size),
                        modified: m.modified().unwrap_or_else(|_| SystemTime::now()),
                        is_dir: false,
                    }),
                    Err(e) => {
                        let _ = c.sftp.remove_file(tmp.as_str()).await;
                        Err(self.sftp_err("put", rel, e))
                    }
                }
            })
            .await?;
        self.count("PUT", size);
        Ok(info)
    }

    /// Removes `dir` and everything below it.
    async fn remove_tree(&self, c: &Conn, dir: &str) -> std::result::Result<(), SftpError> {
        let entries = match c.sftp.read_dir(dir).await {
            Ok(r) => r,
            Err(e) if is_not_found(&e) => return Ok(()),
            Err(e) => return Err(e),
        };
        for e in entries {
            let n = e.file_name();
            if n == "." || n == ".." {
                continue;
            }
            let p = format!("{dir}/{n}");
            if e.file_type().is_dir() {
                Box::pin(self.remove_tree(c, &p)).await?;
            } else {
                match c.sftp.remove_file(p.as_str()).await {
                    Err(e) if !is_not_found(&e) => return Err(e),
                    _ => {}
                }
            }
        }
        match c.sftp.remove_dir(dir).await {
            Err(e) if !is_not_found(&e) => Err(e),
            _ => Ok(()),
        }
    }
}

/// Width of the version number in the name of a lease chain file (`u64::MAX` has 20
/// digits), so names sort as their numbers do.
const VERSION_DIGITS: usize = 20;

/// The version of `file` when it is a chain file of the conditional object `name`
/// (`<name>.<20 digits>`).
fn chain_version(name: &str, file: &str) -> Option<u64> {
    let digits = file.strip_prefix(name)?.strip_prefix('.')?;
    if digits.len() != VERSION_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

impl SftpClient {
    /// The directory and base name of the conditional object `rel`.
    fn chain_of(&self, rel: &str) -> Result<(String, String)> {
        let full = self.full(rel)?;
        Ok(match full.rsplit_once('/') {
            Some((d, n)) => (d.to_string(), n.to_string()),
            None => (String::new(), full),
        })
    }

    /// The remote path of version `v` of the chain `name` in `dir`.
    fn chain_file(dir: &str, name: &str, v: u64) -> String {
        let file = format!("{name}.{v:0width$}", width = VERSION_DIGITS);
        if dir.is_empty() {
            file
        } else {
            format!("{dir}/{file}")
        }
    }

    /// The versions of the chain `name` present in `dir`, sorted.
    async fn chain_versions(
        &self,
        c: &Conn,
        dir: &str,
        name: &str,
    ) -> std::result::Result<Vec<u64>, SftpError> {
        let listing = if dir.is_empty() { "." } else { dir };
        let entries = match c.sftp.read_dir(listing).await {
            Ok(r) => r,
            Err(e) if is_not_found(&e) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out: Vec<u64> = entries
            .filter_map(|e| chain_version(name, &e.file_name()))
            .collect();
        out.sort_unstable();
        Ok(out)
    }
}

/// A new channel on `ssh` running the sftp subsystem.
async fn sftp_channel(
    ssh: &russh::client::Handle<Checker>,
) -> std::result::Result<russh::ChannelStream<russh::client::Msg>, russh::Error> {
    let ch = ssh.channel_open_session().await?;
    ch.request_subsystem(true, "sftp").await?;
    Ok(ch.into_stream())
}

fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    u64::from_le_bytes(b)
}

#[async_trait]
impl ReplicaClient for SftpClient {
    fn type_name(&self) -> &'static str {
        "sftp"
    }

    fn location(&self) -> String {
        self.location.clone()
    }

    async fn list(&self, dir: &str) -> Result<Vec<ObjectInfo>> {
        let full = self.full(dir)?;
        let out = self
            .with_conn("list", dir, deadline(0), |c| async move {
                let entries = match c.sftp.read_dir(full.as_str()).await {
                    Ok(r) => r,
                    Err(e) if is_not_found(&e) => return Ok(Vec::new()),
                    Err(e) => return Err(self.sftp_err("list", dir, e)),
                };
                let mut out: Vec<ObjectInfo> = entries
                    .filter(|e| {
                        let n = e.file_name();
                        n != "." && n != ".." && !n.ends_with(".tmp")
                    })
                    .map(|e| {
                        let m = e.metadata();
                        ObjectInfo {
                            name: e.file_name(),
                            size: if m.is_dir() { 0 } else { m.size.unwrap_or(0) },
                            modified: m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                            is_dir: m.is_dir(),
                        }
                    })
                    .collect();
                out.sort_by(|a, b| a.name.cmp(&b.name));
                Ok(out)
            })
            .await?;
        self.count("LIST", 0);
        Ok(out)
    }

    async fn get(&self, path: &str) -> Result<Bytes> {
        let full = self.full(path)?;
        let data = self
            .with_conn("get", path, deadline(64 << 20), |c| async move {
                c.sftp
                    .read(full.as_str())
                    .await
                    .map_err(|e| self.sftp_err("get", path, e))
            })
            .await?;
        self.count("GET", data.len() as u64);
        Ok(Bytes::from(data))
    }

    async fn get_stream(&self, path: &str) -> Result<ObjectStream> {
        let full = self.full(path)?;
        let (file, size) = self
            .with_conn("get", path, deadline(0), |c| async move {
                let f = c
                    .sftp
                    .open(full.as_str())
                    .await
                    .map_err(|e| self.sftp_err("get", path, e))?;
                let size = f.metadata().await.ok().and_then(|m| m.size);
                Ok((f, size))
            })
            .await?;
        self.count("GET", size.unwrap_or(0));
        let object = format!("{}/{path}", self.location);
        let body = tokio_util::io::ReaderStream::with_capacity(file, 256 << 10)
            .map(move |r| {
                r.map_err(|e| {
                    Error::backend_from(
                        "sftp",
                        BackendErrorKind::Transient,
                        format!("read {object}: {e}"),
                        e,
                    )
                })
            })
            .boxed();
        Ok(ObjectStream { size, body })
    }

    async fn put(&self, path: &str, data: Bytes) -> Result<ObjectInfo> {
        let size = data.len() as u64;
        self.put_with(path, size, |mut f| async move {
            f.write_all(&data).await?;
            f.flush().await?;
            Ok(f)
        })
        .await
    }

    async fn put_file(&self, path: &str, local: &Path) -> Result<ObjectInfo> {
        let size = tokio::fs::metadata(local)
            .await
            .map_err(Error::io("stat", local))?
            .len();
        let mut src = tokio::fs::File::open(local)
            .await
            .map_err(Error::io("open", local))?;
        self.put_with(path, size, |mut f| async move {
            tokio::io::copy(&mut src, &mut f).await?;
            f.flush().await?;
            Ok(f)
        })
        .await
    }

    fn conditional_writes(&self) -> bool {
        true
    }

    async fn lease_unsupported(&self) -> Result<Option<String>> {
        let c = self.conn().await?;
        Ok((!c.hardlink).then(|| {
            format!(
                "the SFTP server at {} does not offer hardlink@openssh.com, which the lease's \
                 compare-and-swap needs (OpenSSH's sftp-server has it)",
                self.opts.host
            )
        }))
    }

    fn conditional_object(&self, path: &str) -> String {
        format!(
            "{}/{path}.* (the numbered versions of the lease)",
            self.location
        )
    }

    /// The highest version of the chain (see the module docs); a version removed while it
    /// was being read (a newer one appeared) is looked for again.
    async fn get_versioned(&self, path: &str) -> Result<Option<(Bytes, String)>> {
        let (dir, name) = self.chain_of(path)?;
        let got = self
            .with_conn("get", path, deadline(0), |c| async move {
                for _ in 0..8 {
                    let versions = self
                        .chain_versions(&c, &dir, &name)
                        .await
                        .map_err(|e| self.sftp_err("list", path, e))?;
                    let Some(&v) = versions.last() else {
                        return Ok(None);
                    };
                    match c.sftp.read(Self::chain_file(&dir, &name, v)).await {
                        Ok(data) => return Ok(Some((Bytes::from(data), v.to_string()))),
                        Err(e) if is_not_found(&e) => continue,
                        Err(e) => return Err(self.sftp_err("get", path, e)),
                    }
                }
                Err(self.err(
                    "get",
                    path,
                    "its versions keep changing while it is read",
                    BackendErrorKind::Transient,
                ))
            })
            .await?;
        self.count("LIST", 0);
        self.count("GET", got.as_ref().map_or(0, |(d, _)| d.len() as u64));
        Ok(got)
    }

    /// Links a temporary file holding `data` as the next version of the chain; see the
    /// module docs for why exactly one of two racing writers wins.
    async fn put_if(
        &self,
        path: &str,
        data: Bytes,
        expected: Option<&str>,
    ) -> Result<Option<String>> {
        let next = match expected {
            None => 1,
            // A version this backend never gave out cannot be the current one.
            Some(v) => match v.parse::<u64>() {
                Ok(v) if v < u64::MAX => v + 1,
                _ => return Ok(None),
            },
        };
        let (dir, name) = self.chain_of(path)?;
        let target = Self::chain_file(&dir, &name, next);
        let tmp = format!("{target}.{:016x}.tmp", rand_u64());
        let size = data.len() as u64;
        let won = self
            .with_conn("put", path, deadline(size), |c| async move {
                if !c.hardlink {
                    return Err(self.err(
                        "put",
                        path,
                        "the server does not offer hardlink@openssh.com",
                        BackendErrorKind::Other,
                    ));
                }
                let res = async {
                    self.mkdir_all(&c, &dir).await?;
                    let mut f = c
                        .sftp
                        .open_with_flags(
                            tmp.as_str(),
                            OpenFlags::CREATE | OpenFlags::TRUNCATE | OpenFlags::WRITE,
                        )
                        .await?;
                    f.write_all(&data).await?;
                    f.flush().await?;
                    let _ = f.sync_all().await;
                    f.close().await.map_err(SftpError::from)?;
                    let linked = c.raw.hardlink(tmp.as_str(), target.as_str()).await;
                    let _ = c.sftp.remove_file(tmp.as_str()).await;
                    if let Err(e) = linked {
                        // link(2) fails when the name exists: another writer took this
                        // version. Any other failure leaves it absent.
                        return if c.sftp.try_exists(target.as_str()).await? {
                            Ok(false)
                        } else {
                            Err(e)
                        };
                    }
                    let versions = self.chain_versions(&c, &dir, &name).await?;
                    if versions.iter().any(|&v| v > next) {
                        // A name removed long ago, recreated by a stale writer: not current.
                        let _ = c.sftp.remove_file(target.as_str()).await;
                        return Ok(false);
                    }
                    for v in versions.into_iter().filter(|&v| v < next) {
                        let _ = c.sftp.remove_file(Self::chain_file(&dir, &name, v)).await;
                    }
                    Ok(true)
                }
                .await;
                res.map_err(|e: SftpError| self.sftp_err("put", path, e))
            })
            .await?;
        self.count("PUT", size);
        Ok(won.then(|| next.to_string()))
    }

    async fn delete(&self, path: &str) -> Result<()> {
        let full = self.full(path)?;
        self.with_conn("delete", path, deadline(0), |c| async move {
            match c.sftp.remove_file(full.as_str()).await {
                Err(e) if !is_not_found(&e) => Err(self.sftp_err("delete", path, e)),
                _ => Ok(()),
            }
        })
        .await?;
        self.count("DELETE", 0);
        Ok(())
    }

    async fn delete_all(&self, dir: &str) -> Result<()> {
        let full = self.full(dir)?;
        self.with_conn("delete", dir, deadline(0) * 4, |c| async move {
            self.remove_tree(&c, &full)
                .await
                .map_err(|e| self.sftp_err("delete", dir, e))
        })
        .await?;
        self.count("DELETE", 0);
        Ok(())
    }
}
