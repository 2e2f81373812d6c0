//! Guards age encryption against the real Litestream v0.3.13 and the real `age`
//! command-line tool:
//! 1. `encrypted_both_ways`, over every backend (`tests/common/backends.rs`): walship and
//!    Litestream (where it speaks the backend) each replicate encrypted to two recipients;
//!    both tools restore with either identity; every object in a local replica is an age
//!    file; without an identity walship cannot read it back, and says why;
//! 2. on a file replica, walship's objects are age files that `age -d` turns into LZ4
//!    frames; the listings work; a restart resumes the generation;
//! 3. a restore without an identity, with the wrong one, or from the bare URL fails with an
//!    error that says which key is missing, and leaves nothing at `-o`; no secret key ever
//!    appears in any output;
//! 4. keys that do not parse are refused by name of the entry, never echoed;
//! 5. validation, retention and follow mode read an encrypted replica;
//! 6. `recipients_only_restarts`, over the backends Litestream speaks: a replica whose
//!    server holds only the public key keeps shipping across clean and kill -9 restarts.
//!
//! Tests fail under CI when Litestream, `age` or a server is missing; elsewhere they skip
//! loudly.
mod common;
#[path = "common/servers.rs"]
mod servers;
#[macro_use]
#[path = "common/backends.rs"]
mod backends;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use backends::{Backend, Store};
use common::*;
use servers::require_bin;

per_backend!(encrypted_both_ways: file, s3, abs, sftp, gcs, webdav);
per_backend!(recipients_only_restarts: file, s3, abs, sftp, gcs);

/// Test keys made with `age-keygen` for these tests only.
const KEY1_PUBLIC: &str = "age162vu4dqq6l0k8z6p60kduud6fxq90me65k8tpplxgx4rqyad9fdsg293t9";
const KEY1_SECRET: &str =
    "AGE-SECRET-KEY-1N9EG8AY36NK2RNG76JPUAJL36KY244NN84KTS9UY7FN3XATML9MQX7C5WK";
const KEY2_PUBLIC: &str = "age1jel28vumj4qnemrrc3tl4ngdrxugxaxy6me073n6vqz62qzz9vmq9sxdg8";
const KEY2_SECRET: &str =
    "AGE-SECRET-KEY-1JVTZYVZCWC587HRR5C0NSLJAQ89ATLULVNHXXW8FAXD02U3VJ4QQ7KPT5T";
/// Not a recipient of anything written here.
const KEY3_SECRET: &str =
    "AGE-SECRET-KEY-1D3PCQFJ3RGT6HQPJQWNCZF35ULWM5KV4G8SGPESYAY6C32JJV4ASD6YYCH";

const CATCH_UP: Duration = Duration::from_secs(30);

/// An `age:` block for a replica item.
fn age_yaml(recipients: &[&str], identities: &[&str]) -> String {
    let mut y = String::from("        age:\n");
    if !recipients.is_empty() {
        y.push_str(&format!(
            "          recipients: [{}]\n",
            recipients.join(", ")
        ));
    }
    if !identities.is_empty() {
        y.push_str(&format!(
            "          identities: [{}]\n",
            identities.join(", ")
        ));
    }
    y
}

/// A config for `db` whose one replica is `replica_item` (a YAML list item) plus `age`,
/// with Litestream's default checkpoints.
fn config(dir: &Path, name: &str, db: &Path, replica_item: &str, age: &str) -> PathBuf {
    let o = ConfigOpts {
        checkpoint_interval: None,
        min_checkpoint_page_count: None,
        ..ConfigOpts::default()
    };
    write_config_with(dir, name, db, &format!("{replica_item}{age}"), &o)
}

fn file_item(replica: &Path) -> String {
    format!(
        "      - type: file\n        path: \"{}\"\n        sync-interval: 200ms\n",
        s(replica)
    )
}

/// Every file under `dir`.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Fails if a secret key shows in `out`.
#[track_caller]
fn assert_no_secret(out: &CmdOut) {
    for k in [KEY1_SECRET, KEY2_SECRET, KEY3_SECRET] {
        assert!(
            !out.combined().contains(k),
            "a secret key leaked: {}",
            out.describe()
        );
    }
}

#[test]
fn walship_encrypts_and_age_decrypts_and_resumes() {
    let test = "age_walship_file";
    let Some(ls) = litestream(test) else { return };
    let Some(age) = require_bin(test, "age", "apt-get install age") else {
        return;
    };
    let t = TestDir::new("age-w2l");
    let db = t.join("app.db");
    let replica = t.join("replica");
    let cfg = config(
        t.path(),
        "w.yml",
        &db,
        &file_item(&replica),
        &age_yaml(&[KEY1_PUBLIC, KEY2_PUBLIC], &[KEY1_SECRET]),
    );
    let mut w = Workload::open(&db, test_seed(test));
    assert!(w.insert(20, true));
    let mut p = Proc::replicate(t.path(), &Tool::Walship, &cfg);
    w.run(30, Duration::from_millis(10));
    wait_replicated_cfg(
        &Tool::Walship,
        &cfg,
        &db,
        t.path(),
        &w.model,
        &mut p,
        CATCH_UP,
    );
    p.stop();
    assert!(
        !p.logs().contains(KEY1_SECRET),
        "replicate logged a secret key"
    );

    // Every object of the replica's generations is an age file; age itself decrypts one to
    // an LZ4 frame. (The lease at the root is walship's bookkeeping, never encrypted.)
    let objects = files(&replica.join("generations"));
    assert!(
        replica.join("walship-lease.json").exists(),
        "the replica lease is at the root"
    );
    assert!(objects.len() >= 2, "{objects:?}");
    for o in &objects {
        let head = fs::read(o).unwrap();
        assert!(
            head.starts_with(b"age-encryption.org/v1\n-> X25519 "),
            "{} is not an age file",
            o.display()
        );
    }
    let snapshot = objects
        .iter()
        .find(|o| s(o).ends_with(".snapshot.lz4"))
        .expect("a snapshot");
    let key_file = t.join("key2.txt");
    fs::write(&key_file, format!("{KEY2_SECRET}\n")).unwrap();
    let plain = std::process::Command::new(&age)
        .args(["-d", "-i", s(&key_file), s(snapshot)])
        .output()
        .expect("run age");
    assert!(plain.status.success(), "age -d failed: {plain:?}");
    assert_eq!(
        &plain.stdout[..4],
        &[0x04, 0x22, 0x4d, 0x18],
        "not an LZ4 frame"
    );

    // The listings read sizes only and work as on any replica.
    for cmd in ["generations", "snapshots", "wal"] {
        let r = walship(&[cmd, "-config", s(&cfg), s(&db)], t.path());
        r.assert_ok();
        assert!(r.stdout.lines().count() >= 2, "{cmd}: {}", r.describe());
    }

    // A restart resumes the same generation: it reads the last segment back, decrypted.
    let generations_before = fs::read_dir(replica.join("generations")).unwrap().count();
    let mut p = Proc::replicate(t.path(), &Tool::Walship, &cfg);
    assert!(w.insert(5, true));
    wait_replicated_cfg(
        &Tool::Walship,
        &cfg,
        &db,
        t.path(),
        &w.model,
        &mut p,
        CATCH_UP,
    );
    p.stop();
    assert_eq!(
        fs::read_dir(replica.join("generations")).unwrap().count(),
        generations_before,
        "a restart with the identity started a new generation: {}",
        p.logs()
    );
    assert_restore(
        &Tool::Litestream(ls),
        s(&db),
        &["-config", s(&cfg)],
        t.path(),
        &w.model,
    );
}

/// walship, then Litestream where it speaks the backend, replicate `app<i>.db` encrypted to
/// both recipients; each tool restores with either identity, and walship says no secret;
/// every object a local replica holds is an age file (walship's bookkeeping at the root
/// aside); without an identity walship refuses the restore, naming what is missing, and
/// leaves nothing at `-o`.
fn encrypted_both_ways(b: Backend, test: &str) {
    let ls = b.litestream_speaks().then(|| litestream(test)).flatten();
    let t = TestDir::new(test);
    let Some(store) = b.start(test, &t) else {
        return;
    };
    let mut tools = vec![Tool::Walship];
    tools.extend(ls.map(Tool::Litestream));
    for (i, writer) in tools.iter().enumerate() {
        let name = format!("app{i}");
        let db = t.join(format!("{name}.db"));
        let item = store.replica_yaml(&name, "200ms", None);
        let age = age_yaml(&[KEY1_PUBLIC, KEY2_PUBLIC], &[KEY2_SECRET]);
        let cfg = config(t.path(), &format!("{name}.yml"), &db, &item, &age);
        let mut w = Workload::open(&db, test_seed(test) + i as u64);
        assert!(w.insert(20, true));
        let mut p = Proc::replicate(t.path(), writer, &cfg);
        w.run(20, Duration::from_millis(10));
        wait_replicated_cfg(writer, &cfg, &db, t.path(), &w.model, &mut p, CATCH_UP);
        p.stop();
        let logs = p.logs();
        for k in [KEY1_SECRET, KEY2_SECRET] {
            assert!(
                !logs.contains(k),
                "{} replicate logged a secret key",
                writer.name()
            );
        }
        if let Some(dir) = store.local_dir(&name) {
            // walship keeps its lease, never encrypted, at the root; Litestream writes
            // nothing there.
            let objects = match writer {
                Tool::Walship => files(&dir.join("generations")),
                Tool::Litestream(_) => files(&dir),
            };
            assert!(objects.len() >= 2, "{objects:?}");
            for o in &objects {
                let head = fs::read(o).unwrap();
                assert!(
                    head.starts_with(b"age-encryption.org/v1\n-> X25519 "),
                    "{} wrote a plain object: {}",
                    writer.name(),
                    o.display()
                );
            }
        }
        for secret in [KEY1_SECRET, KEY2_SECRET] {
            let read = config(t.path(), "read.yml", &db, &item, &age_yaml(&[], &[secret]));
            for reader in &tools {
                let (out, r) = restore(reader, s(&db), &["-config", s(&read)], t.path());
                assert!(r.ok(), "{}", r.describe());
                assert_no_secret(&r);
                let what = format!("{} restore of {}'s replica", reader.name(), writer.name());
                assert_db(&out, &w.model, &what);
            }
        }
        // Without the identity, walship cannot read it back, and says why.
        let noid = config(
            t.path(),
            "noid.yml",
            &db,
            &item,
            &age_yaml(&[KEY1_PUBLIC], &[]),
        );
        let out = t.join(format!("noid{i}.db"));
        let r = walship(
            &["restore", "-config", s(&noid), "-o", s(&out), s(&db)],
            t.path(),
        );
        r.assert_fails_with(1, "has no age.identities");
        assert!(!out.exists());
    }
}

#[test]
fn restores_without_the_right_key_say_which_key_is_missing() {
    let test = "age_missing_key";
    let t = TestDir::new("age-missing");
    let db = t.join("app.db");
    let replica = t.join("replica");
    let cfg = config(
        t.path(),
        "w.yml",
        &db,
        &file_item(&replica),
        &age_yaml(&[KEY1_PUBLIC], &[KEY1_SECRET]),
    );
    let mut w = Workload::open(&db, test_seed(test));
    assert!(w.insert(20, true));
    let mut p = Proc::replicate(t.path(), &Tool::Walship, &cfg);
    wait_replicated_cfg(
        &Tool::Walship,
        &cfg,
        &db,
        t.path(),
        &w.model,
        &mut p,
        CATCH_UP,
    );
    p.stop();

    let cases: [(&str, String, &str); 3] = [
        (
            "no identity",
            age_yaml(&[KEY1_PUBLIC], &[]),
            "has no age.identities",
        ),
        (
            "the wrong identity",
            age_yaml(&[KEY1_PUBLIC], &[KEY3_SECRET]),
            "none of this replica's 1 age.identities matches",
        ),
        (
            "no age section",
            String::new(),
            "is age-encrypted: add the replica's age: identities: to the config",
        ),
    ];
    for (what, age, want) in cases {
        let c = config(t.path(), "read.yml", &db, &file_item(&replica), &age);
        let out = t.join("out.db");
        let r = walship(
            &["restore", "-config", s(&c), "-o", s(&out), s(&db)],
            t.path(),
        );
        r.assert_fails_with(1, want);
        assert_no_secret(&r);
        assert!(
            !out.exists(),
            "{what}: a failed restore left {}",
            out.display()
        );
        let leftovers: Vec<_> = fs::read_dir(t.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("out.db"))
            .collect();
        assert!(
            leftovers.is_empty(),
            "{what}: temp files left: {leftovers:?}"
        );
    }
    // The bare replica URL cannot carry a key.
    let r = walship(
        &["restore", "-o", s(&t.join("url.db")), s(&replica)],
        t.path(),
    );
    r.assert_fails_with(1, "age-encrypted");
    assert!(
        !r.stderr.contains("corrupt"),
        "a missing key is not damage: {}",
        r.describe()
    );
}

#[test]
fn keys_that_do_not_parse_are_refused_without_echoing_them() {
    let t = TestDir::new("age-bad-keys");
    let db = t.join("app.db");
    let replica = t.join("replica");
    let mut w = Workload::open(&db, test_seed("age_bad_keys"));
    assert!(w.insert(2, true));
    let bad_secret = "AGE-SECRET-KEY-1NOTAKEYNOTAKEY";
    for (age, want) in [
        (
            age_yaml(&["age1notarecipient"], &[KEY1_SECRET]),
            "age.recipients[0] holds a line that is not an age X25519 public key",
        ),
        (
            age_yaml(&[KEY1_PUBLIC], &[bad_secret]),
            "age.identities[0] holds a line that is not an age X25519 secret key",
        ),
    ] {
        let cfg = config(t.path(), "bad.yml", &db, &file_item(&replica), &age);
        for args in [
            vec!["replicate", "-config", s(&cfg)],
            vec!["restore", "-config", s(&cfg), "-o", "x.db", s(&db)],
        ] {
            let r = walship(&args, t.path());
            r.assert_fails_with(1, want);
            assert!(!r.combined().contains("NOTAKEY"), "{}", r.describe());
            assert_no_secret(&r);
        }
        assert!(!replica.exists(), "something was written to the replica");
    }
    // An age-keygen file's text (comments and all) is one valid entry, as in Litestream.
    let keyfile_text = format!(
        "|\n            # created: 2026-12-05T00:00:00Z\n            # public key: {KEY1_PUBLIC}\n            {KEY1_SECRET}"
    );
    let age = format!(
        "        age:\n          recipients: [{KEY1_PUBLIC}]\n          identities:\n          - {keyfile_text}\n"
    );
    let cfg = config(t.path(), "keyfile.yml", &db, &file_item(&replica), &age);
    let r = walship(&["databases", "-config", s(&cfg)], t.path());
    r.assert_ok();
    let mut p = Proc::replicate(t.path(), &Tool::Walship, &cfg);
    wait_replicated_cfg(
        &Tool::Walship,
        &cfg,
        &db,
        t.path(),
        &w.model,
        &mut p,
        CATCH_UP,
    );
    p.stop();
}

/// Validation, retention and follow mode read the replica through the same decrypting
/// client: validation reports `status=ok` (a decryption failure would be a mismatch or an
/// error), retention removes old encrypted snapshots and the rest still restores, and
/// `restore -f` keeps a copy up to date from the encrypted replica.
#[test]
fn validation_retention_and_follow_on_an_encrypted_replica() {
    let test = "age_upkeep";
    let t = TestDir::new("age-upkeep");
    let db = t.join("app.db");
    let replica = t.join("replica");
    let item = format!(
        "{}        snapshot-interval: 1s\n        retention: 2s\n        retention-check-interval: 1s\n        validation-interval: 1s\n",
        file_item(&replica)
    );
    let cfg = config(
        t.path(),
        "w.yml",
        &db,
        &item,
        &age_yaml(&[KEY1_PUBLIC], &[KEY1_SECRET]),
    );
    // Checkpoints move the WAL index, so there are old snapshots and segments to remove.
    let yaml = fs::read_to_string(&cfg).unwrap().replace(
        "    replicas:\n",
        "    checkpoint-interval: 1s\n    min-checkpoint-page-count: 20\n    replicas:\n",
    );
    fs::write(&cfg, yaml).unwrap();
    let mut w = Workload::open(&db, test_seed(test));
    assert!(w.insert(20, true));
    let mut p = Proc::replicate(t.path(), &Tool::Walship, &cfg);
    wait_replicated_cfg(
        &Tool::Walship,
        &cfg,
        &db,
        t.path(),
        &w.model,
        &mut p,
        CATCH_UP,
    );
    let copy = t.join("follow.db");
    let mut f = Proc::spawn(
        t.path(),
        "walship-follow",
        &Tool::Walship.bin(),
        &[
            "restore",
            "-f",
            "-interval",
            "200ms",
            "-config",
            s(&cfg),
            "-o",
            s(&copy),
            s(&db),
        ],
    );
    // Long enough for several snapshots, retention passes and validations.
    for _ in 0..6 {
        w.run(10, Duration::from_millis(50));
        std::thread::sleep(Duration::from_millis(400));
    }
    wait_replicated_cfg(
        &Tool::Walship,
        &cfg,
        &db,
        t.path(),
        &w.model,
        &mut p,
        CATCH_UP,
    );
    wait_until("the follower to catch up", CATCH_UP, || {
        f.assert_running();
        check_db(&copy, &w.model)
    });
    f.stop();
    p.stop();
    let logs = p.logs();
    assert!(
        logs.contains("validator: status=ok"),
        "no validation ran: {logs}"
    );
    for bad in ["status=mismatch", "could not validate"] {
        assert!(!logs.contains(bad), "{bad}: {logs}");
    }
    // Retention only lists and deletes; what it leaves must still restore, decrypted.
    assert!(
        logs.contains("retention deleted"),
        "retention deleted nothing: {logs}"
    );
    assert_restore(
        &Tool::Walship,
        s(&db),
        &["-config", s(&cfg)],
        t.path(),
        &w.model,
    );
}

/// How walship stops before the restart in [`recipients_only_restarts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// SIGTERM, nothing written while stopped: the same generation goes on.
    Clean,
    /// SIGTERM, then the application writes while walship is stopped.
    CleanThenWrites,
    /// kill -9: nothing vouches for the replica's last segment, which the server cannot
    /// read, so walship starts a new generation instead of guessing.
    Kill9,
}

/// One restart of a recipients-only replica (the server holds the public key alone): the
/// application keeps its connection open across the stop, and walship must go on shipping
/// after the restart. The restore with the identity (walship's and Litestream's) equals
/// the database.
fn recipients_only_restart(t: &TestDir, ls: &Path, store: &Store, stop: Stop) {
    let tag = format!("{}-{stop:?}", store.backend.name());
    let item = &store.replica_yaml(&format!("db-{stop:?}"), "200ms", None);
    let db = t.join(format!("app-{tag}.db"));
    let cfg = config(
        t.path(),
        &format!("rc-{tag}.yml"),
        &db,
        item,
        &age_yaml(&[KEY1_PUBLIC], &[]),
    );
    let read = config(
        t.path(),
        &format!("read-{tag}.yml"),
        &db,
        item,
        &age_yaml(&[], &[KEY1_SECRET]),
    );
    let mut w = Workload::open(&db, test_seed(&tag));
    let mut p = Proc::replicate(t.path(), &Tool::Walship, &cfg);
    assert!(w.insert(100, false));
    wait_replicated_cfg(
        &Tool::Walship,
        &read,
        &db,
        t.path(),
        &w.model,
        &mut p,
        CATCH_UP,
    );
    match stop {
        Stop::Kill9 => {
            p.kill9();
            // Restore picks the generation with the newest object, and S3 stamps objects to
            // the second: a new generation whose every object lands in the second of the old
            // one's last would lose that tie (a known limit of the format, both tools).
            std::thread::sleep(Duration::from_millis(1100));
        }
        _ => p.stop(),
    }
    if stop == Stop::CleanThenWrites {
        assert!(w.insert(30, false));
    }
    let mut p = Proc::replicate(t.path(), &Tool::Walship, &cfg);
    assert!(w.insert(100, false));
    wait_replicated_cfg(
        &Tool::Walship,
        &read,
        &db,
        t.path(),
        &w.model,
        &mut p,
        CATCH_UP,
    );
    p.stop();
    let logs = p.logs();
    assert!(
        !logs.contains("sync failed"),
        "{tag}: a sync failed after the restart:\n{logs}"
    );
    let generations = walship(&["generations", "-config", s(&cfg), s(&db)], t.path());
    generations.assert_ok();
    let count = generations
        .stdout
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .count();
    match stop {
        Stop::Clean => assert_eq!(
            count, 1,
            "{tag}: a clean restart started a new generation:\n{}\n{logs}",
            generations.stdout
        ),
        Stop::Kill9 => assert_eq!(
            count, 2,
            "{tag}: after kill -9 the unreadable replica needs a new generation:\n{}\n{logs}",
            generations.stdout
        ),
        // Writes while stopped may or may not be proven continuous.
        Stop::CleanThenWrites => assert!((1..=2).contains(&count), "{}", generations.stdout),
    }
    for tool in [Tool::Walship, Tool::Litestream(ls.to_path_buf())] {
        assert_restore(&tool, s(&db), &["-config", s(&read)], t.path(), &w.model);
    }
}

/// [`recipients_only_restart`] after each way of stopping, over one backend.
fn recipients_only_restarts(b: Backend, test: &str) {
    let Some(ls) = litestream(test) else { return };
    let t = TestDir::new(test);
    let Some(store) = b.start(test, &t) else {
        return;
    };
    for stop in [Stop::Clean, Stop::CleanThenWrites, Stop::Kill9] {
        recipients_only_restart(&t, &ls, &store, stop);
    }
}
