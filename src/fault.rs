//! Crash points for the crash tests: [`point`] kills the process at a named place inside
//! sync, snapshot, checkpoint, retention and the file writes, when the environment asks.
//!
//! `WALSHIP_FAULT=<name>[@<nth>]` makes the `nth` hit (default 1) of the point `name` send
//! SIGKILL to the process itself: no destructor, no buffered write, no final sync runs, as
//! when the kernel kills it or the machine stops. `<name>` may be `*` (any point: the `nth`
//! hit over all points) or end in `*` (any point with that prefix, e.g. `file.*`). Before
//! dying it prints `walship: fault point <name> hit <n>: killing the process` to stderr, so
//! a test can tell a planned crash from a real one. Several specs can be given, separated by
//! commas; the first whose count is reached fires.
//!
//! This is the one place outside the command line that reads the process environment, on
//! purpose: the hook must reach the library code that the `walship` binary runs without a
//! flag a user could set by mistake. The variable is read once; while it is unset a point
//! costs one atomic load and a branch.
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable naming the crash points to fire.
pub const ENV: &str = "WALSHIP_FAULT";

/// Every crash point in the code, for the tests that pick one (keep in sync with the calls
/// of [`point`]).
pub const POINTS: &[&str] = &[
    // db.rs: the shadow WAL and generations.
    "shadow.after_copy",
    "shadow.after_new_index",
    "generation.before_record",
    "checkpoint.before",
    "checkpoint.after",
    "restart_wal.after_commit",
    "clean_stop.after_record",
    "snapshot.after_checkpoint",
    // replica.rs: uploads and their bookkeeping.
    "sync.before_upload",
    "sync.after_upload",
    "snapshot.after_upload",
    "retention.before_delete",
    // retention.rs: between the deletes of one run.
    "retention.between_deletes",
    "retention.after_generation_delete",
    // backend/file.rs: the atomic write of every replica object and meta file.
    "file.after_write",
    "file.after_rename",
];

struct Spec {
    name: String,
    nth: u64,
    hits: AtomicU64,
}

impl Spec {
    fn matches(&self, name: &str) -> bool {
        match self.name.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => self.name == name,
        }
    }
}

fn specs() -> &'static [Spec] {
    static SPECS: OnceLock<Vec<Spec>> = OnceLock::new();
    SPECS.get_or_init(|| match std::env::var(ENV) {
        Ok(v) => parse(&v),
        Err(_) => Vec::new(),
    })
}

/// Parses `name[@nth],...`; a malformed `nth` is reported and the spec ignored, so a typo
/// never turns into a crash at the wrong place.
fn parse(v: &str) -> Vec<Spec> {
    let mut out = Vec::new();
    for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, nth) = match part.split_once('@') {
            Some((n, k)) => match k.parse::<u64>() {
                Ok(k) if k >= 1 => (n, k),
                _ => {
                    eprintln!(
                        "walship: ignoring {ENV} entry {part:?}: expected <name>@<n>, n >= 1"
                    );
                    continue;
                }
            },
            None => (part, 1),
        };
        out.push(Spec {
            name: name.to_string(),
            nth,
            hits: AtomicU64::new(0),
        });
    }
    out
}

/// A crash point: kills the process here if [`ENV`] asks for it (see the module docs), and
/// runs the hooks a test registered for it (see [`set_hook`]).
#[inline]
pub fn point(name: &'static str) {
    if HOOKED.load(Ordering::Acquire) {
        run_hooks(name);
    }
    let specs = specs();
    if specs.is_empty() {
        return;
    }
    fire(specs, name);
}

type Hook = std::sync::Arc<dyn Fn() + Send + Sync>;

static HOOKED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static HOOKS: std::sync::Mutex<Vec<(&'static str, Hook)>> = std::sync::Mutex::new(Vec::new());

/// For tests that must act at an exact moment inside the engine (change a file under it,
/// copy a replica as a crash would leave it): runs `f` on every hit of the point `name`, in
/// this process, on the thread that hits it. Hooks stay until [`clear_hooks`]. Not meant for
/// production: while none is set a point costs one more atomic load.
#[doc(hidden)]
pub fn set_hook(name: &'static str, f: impl Fn() + Send + Sync + 'static) {
    HOOKS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((name, std::sync::Arc::new(f)));
    HOOKED.store(true, Ordering::Release);
}

/// Removes every hook set by [`set_hook`].
#[doc(hidden)]
pub fn clear_hooks() {
    HOOKS.lock().unwrap_or_else(|e| e.into_inner()).clear();
    HOOKED.store(false, Ordering::Release);
}

#[cold]
fn run_hooks(name: &str) {
    // Called outside the lock: a hook may itself reach a point.
    let hooks: Vec<Hook> = HOOKS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|(n, _)| *n == name)
        .map(|(_, f)| f.clone())
        .collect();
    for f in hooks {
        f();
    }
}

#[cold]
fn fire(specs: &[Spec], name: &str) {
    for s in specs {
        if s.matches(name) && s.hits.fetch_add(1, Ordering::SeqCst) + 1 == s.nth {
            eprintln!(
                "walship: fault point {name} hit {}: killing the process",
                s.nth
            );
            crate::platform::kill_self();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_counts_and_wildcards() {
        let s = parse("sync.after_upload@3, file.*,*@7,bad@0,bad@x");
        let got: Vec<(&str, u64)> = s.iter().map(|s| (s.name.as_str(), s.nth)).collect();
        assert_eq!(
            got,
            [("sync.after_upload", 3), ("file.*", 1), ("*", 7)].to_vec()
        );
        assert!(s[0].matches("sync.after_upload"));
        assert!(!s[0].matches("sync.after_upload2"));
        assert!(s[1].matches("file.after_rename"));
        assert!(!s[1].matches("shadow.after_copy"));
        assert!(s[2].matches("checkpoint.before"));
    }

    #[test]
    fn every_listed_point_is_called_in_the_code() {
        // Every library source but this file, wherever the code moves.
        fn read_all(dir: &std::path::Path, out: &mut String) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    read_all(&p, out);
                } else if p.extension().is_some_and(|x| x == "rs") && !p.ends_with("fault.rs") {
                    out.push_str(&std::fs::read_to_string(&p).unwrap());
                }
            }
        }
        let mut src = String::new();
        read_all(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut src,
        );
        for p in POINTS {
            assert!(
                src.contains(&format!("crate::fault::point(\"{p}\")")),
                "fault point {p} is listed in POINTS but called nowhere"
            );
        }
        assert_eq!(
            src.matches("crate::fault::point(").count(),
            POINTS.len(),
            "a fault point is called but not listed in POINTS"
        );
    }
}
