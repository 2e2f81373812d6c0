//! What every test server shares: finding its binary (or skipping loudly), a tiny HTTP
//! client to probe it, and [`ServerProc`], the child process in its own process group that
//! is killed with everything it started on drop. Part of `servers.rs`.

use std::fs::{self, File};
use std::io::{Read, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to answer its first HTTP request.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

// ------------------------------------------------------------------------------------------
// Finding binaries

pub fn find_on_path(name: &str) -> Option<PathBuf> {
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

/// Where `needle` first occurs in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
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
