//! Waking the follower when a file replica changes, without polling: every directory under
//! each replica root is watched (`crate::watch`, directories created later included) for
//! entries created, moved or deleted and files closed after writing. Opening and reading
//! are not watched, so a web server serving the replica, or the follower's own listings,
//! do not wake it.
use std::path::PathBuf;
use std::sync::Arc;

use crate::watch::{Events, FsWatch, OnChange};

/// Wakes on changes under the watched roots.
pub(super) struct ReplicaWatch {
    _watch: FsWatch,
    changed: Arc<tokio::sync::Notify>,
}

impl ReplicaWatch {
    /// Watches `roots` (recursively); `None`, after a warning, when that is not possible
    /// for every root (a root that does not exist yet, say): the follower then lists the
    /// replica every interval instead.
    pub(super) fn new(roots: Vec<PathBuf>) -> Option<ReplicaWatch> {
        let changed = Arc::new(tokio::sync::Notify::new());
        let n = changed.clone();
        let on_change: OnChange = Arc::new(move |_| n.notify_one());
        let err = match FsWatch::new(&roots, true, Events::Completed, on_change) {
            Ok((w, results)) => match results.into_iter().find_map(|(_, e)| e) {
                None => {
                    return Some(ReplicaWatch { _watch: w, changed });
                }
                Some(e) => e,
            },
            Err(e) => e,
        };
        tracing::warn!(error = %err, "follow: cannot watch the replica directory; listing every interval");
        None
    }

    /// Waits for the next change (then lets a burst of events settle for 20 ms: the
    /// notifications of a burst fold into one wake-up). Cancel-safe.
    pub(super) async fn changed(&mut self) {
        self.changed.notified().await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        // Take the wake-up the burst stored meanwhile, so it does not wake the next call.
        let _ = futures::FutureExt::now_or_never(self.changed.notified());
    }
}
