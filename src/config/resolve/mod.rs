//! From the file as written ([`raw`](super::raw)) to the resolved [`Config`]: defaults,
//! paths, URLs, and every check that can be made without touching a database or a network.

mod targets;

use std::path::Path;
use std::time::Duration;

use super::env::expand_env_with;
use super::paths::{absolutize, clean_key_prefix};
use super::raw::{self, Node, RawAge, RawConfig, RawDb, RawDuration, RawLease, RawReplica};
use super::url::{KNOWN_SCHEMES, canonical_type, is_url, redact_url, with_default_port};
use super::{
    AgeConfig, Config, ConfigError, DEFAULT_CHECKPOINT_INTERVAL, DEFAULT_LEASE_TTL,
    DEFAULT_MAX_CHECKPOINT_PAGE_COUNT, DEFAULT_MIN_CHECKPOINT_PAGE_COUNT, DEFAULT_MONITOR_INTERVAL,
    DEFAULT_RETENTION, DEFAULT_RETENTION_CHECK_INTERVAL, DEFAULT_SYNC_INTERVAL, DbConfig,
    DirConfig, EnvLookup, HttpConfig, LeaseConfig, LoadedConfig, LogFormat, LogLevel,
    LoggingConfig, ReplicaConfig, ReplicaTarget, S3Config, Secret,
};

/// Expands, parses and resolves config text.
pub(crate) fn parse(
    text: &str,
    source: &Path,
    lookup: Option<EnvLookup<'_>>,
) -> Result<LoadedConfig, ConfigError> {
    let expanded;
    let text = match lookup {
        Some(lookup) => {
            expanded = expand_env_with(text, lookup);
            expanded.as_str()
        }
        None => text,
    };

    // Go's yaml.v2 (non-strict) lets a repeated key overwrite the earlier one; do the same,
    // and warn about it from the skeleton pass below.
    let options = serde_saphyr::options! {
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::LastWins,
    };
    let raw: Option<RawConfig> =
        serde_saphyr::from_str_with_options(text, options).map_err(|e| parse_error(source, &e))?;
    let raw = raw.unwrap_or_default();

    let mut warnings = Vec::new();
    let skeleton_options = serde_saphyr::options! {
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::PassThrough,
    };
    match serde_saphyr::from_str_with_options::<Option<Node>>(text, skeleton_options) {
        Ok(Some(skeleton)) => raw::check_keys(&skeleton, &mut warnings),
        Ok(None) => {}
        // The typed pass accepted the text, so this is a parser corner case: say the check
        // was skipped rather than fail a valid config.
        Err(e) => warnings.push(format!(
            "could not check for unknown keys: {}",
            e.without_snippet()
        )),
    }

    let mut resolver = Resolver {
        file: source,
        warnings: &mut warnings,
    };
    let config = resolver.config(raw)?;
    Ok(LoadedConfig {
        config,
        warnings,
        path: source.to_path_buf(),
    })
}

/// A YAML or type error, with line and column and without the source snippet (the line may
/// hold a secret).
fn parse_error(source: &Path, e: &serde_saphyr::Error) -> ConfigError {
    let location = e.location();
    let (line, column) = match location {
        Some(l) => (Some(l.line()), Some(l.column())),
        None => (None, None),
    };
    let mut message = e.without_snippet().to_string();
    if let (Some(l), Some(c)) = (line, column) {
        // The parser appends the position; it is already in the message prefix.
        let suffix = format!(" at line {l}, column {c}");
        if let Some(stripped) = message.strip_suffix(&suffix) {
            message = stripped.to_string();
        }
    }
    if let Some(plain) = plain_words(&message) {
        message = format!("{plain} (the YAML parser says: {message})");
    }
    ConfigError::Parse {
        path: source.to_path_buf(),
        line,
        column,
        message,
    }
}

/// What the YAML parser's common complaints mean, in the words of someone editing a
/// `litestream.yml`, and what to do about them.
fn plain_words(parser_message: &str) -> Option<&'static str> {
    const MEANINGS: &[(&str, &str)] = &[
        (
            "found a tab",
            "a tab character: YAML indents with spaces only; replace the tab with spaces",
        ),
        (
            "did not find expected key",
            "this line is indented differently from the keys above it; line up each key of \
             an entry in the same column",
        ),
        (
            "did not find expected '-' indicator",
            "this list item is not lined up with the items above it; start each `- ` in the \
             same column",
        ),
        (
            "mapping values are not allowed",
            "a `: ` where a value was expected, or a key indented under a value; quote a \
             value that contains `: `, or fix the indentation",
        ),
        (
            "unclosed bracket",
            "a `[` or `{` that is never closed; close it, or write the list one `- ` item \
             per line",
        ),
        (
            "found unexpected end of stream",
            "the file ends inside a quoted string or a bracket; close the quote or bracket",
        ),
        (
            "found character that cannot start any token",
            "a character YAML reserves (such as `@` or a backquote) starts a value; put the \
             value in quotes",
        ),
    ];
    MEANINGS
        .iter()
        .find(|(pattern, _)| parser_message.contains(pattern))
        .map(|(_, plain)| *plain)
}

/// Treats an empty string like an absent key, as Go's zero value does.
fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

struct Resolver<'a> {
    file: &'a Path,
    warnings: &'a mut Vec<String>,
}

/// Where a replica sits, for messages: `db "/x.db" replica "name"` or `db "/x.db" replicas[1]`,
/// plus the key path used by warnings (`dbs[0].replicas[1]`).
struct ReplicaAt {
    label: String,
    keys: String,
}

impl Resolver<'_> {
    fn invalid(&self, location: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.file.to_path_buf(),
            location: location.into(),
            message: message.into(),
        }
    }

    fn config(&mut self, raw: RawConfig) -> Result<Config, ConfigError> {
        let logging = self.logging(raw.logging.unwrap_or_default())?;
        let top_key_id = non_empty(raw.access_key_id);
        let top_secret = non_empty(raw.secret_access_key);
        let mut dbs = Vec::new();
        let mut dirs = Vec::new();
        for (i, mut db) in raw.dbs.unwrap_or_default().into_iter().enumerate() {
            let keys = format!("dbs[{i}]");
            let (dir, pattern) = (non_empty(db.dir.take()), non_empty(db.pattern.take()));
            let (recursive, watch) = (db.recursive.take(), db.watch.take());
            let Some(dir) = dir else {
                for (key, set) in [
                    ("pattern", pattern.is_some()),
                    ("recursive", recursive.is_some()),
                    ("watch", watch.is_some()),
                ] {
                    if set {
                        return Err(self.invalid(
                            &keys,
                            format!("{key} only applies with dir:; add dir: /path/to/dbs"),
                        ));
                    }
                }
                dbs.push(self.db(i, db, &top_key_id, &top_secret)?);
                continue;
            };
            if non_empty(db.path.clone()).is_some() {
                return Err(self.invalid(
                    &keys,
                    "cannot specify both 'path' and 'dir'; keep path: for one database or \
                     dir: + pattern: for every database in a directory",
                ));
            }
            let Some(pattern) = pattern else {
                return Err(self.invalid(
                    &keys,
                    "'pattern' is required when using 'dir'; add e.g. pattern: \"*.db\"",
                ));
            };
            if let Err(e) = glob::Pattern::new(&pattern) {
                return Err(self.invalid(&keys, format!("invalid pattern {pattern:?}: {e}")));
            }
            db.path = Some(dir);
            let template = self.db(i, db, &top_key_id, &top_secret)?;
            dirs.push(DirConfig {
                dir: template.path.clone(),
                pattern,
                recursive: recursive.unwrap_or(false),
                watch: watch.unwrap_or(false),
                template,
            });
        }
        for (i, a) in dbs.iter().enumerate() {
            if let Some(j) = dbs[..i].iter().position(|b| b.path == a.path) {
                return Err(self.invalid(
                    format!("dbs[{i}]"),
                    format!(
                        "db \"{}\" is listed twice (also dbs[{j}]); merge the two entries \
                         into one with a replicas: list",
                        a.path.display()
                    ),
                ));
            }
        }
        Ok(Config {
            dbs,
            dirs,
            addr: non_empty(raw.addr),
            exec: non_empty(raw.exec),
            stall_intervals: raw
                .stall_intervals
                .unwrap_or(crate::event::DEFAULT_STALL_INTERVALS),
            logging,
        })
    }

    fn logging(&mut self, raw: raw::RawLogging) -> Result<LoggingConfig, ConfigError> {
        let level = match non_empty(raw.level) {
            None => LogLevel::Info,
            Some(name) => LogLevel::parse(&name).unwrap_or_else(|| {
                self.warnings.push(format!(
                    "logging.level: unknown level {name:?}, using info; write debug, info, \
                     warn or error"
                ));
                LogLevel::Info
            }),
        };
        let format = match non_empty(raw.kind)
            .map(|k| k.to_ascii_lowercase())
            .as_deref()
        {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(self.invalid(
                    "logging.type",
                    format!("unknown log type {other:?}; write text or json"),
                ));
            }
        };
        Ok(LoggingConfig {
            level,
            format,
            stderr: raw.stderr.unwrap_or(false),
        })
    }

    fn db(
        &mut self,
        index: usize,
        raw: RawDb,
        top_key_id: &Option<String>,
        top_secret: &Option<String>,
    ) -> Result<DbConfig, ConfigError> {
        let keys = format!("dbs[{index}]");
        let Some(raw_path) = non_empty(raw.path) else {
            return Err(self.invalid(
                &keys,
                "missing path; add the database file, e.g. path: /var/lib/app.db",
            ));
        };
        let path = absolutize(Path::new(&raw_path)).map_err(|m| self.invalid(&keys, m))?;
        // Quoted as written, not escaped: `C:\data\app.db`, not `C:\\data\\app.db`.
        let label = format!("db \"{}\"", path.display());

        let meta_path = match non_empty(raw.meta_path) {
            Some(p) => Some(absolutize(Path::new(&p)).map_err(|m| self.invalid(&label, m))?),
            None => None,
        };

        let monitor_interval = match raw.monitor_interval {
            None => DEFAULT_MONITOR_INTERVAL,
            Some(d) => self
                .positive(&keys, "monitor-interval", d, "1s")
                .map_err(|message| {
                    self.invalid(
                        &label,
                        format!(
                            "{message} (Litestream would silently not replicate this database)"
                        ),
                    )
                })?,
        };
        let checkpoint_interval = match raw.checkpoint_interval {
            None => Some(DEFAULT_CHECKPOINT_INTERVAL),
            Some(d) => self.optional(&keys, "checkpoint-interval", d),
        };

        let (min_checkpoint_page_count, max_checkpoint_page_count) = self.checkpoint_page_counts(
            &keys,
            &label,
            raw.min_checkpoint_page_count,
            raw.max_checkpoint_page_count,
        )?;

        let (raw_replicas, replica_keys) = match (raw.replicas, raw.replica) {
            (Some(list), Some(_)) if !list.is_empty() => {
                return Err(self.invalid(
                    &label,
                    "both replicas: and replica: are set; keep the replicas: list and move the \
                     replica: entry into it",
                ));
            }
            (list, Some(single)) if list.as_ref().is_none_or(Vec::is_empty) => {
                self.warnings.push(format!(
                    "{keys}: \"replica:\" (Litestream v0.5 syntax) treated as a one-element \
                     \"replicas:\" list; Litestream v0.3.13 would ignore it"
                ));
                (vec![single], vec![format!("{keys}.replica")])
            }
            (list, _) => {
                let list = list.unwrap_or_default();
                let keys_list = (0..list.len())
                    .map(|j| format!("{keys}.replicas[{j}]"))
                    .collect();
                (list, keys_list)
            }
        };
        if raw_replicas.is_empty() {
            return Err(self.invalid(
                &label,
                "no replicas configured; add a replicas: list, e.g. \
                 replicas: [{url: s3://BUCKET/PATH}] or replicas: [{path: /backups/app}]",
            ));
        }

        let mut replicas: Vec<ReplicaConfig> = Vec::new();
        for (j, (r, rkeys)) in raw_replicas.into_iter().zip(replica_keys).enumerate() {
            let at = ReplicaAt {
                label: match non_empty(r.name.clone()) {
                    Some(name) => format!("{label} replica {name:?}"),
                    None => format!("{label} replicas[{j}]"),
                },
                keys: rkeys,
            };
            let explicit_name = non_empty(r.name.clone()).is_some();
            let mut replica = self.replica(&at, r, top_key_id, top_secret)?;
            if !explicit_name && let Some(k) = replicas.iter().position(|o| o.name == replica.name)
            {
                // Two unnamed replicas of one type (a served directory and a backup, say):
                // Litestream v0.3.13 refuses the duplicate name; walship numbers the later
                // ones, and says that explicit names are what keep them stable.
                let base = replica.name.clone();
                let derived = (2..)
                    .map(|n| format!("{base}-{n}"))
                    .find(|n| replicas.iter().all(|o| &o.name != n))
                    .expect("an unused number");
                self.warnings.push(format!(
                    "{keys}.replicas[{k}] and {keys}.replicas[{j}] are both unnamed {base} \
                     replicas (Litestream v0.3.13 refuses this); walship names replicas[{j}] \
                     {derived:?}. Add a name: key to each: the name is what -replica, status \
                     and metrics use, and an explicit one stays the same when the list changes"
                ));
                replica.name = derived;
            }
            if let Some(k) = replicas.iter().position(|o| o.name == replica.name) {
                return Err(self.invalid(
                    &label,
                    format!(
                        "two replicas are named {:?} (replicas[{k}] and replicas[{j}]); give \
                         each a distinct name: key",
                        replica.name
                    ),
                ));
            }
            replicas.push(replica);
        }

        Ok(DbConfig {
            path,
            meta_path,
            monitor_interval,
            checkpoint_interval,
            min_checkpoint_page_count,
            max_checkpoint_page_count,
            replicas,
        })
    }

    /// `min-checkpoint-page-count` (> 0) and `max-checkpoint-page-count` (0 disables forced
    /// checkpoints), with a warning when the forced one would always win.
    fn checkpoint_page_counts(
        &mut self,
        keys: &str,
        label: &str,
        min: Option<i64>,
        max: Option<i64>,
    ) -> Result<(u32, u32), ConfigError> {
        let min_checkpoint_page_count = match min {
            None => DEFAULT_MIN_CHECKPOINT_PAGE_COUNT,
            Some(n) if n <= 0 => {
                return Err(self.invalid(
                    label,
                    format!(
                        "min-checkpoint-page-count must be > 0 (got {n}); remove the key for \
                         the default {DEFAULT_MIN_CHECKPOINT_PAGE_COUNT}"
                    ),
                ));
            }
            Some(n) => u32::try_from(n).map_err(|_| {
                self.invalid(
                    label,
                    format!(
                        "min-checkpoint-page-count {n} is too large (at most {})",
                        u32::MAX
                    ),
                )
            })?,
        };
        let max_checkpoint_page_count = match max {
            None => DEFAULT_MAX_CHECKPOINT_PAGE_COUNT,
            Some(n) if n < 0 => {
                self.warnings.push(format!(
                    "{keys}: max-checkpoint-page-count {n} is negative and disables forced \
                     checkpoints; write 0 for that"
                ));
                0
            }
            Some(n) => u32::try_from(n).map_err(|_| {
                self.invalid(
                    label,
                    format!(
                        "max-checkpoint-page-count {n} is too large (at most {})",
                        u32::MAX
                    ),
                )
            })?,
        };
        if max_checkpoint_page_count != 0 && max_checkpoint_page_count < min_checkpoint_page_count {
            self.warnings.push(format!(
                "{keys}: max-checkpoint-page-count ({max_checkpoint_page_count}) is below \
                 min-checkpoint-page-count ({min_checkpoint_page_count}), so every checkpoint \
                 will be a forced RESTART; raise max-checkpoint-page-count or set it to 0"
            ));
        }
        Ok((min_checkpoint_page_count, max_checkpoint_page_count))
    }

    /// A duration that must be > 0. Returns the message (without location) on failure.
    fn positive(
        &mut self,
        keys: &str,
        key: &str,
        d: RawDuration,
        default: &str,
    ) -> Result<Duration, String> {
        match d.value.to_std().filter(|d| !d.is_zero()) {
            Some(std) => {
                self.warn_bare_number(keys, key, d);
                Ok(std)
            }
            None => Err(format!(
                "{key} must be > 0 (got {}); remove the key for the default {default}",
                d.value
            )),
        }
    }

    /// A duration where ≤ 0 means "off" (Litestream's meaning); negative values get a warning.
    fn optional(&mut self, keys: &str, key: &str, d: RawDuration) -> Option<Duration> {
        if d.value.as_nanos() < 0 {
            self.warnings.push(format!(
                "{keys}: {key} is negative ({}), which turns it off; write 0 for that",
                d.value
            ));
            return None;
        }
        self.warn_bare_number(keys, key, d);
        d.value.to_std().filter(|d| !d.is_zero())
    }

    /// Warns about `sync-interval: 10` and the like: a bare number is nanoseconds.
    fn warn_bare_number(&mut self, keys: &str, key: &str, d: RawDuration) {
        let n = d.value.as_nanos();
        if d.bare_number && n > 0 && n < 1_000_000 {
            self.warnings.push(format!(
                "{keys}: {key}: {n} is {n} nanoseconds (a number without a unit counts \
                 nanoseconds); write {n}s or {n}ms if that is what you meant"
            ));
        }
    }

    fn replica(
        &mut self,
        at: &ReplicaAt,
        r: RawReplica,
        top_key_id: &Option<String>,
        top_secret: &Option<String>,
    ) -> Result<ReplicaConfig, ConfigError> {
        let label = at.label.as_str();
        let keys = at.keys.as_str();
        let url = non_empty(r.url.clone());
        let path = non_empty(r.path.clone());
        let explicit_type = non_empty(r.kind.clone());

        if let Some(p) = &path
            && is_url(p)
        {
            return Err(self.invalid(
                label,
                format!(
                    "replica path cannot be a url, please use the 'url' field instead: write \
                     url: {} and remove path:",
                    redact_url(p)
                ),
            ));
        }

        // The url scheme decides the type; an explicit type must agree with it.
        let (kind, url_target) = self.replica_kind(
            label,
            keys,
            url.as_deref(),
            path.is_some(),
            explicit_type.as_deref(),
        )?;
        self.warn_inapplicable(keys, kind, &r);

        let target = match kind {
            "file" => self.file_target(label, path, url_target)?,
            "s3" => {
                ReplicaTarget::S3(self.s3_target(label, &r, url_target, top_key_id, top_secret)?)
            }
            "gcs" => self.gcs_target(label, &r, url_target)?,
            "abs" => self.abs_target(label, &r, url_target)?,
            "sftp" => self.sftp_target(label, &r, url_target)?,
            "http" => self.http_target(label, &r, url_target)?,
            other => unreachable!("canonical_type returned {other}"),
        };

        let name = non_empty(r.name.clone()).unwrap_or_else(|| target.type_name().to_string());

        let sync_interval = match r.sync_interval {
            None => DEFAULT_SYNC_INTERVAL,
            Some(d) => self
                .positive(keys, "sync-interval", d, "1s")
                .map_err(|m| self.invalid(label, m))?,
        };
        let (retention, retention_check_interval) = self.retention(label, keys, &r)?;
        let snapshot_interval = r
            .snapshot_interval
            .and_then(|d| self.optional(keys, "snapshot-interval", d));
        let validation_interval = r
            .validation_interval
            .and_then(|d| self.optional(keys, "validation-interval", d));

        let age = self.age(keys, r.age);
        let lease = match r.lease {
            None => LeaseConfig::Default,
            Some(RawLease::Switch(false)) => LeaseConfig::Off,
            Some(RawLease::Switch(true)) => LeaseConfig::Ttl(DEFAULT_LEASE_TTL),
            Some(RawLease::Ttl(d)) => {
                match d.to_std().filter(|d| *d >= Duration::from_secs(1)) {
                    Some(ttl) => LeaseConfig::Ttl(ttl),
                    None => {
                        return Err(self.invalid(
                        label,
                        format!("lease must be at least 1s (got {d}); write lease: off to turn it off"),
                    ));
                    }
                }
            }
        };

        Ok(ReplicaConfig {
            name,
            target,
            sync_interval,
            retention,
            retention_check_interval,
            snapshot_interval,
            validation_interval,
            age,
            lease,
        })
    }

    /// The replica type and, with `url:`, the target it names: the url scheme decides (an
    /// explicit `type:` that disagrees is a warning), and neither means a file replica.
    fn replica_kind(
        &mut self,
        label: &str,
        keys: &str,
        url: Option<&str>,
        has_path: bool,
        explicit_type: Option<&str>,
    ) -> Result<(&'static str, Option<ReplicaTarget>), ConfigError> {
        let kind = match url {
            Some(u) => {
                let target = ReplicaTarget::from_url(u).map_err(|e| match e {
                    ConfigError::Url { url, message } => {
                        self.invalid(label, format!("url {url}: {message}"))
                    }
                    other => other,
                })?;
                let kind = target.type_name();
                if let Some(t) = explicit_type
                    && canonical_type(t) != Some(kind)
                {
                    // The url is the more specific of the two (guides write `type: file`
                    // beside an `http://` url of a served directory): it decides.
                    self.warnings.push(format!(
                        "{keys}: type: {t} does not match the url {} (a {kind} url); the \
                         url decides, so this is a {kind} replica. Remove type: or fix the url",
                        redact_url(u)
                    ));
                }
                if has_path {
                    return Err(self.invalid(
                        label,
                        "url and path are both set; the url already holds the path, so remove \
                         path: (or remove url: and use type:, bucket: and path:)",
                    ));
                }
                (kind, Some(target))
            }
            None => match explicit_type {
                None => ("file", None),
                Some(t) => match canonical_type(t) {
                    Some(kind) => (kind, None),
                    None => {
                        return Err(self.invalid(
                            label,
                            format!(
                                "unknown replica type in config: {t:?}; write one of file, s3, \
                                 gcs, abs, sftp, http (or use url: with one of the schemes \
                                 {KNOWN_SCHEMES})"
                            ),
                        ));
                    }
                },
            },
        };
        Ok(kind)
    }

    /// `retention` (default 24h; ≤ 0 turns it off) and `retention-check-interval` (default
    /// 1h, never more than the retention).
    fn retention(
        &mut self,
        label: &str,
        keys: &str,
        r: &RawReplica,
    ) -> Result<(Option<Duration>, Duration), ConfigError> {
        let retention = match r.retention {
            None => Some(DEFAULT_RETENTION),
            Some(d) => self.optional(keys, "retention", d),
        };
        let retention_check_interval = match (r.retention_check_interval, retention) {
            (None, _) => DEFAULT_RETENTION_CHECK_INTERVAL,
            // Unused while retention is off; keep a harmless positive value.
            (Some(d), None) => d
                .value
                .to_std()
                .filter(|d| !d.is_zero())
                .unwrap_or(DEFAULT_RETENTION_CHECK_INTERVAL),
            (Some(d), Some(_)) => self
                .positive(keys, "retention-check-interval", d, "1h")
                .map_err(|m| {
                    self.invalid(
                        label,
                        format!("{m}, or turn retention off with retention: 0"),
                    )
                })?,
        };
        let retention_check_interval = match retention {
            Some(r) => retention_check_interval.min(r),
            None => retention_check_interval,
        };
        Ok((retention, retention_check_interval))
    }

    /// `age:` keys, with a warning for a half-configured pair.
    fn age(&mut self, keys: &str, raw: Option<RawAge>) -> AgeConfig {
        let age = match raw {
            None => AgeConfig::default(),
            Some(a) => AgeConfig {
                identities: a
                    .identities
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|s| !s.trim().is_empty())
                    .map(Secret::new)
                    .collect(),
                recipients: a
                    .recipients
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|s| !s.trim().is_empty())
                    .collect(),
            },
        };
        if !age.recipients.is_empty() && age.identities.is_empty() {
            self.warnings.push(format!(
                "{keys}: age.recipients without age.identities: this machine can write the \
                 replica but not read it; restore needs the identity, so keep it safe elsewhere \
                 (after a crash, replicate starts a new generation instead of reading its last \
                 segment back)"
            ));
        }
        if !age.identities.is_empty() && age.recipients.is_empty() {
            self.warnings.push(format!(
                "{keys}: age.identities without age.recipients: new data will not be \
                 encrypted; add the matching age.recipients entry"
            ));
        }
        age
    }

    /// Warns about keys that do nothing for this replica type (`bucket:` on a file replica).
    fn warn_inapplicable(&mut self, keys: &str, kind: &str, r: &RawReplica) {
        let set = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
        let checks: [(&str, bool, &[&str]); 16] = [
            ("access-key-id", set(&r.access_key_id), &["s3"]),
            ("secret-access-key", set(&r.secret_access_key), &["s3"]),
            ("region", set(&r.region), &["s3"]),
            ("endpoint", set(&r.endpoint), &["s3", "abs"]),
            ("force-path-style", r.force_path_style.is_some(), &["s3"]),
            ("skip-verify", r.skip_verify == Some(true), &["s3", "http"]),
            ("bucket", set(&r.bucket), &["s3", "gcs", "abs"]),
            ("account-name", set(&r.account_name), &["abs"]),
            ("account-key", set(&r.account_key), &["abs"]),
            ("host", set(&r.host), &["sftp"]),
            ("user", set(&r.user), &["sftp", "http"]),
            ("password", set(&r.password), &["sftp", "http"]),
            ("key-path", set(&r.key_path), &["sftp"]),
            ("host-key", set(&r.host_key), &["sftp"]),
            (
                "insecure-skip-host-key-check",
                r.insecure_skip_host_key_check == Some(true),
                &["sftp"],
            ),
            ("bearer-token", set(&r.bearer_token), &["http"]),
        ];
        for (key, present, types) in checks {
            if present && !types.contains(&kind) {
                self.warnings.push(format!(
                    "{keys}: {key} has no effect on a {kind} replica; it applies to {}",
                    types.join(" and ")
                ));
            }
        }
    }
}
