//! The restore's local files: the temporary database beside the output, its cleanup, the
//! page writer, the SQLite verification and the no-clobber install. Blocking I/O; the
//! async side calls these on tokio's blocking pool.
use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::replay::IndexReplay;
use crate::backend::WalSegmentInfo;
use crate::error::{BackendErrorKind, Error, Result};
use crate::fsutil::{create_dir_all_synced, sync_dir};

/// The 16 bytes every SQLite database file starts with.
pub(crate) const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// Suffixes of the files SQLite may create beside a database.
const SIDE_FILES: [&str; 3] = ["-wal", "-shm", "-journal"];

/// `path` with `suffix` appended to its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Removes the temporary database and any SQLite side file beside it.
fn remove_temp_files(db: &Path) {
    let _ = std::fs::remove_file(db);
    for suffix in SIDE_FILES {
        let _ = std::fs::remove_file(with_suffix(db, suffix));
    }
}

/// Removes the temporary database (and its `-wal`/`-shm`/`-journal`) when dropped, unless
/// disarmed: any error, panic or cancellation (the restore future dropped) leaves no
/// temporary file behind. It never touches the output path.
#[derive(Debug)]
pub(crate) struct TempGuard {
    path: PathBuf,
    armed: bool,
}

impl TempGuard {
    /// The temporary database path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The temporary file is gone (installed as the output): nothing left to clean up.
    pub(crate) fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if self.armed {
            remove_temp_files(&self.path);
        }
    }
}

/// A random suffix for the temporary name.
fn random_hex() -> String {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        // No OS randomness: the name only needs to differ from a concurrent restore's, and
        // `create_new` refuses a collision anyway.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        b = (t ^ u64::from(std::process::id()).rotate_left(40)).to_be_bytes();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Checks that `output` does not exist, creates its directory if needed, and creates the
/// temporary database `.<name>.walship-restore-<random>.tmp` beside it (mode 0644 before
/// umask, as SQLite creates databases). Returns the guard and the open file.
pub(crate) fn create_temp(output: &Path) -> Result<(TempGuard, File)> {
    match std::fs::symlink_metadata(output) {
        Ok(_) => return Err(Error::OutputExists(output.to_path_buf())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("stat output", output)(e)),
    }
    let name = output.file_name().ok_or_else(|| {
        Error::Config(format!("output path {} has no file name", output.display()))
    })?;
    let dir = output_dir(output);
    create_dir_all_synced(&dir)?;
    let mut tmp_name = OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".walship-restore-{}.tmp", random_hex()));
    let path = dir.join(tmp_name);
    let mut oo = std::fs::OpenOptions::new();
    oo.read(true).write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut oo, 0o644);
    let file = oo
        .open(&path)
        .map_err(Error::io("create temporary database", &path))?;
    Ok((TempGuard { path, armed: true }, file))
}

/// The directory `output` goes into (`.` for a bare file name).
fn output_dir(output: &Path) -> PathBuf {
    match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// What a snapshot's SQLite header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SnapshotHeader {
    pub page_size: u32,
    /// The in-header database size in pages, when SQLite would trust it (non-zero, and the
    /// version-valid-for number at offset 92 equals the change counter at offset 24).
    pub pages: Option<u32>,
}

/// Checks the first 100 bytes of a decompressed snapshot (fewer when it is shorter).
/// `object` names the snapshot in errors.
pub(crate) fn snapshot_header(data: &[u8], object: &str) -> Result<SnapshotHeader> {
    if data.len() < 100 || &data[..16] != SQLITE_MAGIC {
        return Err(Error::corrupt(
            object,
            "snapshot is not a SQLite database (bad header)",
        ));
    }
    let raw = u32::from(u16::from_be_bytes([data[16], data[17]]));
    let page_size = if raw == 1 { 65536 } else { raw };
    if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
        return Err(Error::corrupt(
            object,
            format!("snapshot has an invalid page size {raw}"),
        ));
    }
    let be = |at: usize| u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
    let pages = (be(28) != 0 && be(24) == be(92)).then(|| be(28));
    Ok(SnapshotHeader { page_size, pages })
}

/// Size of the buffers a snapshot is written in, and how many go round at once.
const SNAPSHOT_BUFFER: usize = 1 << 20;
const SNAPSHOT_BUFFERS: usize = 4;

/// Copies a decompressing reader of a snapshot into `file` (empty, at offset 0) through
/// [`SNAPSHOT_BUFFERS`] buffers of 1 MiB, written by a second thread while this one
/// decompresses: the snapshot is never held in memory. Returns the header and the bytes
/// written. `read_err` turns a read error into the restore's error.
///
/// With `header_bound` (the store gave no size for the object, so nothing else bounds the
/// body), a snapshot longer than the page count its header announces is refused as soon as
/// it passes that count: an endless or oversized body fills neither memory nor disk.
pub(crate) fn write_snapshot(
    file: &mut File,
    path: &Path,
    mut r: impl std::io::Read,
    object: &str,
    header_bound: bool,
    read_err: &dyn Fn(std::io::Error) -> Error,
    cancelled: &std::sync::atomic::AtomicBool,
) -> Result<(SnapshotHeader, u64)> {
    let mut buf = vec![0u8; SNAPSHOT_BUFFER];
    let mut fill = |buf: &mut [u8]| -> Result<usize> {
        // The restore was dropped: stop downloading a snapshot nobody will use.
        if cancelled.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(Error::backend(
                "restore",
                BackendErrorKind::Other,
                format!("download of {object} cancelled"),
            ));
        }
        let mut n = 0;
        while n < buf.len() {
            match r.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(read_err(e)),
            }
        }
        Ok(n)
    };
    let n = fill(&mut buf[..100])?;
    let header = snapshot_header(&buf[..n], object)?;
    let limit = match (header_bound, header.pages) {
        (true, Some(p)) => Some(u64::from(p) * u64::from(header.page_size)),
        _ => None,
    };
    let mut total = n as u64;
    // Decompression (this thread) and the file writes (a second one) overlap: on a large
    // snapshot each is about half of the work, and they run on different cores. Buffers
    // go round between the two threads, so memory stays at a few of them.
    // Full buffers travel with the length they hold, so none is ever resized (and zeroed).
    let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<(Vec<u8>, usize)>(SNAPSHOT_BUFFERS);
    let (free_tx, free_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    for _ in 1..SNAPSHOT_BUFFERS {
        let _ = free_tx.send(vec![0u8; SNAPSHOT_BUFFER]);
    }
    // The header's bytes are the first buffer written.
    let _ = full_tx.send((buf, n));
    std::thread::scope(|scope| {
        let out: &mut File = file;
        let writer = scope.spawn(move || -> Result<()> {
            for (b, n) in full_rx {
                out.write_all(&b[..n])
                    .map_err(Error::io("write snapshot to", path))?;
                // The reader may have stopped (an error): nobody wants the buffer back.
                let _ = free_tx.send(b);
            }
            Ok(())
        });
        let read = (|| -> Result<()> {
            loop {
                // The writer gives buffers back until it fails; then its error is the one
                // to report, below.
                let Ok(mut b) = free_rx.recv() else {
                    return Ok(());
                };
                let n = fill(&mut b)?;
                if n == 0 {
                    return Ok(());
                }
                total += n as u64;
                if let Some(l) = limit
                    && total > l
                {
                    return Err(Error::corrupt(
                        object,
                        format!(
                            "snapshot runs past the {} pages its header announces; refusing the rest",
                            l / u64::from(header.page_size)
                        ),
                    ));
                }
                if full_tx.send((b, n)).is_err() {
                    return Ok(());
                }
            }
        })();
        drop(full_tx);
        let wrote = writer.join().unwrap_or_else(|_| {
            Err(Error::io("write snapshot to", path)(std::io::Error::other(
                "snapshot writer thread panicked",
            )))
        });
        // A write error explains a reader that stopped early; otherwise the reader's own.
        wrote.and(read)
    })?;
    if !total.is_multiple_of(u64::from(header.page_size)) {
        return Err(Error::corrupt(
            object,
            format!(
                "snapshot is {total} bytes, not a whole number of {}-byte pages",
                header.page_size
            ),
        ));
    }
    Ok((header, total))
}

/// An index that was fully applied.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AppliedIndex {
    pub index: u32,
    pub frames: u64,
    pub wal_bytes: u64,
    pub db_pages: Option<u32>,
}

/// Most bytes of WAL pages [`DbWriter`] holds before writing them to the file.
const PENDING_CAP: usize = 8 << 20;

/// Writes a snapshot and then WAL pages into the temporary database.
///
/// Pages are not written as each segment arrives: the newest version of each page is kept
/// (up to [`PENDING_CAP`] bytes, across segments and indexes) and written once, in page
/// order, when the buffer fills or the restore ends. A long tail of segments that keep
/// rewriting the same few pages costs one write per page instead of one per version. The
/// result is byte for byte what writing every version in order gives: at each index's end
/// the file takes the size the index's last commit records and buffered pages past that
/// size are dropped, exactly as the truncation would have dropped them from the file.
#[derive(Debug)]
pub(crate) struct DbWriter {
    pages: PageBuf,
    current: Option<IndexReplay>,
    /// The last index finished: where a follower continues.
    last: Option<IndexReplay>,
}

/// The newest version of each buffered page, and the file they go to.
#[derive(Debug)]
struct PageBuf {
    file: File,
    path: PathBuf,
    page_size: u32,
    pending: std::collections::BTreeMap<u32, Vec<u8>>,
    pending_bytes: usize,
    pages_written: u64,
}

impl PageBuf {
    /// Buffers `page` as the newest version of `pgno`; writes the buffer out when full.
    fn put(&mut self, pgno: u32, page: &[u8]) -> Result<()> {
        match self.pending.entry(pgno) {
            std::collections::btree_map::Entry::Occupied(mut e) => {
                e.get_mut().copy_from_slice(page);
            }
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(page.to_vec());
                self.pending_bytes += page.len();
            }
        }
        if self.pending_bytes >= PENDING_CAP {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the buffered pages, in page order.
    fn flush(&mut self) -> Result<()> {
        let ps = u64::from(self.page_size);
        for (pgno, page) in std::mem::take(&mut self.pending) {
            crate::platform::write_all_at(&self.file, &page, u64::from(pgno - 1) * ps)
                .map_err(Error::io("write page to", &self.path))?;
            self.pages_written += 1;
        }
        self.pending_bytes = 0;
        Ok(())
    }
}

impl DbWriter {
    /// A writer of WAL pages into `file`, which holds the snapshot.
    pub(crate) fn new(file: File, path: PathBuf, page_size: u32) -> DbWriter {
        DbWriter {
            pages: PageBuf {
                file,
                path,
                page_size,
                pending: std::collections::BTreeMap::new(),
                pending_bytes: 0,
                pages_written: 0,
            },
            current: None,
            last: None,
        }
    }

    /// The replay state of the last index finished ([`DbWriter::finish_index`]).
    pub(crate) fn last_replay(&self) -> Option<&IndexReplay> {
        self.last.as_ref()
    }

    /// The replay of `seg`'s index and the page buffer its pages go to, finishing the
    /// previous index first when `seg` starts a new one (returned as the third value).
    fn replay_for(
        &mut self,
        seg: &WalSegmentInfo,
    ) -> Result<(&mut IndexReplay, &mut PageBuf, Option<AppliedIndex>)> {
        let mut finished = None;
        if self
            .current
            .as_ref()
            .is_some_and(|c| c.index() != seg.index)
        {
            finished = self.finish_index()?;
        }
        let page_size = self.pages.page_size;
        let replay = self
            .current
            .get_or_insert_with(|| IndexReplay::new(seg.index, page_size));
        Ok((replay, &mut self.pages, finished))
    }

    /// Validates and applies one segment (the next in the plan's order). Returns the
    /// previous index when this segment starts a new one.
    pub(crate) fn apply_segment(
        &mut self,
        seg: &WalSegmentInfo,
        data: &[u8],
        object: &str,
    ) -> Result<Option<AppliedIndex>> {
        let ps = self.pages.page_size as usize;
        let (replay, pages, finished) = self.replay_for(seg)?;
        for p in replay.segment(seg.offset, data, object)? {
            pages.put(p.pgno, &data[p.at..p.at + ps])?;
        }
        Ok(finished)
    }

    /// [`apply_segment`](DbWriter::apply_segment) for a segment read from `r` as it
    /// decompresses (see [`IndexReplay::segment_stream`]): memory stays bounded whatever
    /// the segment's size. On error the replay state is as before the segment, so a
    /// transient read error can be retried by applying the segment again from its start
    /// (its pages are then written again, in the same order, with the same result).
    pub(crate) fn apply_segment_stream(
        &mut self,
        seg: &WalSegmentInfo,
        r: &mut dyn std::io::Read,
        object: &str,
        read_err: &dyn Fn(std::io::Error) -> Error,
    ) -> Result<Option<AppliedIndex>> {
        let (replay, pages, finished) = self.replay_for(seg)?;
        replay.segment_stream(seg.offset, r, object, read_err, &mut |pgno, page| {
            pages.put(pgno, page)
        })?;
        Ok(finished)
    }

    /// Completes the current index: the database takes the size its last commit recorded.
    pub(crate) fn finish_index(&mut self) -> Result<Option<AppliedIndex>> {
        let Some(r) = self.current.take() else {
            return Ok(None);
        };
        if let Some(pages) = r.db_pages() {
            let b = &mut self.pages;
            // Buffered pages past the new end would have been cut off by the truncation.
            let dropped = b.pending.split_off(&(pages + 1));
            b.pending_bytes -= dropped.len() * b.page_size as usize;
            b.file
                .set_len(u64::from(pages) * u64::from(b.page_size))
                .map_err(Error::io("set size of", &b.path))?;
        }
        let applied = AppliedIndex {
            index: r.index(),
            frames: r.frames(),
            wal_bytes: r.wal_bytes(),
            db_pages: r.db_pages(),
        };
        self.last = Some(r);
        Ok(Some(applied))
    }

    /// Writes the buffered pages (no fsync); returns the file's size and the number of
    /// pages written from WAL frames. The file then holds the restored database.
    pub(crate) fn write_out(&mut self) -> Result<(u64, u64)> {
        let b = &mut self.pages;
        b.flush()?;
        let len = b.file.metadata().map_err(Error::io("stat", &b.path))?.len();
        Ok((len, b.pages_written))
    }

    /// The file, for the caller's fsync after [`DbWriter::write_out`].
    pub(crate) fn into_file(self) -> File {
        self.pages.file
    }
}

/// Opens the restored database with SQLite and runs `PRAGMA integrity_check`, which must
/// answer exactly `ok`. `what` names the source in a corruption error. SQLite's `-wal` and
/// `-shm` for the temporary file are removed afterwards, whatever the outcome (this also runs
/// to completion when the restore was cancelled meanwhile, so it cleans up after itself).
pub(crate) fn verify(path: &Path, what: &str) -> Result<()> {
    let res = integrity_check(path, what);
    for suffix in SIDE_FILES {
        let _ = std::fs::remove_file(with_suffix(path, suffix));
    }
    res
}

fn integrity_check(path: &Path, what: &str) -> Result<()> {
    use rusqlite::OpenFlags;
    // No CREATE flag: if the file vanished (cancelled restore) this fails instead of
    // creating an empty database.
    let conn = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(Error::sqlite(format!(
        "open restored database {}",
        path.display()
    )))?;
    let mut rows: Vec<String> = Vec::new();
    {
        let mut stmt = conn
            .prepare("PRAGMA integrity_check(20)")
            .map_err(|e| integrity_error(what, e))?;
        let mut q = stmt.query([]).map_err(|e| integrity_error(what, e))?;
        while let Some(row) = q.next().map_err(|e| integrity_error(what, e))? {
            rows.push(
                row.get::<_, String>(0)
                    .map_err(|e| integrity_error(what, e))?,
            );
        }
    }
    conn.close().map_err(|(_, e)| {
        Error::sqlite(format!("close restored database {}", path.display()))(e)
    })?;
    if rows.len() == 1 && rows[0] == "ok" {
        return Ok(());
    }
    Err(Error::corrupt(
        what,
        format!(
            "restored database fails integrity_check: {}",
            rows.join("; ")
        ),
    ))
}

/// SQLite refusing to read the restored file at all is corruption of what was restored.
fn integrity_error(what: &str, e: rusqlite::Error) -> Error {
    Error::corrupt(
        what,
        format!("restored database fails integrity_check: {e}"),
    )
}

/// Moves the verified temporary database to `output` without ever replacing a file that
/// appeared there meanwhile, then fsyncs the directory.
///
/// `hard_link` is the no-clobber primitive: it fails with `AlreadyExists` if `output`
/// exists, atomically, on every POSIX file system (std has no `renameat2(RENAME_NOREPLACE)`,
/// and check-then-rename leaves a window in which a concurrent writer's file would be
/// replaced). The temporary name is then unlinked, leaving the inode under `output` only.
/// Where hard links are not supported (some FUSE, SMB and FAT mounts) it falls back to
/// check-then-rename, whose window is the few microseconds between the two calls.
pub(crate) fn install(tmp: &Path, output: &Path) -> Result<()> {
    let dir = output_dir(output);
    match std::fs::hard_link(tmp, output) {
        Ok(()) => {
            if let Err(e) = std::fs::remove_file(tmp) {
                tracing::warn!(path = %tmp.display(), error = %e, "cannot remove temporary restore file");
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Error::OutputExists(output.to_path_buf()));
        }
        Err(e) => {
            tracing::debug!(error = %e, "hard link not available, renaming after an existence check");
            if std::fs::symlink_metadata(output).is_ok() {
                return Err(Error::OutputExists(output.to_path_buf()));
            }
            crate::platform::rename(tmp, output)
                .map_err(Error::io("rename restored database to", output))?;
        }
    }
    if let Err(e) = sync_dir(&dir) {
        // The database is complete at `output` but its name may not survive a crash:
        // report the failure and leave nothing half-done behind.
        let _ = std::fs::remove_file(output);
        return Err(e);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_file_is_beside_output_and_cleaned_up() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("sub").join("app.db");
        let (guard, f) = create_temp(&out).unwrap();
        // Closed first: Windows keeps the name of a deleted file that is still open.
        drop(f);
        let name = guard
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(
            name.starts_with(".app.db.walship-restore-") && name.ends_with(".tmp"),
            "{name}"
        );
        assert_eq!(guard.path().parent(), out.parent());
        std::fs::write(with_suffix(guard.path(), "-wal"), b"x").unwrap();
        std::fs::write(with_suffix(guard.path(), "-shm"), b"x").unwrap();
        drop(guard);
        assert_eq!(std::fs::read_dir(out.parent().unwrap()).unwrap().count(), 0);
    }

    #[test]
    fn output_must_not_exist_and_install_does_not_clobber() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("app.db");
        std::fs::write(&out, b"mine").unwrap();
        assert!(matches!(create_temp(&out), Err(Error::OutputExists(_))));

        let out2 = dir.path().join("b.db");
        let (mut guard, f) = create_temp(&out2).unwrap();
        drop(f);
        std::fs::write(guard.path(), b"restored").unwrap();
        // Someone creates the output while the restore runs.
        std::fs::write(&out2, b"theirs").unwrap();
        assert!(matches!(
            install(guard.path(), &out2),
            Err(Error::OutputExists(_))
        ));
        assert_eq!(std::fs::read(&out2).unwrap(), b"theirs");
        std::fs::remove_file(&out2).unwrap();
        install(guard.path(), &out2).unwrap();
        guard.disarm();
        assert_eq!(std::fs::read(&out2).unwrap(), b"restored");
        assert!(!guard.path().exists());
    }

    #[test]
    fn snapshot_header_checks() {
        let mut db = vec![0u8; 4096];
        db[..16].copy_from_slice(SQLITE_MAGIC);
        db[16..18].copy_from_slice(&4096u16.to_be_bytes());
        assert_eq!(
            snapshot_header(&db, "s").unwrap(),
            SnapshotHeader {
                page_size: 4096,
                pages: None
            }
        );
        db[28..32].copy_from_slice(&3u32.to_be_bytes());
        db[24..28].copy_from_slice(&9u32.to_be_bytes());
        db[92..96].copy_from_slice(&9u32.to_be_bytes());
        assert_eq!(snapshot_header(&db, "s").unwrap().pages, Some(3));
        let mut big = vec![0u8; 65536];
        big[..16].copy_from_slice(SQLITE_MAGIC);
        big[16..18].copy_from_slice(&1u16.to_be_bytes());
        assert_eq!(snapshot_header(&big, "s").unwrap().page_size, 65536);
        let err = snapshot_header(&db[..99], "snap").unwrap_err();
        assert!(err.to_string().contains("snap"), "{err}");
        db[16..18].copy_from_slice(&1000u16.to_be_bytes());
        assert!(snapshot_header(&db, "s").is_err());
        assert!(snapshot_header(b"not a database at all", "s").is_err());
    }

    #[test]
    fn snapshot_copy_checks_size_and_header_bound() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        let mut db = vec![0u8; 4096 * 3];
        db[..16].copy_from_slice(SQLITE_MAGIC);
        db[16..18].copy_from_slice(&4096u16.to_be_bytes());
        db[28..32].copy_from_slice(&2u32.to_be_bytes());
        db[24] = 1;
        let io_err = |e: std::io::Error| Error::corrupt("x", e.to_string());
        let no = std::sync::atomic::AtomicBool::new(false);
        let mut f = File::create(&path).unwrap();
        // The header's count is not trusted (change counters differ): 3 pages are fine.
        let (h, n) = write_snapshot(&mut f, &path, &db[..], "s", true, &io_err, &no).unwrap();
        assert_eq!((h.pages, n), (None, 3 * 4096));
        assert_eq!(std::fs::read(&path).unwrap(), db);
        // Trusted count of 2 pages: a third page is refused when bounded, kept otherwise.
        db[24] = 5;
        db[92] = 5;
        let mut f = File::create(&path).unwrap();
        let err = write_snapshot(&mut f, &path, &db[..], "s", true, &io_err, &no).unwrap_err();
        assert!(err.to_string().contains("runs past the 2 pages"), "{err}");
        let mut f = File::create(&path).unwrap();
        write_snapshot(&mut f, &path, &db[..], "s", false, &io_err, &no).unwrap();
        let mut f = File::create(&path).unwrap();
        let err = write_snapshot(&mut f, &path, &db[..5000], "s", false, &io_err, &no).unwrap_err();
        assert!(err.to_string().contains("whole number"), "{err}");
    }

    /// A snapshot of several buffers goes through the writer thread intact, and an error
    /// on either side (the store's read, the file's write) ends the copy with that error.
    #[test]
    fn a_snapshot_of_many_buffers_is_written_whole_and_errors_stop_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        // 1,400 pages of 4 KiB: five full buffers and a partial one, every page different.
        let mut db: Vec<u8> = (0..1400u32 * 4096)
            .map(|i| ((i / 4096) ^ (i % 251)) as u8)
            .collect();
        db[..16].copy_from_slice(SQLITE_MAGIC);
        db[16..18].copy_from_slice(&4096u16.to_be_bytes());
        db[28..32].copy_from_slice(&1400u32.to_be_bytes());
        db[24..28].copy_from_slice(&[0, 0, 0, 7]);
        db[92..96].copy_from_slice(&[0, 0, 0, 7]);
        let io_err = |e: std::io::Error| Error::corrupt("x", e.to_string());
        let no = std::sync::atomic::AtomicBool::new(false);
        let mut f = File::create(&path).unwrap();
        let (h, n) = write_snapshot(&mut f, &path, &db[..], "s", true, &io_err, &no).unwrap();
        assert_eq!((h.pages, n), (Some(1400), db.len() as u64));
        assert!(
            std::fs::read(&path).unwrap() == db,
            "the file holds the snapshot"
        );

        // The store fails after 3 MiB.
        struct FailAfter<'a>(&'a [u8], usize);
        impl std::io::Read for FailAfter<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                if self.1 == 0 {
                    return Err(std::io::Error::other("connection reset"));
                }
                let n = buf.len().min(self.1).min(self.0.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                self.1 -= n;
                Ok(n)
            }
        }
        let mut f = File::create(&path).unwrap();
        let err = write_snapshot(
            &mut f,
            &path,
            FailAfter(&db, 3 << 20),
            "s",
            true,
            &io_err,
            &no,
        )
        .unwrap_err();
        assert!(err.to_string().contains("connection reset"), "{err}");

        // The file refuses writes (opened read-only): the write error, not a hang.
        std::fs::write(&path, b"").unwrap();
        let mut f = File::open(&path).unwrap();
        let err = write_snapshot(&mut f, &path, &db[..], "s", true, &io_err, &no).unwrap_err();
        assert!(err.to_string().contains("write snapshot to"), "{err}");
    }

    /// One index's WAL (a single segment): frames `(pgno, commit db size)`, page bytes
    /// `fill`.
    fn wal(ps: u32, salt: u32, frames: &[(u32, u32, u8)]) -> Vec<u8> {
        use crate::sqlite::wal::{WalHeader, make_frame, make_header};
        let hb = make_header(ps, 1, (salt, salt + 1), false);
        let h = WalHeader::parse(&hb).unwrap();
        let mut out = hb.to_vec();
        let mut ck = h.checksum;
        for &(pgno, commit, fill) in frames {
            let (f, c) = make_frame(&h, ck, pgno, commit, &vec![fill; ps as usize]);
            ck = c;
            out.extend_from_slice(&f);
        }
        out
    }

    #[test]
    fn buffered_pages_match_writing_every_version_in_order() {
        const PS: u32 = 512;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let file = File::create(&path).unwrap();
        file.set_len(2 * u64::from(PS)).unwrap();
        let mut w = DbWriter::new(file, path.clone(), PS);
        let seg = |index: u32| WalSegmentInfo {
            generation: crate::Generation::random(),
            index,
            offset: 0,
            size: 0,
            created: std::time::SystemTime::now(),
        };
        // Index 0: grow to 5 pages, page 2 twice. Index 1: shrink to 3 pages (pages 4 and 5
        // buffered but cut off). Index 2: grow to 5 again writing only page 5: page 4 must
        // read as zeros, as after a real truncation and regrowth.
        let i0 = wal(
            PS,
            1,
            &[
                (1, 0, 1),
                (2, 0, 2),
                (3, 0, 3),
                (4, 0, 4),
                (2, 0, 22),
                (5, 5, 5),
            ],
        );
        let i1 = wal(PS, 2, &[(1, 3, 11)]);
        let i2 = wal(PS, 3, &[(5, 5, 55)]);
        w.apply_segment(&seg(0), &i0, "s0").unwrap();
        w.apply_segment(&seg(1), &i1, "s1").unwrap();
        w.apply_segment(&seg(2), &i2, "s2").unwrap();
        w.finish_index().unwrap();
        let (len, written) = w.write_out().unwrap();
        let got = std::fs::read(&path).unwrap();
        assert_eq!(len, 5 * u64::from(PS));
        let page = |n: usize| got[(n - 1) * PS as usize];
        assert_eq!(
            [page(1), page(2), page(3), page(4), page(5)],
            [11, 22, 3, 0, 55]
        );
        assert!(
            got[3 * PS as usize..4 * PS as usize]
                .iter()
                .all(|&b| b == 0)
        );
        // Seven frames, five distinct pages, two of them cut off before they were written.
        assert_eq!(written, 4);
    }
}
