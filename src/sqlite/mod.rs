//! SQLite file formats and the engine's own connection.
pub mod conn;
pub mod file;
pub mod wal;

/// Stops SQLite from pre-allocating 20 pages (about 88 KB at 4 KiB pages) of page cache for
/// every connection on its first read. walship keeps three connections per database and
/// reads a handful of pages through them, so with 1,000 databases that bulk was about
/// 260 MB of the process's memory (measured with `valgrind --tool=massif`). Pages are then
/// allocated one by one as they are used.
///
/// It is a process-wide setting (`sqlite3_config(SQLITE_CONFIG_PAGECACHE, NULL, 0, 0)`),
/// so it only takes effect before SQLite is first used in the process: the `walship`
/// binary calls it first thing. An application embedding walship may call it before it
/// opens its own first connection (its connections then lose the same pre-allocation,
/// which costs them only a few more small allocations). Returns false when SQLite was
/// already initialised and nothing changed.
///
/// Inside the loadable extension SQLite belongs to the host (and `sqlite3_config` is not
/// in the API table extensions get): there it does nothing and returns false.
pub fn disable_page_cache_prealloc() -> bool {
    #[cfg(feature = "extension")]
    return false;
    #[cfg(not(feature = "extension"))]
    {
        // SAFETY: sqlite3_config is safe to call before sqlite3_initialize; SQLITE_CONFIG_PAGECACHE
        // takes (void*, int, int) and a null buffer with zero sizes means "no static buffer, no
        // bulk pre-allocation". After initialisation it returns SQLITE_MISUSE and changes nothing.
        let rc = unsafe {
            rusqlite::ffi::sqlite3_config(
                rusqlite::ffi::SQLITE_CONFIG_PAGECACHE,
                std::ptr::null_mut::<std::os::raw::c_void>(),
                0 as std::os::raw::c_int,
                0 as std::os::raw::c_int,
            )
        };
        rc == rusqlite::ffi::SQLITE_OK
    }
}
