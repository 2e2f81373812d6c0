//! A stand-in application for the cross-platform tests (`tests/windows.rs` runs its Windows
//! build under Wine): it writes rows to a SQLite database the way a service does, or reads a
//! follower's copy the way a reader does, holding read transactions open while updates land.
//!
//! ```text
//! app_writer write DB FROM TO [DELAY_MS]   insert rows FROM..=TO, one per transaction
//! app_writer wait  DB N TIMEOUT_S          read DB until it holds rows 1..=N, then exit 0
//! app_writer sleep SECONDS                  do nothing that long (under Wine: keeps the
//!                                           session, and so its services, up)
//! ```
//!
//! `write` creates `t(id INTEGER PRIMARY KEY, v TEXT)` in WAL mode if needed and prints
//! `committed ID` after each commit. `wait` opens the copy once, keeps that connection, and
//! reads in transactions of ~200 ms each; it exits 1 at the timeout and 2 if a read sees
//! rows that are not exactly 1..=count (a torn or partial state).
use std::time::{Duration, Instant};

use rusqlite::Connection;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("app_writer: {e}");
            1
        }
    };
    std::process::exit(code);
}

fn run(args: &[String]) -> Res<i32> {
    let arg = |i: usize| -> Res<&str> {
        args.get(i).map(String::as_str).ok_or_else(|| {
            "usage: app_writer write DB FROM TO [DELAY_MS] | wait DB N TIMEOUT_S".into()
        })
    };
    match arg(0)? {
        "write" => {
            let (from, to): (i64, i64) = (arg(2)?.parse()?, arg(3)?.parse()?);
            let delay = Duration::from_millis(args.get(4).map_or(Ok(0), |s| s.parse())?);
            write(arg(1)?, from, to, delay)?;
            Ok(0)
        }
        "wait" => wait(
            arg(1)?,
            arg(2)?.parse()?,
            Duration::from_secs(arg(3)?.parse()?),
        ),
        "sleep" => {
            std::thread::sleep(Duration::from_secs(arg(1)?.parse()?));
            Ok(0)
        }
        other => Err(format!("unknown mode {other:?}").into()),
    }
}

fn write(db: &str, from: i64, to: i64, delay: Duration) -> Res<()> {
    let c = Connection::open(db)?;
    c.busy_timeout(Duration::from_secs(10))?;
    c.execute_batch(
        "PRAGMA journal_mode=WAL;
         CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v TEXT NOT NULL);",
    )?;
    for id in from..=to {
        c.execute(
            "INSERT INTO t(id, v) VALUES (?1, ?2)",
            rusqlite::params![id, format!("row {id} {}", "x".repeat(200))],
        )?;
        println!("committed {id}");
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
    }
    Ok(())
}

fn wait(db: &str, n: i64, timeout: Duration) -> Res<i32> {
    let c = Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    c.busy_timeout(Duration::from_secs(5))?;
    let deadline = Instant::now() + timeout;
    let mut last = (0i64, 0i64);
    while Instant::now() < deadline {
        // One read transaction held across a pause: the follower's updates land meanwhile.
        c.execute_batch("BEGIN")?;
        let got: rusqlite::Result<(i64, i64)> =
            c.query_row("SELECT count(*), coalesce(max(id), 0) FROM t", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            });
        std::thread::sleep(Duration::from_millis(200));
        let again: rusqlite::Result<(i64, i64)> =
            c.query_row("SELECT count(*), coalesce(max(id), 0) FROM t", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            });
        c.execute_batch("COMMIT")?;
        match (got, again) {
            (Ok(a), Ok(b)) => {
                if a != b {
                    eprintln!("app_writer: one read transaction saw {a:?} then {b:?}");
                    return Ok(2);
                }
                if a.0 != a.1 {
                    eprintln!("app_writer: {} rows but max id {}", a.0, a.1);
                    return Ok(2);
                }
                last = a;
                if a.0 >= n {
                    println!("seen {}", a.0);
                    return Ok(0);
                }
            }
            // The table appears with the first update of the copy.
            (Err(e), _) | (_, Err(e)) if e.to_string().contains("no such table") => {}
            (Err(e), _) | (_, Err(e)) => return Err(e.into()),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "app_writer: timed out with {} rows, waiting for {n}",
        last.0
    );
    Ok(1)
}
