//! Downloading a plan's WAL segments with bounded concurrency and memory, and applying them
//! in order as they arrive (large segments streamed, small ones batched).
use super::*;

/// Decompressed bytes of segments applied in one trip to the blocking pool.
const BATCH_BYTES: usize = 4 << 20;

/// Unit of the download budget, in compressed bytes.
const BUDGET_UNIT: u64 = 4096;
/// Compressed bytes of segments downloading, queued or being applied at once: 8 MiB (WAL
/// compresses about 2-3x, so roughly 16-24 MiB decompressed). A segment larger than the
/// whole budget takes all of it and is alone.
const IN_FLIGHT_UNITS: usize = (8 << 20) / BUDGET_UNIT as usize;

/// A segment on its way from the download to the writer: its data (`Ok(None)` for a large
/// segment, streamed by the consumer instead of downloaded whole) and its share of the
/// in-flight budget.
type InFlight = (
    WalSegmentInfo,
    Result<Option<Vec<u8>>>,
    tokio::sync::OwnedSemaphorePermit,
);

/// Downloads the plan's segments with bounded concurrency, in order, and applies each to
/// `writer` as it arrives. At most `2 * parallelism + 1` segments, and about 8 MiB of them
/// compressed ([`IN_FLIGHT_UNITS`]), are held at once (in flight, queued, being applied),
/// whatever the size of an index.
pub(super) async fn apply_segments(
    client: &Arc<dyn ReplicaClient>,
    replica: &str,
    plan: &Plan,
    mut writer: output::DbWriter,
    tmp: &Path,
    parallelism: usize,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<output::DbWriter> {
    let generation = plan.generation;
    let total = plan.segments.len();
    // Downloads and application run in the same task, polled together by `try_join`, so
    // downloads keep progressing while a segment is applied on the blocking pool. The
    // channel bounds how many downloaded segments wait; dropping the restore drops both.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<InFlight>(parallelism.max(1));
    let producer = download_in_order(client, plan, parallelism, tx);
    let consumer = async move {
        let mut done = 0usize;
        let mut index_started = Instant::now();
        while let Some(first) = rx.recv().await {
            let (batch, last_streamed) = next_batch(first, &mut rx);
            let mut segs = Vec::with_capacity(batch.len());
            let mut permits = Vec::with_capacity(batch.len());
            for (seg, data, permit) in batch {
                permits.push(permit);
                let Some(data) = data? else {
                    continue;
                };
                let object = object_name(&**client, &seg.path());
                segs.push((seg, data, object));
            }
            let mut n = segs.len();
            let (w, mut finished) = blocking(tmp, move || {
                let mut finished = Vec::new();
                for (seg, data, object) in &segs {
                    if let Some(f) = writer.apply_segment(seg, data, object)? {
                        finished.push(f);
                    }
                }
                Ok((writer, finished))
            })
            .await?;
            writer = w;
            drop(permits);
            if let Some((seg, _, permit)) = last_streamed {
                let (w, f) = apply_streamed(client, &seg, writer, tmp).await?;
                writer = w;
                finished.extend(f);
                drop(permit);
                n += 1;
            }
            for applied in finished {
                log_applied(replica, generation, applied, index_started);
                index_started = Instant::now();
            }
            for _ in 0..n {
                done += 1;
                progress(Progress::Segment { done, total });
            }
        }
        let (w, finished) = blocking(tmp, move || {
            let finished = writer.finish_index()?;
            Ok((writer, finished))
        })
        .await?;
        if let Some(applied) = finished {
            log_applied(replica, generation, applied, index_started);
        }
        Ok::<_, Error>(w)
    };
    let ((), writer) = futures::future::try_join(producer, consumer).await?;
    Ok(writer)
}

/// Downloads the plan's segments, `parallelism` at a time, and sends them to `tx` in plan
/// order.
///
/// Memory is bounded in bytes too: a segment takes its listed (compressed) size from a
/// budget of [`IN_FLIGHT_UNITS`] before its download starts and gives it back once applied.
/// Permits are taken strictly in plan order (`then` runs one at a time), and everything
/// holding permits precedes the segment waiting for them, so the wait always ends.
async fn download_in_order(
    client: &Arc<dyn ReplicaClient>,
    plan: &Plan,
    parallelism: usize,
    tx: tokio::sync::mpsc::Sender<InFlight>,
) -> Result<()> {
    let budget = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT_UNITS));
    let downloads = futures::stream::iter(plan.segments.iter().cloned())
        .then(|seg| {
            let budget = budget.clone();
            async move {
                let units = (seg.size.div_ceil(BUDGET_UNIT) as usize).clamp(1, IN_FLIGHT_UNITS);
                // The semaphore is never closed.
                let permit = budget
                    .acquire_many_owned(units as u32)
                    .await
                    .expect("restore budget semaphore is never closed");
                (seg, permit)
            }
        })
        .map(|(seg, permit)| {
            let client = client.clone();
            async move {
                if streamed(&seg) {
                    return (seg, Ok(None), permit);
                }
                let started = Instant::now();
                let res = download(&*client, &seg.path(), seg.size).await.map(Some);
                tracing::debug!(
                    generation = %seg.generation,
                    index = seg.index,
                    offset = seg.offset,
                    elapsed = ?started.elapsed(),
                    "downloaded wal segment"
                );
                (seg, res, permit)
            }
        })
        .buffered(parallelism);
    let mut downloads = std::pin::pin!(downloads);
    while let Some(item) = downloads.next().await {
        if tx.send(item).await.is_err() {
            break;
        }
    }
    Ok(())
}

/// `first` and every segment already downloaded behind it, up to [`BATCH_BYTES`], to apply
/// in one trip to the blocking pool (bounded by the channel's capacity): a long tail of tiny
/// segments would otherwise pay a thread hand-off per segment. A streamed segment ends the
/// batch and comes back on its own, as the second value.
fn next_batch(
    first: InFlight,
    rx: &mut tokio::sync::mpsc::Receiver<InFlight>,
) -> (Vec<InFlight>, Option<InFlight>) {
    let len =
        |d: &Result<Option<Vec<u8>>>| d.as_ref().map_or(0, |d| d.as_ref().map_or(0, Vec::len));
    let is_streamed = |d: &Result<Option<Vec<u8>>>| matches!(d, Ok(None));
    let mut bytes = len(&first.1);
    let mut stop = is_streamed(&first.1);
    let mut batch = vec![first];
    while !stop
        && bytes < BATCH_BYTES
        && let Ok(item) = rx.try_recv()
    {
        bytes += len(&item.1);
        stop = is_streamed(&item.1);
        batch.push(item);
    }
    let last_streamed = batch.pop_if(|b| is_streamed(&b.1));
    (batch, last_streamed)
}

/// Compressed size above which a segment is streamed (decompressed and applied as it
/// arrives) instead of downloaded whole; segments whose size the listing does not give are
/// streamed too, so nothing bounds memory but this module's own buffers.
const STREAM_SEGMENT_BYTES: u64 = 1 << 20;

fn streamed(seg: &WalSegmentInfo) -> bool {
    seg.size == 0 || seg.size > STREAM_SEGMENT_BYTES
}

/// Streams one large segment from the store through the decompressor into `writer`,
/// retrying transient errors from the segment's start.
async fn apply_streamed(
    client: &Arc<dyn ReplicaClient>,
    seg: &WalSegmentInfo,
    mut writer: output::DbWriter,
    tmp: &Path,
) -> Result<(output::DbWriter, Option<output::AppliedIndex>)> {
    let path = seg.path();
    let object = object_name(&**client, &path);
    let backend = client.type_name();
    // Without a listed size nothing else bounds the body: a segment may hold at most
    // MAX_UNSIZED_OBJECT bytes of WAL.
    let limit = if seg.size == 0 {
        backend::MAX_UNSIZED_OBJECT
    } else {
        backend::MAX_DECOMPRESSED
    };
    let mut attempt = 1;
    loop {
        let res = match backend::open_checked(&**client, &path, seg.size).await {
            Err(e) => Err(e),
            Ok(stream) => {
                let seg2 = seg.clone();
                let body = Body {
                    stream,
                    limit,
                    backend,
                    object: object.clone(),
                };
                let (w, res) = body
                    .decompress(tmp, writer, move |w, r, object, read_err| {
                        w.apply_segment_stream(&seg2, r, object, read_err)
                    })
                    .await?;
                writer = w;
                res
            }
        };
        match res {
            Ok(f) => return Ok((writer, f)),
            Err(e) if retryable(&e) && attempt < DOWNLOAD_ATTEMPTS => {
                tracing::warn!(path, attempt, error = %e, "wal segment download failed, retrying");
                tokio::time::sleep(backoff(attempt)).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

fn log_applied(replica: &str, generation: Generation, a: output::AppliedIndex, started: Instant) {
    tracing::info!(
        replica,
        generation = %generation,
        index = a.index,
        frames = a.frames,
        wal_bytes = a.wal_bytes,
        db_pages = a.db_pages,
        elapsed = ?started.elapsed(),
        "applied wal"
    );
}
