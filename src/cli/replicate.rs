//! `walship replicate`.
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use tracing::{info, warn};

use walship::config::{self, ReplicaTarget};
use walship::db::DbOptions;
use walship::engine::{self, Engine};
use walship::replica::ReplicaOptions;

use super::ConfigArgs;

/// Arguments of `replicate`.
#[derive(Debug, Args)]
pub struct ReplicateArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Run this command as a child process and stop when it exits (not supported yet).
    #[arg(long = "exec", value_name = "CMD")]
    pub exec: Option<String>,
    /// Without -config: DB_PATH followed by one or more REPLICA_URLs.
    #[arg(value_name = "DB_PATH REPLICA_URL")]
    pub args: Vec<String>,
}

/// Builds the engine the arguments describe.
pub fn build(args: &ReplicateArgs) -> Result<Engine> {
    if args.exec.is_some() {
        bail!("-exec is not supported by this walship build yet; run the application separately");
    }
    if args.args.is_empty() {
        let loaded = args.config.load()?;
        if loaded.config.exec.is_some() {
            bail!(
                "the config's exec: key is not supported by this walship build yet; run the application separately"
            );
        }
        return Ok(Engine::from_config(&loaded.config)?);
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
        replicas.push((engine::client_for(&target)?, ReplicaOptions::new(name)));
    }
    let mut e = Engine::new();
    e.add_db(DbOptions::new(db_path), replicas);
    Ok(e)
}

/// Runs `walship replicate` until SIGINT or SIGTERM; a second signal exits at once.
pub async fn run(args: ReplicateArgs) -> Result<()> {
    let engine = build(&args)?;
    info!(version = env!("CARGO_PKG_VERSION"), "walship");
    let shutdown = async {
        wait_for_signal().await;
        tokio::spawn(async {
            wait_for_signal().await;
            warn!("second signal received, exiting at once");
            std::process::exit(1);
        });
    };
    engine.run(shutdown).await?;
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut i), Ok(mut t)) => {
            tokio::select! {
                _ = i.recv() => {}
                _ = t.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
