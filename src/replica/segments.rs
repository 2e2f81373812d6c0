//! Where the WAL segments a replica uploaded end, as walship itself recorded them.
//!
//! A replica's position is the end of its last WAL segment, and a segment's name says only
//! where it starts: learning where it ends from the store means downloading and
//! decompressing it. That costs a GET after every failed sync and at every start, and an
//! `age` replica with recipients only (the server holds no private key, on purpose) cannot
//! read it at all. So the replica remembers the end of each segment it uploads (in memory,
//! and across a clean stop in a small file in the database's meta directory) and reads a
//! segment back only when it does not know it.
//!
//! Invariant: an entry says where *every* upload at that start ended. A second upload at
//! the same start with another end (a retry after an error that may have landed anyway)
//! makes the entry unknown, so a listing can never be matched with the wrong end.
use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use crate::error::{Error, Result};
use crate::pos::{Generation, Pos};

/// How many segments are remembered: only the newest ones can be the last on the store.
const KEEP: usize = 64;

/// The segments one replica uploaded in one generation.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct SegmentLog {
    generation: Option<String>,
    /// (index, start offset, end offset or `None` when uploads at that start disagreed),
    /// oldest first.
    ends: VecDeque<(u32, u64, Option<u64>)>,
}

impl SegmentLog {
    /// Records an upload (before it is attempted: a failed put may still have landed) of
    /// the segment from `start` to `end` (an offset in the same index).
    pub fn record(&mut self, start: Pos, end: u64) {
        let g = start.generation.to_string();
        if self.generation.as_deref() != Some(g.as_str()) {
            self.generation = Some(g);
            self.ends.clear();
        }
        if let Some(e) = self
            .ends
            .iter_mut()
            .find(|(i, o, _)| (*i, *o) == (start.index, start.offset))
        {
            if e.2 != Some(end) {
                e.2 = None;
            }
            return;
        }
        if self.ends.len() == KEEP {
            self.ends.pop_front();
        }
        self.ends.push_back((start.index, start.offset, Some(end)));
    }

    /// Where the segment of `generation` starting at (`index`, `offset`) ends, if every
    /// upload there is known to have ended at the same place.
    pub fn end_of(&self, generation: Generation, index: u32, offset: u64) -> Option<u64> {
        if self.generation.as_deref() != Some(generation.to_string().as_str()) {
            return None;
        }
        self.ends
            .iter()
            .find(|(i, o, _)| (*i, *o) == (index, offset))
            .and_then(|e| e.2)
    }

    /// The file a clean stop leaves for the replica named `name` in `meta_dir`.
    pub fn file(meta_dir: &Path, name: &str) -> PathBuf {
        let safe: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        // Two names that differ only in unsafe characters must not share a file.
        let hash = twox_hash::XxHash32::oneshot(0, name.as_bytes());
        meta_dir.join(format!("walship-replica-{safe}-{hash:08x}.json"))
    }

    /// Takes the log a clean stop left (the file is removed: after this start, only the
    /// next clean stop may vouch for the store again). Missing or damaged: empty.
    pub fn take(meta_dir: &Path, name: &str) -> SegmentLog {
        let path = SegmentLog::file(meta_dir, name);
        let log = match std::fs::read(&path) {
            Ok(data) => match serde_json::from_slice(&data) {
                Ok(log) => log,
                Err(e) => {
                    warn!(path = %path.display(), error = %e, "ignoring a damaged replica segment log");
                    SegmentLog::default()
                }
            },
            Err(_) => return SegmentLog::default(),
        };
        if let Err(e) = std::fs::remove_file(&path) {
            warn!(path = %path.display(), error = %e, "cannot remove the replica segment log");
        }
        debug!(path = %path.display(), "read the replica segment log of the last clean stop");
        log
    }

    /// Writes the log for the next start (atomically, durably).
    pub fn save(&self, meta_dir: &Path, name: &str) -> Result<()> {
        let data = serde_json::to_vec(self)
            .map_err(|e| crate::Error::Internal(format!("encode the replica segment log: {e}")))?;
        crate::fsutil::write_atomic(&SegmentLog::file(meta_dir, name), &data)?;
        Ok(())
    }
}

impl super::Replica {
    /// The replica cannot read its own last WAL segment (an `age` replica with recipients
    /// only), so its position is unknown: rather than stop shipping, start a new generation,
    /// whose snapshot and segments this process records as it uploads them.
    pub(super) async fn restart_unreadable(&self, why: &str) -> Result<()> {
        warn!(db = %self.db.path().display(), replica = %self.opts.name, reason = why, "the replica's last WAL segment cannot be read back, so its position is unknown; starting a new generation");
        let db = self.db.clone();
        let reason = format!(
            "replica {} cannot read its last WAL segment",
            self.opts.name
        );
        tokio::task::spawn_blocking(move || db.force_new_generation(&reason))
            .await
            .map_err(Error::task_failed("new generation"))??;
        self.set_pos(None);
        Ok(())
    }

    /// Leaves where this replica's last segments end in the meta directory, for the next
    /// start to go on without reading them back (a clean stop calls it after the final
    /// sync).
    pub fn save_segment_log(&self) -> Result<()> {
        self.segments
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .save(self.db.meta_dir(), &self.opts.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(n: u8) -> Generation {
        Generation::parse(&format!("{n:016x}")).unwrap()
    }

    #[test]
    fn ends_are_known_until_two_uploads_disagree() {
        let mut log = SegmentLog::default();
        log.record(Pos::new(g(1), 0, 32), 4152);
        log.record(Pos::new(g(1), 0, 4152), 8272);
        assert_eq!(log.end_of(g(1), 0, 32), Some(4152));
        assert_eq!(log.end_of(g(1), 0, 4152), Some(8272));
        assert_eq!(log.end_of(g(1), 1, 32), None);
        assert_eq!(log.end_of(g(2), 0, 32), None, "another generation");
        // A retry that reached the same end keeps it; one that did not makes it unknown.
        log.record(Pos::new(g(1), 0, 32), 4152);
        assert_eq!(log.end_of(g(1), 0, 32), Some(4152));
        log.record(Pos::new(g(1), 0, 4152), 12392);
        assert_eq!(log.end_of(g(1), 0, 4152), None);
        // A new generation starts afresh.
        log.record(Pos::new(g(2), 0, 32), 100);
        assert_eq!(log.end_of(g(1), 0, 32), None);
        assert_eq!(log.end_of(g(2), 0, 32), Some(100));
    }

    #[test]
    fn only_the_newest_segments_are_kept() {
        let mut log = SegmentLog::default();
        for k in 0..(KEEP as u64 + 10) {
            log.record(Pos::new(g(1), 0, k * 10), k * 10 + 10);
        }
        assert_eq!(log.end_of(g(1), 0, 0), None);
        assert_eq!(
            log.end_of(g(1), 0, (KEEP as u64 + 9) * 10),
            Some((KEEP as u64 + 10) * 10)
        );
    }

    #[test]
    fn a_clean_stop_hands_the_log_to_one_start() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = SegmentLog::default();
        log.record(Pos::new(g(1), 3, 32), 4152);
        log.save(dir.path(), "s3 primary").unwrap();
        assert_eq!(
            SegmentLog::take(dir.path(), "s3_primary"),
            SegmentLog::default()
        );
        let back = SegmentLog::take(dir.path(), "s3 primary");
        assert_eq!(back, log);
        assert_eq!(
            SegmentLog::take(dir.path(), "s3 primary"),
            SegmentLog::default(),
            "taken once"
        );
        std::fs::write(SegmentLog::file(dir.path(), "x"), b"{not json").unwrap();
        assert_eq!(SegmentLog::take(dir.path(), "x"), SegmentLog::default());
    }
}
