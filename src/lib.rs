//! walship: a SQLite WAL replication engine, byte-compatible with Litestream v0.3.13.
//!
//! It tails each database's WAL, keeps a shadow WAL beside the database, and ships
//! LZ4-compressed snapshots and WAL segments to replicas in Litestream's layout, so the
//! real Litestream can restore what walship writes and walship restores what Litestream
//! writes. It runs as the `walship` command (a drop-in for `litestream`) or embedded in an
//! application on its tokio runtime.
//!
//! Embedding, in short (see [`engine`] and `examples/embedded.rs`):
//!
//! ```no_run
//! # async fn demo(mut app: rusqlite::Connection) -> walship::Result<()> {
//! use std::time::Duration;
//! use walship::engine::{Durability, Engine};
//!
//! let config = walship::config::Config::load("litestream.yml".as_ref(), true)?.config;
//! let walship = Engine::from_config(&config)?.start(); // on the caller's tokio runtime
//! walship.attach(&mut app)?; // commits wake walship; walship owns checkpoints
//! app.execute("INSERT INTO orders(item) VALUES ('book')", []).ok();
//! walship
//!     .wait_durable("/data/app.db".as_ref(), Durability::AllReplicas, Duration::from_secs(5))
//!     .await?; // now the order is off the machine: acknowledge it
//! walship.shutdown().await?; // final sync
//! # Ok(())
//! # }
//! ```
//!
//! Module map:
//!
//! | module | what it holds |
//! |---|---|
//! | [`pos`] | [`Generation`], [`Pos`] |
//! | [`layout`] | formats and parses every remote path (pure) |
//! | [`compress`] | Litestream-compatible LZ4 frames (pure) |
//! | [`sqlite`] | WAL header/frame parsing and checksums (pure) |
//! | [`backend`] | the [`ReplicaClient`](backend::ReplicaClient) trait; file, S3, WebDAV and static-HTTP backends |
//! | [`config`] | `litestream.yml` types, defaults, env expansion, validation |
//! | [`db`] | [`Db`](db::Db): tails one database, keeps the shadow WAL |
//! | [`replica`] | [`Replica`](replica::Replica): ships one database to one destination |
//! | [`restore`] | restore plan (pure) and apply |
//! | [`engine`] | [`Engine`](engine::Engine): runs every database and replica of a config |
//! | [`event`] | events and status for embedding applications |
//! | [`fault`] | crash points for the crash tests (`WALSHIP_FAULT`) |
//! | [`retention`] | what retention may delete (pure) and deleting it |
//! | [`validate`] | validation: restore a replica at a position, compare pages with the database |
//! | [`metrics`] | Prometheus metrics (Litestream's names) |
//! | `server` | the `addr:` HTTP server (`/metrics`, `/status`), above the engine; feature `server` |
pub mod backend;
mod busy;
pub mod compress;
pub mod config;
pub mod db;
pub mod engine;
pub mod error;
pub mod event;
pub mod fault;
mod fsutil;
pub mod layout;
pub mod metrics;
pub mod pos;
pub mod replica;
pub mod restore;
pub mod retention;
#[cfg(feature = "server")]
pub mod server;
pub mod sqlite;
pub mod validate;

pub use error::{Error, Result};
pub use pos::{Generation, Pos};
