//! The library's error type.
use std::path::PathBuf;

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every error the walship library returns. Variants are named by what the caller can do
/// about them; not-found stays distinct because restore and retention branch on it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An object or file that was asked for does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The database has no generation yet (nothing to ship).
    #[error("no generation, waiting for data")]
    NoGeneration,
    /// A replica holds no snapshot that fits the request. The message is whole: `no
    /// snapshots available`, then what was asked for (`in generation ... at or below
    /// index ...`).
    #[error("{0}")]
    NoSnapshots(String),
    /// Nothing on any replica matches what restore was asked for.
    #[error("no matching backups found")]
    NoMatchingBackups,
    /// Data that is not what the format allows.
    #[error("corrupt {path}: {reason}")]
    Corrupt {
        /// The object or file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A local I/O error, with the path it was about.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done (`read`, `fsync`, ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// An error from SQLite.
    #[error("sqlite: {context}: {source}")]
    Sqlite {
        /// What was being done.
        context: String,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// An error from a replica backend (the store answered badly or not at all). `kind`
    /// says what a caller can do about it; `source` is the client library's error, where
    /// there is one.
    #[error("{backend} replica: {message}")]
    Backend {
        /// The backend or step (`s3`, `http`, `file`, `restore`, ...).
        backend: String,
        /// What the caller can do about it.
        kind: BackendErrorKind,
        /// What happened, naming the object.
        message: String,
        /// The client library's error.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// A configuration or usage error.
    #[error("{0}")]
    Config(String),
    /// Another replicator holds what this one needs (the database's meta directory): the
    /// message names it and says how to go on.
    #[error("{0}")]
    InUse(String),
    /// An encrypted object this client holds no key for: an `age` replica configured with
    /// recipients only (or with identities that do not match) can write but not read.
    #[error("{0}")]
    NoKey(String),
    /// Restore refused to overwrite an existing file.
    #[error("cannot restore, output path already exists: {}", .0.display())]
    OutputExists(PathBuf),
    /// A wait (for durability, for a sync) ran out of time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The operation was cancelled by shutdown.
    #[error("shutting down")]
    Shutdown,
    /// Another connection holds a lock on the database that walship needs for now (SQLite's
    /// SQLITE_BUSY or SQLITE_LOCKED where walship opens the database; elsewhere SQLite's own
    /// error comes as [`Error::Sqlite`]). Trying again later is the remedy; see
    /// [`Error::is_busy`], which is true for both. The message names the database.
    #[error("{0}")]
    Busy(String),
    /// A fault inside walship, not in its input or its environment: a worker task that
    /// panicked or was cancelled, state that an invariant says is there and is not. Nothing
    /// the caller changes makes it go away; it is worth a bug report.
    #[error("internal error: {0}")]
    Internal(String),
}

/// What a caller can do about an [`Error::Backend`]. Retry decisions match on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackendErrorKind {
    /// Worth trying again: no answer in time, a reset connection, a 5xx, a rate limit.
    Transient,
    /// The store refused the credentials or the request (401, 403): the config needs a fix.
    Denied,
    /// The replica cannot be written (a static HTTP server).
    ReadOnly,
    /// The store is out of space or over its quota (507, MinIO's storage-full codes).
    OutOfSpace,
    /// Anything else: an answer the backend does not understand, a local failure.
    Other,
}

impl BackendErrorKind {
    /// The kind of an HTTP status that is not a success.
    pub fn of_status(status: u16) -> BackendErrorKind {
        match status {
            401 | 403 => BackendErrorKind::Denied,
            405 => BackendErrorKind::ReadOnly,
            507 => BackendErrorKind::OutOfSpace,
            408 | 429 | 500..=599 => BackendErrorKind::Transient,
            _ => BackendErrorKind::Other,
        }
    }
}

impl Error {
    /// A backend error without a source.
    pub fn backend(
        backend: impl Into<String>,
        kind: BackendErrorKind,
        message: impl Into<String>,
    ) -> Error {
        Error::Backend {
            backend: backend.into(),
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// A backend error caused by `source`.
    pub fn backend_from(
        backend: impl Into<String>,
        kind: BackendErrorKind,
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Error {
        Error::Backend {
            backend: backend.into(),
            kind,
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }

    /// The kind of a backend error; `None` for every other error.
    pub fn backend_kind(&self) -> Option<BackendErrorKind> {
        match self {
            Error::Backend { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// Wraps an I/O error with the operation and path it concerns.
    pub fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                // Keep not-found distinct: callers branch on it.
                Error::NotFound(path.display().to_string())
            } else {
                Error::Io { op, path, source }
            }
        }
    }

    /// Wraps a rusqlite error with what walship was doing.
    pub fn sqlite(context: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> Error {
        let context = context.into();
        move |source| Error::Sqlite { context, source }
    }

    /// True for SQLite's "database is locked" (SQLITE_BUSY or SQLITE_LOCKED), wherever it
    /// happened ([`Error::Busy`] at open, [`Error::Sqlite`] elsewhere): another connection
    /// holds a lock walship needs for now; trying again later is the remedy.
    pub fn is_busy(&self) -> bool {
        match self {
            Error::Busy(_) => true,
            Error::Sqlite {
                source: rusqlite::Error::SqliteFailure(f, _),
                ..
            } => {
                f.code == rusqlite::ErrorCode::DatabaseBusy
                    || f.code == rusqlite::ErrorCode::DatabaseLocked
            }
            _ => false,
        }
    }

    /// Wraps the failure of a task walship spawned (it panicked or was cancelled) as
    /// [`Error::Internal`]: `what` names the task (`"snapshot"`, `"sync"`).
    pub fn task_failed(what: &'static str) -> impl FnOnce(tokio::task::JoinError) -> Error {
        move |e| Error::Internal(format!("{what} task failed: {e}"))
    }

    /// A corrupt-data error.
    pub fn corrupt(path: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::Corrupt {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// True for [`Error::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_statuses_say_what_to_do() {
        use BackendErrorKind::*;
        for (status, kind) in [
            (401, Denied),
            (403, Denied),
            (405, ReadOnly),
            (507, OutOfSpace),
            (408, Transient),
            (429, Transient),
            (500, Transient),
            (502, Transient),
            (503, Transient),
            (400, Other),
            (409, Other),
            (412, Other),
        ] {
            assert_eq!(BackendErrorKind::of_status(status), kind, "status {status}");
        }
    }

    #[test]
    fn busy_is_busy_wherever_it_happens() {
        assert!(Error::Busy("app.db is locked by another connection".into()).is_busy());
        let locked = rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY);
        let e = Error::sqlite("copy the WAL")(rusqlite::Error::SqliteFailure(locked, None));
        assert!(e.is_busy(), "{e}");
        assert!(!Error::Internal("x".into()).is_busy());
        assert!(!Error::Config("x".into()).is_busy());
    }

    #[test]
    fn messages_carry_their_whole_text() {
        let e = Error::NoSnapshots("no snapshots available in generation 0000000000000001".into());
        assert_eq!(
            e.to_string(),
            "no snapshots available in generation 0000000000000001"
        );
        assert_eq!(
            Error::Internal("database connection not open".into()).to_string(),
            "internal error: database connection not open"
        );
    }

    #[tokio::test]
    async fn a_failed_task_is_an_internal_error() {
        let task = tokio::spawn(std::future::pending::<()>());
        task.abort();
        let e = task
            .await
            .map_err(Error::task_failed("snapshot"))
            .unwrap_err();
        assert!(matches!(e, Error::Internal(_)), "{e:?}");
        assert!(
            e.to_string()
                .starts_with("internal error: snapshot task failed: "),
            "{e}"
        );
    }

    #[test]
    fn a_backend_error_keeps_its_source_and_its_words() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        let e = Error::backend_from("s3", BackendErrorKind::Transient, "get x: reset", io);
        assert_eq!(e.to_string(), "s3 replica: get x: reset");
        assert_eq!(e.backend_kind(), Some(BackendErrorKind::Transient));
        let source = std::error::Error::source(&e).expect("source kept");
        assert_eq!(source.to_string(), "reset by peer");
        assert_eq!(Error::NoGeneration.backend_kind(), None);
    }
}
