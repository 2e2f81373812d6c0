//! The follower's copy: a WAL-mode SQLite database that walship changes only through
//! SQLite's `sqlite_dbpage` virtual table, one write transaction per update.
//!
//! SQLite stays in charge of locking and atomicity: readers of the copy (any SQLite
//! program) see either the state before an update or the state after it, never a mix, and
//! a follower killed mid-update leaves an uncommitted transaction SQLite discards. The
//! content hash ([`Copy::hash`]) is the sum of one 64-bit hash per page, kept up to date
//! as pages change (the old version of each changed page is read before it is replaced),
//! so an update knows the hash it will commit before it commits, and a restart can tell
//! whether the copy is still exactly what walship last wrote.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use crate::error::{Error, Result};

/// Hash of one page at `pgno`. On page 1 the file change counter (bytes 24..28) and the
/// version-valid-for number (92..96) are left out: SQLite rewrites both whenever it writes
/// page 1 to the WAL, so the copy's differ from the primary's and from what walship wrote.
pub(crate) fn page_hash(pgno: u32, data: &[u8]) -> u64 {
    if pgno == 1 && data.len() >= 100 {
        let mut p = data.to_vec();
        p[24..28].fill(0);
        p[92..96].fill(0);
        return twox_hash::XxHash3_64::oneshot_with_seed(1, &p);
    }
    twox_hash::XxHash3_64::oneshot_with_seed(u64::from(pgno), data)
}

/// An open follower copy.
pub(crate) struct Copy {
    path: PathBuf,
    conn: Connection,
    page_size: u32,
    pages: u32,
    hash: u64,
    data_version: i64,
    /// Set once a foreign write was seen: the copy is never written again.
    foreign: bool,
}

impl std::fmt::Debug for Copy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Copy")
            .field("path", &self.path)
            .field("pages", &self.pages)
            .field("hash", &format_args!("{:016x}", self.hash))
            .finish()
    }
}

fn sql(path: &Path, what: &str) -> impl FnOnce(rusqlite::Error) -> Error {
    Error::sqlite(format!("follower copy {}: {what}", path.display()))
}

impl Copy {
    /// Opens the copy at `path` (which must exist), puts it in WAL mode, and reads every
    /// page once to learn its size and content hash.
    pub(crate) fn open(path: &Path) -> Result<Copy> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sql(path, "open"))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(sql(path, "busy_timeout"))?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(sql(path, "journal_mode=WAL"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::Config(format!(
                "follower copy {}: cannot switch it to WAL mode (journal_mode is {mode})",
                path.display()
            )));
        }
        if let Err(e) = conn.prepare("SELECT pgno FROM sqlite_dbpage LIMIT 0") {
            return Err(Error::Config(format!(
                "this walship was built without SQLite's sqlite_dbpage table ({e}), which follow \
                 mode writes the copy through: build it from the repository (its \
                 .cargo/config.toml sets LIBSQLITE3_FLAGS=SQLITE_ENABLE_DBPAGE_VTAB) or with \
                 that variable set"
            )));
        }
        let page_size: u32 = conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .map_err(sql(path, "page_size"))?;
        let mut c = Copy {
            path: path.to_path_buf(),
            conn,
            page_size,
            pages: 0,
            hash: 0,
            data_version: 0,
            foreign: false,
        };
        c.rescan()?;
        Ok(c)
    }

    /// Reads every page (in one read transaction) to set the page count and hash.
    fn rescan(&mut self) -> Result<()> {
        let path = self.path.clone();
        let tx = self
            .conn
            .unchecked_transaction()
            .map_err(sql(&path, "begin"))?;
        let (mut pages, mut hash) = (0u32, 0u64);
        {
            let mut st = tx
                .prepare("SELECT pgno, data FROM sqlite_dbpage ORDER BY pgno")
                .map_err(sql(&path, "read pages"))?;
            let mut rows = st.query([]).map_err(sql(&path, "read pages"))?;
            while let Some(r) = rows.next().map_err(sql(&path, "read pages"))? {
                let pgno: u32 = r.get(0).map_err(sql(&path, "read pages"))?;
                let data = r.get_ref(1).map_err(sql(&path, "read pages"))?;
                let data = data.as_blob().unwrap_or_default();
                hash = hash.wrapping_add(page_hash(pgno, data));
                pages = pgno;
            }
        }
        tx.commit().map_err(sql(&path, "end read"))?;
        self.pages = pages;
        self.hash = hash;
        self.data_version = self.data_version()?;
        Ok(())
    }

    fn data_version(&self) -> Result<i64> {
        self.conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))
            .map_err(sql(&self.path, "data_version"))
    }

    /// The copy's page size.
    pub(crate) fn page_size(&self) -> u32 {
        self.page_size
    }

    /// Pages in the copy.
    pub(crate) fn pages(&self) -> u32 {
        self.pages
    }

    /// Content hash: the wrapping sum of [`page_hash`] over every page.
    pub(crate) fn hash(&self) -> u64 {
        self.hash
    }

    /// The path of the copy.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Fails when another connection changed the copy since walship last wrote it. SQLite's
    /// `data_version` moves on any commit by another connection but also when another
    /// connection checkpoints and restarts the WAL, so a move only triggers a full read:
    /// the copy must still have the content hash walship left.
    pub(crate) fn check_untouched(&mut self) -> Result<()> {
        if self.foreign {
            return Err(foreign_write(&self.path));
        }
        if self.data_version()? == self.data_version {
            return Ok(());
        }
        let (pages, hash) = (self.pages, self.hash);
        tracing::debug!(copy = %self.path.display(), "follow: the copy's data_version moved; reading it whole to compare");
        self.rescan()?;
        if (self.pages, self.hash) != (pages, hash) {
            self.foreign = true;
            return Err(foreign_write(&self.path));
        }
        Ok(())
    }

    /// Writes `pages` (page number to content, each `page_size` bytes) and sets the
    /// database size to `db_pages`, in one write transaction. `before_commit` is given the
    /// content hash the copy will have and runs before the commit (the follower records its
    /// next position there); an error from it rolls back. Pages above `db_pages` in `pages`
    /// are ignored; pages above the current size up to `db_pages` must all be in `pages`.
    pub(crate) fn apply(
        &mut self,
        pages: &BTreeMap<u32, Vec<u8>>,
        db_pages: u32,
        before_commit: impl FnOnce(u64) -> Result<()>,
    ) -> Result<()> {
        self.check_untouched()?;
        let path = self.path.clone();
        if let Some(missing) = (self.pages + 1..=db_pages).find(|p| !pages.contains_key(p)) {
            return Err(Error::Corrupt {
                path: path.display().to_string(),
                reason: format!(
                    "update grows the database from {} to {db_pages} pages but does not write page {missing}",
                    self.pages
                ),
            });
        }
        let tx = self
            .conn
            .unchecked_transaction()
            .map_err(sql(&path, "begin"))?;
        tx.execute_batch("SELECT 1 FROM sqlite_dbpage WHERE pgno=1")
            .map_err(sql(&path, "begin"))?;
        let mut hash = self.hash;
        {
            let mut old = tx
                .prepare_cached("SELECT data FROM sqlite_dbpage WHERE pgno=?1")
                .map_err(sql(&path, "read page"))?;
            let mut put = tx
                .prepare_cached("INSERT INTO sqlite_dbpage(pgno, data) VALUES (?1, ?2)")
                .map_err(sql(&path, "write page"))?;
            let mut old_hash = |pgno: u32| -> Result<u64> {
                let data: Option<Vec<u8>> = old
                    .query_row(params![pgno], |r| r.get(0))
                    .optional()
                    .map_err(sql(&path, "read page"))?;
                Ok(data.map_or(0, |d| page_hash(pgno, &d)))
            };
            for (&pgno, data) in pages.range(..=db_pages) {
                if data.len() != self.page_size as usize {
                    return Err(Error::Corrupt {
                        path: path.display().to_string(),
                        reason: format!(
                            "page {pgno} holds {} bytes, the page size is {}",
                            data.len(),
                            self.page_size
                        ),
                    });
                }
                if pgno <= self.pages {
                    hash = hash.wrapping_sub(old_hash(pgno)?);
                }
                hash = hash.wrapping_add(page_hash(pgno, data));
            }
            for pgno in db_pages + 1..=self.pages {
                hash = hash.wrapping_sub(old_hash(pgno)?);
            }
            for (&pgno, data) in pages.range(..=db_pages) {
                put.execute(params![pgno, data])
                    .map_err(sql(&path, "write page"))?;
            }
            truncate(&mut put, &path, self.pages, db_pages)?;
        }
        commit(tx, &path, hash, before_commit)?;
        self.pages = db_pages;
        self.hash = hash;
        Ok(())
    }

    /// Makes the copy equal to the database file at `src` (same page size), writing only
    /// the pages that differ, in one write transaction; `before_commit` as in
    /// [`Copy::apply`]. Returns the number of pages written.
    pub(crate) fn replace_with(
        &mut self,
        src: &Path,
        before_commit: impl FnOnce(u64) -> Result<()>,
    ) -> Result<u64> {
        use std::io::Read;
        self.check_untouched()?;
        let path = self.path.clone();
        let mut f = std::io::BufReader::with_capacity(
            1 << 20,
            std::fs::File::open(src).map_err(Error::io("open", src))?,
        );
        let len = std::fs::metadata(src)
            .map_err(Error::io("stat", src))?
            .len();
        let ps = u64::from(self.page_size);
        if len % ps != 0 {
            return Err(Error::Config(format!(
                "{}: size {len} is not a whole number of {ps}-byte pages (the copy's page size)",
                src.display()
            )));
        }
        let new_pages = u32::try_from(len / ps)
            .map_err(|_| Error::Config(format!("{}: too many pages", src.display())))?;
        let tx = self
            .conn
            .unchecked_transaction()
            .map_err(sql(&path, "begin"))?;
        let mut hash = 0u64;
        let mut written = 0u64;
        {
            let mut old = tx
                .prepare_cached("SELECT data FROM sqlite_dbpage WHERE pgno=?1")
                .map_err(sql(&path, "read page"))?;
            let mut put = tx
                .prepare_cached("INSERT INTO sqlite_dbpage(pgno, data) VALUES (?1, ?2)")
                .map_err(sql(&path, "write page"))?;
            let mut buf = vec![0u8; ps as usize];
            for pgno in 1..=new_pages {
                f.read_exact(&mut buf).map_err(Error::io("read", src))?;
                hash = hash.wrapping_add(page_hash(pgno, &buf));
                if pgno <= self.pages {
                    let same = old
                        .query_row(params![pgno], |r| {
                            Ok(r.get_ref(0)?.as_blob().ok() == Some(&buf[..]))
                        })
                        .map_err(sql(&path, "read page"))?;
                    if same {
                        continue;
                    }
                }
                put.execute(params![pgno, &buf])
                    .map_err(sql(&path, "write page"))?;
                written += 1;
            }
            truncate(&mut put, &path, self.pages, new_pages)?;
        }
        commit(tx, &path, hash, before_commit)?;
        self.pages = new_pages;
        self.hash = hash;
        Ok(written)
    }
}

/// Cuts the copy from `pages` down to `new_pages` pages, if smaller, through `put` (the
/// `sqlite_dbpage` insert). Must be the transaction's last write: `sqlite_dbpage` forgets
/// a truncation on any later page write.
fn truncate(
    put: &mut rusqlite::CachedStatement<'_>,
    path: &Path,
    pages: u32,
    new_pages: u32,
) -> Result<()> {
    if new_pages < pages {
        put.execute(params![new_pages + 1, None::<Vec<u8>>])
            .map_err(sql(path, "truncate"))?;
    }
    Ok(())
}

/// Runs `before_commit` with the copy's new content hash (an error rolls back), then
/// commits.
fn commit(
    tx: rusqlite::Transaction<'_>,
    path: &Path,
    hash: u64,
    before_commit: impl FnOnce(u64) -> Result<()>,
) -> Result<()> {
    before_commit(hash)?;
    tx.commit().map_err(sql(path, "commit"))
}

/// The error for a copy that something other than walship wrote to.
pub(crate) fn foreign_write(path: &Path) -> Error {
    Error::Config(format!(
        "the follower copy {} was changed by another program since walship last updated it; \
         walship will not apply the replica's changes on top of foreign writes (the copy would \
         silently diverge from the primary). Open the copy read-only (e.g. ?mode=ro or \
         sqlite3 -readonly), then remove it (and its -wal, -shm and .walship-follow files) \
         to follow afresh",
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(path: &Path, rows: usize) -> Connection {
        let c = Connection::open(path).unwrap();
        c.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE IF NOT EXISTS t(v BLOB);")
            .unwrap();
        for i in 0..rows {
            c.execute(
                "INSERT INTO t VALUES (randomblob(?1))",
                [(500 + i % 3000) as i64],
            )
            .unwrap();
        }
        c
    }

    fn pages_of(c: &Connection) -> BTreeMap<u32, Vec<u8>> {
        let mut st = c.prepare("SELECT pgno, data FROM sqlite_dbpage").unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    }

    #[test]
    fn apply_grows_shrinks_and_tracks_the_hash() {
        let d = tempfile::tempdir().unwrap();
        let (src, cp) = (d.path().join("src.db"), d.path().join("copy.db"));
        let s = db(&src, 50);
        s.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
        std::fs::copy(&src, &cp).unwrap();
        let mut copy = Copy::open(&cp).unwrap();
        let reader = Connection::open(&cp).unwrap();
        let count = |c: &Connection| -> i64 {
            c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(count(&reader), 50);
        // Grow: every page of the source.
        for i in 0..200 {
            s.execute("INSERT INTO t VALUES (randomblob(?1))", [700 + i])
                .unwrap();
        }
        let all = pages_of(&s);
        let n = *all.keys().last().unwrap();
        assert!(n > copy.pages());
        let mut seen = None;
        copy.apply(&all, n, |h| {
            seen = Some(h);
            Ok(())
        })
        .unwrap();
        assert_eq!(count(&reader), 250);
        assert_eq!(Some(copy.hash()), seen);
        // Shrink.
        s.execute_batch("DELETE FROM t WHERE rowid > 10; VACUUM;")
            .unwrap();
        let all = pages_of(&s);
        let m = *all.keys().last().unwrap();
        assert!(m < copy.pages());
        copy.apply(&all, m, |_| Ok(())).unwrap();
        assert_eq!(count(&reader), 10);
        let ok: String = reader
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(ok, "ok");
        // The tracked hash is the hash of what is there.
        let tracked = copy.hash();
        let tracked_pages = copy.pages();
        copy.rescan().unwrap();
        assert_eq!((copy.hash(), copy.pages()), (tracked, tracked_pages));
        assert_eq!(copy.pages(), m);
    }

    #[test]
    fn a_failing_before_commit_leaves_the_copy_as_it_was() {
        let d = tempfile::tempdir().unwrap();
        let (src, cp) = (d.path().join("src.db"), d.path().join("copy.db"));
        let s = db(&src, 20);
        s.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
        std::fs::copy(&src, &cp).unwrap();
        let mut copy = Copy::open(&cp).unwrap();
        let before = copy.hash();
        s.execute("DELETE FROM t", []).unwrap();
        let all = pages_of(&s);
        let err = copy
            .apply(&all, *all.keys().last().unwrap(), |_| {
                Err(Error::Config("no".into()))
            })
            .unwrap_err();
        assert!(err.to_string().contains("no"));
        copy.rescan().unwrap();
        assert_eq!(copy.hash(), before);
        let n: i64 = Connection::open(&cp)
            .unwrap()
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 20);
    }

    #[test]
    fn foreign_writes_are_detected_and_checkpoints_are_not() {
        let d = tempfile::tempdir().unwrap();
        let cp = d.path().join("copy.db");
        drop(db(&cp, 5));
        let mut copy = Copy::open(&cp).unwrap();
        let other = Connection::open(&cp).unwrap();
        let _: i64 = other
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        other
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .unwrap();
        // A checkpoint by a reader moves data_version but changes no content.
        copy.check_untouched().unwrap();
        let all = BTreeMap::new();
        let n = copy.pages();
        copy.apply(&all, n, |_| Ok(())).unwrap();
        other.execute("INSERT INTO t VALUES (1)", []).unwrap();
        let err = copy.check_untouched().unwrap_err().to_string();
        assert!(err.contains("changed by another program"), "{err}");
        assert!(copy.apply(&all, n, |_| Ok(())).is_err());
    }

    #[test]
    fn replace_with_writes_only_changed_pages() {
        let d = tempfile::tempdir().unwrap();
        let (src, cp) = (d.path().join("src.db"), d.path().join("copy.db"));
        let s = db(&src, 300);
        s.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
        std::fs::copy(&src, &cp).unwrap();
        let mut copy = Copy::open(&cp).unwrap();
        s.execute("UPDATE t SET v = zeroblob(10) WHERE rowid = 7", [])
            .unwrap();
        s.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
        let written = copy.replace_with(&src, |_| Ok(())).unwrap();
        assert!((1..=4).contains(&written), "{written} pages written");
        let mut fresh = Copy::open(&src).unwrap();
        fresh.rescan().unwrap();
        assert_eq!(copy.hash(), fresh.hash());
    }
}
