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
    /// A replica holds no snapshot that fits the request.
    #[error("no snapshots available{0}")]
    NoSnapshots(String),
    /// Nothing on any replica matches what restore was asked for.
    #[error("no matching backups found")]
    NoMatchingBackups,
    /// Data that is not what the format allows.
    #[error("corrupt {path}: {reason}")]
    Corrupt { path: String, reason: String },
    /// A local I/O error, with the path it was about.
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An error from SQLite.
    #[error("sqlite: {context}: {source}")]
    Sqlite {
        context: String,
        #[source]
        source: rusqlite::Error,
    },
    /// An error from a replica backend (the store answered badly or not at all).
    #[error("{backend} replica: {message}")]
    Backend { backend: String, message: String },
    /// A configuration or usage error.
    #[error("{0}")]
    Config(String),
    /// Restore refused to overwrite an existing file.
    #[error("cannot restore, output path already exists: {}", .0.display())]
    OutputExists(PathBuf),
    /// A wait (for durability, for a sync) ran out of time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The operation was cancelled by shutdown.
    #[error("shutting down")]
    Shutdown,
}

impl Error {
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

    /// True for SQLite's "database is locked" (SQLITE_BUSY or SQLITE_LOCKED): another
    /// connection holds a lock walship needs for now; trying again later is the remedy.
    pub fn is_busy(&self) -> bool {
        matches!(
            self,
            Error::Sqlite {
                source: rusqlite::Error::SqliteFailure(f, _),
                ..
            } if f.code == rusqlite::ErrorCode::DatabaseBusy
                || f.code == rusqlite::ErrorCode::DatabaseLocked
        )
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
