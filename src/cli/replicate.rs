//! `walship replicate`.
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use tracing::{info, warn};

use walship::backend;
use walship::config::{self, ReplicaTarget};
use walship::db::DbOptions;
use walship::engine::Engine;
use walship::replica::ReplicaOptions;
use walship::server::MetricsListener;

use super::ConfigArgs;

/// Arguments of `replicate`.
#[derive(Debug, Args)]
pub struct ReplicateArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Run this command as a child process (split like a shell would, no shell involved);
    /// SIGINT/SIGTERM are forwarded to it, and when it exits walship syncs one last time
    /// and exits with the child's exit code.
    #[arg(long = "exec", value_name = "CMD")]
    pub exec: Option<String>,
    /// Serve Prometheus metrics (`/metrics`) and JSON status (`/status`) on this address,
    /// e.g. `:9090` (all interfaces) or `127.0.0.1:9090`; overrides the config's `addr:`.
    #[arg(long = "addr", value_name = "ADDR")]
    pub addr: Option<String>,
    /// Without -config: DB_PATH followed by one or more REPLICA_URLs.
    #[arg(value_name = "DB_PATH REPLICA_URL")]
    pub args: Vec<String>,
}

/// Builds the engine the arguments describe, the command to run beside it (`-exec`,
/// else the config's `exec:`) and the metrics address (`-addr`, else the config's `addr:`).
pub fn build(args: &ReplicateArgs) -> Result<(Engine, Option<String>, Option<String>)> {
    if args.args.is_empty() {
        let loaded = args.config.load()?;
        let exec = args.exec.clone().or(loaded.config.exec.clone());
        let addr = args.addr.clone().or(loaded.config.addr.clone());
        return Ok((Engine::from_config(&loaded.config)?, exec, addr));
    }
    if args.config.config.is_some() {
        bail!(
            "cannot specify a database path and the -config flag together; put the database in the config file or drop -config"
        );
    }
    let db_path = PathBuf::from(&args.args[0]);
    if config::is_url(&args.args[0]) {
        bail!(
            "the first argument must be a database path, not a URL: {}",
            args.args[0]
        );
    }
    if args.args.len() < 2 {
        bail!(
            "must specify at least one replica URL for {}",
            db_path.display()
        );
    }
    let db_path =
        std::path::absolute(&db_path).with_context(|| format!("resolve {}", db_path.display()))?;
    let mut replicas = Vec::new();
    let mut names = std::collections::BTreeSet::new();
    for url in &args.args[1..] {
        let target = ReplicaTarget::from_url(url).with_context(|| format!("replica URL {url}"))?;
        let name = target.type_name().to_string();
        if !names.insert(name.clone()) {
            bail!(
                "duplicate replica name {name:?}: give each replica its own type, or use a config file with name: keys"
            );
        }
        let client = backend::open(&target, Some(walship::metrics::operation_counter()))?;
        replicas.push((client, ReplicaOptions::new(name)));
    }
    let mut e = Engine::new();
    e.add_db(DbOptions::new(db_path), replicas);
    Ok((e, args.exec.clone(), args.addr.clone()))
}

/// Runs `walship replicate` until SIGINT or SIGTERM (a second signal exits at once), or,
/// with `-exec`, until the child exits. Returns the exit code.
pub async fn run(args: ReplicateArgs) -> Result<u8> {
    let (engine, exec, addr) = build(&args)?;
    info!(version = env!("CARGO_PKG_VERSION"), "walship");
    engine.claim().await?;
    engine.check_writable().await?;
    // Bound before the engine starts, so a bad or busy address fails at once.
    let listener = match addr.as_deref().filter(|a| !a.is_empty()) {
        Some(a) => Some(MetricsListener::bind(a).await?),
        None => None,
    };
    let Some(cmd) = exec else {
        let handle = engine.start();
        let server = listener.map(|l| l.serve(handle.clone()));
        let stop = super::next_stop().await;
        tokio::spawn(async {
            super::next_stop().await;
            warn!("second signal received, exiting at once");
            std::process::exit(1);
        });
        info!(%stop, "walship shutting down");
        let r = handle.shutdown().await;
        if let Some(s) = server {
            s.stop().await;
        }
        r?;
        return Ok(0);
    };
    let argv = super::process::split_command(&cmd)
        .with_context(|| format!("-exec {cmd:?}: cannot split into arguments"))?;
    let Some((prog, rest)) = argv.split_first() else {
        bail!("-exec is empty");
    };
    let handle = engine.start();
    let server = listener.map(|l| l.serve(handle.clone()));
    let mut child = match tokio::process::Command::new(prog)
        .args(rest)
        .stdin(std::process::Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            let _ = handle.shutdown().await;
            bail!("-exec: cannot start {prog:?}: {e}");
        }
    };
    let status = loop {
        tokio::select! {
            st = child.wait() => break st.with_context(|| format!("wait for {prog:?}"))?,
            stop = super::next_stop() => {
                info!(%stop, "passing the stop request on to the child process");
                super::process::forward(&mut child, stop);
            }
        }
    };
    let code = super::process::exit_code(status);
    info!(code, "subprocess exited, walship shutting down");
    let shutdown = handle.shutdown().await;
    if let Some(s) = server {
        s.stop().await;
    }
    if let Err(e) = shutdown {
        warn!(error = %e, "final sync failed");
        // The child's success must not hide a failed final sync.
        return Ok(if code == 0 {
            1
        } else {
            u8::try_from(code).unwrap_or(1)
        });
    }
    Ok(u8::try_from(code).unwrap_or(1))
}
