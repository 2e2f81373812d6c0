//! Guards #17's promise to readers of a follower copy (`walship restore -f`): while the
//! primary commits, the follower applies each change in place, is killed with SIGKILL and
//! restarted twice, and the primary starts a new generation, two readers query the copy
//! (one long-lived connection, one opening a fresh connection per query, as a shell
//! would). Every answer must be a state the primary committed, no query may fail (a busy
//! timeout absorbs the follower's short write locks), and the copy must end equal to the
//! primary. Run over a file replica (inotify) and over `python3 -m http.server` (polling).
mod common;
#[path = "common/servers.rs"]
mod servers;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use rusqlite::{Connection, OpenFlags};
use servers::StaticHttp;

/// What a reader can see of one committed state: (count, min id, sum of lengths), keyed by
/// the state's max id (each commit inserts the next id and never deletes the newest).
type States = Arc<Mutex<BTreeMap<i64, (i64, i64, i64)>>>;

struct Primary {
    conn: Connection,
    k: i64,
    rows: BTreeMap<i64, i64>,
    states: States,
}

impl Primary {
    fn open(path: &std::path::Path) -> Primary {
        let conn = Connection::open(path).unwrap();
        conn.busy_timeout(APP_BUSY_TIMEOUT).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL);",
        )
        .unwrap();
        Primary {
            conn,
            k: 0,
            rows: BTreeMap::new(),
            states: Arc::default(),
        }
    }

    /// One commit: insert the next row; every 10th also deletes the rows 30 behind.
    fn commit(&mut self) {
        self.k += 1;
        let k = self.k;
        let len = 1 + (k * 37) % 3000;
        self.rows.insert(k, len);
        let delete_below = (k % 10 == 0).then_some(k - 30);
        if let Some(d) = delete_below {
            self.rows.retain(|&id, _| id > d);
        }
        let state = (
            self.rows.len() as i64,
            *self.rows.keys().next().unwrap(),
            self.rows.values().sum::<i64>(),
        );
        // Known before it can be seen.
        self.states.lock().unwrap().insert(k, state);
        let tx = self.conn.transaction().unwrap();
        tx.execute(
            "INSERT INTO t(id, v) VALUES (?1, substr(printf('%.*c', ?2, 'x') || ?1, 1, ?2))",
            rusqlite::params![k, len],
        )
        .unwrap();
        if let Some(d) = delete_below {
            tx.execute("DELETE FROM t WHERE id <= ?1", [d]).unwrap();
        }
        tx.commit().unwrap();
        if k % 50 == 0 {
            // Shrinks the file: the copy must follow page-count changes both ways.
            self.conn.execute_batch("VACUUM").unwrap();
        }
    }

    fn content(c: &Connection) -> Vec<(i64, String)> {
        let mut st = c.prepare("SELECT id, v FROM t ORDER BY id").unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    }
}

/// How long the follower may take to catch up before the test fails.
const CATCH_UP: Duration = Duration::from_secs(30);

const QUERY: &str =
    "SELECT count(*), coalesce(min(id),0), coalesce(max(id),0), coalesce(sum(length(v)),0) FROM t";

/// Checks one answer against the committed states; `Err` says what is wrong.
fn judge(states: &States, got: (i64, i64, i64, i64)) -> Result<(), String> {
    let (count, min, max, sum) = got;
    match states.lock().unwrap().get(&max) {
        Some(&want) if want == (count, min, sum) => Ok(()),
        Some(want) => Err(format!(
            "state {max}: (count, min, sum) {:?}, committed {want:?}",
            (count, min, sum)
        )),
        None => Err(format!("state {max} was never committed")),
    }
}

fn open_copy(path: &std::path::Path) -> rusqlite::Result<Connection> {
    let c = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    c.busy_timeout(Duration::from_secs(5))?;
    Ok(c)
}

fn query(c: &Connection) -> rusqlite::Result<(i64, i64, i64, i64)> {
    c.query_row(QUERY, [], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
    })
}

#[derive(Default)]
struct Tally {
    reads: u64,
    bad: Vec<String>,
}

/// Starts a reader thread; `fresh`: a new connection per query.
fn reader(
    copy: std::path::PathBuf,
    states: States,
    stop: Arc<AtomicBool>,
    fresh: bool,
) -> std::thread::JoinHandle<Tally> {
    std::thread::spawn(move || {
        let mut t = Tally::default();
        let mut conn: Option<Connection> = None;
        while !stop.load(Ordering::Relaxed) {
            if !copy.exists() {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            if conn.is_none() {
                match open_copy(&copy) {
                    Ok(c) => conn = Some(c),
                    Err(e) => {
                        t.bad.push(format!("open: {e}"));
                        continue;
                    }
                }
            }
            match query(conn.as_ref().unwrap()) {
                Ok(got) => {
                    t.reads += 1;
                    if let Err(e) = judge(&states, got) {
                        t.bad.push(e);
                    }
                }
                Err(e) => t.bad.push(format!("query: {e}")),
            }
            if fresh {
                conn = None;
            }
            std::thread::sleep(Duration::from_millis(3));
        }
        t
    })
}

fn follower(t: &TestDir, copy: &std::path::Path, target: &str) -> Proc {
    Proc::spawn(
        t.path(),
        "walship-follow",
        std::path::Path::new(WALSHIP),
        &["restore", "-f", "-interval", "200ms", "-o", s(copy), target],
    )
}

/// The scenario; `target` gives the follower's replica URL from the replica directory.
fn readers_see_only_committed_states(name: &str, target: impl Fn(&std::path::Path) -> String) {
    let t = TestDir::new(name);
    let db = t.join("app.db");
    let replica = t.join("replica");
    let copy = t.join("copy.db");
    let cfg = write_config(t.path(), "cfg.yml", &db, &replica, &ConfigOpts::default());
    let mut p = Primary::open(&db);
    for _ in 0..10 {
        p.commit();
    }
    let mut rep = Proc::replicate(t.path(), &Tool::Walship, &cfg);
    wait_first_generation(&mut rep, &replica);
    let url = target(&replica);
    let mut fol = follower(&t, &copy, &url);
    let stop = Arc::new(AtomicBool::new(false));
    let readers =
        [false, true].map(|fresh| reader(copy.clone(), p.states.clone(), stop.clone(), fresh));
    let mut logs = Vec::new();
    for step in 0..200 {
        p.commit();
        std::thread::sleep(Duration::from_millis(15));
        match step {
            // SIGKILL at arbitrary moments of the follower's work, then a restart that
            // must resume where the copy is.
            60 | 100 => {
                fol.assert_running();
                fol.kill9();
                logs.push(fol.logs());
                fol = follower(&t, &copy, &url);
            }
            // The primary starts a new generation (its replication state is lost).
            140 => {
                rep.stop();
                std::fs::remove_dir_all(t.join(".app.db-litestream")).unwrap();
                rep = Proc::replicate(t.path(), &Tool::Walship, &cfg);
            }
            _ => {}
        }
    }
    let want = Primary::content(&p.conn);
    wait_until("the copy to equal the primary", CATCH_UP, || {
        fol.assert_running();
        rep.assert_running();
        let c = open_copy(&copy).map_err(|e| e.to_string())?;
        let got = Primary::content(&c);
        if got == want {
            Ok(())
        } else {
            Err(format!(
                "copy has {} rows up to id {:?}, primary {} up to {:?}",
                got.len(),
                got.last().map(|r| r.0),
                want.len(),
                want.last().map(|r| r.0)
            ))
        }
    });
    stop.store(true, Ordering::Relaxed);
    let tallies: Vec<Tally> = readers.into_iter().map(|h| h.join().unwrap()).collect();
    let ok: String = open_copy(&copy)
        .unwrap()
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    fol.stop();
    logs.push(fol.logs());
    let bad: Vec<&String> = tallies.iter().flat_map(|t| &t.bad).collect();
    let reads: Vec<u64> = tallies.iter().map(|t| t.reads).collect();
    eprintln!("reads per reader: {reads:?}, bad answers: {}", bad.len());
    assert!(
        bad.is_empty(),
        "{} bad answers, first: {:?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
    assert!(
        reads.iter().all(|&r| r > 200),
        "the readers hardly read: {reads:?}"
    );
    // Both restarts resumed from the state file instead of restoring again; the last
    // follower saw the new generation and took it.
    for (i, l) in logs.iter().enumerate().skip(1) {
        assert!(
            l.contains("resuming where the copy is"),
            "follower {i} did not resume: {l}"
        );
    }
    assert!(
        logs[2].contains("the primary started a new generation"),
        "the new generation was not followed: {}",
        logs[2]
    );
    rep.stop();
}

#[test]
fn readers_of_a_file_replica_follower_see_only_committed_states() {
    readers_see_only_committed_states("follow-readers-file", |r| s(r).to_string());
}

#[test]
fn readers_of_a_static_http_follower_see_only_committed_states() {
    let t = TestDir::new("follow-readers-http-server");
    let root = t.join("root");
    let Some(srv) = StaticHttp::start("follow_readers_http", t.path(), &root) else {
        return;
    };
    // The replica directory is created inside the served root by the scenario's own
    // TestDir; serve it through a symlink named after the test.
    let url = srv.url("r");
    readers_see_only_committed_states("follow-readers-http", move |replica| {
        std::fs::create_dir_all(replica).unwrap();
        std::os::unix::fs::symlink(replica, root.join("r")).unwrap();
        url.clone()
    });
}
