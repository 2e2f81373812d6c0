//! Restarts (issue #16): after a clean stop, walship goes on with the same generation when
//! it can prove that the database file is as it left it, instead of uploading the whole
//! database again; otherwise it starts a new generation, as before. Each case ends with
//! restores by walship and by the real Litestream v0.3.13 (when installed) that must hold
//! exactly the application's rows.
mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

struct Setup {
    t: TestDir,
    db: PathBuf,
    replica: PathBuf,
    cfg: PathBuf,
    app: Workload,
    restorers: Vec<Tool>,
}

impl Setup {
    fn new(test: &str) -> Setup {
        let t = TestDir::new(test);
        let db = t.join("app.db");
        let replica = t.join("replica");
        let cfg = write_config(
            t.path(),
            "litestream.yml",
            &db,
            &replica,
            &ConfigOpts::default(),
        );
        let app = Workload::open(&db, test_seed(test));
        let mut restorers = vec![Tool::Walship];
        if let Some(ls) = litestream(test) {
            restorers.push(Tool::Litestream(ls));
        }
        Setup {
            t,
            db,
            replica,
            cfg,
            app,
            restorers,
        }
    }

    /// Starts walship and waits until it has looked at the database (and at a clean
    /// stop's proof), so the application's next writes come after that: the application
    /// writing and checkpointing before walship runs is the "changed while down" case.
    fn replicate(&self) -> Proc {
        let mut p = Proc::replicate(self.t.path(), &Tool::Walship, &self.cfg);
        wait_until(
            "walship to look at the database",
            Duration::from_secs(20),
            || {
                p.assert_running();
                let logs = p.logs();
                if logs.contains("clean stop") || logs.contains("sync: new generation") {
                    Ok(())
                } else {
                    Err(logs)
                }
            },
        );
        p
    }

    /// A new setup after a first run of walship and the application, stopped cleanly:
    /// walship has recorded its proof.
    fn stopped_cleanly(test: &str) -> Setup {
        let mut s = Setup::new(test);
        let mut p = s.replicate();
        s.write_and_wait(&mut p, 60);
        p.stop();
        assert!(
            s.clean_stop_record().exists(),
            "a clean stop records its proof\n{}",
            p.logs()
        );
        s
    }

    /// Some commits, then waits until walship's restore holds them.
    fn write_and_wait(&mut self, p: &mut Proc, steps: usize) {
        self.app.run(steps, Duration::from_millis(5));
        wait_replicated_cfg(
            &Tool::Walship,
            &self.cfg,
            &self.db,
            self.t.path(),
            &self.app.model,
            p,
            Duration::from_secs(30),
        );
    }

    /// Closes the application's connection (with walship stopped it is the last one:
    /// SQLite checkpoints and deletes the -wal file), runs `while_closed`, and opens it
    /// again; its rows must be the ones it committed.
    fn restart_app(&mut self, tag: &str, while_closed: impl FnOnce(&Setup)) {
        let model = self.app.model.clone();
        let other = Workload::open(&self.t.join("other.db"), 1);
        drop(std::mem::replace(&mut self.app, other));
        while_closed(self);
        self.app = Workload::open(&self.db, test_seed(tag));
        assert_eq!(
            self.app.model, model,
            "the application's rows survive its restart"
        );
    }

    /// Starts walship again after the proof could not hold: it must say why (every one
    /// of `why` in its log), start a second generation, and both tools must restore
    /// exactly the application's rows.
    fn expect_new_generation(&mut self, why: &[&str]) {
        let mut p = self.replicate();
        self.write_and_wait(&mut p, 20);
        p.stop();
        let logs = p.logs();
        assert!(
            why.iter().all(|w| logs.contains(w)),
            "walship must refuse the proof, saying {why:?}\n{logs}"
        );
        assert_eq!(
            self.generations().len(),
            2,
            "a new generation: {:?}",
            self.generations()
        );
        self.assert_restores();
    }

    fn generations(&self) -> Vec<String> {
        dir_entries(&self.replica.join("generations"))
    }

    fn clean_stop_record(&self) -> PathBuf {
        clean_stop_proof(&self.db)
    }

    fn assert_restores(&self) {
        for tool in &self.restorers {
            assert_restore(
                tool,
                &file_url(&self.replica),
                &[],
                self.t.path(),
                &self.app.model,
            );
        }
    }
}

fn wal_exists(db: &Path) -> bool {
    let mut p = db.as_os_str().to_owned();
    p.push("-wal");
    Path::new(&p).exists()
}

#[test]
fn a_clean_stop_goes_on_with_the_generation() {
    let mut s = Setup::stopped_cleanly("clean_stop_same_generation");
    // The application stops after walship, as a service manager stopping both may do: its
    // last connection deletes the -wal file, which used to start a new generation.
    s.restart_app("clean_stop_same_generation/2", |s| {
        assert!(
            !wal_exists(&s.db),
            "the application's last close removes the -wal file"
        );
    });

    let mut p = s.replicate();
    s.write_and_wait(&mut p, 60);
    let logs = p.logs();
    assert!(
        logs.contains("going on with the generation after a clean stop"),
        "walship must use the proof\n{logs}"
    );
    assert!(
        !s.clean_stop_record().exists(),
        "the proof is used once: removed when read"
    );
    // Once more, with the application running across walship's restart.
    p.stop();
    let mut p = s.replicate();
    s.write_and_wait(&mut p, 40);
    p.stop();
    assert_eq!(
        s.generations().len(),
        1,
        "one generation: {:?}",
        s.generations()
    );
    s.assert_restores();
}

#[test]
fn a_database_changed_while_walship_was_down_starts_a_new_generation() {
    let mut s = Setup::stopped_cleanly("clean_stop_changed");
    // The application goes on alone and checkpoints into the database file.
    s.app.run(30, Duration::ZERO);
    s.app.checkpoint("TRUNCATE").expect("checkpoint");
    s.restart_app("clean_stop_changed/2", |_| {});
    s.expect_new_generation(&[
        "not going on from the clean stop",
        "the database file changed",
    ]);
}

#[test]
fn a_replaced_database_file_starts_a_new_generation() {
    let mut s = Setup::stopped_cleanly("clean_stop_replaced");
    // Close the application, put a copy of the file in place (same bytes, another file:
    // walship cannot know what a replacement holds), and start again.
    s.restart_app("clean_stop_replaced/2", |s| {
        let copy = s.t.join("app.db.copy");
        std::fs::copy(&s.db, &copy).unwrap();
        std::fs::rename(&copy, &s.db).unwrap();
    });
    s.expect_new_generation(&["not going on from the clean stop"]);
}
