//! walship as a SQLite loadable extension (feature `extension`): the engine inside any
//! application that loads SQLite extensions (Python's `sqlite3`, the `sqlite3` shell, Tcl, ...).
//!
//! Built as a cdylib against the *host's* SQLite: with rusqlite's `loadable_extension`
//! feature every SQLite call goes through the API table the host hands to
//! [`sqlite3_walship_init`], so there is one SQLite in the process and its locks are the
//! host's (two copies would not see each other's POSIX locks). The engine reads the database
//! and `-shm` through SQLite's own file handles (`crate::sqlite::file`), never through a
//! descriptor of its own that it could close under the host's locks.
//!
//! ```text
//! cargo rustc --lib --crate-type cdylib --no-default-features --features extension --release
//! ```
//!
//! The bindings are generated at build time from the build machine's `sqlite3ext.h`
//! (rusqlite's `buildtime_bindgen`; needs libclang and the SQLite headers): the extension
//! then loads into any host with that SQLite version or later, and refuses older hosts with
//! an error naming both versions. (rusqlite's pre-generated bindings are for its bundled
//! SQLite, 3.54 at the time of writing, newer than any host's.)
//!
//! SQL functions (registered on the connection that loads the extension):
//!
//! | function | does |
//! |---|---|
//! | `walship_start(config_path)` | replicates every database of a `litestream.yml` |
//! | `walship_replicate(replica_url)`, `walship_replicate(db_path, replica_url)` | replicates one database (this connection's by default) to one replica, the defaults of `walship replicate DB URL` |
//! | `walship_wait_durable([timeout_ms])` | returns once every commit of this connection's database made before the call is on every replica (default 5000 ms); fails with the reason |
//! | `walship_status()` | JSON: every database this process replicates, its replicas' positions, lag, last error |
//! | `walship_stop()` | final sync of this connection's database's engine, then stops it |
//! | `walship_restore(replica_url, output_path)` | the replica's latest state into a new file (JSON summary) |
//! | `walship_follow(...)` | refused: follow mode is not in the extension (says what to use) |
//! | `walship_version()` | walship's version and the host's SQLite version |
//!
//! The engine runs on its own tokio runtime (two worker threads), started once per process;
//! a database is replicated at most once per process however many connections load the
//! extension, and at most once per machine (the meta directory's lock). A process forked
//! from one that runs the engine cannot use it (its threads do not survive `fork()`): every
//! function refuses there with a message saying so.
//!
//! On the connection that started replication, a WAL hook wakes the engine at each commit
//! and takes over SQLite's auto-checkpoint: none while walship runs (walship checkpoints),
//! the connection's own threshold again once it stops.
use std::collections::HashMap;
use std::os::raw::{c_char, c_int, c_void};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rusqlite::functions::{Context, FunctionFlags};
use rusqlite::{Connection, ffi};
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::config::Config;
use crate::engine::{Durability, Engine, EngineHandle};
use crate::error::{Error, Result};

/// The first SQLite release without the WAL-reset bug (sqlite.org/wal.html#walresetbug).
const WAL_RESET_FIXED: c_int = 3_051_003;
/// `walship_wait_durable()` without an argument.
const DEFAULT_WAIT_MS: i64 = 5_000;

/// Entry point SQLite derives from the file name `libwalship.so` / `walship.dll`.
///
/// # Safety
/// Called by SQLite's `sqlite3_load_extension` with a valid connection and API table.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sqlite3_walship_init(
    db: *mut ffi::sqlite3,
    pz_err_msg: *mut *mut c_char,
    p_api: *mut ffi::sqlite3_api_routines,
) -> c_int {
    // rusqlite refuses a host older than the header the extension was built against, but
    // its error path then aborts the process (it allocates the message through a function
    // it has not set up yet); so the check is made here first, with the host's allocator.
    // SAFETY: `p_api` is the host's API table, valid for this call; `malloc` and
    // `libversion_number` are in every version of it.
    unsafe {
        if p_api.is_null() {
            return ffi::SQLITE_ERROR;
        }
        let host = (*p_api).libversion_number.map(|f| f()).unwrap_or(0);
        if host < ffi::SQLITE_VERSION_NUMBER {
            let msg = format!(
                "walship: this extension needs SQLite {} or later (the version it was built \
                 against); the host's SQLite is {}. Use the walship command beside the \
                 application, or a host with a newer SQLite\0",
                version_text(ffi::SQLITE_VERSION_NUMBER),
                version_text(host)
            );
            if !pz_err_msg.is_null()
                && let Some(malloc) = (*p_api).malloc
            {
                let buf = malloc(msg.len() as c_int) as *mut u8;
                if !buf.is_null() {
                    std::ptr::copy_nonoverlapping(msg.as_ptr(), buf, msg.len());
                    *pz_err_msg = buf as *mut c_char;
                }
            }
            return ffi::SQLITE_ERROR;
        }
        Connection::extension_init2(db, pz_err_msg, p_api, init)
    }
}

/// 3040001 as "3.40.1".
fn version_text(n: c_int) -> String {
    format!("{}.{}.{}", n / 1_000_000, n / 1_000 % 1_000, n % 1_000)
}

/// Registers the functions on the loading connection. Returns `true`: the library stays
/// loaded when that connection closes (the engine's threads run its code).
fn init(conn: Connection) -> rusqlite::Result<bool> {
    first_load();
    let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DIRECTONLY;
    conn.create_scalar_function(c"walship_start", 1, flags, |ctx| sql(start_config(ctx)))?;
    conn.create_scalar_function(c"walship_replicate", -1, flags, |ctx| sql(start_url(ctx)))?;
    conn.create_scalar_function(c"walship_wait_durable", -1, flags, |ctx| {
        sql(wait_durable(ctx))
    })?;
    conn.create_scalar_function(c"walship_status", 0, flags, |_| sql(status()))?;
    conn.create_scalar_function(c"walship_stop", 0, flags, |ctx| sql(stop(ctx)))?;
    conn.create_scalar_function(c"walship_restore", 2, flags, |ctx| sql(restore(ctx)))?;
    conn.create_scalar_function(c"walship_follow", -1, flags, |ctx| {
        sql::<String>(Err(follow_refused(ctx)))
    })?;
    conn.create_scalar_function(c"walship_version", 0, flags, |_| {
        Ok(format!(
            "walship {} (host SQLite {})",
            env!("CARGO_PKG_VERSION"),
            host_version()
        ))
    })?;
    Ok(true)
}

/// A walship error as the SQL error the host sees (`walship: ...`).
fn sql<T>(r: Result<T>) -> rusqlite::Result<T> {
    r.map_err(|e| rusqlite::Error::UserFunctionError(format!("walship: {e}").into()))
}

/// Once per process: logging to stderr (`WALSHIP_LOG`, default `warn`) and the host check.
fn first_load() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_env("WALSHIP_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        let _ = tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_env_filter(filter)
            .try_init();
        // SAFETY: plain getter of the host library.
        let version = unsafe { ffi::sqlite3_libversion_number() };
        if version < WAL_RESET_FIXED {
            warn!(
                host_sqlite = %host_version(),
                "the host's SQLite is older than 3.51.3 and has the WAL-reset bug \
                 (sqlite.org/wal.html#walresetbug): two checkpoints racing a commit on \
                 another connection can corrupt the database, with or without walship; \
                 upgrade the host's SQLite where you can"
            );
        }
    });
}

fn host_version() -> String {
    // SAFETY: sqlite3_libversion returns a static NUL-terminated string.
    unsafe { std::ffi::CStr::from_ptr(ffi::sqlite3_libversion()) }
        .to_string_lossy()
        .into_owned()
}

// ---------------------------------------------------------------------------------------
// The process's engines

/// The pid of the process whose runtime this is; 0 before the first start.
static OWNER_PID: AtomicU32 = AtomicU32::new(0);
static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
static RUNNING: Mutex<Vec<Running>> = Mutex::new(Vec::new());

/// One `walship_start`/`walship_replicate`: an engine and what it replicates.
struct Running {
    handle: EngineHandle,
}

impl Running {
    /// The database of this engine at `db` (canonical), as the engine names it; databases
    /// a watched directory added since the start count too.
    fn find(&self, db: &Path) -> Option<PathBuf> {
        paths(&self.handle.dbs())
            .into_iter()
            .find(|d| canonical(d) == db)
    }
}

/// The databases' paths, as the engine names them.
fn paths(dbs: &[crate::engine::DbHandle]) -> Vec<PathBuf> {
    dbs.iter().map(|h| h.db.path().to_path_buf()).collect()
}

/// Fails in a process forked from the one that runs the engine: its runtime's threads
/// (and the tasks that ship the WAL) exist only in the parent.
fn not_forked() -> Result<()> {
    let owner = OWNER_PID.load(Ordering::SeqCst);
    let me = std::process::id();
    if owner != 0 && owner != me {
        return Err(Error::Config(format!(
            "this process (pid {me}) was forked from pid {owner}, which runs the walship \
             engine; its threads do not survive fork(), so a forked worker cannot use or \
             start it. Start walship in one process after forking (for example in one \
             worker, or in a process of its own), or run the walship command beside the \
             application"
        )));
    }
    Ok(())
}

fn runtime() -> Result<&'static tokio::runtime::Runtime> {
    not_forked()?;
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(Error::Config(
            "called from a thread of a tokio runtime; a Rust application embeds walship \
             through its Rust API (walship::Engine) instead"
                .into(),
        ));
    }
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("walship")
        .enable_all()
        .build()
        .map_err(|e| Error::Config(format!("cannot start walship's threads: {e}")))?;
    OWNER_PID.store(std::process::id(), Ordering::SeqCst);
    Ok(RUNTIME.get_or_init(|| rt))
}

fn running() -> std::sync::MutexGuard<'static, Vec<Running>> {
    RUNNING.lock().unwrap_or_else(|e| e.into_inner())
}

fn canonical(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// The calling connection's main database file, or `None` for an in-memory database.
fn connection_db(ctx: &Context<'_>) -> Result<(Option<PathBuf>, *mut ffi::sqlite3)> {
    // SAFETY: the connection is only used during this call, on this thread.
    let conn = unsafe { ctx.get_connection() }
        .map_err(|e| Error::Config(format!("no connection: {e}")))?;
    let path = conn
        .path()
        .filter(|p| !p.is_empty())
        .map(|p| canonical(Path::new(p)));
    // SAFETY: the raw handle outlives this call (it is the caller's connection).
    let handle = unsafe { conn.handle() };
    Ok((path, handle))
}

fn text_arg(ctx: &Context<'_>, i: usize, what: &str) -> Result<String> {
    ctx.get::<String>(i)
        .map_err(|_| Error::Config(format!("{what} must be a text argument")))
}

/// `walship_start(config_path)`.
fn start_config(ctx: &Context<'_>) -> Result<String> {
    let path = text_arg(ctx, 0, "the config path")?;
    let loaded = Config::load(Path::new(&path), true).map_err(|e| Error::Config(e.to_string()))?;
    let config = loaded.config;
    if config.exec.is_some() {
        return Err(Error::Config(format!(
            "{path}: exec: runs the application as a child of the walship command; inside the \
             application it has no meaning. Remove it from this config"
        )));
    }
    if config.addr.as_deref().is_some_and(|a| !a.is_empty()) {
        return Err(Error::Config(format!(
            "{path}: addr: (the /metrics and /status server) is served by the walship command \
             only; inside the application read walship_status(). Remove addr: from this config"
        )));
    }
    start(ctx, Engine::from_config(&config)?)
}

/// `walship_replicate([db_path,] replica_url)`.
fn start_url(ctx: &Context<'_>) -> Result<String> {
    let (db, url) = match ctx.len() {
        1 => {
            let (db, _) = connection_db(ctx)?;
            let db = db.ok_or_else(|| {
                Error::Config(
                    "this connection's database is in memory; walship replicates database files"
                        .into(),
                )
            })?;
            (db, text_arg(ctx, 0, "the replica URL")?)
        }
        2 => (
            std::path::absolute(text_arg(ctx, 0, "the database path")?)
                .map_err(|e| Error::Config(format!("database path: {e}")))?,
            text_arg(ctx, 1, "the replica URL")?,
        ),
        n => {
            return Err(Error::Config(format!(
                "walship_replicate takes (replica_url) or (db_path, replica_url), not {n} \
                 arguments"
            )));
        }
    };
    // The same defaults as `walship replicate DB URL`: a config of one database and one
    // replica, resolved and validated as a litestream.yml is (JSON is YAML).
    let yaml = serde_json::json!({
        "dbs": [{ "path": db.to_string_lossy(), "replicas": [{ "url": url }] }]
    })
    .to_string();
    let loaded = Config::from_yaml(&yaml, Path::new("walship_replicate()"), false)
        .map_err(|e| Error::Config(e.to_string()))?;
    start(ctx, Engine::from_config(&loaded.config)?)
}

/// Starts `engine` on the process's runtime after the checks the `walship replicate`
/// command makes; returns the databases it replicates (a JSON array).
fn start(ctx: &Context<'_>, engine: Engine) -> Result<String> {
    let rt = runtime()?;
    let dbs = paths(engine.dbs());
    if dbs.is_empty() {
        return Err(Error::Config("the config names no database".into()));
    }
    for db in &dbs {
        require_wal(db)?;
    }
    let mut running = running();
    for db in &dbs {
        let c = canonical(db);
        if running.iter().any(|r| r.find(&c).is_some()) {
            return Err(Error::InUse(format!(
                "{} is already replicated by this process; call walship_stop() first to \
                 change how",
                db.display()
            )));
        }
    }
    let handle = rt.block_on(async {
        engine.claim().await?;
        engine.check_writable().await?;
        Ok::<_, Error>(engine.start())
    })?;
    for db in &dbs {
        if let Some(h) = handle.db(db) {
            hook::replicating(&canonical(db), Some(h.waker.clone()));
        }
    }
    let (conn_db, raw) = connection_db(ctx)?;
    if let Some(conn_db) = conn_db
        && dbs.iter().any(|d| canonical(d) == conn_db)
    {
        hook::attach(raw, &conn_db);
    }
    info!(dbs = ?dbs, "walship started in this process");
    running.push(Running { handle });
    Ok(serde_json::json!(dbs).to_string())
}

/// Refuses a database that exists and is not in WAL mode: walship ships the WAL. Opened
/// read-only through the host's SQLite, so closing it keeps the host's locks.
fn require_wal(db: &Path) -> Result<()> {
    if !db.exists() {
        return Ok(()); // replicated from its first commit, as the command does
    }
    let conn = Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(Error::sqlite(format!("open {}", db.display())))?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .map_err(Error::sqlite(format!("journal mode of {}", db.display())))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::Config(format!(
            "{} is in journal_mode={mode}; walship replicates WAL databases: run PRAGMA \
             journal_mode=WAL on it once, then start walship",
            db.display()
        )));
    }
    Ok(())
}

/// The calling connection's database, and the index in [`RUNNING`] of the engine that
/// replicates it.
fn engine_of(ctx: &Context<'_>, running: &[Running]) -> Result<(usize, PathBuf)> {
    not_forked()?;
    let (db, _) = connection_db(ctx)?;
    let db = db.ok_or_else(|| Error::NotFound("this connection's database is in memory".into()))?;
    running
        .iter()
        .enumerate()
        .find_map(|(i, r)| r.find(&db).map(|d| (i, d)))
        .ok_or_else(|| {
            Error::NotFound(format!(
                "{} is not replicated by this process; call walship_start(config) or \
                 walship_replicate(url) first",
                db.display()
            ))
        })
}

/// `walship_wait_durable([timeout_ms])`: the position reached, `generation/index:offset`.
fn wait_durable(ctx: &Context<'_>) -> Result<String> {
    let ms = match ctx.len() {
        0 => DEFAULT_WAIT_MS,
        1 => ctx
            .get::<i64>(0)
            .ok()
            .filter(|ms| *ms >= 0)
            .ok_or_else(|| {
                Error::Config("the timeout must be a number of milliseconds >= 0".into())
            })?,
        n => {
            return Err(Error::Config(format!(
                "walship_wait_durable takes ([timeout_ms]), not {n} arguments"
            )));
        }
    };
    let (handle, db) = {
        let running = running();
        let (i, db) = engine_of(ctx, &running)?;
        (running[i].handle.clone(), db)
    };
    let rt = runtime()?;
    let pos = rt.block_on(handle.wait_durable(
        &db,
        Durability::AllReplicas,
        Duration::from_millis(ms as u64),
    ))?;
    Ok(format!(
        "{}/{:08x}:{}",
        pos.generation, pos.index, pos.offset
    ))
}

/// `walship_status()`: `{"pid", "host_sqlite", "dbs": [...]}` with `dbs` as in `GET /status`.
fn status() -> Result<String> {
    not_forked()?;
    let statuses: Vec<_> = running().iter().flat_map(|r| r.handle.status()).collect();
    let mut v = crate::server::status_json(&statuses);
    v["pid"] = serde_json::json!(std::process::id());
    v["host_sqlite"] = serde_json::json!(host_version());
    Ok(v.to_string())
}

/// `walship_stop()`: the final sync of the engine that replicates this connection's
/// database, then stops it (with every database it replicates).
fn stop(ctx: &Context<'_>) -> Result<String> {
    let handle = {
        let mut running = running();
        let (i, _) = engine_of(ctx, &running)?;
        running.remove(i).handle
    };
    let rt = runtime()?;
    let dbs = paths(&handle.dbs());
    for db in &dbs {
        hook::replicating(&canonical(db), None);
    }
    rt.block_on(handle.shutdown())?;
    info!(dbs = ?dbs, "walship stopped in this process");
    Ok(serde_json::json!(dbs).to_string())
}

/// `walship_restore(replica_url, output_path)`: the latest state of the replica into a new
/// file, as `walship restore -o OUTPUT URL` does (an existing file is refused).
fn restore(ctx: &Context<'_>) -> Result<String> {
    let url = text_arg(ctx, 0, "the replica URL")?;
    let out = std::path::absolute(text_arg(ctx, 1, "the output path")?)
        .map_err(|e| Error::Config(format!("output path: {e}")))?;
    let rt = runtime()?;
    let target = crate::config::ReplicaTarget::from_url(&url)?;
    let client = crate::backend::open(&target, Some(crate::metrics::operation_counter()))?;
    let sources = [crate::restore::ReplicaSource {
        name: client.type_name().into(),
        client,
    }];
    let opts = crate::restore::RestoreOptions::default();
    let summary = rt.block_on(crate::restore::restore(&sources, &out, &opts, &|_| {}))?;
    Ok(serde_json::json!({
        "output": out,
        "generation": summary.generation.to_string(),
        "snapshot_index": summary.snapshot_index,
        "last_index": summary.last_index,
        "segments_applied": summary.segments_applied,
        "bytes": summary.db_bytes,
    })
    .to_string())
}

/// `walship_follow(...)`: not built into the extension; the error says what to use, and
/// whether this host's SQLite could write a follower's copy at all.
fn follow_refused(ctx: &Context<'_>) -> Error {
    // SAFETY: the connection is only used during this call, on this thread.
    let dbpage = unsafe { ctx.get_connection() }
        .map(|c| c.prepare("SELECT pgno FROM sqlite_dbpage LIMIT 0").is_ok())
        .unwrap_or(false);
    Error::Config(format!(
        "follow mode is not in the extension yet. It writes its copy through SQLite's \
         sqlite_dbpage table, which this host's SQLite ({}) {}. For a copy of the latest \
         state use walship_restore(replica_url, output_path); for a copy that keeps up run \
         the walship command: walship restore -f -o COPY URL",
        host_version(),
        if dbpage {
            "has"
        } else {
            "lacks (built without SQLITE_ENABLE_DBPAGE_VTAB)"
        }
    ))
}

/// The WAL hook on the connections that started replication.
mod hook {
    use super::*;

    /// What every hooked connection of one database shares.
    #[derive(Default)]
    struct Slot {
        /// The engine's waker while walship replicates the database in this process.
        waker: Mutex<Option<Arc<Notify>>>,
    }

    /// One hooked connection: its database's slot and its own auto-checkpoint threshold.
    struct Hooked {
        slot: &'static Slot,
        autocheckpoint: c_int,
    }

    static SLOTS: Mutex<Option<HashMap<PathBuf, &'static Slot>>> = Mutex::new(None);

    fn slot(db: &Path) -> &'static Slot {
        let mut slots = SLOTS.lock().unwrap_or_else(|e| e.into_inner());
        // Leaked on purpose: a hook may fire on any connection until it closes, so its
        // slot lives as long as the process (one small allocation per database).
        slots
            .get_or_insert_with(HashMap::new)
            .entry(db.to_path_buf())
            .or_insert_with(|| Box::leak(Box::default()))
    }

    /// Records whether walship replicates `db` now (`Some(waker)`) or not.
    pub(super) fn replicating(db: &Path, waker: Option<Arc<Notify>>) {
        *slot(db).waker.lock().unwrap_or_else(|e| e.into_inner()) = waker;
    }

    /// Installs the hook on `conn` (a connection of `db`, which [`replicating`] was told
    /// about), keeping its auto-checkpoint threshold for when walship stops.
    pub(super) fn attach(conn: *mut ffi::sqlite3, db: &Path) {
        // SAFETY: `conn` is the calling connection, valid during this call. The hook below
        // replaces SQLite's auto-checkpoint hook, so the connection's threshold is read
        // first (SQLite's default of 1000 pages if the pragma cannot be read).
        let autocheckpoint = unsafe { current_autocheckpoint(conn) }.unwrap_or(1000);
        let hooked: &'static Hooked = Box::leak(Box::new(Hooked {
            slot: slot(db),
            autocheckpoint,
        }));
        // SAFETY: the hook and its argument ('static) outlive the connection.
        unsafe {
            ffi::sqlite3_wal_hook(
                conn,
                Some(on_commit),
                hooked as *const Hooked as *mut c_void,
            );
        }
    }

    /// `PRAGMA wal_autocheckpoint` of `conn`.
    unsafe fn current_autocheckpoint(conn: *mut ffi::sqlite3) -> Option<c_int> {
        // SAFETY: a borrowed view of the caller's connection; dropping it closes nothing.
        let c = unsafe { Connection::from_handle(conn) }.ok()?;
        c.query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))
            .ok()
    }

    /// SQLite calls this after each commit on a hooked connection (with its mutex held).
    /// While walship replicates in this process it wakes the engine and leaves checkpoints
    /// to it; otherwise it does what SQLite's default hook does.
    unsafe extern "C" fn on_commit(
        arg: *mut c_void,
        db: *mut ffi::sqlite3,
        name: *const c_char,
        frames: c_int,
    ) -> c_int {
        // SAFETY: `arg` is the leaked `Hooked` of `attach`.
        let hooked = unsafe { &*(arg as *const Hooked) };
        let waker = if not_forked().is_ok() {
            hooked
                .slot
                .waker
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
        } else {
            None
        };
        match waker {
            Some(w) => w.notify_one(),
            None => {
                if hooked.autocheckpoint > 0 && frames >= hooked.autocheckpoint {
                    // SAFETY: as SQLite's own sqlite3WalDefaultHook does, on the same
                    // connection and schema name it was called with.
                    unsafe { ffi::sqlite3_wal_checkpoint(db, name) };
                }
            }
        }
        ffi::SQLITE_OK
    }
}
