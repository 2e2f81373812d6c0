//! The file replica: a directory tree on a local (or mounted) file system.
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;

use futures::StreamExt;

use super::{ObjectInfo, ObjectStream, ReplicaClient};
use crate::error::{Error, Result};
use crate::fsutil::{write_atomic, write_atomic_with};

/// A replica in a local directory. Writes go to `<name>.<pid>-<n>.tmp`, are fsynced, renamed over the
/// final name, and the directory is fsynced, so a crash never leaves a partial object under
/// a name Litestream or walship would read.
#[derive(Debug, Clone)]
pub struct FileClient {
    root: PathBuf,
}

impl FileClient {
    /// A client for the replica rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> FileClient {
        FileClient { root: root.into() }
    }

    /// The replica root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn full(&self, rel: &str) -> Result<PathBuf> {
        // Layout paths never contain these; refuse rather than trust.
        if rel.starts_with('/') || rel.split('/').any(|c| c == ".." || c == ".") {
            return Err(Error::corrupt(rel, "path escapes the replica root"));
        }
        Ok(if rel.is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        })
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(Error::task_failed("file worker"))?
}

/// The version of a file's content for [`ReplicaClient::put_if`]: its 64-bit xxHash3.
pub(super) fn content_version(data: &[u8]) -> String {
    format!("{:016x}", twox_hash::XxHash3_64::oneshot(data))
}

/// Chunk size of streamed reads and copies.
const CHUNK: usize = 1 << 20;

#[async_trait]
impl ReplicaClient for FileClient {
    fn type_name(&self) -> &'static str {
        "file"
    }

    fn location(&self) -> String {
        self.root.display().to_string()
    }

    async fn list(&self, dir: &str) -> Result<Vec<ObjectInfo>> {
        let dir = self.full(dir)?;
        blocking(move || {
            let rd = match std::fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(Error::io("list", &dir)(e)),
            };
            let mut out = Vec::new();
            for entry in rd {
                let entry = entry.map_err(Error::io("list", &dir))?;
                let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                let md = match entry.metadata() {
                    Ok(md) => md,
                    // Deleted between readdir and stat: not there any more.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(Error::io("stat", entry.path())(e)),
                };
                out.push(ObjectInfo {
                    name,
                    size: if md.is_dir() { 0 } else { md.len() },
                    modified: md
                        .modified()
                        .map_err(Error::io("read mtime", entry.path()))?,
                    is_dir: md.is_dir(),
                });
            }
            out.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(out)
        })
        .await
    }

    async fn get(&self, path: &str) -> Result<Bytes> {
        let p = self.full(path)?;
        blocking(move || {
            std::fs::read(&p)
                .map(Bytes::from)
                .map_err(Error::io("read", &p))
        })
        .await
    }

    async fn get_stream(&self, path: &str) -> Result<ObjectStream> {
        let p = self.full(path)?;
        let p2 = p.clone();
        // One trip to the blocking pool: open, stat, and for an object of at most one chunk
        // (every WAL segment of a long tail) the whole read.
        let (f, size, whole) = blocking(move || {
            use std::io::Read;
            let mut f = std::fs::File::open(&p2).map_err(Error::io("read", &p2))?;
            let size = f.metadata().map_err(Error::io("stat", &p2))?.len();
            if size <= CHUNK as u64 {
                let mut buf = Vec::with_capacity(size as usize);
                f.read_to_end(&mut buf).map_err(Error::io("read", &p2))?;
                return Ok((None, size, Some(Bytes::from(buf))));
            }
            Ok((Some(f), size, None))
        })
        .await?;
        let body = match (f, whole) {
            (_, Some(data)) => futures::stream::once(async move { Ok(data) }).boxed(),
            (Some(f), None) => {
                tokio_util::io::ReaderStream::with_capacity(tokio::fs::File::from_std(f), CHUNK)
                    .map(move |r| r.map_err(Error::io("read", p.clone())))
                    .boxed()
            }
            (None, None) => futures::stream::empty().boxed(),
        };
        Ok(ObjectStream {
            size: Some(size),
            body,
        })
    }

    async fn put_file(&self, path: &str, local: &Path) -> Result<ObjectInfo> {
        let p = self.full(path)?;
        let local = local.to_path_buf();
        blocking(move || {
            let md = write_atomic_with(&p, |f, tmp| {
                let mut src = std::fs::File::open(&local).map_err(Error::io("open", &local))?;
                // std::io::copy uses copy_file_range where it can: no user-space buffer.
                std::io::copy(&mut src, f).map_err(Error::io("copy into", tmp))?;
                Ok(())
            })?;
            Ok(ObjectInfo {
                name: p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                size: md.len(),
                modified: md.modified().map_err(Error::io("read mtime", &p))?,
                is_dir: false,
            })
        })
        .await
    }

    async fn put(&self, path: &str, data: Bytes) -> Result<ObjectInfo> {
        let p = self.full(path)?;
        blocking(move || {
            let md = write_atomic(&p, &data)?;
            Ok(ObjectInfo {
                name: p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                size: md.len(),
                modified: md.modified().map_err(Error::io("read mtime", &p))?,
                is_dir: false,
            })
        })
        .await
    }

    fn conditional_writes(&self) -> bool {
        true
    }

    async fn get_versioned(&self, path: &str) -> Result<Option<(Bytes, String)>> {
        let p = self.full(path)?;
        blocking(move || match std::fs::read(&p) {
            Ok(data) => {
                let v = content_version(&data);
                Ok(Some((Bytes::from(data), v)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("read", &p)(e)),
        })
        .await
    }

    /// The compare and the swap happen under an exclusive `flock` of `<path>.lock` (a file
    /// that is never replaced), which every walship writing this replica takes, on this
    /// machine or, where the file system passes `flock` on (NFS does), another one.
    async fn put_if(
        &self,
        path: &str,
        data: Bytes,
        expected: Option<&str>,
    ) -> Result<Option<String>> {
        let p = self.full(path)?;
        let expected = expected.map(str::to_string);
        blocking(move || {
            let mut lock_path = p.clone().into_os_string();
            lock_path.push(".lock");
            let lock_path = PathBuf::from(lock_path);
            if let Some(dir) = p.parent() {
                crate::fsutil::create_dir_all_synced(dir)?;
            }
            let lock = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&lock_path)
                .map_err(Error::io("open", &lock_path))?;
            lock.lock().map_err(Error::io("lock", &lock_path))?;
            let current = match std::fs::read(&p) {
                Ok(d) => Some(content_version(&d)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(Error::io("read", &p)(e)),
            };
            if current != expected {
                return Ok(None);
            }
            write_atomic(&p, &data)?;
            Ok(Some(content_version(&data)))
            // `lock` closes here, which releases the flock.
        })
        .await
    }

    async fn delete(&self, path: &str) -> Result<()> {
        let p = self.full(path)?;
        blocking(move || match std::fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("delete", &p)(e)),
        })
        .await
    }

    async fn delete_all(&self, dir: &str) -> Result<()> {
        let p = self.full(dir)?;
        blocking(move || match std::fs::remove_dir_all(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("delete directory", &p)(e)),
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two writes of one object may overlap (an abandoned upload still running while the
    /// final sync writes the segment again): each must succeed and leave one whole version.
    #[test]
    fn overlapping_writes_of_one_object_all_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal").join("00000000_00000000.wal.lz4");
        std::thread::scope(|s| {
            for t in 0..6u8 {
                let path = &path;
                s.spawn(move || {
                    for _ in 0..40 {
                        write_atomic(path, &vec![t; 64 << 10]).unwrap();
                    }
                });
            }
        });
        let got = std::fs::read(&path).unwrap();
        assert_eq!(got.len(), 64 << 10);
        assert!(got.iter().all(|b| *b == got[0]), "a torn object");
        let left: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left.len(), 1, "temporary files left: {left:?}");
    }
}
