//! Every remote path of a replica, formatted and parsed in one place (pure).
//!
//! ```text
//! <root>/generations/<generation>/snapshots/<index:08x>.snapshot.lz4
//! <root>/generations/<generation>/wal/<index:08x>_<offset:08x>.wal.lz4
//! ```
//! Paths are relative to the replica root, `/`-separated, and never contain `..` or a
//! leading `/`: every name read from a listing is parsed here before it is used, so a
//! hostile listing cannot point walship outside the replica.
use crate::pos::Generation;

/// The directory that holds all generations.
pub const GENERATIONS_DIR: &str = "generations";

/// The replica lease (walship's own, at the replica root; see `crate::replica::lease`).
/// Litestream reads only `generations/`, so it never sees it.
pub const LEASE_PATH: &str = "walship-lease.json";

/// `generations/<g>`.
pub fn generation_dir(g: Generation) -> String {
    format!("{GENERATIONS_DIR}/{g}")
}

/// `generations/<g>/snapshots`.
pub fn snapshots_dir(g: Generation) -> String {
    format!("{GENERATIONS_DIR}/{g}/snapshots")
}

/// `generations/<g>/wal`.
pub fn wal_dir(g: Generation) -> String {
    format!("{GENERATIONS_DIR}/{g}/wal")
}

/// `generations/<g>/snapshots/<index:08x>.snapshot.lz4`.
pub fn snapshot_path(g: Generation, index: u32) -> String {
    format!("{}/{}", snapshots_dir(g), snapshot_name(index))
}

/// `<index:08x>.snapshot.lz4`.
pub fn snapshot_name(index: u32) -> String {
    format!("{index:08x}.snapshot.lz4")
}

/// `generations/<g>/wal/<index:08x>_<offset:08x>.wal.lz4`.
///
/// The offset must be below 2^32: Litestream's reader accepts exactly 8 hex digits, so the
/// engine rolls to a new index long before (see [`crate::db`]).
pub fn wal_segment_path(g: Generation, index: u32, offset: u32) -> String {
    format!("{}/{}", wal_dir(g), wal_segment_name(index, offset))
}

/// `<index:08x>_<offset:08x>.wal.lz4`.
pub fn wal_segment_name(index: u32, offset: u32) -> String {
    format!("{index:08x}_{offset:08x}.wal.lz4")
}

/// Local shadow WAL file name, `<index:08x>.wal`.
pub fn shadow_wal_name(index: u32) -> String {
    format!("{index:08x}.wal")
}

fn hex8(s: &str) -> Option<u32> {
    if s.len() != 8
        || !s
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    {
        return None;
    }
    u32::from_str_radix(s, 16).ok()
}

/// Parses a generation directory name (16 lowercase hex characters).
pub fn parse_generation_name(name: &str) -> Option<Generation> {
    Generation::parse(name)
}

/// Parses `<index:08x>.snapshot.lz4` (the whole base name, as Litestream's regex).
pub fn parse_snapshot_name(name: &str) -> Option<u32> {
    hex8(name.strip_suffix(".snapshot.lz4")?)
}

/// Parses `<index:08x>_<offset:08x>.wal.lz4` into (index, offset).
pub fn parse_wal_segment_name(name: &str) -> Option<(u32, u32)> {
    let stem = name.strip_suffix(".wal.lz4")?;
    let (i, o) = stem.split_once('_')?;
    Some((hex8(i)?, hex8(o)?))
}

/// Parses a shadow WAL file name `<index:08x>.wal`.
pub fn parse_shadow_wal_name(name: &str) -> Option<u32> {
    hex8(name.strip_suffix(".wal")?)
}

/// Joins a replica root prefix (e.g. an S3 key prefix, possibly empty) and a layout path.
pub fn join(root: &str, rel: &str) -> String {
    let root = root.trim_matches('/');
    if root.is_empty() || root == "." {
        rel.to_string()
    } else {
        format!("{root}/{rel}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_litestream() {
        let g = Generation::parse("e30b4b636b0988ea").unwrap();
        assert_eq!(
            snapshot_path(g, 0),
            "generations/e30b4b636b0988ea/snapshots/00000000.snapshot.lz4"
        );
        assert_eq!(
            wal_segment_path(g, 3, 0x2f488),
            "generations/e30b4b636b0988ea/wal/00000003_0002f488.wal.lz4"
        );
        assert_eq!(shadow_wal_name(10), "0000000a.wal");
    }

    #[test]
    fn parsing_is_strict() {
        assert_eq!(parse_snapshot_name("0000000a.snapshot.lz4"), Some(10));
        assert_eq!(parse_snapshot_name("0000000A.snapshot.lz4"), None);
        assert_eq!(parse_snapshot_name("000000a.snapshot.lz4"), None);
        assert_eq!(parse_snapshot_name("0000000a.snapshot.lz4.tmp"), None);
        assert_eq!(parse_snapshot_name("../0000000.snapshot.lz4"), None);
        assert_eq!(
            parse_wal_segment_name("00000003_0002f488.wal.lz4"),
            Some((3, 0x2f488))
        );
        assert_eq!(parse_wal_segment_name("00000003_2f488.wal.lz4"), None);
        assert_eq!(parse_wal_segment_name("00000003-0002f488.wal.lz4"), None);
        assert_eq!(parse_wal_segment_name("00000003_0002f488_1.wal.lz4"), None);
        assert_eq!(
            parse_wal_segment_name("ffffffff_ffffffff.wal.lz4"),
            Some((u32::MAX, u32::MAX))
        );
        assert_eq!(parse_shadow_wal_name("00000001.wal"), Some(1));
        assert_eq!(parse_shadow_wal_name("00000001.wal.tmp"), None);
        assert_eq!(parse_generation_name(".."), None);
    }

    #[test]
    fn join_handles_empty_and_dot_roots() {
        assert_eq!(join("", "generations"), "generations");
        assert_eq!(join(".", "generations"), "generations");
        assert_eq!(join("backups/db/", "generations"), "backups/db/generations");
    }
}
