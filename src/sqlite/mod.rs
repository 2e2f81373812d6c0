//! SQLite file formats and the engine's own connection.
pub mod conn;
pub mod wal;
