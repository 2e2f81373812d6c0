//! The `walship` command line: Litestream v0.3.13's commands and flags.
//!
//! Go's `flag` package accepts `-name` as well as `--name`; clap only knows `--name`, so
//! [`normalize_args`] rewrites single-dash long flags first. Then clap parses into raw
//! arguments, and each command resolves them into typed settings.
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Parser, Subcommand};

use walship::backend;
use walship::config::{self, Config, LoadedConfig, ReplicaTarget};
use walship::restore::ReplicaSource;

pub mod list;
pub mod process;
pub mod replicate;
pub mod restore;
#[cfg(windows)]
pub mod service;
pub mod status;

/// What `walship version`, `walship --version` and `walship -V` print after the name.
pub const VERSION: &str = concat!(
    "v",
    env!("CARGO_PKG_VERSION"),
    " (Litestream v0.3.13 compatible)"
);

/// walship: SQLite WAL replication, a drop-in for Litestream v0.3.13.
#[derive(Debug, Parser)]
#[command(
    name = "walship",
    version = VERSION,
    about,
    after_help = "Flags may be written -flag or --flag, as Litestream writes them: \
                  walship restore -o out.db -timestamp 2026-01-02T03:04:05Z -config litestream.yml DB"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Continuously replicate databases (from -config, or one DB_PATH and its REPLICA_URLs).
    Replicate(replicate::ReplicateArgs),
    /// Restore a database from a replica: latest state or a point in time.
    Restore(restore::RestoreArgs),
    /// List the snapshots of a database or replica.
    Snapshots(list::ListArgs),
    /// List the generations of a database or replica.
    Generations(list::ListArgs),
    /// List the WAL segments of a database or replica.
    Wal(list::WalArgs),
    /// List the databases in the config file.
    Databases(DatabasesArgs),
    /// Show every database and replica: position, lag, last sync, last error (from a
    /// running `walship replicate` at the config's addr, else from disk).
    #[command(alias = "replicas")]
    Status(status::StatusArgs),
    /// Run walship as a Windows service: install or uninstall one.
    #[cfg(windows)]
    Service(service::ServiceArgs),
    /// Print the version.
    Version,
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout.
    Completion(CompletionArgs),
    /// Write the man pages (walship.1 and one per command) to DIR, or walship.1 to stdout.
    #[command(hide = true)]
    Man(ManArgs),
}

/// Arguments of `completion`.
#[derive(Debug, Args)]
#[command(after_help = "Install, for example: walship completion bash > \
    /etc/bash_completion.d/walship, or walship completion zsh > \
    \"${fpath[1]}/_walship\", or walship completion fish > \
    ~/.config/fish/completions/walship.fish")]
pub struct CompletionArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Arguments of `man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Directory to write walship.1 and walship-COMMAND.1 into (stdout gets walship.1 alone
    /// without it).
    pub dir: Option<PathBuf>,
}

/// Writes the completion script for `args.shell` to `out`. The script is built in memory
/// first: clap_complete panics on a write error, and `walship completion bash | head` must
/// not.
pub fn completion(args: &CompletionArgs, out: &mut dyn std::io::Write) -> Result<()> {
    use clap::CommandFactory;
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "walship", &mut script);
    write_quietly(out, &script).context("cannot write the completion script")
}

/// Writes `bytes`, treating a reader that went away (`| head`) as success.
fn write_quietly(out: &mut dyn std::io::Write, bytes: &[u8]) -> std::io::Result<()> {
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Writes the man pages to `args.dir`, or walship.1 to `out`.
pub fn man(args: &ManArgs, out: &mut dyn std::io::Write) -> Result<()> {
    use clap::CommandFactory;
    // The man page prints "v" before the version itself; built so that stdout's page is
    // the same as generate_to's.
    // No `help` command in the pages: generate_to would write a page for it and for each
    // `help COMMAND`.
    let mut cmd = Cli::command()
        .version(env!("CARGO_PKG_VERSION"))
        .disable_help_subcommand(true);
    cmd.build();
    match &args.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(cmd, dir)
                .with_context(|| format!("cannot write the man pages into {}", dir.display()))?;
        }
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut page)?;
            write_quietly(out, &page).context("cannot write the man page")?;
        }
    }
    Ok(())
}

/// Arguments of `databases`.
#[derive(Debug, Args)]
pub struct DatabasesArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Rejected with Litestream's message.
    #[arg(hide = true)]
    pub extra: Vec<String>,
}

/// `-config` and `-no-expand-env`, shared by every command that reads a config.
#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    /// Config file path (default: $LITESTREAM_CONFIG, else /etc/litestream.yml).
    #[arg(long = "config", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Do not expand $VAR / ${VAR} in the config file.
    #[arg(long = "no-expand-env")]
    pub no_expand_env: bool,
}

impl ConfigArgs {
    /// Loads the config (explicit path, else the default path), printing its warnings.
    /// Without `-config` and with no file at the default path, the error says how to name
    /// one, or what to give instead.
    pub fn load(&self) -> Result<LoadedConfig> {
        let path = self
            .config
            .clone()
            .unwrap_or_else(config::default_config_path);
        let loaded = match Config::load(&path, !self.no_expand_env) {
            Err(e @ config::ConfigError::NotFound { .. }) if self.config.is_none() => {
                return Err(NoConfig(e.to_string()).into());
            }
            other => other?,
        };
        for w in &loaded.warnings {
            tracing::warn!("{}: {w}", path.display());
        }
        Ok(loaded)
    }
}

/// No `-config` was given and there is no config file at the default path.
#[derive(Debug)]
pub struct NoConfig(String);

impl std::fmt::Display for NoConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}; pass -config PATH (or set $LITESTREAM_CONFIG), or name the replica itself: a \
             replica URL such as file:///backups/app or s3://bucket/path, or a replica directory",
            self.0
        )
    }
}

impl std::error::Error for NoConfig {}

/// The `logging:` block of the config the command will read, if it reads one and it loads.
pub fn logging_config(command: &Command) -> Option<config::LoggingConfig> {
    let args = match command {
        Command::Replicate(a) if a.args.is_empty() => &a.config,
        Command::Restore(a) if a.config.config.is_some() => &a.config,
        Command::Snapshots(a) | Command::Generations(a) if a.config.config.is_some() => &a.config,
        Command::Wal(a) if a.list.config.config.is_some() => &a.list.config,
        Command::Databases(a) => &a.config,
        Command::Status(a) => &a.config,
        _ => return None,
    };
    let path = args
        .config
        .clone()
        .unwrap_or_else(config::default_config_path);
    Config::load(&path, !args.no_expand_env)
        .ok()
        .map(|l| l.config.logging)
}

pub use process::next_stop;

/// Long flag names that Go spells with one dash. Everything here may be written `-name`,
/// `-name=value`, `--name` or `--name=value`.
const LONG_FLAGS: &[&str] = &[
    "config",
    "name",
    "start",
    "no-expand-env",
    "exec",
    "addr",
    "replica",
    "generation",
    "index",
    "timestamp",
    "parallelism",
    "if-db-not-exists",
    "if-replica-exists",
    "follow",
    "interval",
    "follow-interval",
    "help",
    "version",
];

/// Rewrites Go-style `-name` flags into `--name`, up to a `--`.
pub fn normalize_args(args: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = false;
    for a in args {
        if rest {
            out.push(a);
            continue;
        }
        if a == "--" {
            rest = true;
            out.push(a);
            continue;
        }
        // Go also takes `--o=x` for the one-letter flag.
        if let Some(body) = a.strip_prefix("--")
            && body.split('=').next().is_some_and(|n| n.len() == 1)
        {
            out.push(format!("-{body}"));
            continue;
        }
        if let Some(body) = a.strip_prefix('-').filter(|b| !b.starts_with('-')) {
            let name = body.split('=').next().unwrap_or("");
            if LONG_FLAGS.contains(&name) {
                out.push(format!("-{a}"));
                continue;
            }
            if name == "h" {
                out.push("--help".into());
                continue;
            }
        }
        out.push(a);
    }
    out
}

/// For clap's "unexpected argument" error: the flag as the user wrote it (`-bogus`, which
/// clap reads as `-b`), and the flags the command takes, written the way the README writes
/// them (`-config`). `None` for any other error.
pub fn unknown_flag_message(raw_args: &[String], err: &clap::Error) -> Option<String> {
    use clap::CommandFactory;
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if err.kind() != ErrorKind::UnknownArgument {
        return None;
    }
    let Some(ContextValue::String(bad)) = err.get(ContextKind::InvalidArg) else {
        return None;
    };
    let sub = raw_args.get(1)?;
    // clap names `-b` for `-bogus` and `--bogus` for `--bogus`: find the word the user wrote.
    let written = raw_args
        .iter()
        .skip(2)
        .find(|a| {
            let name = a.split('=').next().unwrap_or(a);
            name == bad
                || (bad.len() == 2 && !bad.starts_with("--") && name.starts_with(bad.as_str()))
        })
        .cloned()
        .unwrap_or_else(|| bad.clone());
    let cmd = Cli::command();
    let sc = cmd.find_subcommand(sub)?;
    let mut flags: Vec<String> = sc
        .get_arguments()
        .filter(|a| !a.is_hide_set() && !a.is_positional())
        .filter_map(|a| match (a.get_long(), a.get_short()) {
            (Some(l), _) if l != "help" => Some(format!("-{l}")),
            (None, Some(c)) => Some(format!("-{c}")),
            _ => None,
        })
        .collect();
    flags.sort();
    Some(format!(
        "walship {sub}: unknown flag {written}; the flags of {sub} are: {} (see 'walship {sub} -h')",
        flags.join(", ")
    ))
}

/// Where a listing or restore reads from: the replicas of a configured database, or one
/// replica given by URL (or by a bare replica directory path).
pub struct Target {
    /// The database path, when it came from a config.
    pub db_path: Option<PathBuf>,
    /// The replicas, in config order.
    pub replicas: Vec<ReplicaSource>,
}

/// Resolves a positional `DB_PATH` or `REPLICA_URL` (or a bare replica directory, when no
/// `-config` was given) into replicas, keeping only `-replica NAME` if given.
///
/// With `filter_only` (restore), an unknown `-replica` leaves no replicas (and restore then
/// finds no backups, as Litestream's does) instead of being an error.
pub fn resolve_target(
    arg: &str,
    cfg: &ConfigArgs,
    replica: Option<&str>,
    filter_only: bool,
) -> Result<Target> {
    let from_url = |target: ReplicaTarget| -> Result<Target> {
        let name = target.type_name().to_string();
        if let Some(r) = replica
            && r != name
        {
            if filter_only {
                return Ok(Target {
                    db_path: None,
                    replicas: Vec::new(),
                });
            }
            bail!(
                "replica {r:?} not found for {arg:?} (a replica URL names one replica, called {name:?})"
            );
        }
        let client = backend::open(&target, Some(walship::metrics::operation_counter()))?;
        Ok(Target {
            db_path: None,
            replicas: vec![ReplicaSource { name, client }],
        })
    };
    if config::is_url(arg) {
        if cfg.config.is_some() {
            bail!("cannot specify a replica URL and the -config flag");
        }
        return from_url(ReplicaTarget::from_url(arg)?);
    }
    // A bare directory that holds a replica (or is empty) is a file replica when no config
    // was named: `walship restore -o out.db /backups/app`.
    let p = Path::new(arg);
    if cfg.config.is_none() && p.is_dir() {
        let abs = std::path::absolute(p).with_context(|| format!("resolve {arg}"))?;
        return from_url(ReplicaTarget::File { path: abs });
    }
    let loaded = cfg.load().with_context(|| {
        format!("{arg} is not a replica URL or directory, so it names a database in a config")
    })?;
    let abs = std::path::absolute(p).with_context(|| format!("resolve {arg}"))?;
    let in_dir;
    let db = match loaded.config.find_db(&abs) {
        Some(db) => db,
        None => {
            in_dir = loaded
                .config
                .find_db_in_dirs(&abs)
                .ok_or_else(|| anyhow!("database not found in config: {}", abs.display()))?;
            &in_dir
        }
    };
    let mut replicas = Vec::new();
    for rc in &db.replicas {
        if replica.is_some_and(|r| r != rc.name) {
            continue;
        }
        let client = rc
            .open(Some(walship::metrics::operation_counter()))
            .with_context(|| format!("replica {:?} of {}", rc.name, db.path.display()))?;
        replicas.push(ReplicaSource {
            name: rc.name.clone(),
            client,
        });
    }
    if let Some(r) = replica
        && replicas.is_empty()
        && !filter_only
    {
        bail!(
            "replica {r:?} not found for database {:?}",
            db.path.display().to_string()
        );
    }
    Ok(Target {
        db_path: Some(db.path.clone()),
        replicas,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_style_flags_become_long_flags() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            normalize_args(v(&[
                "walship",
                "restore",
                "-config",
                "x.yml",
                "-o",
                "out",
                "-if-db-not-exists",
                "-index=2",
                "db"
            ])),
            v(&[
                "walship",
                "restore",
                "--config",
                "x.yml",
                "-o",
                "out",
                "--if-db-not-exists",
                "--index=2",
                "db"
            ])
        );
        assert_eq!(
            normalize_args(v(&["w", "--config", "a", "--", "-config"])),
            v(&["w", "--config", "a", "--", "-config"])
        );
        assert_eq!(
            normalize_args(v(&["w", "restore", "-h"])),
            v(&["w", "restore", "--help"])
        );
    }
}
