//! What differs between operating systems, in one place: positioned reads and writes, file
//! identity, durable renames and directory syncs, the machine's name, and killing the
//! process at a crash point. The rest of walship calls these and has no `cfg` of its own
//! for them (file watching is `crate::watch`; signals and child processes are the command
//! line's).
//!
//! - **Linux and macOS**: `pread`/`pwrite`; identity is `(st_dev, st_ino)`; a rename or a
//!   new entry is made durable by fsyncing the directory. On macOS, `File::sync_all` is
//!   `fcntl(F_FULLFSYNC)` (Rust's standard library since 1.36, rust-lang/rust#60121), which
//!   flushes the drive's cache as SQLite's `fullfsync` does; plain `fsync` there does not.
//!   Every durable write of walship (shadow WAL, replica files, restore output) goes
//!   through `sync_all`, so it gets that without code of its own.
//! - **Windows**: `ReadFile`/`WriteFile` at an offset (they move the handle's cursor, which
//!   walship never uses on these handles); identity is the volume serial number and file
//!   index of `GetFileInformationByHandle`; a rename is `MoveFileExW` with
//!   `MOVEFILE_REPLACE_EXISTING | MOVEFILE_WRITE_THROUGH`, and directories are not synced
//!   (NTFS journals its metadata; a directory cannot be opened for a flush).
use std::fs::File;
use std::io;
use std::path::Path;

/// Reads into `buf` at `offset`; the bytes read (0 at the end of the file).
pub(crate) fn read_at(f: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::read_at(f, buf, offset)
    }
    #[cfg(windows)]
    {
        std::os::windows::fs::FileExt::seek_read(f, buf, offset)
    }
}

/// Fills `buf` from `offset`; an error of kind `UnexpectedEof` if the file ends first.
pub(crate) fn read_exact_at(f: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    if read_up_to_at(f, buf, offset)? < buf.len() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "file ends before the bytes to read",
        ));
    }
    Ok(())
}

/// Reads into `buf` from `offset` until it is full or the file ends; returns how many
/// bytes were read (fewer than `buf.len()` only at the end of the file).
pub(crate) fn read_up_to_at(f: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match read_at(f, &mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Writes all of `buf` at `offset`.
pub(crate) fn write_all_at(f: &File, buf: &[u8], offset: u64) -> io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::write_all_at(f, buf, offset)
    }
    #[cfg(windows)]
    {
        let (mut buf, mut offset) = (buf, offset);
        while !buf.is_empty() {
            match std::os::windows::fs::FileExt::seek_write(f, buf, offset) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    buf = &buf[n..];
                    offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Which file a path names: equal for two paths of one file (hard links included), and
/// different once the file is replaced by another (a rename over it, delete and create),
/// even at the same path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileId {
    /// The device (Unix) or volume serial number (Windows).
    pub dev: u64,
    /// The inode (Unix) or file index (Windows).
    pub ino: u64,
}

/// The identity of the file at `path`, whose metadata the caller has as `md` (on Unix it
/// is taken from `md`; on Windows the file is opened for a moment, with every sharing mode,
/// since the standard library's metadata does not carry it on stable Rust).
pub(crate) fn file_id(path: &Path, md: &std::fs::Metadata) -> io::Result<FileId> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let _ = path;
        Ok(FileId {
            dev: md.dev(),
            ino: md.ino(),
        })
    }
    #[cfg(windows)]
    {
        let _ = md;
        windows::file_id(path)
    }
}

/// The last status change of a file, in nanoseconds since the epoch, where the system has
/// one that user space cannot set (Unix `ctime`); `None` on Windows.
pub(crate) fn change_time_ns(md: &std::fs::Metadata) -> Option<i128> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Some(i128::from(md.ctime()) * 1_000_000_000 + i128::from(md.ctime_nsec()))
    }
    #[cfg(windows)]
    {
        let _ = md;
        None
    }
}

/// Makes the entries of `dir` (a rename, a create, a delete inside it) durable: fsync of the
/// directory on Unix; nothing on Windows (see the module docs).
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(all(unix, not(target_vendor = "apple")))]
    {
        File::open(dir).and_then(|f| f.sync_all())
    }
    // `sync_all` is F_FULLFSYNC there, which not every file system takes on a directory:
    // then plain fsync, as SQLite does for its directory syncs.
    #[cfg(target_vendor = "apple")]
    {
        use std::os::fd::AsRawFd;
        let f = File::open(dir)?;
        f.sync_all().or_else(|_| {
            // SAFETY: fsync(2) on a descriptor we own and keep open for the call.
            match unsafe { libc::fsync(f.as_raw_fd()) } {
                0 => Ok(()),
                _ => Err(io::Error::last_os_error()),
            }
        })
    }
    #[cfg(windows)]
    {
        let _ = dir;
        Ok(())
    }
}

/// Renames `from` to `to`, replacing `to` if it exists; on Windows the rename is written
/// through to the disk before this returns (on Unix, [`sync_dir`] of the directory does
/// that).
pub(crate) fn rename(from: &Path, to: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        std::fs::rename(from, to)
    }
    #[cfg(windows)]
    {
        windows::rename_write_through(from, to)
    }
}

/// This machine's name, for messages and lease records (empty when unknown).
pub(crate) fn hostname() -> String {
    #[cfg(unix)]
    {
        let mut buf = [0u8; 256];
        // SAFETY: gethostname writes at most `buf.len()` bytes into a buffer we own.
        let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
        if rc == 0 {
            let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
            return String::from_utf8_lossy(&buf[..end]).into_owned();
        }
        String::new()
    }
    #[cfg(windows)]
    {
        std::env::var("COMPUTERNAME").unwrap_or_default()
    }
}

/// Ends the process at once, as a power cut or `kill -9` would: no destructor, no buffered
/// write, no final sync (the crash tests' fault points).
pub(crate) fn kill_self() -> ! {
    #[cfg(unix)]
    {
        // SAFETY: kill(2) on our own pid with a signal that cannot be caught.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
    #[cfg(windows)]
    {
        // SAFETY: TerminateProcess on the pseudo-handle of this process.
        unsafe {
            use windows_sys::Win32::System::Threading::{GetCurrentProcess, TerminateProcess};
            TerminateProcess(GetCurrentProcess(), 137);
        }
    }
    // Never go on regardless.
    std::process::abort()
}

#[cfg(windows)]
mod windows {
    use std::io;
    use std::os::windows::ffi::OsStrExt;
    use std::os::windows::fs::OpenOptionsExt;
    use std::os::windows::io::AsRawHandle;
    use std::path::Path;

    use windows_sys::Win32::Storage::FileSystem::{
        BY_HANDLE_FILE_INFORMATION, FILE_FLAG_BACKUP_SEMANTICS, FILE_SHARE_DELETE, FILE_SHARE_READ,
        FILE_SHARE_WRITE, GetFileInformationByHandle, MOVEFILE_REPLACE_EXISTING,
        MOVEFILE_WRITE_THROUGH, MoveFileExW,
    };

    use super::FileId;

    pub(super) fn file_id(path: &Path) -> io::Result<FileId> {
        // No access rights beyond attributes, every sharing mode: never in anyone's way
        // (SQLite opens without FILE_SHARE_DELETE, but that only limits deleting).
        let f = std::fs::OpenOptions::new()
            .access_mode(0)
            .share_mode(FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE)
            .custom_flags(FILE_FLAG_BACKUP_SEMANTICS)
            .open(path)?;
        // SAFETY: a zeroed plain-data struct filled by the call on a handle we own.
        let mut info: BY_HANDLE_FILE_INFORMATION = unsafe { std::mem::zeroed() };
        let ok = unsafe { GetFileInformationByHandle(f.as_raw_handle() as _, &mut info) };
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(FileId {
            dev: u64::from(info.dwVolumeSerialNumber),
            ino: (u64::from(info.nFileIndexHigh) << 32) | u64::from(info.nFileIndexLow),
        })
    }

    fn wide(p: &Path) -> Vec<u16> {
        p.as_os_str().encode_wide().chain(Some(0)).collect()
    }

    /// Replacing a file that another handle has open, or that another rename is replacing
    /// at the same moment, fails with "access denied" or a sharing violation for as long as
    /// that lasts: retried for up to ~2 s (two overlapping writes of one object both
    /// succeed, as on Unix).
    pub(super) fn rename_write_through(from: &Path, to: &Path) -> io::Result<()> {
        let (f, t) = (wide(from), wide(to));
        let mut wait = std::time::Duration::from_millis(1);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        loop {
            // SAFETY: two NUL-terminated wide strings that outlive the call.
            let ok = unsafe {
                MoveFileExW(
                    f.as_ptr(),
                    t.as_ptr(),
                    MOVEFILE_REPLACE_EXISTING | MOVEFILE_WRITE_THROUGH,
                )
            };
            if ok != 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            // ERROR_ACCESS_DENIED (5), ERROR_SHARING_VIOLATION (32).
            let busy = matches!(e.raw_os_error(), Some(5 | 32));
            if !busy || std::time::Instant::now() >= deadline {
                return Err(e);
            }
            std::thread::sleep(wait);
            wait = (wait * 2).min(std::time::Duration::from_millis(50));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positioned_reads_and_writes_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&p)
            .unwrap();
        write_all_at(&f, b"world", 6).unwrap();
        write_all_at(&f, b"hello ", 0).unwrap();
        let mut buf = [0u8; 11];
        read_exact_at(&f, &mut buf, 0).unwrap();
        assert_eq!(&buf, b"hello world");
        let mut tail = [0u8; 8];
        assert_eq!(read_at(&f, &mut tail, 6).unwrap(), 5);
        let e = read_exact_at(&f, &mut tail, 6).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn identity_follows_the_file_not_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, b"1").unwrap();
        std::fs::write(&b, b"2").unwrap();
        let id = |p: &Path| file_id(p, &std::fs::metadata(p).unwrap()).unwrap();
        let (ia, ib) = (id(&a), id(&b));
        assert_ne!(ia, ib);
        assert_eq!(ia, id(&a), "same file, same identity");
        // Replace `a` by `b`: the path now names b's file.
        rename(&b, &a).unwrap();
        sync_dir(dir.path()).unwrap();
        assert_eq!(id(&a), ib);
        assert_eq!(std::fs::read(&a).unwrap(), b"2");
        assert!(!b.exists());
    }

    #[test]
    fn hostname_is_known() {
        assert!(!hostname().is_empty());
    }
}
