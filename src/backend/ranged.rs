//! Large objects read as consecutive byte ranges, several at once, and delivered in order
//! as one body. Object stores cap the bandwidth of each connection, so one GET of a
//! multi-gigabyte snapshot runs at one connection's speed however fast the disk and the
//! link are; ranged GETs on separate connections add up (Litestream #266: a fork's parallel
//! download took a 200 GB restore from 35 to 5 minutes).
//!
//! Every range is read with `If-Match` on the ETag of the first response, and each answer
//! is checked to be of that ETag and size, exactly the range asked for, and complete: an
//! object replaced during the read, or a short or long body, is an error, never a body
//! spliced from two versions.
use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path as ObjPath;
use object_store::{GetOptions, GetRange};
use tokio::sync::mpsc;

use super::objstore::Store;
use crate::error::{BackendErrorKind, Error, Result};

/// How large objects are read: in ranges of `chunk` bytes, `in_flight` at once, when they
/// are larger than `threshold`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RangedReads {
    /// Objects larger than this (bytes) are read in ranges; others with one GET.
    pub threshold: u64,
    /// Bytes per range (the last one may be shorter).
    pub chunk: u64,
    /// Ranges being fetched or held at once: at most this many connections, and at most
    /// `in_flight * chunk` bytes held in memory.
    pub in_flight: usize,
}

/// What the S3, GCS and Azure backends use.
///
/// - `chunk`, 8 MiB: AWS's performance guidelines for S3 name 8 or 16 MB as the typical
///   byte-range size; at 8 MiB the first-byte latency of each request (tens of ms on a
///   real store) is a few percent of the range's transfer time at tens of MB/s.
/// - `in_flight`, 8: the body arrives at up to 8 connections' speed, enough to keep the
///   restore's decompression and writes busy (benches/README.md, scenario 7, measures it
///   through a proxy that caps each connection), while holding at most 64 MiB.
/// - `threshold`, 16 MiB: an object of two ranges or fewer gains little and would cost
///   requests; every WAL segment walship writes (cut at 16 MiB) stays one GET, so a
///   restore's request count grows only with its large snapshots.
pub const RANGED_READS: RangedReads = RangedReads {
    threshold: 16 << 20,
    chunk: 8 << 20,
    in_flight: 8,
};

/// What every range of one object's read shares.
struct Object {
    store: Store,
    /// The path relative to the replica root, and the key it is stored at.
    path: String,
    key: ObjPath,
    /// The ETag of the first response: every range must be of it.
    e_tag: String,
    size: u64,
    plan: RangedReads,
    rt: tokio::runtime::Handle,
}

impl Object {
    /// `location/path`, for messages.
    fn name(&self) -> String {
        format!("{}/{}", self.store.location, self.path)
    }

    /// The error for a range whose answer shows the object changed since the read began:
    /// transient, as a new read gets the new version whole.
    fn changed(&self, range: &Range<u64>, why: &str) -> Error {
        Error::backend(
            self.store.type_name(),
            BackendErrorKind::Transient,
            format!(
                "get {}: the object changed while it was read in ranges (bytes {}-{}: {why}; \
                 it had ETag {} when the read began); read it again",
                self.name(),
                range.start,
                range.end - 1,
                self.e_tag
            ),
        )
    }

    /// A body that ended before its range did: transient, like any cut-off body.
    fn short(&self, range: &Range<u64>, got: u64) -> Error {
        Error::backend(
            self.store.type_name(),
            BackendErrorKind::Transient,
            format!(
                "get {}: the body of bytes {}-{} ended after {got} of {} bytes",
                self.name(),
                range.start,
                range.end - 1,
                range.end - range.start
            ),
        )
    }

    /// A body longer than the range asked for: a broken store.
    fn long(&self, range: &Range<u64>) -> Error {
        Error::corrupt(
            self.name(),
            format!(
                "the store answered the range of bytes {}-{} with more than {} bytes",
                range.start,
                range.end - 1,
                range.end - range.start
            ),
        )
    }

    /// An error while a body is read, as a single GET's body reports it.
    fn body_error(&self, e: object_store::Error) -> Error {
        let message = format!("get {}: {e}", self.name());
        Error::backend_from(
            self.store.type_name(),
            BackendErrorKind::Transient,
            message,
            e,
        )
    }

    /// The `i`th range.
    fn range(&self, i: u64) -> Range<u64> {
        let start = i * self.plan.chunk;
        start..(start + self.plan.chunk).min(self.size)
    }

    /// Fetches `range` with its own GET and forwards its body to `tx`.
    async fn fetch(
        &self,
        range: Range<u64>,
        tx: &mpsc::UnboundedSender<Result<Bytes>>,
    ) -> Result<()> {
        let s = &self.store;
        let opts = GetOptions {
            if_match: Some(self.e_tag.clone()),
            range: Some(GetRange::Bounded(range.clone())),
            ..GetOptions::default()
        };
        let r = s
            .timed("get", &self.path, 0, async {
                match s.store.get_opts(&self.key, opts).await {
                    Ok(r) => Ok(r),
                    Err(object_store::Error::Precondition { .. }) => {
                        Err(self.changed(&range, "the store refused its ETag"))
                    }
                    Err(e) => Err(s.err("get", &self.path, e)),
                }
            })
            .await?;
        s.count("GET", range.end - range.start);
        // Also checked here, for a store that ignores If-Match.
        match &r.meta.e_tag {
            Some(t) if same_e_tag(t, &self.e_tag) => {}
            t => return Err(self.changed(&range, &format!("the store answered ETag {t:?}"))),
        }
        if r.meta.size != self.size {
            let why = format!(
                "the store answered a size of {} bytes, not {}",
                r.meta.size, self.size
            );
            return Err(self.changed(&range, &why));
        }
        if r.range != range {
            let why = format!("the store answered bytes {}-{}", r.range.start, r.range.end);
            return Err(Error::corrupt(self.name(), why));
        }
        self.forward(range, r.into_stream(), false, tx).await
    }

    /// Sends the `range.len()` bytes of `body` to `tx`. With `whole`, `body` is the whole
    /// object's from `range.start` and the rest is dropped unread; otherwise it must end
    /// exactly at `range.end`.
    async fn forward(
        &self,
        range: Range<u64>,
        mut body: BoxStream<'static, object_store::Result<Bytes>>,
        whole: bool,
        tx: &mpsc::UnboundedSender<Result<Bytes>>,
    ) -> Result<()> {
        let want = range.end - range.start;
        let mut got = 0u64;
        while got < want {
            let Some(piece) = body.next().await else {
                return Err(self.short(&range, got));
            };
            let mut piece = piece.map_err(|e| self.body_error(e))?;
            let left = want - got;
            if piece.len() as u64 > left {
                if !whole {
                    return Err(self.long(&range));
                }
                piece.truncate(left as usize);
            }
            got += piece.len() as u64;
            if tx.send(Ok(piece)).is_err() {
                // The reader is gone.
                return Ok(());
            }
        }
        if !whole {
            loop {
                match body.next().await {
                    None => break,
                    Some(Ok(p)) if p.is_empty() => {}
                    Some(Ok(_)) => return Err(self.long(&range)),
                    Some(Err(e)) => return Err(self.body_error(e)),
                }
            }
        }
        Ok(())
    }
}

/// Whether two ETags are the same, quoted or not (an emulator answers both ways).
fn same_e_tag(a: &str, b: &str) -> bool {
    a.trim_matches('"') == b.trim_matches('"')
}

/// One range being fetched by its task: what it has sent so far waits in `rx`.
struct Pending {
    range: Range<u64>,
    /// Bytes taken out of `rx`.
    got: u64,
    rx: mpsc::UnboundedReceiver<Result<Bytes>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Pending {
    fn drop(&mut self) {
        // A reader that stops early (an error downstream) stops the fetches too.
        self.task.abort();
    }
}

/// The ranges after the one being read, fetched ahead, in order.
struct Reader {
    object: Arc<Object>,
    /// Index of the next range to start.
    next: u64,
    pending: VecDeque<Pending>,
}

impl Reader {
    /// Starts the task of range `i`; with `first`, the task reads the body of the first
    /// GET (the whole object's) instead of asking for the range.
    fn start(&mut self, first: Option<BoxStream<'static, object_store::Result<Bytes>>>) {
        let range = self.object.range(self.next);
        self.next += 1;
        let (tx, rx) = mpsc::unbounded_channel();
        let (object, r) = (self.object.clone(), range.clone());
        let task = self.object.rt.spawn(async move {
            let res = match first {
                Some(body) => object.forward(r, body, true, &tx).await,
                None => object.fetch(r, &tx).await,
            };
            if let Err(e) = res {
                let _ = tx.send(Err(e));
            }
        });
        self.pending.push_back(Pending {
            range,
            got: 0,
            rx,
            task,
        });
    }

    /// Starts ranges until `in_flight` are pending or none are left.
    fn fill(&mut self) {
        let n = self.object.size.div_ceil(self.object.plan.chunk);
        while self.pending.len() < self.object.plan.in_flight.max(1) && self.next < n {
            self.start(None);
        }
    }

    /// The next piece of the body, in order; `None` at its end or after an error.
    async fn next_piece(&mut self) -> Option<Result<Bytes>> {
        loop {
            let head = self.pending.front_mut()?;
            match head.rx.recv().await {
                Some(Ok(piece)) => {
                    head.got += piece.len() as u64;
                    return Some(Ok(piece));
                }
                Some(Err(e)) => {
                    self.stop();
                    return Some(Err(e));
                }
                None if head.got != head.range.end - head.range.start => {
                    // The task ended without an error (it cannot, unless aborted): never
                    // pass a gap on as data.
                    let e = self.object.short(&head.range, head.got);
                    self.stop();
                    return Some(Err(e));
                }
                None => {
                    self.pending.pop_front();
                    self.fill();
                }
            }
        }
    }

    /// Stops every fetch; the body ends.
    fn stop(&mut self) {
        self.pending.clear();
        self.next = u64::MAX;
    }
}

/// The body of `path` (stored at `key`; `size` bytes with ETag `e_tag`) read in ranges by
/// `plan`, whose first range comes from `first`, the body of the GET that found it large.
/// Counts one GET per range after the first (the caller counts the first).
pub(super) fn read(
    store: &Store,
    path: &str,
    key: ObjPath,
    e_tag: String,
    size: u64,
    plan: RangedReads,
    first: BoxStream<'static, object_store::Result<Bytes>>,
) -> BoxStream<'static, Result<Bytes>> {
    let object = Arc::new(Object {
        store: store.clone(),
        path: path.to_string(),
        key,
        e_tag,
        size,
        plan,
        rt: tokio::runtime::Handle::current(),
    });
    let mut reader = Reader {
        object,
        next: 0,
        pending: VecDeque::new(),
    };
    reader.start(Some(first));
    reader.fill();
    futures::stream::unfold(reader, |mut r| async move {
        let piece = r.next_piece().await?;
        Some((piece, r))
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use futures::TryStreamExt;
    use object_store::memory::InMemory;
    use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

    use super::*;

    const PLAN: RangedReads = RangedReads {
        threshold: 2_500,
        chunk: 1_000,
        in_flight: 3,
    };

    /// A store in memory reading by `plan`, and the GETs it counts (bytes each).
    fn store(plan: RangedReads) -> (Store, Arc<InMemory>, Arc<Mutex<Vec<u64>>>) {
        let mem = Arc::new(InMemory::new());
        let mut s = Store::new(
            "s3",
            mem.clone() as Arc<dyn ObjectStore>,
            "pre".into(),
            String::new(),
            "s3://b/pre".into(),
        );
        let gets = Arc::new(Mutex::new(Vec::new()));
        let g = gets.clone();
        s.ops = Some(Arc::new(move |_, op, bytes| {
            if op == "GET" {
                g.lock().unwrap().push(bytes);
            }
        }));
        s.ranged = Some(plan);
        (s, mem, gets)
    }

    fn data(n: usize, seed: u8) -> Vec<u8> {
        (0..n).map(|i| (i * 31 + i / 7) as u8 ^ seed).collect()
    }

    async fn put(mem: &InMemory, data: &[u8]) {
        let key = ObjPath::from("pre/x");
        mem.put(&key, PutPayload::from(data.to_vec()))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn large_objects_come_whole_and_in_order_one_get_per_range() {
        for size in [2_501, 3_000, 10_123, 20_000] {
            let (s, mem, gets) = store(PLAN);
            let want = data(size, 7);
            put(&mem, &want).await;
            let st = s.get_stream("x").await.unwrap();
            assert_eq!(st.size, Some(size as u64));
            let got: Vec<Bytes> = st.body.try_collect().await.unwrap();
            assert!(got.concat() == want, "size {size}: body differs");
            let gets = gets.lock().unwrap().clone();
            assert_eq!(gets.len(), size.div_ceil(1_000), "size {size}: {gets:?}");
            assert_eq!(gets.iter().sum::<u64>(), size as u64, "{gets:?}");
        }
    }

    #[tokio::test]
    async fn objects_up_to_the_threshold_are_one_get() {
        let (s, mem, gets) = store(PLAN);
        let want = data(2_500, 1);
        put(&mem, &want).await;
        let got: Vec<Bytes> = s
            .get_stream("x")
            .await
            .unwrap()
            .body
            .try_collect()
            .await
            .unwrap();
        assert!(got.concat() == want);
        assert_eq!(*gets.lock().unwrap(), vec![2_500]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn at_most_in_flight_ranges_are_fetched_ahead_of_the_reader() {
        let (s, mem, gets) = store(PLAN);
        put(&mem, &data(50_000, 2)).await;
        let mut st = s.get_stream("x").await.unwrap();
        let n = || gets.lock().unwrap().len();
        let t0 = std::time::Instant::now();
        while n() < PLAN.in_flight && t0.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(n(), PLAN.in_flight, "nothing read yet");
        // Reading the first range whole lets one more start.
        let mut read = 0;
        while read < PLAN.chunk {
            read += st.body.next().await.unwrap().unwrap().len() as u64;
        }
        let _ = st.body.next().await.unwrap().unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(n(), PLAN.in_flight + 1);
    }

    #[tokio::test]
    async fn an_object_replaced_during_the_read_is_an_error_not_a_splice() {
        let (s, mem, _) = store(RangedReads {
            in_flight: 2,
            ..PLAN
        });
        put(&mem, &data(20_000, 3)).await;
        let mut st = s.get_stream("x").await.unwrap();
        let first = st.body.next().await.unwrap().unwrap();
        put(&mem, &data(20_000, 4)).await;
        let mut read = first.len();
        let err = loop {
            match st.body.next().await {
                Some(Ok(b)) => read += b.len(),
                Some(Err(e)) => break e,
                None => panic!("the body ended after {read} bytes without an error"),
            }
        };
        assert!(read < 20_000, "{read}");
        let msg = err.to_string();
        assert!(msg.contains("changed while it was read in ranges"), "{msg}");
        assert!(
            msg.contains("s3://b/pre/x") && msg.contains("read it again"),
            "{msg}"
        );
        assert!(
            st.body.next().await.is_none(),
            "the body ends after the error"
        );
    }

    /// An `Object` of `size` bytes over an empty store, for `forward`.
    fn object(size: u64) -> Object {
        let (s, _, _) = store(PLAN);
        Object {
            store: s,
            path: "x".into(),
            key: ObjPath::from("pre/x"),
            e_tag: "e".into(),
            size,
            plan: PLAN,
            rt: tokio::runtime::Handle::current(),
        }
    }

    async fn forward(pieces: &[usize], whole: bool) -> (Result<()>, usize) {
        let o = object(10_000);
        let body = futures::stream::iter(
            pieces
                .iter()
                .map(|n| Ok(Bytes::from(vec![0u8; *n])))
                .collect::<Vec<_>>(),
        )
        .boxed();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let r = o.forward(1_000..2_000, body, whole, &tx).await;
        drop(tx);
        let mut n = 0;
        while let Some(Ok(b)) = rx.recv().await {
            n += b.len();
        }
        (r, n)
    }

    #[tokio::test]
    async fn short_and_long_range_bodies_are_errors() {
        let (r, n) = forward(&[600, 400], false).await;
        assert!(r.is_ok() && n == 1_000);
        let (r, _) = forward(&[600, 300], false).await;
        let e = r.unwrap_err();
        assert!(
            e.to_string().contains("ended after 900 of 1000 bytes"),
            "{e}"
        );
        assert!(
            matches!(
                e,
                Error::Backend {
                    kind: BackendErrorKind::Transient,
                    ..
                }
            ),
            "{e:?}"
        );
        let (r, _) = forward(&[600, 401], false).await;
        assert!(matches!(r, Err(Error::Corrupt { .. })), "{r:?}");
        let (r, _) = forward(&[1_000, 1], false).await;
        assert!(matches!(r, Err(Error::Corrupt { .. })), "{r:?}");
        // The first GET's body is the whole object's: its rest is dropped.
        let (r, n) = forward(&[600, 700, 5_000], true).await;
        assert!(r.is_ok() && n == 1_000, "{r:?} {n}");
    }
}
