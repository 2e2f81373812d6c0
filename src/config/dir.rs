//! The directory form of a `dbs:` entry (Litestream v0.5): `dir:` + `pattern:` (+
//! `recursive:`, `watch:`) replicates every SQLite database in a directory whose file name
//! matches the pattern, each to `<replica path>/<path relative to dir>`.

use std::path::{Path, PathBuf};

use super::{AbsConfig, DbConfig, GcsConfig, ReplicaTarget, SftpConfig};

/// A `dbs:` entry in directory form.
#[derive(Clone, Debug, PartialEq)]
pub struct DirConfig {
    /// `dir` — the directory to scan; `~` expanded, absolute, cleaned.
    pub dir: PathBuf,
    /// `pattern` (required with `dir`) — a shell pattern (`*.db`, `tenant-?.sqlite`,
    /// `[a-m]*.db`) matched against each file's name, not its path.
    pub pattern: String,
    /// `recursive` — default false — also scan subdirectories (hidden ones excepted).
    pub recursive: bool,
    /// `watch` — default false — keep watching the directory (file-system notifications,
    /// with a periodic rescan as a safety net): replicate databases that appear after
    /// start-up, and stop replicating one whose file is deleted (still gone a second later;
    /// its replica is kept, and it is picked up again, in a new generation, if it comes
    /// back). Without it the directory is scanned once, at start-up, as in Litestream.
    pub watch: bool,
    /// The entry's other settings and replicas, as for a single database whose `path` is
    /// `dir`; [`DirConfig::db_config`] derives each database's own config from it.
    pub template: DbConfig,
}

/// Why a file in a watched directory is not replicated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Candidate {
    /// A database to replicate.
    Database,
    /// Not a database file by name: outside the directory (or too deep without
    /// `recursive`), hidden, not matching the pattern, or a SQLite side file.
    Ignored,
    /// Empty, or not readable yet (a database being created): look again later.
    NotYet,
    /// Matches by name, but SQLite says it is not a database (its header is not SQLite's).
    NotSqlite,
}

impl DirConfig {
    /// `path` relative to [`DirConfig::dir`] when the name qualifies: inside the directory
    /// (directly, or at any depth with `recursive`), no hidden component, the file name
    /// matches `pattern`, and it is not a `-wal`, `-shm` or `-journal` side file. Pure.
    pub fn relative(&self, path: &Path) -> Option<PathBuf> {
        let rel = path.strip_prefix(&self.dir).ok()?;
        let mut comps = rel.components().peekable();
        let mut depth = 0;
        while let Some(c) = comps.next() {
            let std::path::Component::Normal(name) = c else {
                return None;
            };
            let name = name.to_str()?;
            if name.starts_with('.') {
                return None;
            }
            depth += 1;
            if comps.peek().is_none() {
                if ["-wal", "-shm", "-journal"]
                    .iter()
                    .any(|s| name.ends_with(s))
                {
                    return None;
                }
                let pat = glob::Pattern::new(&self.pattern).ok()?;
                if !pat.matches_with(
                    name,
                    glob::MatchOptions {
                        case_sensitive: true,
                        require_literal_separator: true,
                        require_literal_leading_dot: true,
                    },
                ) {
                    return None;
                }
            }
        }
        (depth == 1 || (self.recursive && depth > 1)).then(|| rel.to_path_buf())
    }

    /// Whether `path` is a database to replicate, by name ([`DirConfig::relative`]) and by
    /// content: SQLite must accept it (it checks the header magic, `SQLite format 3\0`).
    ///
    /// The file is read through a read-only SQLite connection, never a plain open and
    /// close: closing any descriptor of a database file drops every POSIX lock the process
    /// holds on it (the application's own, when walship is embedded), while SQLite's VFS
    /// keeps them. Empty files, and databases SQLite cannot read yet (being created, locked),
    /// are [`Candidate::NotYet`]; files shorter than the smallest page (512 bytes) are not
    /// databases.
    pub fn classify(&self, path: &Path) -> Candidate {
        if self.relative(path).is_none() {
            return Candidate::Ignored;
        }
        match std::fs::metadata(path) {
            // SQLite takes a file shorter than one page for an empty database without
            // looking at it; a real one is at least one page (512 bytes or more) once its
            // header is written.
            Ok(md) if md.is_file() && md.len() >= 512 => {}
            Ok(md) if md.is_file() && md.len() > 0 => return Candidate::NotSqlite,
            Ok(md) if md.is_file() => return Candidate::NotYet,
            _ => return Candidate::Ignored,
        }
        let flags =
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let Ok(c) = rusqlite::Connection::open_with_flags(path, flags) else {
            return Candidate::NotYet;
        };
        // SQLite reads page 1 (and checks the magic) when the file holds at least a page;
        // a file emptied since the size check above reads as an empty database: 0 pages.
        match c.query_row("PRAGMA page_count", [], |r| r.get::<_, i64>(0)) {
            Ok(n) if n > 0 => Candidate::Database,
            Ok(_) => Candidate::NotYet,
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::NotADatabase =>
            {
                Candidate::NotSqlite
            }
            Err(_) => Candidate::NotYet,
        }
    }

    /// Every file under the directory whose name qualifies ([`DirConfig::relative`]), sorted;
    /// unreadable subdirectories are skipped. Blocking.
    pub fn scan(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![self.dir.clone()];
        while let Some(d) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in entries.flatten() {
                let p = e.path();
                let Ok(ft) = e.file_type() else { continue };
                let hidden = e.file_name().to_string_lossy().starts_with('.');
                if ft.is_dir() {
                    if self.recursive && !hidden {
                        stack.push(p);
                    }
                } else if self.relative(&p).is_some() {
                    out.push(p);
                }
            }
        }
        out.sort();
        out
    }

    /// The config of the database at `path` (which [`DirConfig::relative`] accepts): the
    /// template's settings, `path`, each replica's location extended by the relative path
    /// (file: `<path>/<rel>`; object stores: `<prefix>/<rel>`; HTTP: `<url>/<rel>`), and,
    /// when `meta-path` is set, `<meta-path>/<rel dir>/.<name>-litestream`.
    pub fn db_config(&self, path: &Path) -> Option<DbConfig> {
        let rel = self.relative(path)?;
        let rel_slash = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/");
        let mut c = self.template.clone();
        c.path = path.to_path_buf();
        if let Some(base) = &c.meta_path {
            let name = rel.file_name()?.to_string_lossy().into_owned();
            let parent = rel.parent().unwrap_or(Path::new(""));
            c.meta_path = Some(base.join(parent).join(format!(".{name}-litestream")));
        }
        for r in &mut c.replicas {
            let join = |prefix: &str| {
                let p = prefix.trim_end_matches('/');
                if p.is_empty() {
                    rel_slash.clone()
                } else {
                    format!("{p}/{rel_slash}")
                }
            };
            match &mut r.target {
                ReplicaTarget::File { path } => *path = path.join(&rel),
                ReplicaTarget::S3(s) => s.path = join(&s.path),
                ReplicaTarget::Http(h) => {
                    let slash = if h.url.ends_with('/') { "/" } else { "" };
                    h.url = format!("{}{slash}", join(&h.url));
                }
                ReplicaTarget::Gcs(GcsConfig { path, .. })
                | ReplicaTarget::Abs(AbsConfig { path, .. }) => *path = join(path),
                ReplicaTarget::Sftp(SftpConfig { path, .. }) => *path = join(path),
            }
        }
        Some(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ReplicaConfig, S3Config};

    fn dc(recursive: bool) -> DirConfig {
        let mut t = DbConfig::new("/data/tenants");
        t.replicas.push(ReplicaConfig::new(ReplicaTarget::File {
            path: "/backups".into(),
        }));
        let mut s3 = ReplicaConfig::new(ReplicaTarget::S3(S3Config {
            bucket: "b".into(),
            path: "prod".into(),
            region: None,
            endpoint: None,
            force_path_style: false,
            skip_verify: false,
            access_key_id: None,
            secret_access_key: None,
        }));
        s3.name = "s3".into();
        t.replicas.push(s3);
        t.meta_path = Some("/var/lib/walship".into());
        DirConfig {
            dir: "/data/tenants".into(),
            pattern: "*.db".into(),
            recursive,
            watch: true,
            template: t,
        }
    }

    #[test]
    fn names_that_qualify() {
        let d = dc(false);
        assert_eq!(
            d.relative(Path::new("/data/tenants/a.db")),
            Some(PathBuf::from("a.db"))
        );
        for no in [
            "/data/tenants/a.db-wal",
            "/data/tenants/a.db-shm",
            "/data/tenants/a.db-journal",
            "/data/tenants/a.txt",
            "/data/tenants/.a.db",
            "/data/tenants/sub/a.db",
            "/data/other/a.db",
            "/data/tenants/.a.db-litestream/x.db",
        ] {
            assert_eq!(d.relative(Path::new(no)), None, "{no}");
        }
        let r = dc(true);
        assert_eq!(
            r.relative(Path::new("/data/tenants/eu/a.db")),
            Some(PathBuf::from("eu/a.db"))
        );
        assert_eq!(r.relative(Path::new("/data/tenants/.hidden/a.db")), None);
    }

    #[test]
    fn content_decides_among_matching_names() {
        let tmp = tempfile::tempdir().unwrap();
        let mut d = dc(false);
        d.dir = tmp.path().to_path_buf();
        let p = |n: &str| tmp.path().join(n);
        std::fs::write(p("empty.db"), b"").unwrap();
        std::fs::write(
            p("notes.db"),
            "not a database, only some notes: ".repeat(10),
        )
        .unwrap();
        std::fs::write(p("long.db"), "not a database either\n".repeat(100)).unwrap();
        let c = rusqlite::Connection::open(p("real.db")).unwrap();
        c.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t(x);")
            .unwrap();
        assert_eq!(d.classify(&p("empty.db")), Candidate::NotYet);
        assert_eq!(d.classify(&p("notes.db")), Candidate::NotSqlite);
        assert_eq!(d.classify(&p("long.db")), Candidate::NotSqlite);
        assert_eq!(d.classify(&p("real.db")), Candidate::Database);
        assert_eq!(d.classify(&p("real.db-wal")), Candidate::Ignored);
        assert_eq!(d.classify(&p("missing.db")), Candidate::Ignored);
        assert_eq!(
            d.scan(),
            vec![p("empty.db"), p("long.db"), p("notes.db"), p("real.db")]
        );
    }

    #[test]
    fn each_database_gets_its_own_replica_paths_and_meta_dir() {
        let c = dc(true)
            .db_config(Path::new("/data/tenants/eu/a.db"))
            .unwrap();
        assert_eq!(c.path, PathBuf::from("/data/tenants/eu/a.db"));
        assert_eq!(
            c.meta_path,
            Some(PathBuf::from("/var/lib/walship/eu/.a.db-litestream"))
        );
        assert_eq!(
            c.replicas[0].target,
            ReplicaTarget::File {
                path: "/backups/eu/a.db".into()
            }
        );
        let ReplicaTarget::S3(s) = &c.replicas[1].target else {
            panic!()
        };
        assert_eq!(s.path, "prod/eu/a.db");
    }
}
