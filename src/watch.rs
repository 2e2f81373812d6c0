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
    /// Every write (a database and its `-wal` are written in place), and entries created,
    /// moved or deleted.
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
            let (task, results) =
                linux::start(dirs, recursive, events, on_change).map_err(|e| e.to_string())?;
            Ok((FsWatch { task }, results))
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

#[cfg(target_os = "linux")]
mod linux {
    use std::collections::HashMap;
    use std::path::{Path, PathBuf};

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
            Events::Writes => common | WatchMask::MODIFY,
            Events::Completed => common | WatchMask::DELETE_SELF,
        }
    }

    fn add(
        watches: &mut Watches,
        dir: &Path,
        recursive: bool,
        mask: WatchMask,
        map: &mut HashMap<WatchDescriptor, PathBuf>,
    ) -> std::io::Result<()> {
        let wd = watches.add(dir, mask)?;
        map.insert(wd, dir.to_path_buf());
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
    ) -> std::io::Result<(tokio::task::JoinHandle<()>, DirResults)> {
        let mask = mask(events);
        let inotify = Inotify::init()?;
        let mut map = HashMap::new();
        let mut watches = inotify.watches();
        let results = dirs
            .iter()
            .map(|d| {
                let r = add(&mut watches, d, recursive, mask, &mut map);
                (d.clone(), r.err().map(|e| e.to_string()))
            })
            .collect();
        let mut stream = inotify.into_event_stream(vec![0u8; 64 << 10])?;
        let task = tokio::spawn(async move {
            while let Some(ev) = stream.next().await {
                // A broken inotify: stop; the databases' safety polls still run.
                let Ok(ev) = ev else { return };
                if ev.mask.contains(EventMask::IGNORED) {
                    map.remove(&ev.wd);
                    continue;
                }
                if ev.mask.contains(EventMask::DELETE_SELF) {
                    if let Some(dir) = map.get(&ev.wd) {
                        on_change(dir.clone());
                    }
                    continue;
                }
                let (Some(dir), Some(name)) = (map.get(&ev.wd), ev.name) else {
                    continue;
                };
                let p = dir.join(name);
                if recursive
                    && ev.mask.contains(EventMask::ISDIR)
                    && ev.mask.intersects(EventMask::CREATE | EventMask::MOVED_TO)
                {
                    let _ = add(&mut stream.watches(), &p, true, mask, &mut map);
                }
                on_change(p);
            }
        });
        Ok((task, results))
    }
}
