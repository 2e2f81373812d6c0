//! Waking the follower when a file replica changes, without polling.
//!
//! On Linux, inotify watches every directory under each replica root for entries created,
//! moved in or out, deleted, and files closed after writing; directories created later are
//! added as they appear. Opening and reading are not watched: a web server serving the
//! replica, or the follower's own listings, would otherwise wake it for nothing (notify 8,
//! used elsewhere in walship, always subscribes to IN_OPEN). Other systems use notify.
use std::path::PathBuf;

/// Wakes on changes under the watched roots.
pub(super) struct ReplicaWatch {
    #[cfg(target_os = "linux")]
    inner: linux::Watch,
    #[cfg(not(target_os = "linux"))]
    inner: other::Watch,
}

impl ReplicaWatch {
    /// Watches `roots` (recursively); `None`, after a warning, when that is not possible.
    pub(super) fn new(roots: Vec<PathBuf>) -> Option<ReplicaWatch> {
        #[cfg(target_os = "linux")]
        let w = linux::Watch::new(roots);
        #[cfg(not(target_os = "linux"))]
        let w = other::Watch::new(roots);
        match w {
            Ok(inner) => Some(ReplicaWatch { inner }),
            Err(e) => {
                tracing::warn!(error = %e, "follow: cannot watch the replica directory; listing every interval");
                None
            }
        }
    }

    /// Waits for the next change (then lets a burst of events settle for 20 ms).
    /// Cancel-safe.
    pub(super) async fn changed(&mut self) {
        self.inner.changed().await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        self.inner.drain();
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::collections::HashMap;
    use std::path::{Path, PathBuf};

    use futures::StreamExt;
    use inotify::{EventMask, EventStream, Inotify, WatchDescriptor, WatchMask};

    pub(super) struct Watch {
        stream: EventStream<Vec<u8>>,
        dirs: HashMap<WatchDescriptor, PathBuf>,
    }

    fn mask() -> WatchMask {
        WatchMask::CREATE
            | WatchMask::MOVED_TO
            | WatchMask::MOVED_FROM
            | WatchMask::DELETE
            | WatchMask::CLOSE_WRITE
            | WatchMask::DELETE_SELF
            | WatchMask::ONLYDIR
    }

    impl Watch {
        pub(super) fn new(roots: Vec<PathBuf>) -> std::io::Result<Watch> {
            let stream = Inotify::init()?.into_event_stream(vec![0u8; 64 << 10])?;
            let mut w = Watch {
                stream,
                dirs: HashMap::new(),
            };
            for r in roots {
                // A root that does not exist yet fails here: the follower then lists it
                // every interval instead.
                w.add_tree(&r)?;
            }
            Ok(w)
        }

        fn add_tree(&mut self, dir: &Path) -> std::io::Result<()> {
            let wd = self.stream.watches().add(dir, mask())?;
            self.dirs.insert(wd, dir.to_path_buf());
            for e in std::fs::read_dir(dir)?.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    // A directory that vanished meanwhile is not an error.
                    let _ = self.add_tree(&e.path());
                }
            }
            Ok(())
        }

        fn handle(&mut self, ev: inotify::Event<std::ffi::OsString>) {
            if ev.mask.contains(EventMask::ISDIR)
                && ev.mask.intersects(EventMask::CREATE | EventMask::MOVED_TO)
                && let (Some(parent), Some(name)) = (self.dirs.get(&ev.wd), ev.name)
            {
                let _ = self.add_tree(&parent.join(name));
            }
            if ev.mask.contains(EventMask::IGNORED) {
                self.dirs.remove(&ev.wd);
            }
        }

        pub(super) async fn changed(&mut self) {
            match self.stream.next().await {
                Some(Ok(ev)) => self.handle(ev),
                // A broken inotify: do not spin; the safety poll still runs.
                Some(Err(_)) | None => std::future::pending::<()>().await,
            }
        }

        /// Takes the events already queued.
        pub(super) fn drain(&mut self) {
            let waker = futures::task::noop_waker();
            let mut cx = std::task::Context::from_waker(&waker);
            while let std::task::Poll::Ready(Some(Ok(ev))) = self.stream.poll_next_unpin(&mut cx) {
                self.handle(ev);
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod other {
    use std::path::PathBuf;
    use std::sync::Arc;

    pub(super) struct Watch {
        _w: notify::RecommendedWatcher,
        n: Arc<tokio::sync::Notify>,
    }

    impl Watch {
        pub(super) fn new(roots: Vec<PathBuf>) -> notify::Result<Watch> {
            use notify::{RecursiveMode, Watcher};
            let n = Arc::new(tokio::sync::Notify::new());
            let n2 = n.clone();
            let mut w = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
                if let Ok(ev) = res
                    && !matches!(ev.kind, notify::EventKind::Access(_))
                {
                    n2.notify_one();
                }
            })?;
            for r in roots {
                w.watch(&r, RecursiveMode::Recursive)?;
            }
            Ok(Watch { _w: w, n })
        }

        pub(super) async fn changed(&mut self) {
            self.n.notified().await;
        }

        pub(super) fn drain(&mut self) {}
    }
}
