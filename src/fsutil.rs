//! Durable local file operations: fsync of a directory after its entries change, directory
//! creation that survives a crash, and atomic writes (temporary name, fsync, rename, fsync of
//! the directory). Used by the shadow WAL, the file backend and restore's output.
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// fsyncs a directory so a rename or create inside it survives a crash.
pub fn sync_dir(dir: &Path) -> Result<()> {
    crate::platform::sync_dir(dir).map_err(Error::io("fsync directory", dir))
}

/// Creates `dir` and its parents, fsyncing each parent whose entry list changed.
pub(crate) fn create_dir_all_synced(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dir_all_synced(parent)?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(Error::io("create directory", dir)(e)),
    }
    if let Some(parent) = dir.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Writes `data` to `path` atomically: `<path>.<pid>-<n>.tmp`, fsync, rename, fsync of the
/// directory.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<std::fs::Metadata> {
    write_atomic_with(path, |f, tmp| {
        f.write_all(data).map_err(Error::io("write", tmp))
    })
}

/// [`write_atomic`] with the content written by `fill` into the open temporary file.
pub(crate) fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut std::fs::File, &Path) -> Result<()>,
) -> Result<std::fs::Metadata> {
    let dir = path
        .parent()
        .ok_or_else(|| Error::Config(format!("no parent directory for {}", path.display())))?;
    create_dir_all_synced(dir)?;
    // A name of its own for each write: two writes of one object can overlap (an upload
    // abandoned at shutdown still runs on the blocking pool while the final sync writes the
    // same segment again); with one shared `<path>.tmp` the second rename found nothing
    // ("not found", seen in the comparison harness).
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(
        ".{}-{}.tmp",
        std::process::id(),
        SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let tmp = PathBuf::from(tmp);
    let res = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(Error::io("create", &tmp))?;
        fill(&mut f, &tmp)?;
        f.sync_all().map_err(Error::io("fsync", &tmp))?;
        drop(f);
        crate::fault::point("file.after_write");
        crate::platform::rename(&tmp, path).map_err(Error::io("rename into place", path))?;
        crate::fault::point("file.after_rename");
        sync_dir(dir)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res?;
    std::fs::metadata(path).map_err(Error::io("stat", path))
}
