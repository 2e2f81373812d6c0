//! Reading the database file and its `-shm` through SQLite's own file handle.
//!
//! POSIX drops every lock a process holds on a file when *any* descriptor of that file in
//! the process is closed. SQLite knows this and never closes a descriptor of a file on
//! which another connection of the process holds locks (it defers the close); a plain
//! `std::fs::File` does not. Inside an application (the embedding API, a loadable
//! extension), a descriptor walship opened on the database or `-shm` and later closed would
//! drop the application's own locks, and another process could then checkpoint past its
//! readers or reset the WAL under them (sqlite.org, "How To Corrupt An SQLite Database
//! File", section 2.2). So walship opens no descriptor of its own on those two files: it
//! reads and syncs the database through the VFS methods of one of its connections
//! (`SQLITE_FCNTL_FILE_POINTER`), and reads the `-shm` header through the same connection's
//! mapping of it (`xShmMap`). Both work the same with every VFS (unix, Windows) and go
//! through whichever SQLite library the process uses.
use std::os::raw::{c_int, c_void};
use std::path::Path;

use rusqlite::{Connection, ffi};

use crate::error::{Error, Result};

/// Bytes of the `-shm` header walship compares to notice a commit (two copies of the
/// 48-byte WAL-index header, then the 40-byte checkpoint info).
pub const SHM_HEADER_SIZE: usize = 136;

/// The main database file of one connection, as SQLite has it open.
pub struct MainFile<'c> {
    file: *mut ffi::sqlite3_file,
    path: &'c Path,
    _conn: &'c Connection,
}

impl<'c> MainFile<'c> {
    /// The main database file of `conn` (which is open on `path`; the path only names the
    /// file in errors).
    pub fn of(conn: &'c Connection, path: &'c Path) -> Result<MainFile<'c>> {
        let mut file: *mut ffi::sqlite3_file = std::ptr::null_mut();
        // SAFETY: `conn.handle()` is a valid open handle for the lifetime of `conn`; the
        // schema name is a NUL-terminated literal, and SQLITE_FCNTL_FILE_POINTER writes a
        // `*` through the pointer it is given, which lives across the call.
        let rc = unsafe {
            ffi::sqlite3_file_control(
                conn.handle(),
                c"main".as_ptr(),
                ffi::SQLITE_FCNTL_FILE_POINTER,
                (&mut file as *mut *mut ffi::sqlite3_file).cast(),
            )
        };
        if rc != ffi::SQLITE_OK || file.is_null() {
            return Err(Error::sqlite(format!(
                "get the file handle of {}",
                path.display()
            ))(rusqlite::Error::SqliteFailure(
                ffi::Error::new(rc),
                None,
            )));
        }
        // SAFETY: a non-null file pointer from SQLite stays valid until the connection closes,
        // which `'c` outlives; its methods are set while the file is open.
        if unsafe { (*file).pMethods }.is_null() {
            return Err(Error::Internal(format!(
                "{} has no open file behind its connection",
                path.display()
            )));
        }
        Ok(MainFile {
            file,
            path,
            _conn: conn,
        })
    }

    fn methods(&self) -> &ffi::sqlite3_io_methods {
        // SAFETY: checked non-null in `of`; SQLite never changes the methods of an open file.
        unsafe { &*(*self.file).pMethods }
    }

    fn fail(&self, what: &str, rc: c_int) -> Error {
        Error::sqlite(format!("{what} {}", self.path.display()))(rusqlite::Error::SqliteFailure(
            ffi::Error::new(rc),
            None,
        ))
    }

    /// The file's size in bytes.
    pub fn size(&self) -> Result<u64> {
        let f = self
            .methods()
            .xFileSize
            .ok_or_else(|| self.fail("size of", ffi::SQLITE_MISUSE))?;
        let mut size: ffi::sqlite3_int64 = 0;
        // SAFETY: a valid open file and a pointer to a live integer.
        let rc = unsafe { f(self.file, &mut size) };
        if rc != ffi::SQLITE_OK {
            return Err(self.fail("stat", rc));
        }
        Ok(size.max(0) as u64)
    }

    /// Reads into `buf` from offset `at`, up to the end of the file; returns the number of
    /// bytes read (less than `buf.len()` only at the end of the file).
    pub fn read_at(&self, buf: &mut [u8], at: u64) -> Result<usize> {
        let len = self.size()?;
        let n = (len.saturating_sub(at)).min(buf.len() as u64) as usize;
        let read = self
            .methods()
            .xRead
            .ok_or_else(|| self.fail("read", ffi::SQLITE_MISUSE))?;
        let mut done = 0usize;
        while done < n {
            // xRead takes an int: at most 1 GiB a call.
            let amt = (n - done).min(1 << 30);
            // SAFETY: a valid open file; `buf[done..done + amt]` is writable and in bounds.
            let rc = unsafe {
                read(
                    self.file,
                    buf[done..].as_mut_ptr().cast::<c_void>(),
                    amt as c_int,
                    (at + done as u64) as ffi::sqlite3_int64,
                )
            };
            if rc != ffi::SQLITE_OK {
                // SQLITE_IOERR_SHORT_READ: the file shrank since `len` (walship's read
                // transaction should keep that from happening): say so rather than guess.
                return Err(self.fail("read", rc));
            }
            done += amt;
        }
        Ok(n)
    }

    /// Flushes the file to stable storage as SQLite does (`fsync`; `F_FULLFSYNC` where the
    /// connection asks for it on macOS; `FlushFileBuffers` on Windows).
    pub fn sync(&self) -> Result<()> {
        let f = self
            .methods()
            .xSync
            .ok_or_else(|| self.fail("fsync", ffi::SQLITE_MISUSE))?;
        // SAFETY: a valid open file.
        let rc = unsafe { f(self.file, ffi::SQLITE_SYNC_FULL) };
        if rc != ffi::SQLITE_OK {
            return Err(self.fail("fsync", rc));
        }
        Ok(())
    }

    /// The first [`SHM_HEADER_SIZE`] bytes of the `-shm` (the WAL index) as this
    /// connection maps it, or `None` when it has not mapped it (not in WAL mode yet).
    pub fn shm_header(&self) -> Option<[u8; SHM_HEADER_SIZE]> {
        let map = self.methods().xShmMap?;
        if self.methods().iVersion < 2 {
            return None;
        }
        let mut p: *mut c_void = std::ptr::null_mut();
        // SAFETY: a valid open file; region 0 of SQLite's 32 KiB WAL-index regions, never
        // extended (bExtend = 0), so this only returns a mapping that exists already.
        let rc = unsafe {
            map(
                self.file,
                0,
                32 * 1024,
                0,
                (&mut p as *mut *mut c_void).cast(),
            )
        };
        if rc != ffi::SQLITE_OK || p.is_null() {
            return None;
        }
        let mut out = [0u8; SHM_HEADER_SIZE];
        std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
        // SAFETY: region 0 is at least 32 KiB long and stays mapped while the connection is
        // open. Other processes write it concurrently: a torn copy only makes the change
        // check see a change (a spurious sync), never miss one, since the header is
        // compared whole against the last one seen. Volatile reads because the memory is
        // shared with other processes.
        for (i, b) in out.iter_mut().enumerate() {
            *b = unsafe { std::ptr::read_volatile(p.cast::<u8>().add(i)) };
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_database_and_sees_commits_in_the_shm_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let app = Connection::open(&path).unwrap();
        app.execute_batch(
            "PRAGMA journal_mode=WAL; CREATE TABLE t(v); INSERT INTO t VALUES (randomblob(9000));
             PRAGMA wal_checkpoint(TRUNCATE);",
        )
        .unwrap();
        let ours = Connection::open(&path).unwrap();
        ours.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0))
            .unwrap();
        let f = MainFile::of(&ours, &path).unwrap();

        let disk = std::fs::read(&path).unwrap();
        assert_eq!(f.size().unwrap(), disk.len() as u64);
        let mut buf = vec![0u8; disk.len() + 100];
        assert_eq!(f.read_at(&mut buf, 0).unwrap(), disk.len());
        assert_eq!(&buf[..disk.len()], &disk[..]);
        // From the middle, past the end, and a short tail.
        assert_eq!(f.read_at(&mut buf[..10], 4096).unwrap(), 10);
        assert_eq!(&buf[..10], &disk[4096..4106]);
        assert_eq!(f.read_at(&mut buf, disk.len() as u64 + 5).unwrap(), 0);
        assert_eq!(f.read_at(&mut buf, disk.len() as u64 - 3).unwrap(), 3);
        f.sync().unwrap();

        let before = f
            .shm_header()
            .expect("the connection maps the -shm in WAL mode");
        app.execute("INSERT INTO t VALUES (1)", []).unwrap();
        let after = f.shm_header().unwrap();
        assert_ne!(before, after, "a commit changes the WAL-index header");
        assert_eq!(after, f.shm_header().unwrap(), "no commit, no change");
    }
}
