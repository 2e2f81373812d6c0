//! A disk fills up (issue #7 §3): the local one under the meta directory, or the store's (a
//! file replica). The directory sits on a 3 MiB tmpfs, a filler file takes all but a little
//! of it, and the application goes on writing. walship must say what is wrong (ENOSPC,
//! naming the path), stay up, never let the replica go backwards or break, and catch up
//! exactly once space is freed. Needs the privilege to mount a tmpfs (root here and in CI); without it the test
//! prints a SKIPPING banner on the real stderr.
mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

/// A small tmpfs, unmounted on drop.
struct SmallFs(PathBuf);

impl SmallFs {
    fn mount(at: &Path, size: &str) -> Result<SmallFs, String> {
        fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs", s(at)])
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(SmallFs(at.to_path_buf()))
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Which directory sits on the small file system.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Full {
    /// The meta directory (shadow WAL): the local disk fills up.
    Meta,
    /// The file replica: the store runs out of space.
    Replica,
}

#[test]
fn meta_directory_full_is_reported_and_caught_up() {
    disk_full("meta_directory_full_is_reported_and_caught_up", Full::Meta);
}

#[test]
fn replica_store_full_is_reported_and_caught_up() {
    disk_full(
        "replica_store_full_is_reported_and_caught_up",
        Full::Replica,
    );
}

fn disk_full(test: &str, which: Full) {
    let t = TestDir::new("disk-full");
    let small_dir = t.join("small");
    let small = match SmallFs::mount(&small_dir, "3m") {
        Ok(m) => m,
        Err(why) => {
            let msg = format!("{test}: no small file system ({why})");
            skip_loudly(&msg);
            return;
        }
    };
    let (meta, replica) = match which {
        Full::Meta => (small_dir.join("meta"), t.join("replica")),
        Full::Replica => (t.join("meta"), small_dir.join("replica")),
    };
    let db = t.join("app.db");
    let url = file_url(&replica);
    let mut w = Workload::open(&db, test_seed(test));
    assert!(w.insert(3, false));
    let cfg = t.join("litestream.yml");
    let yaml = config_yaml(&db, &replica, &ConfigOpts::default()).replacen(
        "    monitor-interval:",
        &format!("    meta-path: \"{}\"\n    monitor-interval:", s(&meta)),
        1,
    );
    fs::write(&cfg, yaml).unwrap();
    let mut p = Proc::replicate(t.path(), &Tool::Walship, &cfg);
    wait_replicated(
        &Tool::Walship,
        &url,
        t.path(),
        &w.model,
        &mut p,
        Duration::from_secs(30),
    );

    // Leave ~128 KiB free on the small file system, then write far more than that.
    let filler = small_dir.join("filler");
    let free = {
        let out = Command::new("df")
            .args(["-B1", "--output=avail", s(&small_dir)])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse::<u64>().ok())
            .expect("df output")
    };
    fs::write(&filler, vec![0u8; free.saturating_sub(128 << 10) as usize]).unwrap();
    let mut states = vec![w.model.clone()];
    for _ in 0..12 {
        assert!(w.insert(4, true));
        states.push(w.model.clone());
    }
    wait_until(
        "walship to report the full disk",
        Duration::from_secs(30),
        || {
            p.assert_running();
            let l = p.logs();
            if l.contains("No space left on device") {
                Ok(())
            } else {
                Err("no ENOSPC error logged yet".to_string())
            }
        },
    );
    let logs = p.logs();
    assert!(
        logs.contains(s(&small_dir)),
        "the error should name the path on the full file system:\n{logs}"
    );
    // While full: walship is up, and the replica still restores to a committed state at or
    // after the last one it had (`states[0]` was on the replica before the disk filled).
    std::thread::sleep(Duration::from_secs(2));
    p.assert_running();
    let (out, r) = restore(&Tool::Walship, &url, &[], t.path());
    assert!(r.ok(), "restore while the disk is full: {}", r.describe());
    if let Err(e) = which_state(&out, &states) {
        panic!(
            "restore while the disk is full is not a committed state at or after the last replicated one: {e}"
        );
    }

    // Space comes back: walship catches up with everything, exactly.
    fs::remove_file(&filler).unwrap();
    assert!(w.insert(2, false));
    wait_replicated(
        &Tool::Walship,
        &url,
        t.path(),
        &w.model,
        &mut p,
        Duration::from_secs(60),
    );
    p.stop();
    if let Some(ls) = litestream(test) {
        assert_restore(&Tool::Litestream(ls), &url, &[], t.path(), &w.model);
    }
    drop(small);
}
