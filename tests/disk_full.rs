//! The local disk under the meta directory fills up (issue #7 §3): `walship replicate` keeps
//! a 3 MiB tmpfs as its meta directory, a filler file takes all but a little of it, and the
//! application goes on writing. walship must say what is wrong (ENOSPC, naming the path),
//! stay up, never let the replica go backwards or break, and catch up exactly once space is
//! freed. Needs root to mount the tmpfs; without it the test says SKIPPING (and fails under
//! CI, where it must run).
mod common;

use std::fs;
use std::io::Write as _;
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

#[test]
fn meta_directory_full_is_reported_and_caught_up() {
    let test = "meta_directory_full_is_reported_and_caught_up";
    let t = TestDir::new("disk-full");
    let meta = t.join("meta");
    let small = match SmallFs::mount(&meta, "3m") {
        Ok(m) => m,
        Err(why) => {
            let msg = format!("{test}: no small file system ({why})");
            if in_ci() {
                panic!("{msg}: CI runs as root and must be able to mount a tmpfs");
            }
            let bar = "!".repeat(78);
            let _ = writeln!(std::io::stderr(), "\n{bar}\n!!! SKIPPING {msg}\n{bar}\n");
            return;
        }
    };
    let db = t.join("app.db");
    let replica = t.join("replica");
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

    // Leave ~128 KiB free under the meta directory, then write far more than that.
    let filler = meta.join("filler");
    let free = {
        let out = Command::new("df")
            .args(["-B1", "--output=avail", s(&meta)])
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
        logs.contains(s(&meta)),
        "the error should name the meta directory path:\n{logs}"
    );
    // While full: walship is up, and the replica still restores to a committed state at or
    // after the last one it had.
    std::thread::sleep(Duration::from_secs(2));
    p.assert_running();
    let (out, r) = restore(&Tool::Walship, &url, &[], t.path());
    assert!(
        r.ok(),
        "restore while the meta disk is full: {}",
        r.describe()
    );
    // `states[0]` was on the replica before the disk filled: anything older is a step back.
    if let Err(e) = which_state(&out, &states) {
        panic!(
            "restore while the meta disk is full is not a committed state at or after the last replicated one: {e}"
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
