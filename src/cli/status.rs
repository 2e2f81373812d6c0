//! `walship status` (alias `replicas`): one row per database and replica, from a running
//! `walship replicate` (its `/status` at the config's `addr:`) when one answers, else
//! computed from the meta directory and the replicas themselves.
//!
//! Columns: `db replica type position lag last-sync last-error`. `position` is
//! Litestream's `<generation>/<index %08x>:<offset>`; `lag` is `<bytes>B/<seconds>s` from a
//! running walship and `<bytes>B` from disk (`?` when unknown: no position, or another
//! generation); `-` marks an empty cell.
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use walship::backend;
use walship::config::{Config, DbConfig, ReplicaConfig};
use walship::engine;
use walship::pos::Pos;
use walship::server;

use super::ConfigArgs;
use super::list::{format_time, tabulate};

/// How long to wait for a running walship to answer `GET /status`.
const LIVE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long to wait for one replica when computing from disk.
const REPLICA_TIMEOUT: Duration = Duration::from_secs(30);
/// `last-error` when the state comes from disk.
const UNKNOWN_ERROR: &str = "unknown (live from a running walship only)";

/// Arguments of `status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
}

fn header() -> Vec<String> {
    [
        "db",
        "replica",
        "type",
        "position",
        "lag",
        "last-sync",
        "last-error",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Runs `walship status`. Exits 0 even when a replica cannot be read (its error is shown).
pub async fn run(args: StatusArgs) -> Result<()> {
    let loaded = args.config.load()?;
    let config = loaded.config;
    let mut rows = vec![header()];
    let addr = config.addr.as_deref().filter(|a| !a.is_empty());
    let live = match addr {
        Some(a) => match fetch_live(a).await {
            Ok(v) => Some(v),
            Err(e) => {
                eprintln!(
                    "walship status: no running walship answers at addr {a:?} ({e:#}); showing the state on disk"
                );
                None
            }
        },
        None => {
            eprintln!(
                "walship status: no addr in the config; showing the state on disk (set addr: \
                 \":9090\" in the config, and restart walship replicate, for live status \
                 with each replica's last error)"
            );
            None
        }
    };
    match live {
        Some(v) => rows.extend(live_rows(&v)?),
        None => rows.extend(disk_rows(&config).await),
    }
    print!("{}", tabulate(&rows));
    let followers = follower_rows(&config).await;
    if followers.len() > 1 {
        println!();
        print!("{}", tabulate(&followers));
    }
    Ok(())
}

/// One row per database of the config that is a follower copy (`walship restore -f`
/// wrote its state file): where the copy is, when it last changed, how long that change
/// took to reach it from the replica, and the follower's last error.
async fn follower_rows(config: &Config) -> Vec<Vec<String>> {
    let mut rows = vec![
        [
            "follower copy",
            "replica",
            "position",
            "behind",
            "updated",
            "delay",
            "last-error",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>(),
    ];
    for dbc in &config.all_dbs() {
        let path = dbc.path.display().to_string();
        match walship::follow::recorded_status(&dbc.path) {
            Ok(None) => {}
            Ok(Some(st)) => {
                let p = st.position.as_ref();
                let behind = match p {
                    Some(p) => {
                        let rc = dbc.replicas.iter().find(|r| r.name == p.replica);
                        tokio::time::timeout(REPLICA_TIMEOUT, behind(rc, p))
                            .await
                            .unwrap_or_else(|_| format!("? (no answer within {REPLICA_TIMEOUT:?})"))
                    }
                    None => "-".into(),
                };
                rows.push(vec![
                    path,
                    dash(p.map(|p| p.replica.clone())),
                    dash(p.map(|p| Pos::new(p.generation, p.index, p.offset).to_string())),
                    behind,
                    dash(st.updated_at.map(format_time)),
                    dash(st.apply_delay.map(|d| format!("{:.3}s", d.as_secs_f64()))),
                    dash(st.last_error.clone()),
                ]);
            }
            Err(e) => rows.push(vec![
                path,
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                format!("{e:#}"),
            ]),
        }
    }
    rows
}

/// How far the replica is ahead of a follower copy at `p`: `0` when it holds nothing past
/// the copy's position in its generation, else the segments waiting and how long the
/// oldest has been there; other generations on the replica are mentioned.
async fn behind(rc: Option<&ReplicaConfig>, p: &walship::follow::FollowPosition) -> String {
    let Some(rc) = rc else {
        return format!("? (replica {:?} not in the config)", p.replica);
    };
    let res = async {
        let client = rc.open(None)?;
        let segs = backend::wal_segments(client.as_ref(), p.generation).await?;
        let gens = backend::generations(client.as_ref()).await?;
        anyhow::Ok((segs, gens))
    }
    .await;
    let (segs, gens) = match res {
        Ok(v) => v,
        Err(e) => return format!("? ({e:#})"),
    };
    let waiting: Vec<_> = segs
        .iter()
        .filter(|s| (s.index, u64::from(s.offset)) >= (p.index, p.offset))
        .collect();
    let mut out = match waiting.iter().map(|s| s.created).min() {
        None => "0".to_string(),
        Some(oldest) => format!(
            "{} segment(s), oldest {:.1}s",
            waiting.len(),
            SystemTime::now()
                .duration_since(oldest)
                .unwrap_or_default()
                .as_secs_f64()
        ),
    };
    if !gens.contains(&p.generation) {
        out.push_str("; its generation is gone from the replica");
    } else if gens.len() > 1 {
        out.push_str(&format!(
            "; {} other generation(s) on the replica",
            gens.len() - 1
        ));
    }
    out
}

/// `GET /status` from a running walship at `addr` (loopback when the host is empty or a
/// wildcard).
async fn fetch_live(addr: &str) -> Result<serde_json::Value> {
    let (host, port) = server::parse_addr(addr)?;
    let host = match host.as_str() {
        "" | "0.0.0.0" => "127.0.0.1".to_string(),
        "::" => "::1".to_string(),
        _ => host,
    };
    let fut = async {
        let mut s = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .with_context(|| format!("connect {host}:{port}"))?;
        let host_header = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        s.write_all(
            format!(
                "GET /status HTTP/1.1\r\nHost: {host_header}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        Ok::<_, anyhow::Error>(buf)
    };
    let buf = tokio::time::timeout(LIVE_TIMEOUT, fut)
        .await
        .map_err(|_| anyhow!("no answer within {LIVE_TIMEOUT:?}"))??;
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("not an HTTP response"))?;
    let head = String::from_utf8_lossy(&buf[..split]);
    let status_line = head.lines().next().unwrap_or_default();
    if status_line.split_whitespace().nth(1) != Some("200") {
        bail!("GET /status answered {status_line:?}");
    }
    let v: serde_json::Value =
        serde_json::from_slice(&buf[split + 4..]).context("GET /status: not JSON")?;
    if !v.get("dbs").is_some_and(|d| d.is_array()) {
        bail!("GET /status: not a walship status");
    }
    Ok(v)
}

fn json_pos(v: &serde_json::Value) -> Option<String> {
    let g = v.get("generation")?.as_str()?;
    let index = v.get("index")?.as_u64()?;
    let offset = v.get("offset")?.as_u64()?;
    Some(format!("{g}/{index:08x}:{offset}"))
}

fn dash(s: Option<String>) -> String {
    s.filter(|s| !s.is_empty()).unwrap_or_else(|| "-".into())
}

fn lag_cell(bytes: Option<u64>, seconds: Option<f64>) -> String {
    let b = bytes.map_or_else(|| "?".to_string(), |b| format!("{b}B"));
    match seconds {
        Some(s) => format!("{b}/{s:.1}s"),
        None => b,
    }
}

fn live_rows(v: &serde_json::Value) -> Result<Vec<Vec<String>>> {
    let mut rows = Vec::new();
    let dbs = v
        .get("dbs")
        .and_then(|d| d.as_array())
        .ok_or_else(|| anyhow!("GET /status: no dbs"))?;
    for d in dbs {
        let path = d
            .get("path")
            .and_then(|p| p.as_str())
            .unwrap_or("?")
            .to_string();
        let replicas = d
            .get("replicas")
            .and_then(|r| r.as_array())
            .cloned()
            .unwrap_or_default();
        if replicas.is_empty() {
            rows.push(vec![
                path.clone(),
                "-".into(),
                "-".into(),
                dash(d.get("position").and_then(json_pos)),
                "-".into(),
                "-".into(),
                "-".into(),
            ]);
        }
        for r in replicas {
            let s = |k: &str| r.get(k).and_then(|x| x.as_str()).map(str::to_string);
            rows.push(vec![
                path.clone(),
                dash(s("name")),
                dash(s("type")),
                dash(r.get("position").and_then(json_pos)),
                lag_cell(
                    r.get("lag_bytes").and_then(|x| x.as_u64()),
                    r.get("lag_seconds").and_then(|x| x.as_f64()),
                ),
                dash(s("last_sync")),
                dash(s("last_error")),
            ]);
        }
    }
    Ok(rows)
}

async fn disk_rows(config: &Config) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for dbc in &config.all_dbs() {
        let db_pos = walship::shadow::disk_position(&engine::db_options(dbc).meta_dir());
        let path = dbc.path.display().to_string();
        if dbc.replicas.is_empty() {
            rows.push(vec![
                path.clone(),
                "-".into(),
                "-".into(),
                dash(db_pos.map(|p| p.to_string())),
                "-".into(),
                "-".into(),
                "-".into(),
            ]);
        }
        for rc in &dbc.replicas {
            rows.push(disk_row(dbc, rc, db_pos).await);
        }
    }
    rows
}

async fn disk_row(dbc: &DbConfig, rc: &ReplicaConfig, db_pos: Option<Pos>) -> Vec<String> {
    let mut row = vec![
        dbc.path.display().to_string(),
        rc.name.clone(),
        rc.target.type_name().to_string(),
    ];
    let res = tokio::time::timeout(REPLICA_TIMEOUT, replica_state(rc, db_pos))
        .await
        .unwrap_or_else(|_| Err(anyhow!("no answer within {REPLICA_TIMEOUT:?}")));
    match res {
        Ok((pos, last_sync)) => row.extend([
            dash(pos.map(|p| p.to_string())),
            lag_cell(walship::event::lag_bytes(pos, db_pos), None),
            dash(last_sync.map(format_time)),
            UNKNOWN_ERROR.into(),
        ]),
        Err(e) => row.extend(["-".into(), "?".into(), "-".into(), format!("{e:#}")]),
    }
    row
}

/// The replica's position in the database's generation and its newest object's time.
async fn replica_state(
    rc: &ReplicaConfig,
    db_pos: Option<Pos>,
) -> Result<(Option<Pos>, Option<SystemTime>)> {
    let client = rc.open(None)?;
    let Some(g) = db_pos.map(|p| p.generation) else {
        return Ok((None, None));
    };
    let pos = backend::replica_position(client.as_ref(), g).await?;
    let snaps = backend::snapshots(client.as_ref(), g).await?;
    let segs = backend::wal_segments(client.as_ref(), g).await?;
    let newest = snaps
        .iter()
        .map(|s| s.created)
        .chain(segs.iter().map(|s| s.created))
        .max();
    Ok((pos, newest))
}
