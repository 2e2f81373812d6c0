//! Guards the `walship` command line as a drop-in for `litestream` v0.3.13 (spec §6): the
//! commands, `-flag`/`--flag` spelling, restore's refusals and exit codes, the
//! `databases` listing, and `replicate DB_PATH REPLICA_URL` without a config file. Restore
//! failures must leave nothing at `-o` and no temp files beside it.
mod common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use common::*;

const OUTPUT_REQUIRED: &str = "output path required";
const NO_BACKUPS: &str = "no matching backups found";

#[test]
fn version_prints_one_version_line() {
    let t = TestDir::new("version");
    let r = walship(&["version"], t.path());
    r.assert_ok();
    let out = r.stdout.trim();
    assert_eq!(
        out.lines().count(),
        1,
        "one line expected: {}",
        r.describe()
    );
    assert!(
        out.contains("0.3.13") || out.contains(env!("CARGO_PKG_VERSION")),
        "version output names neither the Litestream version it emulates nor walship's: {}",
        r.describe()
    );
}

#[test]
fn version_flags_print_the_version_line() {
    let t = TestDir::new("version-flags");
    let want = walship(&["version"], t.path()).stdout;
    assert!(want.starts_with("walship v"), "{want:?}");
    for flag in ["--version", "-V", "-version"] {
        let r = walship(&[flag], t.path());
        r.assert_ok();
        assert_eq!(r.stdout, want, "walship {flag}: {}", r.describe());
    }
}

/// The completion scripts and man pages are generated from the same clap definitions the
/// parser uses, so a flag the parser takes is one the scripts complete and the page names.
#[test]
fn completions_and_man_pages_name_every_command_and_flag() {
    let t = TestDir::new("completions");
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let r = walship(&["completion", shell], t.path());
        r.assert_ok();
        for word in ["restore", "snapshots", "if-replica-exists", "timestamp"] {
            assert!(
                r.stdout.contains(word),
                "{shell} completion lacks {word:?}: {}",
                r.describe()
            );
        }
    }
    // The bash script must at least parse in bash.
    let script = t.join("walship.bash");
    fs::write(&script, walship(&["completion", "bash"], t.path()).stdout).unwrap();
    run(Path::new("bash"), &["-n", s(&script)], t.path()).assert_ok();
    walship(&["completion", "tcsh"], t.path()).assert_fails_with(1, "possible values");

    let dir = t.join("man");
    walship(&["man", s(&dir)], t.path()).assert_ok();
    let page = fs::read_to_string(dir.join("walship.1")).unwrap();
    assert!(
        page.starts_with(".ie") && page.contains(".TH walship 1"),
        "{page}"
    );
    let restore = fs::read_to_string(dir.join("walship-restore.1")).unwrap();
    for flag in [r"\-\-timestamp", r"\-\-if\-replica\-exists", r"\-\-follow"] {
        assert!(
            restore.contains(flag),
            "walship-restore.1 lacks {flag}: {restore}"
        );
    }
    // Without a directory the main page goes to stdout.
    let r = walship(&["man"], t.path());
    r.assert_ok();
    assert_eq!(r.stdout, page);
}

#[test]
fn unknown_command_exits_1_with_a_message() {
    let t = TestDir::new("unknown-cmd");
    walship(&["frobnicate"], t.path()).assert_fails_with(1, "unknown command");
    walship(&["frobnicate", "--config", "x.yml"], t.path()).assert_fails_with(1, "unknown command");
}

#[test]
fn restore_in_url_mode_requires_output_path() {
    let t = TestDir::new("no-output");
    let fx = build_fixture(t.path(), 1);
    let before = dir_entries(t.path());
    walship(&["restore".to_string(), file_url(&fx.replica)], t.path())
        .assert_fails_with(1, OUTPUT_REQUIRED);
    assert_eq!(
        dir_entries(t.path()),
        before,
        "a failed restore created files"
    );
}

#[test]
fn restore_refuses_an_existing_output_and_leaves_it_untouched() {
    let t = TestDir::new("existing-output");
    let fx = build_fixture(t.path(), 2);
    let url = file_url(&fx.replica);
    let out_dir = t.subdir("out");
    let out = out_dir.join("app.db");
    fs::write(&out, b"precious, not a database").unwrap();

    walship(&["restore", "-o", s(&out), &url], t.path()).assert_fails_with(1, "already exists");
    assert_eq!(fs::read(&out).unwrap(), b"precious, not a database");
    assert_eq!(
        dir_entries(&out_dir),
        ["app.db"],
        "temp files left beside the output"
    );

    // -if-db-not-exists: skip quietly, exit 0.
    for flag in ["-if-db-not-exists", "--if-db-not-exists"] {
        walship(&["restore", flag, "-o", s(&out), &url], t.path()).assert_ok();
        assert_eq!(fs::read(&out).unwrap(), b"precious, not a database");
        assert_eq!(dir_entries(&out_dir), ["app.db"]);
    }
}

#[test]
fn restore_rejects_index_together_with_timestamp() {
    let t = TestDir::new("index-and-ts");
    let fx = build_fixture(t.path(), 3);
    let out_dir = t.subdir("out");
    let out = out_dir.join("x.db");
    // The timestamp lies inside the generation, so the refusal cannot be "no backups".
    let ts = fx.at(25.0);
    walship(
        &[
            "restore",
            "-o",
            s(&out),
            "-index",
            "0",
            "-timestamp",
            &ts,
            &file_url(&fx.replica),
        ],
        t.path(),
    )
    .assert_fails_with(1, "cannot specify index & timestamp");
    assert!(
        dir_entries(&out_dir).is_empty(),
        "files left: {:?}",
        dir_entries(&out_dir)
    );
}

#[test]
fn restore_from_an_empty_replica_finds_nothing() {
    let t = TestDir::new("empty-replica");
    let empty = t.subdir("empty-replica");
    let out_dir = t.subdir("out");
    let out = out_dir.join("x.db");
    for source in [s(&empty).to_string(), file_url(&empty)] {
        walship(&["restore", "-o", s(&out), &source], t.path())
            .assert_fails_with(1, NO_BACKUPS)
            .assert_fails_with(1, "holds no generations");
        assert!(
            dir_entries(&out_dir).is_empty(),
            "files left: {:?}",
            dir_entries(&out_dir)
        );
        for flag in ["-if-replica-exists", "--if-replica-exists"] {
            walship(&["restore", flag, "-o", s(&out), &source], t.path()).assert_ok();
            assert!(
                dir_entries(&out_dir).is_empty(),
                "files left: {:?}",
                dir_entries(&out_dir)
            );
        }
    }
}

#[test]
fn restore_from_a_replica_path_that_does_not_exist_says_so() {
    let t = TestDir::new("typo-replica");
    let typo = t.join("bakups");
    let out = t.join("x.db");
    // As a URL: the replica location, and that it does not exist.
    walship(&["restore", "-o", s(&out), &file_url(&typo)], t.path())
        .assert_fails_with(1, NO_BACKUPS)
        .assert_fails_with(1, &format!("{} does not exist", s(&typo)));
    // As a bare path, Litestream takes it for a database of a config; the error says so.
    walship(&["restore", "-o", s(&out), s(&typo)], t.path())
        .assert_fails_with(1, "is not a replica URL or directory");
    assert!(!out.exists());
}

#[test]
fn restore_of_an_unknown_generation_finds_nothing() {
    let t = TestDir::new("unknown-gen");
    let fx = build_fixture(t.path(), 4);
    let url = file_url(&fx.replica);
    let out_dir = t.subdir("out");
    let out = out_dir.join("x.db");
    let g0 = "0000000000000000";
    let r = walship(
        &["restore", "-o", s(&out), "-generation", g0, &url],
        t.path(),
    );
    r.assert_fails_with(1, NO_BACKUPS);
    // ... and says which generations there are.
    let listed = walship(&["generations", &url], t.path());
    listed.assert_ok();
    let real = listed
        .stdout
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or_default()
        .to_string();
    assert_eq!(real.len(), 16, "{}", listed.describe());
    r.assert_fails_with(
        1,
        &format!("generation {g0} is not on the replica; file has {real}"),
    );
    walship(
        &[
            "restore",
            "-if-replica-exists",
            "-o",
            s(&out),
            "-generation",
            g0,
            &url,
        ],
        t.path(),
    )
    .assert_ok();
    // A timestamp after the last segment matches no generation either (spec §3.1).
    let late = fx.at(3600.0);
    walship(
        &["restore", "-o", s(&out), "-timestamp", &late, &url],
        t.path(),
    )
    .assert_fails_with(1, NO_BACKUPS);
    assert!(
        dir_entries(&out_dir).is_empty(),
        "files left: {:?}",
        dir_entries(&out_dir)
    );
}

#[test]
fn restore_flags_accept_one_and_two_dashes() {
    let t = TestDir::new("dashes");
    let fx = build_fixture(t.path(), 5);
    let url = file_url(&fx.replica);
    let bare = s(&fx.replica).to_string();
    let want = fx.states.last().unwrap();
    let g = fx.generation.as_str();

    let a = fresh_output(t.path(), "single");
    walship(
        &[
            "restore",
            "-o",
            s(&a),
            "-parallelism",
            "2",
            "-generation",
            g,
            &url,
        ],
        t.path(),
    )
    .assert_ok();
    assert_db(&a, want, "restore with -flag value");

    let b = fresh_output(t.path(), "double");
    let o = format!("--o={}", s(&b));
    let gen_flag = format!("--generation={g}");
    walship(
        &["restore", &o, "--parallelism", "2", &gen_flag, &bare],
        t.path(),
    )
    .assert_ok();
    assert_db(
        &b,
        want,
        "restore with --flag=value and a bare replica path",
    );

    let c = fresh_output(t.path(), "index-eq");
    let o = format!("-o={}", s(&c));
    walship(&["restore", &o, "-index=0", &url], t.path()).assert_ok();
    assert_db(&c, &fx.states[2], "restore with -index=0");

    let d = fresh_output(t.path(), "ts");
    let ts = fx.at(15.5);
    walship(
        &["restore", "--o", s(&d), "--timestamp", &ts, &url],
        t.path(),
    )
    .assert_ok();
    assert_db(&d, &fx.states[1], "restore with --timestamp");
}

#[test]
fn restore_by_database_path_from_a_config() {
    let t = TestDir::new("config-restore");
    let fx = build_fixture(t.path(), 6);
    let want = fx.states.last().unwrap();
    let home = t.subdir("home");
    let db = home.join("app.db");
    let opts = ConfigOpts {
        replica_name: Some("backup"),
        ..ConfigOpts::default()
    };
    let cfg = write_config(t.path(), "litestream.yml", &db, &fx.replica, &opts);

    let a = fresh_output(t.path(), "cfg");
    walship(
        &["restore", "-config", s(&cfg), "-o", s(&a), s(&db)],
        t.path(),
    )
    .assert_ok();
    assert_db(&a, want, "restore -config");

    let b = fresh_output(t.path(), "cfg-replica");
    let cfg_flag = format!("--config={}", s(&cfg));
    walship(
        &[
            "restore",
            &cfg_flag,
            "--replica",
            "backup",
            "-o",
            s(&b),
            s(&db),
        ],
        t.path(),
    )
    .assert_ok();
    assert_db(&b, want, "restore --config --replica");

    // -replica filters: an unknown name matches nothing.
    let c = fresh_output(t.path(), "cfg-nosuch");
    walship(
        &[
            "restore",
            "-config",
            s(&cfg),
            "-replica",
            "nosuch",
            "-o",
            s(&c),
            s(&db),
        ],
        t.path(),
    )
    .assert_fails_with(1, NO_BACKUPS);
    assert!(!c.exists());

    // Without -o the database is restored to its own path.
    walship(&["restore", "-config", s(&cfg), s(&db)], t.path()).assert_ok();
    assert_db(&db, want, "restore to the configured path");
    // ... and a second time it is refused.
    walship(&["restore", "-config", s(&cfg), s(&db)], t.path())
        .assert_fails_with(1, "already exists");

    // A replica URL together with -config is refused.
    let e = fresh_output(t.path(), "cfg-url");
    walship(
        &[
            "restore",
            "-config",
            s(&cfg),
            "-o",
            s(&e),
            &file_url(&fx.replica),
        ],
        t.path(),
    )
    .assert_fails_with(1, "cannot specify a replica URL and the -config flag");
}

#[test]
fn failed_restore_leaves_no_output_and_no_temp_files() {
    let t = TestDir::new("failed-restore");
    let fx = build_fixture(t.path(), 7);
    // Truncate the second segment of index 0: its LZ4 frame loses its end.
    let wal = fx
        .replica
        .join("generations")
        .join(&fx.generation)
        .join("wal");
    let seg = dir_entries(&wal)
        .into_iter()
        .find(|n| n.starts_with("00000000_") && n != "00000000_00000000.wal.lz4")
        .expect("second segment");
    let p = wal.join(&seg);
    let data = fs::read(&p).unwrap();
    let mtime = fs::metadata(&p).unwrap().modified().unwrap();
    fs::write(&p, &data[..data.len() / 2]).unwrap();
    fs::File::options()
        .write(true)
        .open(&p)
        .unwrap()
        .set_modified(mtime)
        .unwrap();

    let out_dir = t.subdir("out");
    let out = out_dir.join("x.db");
    let r = walship(
        &["restore", "-o", s(&out), &file_url(&fx.replica)],
        t.path(),
    );
    assert_ne!(
        r.code,
        Some(0),
        "restore of a corrupt replica succeeded: {}",
        r.describe()
    );
    assert!(
        dir_entries(&out_dir).is_empty(),
        "files left: {:?}",
        dir_entries(&out_dir)
    );
}

#[test]
fn databases_lists_paths_and_replica_names() {
    let t = TestDir::new("databases");
    let a = t.join("a.db");
    let b = t.join("data/b-with-a-longer-name.db");
    let yaml = format!(
        "dbs:\n  - path: {}\n    replicas:\n      - name: one\n        path: {}\n      - type: file\n        path: {}\n  - path: {}\n    replicas:\n      - url: {}\n",
        s(&a),
        s(&t.join("r1")),
        s(&t.join("r2")),
        s(&b),
        file_url(&t.join("r3")),
    );
    let cfg = t.join("litestream.yml");
    fs::write(&cfg, yaml).unwrap();

    let r1 = walship(&["databases", "-config", s(&cfg)], t.path());
    r1.assert_ok();
    let cfg_flag = format!("--config={}", s(&cfg));
    let r2 = walship(&["databases", &cfg_flag], t.path());
    r2.assert_ok();
    assert_eq!(r1.stdout, r2.stdout, "-config and --config=");

    let rows = cells(&r1.stdout);
    assert_eq!(rows.len(), 3, "{}", r1.describe());
    assert_eq!(rows[0], ["path", "replicas"], "{}", r1.describe());
    assert_eq!(rows[1], [s(&a), "one,file"], "{}", r1.describe());
    assert_eq!(rows[2], [s(&b), "file"], "{}", r1.describe());
    assert!(r1.stdout.starts_with("path  "), "header: {}", r1.describe());

    if let Some(ls) = litestream("databases_lists_paths_and_replica_names") {
        let l = run(&ls, &["databases", "-config", s(&cfg)], t.path());
        l.assert_ok();
        assert_eq!(
            r1.stdout, l.stdout,
            "walship and litestream `databases` differ"
        );
    }

    walship(&["databases", "-config", s(&cfg), "extra"], t.path())
        .assert_fails_with(1, "too many arguments");
}

#[test]
fn replicate_with_a_database_path_and_replica_url() {
    let t = TestDir::new("replicate-url");
    let db = t.join("app.db");
    let replica = t.join("replica");
    let seed = test_seed("replicate_with_a_database_path_and_replica_url");
    let mut w = Workload::open(&db, seed);
    w.insert(5, true);
    let url = file_url(&replica);
    let mut p = Proc::spawn(
        t.path(),
        "walship-replicate-url",
        Path::new(WALSHIP),
        &["replicate", s(&db), &url],
    );
    w.run(20, Duration::from_millis(20));
    // URL mode runs Litestream's defaults: 1 s monitor and sync intervals.
    wait_replicated(
        &Tool::Walship,
        &url,
        t.path(),
        &w.model,
        &mut p,
        Duration::from_secs(30),
    );
    w.insert(3, true);
    p.stop();
    w.assert_model_matches_source();
    assert_restore(&Tool::Walship, &url, &[], t.path(), &w.model);
    if let Some(ls) = litestream("replicate_with_a_database_path_and_replica_url") {
        assert_restore(&Tool::Litestream(ls), &url, &[], t.path(), &w.model);
    }
    // A database path needs at least one replica URL.
    walship(&["replicate", s(&db)], t.path())
        .assert_fails_with(1, "must specify at least one replica URL");
}

#[test]
fn a_missing_replica_without_a_config_says_what_to_pass() {
    if Path::new(walship::config::DEFAULT_CONFIG_PATH).exists() {
        skip_loudly("a config file exists at the default path on this machine");
        return;
    }
    const HINT: &str = "pass -config PATH (or set $LITESTREAM_CONFIG), or name the replica itself";
    let t = TestDir::new("no-config-hint");
    let out = t.join("x.db");
    let r = walship(&["restore", "-o", s(&out), "/no/such/dir"], t.path());
    r.assert_fails_with(1, HINT);
    r.assert_fails_with(1, "/no/such/dir is not a replica URL or directory");
    walship(
        &[
            "restore",
            "-if-replica-exists",
            "-o",
            s(&out),
            "/no/such/dir",
        ],
        t.path(),
    )
    .assert_ok();
    assert!(!out.exists(), "-if-replica-exists wrote {}", out.display());
    for cmd in ["snapshots", "generations", "wal"] {
        walship(&[cmd, "data/app.db"], t.path()).assert_fails_with(1, HINT);
    }
    walship(&["status"], t.path()).assert_fails_with(1, HINT);
    walship(&["databases"], t.path()).assert_fails_with(1, HINT);
}

/// An unknown flag is named as the user wrote it (clap alone says "unexpected argument
/// '-b'" for `-bogus`), with the command's flags listed.
#[test]
fn an_unknown_flag_is_named_with_the_valid_ones() {
    let t = TestDir::new("unknown-flag");
    let r = walship(&["restore", "-bogus", "x"], t.path());
    r.assert_fails_with(
        1,
        "walship restore: unknown flag -bogus; the flags of restore are:",
    );
    for flag in ["-config", "-o", "-timestamp", "-if-replica-exists"] {
        assert!(
            r.stderr.contains(flag),
            "{flag} not listed: {}",
            r.describe()
        );
    }
    walship(&["snapshots", "--nope=1", "x"], t.path()).assert_fails_with(
        1,
        "unknown flag --nope=1; the flags of snapshots are: -config",
    );
}
