//! One replicator per database: an advisory lock on a file in the meta directory, held for
//! as long as walship replicates the database.
//!
//! Two replicators on one database (two service units, a unit and a manual run, the same
//! database added twice to an embedded engine) would share the meta directory and its
//! shadow WAL and write over each other's generations. The second one is refused with an
//! error that names the first. The lock is `flock` on Unix and `LockFileEx` on Windows
//! (through `std::fs::File::try_lock`): it belongs to the open file, so it also refuses a
//! second engine inside the same process, and the operating system releases it when the
//! holder exits, however it exits. The lock file is walship's own (never the database or
//! its `-shm`, whose descriptors walship must not close: see `crate::sqlite::file`).
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;

use crate::error::{Error, Result};
use crate::fsutil::create_dir_all_synced;

/// The lock file's name in the meta directory.
pub const FILE: &str = "walship.lock";

/// The held lock; dropping it releases it.
#[derive(Debug)]
pub struct MetaLock {
    _file: File,
}

impl MetaLock {
    /// Takes the lock of `meta_dir` (created if missing) for the database `db`, or says who
    /// holds it.
    pub fn take(meta_dir: &Path, db: &Path) -> Result<MetaLock> {
        create_dir_all_synced(meta_dir)?;
        let path = meta_dir.join(FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(Error::io("open", &path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.split_whitespace().collect::<Vec<_>>().join(" ");
                return Err(Error::InUse(format!(
                    "{} is already replicated by another walship ({}), which holds {}: two \
                     replicators on one database overwrite each other's shadow WAL and \
                     generations; stop the other one first (or give this one its own \
                     database)",
                    db.display(),
                    if holder.is_empty() {
                        "starting up".to_string()
                    } else {
                        holder
                    },
                    path.display()
                )));
            }
            Err(TryLockError::Error(e)) => return Err(Error::io("lock", &path)(e)),
        }
        // Who holds it, for the error above. Not synced: it only serves messages.
        let holder = format!(
            "pid {} on {} since {}\n",
            std::process::id(),
            crate::platform::hostname(),
            crate::metrics::rfc3339(std::time::SystemTime::now())
        );
        let write = |f: &mut File| -> std::io::Result<()> {
            f.set_len(0)?;
            f.rewind()?;
            f.write_all(holder.as_bytes())
        };
        write(&mut file).map_err(Error::io("write", &path))?;
        Ok(MetaLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid_until_it_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let meta = dir.path().join(".app.db-litestream");
        let db = dir.path().join("app.db");
        let first = MetaLock::take(&meta, &db).unwrap();
        let err = MetaLock::take(&meta, &db).unwrap_err();
        assert!(matches!(err, Error::InUse(_)), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("pid {}", std::process::id())) && msg.contains("app.db"),
            "{msg}"
        );
        drop(first);
        MetaLock::take(&meta, &db).expect("free once the first lets go");
    }
}
