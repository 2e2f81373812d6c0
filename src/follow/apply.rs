//! Applying what was downloaded: the segments past the copy's position, chosen and
//! checked in order, written into the copy in one transaction; and the temporary files a
//! full restore leaves beside the copy.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::status::{FollowPosition, FollowStatus, Saved, StateFile, write_state};
use super::{At, Step, hex};
use crate::backend::WalSegmentInfo;
use crate::error::Error;
use crate::restore::replay::IndexReplay;

/// A failure while writing the copy: foreign writes and local trouble stop the follower;
/// bad data from the replica is retried.
pub(super) fn classify_copy_error(e: Error) -> Step {
    match e {
        Error::Corrupt { .. } => Step::Retry(e),
        e => Step::Fatal(e),
    }
}

/// Validates the downloaded segments in order from the copy's position and writes their
/// pages into the copy in one transaction; returns the newest storage time applied and
/// the new position.
pub(super) fn apply_batch(
    at: &mut At,
    got: &[(WalSegmentInfo, Vec<u8>)],
    objects: &[String],
    status: FollowStatus,
) -> std::result::Result<FollowStatus, Step> {
    let page_size = at.copy.page_size();
    let pos = &at.saved.pos;
    let mut replay = match &at.saved.replay {
        Some(r) => {
            let r = IndexReplay::from_saved(r);
            if r.index() == pos.index {
                r
            } else {
                IndexReplay::new(pos.index, page_size)
            }
        }
        None => IndexReplay::new(pos.index, page_size),
    };
    let mut pages: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
    let mut size = at.copy.pages();
    let mut newest = SystemTime::UNIX_EPOCH;
    let ps = page_size as usize;
    for ((seg, data), object) in got.iter().zip(objects) {
        if seg.index != replay.index() {
            replay = IndexReplay::new(seg.index, page_size);
        }
        for p in replay.segment(seg.offset, data, object)? {
            let page = &data[p.at..p.at + ps];
            match pages.entry(p.pgno) {
                std::collections::btree_map::Entry::Occupied(mut e) => {
                    e.get_mut().copy_from_slice(page)
                }
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(page.to_vec());
                }
            }
        }
        if let Some(n) = replay.db_pages() {
            size = n;
        }
        newest = newest.max(seg.created);
    }
    let next = Saved {
        pos: FollowPosition {
            replica: pos.replica.clone(),
            generation: pos.generation,
            index: replay.index(),
            offset: replay.next_offset(),
        },
        replay: Some(replay.saved()),
        hash: String::new(),
        pages: size,
    };
    let committed = at.saved.clone();
    let out = at.copy.path().to_path_buf();
    let mut pending = next;
    let mut status = status;
    let now = SystemTime::now();
    status.position = Some(pending.pos.clone());
    status.updated_at = Some(now);
    status.replica_time = Some(newest);
    status.apply_delay = now.duration_since(newest).ok();
    status.updates += 1;
    status.pages = size;
    at.copy
        .apply(&pages, size, |hash| {
            pending.hash = hex(hash);
            write_state(
                &out,
                &StateFile {
                    version: 1,
                    committed,
                    pending: Some(pending.clone()),
                    status: status.clone(),
                },
            )
        })
        .map_err(classify_copy_error)?;
    at.saved = pending;
    Ok(status)
}

/// What follows a position in a generation's listing.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Next {
    Nothing,
    /// The segments to apply next, in order (their contiguity inside an index is checked
    /// when they are applied).
    Segments(Vec<WalSegmentInfo>),
    /// Something later is listed but not what must come next.
    Gap,
}

/// The segments after position (`index`, `offset`) in `listed` (sorted by index, offset).
pub(super) fn next_segments(listed: &[WalSegmentInfo], index: u32, offset: u64) -> Next {
    let later: Vec<&WalSegmentInfo> = listed
        .iter()
        .filter(|s| (s.index, u64::from(s.offset)) >= (index, offset))
        .collect();
    if later.is_empty() {
        return Next::Nothing;
    }
    // The copy's index must still be listed: if retention removed it, whether it ended
    // where the copy is cannot be known.
    if !listed.iter().any(|s| s.index == index) {
        return Next::Gap;
    }
    let mut cur = index;
    let mut out = Vec::new();
    for s in later {
        let ok = if s.index == index && out.is_empty() {
            u64::from(s.offset) == offset
        } else if s.index == cur {
            true
        } else {
            s.index == cur + 1 && s.offset == 0
        };
        if !ok {
            break;
        }
        cur = s.index;
        out.push(s.clone());
    }
    if out.is_empty() {
        Next::Gap
    } else {
        Next::Segments(out)
    }
}

pub(super) fn temp_beside(output: &Path) -> PathBuf {
    let mut r = [0u8; 8];
    let _ = getrandom::fill(&mut r);
    let name = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    output.with_file_name(format!(".{name}.follow-{:016x}.tmp", u64::from_be_bytes(r)))
}

pub(super) fn remove_with_side_files(p: &Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut s = p.as_os_str().to_owned();
        s.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(s));
    }
}

/// Removes temporary files a killed follower left beside `output`.
pub(super) fn clean_temp_files(output: &Path) {
    let (Some(dir), Some(name)) = (output.parent(), output.file_name()) else {
        return;
    };
    let prefix = format!(".{}.follow-", name.to_string_lossy());
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            // Also the restore's own temporary file beside ours (`.` + our name + ...).
            if n.starts_with(&prefix) || n.strip_prefix('.').is_some_and(|r| r.starts_with(&prefix))
            {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pos::Generation;

    fn seg(index: u32, offset: u32) -> WalSegmentInfo {
        WalSegmentInfo {
            generation: Generation(1),
            index,
            offset,
            size: 10,
            created: SystemTime::UNIX_EPOCH,
        }
    }

    fn keys(n: &Next) -> Vec<(u32, u32)> {
        match n {
            Next::Segments(v) => v.iter().map(|s| (s.index, s.offset)).collect(),
            _ => vec![],
        }
    }

    #[test]
    fn next_segments_follow_the_chain() {
        let l = vec![seg(1, 0), seg(1, 100), seg(1, 200), seg(2, 0), seg(2, 50)];
        assert_eq!(next_segments(&l, 2, 50 + 1), Next::Nothing);
        assert_eq!(
            keys(&next_segments(&l, 1, 100)),
            [(1, 100), (1, 200), (2, 0), (2, 50)]
        );
        assert_eq!(keys(&next_segments(&l, 1, 300)), [(2, 0), (2, 50)]);
        assert_eq!(keys(&next_segments(&l, 2, 50)), [(2, 50)]);
        // Not at the copy's offset: a gap.
        assert_eq!(next_segments(&l, 1, 150), Next::Gap);
        // The copy's index is gone (retention): a gap even though index 2 starts at 0.
        let l2 = vec![seg(2, 0), seg(2, 50)];
        assert_eq!(next_segments(&l2, 1, 300), Next::Gap);
        // An index missing in the middle ends the chain before it.
        let l3 = vec![seg(1, 0), seg(3, 0)];
        assert_eq!(next_segments(&l3, 1, 0), Next::Segments(vec![seg(1, 0)]));
        assert_eq!(next_segments(&l3, 1, 10), Next::Gap);
    }
}
