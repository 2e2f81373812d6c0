//! Guards replication through stores that fail, with real servers behind the fault proxy
//! (`tests/common/servers.rs`), each scenario written once and run over the backend table
//! (`tests/common/backends.rs`), one test per (scenario, backend):
//! 1. `through_faults`: 500 answers (HTTP stores), connection resets, then a black hole,
//!    while the application writes: walship stays up, the replica restores (read past the
//!    proxy) during each fault, and walship catches up with exactly the committed rows once
//!    the store answers again;
//! 2. `out_of_space`: the proxy answers uploads with MinIO's `507 Insufficient Storage`
//!    (reads pass) on the stores that answer so (S3 as MinIO does, WebDAV as RFC 4918 §11.5
//!    says): nothing unconfirmed shows in the replica, the log says once what happened and
//!    what to do, and walship catches up when space is back;
//! 3. `stall_of_minutes`: the store stalls for 75 s, longer than every deadline and the
//!    backoff cap: walship keeps the shadow WAL, does not spin (CPU time measured), logs once,
//!    and catches up in bounded time on the same generation.
//!
//! Tests fail under CI when a server is missing; elsewhere they skip loudly.
mod common;
#[path = "common/servers.rs"]
mod servers;
#[macro_use]
#[path = "common/backends.rs"]
mod backends;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use backends::{Backend, CATCH_UP, PAUSE, Store, churn, listing};
use common::*;
use servers::{FaultProxy, Mode};

per_backend!(through_faults: s3, abs, sftp, gcs, webdav);
per_backend!(out_of_space: s3, webdav);
// 75 s each: one backend.
per_backend!(stall_of_minutes: s3);

// ------------------------------------------------------------------------------------------
// 1. Resets, 500s, a black hole

/// walship replicates through the fault proxy; 1 s as normal, then each of the backend's
/// faults (500 answers, resets, a black hole) for 3 s or until walship has met it, while the
/// application writes, then normal again. walship stays up, the replica as each fault
/// leaves it restores (read past the proxy), and walship catches up with
/// exactly the committed rows; a failed catch-up is diagnosed (requests still hanging on a
/// dead connection, a stop on SIGTERM) before the test fails.
fn through_faults(b: Backend, test: &str) {
    let t = TestDir::new(test);
    let Some(store) = b.start(test, &t) else {
        return;
    };
    let proxy = store.proxy();
    let db = t.join("app.db");
    let o = ConfigOpts::default();
    let proxied = store.replica_yaml("app", "500ms", Some(&proxy));
    let cfg = write_config_with(t.path(), "proxied.yml", &db, &proxied, &o);
    // Restores read past the proxy: they see what the store holds, whatever the fault.
    let direct = store.replica_yaml("app", "500ms", None);
    let direct = write_config_with(t.path(), "direct.yml", &db, &direct, &o);
    let mut w = Workload::open(&db, test_seed(test));
    assert!(w.insert(5, true));
    let mut p = {
        let _via = store.route(Some(&proxy));
        Proc::replicate(t.path(), &Tool::Walship, &cfg)
    };
    wait_replicated_cfg(
        &Tool::Walship,
        &direct,
        &db,
        t.path(),
        &w.model,
        &mut p,
        CATCH_UP,
    );

    w.run_for(Duration::from_secs(1), PAUSE);
    for &mode in b.faults() {
        // Each fault lasts 3 s, and longer if walship is still backing off from the last
        // one: until it has met this one.
        let before = met(&proxy.stats(), mode);
        proxy.set_mode(mode);
        let since = Instant::now();
        wait_until(&format!("walship to meet {mode:?}"), FAULT_MAX, || {
            w.step();
            std::thread::sleep(PAUSE);
            match met(&proxy.stats(), mode) > before {
                true if since.elapsed() >= FAULT_MIN => Ok(()),
                true => Err("still in the fault's first seconds".to_string()),
                false => Err(format!("nothing met {mode:?} yet")),
            }
        });
        eprintln!("{mode:?} for {:?}", since.elapsed());
        p.assert_running();
        let (_, r) = restore(&Tool::Walship, s(&db), &["-config", s(&direct)], t.path());
        assert!(r.ok(), "restore during {mode:?}: {}", r.describe());
    }
    proxy.set_mode(Mode::Pass);
    eprintln!("proxy after the faults: {:?}", proxy.stats());
    w.run_for(Duration::from_secs(1), PAUSE);
    let faults_ended = Instant::now();
    assert!(w.insert(2, true));
    let caught_up = try_wait_replicated_cfg(
        &Tool::Walship,
        &direct,
        &db,
        t.path(),
        &w.model,
        &mut p,
        b.catch_up_after_faults(),
    );
    if let Err(e) = caught_up {
        diagnose_and_fail(&proxy, &mut p, faults_ended, &e);
    }
    eprintln!(
        "MEASURE: {} caught up {:?} after {:?}",
        b.name(),
        faults_ended.elapsed(),
        b.faults()
    );
    p.stop();
    w.assert_model_matches_source();
    let logs = p.logs();
    if b.faults().contains(&Mode::Http500) {
        assert!(
            logs.contains("500"),
            "the 500 answers should be in the log:\n{logs}"
        );
    }
    {
        let _via = store.route(Some(&proxy));
        assert_restore(
            &Tool::Walship,
            s(&db),
            &["-config", s(&cfg)],
            t.path(),
            &w.model,
        );
    }
    let count = |lvl: &str| logs.lines().filter(|l| l.contains(lvl)).count();
    eprintln!(
        "walship logged {} ERROR and {} WARN lines over the run",
        count("ERROR"),
        count("WARN")
    );
}

/// How long each fault lasts at least, and at most (the backoff cap with its jitter and a
/// request's deadline: walship must try within it).
const FAULT_MIN: Duration = Duration::from_secs(3);
const FAULT_MAX: Duration = Duration::from_secs(50);

/// What the proxy counted of `mode` so far: connections answered with a 500, reset, or
/// black-holed.
fn met(st: &servers::ProxyStats, mode: Mode) -> u64 {
    match mode {
        Mode::Http500 => st.errors_500,
        Mode::Reset => st.resets,
        Mode::Blackhole => st.blackholed,
        other => panic!("no count for {other:?}"),
    }
}

/// Fails a catch-up that did not come, after finding out whether a request still hangs on
/// a dead connection and whether walship still stops on SIGTERM.
fn diagnose_and_fail(proxy: &FaultProxy, p: &mut Proc, faults_ended: Instant, e: &str) -> ! {
    let st = proxy.stats();
    p.signal(libc::SIGTERM);
    let stop_start = Instant::now();
    while p.is_running() && stop_start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let stopped = if p.is_running() {
        "still running 5 s after SIGTERM".to_string()
    } else {
        format!("exited {:?} after SIGTERM", stop_start.elapsed())
    };
    p.kill9();
    panic!(
        "walship did not catch up within {:?} after the faults ended ({e}); proxy: \
         {st:?} ({} blackholed connection(s) still held open by the client); walship {stopped}\n{}",
        faults_ended.elapsed(),
        st.blackholed_open,
        p.logs()
    );
}

// ------------------------------------------------------------------------------------------
// 2. A store that is out of space

/// `walship replicate` through a proxy in front of the store while the application writes;
/// the proxy answers every upload with MinIO's `507 Insufficient Storage` for 6 s. What the
/// store holds is read past the proxy, so it shows only what the store confirmed:
/// - nothing new appears in the store (its holdings) while uploads are refused, and the
///   replica's `wal` listing (reads pass the proxy) stays what the store confirmed;
/// - the log says once, not per retry, that the store is out of space and what to do;
/// - once uploads are accepted again walship catches up, and a restore gives exactly the
///   source rows.
fn out_of_space(b: Backend, test: &str) {
    let full_for = Duration::from_secs(6);
    let t = TestDir::new(test);
    let Some(store) = b.start(test, &t) else {
        return;
    };
    let proxy = store.proxy();
    let db = &t.join("app.db");
    let yaml = store.replica_yaml("app", "200ms", Some(&proxy));
    let cfg = &write_config_with(t.path(), "full.yml", db, &yaml, &ConfigOpts::default());
    let holdings = || held(&store, "app");
    let mut w = Workload::open(db, test_seed(test));
    assert!(w.insert(5, true));
    let mut p = Proc::replicate(t.path(), &Tool::Walship, cfg);
    let cfg_args = ["-config", s(cfg), s(db)];
    wait_replicated_cfg(
        &Tool::Walship,
        cfg,
        db,
        t.path(),
        &w.model,
        &mut p,
        CATCH_UP,
    );
    w.run_for(Duration::from_secs(1), PAUSE);

    proxy.set_mode(Mode::StorageFull);
    let full_since = Instant::now();
    // From the first refused upload on, nothing can reach the store.
    wait_until("walship to try an upload", CATCH_UP, || {
        w.step();
        std::thread::sleep(PAUSE);
        match proxy.stats().refused_uploads {
            0 => Err("no upload refused yet".to_string()),
            _ => Ok(()),
        }
    });
    let held = holdings();
    let wal = listing(&Tool::Walship, "wal", &cfg_args, t.path());
    assert!(
        !held.is_empty() && !wal.is_empty(),
        "nothing replicated before the fault"
    );
    let mut rounds = 0;
    while full_since.elapsed() < full_for {
        w.run_for(Duration::from_millis(700), PAUSE);
        p.assert_running();
        assert_eq!(
            holdings(),
            held,
            "the store changed while it refused every upload"
        );
        assert_eq!(
            listing(&Tool::Walship, "wal", &cfg_args, t.path()),
            wal,
            "the replica's wal listing changed while the store refused every upload"
        );
        rounds += 1;
    }
    // The replica as the fault left it restores (reads pass).
    let (_, r) = restore(&Tool::Walship, s(db), &["-config", s(cfg)], t.path());
    assert!(r.ok(), "restore while the store is full: {}", r.describe());
    proxy.set_mode(Mode::Pass);
    let st = proxy.stats();
    assert!(
        st.refused_uploads >= 3,
        "walship did not retry the refused upload: {st:?}"
    );
    let cleared = Instant::now();
    assert!(w.insert(2, true));
    let lag = wait_replicated_cfg(
        &Tool::Walship,
        cfg,
        db,
        t.path(),
        &w.model,
        &mut p,
        CATCH_UP,
    );
    eprintln!(
        "MEASURE: {test}: {} uploads refused with 507 over {:.1} s ({rounds} checks of the \
         store); caught up {:.2} s after the store had space again",
        st.refused_uploads,
        full_for.as_secs_f64(),
        lag.as_secs_f64(),
    );
    assert!(cleared.elapsed() >= lag);
    p.stop();
    w.assert_model_matches_source();
    assert_restore(
        &Tool::Walship,
        s(db),
        &["-config", s(cfg)],
        t.path(),
        &w.model,
    );

    let logs = p.logs();
    let full: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("out of space"))
        .collect();
    assert_eq!(
        full.len(),
        1,
        "the out-of-space error should be logged once, not per retry ({} refused \
         uploads):\n{}",
        st.refused_uploads,
        full.join("\n")
    );
    for needle in [
        "ERROR",
        "507 Insufficient Storage",
        "refused the upload",
        "free space",
    ] {
        assert!(full[0].contains(needle), "no {needle:?} in: {}", full[0]);
    }
    assert!(
        logs.contains("replica sync recovered"),
        "no recovery in the log:\n{logs}"
    );
    // object_store's own per-retry lines stay out of the default log.
    let retries = logs
        .lines()
        .filter(|l| l.contains("Encountered server error"))
        .count();
    assert_eq!(retries, 0, "object_store retry lines in the log:\n{logs}");
    eprintln!("the log line: {}", full[0]);
    if b == Backend::S3 {
        let logs = fs::read_to_string(t.join("moto.log")).unwrap_or_default();
        assert!(logs.contains("PUT"), "moto saw no upload at all");
    }
}

/// What the store holds of replica `name`, as `path size` lines.
fn held(store: &Store, name: &str) -> Vec<String> {
    store
        .holdings(name)
        .expect("the store's holdings")
        .into_iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect()
}

// ------------------------------------------------------------------------------------------
// 3. A stall of minutes

/// CPU time (user + system, all threads) of process `pid` so far.
fn cpu_time(pid: i32) -> Duration {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    // The fields after the command name (which may hold spaces) in parentheses: state is
    // field 3, utime field 14, stime field 15.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // SAFETY: sysconf(3) has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Duration::from_secs_f64((f[11] + f[12]) as f64 / hz)
}

/// The shadow WAL files of `db` (`<generation>/<index>.wal`) with their sizes.
fn shadow_wal(db: &Path) -> BTreeMap<String, u64> {
    let name = db.file_name().expect("db name").to_string_lossy();
    let gens = db.with_file_name(format!(".{name}-litestream/generations"));
    let mut out = BTreeMap::new();
    for g in dir_entries(&gens) {
        for f in dir_entries(&gens.join(&g).join("wal")) {
            let size = fs::metadata(gens.join(&g).join("wal").join(&f)).map_or(0, |m| m.len());
            out.insert(format!("{g}/{f}"), size);
        }
    }
    out
}

/// The store stops answering for 75 s (accepts connections, never replies), longer than
/// every per-operation deadline (10 s + 1 s/MiB) and than the 30 s backoff cap, while the
/// application commits. walship stays up without spinning (CPU time over the stall under
/// 5% of one core, a bounded number of connection attempts), keeps every shadow WAL file
/// the replica still needs, logs the failure once rather than per retry, and after the
/// stall catches up within 70 s (backoff cap with jitter, one deadline, the upload) on the same
/// generation; a restore then gives exactly the source rows.
fn stall_of_minutes(b: Backend, test: &str) {
    const STALL: Duration = Duration::from_secs(75);
    let t = TestDir::new(test);
    let Some(store) = b.start(test, &t) else {
        return;
    };
    let proxy = store.proxy();
    let _via = store.route(Some(&proxy));
    let db = t.join("app.db");
    let yaml = store.replica_yaml("app", "1s", Some(&proxy));
    let cfg = write_config_with(t.path(), "stall.yml", &db, &yaml, &ConfigOpts::default());
    let cfg_args = ["-config", s(&cfg), s(&db)];
    let mut w = Workload::open(&db, test_seed(test));
    assert!(w.insert(5, true));
    let mut p = Proc::replicate(t.path(), &Tool::Walship, &cfg);
    churn(&mut w, 60);
    wait_replicated_cfg(
        &Tool::Walship,
        &cfg,
        &db,
        t.path(),
        &w.model,
        &mut p,
        CATCH_UP,
    );
    let gens = listing(&Tool::Walship, "generations", &cfg_args, t.path());
    let errors_before = p.logs().lines().filter(|l| l.contains("ERROR")).count();

    proxy.set_mode(Mode::Blackhole);
    let start = Instant::now();
    let (cpu0, conns0) = (cpu_time(p.pid()), proxy.stats().connections);
    // The WAL index the replica has reached, as the store holds it (read past the proxy;
    // nothing reaches the store from now on): its shadow WAL file and every later one must
    // stay until they are uploaded.
    let replica_index = store
        .holdings("app")
        .expect("the store's holdings")
        .iter()
        .filter(|(k, _)| k.starts_with("generations/"))
        .filter_map(|(k, _)| k.rsplit('/').next())
        .filter_map(walship::layout::parse_wal_segment_name)
        .map(|(index, _)| index)
        .max()
        .expect("no wal segment in the store before the stall");
    let needed = |shadow: &BTreeMap<String, u64>| -> BTreeMap<u32, u64> {
        shadow
            .iter()
            .filter_map(|(f, n)| {
                let name = f.rsplit('/').next()?.strip_suffix(".wal")?;
                let index = u32::from_str_radix(name, 16).ok()?;
                (index >= replica_index).then_some((index, *n))
            })
            .collect()
    };
    let shadow0 = needed(&shadow_wal(&db));
    // The replica's index itself, or the next one when it has uploaded all of it.
    let first = shadow0.keys().next().copied();
    assert!(
        first == Some(replica_index) || first == Some(replica_index + 1),
        "no shadow wal for the replica's index {replica_index:08x} before the stall: {:?}",
        shadow_wal(&db)
    );
    let first = first.expect("checked above");
    let mut commits = 0;
    while start.elapsed() < STALL {
        w.step();
        commits += 1;
        std::thread::sleep(Duration::from_millis(200));
        if commits % 25 == 0 {
            p.assert_running();
        }
    }
    p.assert_running();
    let (cpu, wall) = (cpu_time(p.pid()) - cpu0, start.elapsed());
    let st = proxy.stats();
    let shadow1 = needed(&shadow_wal(&db));
    proxy.set_mode(Mode::Pass);
    let stall_ended = Instant::now();
    assert!(w.insert(2, true));

    let cpu_share = cpu.as_secs_f64() / wall.as_secs_f64();
    let conns = st.connections - conns0;
    eprintln!(
        "MEASURE: over a {:.1} s stall with {commits} commits, walship used {:.3} s of CPU \
         ({:.2}% of one core) and opened {conns} connections ({} blackholed)",
        wall.as_secs_f64(),
        cpu.as_secs_f64(),
        cpu_share * 100.0,
        st.blackholed
    );
    assert!(
        st.blackholed > 0,
        "walship sent nothing during the stall: {st:?}"
    );
    assert!(
        cpu_share < 0.05,
        "walship used {:.1}% of a core while the store was stalled",
        cpu_share * 100.0
    );
    assert!(
        conns < 100,
        "{conns} connections in {wall:?}: retries are not backing off"
    );
    // Nothing the replica still needs went away, and the new commits were kept: every
    // index from the replica's on, without a gap, none shorter than before.
    for (index, size) in &shadow0 {
        let now = shadow1.get(index).copied();
        assert!(
            now.is_some_and(|n| n >= *size),
            "shadow wal index {index:08x} ({size} bytes) is {now:?} after the stall; before: \
             {shadow0:?}, after: {shadow1:?}"
        );
    }
    let indexes: Vec<u32> = shadow1.keys().copied().collect();
    let want: Vec<u32> = (first..=*indexes.last().expect("shadow wal")).collect();
    assert_eq!(indexes, want, "the shadow wal the replica needs has a gap");
    let grew = shadow1.values().sum::<u64>() > shadow0.values().sum::<u64>();
    assert!(grew, "the shadow wal did not grow over {commits} commits");
    eprintln!(
        "shadow wal kept over the stall: indexes {first:08x}..={:08x}, {} bytes",
        indexes.last().expect("shadow wal"),
        shadow1.values().sum::<u64>()
    );

    try_wait_replicated_cfg(
        &Tool::Walship,
        &cfg,
        &db,
        t.path(),
        &w.model,
        &mut p,
        Duration::from_secs(120),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", p.logs()));
    let caught_up = stall_ended.elapsed();
    eprintln!(
        "MEASURE: walship caught up {:.1} s after a {:.0} s stall ended (restore polled every \
         100 ms)",
        caught_up.as_secs_f64(),
        STALL.as_secs_f64()
    );
    // The longest wait: a backoff at its cap (30 s + 25% jitter) begun just before the
    // end, then the requests of one sync under their deadline (10 s), then uploading what
    // the stall held back (~8 MB here) and a restore to see it: 70 s.
    assert!(
        caught_up < Duration::from_secs(70),
        "caught up only {caught_up:?} after the stall ended"
    );
    assert_eq!(
        listing(&Tool::Walship, "generations", &cfg_args, t.path()),
        gens,
        "a new generation after a stall: continuity was lost"
    );
    p.stop();
    w.assert_model_matches_source();
    assert_restore(
        &Tool::Walship,
        s(&db),
        &["-config", s(&cfg)],
        t.path(),
        &w.model,
    );

    let logs = p.logs();
    let errors: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("ERROR"))
        .skip(errors_before)
        .collect();
    eprintln!("ERROR lines from the stall on:\n{}", errors.join("\n"));
    assert!(
        !errors.is_empty() && errors.len() <= 2,
        "the stall should be logged once (at most once per kind of failed request), got {} \
         ERROR lines",
        errors.len()
    );
}
