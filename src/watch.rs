//! File-change notifications, for both directions: the engine watches the databases'
//! directories (to wake a database whose file or `-wal` changed) and the directories
//! watched for new databases; the follower watches a file replica's tree.
//!
//! On Linux, inotify directly, subscribed to writes and to directory-entry changes only.
//! notify 8 always subscribes to IN_OPEN as well, so any open or listing in a watched
//! directory woke walship: a web server serving a replica that sits beside the database, a
//! backup tool, `compare.py`'s 10 ms scan of its replica (`benches/steady20.py --scan`:
//! 0.45-0.70% of a core instead of 0.30-0.33% without the scan). Elsewhere, notify (its
//! access events are dropped). This module is where other systems' watchers go.
use std::path::PathBuf;
use std::sync::Arc;

/// Called with the path of each changed entry.
pub(crate) type OnChange = Arc<dyn Fn(PathBuf) + Send + Sync>;

/// A running watch; dropping it stops the notifications.
pub(crate) struct FsWatch {
    #[cfg(target_os = "linux")]
    task: tokio::task::JoinHandle<()>,
    #[cfg(target_os = "linux")]
    armer: Armer,
    #[cfg(not(target_os = "linux"))]
    _watcher: notify::RecommendedWatcher,
}

impl Drop for FsWatch {
    fn drop(&mut self) {
        #[cfg(target_os = "linux")]
        self.task.abort();
    }
}

/// What wakes a watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Events {
    /// Entries created, moved or deleted and files closed after writing; in-place writes
    /// (a database's `-wal` is written in place on every commit) once per [`Armer::arm`]
    /// of the file. Elsewhere than on Linux, every write.
    Writes,
    /// Files closed after writing (a replica's objects are written whole), entries created,
    /// moved or deleted, and a watched directory deleted (reported with its own path).
    Completed,
}

/// Per directory asked for: `None` when it is watched, else why not.
pub(crate) type DirResults = Vec<(PathBuf, Option<String>)>;

impl FsWatch {
    /// Watches `dirs` (with `recursive`, every directory below too, also those created
    /// later) and calls `on_change` for each changed entry. Must run inside a tokio
    /// runtime. Errs when no watch can be set up at all; a directory that cannot be
    /// watched is reported in the results.
    pub(crate) fn new(
        dirs: &[PathBuf],
        recursive: bool,
        events: Events,
        on_change: OnChange,
    ) -> Result<(FsWatch, DirResults), String> {
        #[cfg(target_os = "linux")]
        {
            let (task, armer, results) =
                linux::start(dirs, recursive, events, on_change).map_err(|e| e.to_string())?;
            Ok((
                FsWatch {
                    task,
                    armer: Armer { inner: armer },
                },
                results,
            ))
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = events;
            use notify::{RecursiveMode, Watcher};
            let mut w = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
                if let Ok(ev) = res
                    && !matches!(ev.kind, notify::EventKind::Access(_))
                {
                    for p in ev.paths {
                        on_change(p);
                    }
                }
            })
            .map_err(|e| e.to_string())?;
            let mode = if recursive {
                RecursiveMode::Recursive
            } else {
                RecursiveMode::NonRecursive
            };
            let results = dirs
                .iter()
                .map(|d| (d.clone(), w.watch(d, mode).err().map(|e| e.to_string())))
                .collect();
            Ok((FsWatch { _watcher: w }, results))
        }
    }
}

impl FsWatch {
    /// What re-arms a file's write notification on this watch (see [`Armer`]); `None` where
    /// the directory watch reports every write by itself (not Linux).
    pub(crate) fn armer(&self) -> Option<Armer> {
        #[cfg(target_os = "linux")]
        {
            Some(self.armer.clone())
        }
        #[cfg(not(target_os = "linux"))]
        {
            None
        }
    }
}

/// Re-arms the one-shot write notification of one file on an [`Events::Writes`] watch.
///
/// A commit writes the `-wal` several times (each frame, then the header of the next), and
/// a notification per write woke walship 60 times a second at 20 commits a second, which
/// was most of its steady-state CPU (the wake-ups, epoll and futex, not the copying). A
/// database only needs to hear that it is dirty once per copy: its monitor arms the
/// `-wal` right before each copy (so a write after the copy began is always heard), the
/// first write after that reports once, and the kernel drops the watch until the next arm.
#[derive(Clone)]
pub(crate) struct Armer {
    #[cfg(target_os = "linux")]
    inner: linux::Armer,
}

impl Armer {
    /// Reports the next write to `file` (once) to the watch's `on_change`, with `file` as the
    /// path. Errs when the file cannot be watched: `NotFound` when it does not exist (its
    /// creation is reported by the directory watch); anything else (the per-user watch
    /// limit) means its writes go unheard, and the caller must poll instead.
    pub(crate) fn arm(&self, file: &std::path::Path) -> std::io::Result<()> {
        #[cfg(target_os = "linux")]
        {
            self.inner.arm(file)
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = file;
            Ok(())
        }
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::collections::HashMap;
    use std::path::{Path, PathBuf};
    use std::sync::{Arc, Mutex};

    use futures::StreamExt;
    use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};

    use super::{DirResults, Events, OnChange};

    fn mask(events: Events) -> WatchMask {
        let common = WatchMask::CLOSE_WRITE
            | WatchMask::CREATE
            | WatchMask::DELETE
            | WatchMask::MOVED_FROM
            | WatchMask::MOVED_TO
            | WatchMask::ONLYDIR;
        match events {
            // In-place writes only through `Armer`, file by file.
            Events::Writes => common,
            Events::Completed => common | WatchMask::DELETE_SELF,
        }
    }

    /// What a watch descriptor watches: a directory (events name an entry in it) or one
    /// armed file (events are about the file itself).
    #[derive(Clone)]
    enum Watched {
        Dir(PathBuf),
        File(PathBuf),
    }

    type Map = Arc<Mutex<HashMap<WatchDescriptor, Watched>>>;

    fn lock(map: &Map) -> std::sync::MutexGuard<'_, HashMap<WatchDescriptor, Watched>> {
        map.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[derive(Clone)]
    pub(super) struct Armer {
        watches: Watches,
        map: Map,
    }

    impl Armer {
        pub(super) fn arm(&self, file: &Path) -> std::io::Result<()> {
            // Under the map's lock, so that an event on the new watch is looked up only once
            // the watch is in the map. The same file armed twice before it fired gets the
            // same descriptor back.
            let mut map = lock(&self.map);
            let wd = self
                .watches
                .clone()
                .add(file, WatchMask::MODIFY | WatchMask::ONESHOT)?;
            map.insert(wd, Watched::File(file.to_path_buf()));
            Ok(())
        }
    }

    fn add(
        watches: &mut Watches,
        dir: &Path,
        recursive: bool,
        mask: WatchMask,
        map: &Map,
    ) -> std::io::Result<()> {
        {
            let mut m = lock(map);
            let wd = watches.add(dir, mask)?;
            m.insert(wd, Watched::Dir(dir.to_path_buf()));
        }
        if recursive {
            for e in std::fs::read_dir(dir)?.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    // A directory that vanished meanwhile is not an error.
                    let _ = add(watches, &e.path(), true, mask, map);
                }
            }
        }
        Ok(())
    }

    pub(super) fn start(
        dirs: &[PathBuf],
        recursive: bool,
        events: Events,
        on_change: OnChange,
    ) -> std::io::Result<(tokio::task::JoinHandle<()>, Armer, DirResults)> {
        let mask = mask(events);
        let inotify = Inotify::init()?;
        let map: Map = Arc::default();
        let mut watches = inotify.watches();
        let results = dirs
            .iter()
            .map(|d| {
                let r = add(&mut watches, d, recursive, mask, &map);
                (d.clone(), r.err().map(|e| e.to_string()))
            })
            .collect();
        let mut stream = inotify.into_event_stream(vec![0u8; 64 << 10])?;
        let armer = Armer {
            watches: stream.watches(),
            map: map.clone(),
        };
        let task = tokio::spawn(async move {
            while let Some(ev) = stream.next().await {
                // A broken inotify: stop; the databases' safety polls still run.
                let Ok(ev) = ev else { return };
                // A queue overflow (IN_Q_OVERFLOW, no watch descriptor) lost events: every
                // watched file and directory may have changed.
                if ev.mask.contains(EventMask::Q_OVERFLOW) {
                    let all: Vec<Watched> = lock(&map).values().cloned().collect();
                    for w in all {
                        match w {
                            Watched::Dir(p) | Watched::File(p) => on_change(p),
                        }
                    }
                    continue;
                }
                if ev.mask.contains(EventMask::IGNORED) {
                    lock(&map).remove(&ev.wd);
                    continue;
                }
                let Some(w) = lock(&map).get(&ev.wd).cloned() else {
                    continue;
                };
                let p = match (w, ev.name) {
                    (Watched::File(f), _) => f,
                    (Watched::Dir(dir), _) if ev.mask.contains(EventMask::DELETE_SELF) => dir,
                    (Watched::Dir(dir), Some(name)) => dir.join(name),
                    (Watched::Dir(_), None) => continue,
                };
                if recursive
                    && ev.mask.contains(EventMask::ISDIR)
                    && ev.mask.intersects(EventMask::CREATE | EventMask::MOVED_TO)
                {
                    let _ = add(&mut stream.watches(), &p, true, mask, &map);
                }
                on_change(p);
            }
        });
        Ok((task, armer, results))
    }
}
