//! Validation (`validation-interval`): restore a replica at a known position and compare
//! it, page by page, with the database at the same position.
//!
//! Litestream v0.3.13 forces a RESTART checkpoint, CRC-64s the database file, restores the
//! previous WAL index and compares the checksums. walship needs no checkpoint: the database
//! is frozen at a shadow-WAL position `P` by a read transaction opened while the write lock
//! is held ([`crate::db::Db::validation_reader`]); SQLite's backup API copies what that
//! transaction sees into a temporary file (the application keeps writing meanwhile); the
//! replica is brought exactly to `P` and restored through `P` ([`plan_at`]) into the same
//! temporary directory; then the two files are compared page by page ([`compare_files`]).
//! [`crate::replica::Replica::validate`] runs these steps and acts on the result.
use std::fs::File;
use std::path::Path;

use crate::backend::{SnapshotInfo, WalSegmentInfo};
use crate::error::{Error, Result};
use crate::pos::Pos;
use crate::restore::Plan;

/// What one validation found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The replica restores to the database's exact pages at `pos`.
    Ok { pos: Pos, pages: u64 },
    /// The replica does not restore to the database at `pos`.
    Mismatch { pos: Pos, detail: String },
    /// Nothing was compared this time (the database started a new generation meanwhile,
    /// or the replica was already past the frozen position); try again soon.
    Skipped { reason: String },
}

/// Writes the database as `reader` sees it (its open read transaction, if any) into a new
/// file at `out`, with SQLite's backup API. Blocking.
pub fn write_image(reader: &rusqlite::Connection, out: &Path) -> Result<()> {
    let what = out.display().to_string();
    let mut dst = rusqlite::Connection::open(out)
        .map_err(Error::sqlite(format!("create validation image {what}")))?;
    let backup = rusqlite::backup::Backup::new(reader, &mut dst)
        .map_err(Error::sqlite(format!("start backup into {what}")))?;
    // One step: the whole database under the reader's snapshot.
    match backup
        .step(-1)
        .map_err(Error::sqlite(format!("backup into {what}")))?
    {
        rusqlite::backup::StepResult::Done => Ok(()),
        other => Err(Error::Config(format!(
            "backup into {what} did not finish in one step ({other:?})"
        ))),
    }
}

/// Byte ranges of page 1 that SQLite's backup API rewrites in its copy, so they are not
/// compared: the file change counter (24..28), the schema cookie (40..44, the copy's old
/// cookie + 1) and version-valid-for and the SQLite version (92..100). Everything else,
/// including every other page whole, must match.
pub const UNCOMPARED: [std::ops::Range<usize>; 3] = [24..28, 40..44, 92..100];

/// Compares two SQLite database files page by page (see [`UNCOMPARED`] for page 1).
/// Returns the number of pages of `image`, and `None` when both hold the same pages, else
/// a description of the differences. Blocking.
pub fn compare_files(image: &Path, restored: &Path) -> Result<(u64, Option<String>)> {
    let fa = File::open(image).map_err(Error::io("open", image))?;
    let fb = File::open(restored).map_err(Error::io("open", restored))?;
    let la = fa.metadata().map_err(Error::io("stat", image))?.len();
    let lb = fb.metadata().map_err(Error::io("stat", restored))?.len();
    let mut hdr = [0u8; 100];
    read_full(&fa, &mut hdr, 0, image)?;
    let ps = match u16::from_be_bytes([hdr[16], hdr[17]]) {
        1 => 65536u64,
        n if n >= 512 && n.is_power_of_two() => u64::from(n),
        n => {
            return Err(Error::corrupt(
                image.display().to_string(),
                format!("page size {n} in the header"),
            ));
        }
    };
    if la != lb {
        return Ok((
            la / ps,
            Some(format!(
                "the database has {} pages of {ps} bytes, the restored replica {} bytes ({} pages)",
                la / ps,
                lb,
                lb / ps
            )),
        ));
    }
    let mut a = vec![0u8; ps as usize];
    let mut b = vec![0u8; ps as usize];
    let mut differing = Vec::new();
    let mut count = 0u64;
    for pgno in 1..=la / ps {
        let at = (pgno - 1) * ps;
        read_full(&fa, &mut a, at, image)?;
        read_full(&fb, &mut b, at, restored)?;
        if pgno == 1 {
            for r in UNCOMPARED {
                a[r.clone()].fill(0);
                b[r].fill(0);
            }
        }
        if a != b {
            count += 1;
            if differing.len() < 10 {
                differing.push(pgno.to_string());
            }
        }
    }
    let detail = (count > 0).then(|| {
        format!(
            "{count} of {} pages differ (pages {}{})",
            la / ps,
            differing.join(", "),
            if count > 10 { ", ..." } else { "" }
        )
    });
    Ok((la / ps, detail))
}

fn read_full(f: &File, buf: &mut [u8], at: u64, path: &Path) -> Result<()> {
    crate::platform::read_exact_at(f, buf, at).map_err(Error::io("read", path))
}

/// The restore plan that rebuilds the database at exactly `pos` from a replica's listing of
/// `pos.generation`: the newest snapshot at or below `pos.index`, then every segment from
/// that index up to `pos` (the replica's segments end exactly at `pos`: validation uploads
/// up to it and no further). Pure.
pub fn plan_at(
    replica: &str,
    pos: Pos,
    snapshots: &[SnapshotInfo],
    segments: &[WalSegmentInfo],
) -> Result<Plan> {
    let snapshot = snapshots
        .iter()
        .filter(|s| s.generation == pos.generation && s.index <= pos.index)
        .max_by_key(|s| s.index)
        .cloned()
        .ok_or_else(|| {
            Error::NoSnapshots(format!(
                "no snapshots available at or below index {} in generation {}",
                pos.index, pos.generation
            ))
        })?;
    let mut segs: Vec<WalSegmentInfo> = segments
        .iter()
        .filter(|s| s.generation == pos.generation && s.index >= snapshot.index)
        .filter(|s| (s.index, u64::from(s.offset)) < (pos.index, pos.offset))
        .cloned()
        .collect();
    segs.sort_by_key(|s| (s.index, s.offset));
    let end = segs
        .iter()
        .map(|s| s.created)
        .chain(std::iter::once(snapshot.created))
        .max()
        .unwrap_or(snapshot.created);
    Ok(Plan {
        replica: replica.to_string(),
        generation: pos.generation,
        snapshot,
        segments: segs,
        end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pos::Generation;
    use std::time::SystemTime;

    fn seg(g: Generation, index: u32, offset: u32) -> WalSegmentInfo {
        WalSegmentInfo {
            generation: g,
            index,
            offset,
            size: 1,
            created: SystemTime::UNIX_EPOCH,
        }
    }
    fn snap(g: Generation, index: u32) -> SnapshotInfo {
        SnapshotInfo {
            generation: g,
            index,
            size: 1,
            created: SystemTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn plan_stops_at_the_position() {
        let g = Generation(7);
        let snaps = [snap(g, 0), snap(g, 2), snap(g, 5)];
        let segs = [
            seg(g, 1, 0),
            seg(g, 2, 0),
            seg(g, 2, 4152),
            seg(g, 3, 0),
            seg(g, 3, 8272),
            seg(g, 3, 12392),
            seg(g, 5, 0),
        ];
        let p = plan_at("file", Pos::new(g, 3, 12392), &snaps, &segs).unwrap();
        assert_eq!(p.snapshot.index, 2);
        assert_eq!(
            p.segments
                .iter()
                .map(|s| (s.index, s.offset))
                .collect::<Vec<_>>(),
            vec![(2, 0), (2, 4152), (3, 0), (3, 8272)]
        );
        assert!(plan_at("file", Pos::new(Generation(8), 3, 32), &snaps, &segs).is_err());
    }

    #[test]
    fn backup_image_matches_the_file_outside_the_rewritten_header_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("a.db");
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch(
            "PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (randomblob(9000));
             PRAGMA wal_checkpoint(TRUNCATE);",
        )
        .unwrap();
        let image = dir.path().join("image.db");
        write_image(&c, &image).unwrap();
        assert_eq!(compare_files(&image, &db).unwrap(), (4, None));
        // A change in any compared byte is found.
        c.execute_batch("UPDATE t SET x = randomblob(9000); PRAGMA wal_checkpoint(TRUNCATE);")
            .unwrap();
        let d = compare_files(&image, &db).unwrap().1.expect("pages differ");
        assert!(d.contains("pages differ"), "{d}");
    }
}
