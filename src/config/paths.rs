//! Local path and key-prefix normalisation shared by the config resolver and URL parser.

use std::path::{Component, Path, PathBuf};

/// Expands a leading `~` or `~/` to the home directory, as Litestream does (`~user` is not
/// expanded).
pub(crate) fn expand_home(path: &Path) -> Result<PathBuf, String> {
    let mut components = path.components();
    match components.next() {
        Some(Component::Normal(first)) if first == "~" => {
            let home = std::env::home_dir().ok_or_else(|| {
                format!(
                    "cannot expand ~ in {}: the home directory is unknown; write an absolute path",
                    path.display()
                )
            })?;
            Ok(home.join(components.as_path()))
        }
        _ => Ok(path.to_path_buf()),
    }
}

/// `~`-expands `path`, makes it absolute against the current directory and cleans it
/// lexically (Go's `filepath.Abs`).
pub(crate) fn absolutize(path: &Path) -> Result<PathBuf, String> {
    let path = expand_home(path)?;
    if path.is_absolute() {
        return Ok(clean_path(&path));
    }
    let cwd = std::env::current_dir().map_err(|e| {
        format!(
            "cannot make {} absolute: the current directory is unknown ({e}); write an absolute path",
            path.display()
        )
    })?;
    Ok(clean_path(&cwd.join(path)))
}

/// Cleans a path lexically like Go's `filepath.Clean`: drops `.` and empty components,
/// resolves `..` against the preceding component (never above the root), and gives `.` for an
/// empty result. Symlinks are not consulted.
pub(crate) fn clean_path(path: &Path) -> PathBuf {
    let mut out: Vec<Component<'_>> = Vec::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => match out.last() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir | Component::Prefix(_)) => {}
                _ => out.push(c),
            },
            _ => out.push(c),
        }
    }
    if out.is_empty() {
        return PathBuf::from(".");
    }
    out.iter().collect()
}

/// Normalises an object-store key prefix (S3/GCS/ABS `path`): cleaned as if rooted (so `..`
/// cannot climb above the bucket), without a leading or trailing `/`; the bucket root is `""`.
///
/// Litestream joins the prefix with `path.Join`, which cleans the same way; its URL parser
/// leaves `.` for the root, which means the same keys (`generations/...`).
pub(crate) fn clean_key_prefix(prefix: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in prefix.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_path_like_go() {
        let cases = [
            ("/a/b/../c", "/a/c"),
            ("/a//b/./c/", "/a/b/c"),
            ("/../x", "/x"),
            ("/", "/"),
            ("a/../..", ".."),
            ("", "."),
            ("./a", "a"),
            ("a/..", "."),
        ];
        for (input, want) in cases {
            assert_eq!(clean_path(Path::new(input)), PathBuf::from(want), "{input}");
        }
    }

    #[test]
    fn home_and_absolute() {
        let home = std::env::home_dir().expect("tests need a home directory");
        assert_eq!(expand_home(Path::new("~")).unwrap(), home);
        assert_eq!(expand_home(Path::new("~/db")).unwrap(), home.join("db"));
        assert_eq!(
            expand_home(Path::new("~user/db")).unwrap(),
            PathBuf::from("~user/db")
        );
        assert_eq!(
            absolutize(Path::new("~/x/../db")).unwrap(),
            clean_path(&home.join("db"))
        );
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            absolutize(Path::new("data/./app.db")).unwrap(),
            cwd.join("data").join("app.db")
        );
        assert_eq!(
            absolutize(Path::new("/srv//db/")).unwrap(),
            std::path::absolute("/srv/db").unwrap()
        );
    }

    #[test]
    fn key_prefixes() {
        let cases = [
            ("", ""),
            ("/", ""),
            (".", ""),
            ("db", "db"),
            ("/db/", "db"),
            ("a//b/../c/", "a/c"),
            ("../x", "x"),
            ("backups/app.db", "backups/app.db"),
        ];
        for (input, want) in cases {
            assert_eq!(clean_key_prefix(input), want, "{input}");
        }
    }
}
