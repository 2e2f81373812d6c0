//! Retention: which replica objects may go (pure), and deleting them.
//!
//! Litestream v0.3.13 keeps the snapshots created inside the retention window and deletes
//! older ones. That breaks a point-in-time restore to a moment early in the window, whose
//! snapshot is the newest one *before* the window. walship keeps that one too, so every
//! moment inside the window stays restorable:
//!
//! - `cutoff = now - retention`.
//! - A generation whose last object is older than the cutoff is deleted whole, unless it is
//!   the database's current generation.
//! - In every other generation, the base snapshot is the newest one created at or before
//!   the cutoff (or, if none, the oldest one); snapshots with a lower index and WAL segments
//!   of lower indexes are deleted. Segments of the base index itself all stay: restore
//!   replays that index from offset 0.
//! - If the current generation has no snapshot created after the cutoff, a new snapshot is
//!   due (so the next run can let the old ones go, and restores stay short).
use std::time::SystemTime;

use crate::backend::{self, ReplicaClient, SnapshotInfo, WalSegmentInfo};
use crate::error::Result;
use crate::layout;
use crate::pos::Generation;

/// One generation as listed on a replica.
#[derive(Debug, Clone, Default)]
pub struct GenerationListing {
    pub snapshots: Vec<SnapshotInfo>,
    pub segments: Vec<WalSegmentInfo>,
}

/// What one retention run deletes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionPlan {
    /// Whole generations to delete.
    pub generations: Vec<Generation>,
    /// Snapshots to delete (in generations that stay).
    pub snapshots: Vec<SnapshotInfo>,
    /// WAL segments to delete (in generations that stay).
    pub segments: Vec<WalSegmentInfo>,
    /// The current generation has no snapshot newer than the cutoff.
    pub snapshot_due: bool,
}

/// Plans a retention run over `listing` (generation → its objects).
pub fn plan(
    listing: &[(Generation, GenerationListing)],
    current: Option<Generation>,
    cutoff: SystemTime,
) -> RetentionPlan {
    let mut p = RetentionPlan::default();
    // Other generations may only go once the current one can be restored on its own:
    // before its first snapshot is on the replica they are all a restore has.
    let current_restorable = listing
        .iter()
        .any(|(g, l)| Some(*g) == current && !l.snapshots.is_empty());
    for (g, l) in listing {
        let is_current = Some(*g) == current;
        let end = l
            .snapshots
            .iter()
            .map(|s| s.created)
            .chain(l.segments.iter().map(|s| s.created))
            .max();
        if !is_current && current_restorable && end.is_none_or(|e| e < cutoff) {
            p.generations.push(*g);
            continue;
        }
        if l.snapshots.is_empty() {
            // Nothing to anchor on (a snapshot upload may be in flight): leave it alone.
            if is_current {
                p.snapshot_due = true;
            }
            continue;
        }
        // The newest snapshot at or before the cutoff anchors the window; without one,
        // the oldest snapshot does. Ties in time: the higher index (the later object).
        let base = l
            .snapshots
            .iter()
            .filter(|s| s.created <= cutoff)
            .max_by_key(|s| (s.created, s.index))
            .or_else(|| l.snapshots.iter().min_by_key(|s| (s.index, s.created)))
            .map(|s| s.index)
            .unwrap_or(0);
        p.snapshots
            .extend(l.snapshots.iter().filter(|s| s.index < base).cloned());
        p.segments
            .extend(l.segments.iter().filter(|s| s.index < base).cloned());
        if is_current && !l.snapshots.iter().any(|s| s.created > cutoff) {
            p.snapshot_due = true;
        }
    }
    p
}

/// Lists every generation of a replica with its snapshots and WAL segments.
pub async fn list_all(client: &dyn ReplicaClient) -> Result<Vec<(Generation, GenerationListing)>> {
    let mut out = Vec::new();
    for g in backend::generations(client).await? {
        let snapshots = backend::snapshots(client, g).await?;
        let segments = backend::wal_segments(client, g).await?;
        out.push((
            g,
            GenerationListing {
                snapshots,
                segments,
            },
        ));
    }
    Ok(out)
}

/// Deletes what `p` names: whole generations, then single objects through
/// [`ReplicaClient::delete_many`] (batched on S3), in an order that leaves a restorable
/// replica wherever a crash stops it. Litestream's restore (`walSegmentMap`) refuses a
/// generation in which any index's first remaining segment does not start at offset 0, even
/// an index below the snapshot it restores from. So the segments at offset 0 go last, in a
/// second batch, after every later segment of every index: at any moment each index still
/// starts at 0.
pub async fn execute(client: &dyn ReplicaClient, p: &RetentionPlan) -> Result<()> {
    for g in &p.generations {
        client.delete_all(&layout::generation_dir(*g)).await?;
        crate::fault::point("retention.after_generation_delete");
    }
    let later: Vec<String> = p
        .snapshots
        .iter()
        .map(SnapshotInfo::path)
        .chain(
            p.segments
                .iter()
                .filter(|s| s.offset != 0)
                .map(WalSegmentInfo::path),
        )
        .collect();
    let first: Vec<String> = p
        .segments
        .iter()
        .filter(|s| s.offset == 0)
        .map(WalSegmentInfo::path)
        .collect();
    for batch in [later, first] {
        if !batch.is_empty() {
            client.delete_many(&batch).await?;
            crate::fault::point("retention.between_deletes");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn t(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + s)
    }
    fn snap(g: Generation, index: u32, at: u64) -> SnapshotInfo {
        SnapshotInfo {
            generation: g,
            index,
            size: 1,
            created: t(at),
        }
    }
    fn seg(g: Generation, index: u32, offset: u32, at: u64) -> WalSegmentInfo {
        WalSegmentInfo {
            generation: g,
            index,
            offset,
            size: 1,
            created: t(at),
        }
    }

    #[test]
    fn keeps_the_snapshot_that_anchors_the_window() {
        let g = Generation(1);
        let l = GenerationListing {
            snapshots: vec![snap(g, 0, 0), snap(g, 3, 100), snap(g, 6, 200)],
            segments: (0..8).map(|i| seg(g, i, 0, u64::from(i) * 30)).collect(),
        };
        // Window starts at 150: restoring to 160 needs snapshot 3 (taken at 100).
        let p = plan(&[(g, l.clone())], Some(g), t(150));
        assert_eq!(
            p.snapshots.iter().map(|s| s.index).collect::<Vec<_>>(),
            vec![0]
        );
        assert_eq!(
            p.segments.iter().map(|s| s.index).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        assert!(p.generations.is_empty());
        assert!(!p.snapshot_due, "snapshot 6 is inside the window");
        // Litestream's rule would have deleted snapshot 3; check we did not.
        assert!(!p.snapshots.iter().any(|s| s.index == 3));
    }

    #[test]
    fn old_generations_go_whole_but_never_the_current_one() {
        let (old, cur) = (Generation(1), Generation(2));
        let lo = GenerationListing {
            snapshots: vec![snap(old, 0, 0)],
            segments: vec![seg(old, 0, 0, 10)],
        };
        let lc = GenerationListing {
            snapshots: vec![snap(cur, 0, 20)],
            segments: vec![seg(cur, 0, 0, 30)],
        };
        let p = plan(&[(old, lo.clone()), (cur, lc.clone())], Some(cur), t(1000));
        assert_eq!(p.generations, vec![old]);
        assert!(p.snapshots.is_empty() && p.segments.is_empty());
        assert!(
            p.snapshot_due,
            "the current generation's only snapshot is older than the window"
        );
        // An old generation with data inside the window stays.
        let p = plan(&[(old, lo), (cur, lc)], Some(cur), t(5));
        assert!(p.generations.is_empty());
    }

    /// Regression (crash matrix, long run, seed 1795316348103870078, round 40): retention
    /// deleted the only restorable generation while the new current one had no snapshot on
    /// the replica yet; a crash in the middle of that delete left a snapshot without its
    /// WAL, and the next restore went back in time.
    #[test]
    fn old_generations_stay_until_the_current_one_has_a_snapshot() {
        let (old, cur) = (Generation(1), Generation(2));
        let lo = GenerationListing {
            snapshots: vec![snap(old, 0, 0)],
            segments: vec![seg(old, 0, 0, 10)],
        };
        // The current generation is not on the replica yet, or has WAL but no snapshot.
        let p = plan(&[(old, lo.clone())], Some(cur), t(1000));
        assert!(p.generations.is_empty(), "{p:?}");
        let lc = GenerationListing {
            snapshots: vec![],
            segments: vec![seg(cur, 0, 0, 30)],
        };
        let p = plan(&[(old, lo.clone()), (cur, lc)], Some(cur), t(1000));
        assert!(p.generations.is_empty(), "{p:?}");
        // No database generation known: nothing proves a newer restorable one exists.
        let p = plan(&[(old, lo)], None, t(1000));
        assert!(p.generations.is_empty(), "{p:?}");
    }

    #[test]
    fn generation_without_snapshot_is_left_alone() {
        let g = Generation(3);
        let l = GenerationListing {
            snapshots: vec![],
            segments: vec![seg(g, 0, 0, 500)],
        };
        let p = plan(&[(g, l)], Some(g), t(100));
        assert_eq!(
            p,
            RetentionPlan {
                snapshot_due: true,
                ..Default::default()
            }
        );
    }

    #[test]
    fn all_snapshots_newer_than_cutoff_anchor_on_the_oldest() {
        let g = Generation(4);
        let l = GenerationListing {
            snapshots: vec![snap(g, 2, 300), snap(g, 5, 400)],
            segments: vec![seg(g, 1, 0, 250), seg(g, 2, 0, 300), seg(g, 5, 0, 400)],
        };
        let p = plan(&[(g, l)], Some(g), t(100));
        assert!(p.snapshots.is_empty());
        assert_eq!(
            p.segments.iter().map(|s| s.index).collect::<Vec<_>>(),
            vec![1]
        );
    }
}
