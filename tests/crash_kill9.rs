//! Guards crash safety of `walship replicate`: SIGKILLed at random moments (5-8 times, 200 to
//! 1500 ms apart, seeded) and restarted each time while the application keeps committing,
//! then stopped cleanly, the replica must restore (with walship and with the real Litestream)
//! to exactly the rows the application committed. After every kill, while the replicator is
//! down, a restore must give one of the states the application committed, never going back.
//! The same scenario run with Litestream as the replicator checks that the test asks for
//! nothing the reference cannot do.
mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

fn kill9_scenario(test: &str, replicator: Tool, reference: Option<Tool>) {
    let seed = test_seed(test);
    let mut rng = XorShift::new(seed);
    let t = TestDir::new(test);
    let db = t.join("app.db");
    let replica = t.join("replica");
    let url = file_url(&replica);
    let cfg = write_config(
        t.path(),
        "litestream.yml",
        &db,
        &replica,
        &ConfigOpts::default(),
    );

    let mut w = Workload::open(&db, seed);
    assert!(w.insert(5, true));
    // Every state the application committed, in order.
    let history = Arc::new(Mutex::new(vec![w.model.clone()]));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let history = history.clone();
        let mut rng = XorShift::new(seed ^ 0xdead_beef);
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let before = w.commits;
                w.step();
                if w.commits != before {
                    history.lock().unwrap().push(w.model.clone());
                }
                std::thread::sleep(Duration::from_millis(rng.range(3, 25)));
            }
            w
        })
    };
    let mut restorers: Vec<Tool> = reference.iter().cloned().collect();
    restorers.push(Tool::Walship);
    // The latest state a restore has shown, per restorer: replicated state never goes back.
    let mut seen = vec![0usize; restorers.len()];

    let mut procs = vec![Proc::replicate(t.path(), &replicator, &cfg)];
    let kills = rng.range(5, 8);
    for i in 0..kills {
        let after = rng.range(200, 1500);
        std::thread::sleep(Duration::from_millis(after));
        let p = procs.last_mut().unwrap();
        p.assert_running();
        eprintln!("{test}: kill -9 #{} after {after} ms", i + 1);
        p.kill9();
        // While the replicator is down (the application keeps writing), the replica as the
        // kill left it must restore to a committed state.
        for (tool, seen) in restorers.iter().zip(seen.iter_mut()) {
            let (out, r) = restore(tool, &url, &[], t.path());
            assert!(
                r.ok(),
                "{} restore after kill #{}: {}",
                tool.name(),
                i + 1,
                r.describe()
            );
            let states = history.lock().unwrap().clone();
            let k = which_state(&out, &states[*seen..])
                .map(|k| k + *seen)
                .unwrap_or_else(|e| panic!("{} restore after kill #{}: {e}", tool.name(), i + 1));
            eprintln!(
                "{test}: after kill #{}, {} restores state {k} of {}",
                i + 1,
                tool.name(),
                states.len() - 1
            );
            *seen = k;
        }
        std::thread::sleep(Duration::from_millis(rng.range(0, 300)));
        procs.push(Proc::replicate(t.path(), &replicator, &cfg));
    }
    std::thread::sleep(Duration::from_millis(1000));
    stop.store(true, Ordering::Relaxed);
    let mut w = match writer.join() {
        Ok(w) => w,
        Err(e) => std::panic::resume_unwind(e),
    };
    // The running replicator catches up by itself, without the final sync of a clean stop.
    let waiter = restorers[0].clone();
    wait_replicated(
        &waiter,
        &url,
        t.path(),
        &w.model,
        procs.last_mut().unwrap(),
        Duration::from_secs(30),
    );
    // Written after the wait: only the final sync of the clean stop ships it.
    assert!(w.insert(1, true));
    procs.last_mut().unwrap().stop();
    w.assert_model_matches_source();
    eprintln!(
        "{test}: {kills} kills; {} rows, {} commits, {} failed, {} busy checkpoints",
        w.model.len(),
        w.commits,
        w.failures,
        w.busy_checkpoints
    );
    assert!(
        w.commits >= 50,
        "the writer committed only {} transactions",
        w.commits
    );

    if let Some(reference) = &reference {
        assert_restore(reference, &url, &[], t.path(), &w.model);
    }
    assert_restore(&Tool::Walship, &url, &[], t.path(), &w.model);
    assert_restore(&Tool::Walship, s(&replica), &[], t.path(), &w.model);
    drop(w);
}

#[test]
fn walship_survives_kill9_during_writes() {
    let reference = litestream("walship_survives_kill9_during_writes").map(Tool::Litestream);
    kill9_scenario("kill9-walship", Tool::Walship, reference);
}

#[test]
fn litestream_survives_the_same_kill9_scenario() {
    let Some(ls) = litestream("litestream_survives_the_same_kill9_scenario") else {
        return;
    };
    let ls = Tool::Litestream(ls);
    kill9_scenario("kill9-litestream", ls.clone(), Some(ls));
}
