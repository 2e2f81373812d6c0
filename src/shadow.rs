//! The local state of one database, on disk: the meta directory beside it
//! (`.<name>-litestream/`, Litestream's layout), its `generation` file, the shadow WAL files
//! under `generations/<generation>/wal/`, and the compressed segments and snapshots waiting
//! for upload. `db` keeps the shadow WAL growing; `replica`, validation and `status` read
//! it through here.
use std::fs::File;
use std::path::{Path, PathBuf};

use crate::compress;
use crate::error::{Error, Result};
use crate::fsutil::sync_dir;
use crate::layout;
use crate::pos::{Generation, Pos};
use crate::sqlite::wal::{self, HEADER_SIZE, WalHeader};

/// A WAL segment is cut at the first commit past this many bytes.
pub const MAX_SEGMENT_BYTES: u64 = 16 << 20;

/// Segments up to this size are read and compressed in memory; larger ones stream through a
/// temporary file in the meta directory (see [`ShadowRead::File`]).
pub const INLINE_SEGMENT_BYTES: u64 = 4 << 20;

/// The meta directory of the database at `db_path`: `meta_path` when set, else
/// `<dir>/.<name>-litestream`.
pub fn meta_dir(db_path: &Path, meta_path: Option<&Path>) -> PathBuf {
    if let Some(m) = meta_path {
        return m.to_path_buf();
    }
    let dir = db_path.parent().unwrap_or(Path::new("."));
    let name = db_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dir.join(format!(".{name}-litestream"))
}

/// The file naming the current generation.
pub(crate) fn generation_file(meta: &Path) -> PathBuf {
    meta.join("generation")
}

/// The directory of the shadow WAL files of generation `g`.
pub(crate) fn shadow_dir(meta: &Path, g: Generation) -> PathBuf {
    meta.join(layout::generation_dir(g)).join("wal")
}

/// The shadow WAL file of index `index` of generation `g`.
pub(crate) fn shadow_path(meta: &Path, g: Generation, index: u32) -> PathBuf {
    shadow_dir(meta, g).join(layout::shadow_wal_name(index))
}

/// What the `generation` file says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GenerationFile {
    /// There is none: no generation yet.
    Missing,
    /// It holds something that is not a generation name.
    Damaged,
    /// The current generation.
    Found(Generation),
}

/// Reads the `generation` file of `meta`.
pub(crate) fn read_generation(meta: &Path) -> Result<GenerationFile> {
    let gen_file = generation_file(meta);
    // Bytes, not a String: a damaged file with non-UTF-8 garbage must start a new
    // generation like any other damage, not fail every sync.
    let text = match std::fs::read(&gen_file) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(GenerationFile::Missing),
        Err(e) => return Err(Error::io("read", &gen_file)(e)),
    };
    Ok(match Generation::parse(text.trim()) {
        Some(g) => GenerationFile::Found(g),
        None => GenerationFile::Damaged,
    })
}

/// The highest shadow WAL index of generation `g`, if it has any.
pub(crate) fn max_index(meta: &Path, g: Generation) -> Option<u32> {
    std::fs::read_dir(shadow_dir(meta, g))
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| layout::parse_shadow_wal_name(e.file_name().to_str()?))
        .max()
}

/// The database's position as its meta directory has it (the generation file, the highest
/// shadow WAL index and that file's size), read without opening the database: what
/// `walship status` shows when no walship answers.
pub fn disk_position(meta: &Path) -> Option<Pos> {
    let GenerationFile::Found(g) = read_generation(meta).ok()? else {
        return None;
    };
    let index = max_index(meta, g)?;
    let size = std::fs::metadata(shadow_path(meta, g, index)).ok()?.len();
    Some(Pos::new(g, index, size))
}

/// A slice of shadow WAL for a replica to upload.
#[derive(Debug)]
pub enum ShadowRead {
    /// Bytes from `pos` to the end of what is committed in that index (or to a commit
    /// boundary about [`MAX_SEGMENT_BYTES`] further), when they are at most
    /// [`INLINE_SEGMENT_BYTES`].
    Data { pos: Pos, data: Vec<u8> },
    /// A larger segment, `len` bytes from `pos`, already compressed into a temporary file
    /// (so memory does not grow with the segment).
    File {
        pos: Pos,
        len: u64,
        file: SnapshotFile,
    },
    /// The index at `pos` is complete and the next index exists: continue at (index+1, 0).
    NextIndex,
    /// Nothing new at `pos`.
    UpToDate,
}

/// The newest frame of each page in one shadow WAL file, up to the shadow's end: what a
/// snapshot takes instead of the database file's copy of those pages.
pub(crate) struct ShadowOverlay {
    pub(crate) file: File,
    /// Page number -> offset of the page data (after the frame header) of its newest frame.
    pub(crate) pages: std::collections::HashMap<u32, u64>,
    /// Database size in pages after the last commit in the file, if there is one.
    pub(crate) db_pages: Option<u32>,
}

impl ShadowOverlay {
    /// Reads the frame headers of the shadow WAL at `path` up to `size` bytes, whose
    /// frames are `frame_size` bytes.
    pub(crate) fn read(path: &Path, frame_size: u64, size: u64) -> Result<ShadowOverlay> {
        let file = File::open(path).map_err(Error::io("open", path))?;
        let fs = frame_size;
        let mut pages = std::collections::HashMap::new();
        let mut db_pages = None;
        let mut fh = [0u8; wal::FRAME_HEADER_SIZE];
        let mut off = HEADER_SIZE as u64;
        while off + fs <= size {
            if read_up_to(&file, &mut fh, off, path)? != fh.len() {
                break;
            }
            let pgno = u32::from_be_bytes(fh[0..4].try_into().expect("4 bytes"));
            let commit = u32::from_be_bytes(fh[4..8].try_into().expect("4 bytes"));
            pages.insert(pgno, off + wal::FRAME_HEADER_SIZE as u64);
            if commit != 0 {
                db_pages = Some(commit);
            }
            off += fs;
        }
        if let Some(n) = db_pages {
            // Frames of pages a commit truncated away are not part of the database.
            pages.retain(|p, _| *p <= n);
        }
        Ok(ShadowOverlay {
            file,
            pages,
            db_pages,
        })
    }
}

/// Reads into `buf` at `at` until it is full or the file ends; the bytes read.
pub(crate) fn read_up_to(f: &File, buf: &mut [u8], at: u64, path: &Path) -> Result<usize> {
    crate::platform::read_up_to_at(f, buf, at).map_err(Error::io("read", path))
}

/// Compresses `from..end` of the shadow WAL file `f` into a temporary file in `tmp_dir`
/// (the meta directory), through bounded buffers (one LZ4 frame, as a segment object holds).
pub(crate) fn compress_range(
    f: &File,
    path: &Path,
    from: u64,
    end: u64,
    tmp_dir: &Path,
) -> Result<SnapshotFile> {
    let tmp = tempfile::Builder::new()
        .prefix(".segment-")
        .suffix(".tmp")
        .tempfile_in(tmp_dir)
        .map_err(Error::io("create segment file in", tmp_dir))?;
    let tmp_path = tmp.path().to_path_buf();
    let mut enc = compress::encoder(std::io::BufWriter::with_capacity(1 << 20, tmp));
    let mut buf = vec![0u8; (1usize << 20).min((end - from) as usize)];
    let mut at = from;
    while at < end {
        let want = buf.len().min((end - at) as usize);
        let n = read_up_to(f, &mut buf[..want], at, path)?;
        if n < want {
            return Err(Error::corrupt(
                path.display().to_string(),
                "shadow wal shorter than recorded",
            ));
        }
        std::io::Write::write_all(&mut enc, &buf[..want])
            .map_err(Error::io("compress segment into", &tmp_path))?;
        at += want as u64;
    }
    finish_compressed(enc, &tmp_path, end - from)
}

/// Where a segment starting at `from` should end: `end`, or, when that is more than
/// [`MAX_SEGMENT_BYTES`] away (and past `min_end`), the first commit boundary at or past
/// both. Bounds the size of one upload after a burst of writes (one large transaction
/// still goes whole: a segment must end on a commit frame).
pub(crate) fn segment_end(f: &File, path: &Path, from: u64, end: u64, min_end: u64) -> Result<u64> {
    let reach = from.saturating_add(MAX_SEGMENT_BYTES).max(min_end);
    if end <= reach {
        return Ok(end);
    }
    let mut h = [0u8; HEADER_SIZE];
    read_up_to(f, &mut h, 0, path)?;
    let hdr = WalHeader::parse(&h)
        .map_err(|e| Error::corrupt(path.display().to_string(), e.to_string()))?;
    let fs = hdr.frame_size();
    let mut at = from.max(HEADER_SIZE as u64);
    let mut fh = [0u8; wal::FRAME_HEADER_SIZE];
    while at + fs <= end {
        read_up_to(f, &mut fh, at, path)?;
        at += fs;
        if wal::FrameHeader::parse(&fh).commit != 0 && at >= reach {
            return Ok(at);
        }
    }
    Ok(end)
}

/// A compressed snapshot (see `Db::snapshot`) or large WAL segment (see
/// [`ShadowRead::File`]) waiting for upload; the file is removed when this is dropped.
#[derive(Debug)]
pub struct SnapshotFile {
    path: tempfile::TempPath,
    len: u64,
    db_bytes: u64,
}

impl SnapshotFile {
    /// The compressed snapshot (one LZ4 frame, Litestream's format).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its size in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when the file is empty (never for a finished snapshot: a frame has a header).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes it holds uncompressed (of the database file, for a snapshot).
    pub fn db_bytes(&self) -> u64 {
        self.db_bytes
    }
}

/// Ends the LZ4 frame written by `enc` into the temporary file at `tmp_path` (which holds
/// `raw_bytes` uncompressed bytes).
pub(crate) fn finish_compressed(
    enc: lz4_flex::frame::FrameEncoder<std::io::BufWriter<tempfile::NamedTempFile>>,
    tmp_path: &Path,
    raw_bytes: u64,
) -> Result<SnapshotFile> {
    let out = enc.finish().map_err(|e| Error::Io {
        op: "compress into",
        path: tmp_path.to_path_buf(),
        source: std::io::Error::other(e),
    })?;
    let tmp = out
        .into_inner()
        .map_err(|e| Error::io("write", tmp_path)(e.into_error()))?;
    let len = tmp
        .as_file()
        .metadata()
        .map_err(Error::io("stat", tmp_path))?
        .len();
    Ok(SnapshotFile {
        path: tmp.into_temp_path(),
        len,
        db_bytes: raw_bytes,
    })
}

/// Removes what a crash left behind under `dir`: files ending in `.tmp`, and directories
/// ending in `.tmp` (a validation's scratch space) with everything in them.
pub(crate) fn remove_tmp_files(dir: &Path) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        let tmp = p.extension().is_some_and(|x| x == "tmp");
        if p.is_dir() {
            if tmp {
                let _ = std::fs::remove_dir_all(&p);
            } else {
                remove_tmp_files(&p);
            }
        } else if tmp {
            let _ = std::fs::remove_file(&p);
        }
    }
    let _ = sync_dir(dir);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shadow WAL of `frames` frames of 1 KiB pages; `commit_every`-th frames commit.
    fn shadow_file(path: &Path, frames: u32, commit_every: u32) -> (WalHeader, Vec<u8>) {
        let h = wal::make_header(1024, 0, (7, 9), false);
        let hdr = WalHeader::parse(&h).unwrap();
        let mut data = h.to_vec();
        let mut ck = hdr.checksum;
        for i in 1..=frames {
            let commit = if i % commit_every == 0 { i } else { 0 };
            let (f, c) = wal::make_frame(&hdr, ck, i, commit, &[i as u8; 1024]);
            ck = c;
            data.extend_from_slice(&f);
        }
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, &data).unwrap();
        (hdr, data)
    }

    #[test]
    fn the_meta_directory_is_litestreams() {
        assert_eq!(
            meta_dir(Path::new("/data/app.db"), None),
            Path::new("/data/.app.db-litestream")
        );
        assert_eq!(
            meta_dir(Path::new("/data/app.db"), Some(Path::new("/m"))),
            Path::new("/m")
        );
        let g = Generation::parse("0123456789abcdef").unwrap();
        assert_eq!(
            shadow_path(Path::new("/m"), g, 0x1f),
            Path::new("/m/generations/0123456789abcdef/wal/0000001f.wal")
        );
    }

    #[test]
    fn the_generation_file_and_the_position_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let meta = dir.path();
        assert_eq!(read_generation(meta).unwrap(), GenerationFile::Missing);
        assert_eq!(disk_position(meta), None);
        std::fs::write(generation_file(meta), b"\xffnot a generation\n").unwrap();
        assert_eq!(read_generation(meta).unwrap(), GenerationFile::Damaged);
        let g = Generation::parse("00000000000000aa").unwrap();
        std::fs::write(generation_file(meta), format!("{g}\n")).unwrap();
        assert_eq!(read_generation(meta).unwrap(), GenerationFile::Found(g));
        assert_eq!(max_index(meta, g), None, "no shadow wal yet");
        assert_eq!(disk_position(meta), None);
        shadow_file(&shadow_path(meta, g, 0), 2, 1);
        let (_, data) = shadow_file(&shadow_path(meta, g, 3), 4, 2);
        std::fs::write(shadow_dir(meta, g).join("junk.wal.tmp"), b"x").unwrap();
        assert_eq!(max_index(meta, g), Some(3));
        assert_eq!(disk_position(meta), Some(Pos::new(g, 3, data.len() as u64)));
    }

    #[test]
    fn a_segment_is_cut_at_the_first_commit_past_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.wal");
        // 1 KiB pages: frames of 1048 bytes; MAX_SEGMENT_BYTES spans ~16,000 of them.
        let frames = (MAX_SEGMENT_BYTES / 1048) as u32 + 200;
        let (hdr, data) = shadow_file(&path, frames, 100);
        let f = File::open(&path).unwrap();
        let end = data.len() as u64;
        // Below the limit: everything.
        assert_eq!(
            segment_end(&f, &path, 32, 32 + 1048 * 10, 0).unwrap(),
            32 + 1048 * 10
        );
        // Past it: the first commit frame at or past from + MAX_SEGMENT_BYTES.
        let cut = segment_end(&f, &path, 32, end, 0).unwrap();
        assert!(cut >= 32 + MAX_SEGMENT_BYTES && cut < end, "{cut}");
        let frame = (cut - 32) / hdr.frame_size();
        assert_eq!(frame % 100, 0, "cut after frame {frame}, not a commit");
        assert!(cut - 32 - MAX_SEGMENT_BYTES < 100 * hdr.frame_size());
        // `min_end` past the limit moves the cut with it.
        let later = segment_end(&f, &path, 32, end, cut + 1).unwrap();
        assert!(later > cut, "{later} <= {cut}");
    }

    #[test]
    fn a_compressed_range_holds_exactly_those_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.wal");
        let (_, data) = shadow_file(&path, 50, 10);
        let f = File::open(&path).unwrap();
        let (from, end) = (32 + 1048 * 10, 32 + 1048 * 30);
        let seg = compress_range(&f, &path, from, end, dir.path()).unwrap();
        assert_eq!(seg.db_bytes(), end - from);
        assert_eq!(seg.len(), std::fs::metadata(seg.path()).unwrap().len());
        let back = compress::decompress(&std::fs::read(seg.path()).unwrap(), 1 << 30).unwrap();
        assert_eq!(back, &data[from as usize..end as usize]);
        // A range past the end of the file is a corrupt shadow, not a short segment.
        let err = compress_range(&f, &path, from, data.len() as u64 + 1048, dir.path());
        assert!(err.is_err());
        // The temporary file goes with the handle; a crash's leftovers go at start.
        let kept = seg.path().to_path_buf();
        drop(seg);
        assert!(!kept.exists());
        std::fs::write(dir.path().join(".segment-x.tmp"), b"left by a crash").unwrap();
        std::fs::create_dir(dir.path().join("validate-1.tmp")).unwrap();
        remove_tmp_files(dir.path());
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left, ["0.wal"]);
    }

    #[test]
    fn the_overlay_has_the_newest_frame_of_each_page_up_to_the_last_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.wal");
        let h = wal::make_header(1024, 0, (1, 2), false);
        let hdr = WalHeader::parse(&h).unwrap();
        let mut data = h.to_vec();
        let mut ck = hdr.checksum;
        // Page 1 twice, page 5, then a commit that shrinks the database to 3 pages.
        for (pgno, commit) in [(1, 0), (5, 5), (1, 0), (2, 3)] {
            let (f, c) = wal::make_frame(&hdr, ck, pgno, commit, &[pgno as u8; 1024]);
            ck = c;
            data.extend_from_slice(&f);
        }
        std::fs::write(&path, &data).unwrap();
        let o = ShadowOverlay::read(&path, hdr.frame_size(), data.len() as u64).unwrap();
        assert_eq!(o.db_pages, Some(3));
        let off = |frame: u64| 32 + frame * hdr.frame_size() + wal::FRAME_HEADER_SIZE as u64;
        assert_eq!(o.pages.get(&1), Some(&off(2)), "the newest frame of page 1");
        assert_eq!(o.pages.get(&2), Some(&off(3)));
        assert_eq!(o.pages.get(&5), None, "truncated away by the last commit");
    }
}
