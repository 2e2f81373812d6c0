//! `snapshots`, `generations`, `wal`, `databases`: Litestream's listings, same columns.
use std::time::SystemTime;

use anyhow::Result;
use clap::Args;

use walship::backend;
use walship::config::GoDuration;
use walship::pos::Generation;

use super::{ConfigArgs, resolve_target};

/// Arguments of `snapshots` and `generations`.
#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Only this replica.
    #[arg(long = "replica", value_name = "NAME")]
    pub replica: Option<String>,
    /// DB_PATH (looked up in the config) or REPLICA_URL (or a replica directory).
    #[arg(value_name = "DB_PATH|REPLICA_URL")]
    pub target: Option<String>,
}

/// Arguments of `wal`.
#[derive(Debug, Args)]
pub struct WalArgs {
    #[command(flatten)]
    pub list: ListArgs,
    /// Only this generation.
    #[arg(long = "generation", value_name = "NAME")]
    pub generation: Option<Generation>,
}

/// Formats rows like Go's tabwriter with padding 2: every column but the last is padded to
/// its widest cell plus two spaces.
pub fn tabulate(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; cols];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i + 1 < r.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let mut out = String::new();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i + 1 < r.len() {
                out.push_str(c);
                out.extend(std::iter::repeat_n(' ', widths[i] + 2 - c.chars().count()));
            } else {
                out.push_str(c);
            }
        }
        out.push('\n');
    }
    out
}

/// RFC 3339, UTC, whole seconds: `2026-11-21T22:43:33Z`.
pub fn format_time(t: SystemTime) -> String {
    walship::metrics::rfc3339(t)
}

/// Litestream's lag display: truncated to 1s above 10s, 0.1s above 1s, 1ms above 1ms,
/// 1µs above 1µs.
fn format_lag(nanos: i64) -> String {
    let a = nanos.unsigned_abs() as i64;
    let unit = if a > 10_000_000_000 {
        1_000_000_000
    } else if a > 1_000_000_000 {
        100_000_000
    } else if a > 1_000_000 {
        1_000_000
    } else if a > 1_000 {
        1_000
    } else {
        1
    };
    GoDuration::from_nanos(nanos / unit * unit).to_string()
}

fn signed_nanos(a: SystemTime, b: SystemTime) -> i64 {
    match a.duration_since(b) {
        Ok(d) => d.as_nanos().min(i64::MAX as u128) as i64,
        Err(e) => -(e.duration().as_nanos().min(i64::MAX as u128) as i64),
    }
}

fn required(args: &ListArgs, what: &str) -> Result<String> {
    args.target.clone().ok_or_else(|| anyhow::anyhow!("{what}"))
}

/// `walship snapshots`.
pub async fn snapshots(args: ListArgs) -> Result<()> {
    let arg = required(&args, "database path required")?;
    let t = resolve_target(&arg, &args.config, args.replica.as_deref(), false)?;
    let mut rows = vec![
        vec!["replica", "generation", "index", "size", "created"]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>(),
    ];
    for r in &t.replicas {
        let res: walship::Result<()> = async {
            for g in backend::generations(r.client.as_ref()).await? {
                for s in backend::snapshots(r.client.as_ref(), g).await? {
                    rows.push(vec![
                        r.name.clone(),
                        g.to_string(),
                        s.index.to_string(),
                        s.size.to_string(),
                        format_time(s.created),
                    ]);
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = res {
            tracing::error!(replica = %r.name, error = %e, "cannot list snapshots");
        }
    }
    print!("{}", tabulate(&rows));
    Ok(())
}

/// `walship wal`.
pub async fn wal(args: WalArgs) -> Result<()> {
    let arg = required(&args.list, "database path required")?;
    let t = resolve_target(&arg, &args.list.config, args.list.replica.as_deref(), false)?;
    let mut rows = vec![
        vec![
            "replica",
            "generation",
            "index",
            "offset",
            "size",
            "created",
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>(),
    ];
    for r in &t.replicas {
        let res: walship::Result<()> = async {
            for g in backend::generations(r.client.as_ref()).await? {
                if args.generation.is_some_and(|want| want != g) {
                    continue;
                }
                for s in backend::wal_segments(r.client.as_ref(), g).await? {
                    rows.push(vec![
                        r.name.clone(),
                        g.to_string(),
                        s.index.to_string(),
                        s.offset.to_string(),
                        s.size.to_string(),
                        format_time(s.created),
                    ]);
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = res {
            tracing::error!(replica = %r.name, error = %e, "cannot list wal segments");
        }
    }
    print!("{}", tabulate(&rows));
    Ok(())
}

/// `walship generations`.
pub async fn generations(args: ListArgs) -> Result<()> {
    let arg = required(&args, "database path or replica URL required")?;
    let t = resolve_target(&arg, &args.config, args.replica.as_deref(), false)?;
    // Lag is measured from the database's last change in config mode, from now otherwise.
    let reference = match &t.db_path {
        Some(p) => {
            let mut wal = p.as_os_str().to_owned();
            wal.push("-wal");
            [p.clone(), wal.into()]
                .iter()
                .filter_map(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok())
                .max()
                .unwrap_or_else(SystemTime::now)
        }
        None => SystemTime::now(),
    };
    let mut rows = vec![
        vec!["name", "generation", "lag", "start", "end"]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>(),
    ];
    for r in &t.replicas {
        let res: walship::Result<()> = async {
            for g in backend::generations(r.client.as_ref()).await? {
                let snaps = backend::snapshots(r.client.as_ref(), g).await?;
                let segs = backend::wal_segments(r.client.as_ref(), g).await?;
                let times: Vec<SystemTime> = snaps
                    .iter()
                    .map(|s| s.created)
                    .chain(segs.iter().map(|s| s.created))
                    .collect();
                let (Some(start), Some(end)) = (times.iter().min(), times.iter().max()) else {
                    continue;
                };
                rows.push(vec![
                    r.name.clone(),
                    g.to_string(),
                    format_lag(signed_nanos(reference, *end)),
                    format_time(*start),
                    format_time(*end),
                ]);
            }
            Ok(())
        }
        .await;
        if let Err(e) = res {
            tracing::error!(replica = %r.name, error = %e, "cannot list generations");
        }
    }
    print!("{}", tabulate(&rows));
    Ok(())
}

/// `walship databases`.
pub fn databases(args: super::DatabasesArgs) -> Result<()> {
    if !args.extra.is_empty() {
        anyhow::bail!("too many arguments");
    }
    let loaded = args.config.load()?;
    let mut rows = vec![vec!["path".to_string(), "replicas".to_string()]];
    // Directory entries list the databases they hold now.
    for db in &loaded.config.all_dbs() {
        rows.push(vec![
            db.path.display().to_string(),
            db.replicas
                .iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>()
                .join(","),
        ]);
    }
    print!("{}", tabulate(&rows));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tabwriter_layout_matches_litestream() {
        let rows = vec![
            vec![
                "replica".to_string(),
                "generation".into(),
                "index".into(),
                "size".into(),
                "created".into(),
            ],
            vec![
                "local".to_string(),
                "e30b4b636b0988ea".into(),
                "0".into(),
                "1234".into(),
                "2026-11-21T22:43:33Z".into(),
            ],
        ];
        assert_eq!(
            tabulate(&rows),
            "replica  generation        index  size  created\nlocal    e30b4b636b0988ea  0      1234  2026-11-21T22:43:33Z\n"
        );
    }

    #[test]
    fn lag_truncation() {
        assert_eq!(format_lag(-5_123_456), "-5ms");
        assert_eq!(format_lag(1_881_234_567_890), "31m21s");
        assert_eq!(format_lag(2_345_678_901), "2.3s");
        assert_eq!(format_lag(0), "0s");
    }

    #[test]
    fn time_format() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_795_301_013);
        assert_eq!(format_time(t), "2026-11-21T22:43:33Z");
    }
}
