//! The engine's own connections to the application's database.
//!
//! Three connections: `read` holds a long-lived read transaction between syncs so that no
//! other connection can checkpoint past what walship has copied or restart the WAL under
//! it; `ckpt` runs checkpoints; `lock` takes the write lock (`BEGIN IMMEDIATE`) when walship
//! must see the WAL hold still, and makes the small `_litestream_seq` writes that create a
//! WAL or make SQLite restart one. Checkpoints need their own connection because SQLite
//! refuses to checkpoint on a connection inside a transaction, and a PASSIVE checkpoint can
//! run while `lock` holds the write lock.
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::file::MainFile;
use crate::error::{Error, Result};

/// How long the engine's connections wait for a lock before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(1);

/// A checkpoint mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointMode {
    Passive,
    Restart,
    Truncate,
}

impl CheckpointMode {
    /// The SQL keyword, also used as the metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckpointMode::Passive => "PASSIVE",
            CheckpointMode::Restart => "RESTART",
            CheckpointMode::Truncate => "TRUNCATE",
        }
    }
}

/// What `PRAGMA wal_checkpoint` answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointResult {
    /// True when the checkpoint could not complete (a reader or writer was in the way).
    pub busy: bool,
    /// Frames in the WAL.
    pub log_frames: i64,
    /// Frames copied back into the database.
    pub checkpointed_frames: i64,
}

/// The engine's connections to one database.
pub struct DbConn {
    path: PathBuf,
    read: Connection,
    /// A second reader, opened at the first [`DbConn::move_read_mark`]: the read transaction
    /// moves from one to the other so that walship always holds a read mark (see there).
    read_alt: std::cell::OnceCell<Connection>,
    /// Which reader holds the read transaction: false `read`, true `read_alt`.
    alt_active: std::cell::Cell<bool>,
    ckpt: Connection,
    write: Connection,
    in_read_tx: std::cell::Cell<bool>,
    /// Changes every time a read transaction begins (unique across connections).
    read_epoch: std::cell::Cell<u64>,
    /// Page size of the database, from `PRAGMA page_size`.
    pub page_size: u32,
}

/// The error for a file SQLite will not read: say what it means and what to do.
fn open_error(path: &Path) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |e| match e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::NotADatabase => {
            Error::Config(format!(
                "{} is not a SQLite database (or is encrypted, e.g. with SQLCipher): walship can only replicate plain SQLite files; check the path in the configuration",
                path.display()
            ))
        }
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::DatabaseBusy
                || f.code == rusqlite::ErrorCode::DatabaseLocked =>
        {
            Error::Busy(format!(
                "{} is locked by another connection (an application using locking_mode=EXCLUSIVE, or a long write?): walship will keep trying; it needs shared access to the database and its -wal and -shm files",
                path.display()
            ))
        }
        e => Error::sqlite(format!("open {}", path.display()))(e),
    }
}

fn open_one(path: &Path) -> Result<Connection> {
    let ctx = || format!("open {}", path.display());
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )
    .map_err(Error::sqlite(ctx()))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(Error::sqlite(ctx()))?;
    set_persist_wal(&conn).map_err(Error::sqlite(ctx()))?;
    // walship reads almost nothing through SQLite (it copies WAL bytes itself): a tiny page
    // cache and no lookaside keep each database's three connections cheap when there are
    // thousands of databases.
    disable_lookaside(&conn);
    conn.execute_batch("PRAGMA cache_size = 16")
        .map_err(open_error(path))?;
    Ok(conn)
}

/// One of the engine's reading connections (the read transaction's, the checkpointer's):
/// auto-checkpoints off, so that only walship decides when to checkpoint.
fn open_reader(path: &Path) -> Result<Connection> {
    let conn = open_one(path)?;
    conn.execute_batch("PRAGMA wal_autocheckpoint = 0;")
        .map_err(Error::sqlite(format!(
            "disable auto-checkpoint on {}",
            path.display()
        )))?;
    Ok(conn)
}

/// Turns off the connection's lookaside allocator (about 120 KB per connection by default).
/// Not in the loadable extension: the API table's `sqlite3_db_config` is not variadic there
/// and cannot pass the (void*, int, int) this option takes; the host's default stays.
#[cfg(feature = "extension")]
fn disable_lookaside(_conn: &Connection) {}

/// Turns off the connection's lookaside allocator (about 120 KB per connection by default).
#[cfg(not(feature = "extension"))]
fn disable_lookaside(conn: &Connection) {
    // SAFETY: a valid open handle; SQLITE_DBCONFIG_LOOKASIDE takes (void*, int, int), and a
    // null buffer with zero sizes disables lookaside. Right after open no lookaside memory
    // is in use, so the call cannot fail with SQLITE_BUSY; if it fails anyway, the default
    // stays, which is harmless.
    unsafe {
        rusqlite::ffi::sqlite3_db_config(
            conn.handle(),
            rusqlite::ffi::SQLITE_DBCONFIG_LOOKASIDE,
            std::ptr::null_mut::<std::os::raw::c_void>(),
            0 as std::os::raw::c_int,
            0 as std::os::raw::c_int,
        );
    }
}

/// Sets SQLITE_FCNTL_PERSIST_WAL so that closing the engine's connection never deletes the
/// `-wal` file: the WAL header then survives a restart of walship and the generation goes on.
fn set_persist_wal(conn: &Connection) -> rusqlite::Result<()> {
    let mut on: std::os::raw::c_int = 1;
    // SAFETY: `conn.handle()` is a valid open sqlite3 handle for the lifetime of `conn`;
    // the schema name is a NUL-terminated literal, and SQLITE_FCNTL_PERSIST_WAL takes a
    // pointer to an int that lives across the call.
    let rc = unsafe {
        rusqlite::ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            rusqlite::ffi::SQLITE_FCNTL_PERSIST_WAL,
            (&mut on as *mut std::os::raw::c_int).cast(),
        )
    };
    if rc != rusqlite::ffi::SQLITE_OK {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rc),
            None,
        ));
    }
    Ok(())
}

impl DbConn {
    /// Opens the database, puts it in WAL mode, turns off auto-checkpoints on the engine's
    /// connections, creates Litestream's helper tables, and starts the read transaction.
    /// The writing connection only ever writes `_litestream_seq` (to make SQLite restart the
    /// WAL): `synchronous = NORMAL` there, so that write does not fsync the WAL while walship
    /// holds the write lock (the application's writer waits meanwhile). Nothing depends on
    /// that row being durable; the checkpoint connection keeps SQLite's default syncs.
    pub fn open(path: &Path) -> Result<DbConn> {
        let write = open_one(path)?;
        let ctx = |what: &str| format!("{what} on {}", path.display());
        let mode: String = write
            .query_row("PRAGMA journal_mode = wal", [], |r| r.get(0))
            .map_err(open_error(path))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::Config(format!(
                "{}: could not switch to WAL mode (journal_mode is {mode:?}); walship needs journal_mode=wal",
                path.display()
            )));
        }
        write
            .execute_batch(
                "PRAGMA wal_autocheckpoint = 0;
                 PRAGMA synchronous = NORMAL;
                 CREATE TABLE IF NOT EXISTS _litestream_seq (id INTEGER PRIMARY KEY, seq INTEGER);
                 CREATE TABLE IF NOT EXISTS _litestream_lock (id INTEGER);",
            )
            .map_err(Error::sqlite(ctx(
                "create _litestream_seq/_litestream_lock",
            )))?;
        let page_size: u32 = write
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .map_err(Error::sqlite(ctx("read page_size")))?;
        let read = open_reader(path)?;
        let ckpt = open_reader(path)?;
        let c = DbConn {
            path: path.to_path_buf(),
            read,
            read_alt: std::cell::OnceCell::new(),
            alt_active: std::cell::Cell::new(false),
            ckpt,
            write,
            in_read_tx: std::cell::Cell::new(false),
            read_epoch: std::cell::Cell::new(0),
            page_size,
        };
        c.begin_read()?;
        Ok(c)
    }

    /// The database file as SQLite has it open, for reads, its size, fsync and the `-shm`
    /// header. walship never opens a descriptor of its own on the database or its `-shm`:
    /// closing one would drop every POSIX lock the process holds on the file, an
    /// embedding application's included (see [`super::file`]).
    pub fn main_file(&self) -> Result<MainFile<'_>> {
        MainFile::of(&self.read, &self.path)
    }

    /// Starts the long-lived read transaction (no-op if open).
    pub fn begin_read(&self) -> Result<()> {
        if self.in_read_tx.get() {
            return Ok(());
        }
        self.begin_read_on(self.reader())?;
        self.in_read_tx.set(true);
        Ok(())
    }

    /// The connection that holds (or will hold) the read transaction.
    fn reader(&self) -> &Connection {
        match (self.alt_active.get(), self.read_alt.get()) {
            (true, Some(c)) => c,
            _ => &self.read,
        }
    }

    fn begin_read_on(&self, c: &Connection) -> Result<()> {
        let p = self.path.display().to_string();
        c.execute_batch("BEGIN")
            .map_err(Error::sqlite(format!("begin read transaction on {p}")))?;
        // The transaction takes its read lock at the first read.
        let r = c.query_row("SELECT COUNT(1) FROM _litestream_seq", [], |r| {
            r.get::<_, i64>(0)
        });
        if let Err(e) = r {
            let _ = c.execute_batch("ROLLBACK");
            return Err(Error::sqlite(format!("read lock on {p}"))(e));
        }
        static EPOCH: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        self.read_epoch
            .set(EPOCH.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        Ok(())
    }

    /// Identifies the current read transaction: it changes whenever one begins.
    pub fn read_epoch(&self) -> u64 {
        self.read_epoch.get()
    }

    /// Moves walship's read mark up to the end of the WAL without ever letting go of one:
    /// a read transaction begins on the other reader connection, then the old one ends.
    ///
    /// Why: SQLite's checkpoints (the application's auto-checkpoints included) copy frames
    /// into the database only up to the oldest reader's mark, and a writer looks pages up
    /// in every WAL frame after the last checkpointed one. A mark left far behind by a
    /// busy writer makes each of its commits slower (a writer with a reader pinned at the
    /// start of a 500 MB WAL ran 15 times slower here).
    ///
    /// Why two connections: a read transaction that begins while every frame is already
    /// checkpointed takes read mark 0, which does not stop a writer from restarting the
    /// WAL, so two restarts could slip by unseen. The caller moves the mark only when a
    /// committed frame exists after the current mark (it was copied after that mark was
    /// taken), so the WAL has an uncheckpointed frame while both transactions are open,
    /// and the new one takes a mark above 0.
    pub fn move_read_mark(&self) -> Result<()> {
        if !self.in_read_tx.get() {
            return self.begin_read();
        }
        let to_alt = !self.alt_active.get();
        let next = if to_alt {
            match self.read_alt.get() {
                Some(c) => c,
                None => {
                    let _ = self.read_alt.set(open_reader(&self.path)?);
                    self.read_alt.get().expect("just set")
                }
            }
        } else {
            &self.read
        };
        self.begin_read_on(next)?;
        let old = self.reader();
        let r = old.execute_batch("ROLLBACK");
        self.alt_active.set(to_alt);
        r.map_err(Error::sqlite(format!(
            "end read transaction on {}",
            self.path.display()
        )))
    }

    /// Ends the long-lived read transaction (no-op if not open).
    pub fn end_read(&self) -> Result<()> {
        if !self.in_read_tx.get() {
            return Ok(());
        }
        self.in_read_tx.set(false);
        self.reader()
            .execute_batch("ROLLBACK")
            .map_err(Error::sqlite(format!(
                "end read transaction on {}",
                self.path.display()
            )))
    }

    /// Writes one row to `_litestream_seq`. SQLite starts a new WAL (new salt) on this write
    /// if the previous one was fully checkpointed, and creates the `-wal` file if missing.
    pub fn bump_seq(&self) -> Result<()> {
        self.write
            .execute(
                "INSERT INTO _litestream_seq (id, seq) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET seq = seq + 1",
                [],
            )
            .map(|_| ())
            .map_err(Error::sqlite(format!("write _litestream_seq on {}", self.path.display())))
    }

    /// Runs `PRAGMA wal_checkpoint(mode)` on the checkpoint connection. The caller must have
    /// ended the read transaction if the checkpoint is to pass it. A busy answer is not an
    /// error. RESTART and TRUNCATE do not wait for readers (busy timeout 0), so a long-lived
    /// application reader cannot make walship stall the application's writers.
    pub fn checkpoint(&self, mode: CheckpointMode) -> Result<CheckpointResult> {
        let wait = mode == CheckpointMode::Passive;
        if !wait {
            self.ckpt
                .busy_timeout(Duration::ZERO)
                .map_err(Error::sqlite("busy_timeout"))?;
        }
        let r = self.ckpt.query_row(
            &format!("PRAGMA wal_checkpoint({})", mode.as_str()),
            [],
            |r| {
                Ok(CheckpointResult {
                    busy: r.get::<_, i64>(0)? != 0,
                    log_frames: r.get(1)?,
                    checkpointed_frames: r.get(2)?,
                })
            },
        );
        if !wait {
            self.ckpt
                .busy_timeout(BUSY_TIMEOUT)
                .map_err(Error::sqlite("busy_timeout"))?;
        }
        r.map_err(Error::sqlite(format!(
            "checkpoint {} on {}",
            mode.as_str(),
            self.path.display()
        )))
    }

    /// Takes the database write lock (`BEGIN IMMEDIATE`), runs `f`, and rolls back. While `f`
    /// runs no other connection can append to the WAL.
    pub fn with_write_lock<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        self.lock()?;
        let r = f();
        let rb = self.unlock();
        let v = r?;
        rb?;
        Ok(v)
    }

    /// Takes the write lock if it can be had within `wait`: `Ok(false)` when another
    /// connection keeps it (an application in the middle of a stream of writes).
    pub fn try_lock(&self, wait: Duration) -> Result<bool> {
        self.write
            .busy_timeout(wait)
            .map_err(Error::sqlite("busy_timeout"))?;
        let r = self.lock();
        self.write
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(Error::sqlite("busy_timeout"))?;
        match r {
            Ok(()) => Ok(true),
            Err(e) if e.is_busy() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Takes the write lock (`BEGIN IMMEDIATE` on the lock connection).
    pub fn lock(&self) -> Result<()> {
        self.write
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(Error::sqlite(format!(
                "take write lock on {}",
                self.path.display()
            )))
    }

    /// Commits the transaction begun by [`DbConn::lock`] (after [`DbConn::bump_seq`]).
    pub fn commit(&self) -> Result<()> {
        self.write
            .execute_batch("COMMIT")
            .map_err(Error::sqlite(format!("commit on {}", self.path.display())))
    }

    /// Releases the write lock taken by [`DbConn::lock`] (nothing was written).
    pub fn unlock(&self) -> Result<()> {
        self.write
            .execute_batch("ROLLBACK")
            .map_err(Error::sqlite(format!(
                "release write lock on {}",
                self.path.display()
            )))
    }
}

impl Drop for DbConn {
    fn drop(&mut self) {
        let _ = self.end_read();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wal_salt(path: &Path) -> Vec<u8> {
        let mut p = path.as_os_str().to_owned();
        p.push("-wal");
        std::fs::read(p).unwrap()[12..20].to_vec()
    }

    /// A database another connection holds exclusively is busy at open, as it is busy
    /// everywhere else: the monitor treats it as a lock to wait out, not a failure.
    #[test]
    fn a_database_locked_at_open_is_busy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.db");
        let app = Connection::open(&path).unwrap();
        app.execute_batch(
            "PRAGMA journal_mode=wal; CREATE TABLE t(x); PRAGMA locking_mode=EXCLUSIVE; \
             BEGIN IMMEDIATE; COMMIT;",
        )
        .unwrap();
        let Err(err) = DbConn::open(&path) else {
            panic!("opened a database another connection holds exclusively")
        };
        assert!(err.is_busy(), "{err:?}");
        assert!(
            err.to_string().contains("is locked by another connection"),
            "{err}"
        );
    }

    #[test]
    fn checkpoint_then_seq_write_restarts_the_wal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.db");
        let app = Connection::open(&path).unwrap();
        app.execute_batch("PRAGMA journal_mode=wal; CREATE TABLE t(x);")
            .unwrap();
        let c = DbConn::open(&path).unwrap();
        for _ in 0..20 {
            app.execute("INSERT INTO t VALUES (randomblob(3000))", [])
                .unwrap();
        }
        let before = wal_salt(&path);
        // The engine's sequence: write lock, end read, PASSIVE under the lock, unlock, seq
        // write (restarts the WAL), read lock again.
        c.lock().unwrap();
        c.end_read().unwrap();
        let r = c.checkpoint(CheckpointMode::Passive).unwrap();
        assert!(!r.busy && r.log_frames == r.checkpointed_frames, "{r:?}");
        c.unlock().unwrap();
        c.bump_seq().unwrap();
        c.begin_read().unwrap();
        assert_ne!(wal_salt(&path), before, "the WAL should have restarted");
    }

    /// `move_read_mark` lets checkpoints reach the end of the WAL, yet walship never stops
    /// holding a read mark: a fully checkpointed WAL still cannot restart under it.
    #[test]
    fn moving_the_read_mark_frees_checkpoints_but_still_pins_the_wal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.db");
        let app = Connection::open(&path).unwrap();
        app.execute_batch(
            "PRAGMA journal_mode=wal; PRAGMA wal_autocheckpoint=0; CREATE TABLE t(x);",
        )
        .unwrap();
        let insert = |n: usize| {
            for _ in 0..n {
                app.execute("INSERT INTO t VALUES (randomblob(3000))", [])
                    .unwrap();
            }
        };
        let app_checkpoint = || -> (i64, i64) {
            app.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((r.get(1)?, r.get(2)?))
            })
            .unwrap()
        };
        insert(5);
        let c = DbConn::open(&path).unwrap();
        insert(20);
        let (log, done) = app_checkpoint();
        assert!(
            done < log,
            "the mark taken at open holds checkpoints back: {done}/{log}"
        );
        for round in 0..3 {
            let epoch = c.read_epoch();
            c.move_read_mark().unwrap();
            assert_ne!(c.read_epoch(), epoch);
            let (log, done) = app_checkpoint();
            assert_eq!(
                done, log,
                "round {round}: checkpoint stopped short of the new mark"
            );
            // Everything is checkpointed; the application's next write would restart the WAL
            // if walship held no mark (or read mark 0).
            let salt = wal_salt(&path);
            insert(3);
            assert_eq!(
                wal_salt(&path),
                salt,
                "round {round}: the WAL restarted under walship"
            );
        }
        // Without walship's transaction the same write does restart it.
        c.end_read().unwrap();
        app_checkpoint();
        let salt = wal_salt(&path);
        insert(1);
        assert_ne!(
            wal_salt(&path),
            salt,
            "the WAL should restart once walship lets go"
        );
    }
}
