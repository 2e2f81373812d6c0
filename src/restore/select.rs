//! Choosing what to restore inside one generation (pure): Litestream's §3.2 snapshot choice
//! and §3.3 segment walk, with its sharp edges fixed.
//!
//! Differences from v0.3.13, all of them refusals or fixes where Litestream silently
//! restores something other than what was asked:
//! - inputs are sorted here by index and (index, offset), so the choice does not depend on
//!   the listing order (Litestream's snapshot-by-index pick only works on sorted listings);
//! - segments below the snapshot index are ignored entirely, including their timestamps,
//!   so an old segment with a late mtime does not cut the walk short;
//! - `index` beyond the generation's last index is an error instead of a restore of
//!   everything (Litestream's "index exists" check compares a value with itself);
//! - a walk cut short by a segment newer than `timestamp` while a later segment is older
//!   (non-monotonic storage timestamps) is logged as a warning.
use std::time::SystemTime;

use super::RestoreOptions;
use crate::backend::{SnapshotInfo, WalSegmentInfo};
use crate::error::{Error, Result};
use crate::layout;
use crate::pos::Generation;

/// The message Litestream gives when both `-index` and `-timestamp` are set.
pub(crate) const INDEX_AND_TIMESTAMP: &str = "cannot specify index & timestamp to restore";

/// Rejects option combinations restore cannot honour.
pub(crate) fn check_options(opts: &RestoreOptions) -> Result<()> {
    if opts.index.is_some() && opts.timestamp.is_some() {
        return Err(Error::Config(INDEX_AND_TIMESTAMP.into()));
    }
    Ok(())
}

/// Formats a time for messages as RFC 3339 (UTC, sub-second digits when present).
pub(crate) fn fmt_time(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| format!("{t:?}"))
}

/// A generation's time bounds (§1.7): min and max `created` over all its snapshots and WAL
/// segments; `None` when it holds neither.
pub(crate) fn time_bounds(
    snapshots: &[SnapshotInfo],
    segments: &[WalSegmentInfo],
) -> Option<(SystemTime, SystemTime)> {
    let times = snapshots
        .iter()
        .map(|s| s.created)
        .chain(segments.iter().map(|s| s.created));
    times.fold(None, |acc, t| match acc {
        None => Some((t, t)),
        Some((lo, hi)) => Some((lo.min(t), hi.max(t))),
    })
}

/// Chooses the snapshot and the WAL segments to apply on top of it, in order, from one
/// generation's listings (§3.2, §3.3).
///
/// - Snapshot: with `index`, the one with the largest index `<= index`; otherwise the one
///   with the latest `created` that is `<= timestamp` (or the latest overall), ties going to
///   the lowest index. None → [`Error::NoSnapshots`].
/// - Segments: walked in (index, offset) order from the snapshot's index; the walk stops at
///   the first segment whose index is above `index` or whose `created` is after
///   `timestamp`. The first segment of every index must be at offset 0 (else
///   [`Error::Corrupt`] "missing initial wal segment"), offsets must increase ("wal
///   segments out of order"), and every index from the snapshot's to the last collected
///   one must be present ("missing WAL index"). No segment at all means "snapshot only".
/// - `index` above the last index the generation holds is [`Error::NotFound`].
///
/// Corrupt errors name layout paths relative to the replica root. Contiguity of offsets
/// (offset + decompressed length = next offset) needs the data and is checked by `apply`.
pub fn plan_generation(
    snapshots: &[SnapshotInfo],
    segments: &[WalSegmentInfo],
    opts: &RestoreOptions,
) -> Result<(SnapshotInfo, Vec<WalSegmentInfo>)> {
    check_options(opts)?;
    let generation = snapshots
        .first()
        .map(|s| s.generation)
        .or_else(|| segments.first().map(|s| s.generation));
    let snapshot = choose_snapshot(snapshots, opts, generation)?;

    let mut sorted: Vec<&WalSegmentInfo> = segments.iter().collect();
    sorted.sort_by_key(|s| (s.index, s.offset));

    let mut chosen: Vec<WalSegmentInfo> = Vec::new();
    let mut stop: Option<&WalSegmentInfo> = None;
    for (at, seg) in sorted.iter().enumerate() {
        if seg.index < snapshot.index {
            continue;
        }
        if opts.index.is_some_and(|n| seg.index > n) {
            break;
        }
        if opts.timestamp.is_some_and(|ts| seg.created > ts) {
            stop = Some(seg);
            warn_if_not_monotonic(seg, &sorted[at + 1..], opts);
            break;
        }
        match chosen.last() {
            Some(prev) if prev.index == seg.index && seg.offset <= prev.offset => {
                return Err(Error::corrupt(
                    seg.path(),
                    format!(
                        "wal segments out of order: offset {} follows offset {} in index {:08x}",
                        seg.offset, prev.offset, seg.index
                    ),
                ));
            }
            Some(prev) if prev.index == seg.index => {}
            _ if seg.offset != 0 => {
                return Err(Error::corrupt(
                    layout::wal_segment_path(seg.generation, seg.index, 0),
                    format!(
                        "missing initial wal segment: generation={} index={:08x} offset={}",
                        seg.generation, seg.index, seg.offset
                    ),
                ));
            }
            _ => {}
        }
        chosen.push((*seg).clone());
    }

    check_index_chain(snapshot.generation, snapshot.index, &chosen)?;

    if let Some(n) = opts.index {
        let last = chosen.last().map_or(snapshot.index, |s| s.index);
        if last < n {
            let highest = sorted
                .last()
                .map_or(snapshot.index, |s| s.index.max(snapshot.index));
            return Err(Error::NotFound(format!(
                "wal index {n:08x} in generation {} (highest index is {highest:08x})",
                snapshot.generation
            )));
        }
    }
    if let Some(seg) = stop {
        tracing::debug!(
            generation = %seg.generation,
            index = seg.index,
            offset = seg.offset,
            created = %fmt_time(seg.created),
            "wal walk stops at the first segment newer than the restore timestamp"
        );
    }
    Ok((snapshot, chosen))
}

fn choose_snapshot(
    snapshots: &[SnapshotInfo],
    opts: &RestoreOptions,
    generation: Option<Generation>,
) -> Result<SnapshotInfo> {
    let mut sorted: Vec<&SnapshotInfo> = snapshots.iter().collect();
    // Stable: equal indexes (not produced by listings) keep their order.
    sorted.sort_by_key(|s| s.index);
    let in_gen = generation
        .map(|g| format!(" in generation {g}"))
        .unwrap_or_default();
    let best = if let Some(n) = opts.index {
        sorted
            .iter()
            .rev()
            .find(|s| s.index <= n)
            .copied()
            .ok_or_else(|| {
                Error::NoSnapshots(format!(
                    "no snapshots available{in_gen} at or below index {n:08x}"
                ))
            })?
    } else {
        let mut best: Option<&SnapshotInfo> = None;
        for s in sorted {
            if opts.timestamp.is_some_and(|ts| s.created > ts) {
                continue;
            }
            // Strictly later wins: ties keep the first listed, the lowest index.
            if best.is_none_or(|b| s.created > b.created) {
                best = Some(s);
            }
        }
        best.ok_or_else(|| match opts.timestamp {
            Some(ts) => Error::NoSnapshots(format!(
                "no snapshots available{in_gen} at or before {}",
                fmt_time(ts)
            )),
            None => Error::NoSnapshots(format!("no snapshots available{in_gen}")),
        })?
    };
    Ok(best.clone())
}

/// Segments sit in the walk after `stop` but are not newer than the timestamp: storage
/// timestamps went backwards, and the restore stops earlier than the caller may expect.
fn warn_if_not_monotonic(stop: &WalSegmentInfo, rest: &[&WalSegmentInfo], opts: &RestoreOptions) {
    let Some(ts) = opts.timestamp else { return };
    if let Some(later) = rest.iter().find(|s| s.created <= ts) {
        tracing::warn!(
            generation = %stop.generation,
            stop_index = stop.index,
            stop_offset = stop.offset,
            stop_created = %fmt_time(stop.created),
            later_index = later.index,
            later_offset = later.offset,
            later_created = %fmt_time(later.created),
            "wal segment timestamps are not monotonic: restore stops at the first segment newer than the timestamp"
        );
    }
}

/// Checks that `segments` (sorted by (index, offset)) cover every index from
/// `snapshot_index` to their last index, starting at `snapshot_index`.
pub(crate) fn check_index_chain(
    generation: Generation,
    snapshot_index: u32,
    segments: &[WalSegmentInfo],
) -> Result<()> {
    let mut expect = snapshot_index;
    for seg in segments {
        if seg.index == expect {
            expect = expect.saturating_add(1);
        } else if seg.index + 1 != expect {
            let missing = if seg.index > expect {
                expect
            } else {
                seg.index
            };
            return Err(Error::corrupt(
                layout::wal_segment_path(generation, missing, 0),
                format!("missing WAL index: {generation}/{missing:08x}"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    const G: Generation = Generation(0xe30b_4b63_6b09_88ea);

    fn t(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn snap(index: u32, created: u64) -> SnapshotInfo {
        SnapshotInfo {
            generation: G,
            index,
            size: 100,
            created: t(created),
        }
    }

    fn seg(index: u32, offset: u32, created: u64) -> WalSegmentInfo {
        WalSegmentInfo {
            generation: G,
            index,
            offset,
            size: 100,
            created: t(created),
        }
    }

    fn keys(segs: &[WalSegmentInfo]) -> Vec<(u32, u32)> {
        segs.iter().map(|s| (s.index, s.offset)).collect()
    }

    fn by_index(n: u32) -> RestoreOptions {
        RestoreOptions {
            index: Some(n),
            ..Default::default()
        }
    }

    fn by_time(secs: u64) -> RestoreOptions {
        RestoreOptions {
            timestamp: Some(t(secs)),
            ..Default::default()
        }
    }

    /// The experiment-1 tree of the spec (§8), with its mtimes in seconds.
    fn spec_tree() -> (Vec<SnapshotInfo>, Vec<WalSegmentInfo>) {
        (
            vec![snap(0, 0)],
            vec![
                seg(0, 0, 0),
                seg(1, 0, 10),
                seg(1, 4152, 11),
                seg(2, 0, 11),
                seg(2, 4152, 12),
                seg(2, 8272, 14),
                seg(3, 0, 22),
                seg(3, 4152, 31),
                seg(3, 193672, 32),
                seg(4, 0, 32),
            ],
        )
    }

    #[test]
    fn latest_restores_everything() {
        let (s, w) = spec_tree();
        let (snapshot, segs) = plan_generation(&s, &w, &RestoreOptions::default()).unwrap();
        assert_eq!(snapshot.index, 0);
        assert_eq!(keys(&segs), keys(&w));
    }

    #[test]
    fn timestamp_includes_segments_at_or_before_it() {
        let (s, w) = spec_tree();
        // Spec §8: timestamp 22:43:45 includes 1@4152 (44.87) and excludes 2@4152 (45.86).
        let (_, segs) = plan_generation(&s, &w, &by_time(11)).unwrap();
        assert_eq!(keys(&segs), vec![(0, 0), (1, 0), (1, 4152), (2, 0)]);
        // Equal timestamps are included.
        let (_, segs) = plan_generation(&s, &w, &by_time(12)).unwrap();
        assert_eq!(keys(&segs).last(), Some(&(2, 4152)));
        // Within one generation a later timestamp takes everything (`plan` skips a
        // generation whose last write is before the timestamp, as Litestream does).
        let (_, segs) = plan_generation(&s, &w, &by_time(1000)).unwrap();
        assert_eq!(segs.len(), w.len());
    }

    #[test]
    fn timestamp_walk_stops_at_first_newer_segment() {
        // 1@100 is newer than the timestamp; 2@0 is older but comes after it in the walk:
        // applying it would skip 1@100's frames, so the walk stops.
        let s = vec![snap(0, 0)];
        let w = vec![seg(0, 0, 1), seg(1, 0, 2), seg(1, 100, 9), seg(2, 0, 3)];
        let (_, segs) = plan_generation(&s, &w, &by_time(5)).unwrap();
        assert_eq!(keys(&segs), vec![(0, 0), (1, 0)]);
    }

    #[test]
    fn timestamp_before_the_snapshot_has_no_snapshot() {
        let s = vec![snap(0, 10)];
        let w = vec![seg(0, 0, 5)];
        let err = plan_generation(&s, &w, &by_time(7)).unwrap_err();
        assert!(matches!(err, Error::NoSnapshots(_)), "{err}");
        assert!(err.to_string().contains("at or before"), "{err}");
    }

    #[test]
    fn snapshot_by_timestamp_is_newest_created_with_ties_to_lowest_index() {
        let s = vec![snap(0, 0), snap(2, 20), snap(3, 20), snap(5, 40)];
        let w = vec![
            seg(0, 0, 1),
            seg(1, 0, 5),
            seg(2, 0, 20),
            seg(3, 0, 21),
            seg(4, 0, 30),
            seg(5, 0, 41),
        ];
        let (snapshot, segs) = plan_generation(&s, &w, &by_time(35)).unwrap();
        assert_eq!(snapshot.index, 2, "tie at 20 keeps the lowest index");
        assert_eq!(keys(&segs), vec![(2, 0), (3, 0), (4, 0)]);
        let (snapshot, _) = plan_generation(&s, &w, &by_time(19)).unwrap();
        assert_eq!(snapshot.index, 0);
        // Without a timestamp: newest overall.
        let (snapshot, segs) = plan_generation(&s, &w, &RestoreOptions::default()).unwrap();
        assert_eq!(snapshot.index, 5);
        assert_eq!(keys(&segs), vec![(5, 0)]);
    }

    #[test]
    fn snapshot_choice_uses_created_not_index_without_options() {
        // Index 3 was re-snapshotted after index 4's snapshot was written: the newest
        // CreatedAt wins, as in Litestream.
        let s = vec![snap(3, 50), snap(4, 40)];
        let w = vec![seg(3, 0, 30), seg(4, 0, 41)];
        let (snapshot, segs) = plan_generation(&s, &w, &RestoreOptions::default()).unwrap();
        assert_eq!(snapshot.index, 3);
        assert_eq!(keys(&segs), vec![(3, 0), (4, 0)]);
    }

    #[test]
    fn snapshot_by_index_is_largest_at_or_below() {
        let s = vec![snap(0, 0), snap(2, 20), snap(5, 40)];
        let w: Vec<_> = (0..7).map(|i| seg(i, 0, u64::from(i) * 10)).collect();
        let (snapshot, segs) = plan_generation(&s, &w, &by_index(4)).unwrap();
        assert_eq!(snapshot.index, 2);
        assert_eq!(keys(&segs), vec![(2, 0), (3, 0), (4, 0)]);
        let (snapshot, segs) = plan_generation(&s, &w, &by_index(5)).unwrap();
        assert_eq!(snapshot.index, 5);
        assert_eq!(keys(&segs), vec![(5, 0)]);
        // Snapshot listing order does not matter.
        let shuffled = vec![snap(5, 40), snap(0, 0), snap(2, 20)];
        let (snapshot, _) = plan_generation(&shuffled, &w, &by_index(4)).unwrap();
        assert_eq!(snapshot.index, 2);
        // Nothing at or below.
        let err = plan_generation(&[snap(3, 0)], &w, &by_index(2)).unwrap_err();
        assert!(matches!(err, Error::NoSnapshots(_)), "{err}");
    }

    #[test]
    fn index_includes_every_segment_of_that_index() {
        let (s, w) = spec_tree();
        let (_, segs) = plan_generation(&s, &w, &by_index(2)).unwrap();
        assert_eq!(
            keys(&segs),
            vec![(0, 0), (1, 0), (1, 4152), (2, 0), (2, 4152), (2, 8272)]
        );
    }

    #[test]
    fn index_beyond_last_is_an_error() {
        let (s, w) = spec_tree();
        let err = plan_generation(&s, &w, &by_index(5)).unwrap_err();
        assert!(matches!(err, Error::NotFound(_)), "{err}");
        assert!(err.to_string().contains("00000005"), "{err}");
        assert!(
            err.to_string().contains("highest index is 00000004"),
            "{err}"
        );
        // The last index exactly is fine, and so is a snapshot-only index.
        plan_generation(&s, &w, &by_index(4)).unwrap();
        let (snapshot, segs) = plan_generation(&[snap(7, 0)], &[], &by_index(7)).unwrap();
        assert_eq!((snapshot.index, segs.len()), (7, 0));
        assert!(plan_generation(&[snap(7, 0)], &[], &by_index(8)).is_err());
    }

    #[test]
    fn missing_initial_segment() {
        let s = vec![snap(0, 0)];
        let w = vec![seg(0, 0, 1), seg(1, 4152, 2)];
        let err = plan_generation(&s, &w, &RestoreOptions::default()).unwrap_err();
        let Error::Corrupt { path, reason } = &err else {
            panic!("{err}")
        };
        assert!(
            reason.starts_with("missing initial wal segment"),
            "{reason}"
        );
        assert!(reason.contains("index=00000001 offset=4152"), "{reason}");
        assert_eq!(path, &layout::wal_segment_path(G, 1, 0));
        // The snapshot's own index needs its offset-0 segment too.
        let w = vec![seg(0, 4152, 1)];
        assert!(plan_generation(&s, &w, &RestoreOptions::default()).is_err());
    }

    #[test]
    fn segments_out_of_order_or_duplicated() {
        let s = vec![snap(0, 0)];
        // Unsorted input is sorted first: the same plan as the sorted listing.
        let w = vec![seg(1, 0, 3), seg(0, 4152, 2), seg(0, 0, 1)];
        let (_, segs) = plan_generation(&s, &w, &RestoreOptions::default()).unwrap();
        assert_eq!(keys(&segs), vec![(0, 0), (0, 4152), (1, 0)]);
        // A duplicated (index, offset) cannot be ordered.
        let w = vec![seg(0, 0, 1), seg(0, 4152, 2), seg(0, 4152, 3)];
        let err = plan_generation(&s, &w, &RestoreOptions::default()).unwrap_err();
        assert!(
            err.to_string().contains("wal segments out of order"),
            "{err}"
        );
    }

    #[test]
    fn missing_index() {
        let s = vec![snap(0, 0)];
        let w = vec![seg(0, 0, 1), seg(2, 0, 2)];
        let err = plan_generation(&s, &w, &RestoreOptions::default()).unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("missing WAL index: {G}/00000001")),
            "{err}"
        );
        // The snapshot's index itself missing while later ones exist.
        let s = vec![snap(3, 0)];
        let w = vec![seg(4, 0, 1)];
        let err = plan_generation(&s, &w, &RestoreOptions::default()).unwrap_err();
        assert!(err.to_string().contains("missing WAL index"), "{err}");
        assert!(err.to_string().contains("00000003"), "{err}");
    }

    #[test]
    fn segments_below_snapshot_index_are_ignored() {
        let s = vec![snap(0, 0), snap(2, 10)];
        // Index 0 and 1 segments (one with a gap, one with a late mtime) do not matter.
        let w = vec![
            seg(0, 4152, 99),
            seg(1, 0, 9),
            seg(2, 0, 11),
            seg(2, 4152, 12),
            seg(3, 0, 13),
        ];
        let (snapshot, segs) = plan_generation(&s, &w, &RestoreOptions::default()).unwrap();
        assert_eq!(snapshot.index, 2);
        assert_eq!(keys(&segs), vec![(2, 0), (2, 4152), (3, 0)]);
        // Their late timestamps do not stop a timestamp walk either.
        let (snapshot, segs) = plan_generation(&s, &w, &by_time(12)).unwrap();
        assert_eq!(snapshot.index, 2);
        assert_eq!(keys(&segs), vec![(2, 0), (2, 4152)]);
    }

    #[test]
    fn snapshot_above_collected_wal_is_snapshot_only() {
        // Litestream §9.5: a timestamp restore whose snapshot index is above every collected
        // WAL index (possible panic there); here it is a snapshot-only plan.
        let s = vec![snap(0, 0), snap(5, 10)];
        let w = vec![seg(0, 0, 1), seg(1, 0, 2), seg(5, 0, 20)];
        let (snapshot, segs) = plan_generation(&s, &w, &by_time(15)).unwrap();
        assert_eq!((snapshot.index, segs.len()), (5, 0));
    }

    #[test]
    fn no_snapshots_and_bad_options() {
        let err = plan_generation(&[], &[seg(0, 0, 1)], &RestoreOptions::default()).unwrap_err();
        assert!(matches!(err, Error::NoSnapshots(_)), "{err}");
        let opts = RestoreOptions {
            index: Some(1),
            timestamp: Some(t(1)),
            ..Default::default()
        };
        let err = plan_generation(&[snap(0, 0)], &[], &opts).unwrap_err();
        assert_eq!(err.to_string(), INDEX_AND_TIMESTAMP);
    }

    #[test]
    fn bounds_cover_snapshots_and_segments() {
        assert_eq!(time_bounds(&[], &[]), None);
        assert_eq!(
            time_bounds(&[snap(0, 5), snap(1, 50)], &[seg(0, 0, 2), seg(1, 0, 40)]),
            Some((t(2), t(50)))
        );
    }

    #[test]
    fn index_chain() {
        let ok = [seg(2, 0, 0), seg(2, 10, 0), seg(3, 0, 0)];
        check_index_chain(G, 2, &ok).unwrap();
        check_index_chain(G, 2, &[]).unwrap();
        assert!(
            check_index_chain(G, 1, &ok).is_err(),
            "snapshot index missing"
        );
        assert!(check_index_chain(G, 2, &[seg(2, 0, 0), seg(4, 0, 0)]).is_err());
        assert!(check_index_chain(G, 2, &[seg(3, 0, 0), seg(2, 0, 0)]).is_err());
    }
}
