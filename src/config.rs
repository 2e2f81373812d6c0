//! `litestream.yml`: the config file types, their defaults, and loading with validation.
//!
//! walship reads the same file Litestream v0.3.13 reads, with the same keys and defaults:
//!
//! ```yaml
//! dbs:
//!   - path: /var/lib/app.db
//!     replicas:
//!       - url: s3://mybkt.litestream.io/app   # or type:/bucket:/path:, see ReplicaTarget
//!         retention: 72h
//! ```
//!
//! Loading goes: read the file → expand `$VAR` / `${VAR}` over the whole text ([`expand_env`])
//! → parse YAML 1.1 (`yes`/`no`/`on`/`off` are booleans, as in Go's yaml.v2) → resolve into
//! [`Config`]: defaults filled in, paths made absolute, URLs split into a [`ReplicaTarget`],
//! every value checked.
//!
//! Where walship differs from Litestream, it errs towards telling the user:
//!
//! * an unknown key is a warning that names the key and where it is (with a "did you mean"),
//!   instead of being silently ignored; repeated keys are warned about too;
//! * values that Litestream accepts and then misbehaves on are errors that say what to write
//!   instead: `sync-interval: 0` (Litestream panics), `monitor-interval: 0` (Litestream
//!   silently stops replicating), `logging.type: yaml` (panics), a database without replicas,
//!   two replicas with the same name, `url:` together with `path:` or `bucket:`, a `type:` that
//!   contradicts the `url:` scheme;
//! * the v0.5 single `replica:` block is accepted as a one-element `replicas:` list (with a
//!   warning) instead of leaving the database without replicas;
//! * the v0.5 directory form of a `dbs:` entry (`dir:` + `pattern:`, with `recursive:` and
//!   `watch:`) replicates every SQLite database in a directory ([`DirConfig`]);
//! * `$$` and `${VAR:-default}` work in env expansion;
//! * `s3://bucket.s3.amazonaws.com/…` means bucket `bucket`.
//!
//! ```
//! use std::path::Path;
//! use walship::config::{Config, ReplicaTarget};
//!
//! let yaml = "
//! dbs:
//!   - path: /var/lib/app.db
//!     replicas:
//!       - url: s3://mybkt/app
//!         sync-interval: 500ms
//! ";
//! let loaded = Config::from_yaml(yaml, Path::new("litestream.yml"), false)?;
//! assert!(loaded.warnings.is_empty());
//! let db = loaded.config.find_db(Path::new("/var/lib/app.db")).unwrap();
//! let replica = &db.replicas[0];
//! assert_eq!(replica.name, "s3");
//! assert_eq!(replica.sync_interval.as_millis(), 500);
//! let ReplicaTarget::S3(s3) = &replica.target else { unreachable!() };
//! assert_eq!((s3.bucket.as_str(), s3.path.as_str()), ("mybkt", "app"));
//! # Ok::<(), walship::config::ConfigError>(())
//! ```

mod dir;
mod duration;
mod env;
mod error;
mod paths;
mod raw;
mod resolve;
mod url;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use dir::{Candidate, DirConfig};
pub use duration::{GoDuration, parse_go_duration};
pub use env::{expand_env, expand_env_with};
pub use error::ConfigError;
pub use url::is_url;

pub use crate::backend::{AbsConfig, GcsConfig, HttpConfig, ReplicaTarget, S3Config, SftpConfig};
pub use crate::secret::Secret;

/// Where the config file is read from when `-config` is not given: `/etc/litestream.yml`.
#[cfg(not(windows))]
pub const DEFAULT_CONFIG_PATH: &str = "/etc/litestream.yml";
/// Where the config file is read from when `-config` is not given.
#[cfg(windows)]
pub const DEFAULT_CONFIG_PATH: &str = r"C:\Litestream\litestream.yml";

/// Default `monitor-interval`: how often a database is checked for new WAL frames.
pub const DEFAULT_MONITOR_INTERVAL: Duration = Duration::from_secs(1);
/// Default `checkpoint-interval`.
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(60);
/// Default `min-checkpoint-page-count` (WAL pages before a PASSIVE checkpoint).
pub const DEFAULT_MIN_CHECKPOINT_PAGE_COUNT: u32 = 1000;
/// Default `max-checkpoint-page-count` (WAL pages before a forced RESTART checkpoint).
pub const DEFAULT_MAX_CHECKPOINT_PAGE_COUNT: u32 = 10_000;
/// Default `sync-interval`: how often new WAL is shipped to a replica.
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(1);
/// Default `retention`.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);
/// Default `retention-check-interval`.
pub const DEFAULT_RETENTION_CHECK_INTERVAL: Duration = Duration::from_secs(60 * 60);

/// The config file path to use when none is given on the command line:
/// `$LITESTREAM_CONFIG` if set and non-empty, else [`DEFAULT_CONFIG_PATH`].
pub fn default_config_path() -> PathBuf {
    match std::env::var_os("LITESTREAM_CONFIG") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(DEFAULT_CONFIG_PATH),
    }
}

/// A parsed config file and the warnings found while reading it.
#[derive(Clone, Debug)]
pub struct LoadedConfig {
    /// The resolved configuration.
    pub config: Config,
    /// Things worth telling the user that did not stop loading: unknown or repeated keys,
    /// v0.5 syntax that was translated, values that are probably mistakes
    /// (`dbs[0].replicas[1]: unknown key "wal-retention" ignored; did you mean "retention"?`).
    /// The CLI logs each at WARN.
    pub warnings: Vec<String>,
    /// The absolute path of the file read (for `from_yaml`, the `source` given).
    pub path: PathBuf,
}

/// The whole `litestream.yml`.
///
/// The top-level `access-key-id` / `secret-access-key` do not appear here: they are copied
/// into every S3 replica that has no value of its own, as Litestream does.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Config {
    /// `dbs:` — the databases to replicate, in file order. May be empty: `replicate` then
    /// logs "no databases specified in configuration" and keeps running, as Litestream does.
    pub dbs: Vec<DbConfig>,
    /// `dbs:` entries in directory form (`dir:` + `pattern:`), in file order.
    pub dirs: Vec<DirConfig>,
    /// `addr:` — bind address of the Prometheus `/metrics` server (e.g. `":9090"`); `None`
    /// (the default, or an empty string) = no server. Validated by the server at start-up.
    pub addr: Option<String>,
    /// `exec:` — a command line to run as a child process during `replicate`; split with
    /// shell-words rules by the CLI. `None` by default.
    pub exec: Option<String>,
    /// `stall-intervals:` (walship's own; Litestream ignores it) — a replica that has held
    /// less than its database for longer than this many of its sync intervals, without a
    /// successful sync, makes `/healthz` answer 503 (see [`crate::event::stalls`]). Default
    /// [`crate::event::DEFAULT_STALL_INTERVALS`] (30); 0 turns the check off.
    pub stall_intervals: u32,
    /// `logging:`.
    pub logging: LoggingConfig,
}

/// `logging:` settings. The CLI also honours the `LOG_LEVEL` environment variable, which
/// overrides `level` as in Litestream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoggingConfig {
    /// `logging.level` — default `info`; `debug`, `info`, `warn`/`warning`, `error`
    /// (case-insensitive). Anything else gives `info` and a warning.
    pub level: LogLevel,
    /// `logging.type` — default `text`; `text` or `json`. Anything else is an error.
    pub format: LogFormat,
    /// `logging.stderr` — default `false`: logs go to **stdout**, as in Litestream; `true`
    /// sends them to stderr.
    pub stderr: bool,
}

/// Minimum level of log records to emit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    /// `debug`
    Debug,
    /// `info` (the default)
    #[default]
    Info,
    /// `warn` or `warning`
    Warn,
    /// `error`
    Error,
}

impl LogLevel {
    /// Parses a level name case-insensitively, as Litestream does; `None` if unknown.
    pub fn parse(name: &str) -> Option<LogLevel> {
        match name.to_ascii_lowercase().as_str() {
            "debug" => Some(LogLevel::Debug),
            "info" => Some(LogLevel::Info),
            "warn" | "warning" => Some(LogLevel::Warn),
            "error" => Some(LogLevel::Error),
            _ => None,
        }
    }

    /// The lowercase name (`"debug"`, `"info"`, `"warn"`, `"error"`).
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

impl From<LogLevel> for tracing::Level {
    fn from(level: LogLevel) -> Self {
        match level {
            LogLevel::Debug => tracing::Level::DEBUG,
            LogLevel::Info => tracing::Level::INFO,
            LogLevel::Warn => tracing::Level::WARN,
            LogLevel::Error => tracing::Level::ERROR,
        }
    }
}

/// Log line format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum LogFormat {
    /// `key=value` text lines (the default).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// One `dbs:` entry: a SQLite database and where to replicate it.
#[derive(Clone, Debug, PartialEq)]
pub struct DbConfig {
    /// `path` (required) — the database file: `~` expanded, made absolute against the current
    /// directory, cleaned. CLI commands find a database by comparing this path
    /// ([`Config::find_db`]).
    pub path: PathBuf,
    /// `meta-path` — directory for walship's local state (shadow WAL, generation); `~`
    /// expanded and made absolute. `None` (the default) = `<dir>/.<name>-litestream`, computed
    /// by the engine.
    pub meta_path: Option<PathBuf>,
    /// `monitor-interval` — default 1s — how often the database is checked for new WAL.
    /// Must be > 0: Litestream silently disabled replication for ≤ 0; walship refuses.
    pub monitor_interval: Duration,
    /// `checkpoint-interval` — default `Some(60s)` — run a PASSIVE checkpoint at least this
    /// often. `None` when set to ≤ 0 (time-based checkpoints off, as Litestream).
    pub checkpoint_interval: Option<Duration>,
    /// `min-checkpoint-page-count` — default 1000 — WAL pages before a PASSIVE checkpoint.
    /// Must be > 0.
    pub min_checkpoint_page_count: u32,
    /// `max-checkpoint-page-count` — default 10000 — WAL pages before a forced RESTART
    /// checkpoint; 0 disables forced checkpoints.
    pub max_checkpoint_page_count: u32,
    /// `replicas` — at least one. Names are unique within a database.
    pub replicas: Vec<ReplicaConfig>,
}

impl DbConfig {
    /// A database with every setting at its default and no replicas yet (URL mode of the CLI,
    /// embedding). `path` is used as given: pass an absolute path.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        DbConfig {
            path: path.into(),
            meta_path: None,
            monitor_interval: DEFAULT_MONITOR_INTERVAL,
            checkpoint_interval: Some(DEFAULT_CHECKPOINT_INTERVAL),
            min_checkpoint_page_count: DEFAULT_MIN_CHECKPOINT_PAGE_COUNT,
            max_checkpoint_page_count: DEFAULT_MAX_CHECKPOINT_PAGE_COUNT,
            replicas: Vec::new(),
        }
    }

    /// The replica named `name` (the `-replica NAME` flag), if any.
    pub fn replica(&self, name: &str) -> Option<&ReplicaConfig> {
        self.replicas.iter().find(|r| r.name == name)
    }
}

/// The default TTL of the replica lease (Litestream v0.5's leaser uses the same).
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(30);

/// A replica's `lease:` setting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LeaseConfig {
    /// Not written: on with [`DEFAULT_LEASE_TTL`] where the backend supports it.
    #[default]
    Default,
    /// `lease: off`.
    Off,
    /// `lease: on` or `lease: <ttl>`: required; a backend without conditional writes (GCS)
    /// is an error here, a server that cannot hold one (an SFTP server without
    /// `hardlink@openssh.com`, a WebDAV server without enforced locks) at start.
    Ttl(Duration),
}

/// One replica of a database: a destination and how often to ship, snapshot and prune.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplicaConfig {
    /// `name` — default: the type name (`"file"`, `"s3"`, ...). Selects the replica in CLI
    /// commands (`-replica NAME`).
    pub name: String,
    /// Where the replica lives: from `url`, or from `type` (default `file`) plus the
    /// type's own keys.
    pub target: ReplicaTarget,
    /// `sync-interval` — default 1s — how often new WAL is shipped. Must be > 0 (Litestream
    /// panics on ≤ 0).
    pub sync_interval: Duration,
    /// `retention` — default `Some(24h)` — how long snapshots and WAL are kept. `None` when
    /// set to ≤ 0 (retention off).
    pub retention: Option<Duration>,
    /// `retention-check-interval` — default 1h, and never more than `retention` — how often
    /// retention is enforced. Must be > 0 while retention is on.
    pub retention_check_interval: Duration,
    /// `snapshot-interval` — default `None` (snapshots only when retention needs one).
    pub snapshot_interval: Option<Duration>,
    /// `validation-interval` — default `None` (no periodic restore-and-compare).
    pub validation_interval: Option<Duration>,
    /// `age:` — client-side encryption; off when both lists are empty.
    pub age: AgeConfig,
    /// `lease:` (walship's own; Litestream ignores it) — the replica lease that fences a
    /// second writer off the replica (see `walship::replica` and the README's Reliability
    /// section). Default: on with [`DEFAULT_LEASE_TTL`] where the store can hold it (file,
    /// S3, Azure, SFTP, WebDAV servers that enforce locks), off elsewhere (GCS, and servers
    /// that cannot, with a warning at start).
    pub lease: LeaseConfig,
}

impl ReplicaConfig {
    /// A replica with every setting at its default and the type name as its name — what
    /// Litestream's URL mode (`replicate DB URL...`) builds.
    pub fn new(target: ReplicaTarget) -> Self {
        ReplicaConfig {
            name: target.type_name().to_string(),
            target,
            sync_interval: DEFAULT_SYNC_INTERVAL,
            retention: Some(DEFAULT_RETENTION),
            retention_check_interval: DEFAULT_RETENTION_CHECK_INTERVAL,
            snapshot_interval: None,
            validation_interval: None,
            lease: LeaseConfig::Default,
            age: AgeConfig::default(),
        }
    }

    /// Opens the replica's storage client ([`crate::backend::open`] on its target): with
    /// `age:` keys, wrapped so that what it writes is encrypted to the recipients and what it
    /// reads is decrypted with the identities (Litestream v0.3.13's format). `counter`, when
    /// given, is told of each request a network backend makes.
    pub fn open(
        &self,
        counter: Option<crate::backend::OperationCounter>,
    ) -> crate::Result<std::sync::Arc<dyn crate::backend::ReplicaClient>> {
        let client = crate::backend::open(&self.target, counter)?;
        if !self.age.is_enabled() {
            return Ok(client);
        }
        let age = crate::backend::age::AgeClient::new(
            client,
            &self.age.recipients,
            &self.age.identities,
        )?;
        Ok(std::sync::Arc::new(age))
    }
}

/// `age:` encryption settings of a replica (standard binary age over each LZ4 object).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AgeConfig {
    /// `age.identities` — each string is the text of an age identity file (may hold several
    /// keys; `AGE-SECRET-KEY-...`). Needed to read the replica: restore, and resuming after a
    /// restart. Redacted in `Debug`.
    pub identities: Vec<Secret>,
    /// `age.recipients` — each string holds age recipients (`age1...`) to encrypt to.
    pub recipients: Vec<String>,
}

impl AgeConfig {
    /// True when encryption is configured (any recipient or identity).
    pub fn is_enabled(&self) -> bool {
        !self.identities.is_empty() || !self.recipients.is_empty()
    }
}

impl Config {
    /// Reads and resolves the config file at `path`.
    ///
    /// `path` gets `~` expansion and is made absolute against the current directory. A missing
    /// file gives [`ConfigError::NotFound`] (`config file not found: <path>`). With
    /// `expand_env`, `$VAR` references are replaced from the process environment first
    /// (see [`expand_env`]); pass `false` for `-no-expand-env`.
    pub fn load(path: &Path, expand_env: bool) -> Result<LoadedConfig, ConfigError> {
        if expand_env {
            Self::load_impl(path, Some(&process_env))
        } else {
            Self::load_impl(path, None)
        }
    }

    /// Like [`Config::load`] with expansion on, looking variables up through `lookup`.
    pub fn load_with_env(
        path: &Path,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<LoadedConfig, ConfigError> {
        Self::load_impl(path, Some(lookup))
    }

    /// Resolves config text; `source` names it in messages and in [`LoadedConfig::path`].
    pub fn from_yaml(
        text: &str,
        source: &Path,
        expand_env: bool,
    ) -> Result<LoadedConfig, ConfigError> {
        if expand_env {
            resolve::parse(text, source, Some(&process_env))
        } else {
            resolve::parse(text, source, None)
        }
    }

    /// Like [`Config::from_yaml`] with expansion on, looking variables up through `lookup`.
    pub fn from_yaml_with_env(
        text: &str,
        source: &Path,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<LoadedConfig, ConfigError> {
        resolve::parse(text, source, Some(lookup))
    }

    /// The database whose path equals `db_path` once that is `~`-expanded, made absolute and
    /// cleaned — the lookup behind `litestream <command> DB_PATH`.
    pub fn find_db(&self, db_path: &Path) -> Option<&DbConfig> {
        let wanted = paths::absolutize(db_path).unwrap_or_else(|_| paths::clean_path(db_path));
        self.dbs.iter().find(|db| db.path == wanted)
    }

    /// Every database: the listed ones, then those the directory entries hold now (listed
    /// ones first wins). Scans the directories (blocking).
    pub fn all_dbs(&self) -> Vec<DbConfig> {
        let mut out = self.dbs.clone();
        for d in &self.dirs {
            for p in d.scan() {
                if d.classify(&p) == Candidate::Database && out.iter().all(|c| c.path != p) {
                    out.extend(d.db_config(&p));
                }
            }
        }
        out
    }

    /// The config of `db_path` from a directory entry ([`DirConfig::db_config`]) whose name
    /// rules it meets, for databases not listed by `path:` ([`Config::find_db`] first).
    pub fn find_db_in_dirs(&self, db_path: &Path) -> Option<DbConfig> {
        let wanted = paths::absolutize(db_path).unwrap_or_else(|_| paths::clean_path(db_path));
        self.dirs.iter().find_map(|d| d.db_config(&wanted))
    }

    fn load_impl(path: &Path, lookup: Option<EnvLookup<'_>>) -> Result<LoadedConfig, ConfigError> {
        let abs = paths::absolutize(path).map_err(|message| ConfigError::Path {
            path: path.to_path_buf(),
            message,
        })?;
        let text = match std::fs::read_to_string(&abs) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ConfigError::NotFound { path: abs });
            }
            Err(source) => return Err(ConfigError::Read { path: abs, source }),
        };
        resolve::parse(&text, &abs, lookup)
    }
}

impl From<ConfigError> for crate::Error {
    fn from(e: ConfigError) -> Self {
        crate::Error::Config(e.to_string())
    }
}

/// A variable lookup for env expansion (`None` = unset).
pub(crate) type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

fn process_env(name: &str) -> Option<String> {
    std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
}
