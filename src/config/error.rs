//! The error type of config loading.

use std::path::PathBuf;

/// Why a config file (or a replica URL) could not be turned into a [`Config`](super::Config).
///
/// Messages are lowercase, name the file and the database (by path) or replica (by name or
/// index) concerned, and say what to write instead. They never contain secrets: URLs are shown
/// with their password redacted and YAML errors are reported without echoing the source line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The config file does not exist (Litestream's message, kept for scripts that match it).
    #[error("config file not found: {}", .path.display())]
    NotFound {
        /// The absolute path that was tried.
        path: PathBuf,
    },

    /// The config file exists but cannot be read, or is not UTF-8.
    #[error("cannot read config file {}: {source}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The config path itself cannot be resolved (`~` with no home directory, unknown
    /// current directory).
    #[error("cannot resolve config path {}: {message}", .path.display())]
    Path {
        /// The path as given.
        path: PathBuf,
        /// What went wrong and what to do.
        message: String,
    },

    /// The text is not valid YAML, or a value has the wrong type (`sync-interval: 1d`).
    #[error("{}", parse_message(.path, *.line, *.column, .message))]
    Parse {
        /// The file (or the `source` name given to `Config::from_yaml`).
        path: PathBuf,
        /// 1-based line of the problem, when known.
        line: Option<u64>,
        /// 1-based column of the problem, when known.
        column: Option<u64>,
        /// The parser's description.
        message: String,
    },

    /// The YAML is well-formed but describes something walship will not run: a missing
    /// required key, conflicting keys, an impossible value.
    #[error("config file {}: {location}: {message}", .path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Where in the config: `db "/var/lib/app.db" replica "s3"`, `dbs[2]`, `logging.type`.
        location: String,
        /// What is wrong and what to write instead.
        message: String,
    },

    /// A replica URL (command line URL mode) is malformed or uses an unknown scheme.
    #[error("invalid replica url {url}: {message}")]
    Url {
        /// The URL, password redacted.
        url: String,
        /// What is wrong and what to write instead.
        message: String,
    },
}

fn parse_message(
    path: &std::path::Path,
    line: Option<u64>,
    column: Option<u64>,
    message: &str,
) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(
            "cannot parse config file {} at line {l}, column {c}: {message}",
            path.display()
        ),
        (Some(l), None) => format!(
            "cannot parse config file {} at line {l}: {message}",
            path.display()
        ),
        _ => format!("cannot parse config file {}: {message}", path.display()),
    }
}
