//! `walship restore`.
use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tracing::info;

use walship::Error;
use walship::pos::Generation;
use walship::restore::{self, Progress, RestoreOptions};

use super::{ConfigArgs, resolve_target};

/// Arguments of `restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Output path (default: the database path from the config, which must not exist).
    #[arg(short = 'o', value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// Restore from this replica only.
    #[arg(long = "replica", value_name = "NAME")]
    pub replica: Option<String>,
    /// Restore from this generation.
    #[arg(long = "generation", value_name = "NAME")]
    pub generation: Option<Generation>,
    /// Restore up to and including this WAL index (hexadecimal).
    #[arg(long = "index", value_name = "HEX", value_parser = parse_hex_index)]
    pub index: Option<u32>,
    /// Restore to this point in time (RFC 3339, e.g. 2026-11-21T10:00:00Z).
    #[arg(long = "timestamp", value_name = "RFC3339")]
    pub timestamp: Option<String>,
    /// Number of WAL segments downloaded at once.
    #[arg(long = "parallelism", value_name = "N", default_value_t = 8)]
    pub parallelism: usize,
    /// Exit 0 without restoring if the output database already exists.
    #[arg(long = "if-db-not-exists")]
    pub if_db_not_exists: bool,
    /// Exit 0 without restoring if no backup is found.
    #[arg(long = "if-replica-exists")]
    pub if_replica_exists: bool,
    /// Follow: after restoring, keep the output up to date with the replica until
    /// SIGINT/SIGTERM, applying only what changed (a WAL-mode copy that SQLite programs
    /// read while it is updated; a restart resumes where the copy is).
    #[arg(short = 'f', long = "follow")]
    pub follow: bool,
    /// How often follow mode looks for changes (Go duration). A file replica is watched
    /// instead, and looked at when it changes.
    #[arg(
        long = "interval",
        visible_alias = "follow-interval",
        value_name = "DURATION",
        default_value = "1s"
    )]
    pub interval: String,
    /// Follow mode: once the copy is ready, run this command beside the follower (e.g. the
    /// service that reads the copy); signals are passed on to it, and walship exits with its
    /// exit code when it ends. A follower that must stop (the copy was written by another
    /// program) stops the command with SIGTERM.
    #[arg(long = "exec", value_name = "CMD", requires = "follow")]
    pub exec: Option<String>,
    /// Follow mode: serve the follower's metrics (`/metrics`) and status (`/status`) on
    /// this address, e.g. `:9091` or `127.0.0.1:9091`.
    #[arg(long = "addr", value_name = "ADDR", requires = "follow")]
    pub addr: Option<String>,
    /// DB_PATH (looked up in the config) or REPLICA_URL (or a replica directory).
    #[arg(value_name = "DB_PATH|REPLICA_URL")]
    pub target: Option<String>,
}

fn parse_hex_index(s: &str) -> Result<u32, String> {
    let v = u32::from_str_radix(s, 16)
        .map_err(|_| format!("invalid value {s:?} for flag -index: invalid hexadecimal format"))?;
    if v > walship::pos::MAX_INDEX {
        return Err(format!(
            "invalid value {s:?} for flag -index: above the largest index 7fffffff"
        ));
    }
    Ok(v)
}

/// A progress bar on a terminal; `None` (plain log lines) otherwise.
fn progress_bar() -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let b = indicatif::ProgressBar::new(0);
    b.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} restoring [{bar:30}] {pos}/{len} wal segments {msg}",
        )
        .ok()?
        .progress_chars("=> "),
    );
    b.enable_steady_tick(std::time::Duration::from_millis(200));
    Some(b)
}

fn parse_timestamp(s: &str) -> Result<SystemTime> {
    let t = OffsetDateTime::parse(s, &Rfc3339).map_err(|_| {
        anyhow!(
            "invalid -timestamp {s:?}, must specify in ISO 8601 format (e.g. 2000-01-01T00:00:00Z)"
        )
    })?;
    Ok(t.into())
}

/// Runs `walship restore`.
pub async fn run(args: RestoreArgs) -> Result<()> {
    let arg = args
        .target
        .clone()
        .ok_or_else(|| anyhow!("database path or replica URL required"))?;
    if args.index.is_some() && args.timestamp.is_some() {
        bail!("cannot specify index & timestamp to restore");
    }
    let timestamp = args.timestamp.as_deref().map(parse_timestamp).transpose()?;
    let target = match resolve_target(&arg, &args.config, args.replica.as_deref(), true) {
        // Litestream's meaning of the flag: nothing to restore from is not an error.
        Err(e) if args.if_replica_exists && e.is::<super::NoConfig>() => {
            info!("no replica at {arg:?} and no config file to find one in ({e:#})");
            return Ok(());
        }
        other => other?,
    };
    let output = match (&args.output, &target.db_path) {
        (Some(o), _) => o.clone(),
        (None, Some(db)) => db.clone(),
        (None, None) => bail!("output path required (-o PATH)"),
    };
    let output = std::path::absolute(&output).unwrap_or(output);
    let resume = args.follow && walship::follow::state_path(&output).exists();
    if output.exists() && !resume {
        if args.if_db_not_exists {
            info!(path = %output.display(), "database already exists, skipping");
            return Ok(());
        }
        bail!(
            "cannot restore, output path already exists: {} (remove it or choose another -o)",
            output.display()
        );
    }
    let opts = RestoreOptions {
        generation: args.generation,
        index: args.index,
        timestamp,
        parallelism: args.parallelism.max(1),
    };
    if args.follow {
        if opts.index.is_some() || opts.timestamp.is_some() || opts.generation.is_some() {
            bail!("follow mode follows the latest state: drop -index, -timestamp and -generation");
        }
        let code = follow(
            &target,
            &output,
            &opts,
            &args.interval,
            args.exec.as_deref(),
            args.addr.as_deref(),
        )
        .await?;
        if code != 0 {
            std::process::exit(code);
        }
        return Ok(());
    }
    let progress = progress_reporter();
    match restore::restore(&target.replicas, &output, &opts, &progress).await {
        Ok(summary) => {
            info!(
                path = %output.display(),
                replica = %summary.plan_replica,
                generation = %summary.generation,
                snapshot_index = summary.snapshot_index,
                segments = summary.segments_applied,
                bytes = summary.db_bytes,
                "restore complete"
            );
            Ok(())
        }
        Err(Error::NoMatchingBackups) if args.if_replica_exists => {
            info!("no matching backups found");
            Ok(())
        }
        Err(Error::NoMatchingBackups) if args.generation.is_some() => {
            let there = generations_on(&target).await;
            Err(anyhow!(
                "no matching backups found: generation {} is not on {}; {there}",
                args.generation.map(|g| g.to_string()).unwrap_or_default(),
                if target.replicas.len() == 1 {
                    "the replica"
                } else {
                    "any replica"
                }
            ))
        }
        Err(Error::NoMatchingBackups) => Err(anyhow!(
            "no matching backups found: {}; check the path or URL (walship generations lists \
             what a replica holds)",
            what_is_there(&target).await
        )),
        Err(e) => Err(e.into()),
    }
}

/// What each replica of `target` holds, for "no matching backups found": a replica
/// directory that does not exist (a typo) says so.
async fn what_is_there(target: &super::Target) -> String {
    let mut parts = Vec::new();
    for r in &target.replicas {
        let loc = r.client.location();
        let what = match walship::backend::generations(r.client.as_ref()).await {
            Ok(gs) if gs.is_empty() => {
                if r.client.type_name() == "file" && !std::path::Path::new(&loc).exists() {
                    format!("{loc} does not exist")
                } else {
                    format!("{loc} holds no generations")
                }
            }
            Ok(gs) => format!(
                "{loc} has {} generation(s), none with a backup that matches",
                gs.len()
            ),
            Err(e) => format!("{loc} cannot be listed ({e})"),
        };
        parts.push(format!("replica {}: {what}", r.name));
    }
    parts.join("; ")
}

/// `restore -f`: keeps `output` following the replica until SIGINT or SIGTERM, or, with
/// `-exec`, until the command exits. Returns the exit code.
async fn follow(
    target: &super::Target,
    output: &std::path::Path,
    opts: &RestoreOptions,
    interval_text: &str,
    exec: Option<&str>,
    addr: Option<&str>,
) -> Result<i32> {
    use walship::follow::{FollowOptions, Follower};
    let interval = walship::config::parse_go_duration(interval_text)
        .ok()
        .and_then(|d| d.to_std())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            anyhow!(
                "invalid -interval {:?}: want a positive duration such as 1s or 500ms",
                interval_text
            )
        })?;
    let argv = match exec {
        Some(cmd) => {
            let argv = super::process::split_command(cmd)
                .with_context(|| format!("-exec {cmd:?}: cannot split into arguments"))?;
            if argv.is_empty() {
                bail!("-exec is empty");
            }
            Some(argv)
        }
        None => None,
    };
    // Bound before following starts, so a bad or busy address fails at once.
    let listener = match addr.filter(|a| !a.is_empty()) {
        #[cfg(feature = "server")]
        Some(a) => Some(walship::server::MetricsListener::bind(a).await?),
        #[cfg(not(feature = "server"))]
        Some(_) => bail!("-addr: this walship was built without the server feature"),
        None => None,
    };
    info!(path = %output.display(), ?interval, "following replica");
    let mut follower = Follower::start(
        target.replicas.clone(),
        output.to_path_buf(),
        FollowOptions {
            interval,
            parallelism: opts.parallelism.max(1),
        },
    );
    let mut updates = follower.subscribe();
    #[cfg(feature = "server")]
    let _server = listener.map(|l| l.serve_follower(output.to_path_buf(), follower.subscribe()));
    #[cfg(not(feature = "server"))]
    let _ = listener;
    let mut child: Option<tokio::process::Child> = None;
    let mut ready = false;
    let code = loop {
        if !ready && updates.borrow().position.is_some() {
            ready = true;
            info!(path = %output.display(), "follow: the copy is ready");
            if let Some(argv) = &argv {
                let (prog, rest) = argv.split_first().expect("checked non-empty");
                match tokio::process::Command::new(prog)
                    .args(rest)
                    .stdin(std::process::Stdio::null())
                    .spawn()
                {
                    Ok(c) => child = Some(c),
                    Err(e) => {
                        let _ = follower.shutdown().await;
                        bail!("-exec: cannot start {prog:?}: {e}");
                    }
                }
            }
        }
        tokio::select! {
            r = follower.wait() => {
                if let Some(c) = child.as_mut() {
                    super::process::stop_child(c).await;
                }
                r?;
                break 0;
            }
            st = async { child.as_mut().expect("guarded").wait().await }, if child.is_some() => {
                let st = st.context("wait for the -exec command")?;
                let code = super::process::exit_code(st);
                info!(code, "follow: the -exec command exited, stopping");
                follower.shutdown().await?;
                break code;
            }
            stop = super::next_stop() => {
                match child.as_mut() {
                    Some(c) => {
                        info!(%stop, "passing the stop request on to the -exec command");
                        super::process::forward(c, stop);
                    }
                    None => {
                        info!(%stop, "follower stopping");
                        follower.shutdown().await?;
                        break 0;
                    }
                }
            }
            _ = updates.changed() => {
                let s = updates.borrow_and_update().clone();
                if let Some(p) = &s.position {
                    tracing::debug!(
                        path = %output.display(),
                        generation = %p.generation,
                        index = p.index,
                        offset = p.offset,
                        delay = ?s.apply_delay,
                        "follow: updated"
                    );
                }
            }
        }
    };
    Ok(code)
}

/// Progress of a restore: a bar on a terminal, else a log line every tenth of a long run of
/// segments.
fn progress_reporter() -> impl Fn(Progress) + Send + Sync {
    let bar = progress_bar();
    move |p: Progress| {
        if let Some(b) = &bar {
            match p {
                Progress::Snapshot { bytes } => {
                    b.set_message(format!("snapshot {} KiB", bytes / 1024))
                }
                Progress::Segment { done, total } => {
                    b.set_length(total as u64);
                    b.set_position(done as u64);
                }
                Progress::Verifying => b.set_message("integrity_check"),
                Progress::Done => b.finish_and_clear(),
            }
            return;
        }
        if let Progress::Segment { done, total } = p
            && total >= 100
            && (done.is_multiple_of((total / 10).max(1)) || done == total)
        {
            info!(done, total, "applying wal segments");
        }
    }
}

/// The generations each replica of `target` holds, said for an error message.
async fn generations_on(target: &super::Target) -> String {
    let mut parts = Vec::new();
    for r in &target.replicas {
        let list = match walship::backend::generations(r.client.as_ref()).await {
            Ok(gs) if gs.is_empty() => "none".to_string(),
            Ok(gs) => gs
                .iter()
                .map(|g| g.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            Err(e) => format!("cannot list ({e})"),
        };
        parts.push(format!("{} has {list}", r.name));
    }
    format!("{} (see walship generations)", parts.join("; "))
}
