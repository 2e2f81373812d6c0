//! The fault-injecting TCP proxy the backend tests put in front of a server: pass, reset,
//! black hole, 500 answers, a full store (507 to uploads), switchable while connections are
//! open, counting the HTTP requests that pass. Part of `servers.rs`.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::find;

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
    /// The GETs among them of snapshots (`*.snapshot.lz4`): one per range when a snapshot
    /// is read in ranges.
    pub snapshot_gets: u64,
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
    snapshot_gets: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    by_method: Mutex<BTreeMap<String, u64>>,
}

impl Counters {
    /// One request forwarded upstream.
    fn count(&self, method: &str, target: &str) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if target.contains("walship-lease.json") {
            self.lease_requests.fetch_add(1, Ordering::Relaxed);
        }
        if method == "GET" && target.contains(".snapshot.lz4") {
            self.snapshot_gets.fetch_add(1, Ordering::Relaxed);
        }
        *self
            .by_method
            .lock()
            .expect("stats lock")
            .entry(method.to_string())
            .or_default() += 1;
    }
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
            snapshot_gets: c.snapshot_gets.load(Ordering::Relaxed),
            bytes_up: c.bytes_up.load(Ordering::Relaxed),
            bytes_down: c.bytes_down.load(Ordering::Relaxed),
        }
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
                parser.feed(&first, &mut |method, target| c.count(method, target));
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
                parser.feed(&buf[..n], &mut |method, target| c.count(method, target));
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
