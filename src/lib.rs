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
//! Module map, from the bottom up (imports only point down; `tests/layers.rs` holds the
//! table and fails when an import points up):
//!
//! | layer | module | what it holds |
//! |---|---|---|
//! | system | `platform` | what differs between Linux, macOS and Windows (positioned reads and writes, file identity, durable renames, the host name, the crash points' kill); nothing else has a `cfg` for these |
//! | formats | [`pos`], `layout`, `compress`, `sqlite`, [`error`], [`event`], `fault`, `busy`, `secret` | positions, remote path names, LZ4 frames, WAL parsing and checksums (pure, fuzzed); the error type; events; crash points for the crash tests; the locked-database log policy; secrets kept out of logs |
//! | helpers | `fsutil`, `metrics`, `watch` | durable local writes; Prometheus metrics (Litestream's names); file-change notifications for both directions |
//! | storage | [`backend`] | the [`ReplicaClient`] trait; [`backend::open`], the one place a client is built for a [`backend::ReplicaTarget`]; one module per backend (file, S3, GCS, Azure Blob, SFTP, HTTP: WebDAV or static), each with its settings type, and `age` encryption over any of them; knows no config, metrics or engine |
//! | config | [`config`] | `litestream.yml` types, defaults, env expansion, validation |
//! | reading back | [`restore`](mod@restore), `retention`, `validate` | restore plan (pure) and apply, PITR; what retention may delete; restore-and-compare validation |
//! | local state | `shadow`, `db` | the meta directory on disk (generation file, shadow WAL files, segment cuts); `Db`: tails one database, checkpoints, snapshots |
//! | running | `replica`, [`engine`], [`follow`] | `Replica`: one destination; [`Engine`]: every database and replica of a config (ships: db -> replica -> backend); [`follow::Follower`]: keeps a local copy of a replica's latest state (applies: backend -> restore -> copy) |
//! | serving | `server` (feature `server`) | the `addr:` HTTP server: `/metrics` and `/status` |
//! | hosting | `extension` (feature `extension`) | the SQLite loadable extension: SQL functions that run the engine inside any application that loads SQLite extensions |
//!
//! The stable API is what the crate root re-exports, with the [`engine`], [`follow`], [`config`],
//! [`restore`](mod@restore), [`backend`] and [`event`] modules it comes from. The modules hidden from
//! these docs (`db`, `replica`, `shadow`, `compress`, `layout`, `sqlite`, `retention`,
//! `metrics`, `fault`) are public only for walship's own command line, fuzzers, benches and tests,
//! and may change in any release.
#![warn(missing_docs)]

pub mod backend;
mod busy;
#[doc(hidden)]
pub mod compress;
pub mod config;
#[doc(hidden)]
pub mod db;
pub mod engine;
pub mod error;
pub mod event;
#[cfg(feature = "extension")]
mod extension;
#[doc(hidden)]
pub mod fault;
pub mod follow;
mod fsutil;
#[doc(hidden)]
pub mod layout;
#[doc(hidden)]
pub mod metrics;
mod platform;
pub mod pos;
#[doc(hidden)]
pub mod replica;
pub mod restore;
#[doc(hidden)]
pub mod retention;
mod secret;
#[cfg(feature = "server")]
pub mod server;
#[doc(hidden)]
pub mod shadow;
#[doc(hidden)]
pub mod sqlite;
mod validate;
mod watch;

pub use backend::ReplicaClient;
pub use backend::file::FileClient;
pub use config::{Config, LoadedConfig};
pub use engine::{Durability, Engine, EngineHandle};
pub use error::{Error, Result};
pub use event::{DbStatus, Event, ReplicaStatus};
pub use pos::{Generation, Pos};
pub use restore::{RestoreOptions, RestoreSummary, restore};
