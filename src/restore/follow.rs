//! Follow mode: keep a local read-only copy of a replica up to date.
//!
//! Each time the replica holds something new (a new WAL segment, snapshot or generation),
//! the latest state is restored into a temporary file beside the copy (with every check a
//! normal restore makes), switched to rollback-journal mode, and renamed over the copy. A
//! reader that opens the copy always gets a whole, verified database; one that has it open
//! keeps reading the version it opened. The cost of an update is a full restore (fine for
//! databases of up to a few hundred MB; applying only the new frames is future work).
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Plan, ReplicaSource, RestoreOptions, plan, restore};
use crate::error::{Error, Result};
use crate::fsutil::sync_dir;

/// What identifies the state a plan restores to.
fn plan_key(p: &Plan) -> (String, crate::pos::Generation, u32, Option<(u32, u32, u64)>) {
    (
        p.replica.clone(),
        p.generation,
        p.snapshot.index,
        p.segments.last().map(|s| (s.index, s.offset, s.size)),
    )
}

fn temp_beside(output: &Path) -> PathBuf {
    let mut r = [0u8; 8];
    let _ = getrandom::fill(&mut r);
    let name = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    output.with_file_name(format!(".{name}.follow-{:016x}.tmp", u64::from_be_bytes(r)))
}

/// Sets the database header's read/write version bytes (18, 19) to 1: rollback-journal
/// mode, so readers of the copy never create or use a `-wal`/`-shm` that a later rename
/// would leave pointing at another file.
fn to_rollback_mode(path: &Path) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(Error::io("open", path))?;
    f.write_all_at(&[1, 1], 18)
        .map_err(Error::io("write", path))?;
    f.sync_all().map_err(Error::io("fsync", path))
}

/// Keeps `output` a restored copy of the latest state of `replicas`, checking every
/// `interval`, until `stop` completes. `on_update` is called after each update with the
/// plan it applied. `output` must not exist when following starts.
pub async fn follow(
    replicas: &[ReplicaSource],
    output: &Path,
    opts: &RestoreOptions,
    interval: Duration,
    stop: impl Future<Output = ()>,
    on_update: &(dyn Fn(&Plan) + Send + Sync),
) -> Result<()> {
    if opts.index.is_some() || opts.timestamp.is_some() {
        return Err(Error::Config(
            "follow mode restores the latest state: drop -index/-timestamp".into(),
        ));
    }
    if output.exists() {
        return Err(Error::OutputExists(output.to_path_buf()));
    }
    let dir = output
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    tokio::pin!(stop);
    let mut last: Option<_> = None;
    loop {
        match plan(replicas, opts).await {
            Ok(p) if Some(plan_key(&p)) != last => {
                let tmp = temp_beside(output);
                let res = async {
                    restore(replicas, &tmp, opts, &|_| {}).await?;
                    to_rollback_mode(&tmp)?;
                    std::fs::rename(&tmp, output)
                        .map_err(Error::io("rename into place", output))?;
                    sync_dir(&dir)
                }
                .await;
                match res {
                    Ok(()) => {
                        on_update(&p);
                        last = Some(plan_key(&p));
                    }
                    Err(e) => {
                        let _ = std::fs::remove_file(&tmp);
                        tracing::warn!(error = %e, "follow: update failed; will try again");
                    }
                }
            }
            Ok(_) => {}
            Err(Error::NoMatchingBackups) if last.is_none() => {
                tracing::debug!("follow: no backups yet");
            }
            Err(e) => tracing::warn!(error = %e, "follow: cannot read the replica; will try again"),
        }
        tokio::select! {
            _ = &mut stop => return Ok(()),
            _ = tokio::time::sleep(interval) => {}
        }
    }
}
