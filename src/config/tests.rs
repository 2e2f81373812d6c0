//! Tests of loading and resolving whole config files.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

const FILE: &str = "/etc/test-litestream.yml";

fn load(yaml: &str) -> LoadedConfig {
    Config::from_yaml(yaml, Path::new(FILE), false)
        .unwrap_or_else(|e| panic!("config should load: {e}\n{yaml}"))
}

/// `p` made absolute as the config makes it: `p` itself on Unix, on the current drive on
/// Windows (`/data/app.db` is `Z:\data\app.db` under Wine).
fn abs(p: &str) -> PathBuf {
    std::path::absolute(p).unwrap()
}

/// An error message with Unix paths, whatever the system: on Windows the current drive's
/// root becomes `/` and `\` becomes `/`, so one expected text serves both.
fn unix_paths(msg: String) -> String {
    if cfg!(windows) {
        let root = abs("/").display().to_string();
        msg.replace(&root, "/").replace('\\', "/")
    } else {
        msg
    }
}

fn load_err(yaml: &str) -> String {
    match Config::from_yaml(yaml, Path::new(FILE), false) {
        Ok(c) => panic!("config should fail: {yaml}\n{c:?}"),
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains(FILE), "the message names the file: {msg}");
            unix_paths(msg)
        }
    }
}

fn one_replica(yaml: &str) -> ReplicaConfig {
    let mut c = load(yaml).config;
    assert_eq!(c.dbs.len(), 1);
    assert_eq!(c.dbs[0].replicas.len(), 1);
    c.dbs.remove(0).replicas.remove(0)
}

fn s3_of(r: &ReplicaConfig) -> &S3Config {
    match &r.target {
        ReplicaTarget::S3(s3) => s3,
        other => panic!("not s3: {other:?}"),
    }
}

#[test]
fn defaults() {
    let loaded =
        load("dbs:\n  - path: /var/lib/app.db\n    replicas:\n      - path: /backups/app\n");
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!(loaded.path, PathBuf::from(FILE));
    let c = loaded.config;
    assert_eq!(c.addr, None);
    assert_eq!(c.exec, None);
    assert_eq!(c.logging, LoggingConfig::default());
    assert_eq!(c.logging.level, LogLevel::Info);
    assert_eq!(c.logging.format, LogFormat::Text);
    assert!(!c.logging.stderr);
    let db = &c.dbs[0];
    assert_eq!(db.path, abs("/var/lib/app.db"));
    assert_eq!(db.meta_path, None);
    assert_eq!(db.monitor_interval, Duration::from_secs(1));
    assert_eq!(db.checkpoint_interval, Some(Duration::from_secs(60)));
    assert_eq!(db.min_checkpoint_page_count, 1000);
    assert_eq!(db.max_checkpoint_page_count, 10_000);
    let r = &db.replicas[0];
    assert_eq!(r.name, "file");
    assert_eq!(
        r.target,
        ReplicaTarget::File {
            path: abs("/backups/app")
        }
    );
    assert_eq!(r.sync_interval, Duration::from_secs(1));
    assert_eq!(r.retention, Some(Duration::from_secs(86_400)));
    assert_eq!(r.retention_check_interval, Duration::from_secs(3600));
    assert_eq!(r.snapshot_interval, None);
    assert_eq!(r.validation_interval, None);
    assert!(!r.age.is_enabled());
    // The constructors give the same defaults.
    let mut built = DbConfig::new(abs("/var/lib/app.db"));
    built.replicas.push(ReplicaConfig::new(ReplicaTarget::File {
        path: abs("/backups/app"),
    }));
    assert_eq!(&built, db);
}

#[test]
fn empty_and_comment_only_files_have_no_dbs() {
    for text in ["", "# nothing yet\n", "dbs:\n", "dbs: []\n", "---\n"] {
        let loaded = load(text);
        assert!(loaded.config.dbs.is_empty(), "{text:?}");
        assert!(
            loaded.warnings.is_empty(),
            "{text:?}: {:?}",
            loaded.warnings
        );
    }
}

#[test]
fn every_key_is_read() {
    let yaml = r#"
addr: ":9090"
exec: "sleep 10"
access-key-id: TOPKEY
secret-access-key: TOPSECRET
logging:
  level: DEBUG
  type: json
  stderr: true
dbs:
  - path: /data/a.db
    meta-path: /data/.a-meta
    monitor-interval: 250ms
    checkpoint-interval: 5m
    min-checkpoint-page-count: 500
    max-checkpoint-page-count: 0
    replicas:
      - type: s3
        name: primary
        bucket: bkt
        path: /backups//a.db/
        region: eu-west-1
        endpoint: minio.local:9000
        force-path-style: false
        skip-verify: true
        sync-interval: 10s
        retention: 72h
        retention-check-interval: 30m
        snapshot-interval: 6h
        validation-interval: 12h
        age:
          identities:
            - AGE-SECRET-KEY-1QQQ
          recipients:
            - age1recipient
      - type: abs
        account-name: acct
        account-key: AZKEY
        bucket: container
        path: a
        endpoint: http://127.0.0.1:10000/acct
      - type: sftp
        host: backup.example.com
        user: bob
        password: SFTPPASS
        key-path: /etc/walship/id_ed25519
        path: /srv/backups/a
      - type: gcs
        bucket: gbkt
        path: a
      - url: https://dav.example.com/backups/a
        user: dav
        password: DAVPASS
        bearer-token: TOKEN
        skip-verify: yes
"#;
    let loaded = load(yaml);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let c = loaded.config;
    assert_eq!(c.addr.as_deref(), Some(":9090"));
    assert_eq!(c.exec.as_deref(), Some("sleep 10"));
    assert_eq!(
        c.logging,
        LoggingConfig {
            level: LogLevel::Debug,
            format: LogFormat::Json,
            stderr: true
        }
    );
    let db = &c.dbs[0];
    assert_eq!(
        db.meta_path.as_deref(),
        Some(abs("/data/.a-meta").as_path())
    );
    assert_eq!(db.monitor_interval, Duration::from_millis(250));
    assert_eq!(db.checkpoint_interval, Some(Duration::from_secs(300)));
    assert_eq!(db.min_checkpoint_page_count, 500);
    assert_eq!(db.max_checkpoint_page_count, 0);

    let r = &db.replicas[0];
    assert_eq!(r.name, "primary");
    assert_eq!(r.sync_interval, Duration::from_secs(10));
    assert_eq!(r.retention, Some(Duration::from_secs(72 * 3600)));
    assert_eq!(r.retention_check_interval, Duration::from_secs(1800));
    assert_eq!(r.snapshot_interval, Some(Duration::from_secs(6 * 3600)));
    assert_eq!(r.validation_interval, Some(Duration::from_secs(12 * 3600)));
    assert_eq!(r.age.identities, vec![Secret::new("AGE-SECRET-KEY-1QQQ")]);
    assert_eq!(r.age.recipients, vec!["age1recipient".to_string()]);
    assert_eq!(
        s3_of(r),
        &S3Config {
            bucket: "bkt".into(),
            path: "backups/a.db".into(),
            region: Some("eu-west-1".into()),
            endpoint: Some("https://minio.local:9000".into()),
            force_path_style: false,
            skip_verify: true,
            access_key_id: Some("TOPKEY".into()),
            secret_access_key: Some(Secret::new("TOPSECRET")),
        }
    );
    assert_eq!(
        db.replicas[1].target,
        ReplicaTarget::Abs(AbsConfig {
            account_name: Some("acct".into()),
            account_key: Some(Secret::new("AZKEY")),
            bucket: "container".into(),
            path: "a".into(),
            endpoint: Some("http://127.0.0.1:10000/acct".into()),
        })
    );
    assert_eq!(db.replicas[1].name, "abs");
    assert_eq!(
        db.replicas[2].target,
        ReplicaTarget::Sftp(SftpConfig {
            host: "backup.example.com:22".into(),
            user: "bob".into(),
            password: Some(Secret::new("SFTPPASS")),
            key_path: Some(abs("/etc/walship/id_ed25519")),
            host_key: None,
            skip_host_key_check: false,
            path: "/srv/backups/a".into(),
        })
    );
    assert_eq!(
        db.replicas[3].target,
        ReplicaTarget::Gcs(GcsConfig {
            bucket: "gbkt".into(),
            path: "a".into()
        })
    );
    assert_eq!(
        db.replicas[4].target,
        ReplicaTarget::Http(HttpConfig {
            url: "https://dav.example.com/backups/a".into(),
            skip_verify: true,
            user: Some("dav".into()),
            password: Some(Secret::new("DAVPASS")),
            bearer_token: Some(Secret::new("TOKEN")),
        })
    );
    let names: Vec<_> = db.replicas.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["primary", "abs", "sftp", "gcs", "http"]);
    assert_eq!(db.replica("gcs").map(|r| r.target.type_name()), Some("gcs"));
    assert!(db.replica("nope").is_none());
}

#[test]
fn yaml_11_booleans() {
    for (word, want) in [
        ("yes", true),
        ("Yes", true),
        ("on", true),
        ("ON", true),
        ("y", true),
        ("true", true),
        ("no", false),
        ("off", false),
        ("Off", false),
        ("n", false),
        ("false", false),
    ] {
        let yaml = format!(
            "logging:\n  stderr: {word}\ndbs:\n  - path: /a.db\n    replicas:\n      - url: \
             s3://b/p\n        skip-verify: {word}\n        force-path-style: {word}\n"
        );
        let loaded = load(&yaml);
        assert_eq!(loaded.config.logging.stderr, want, "{word}");
        let s3 = s3_of(&loaded.config.dbs[0].replicas[0]).clone();
        assert_eq!(
            (s3.skip_verify, s3.force_path_style),
            (want, want),
            "{word}"
        );
    }
    let msg = load_err("logging:\n  stderr: maybe\n");
    assert!(msg.contains("line 2, column 11"), "{msg}");
}

#[test]
fn durations_in_yaml() {
    let r = one_replica(
        "dbs:\n  - path: /a.db\n    replicas:\n      - path: /b\n        sync-interval: 1000000000\n        retention: 1h30m\n        snapshot-interval: 1.5h\n        validation-interval: \"90s\"\n",
    );
    assert_eq!(r.sync_interval, Duration::from_secs(1));
    assert_eq!(r.retention, Some(Duration::from_secs(5400)));
    assert_eq!(r.snapshot_interval, Some(Duration::from_secs(5400)));
    assert_eq!(r.validation_interval, Some(Duration::from_secs(90)));

    let msg =
        load_err("dbs:\n  - path: /a.db\n    replicas:\n      - path: /b\n        retention: 1d\n");
    assert!(msg.contains("use 24h"), "{msg}");
    assert!(msg.contains("line 5"), "{msg}");
    let msg = load_err(
        "dbs:\n  - path: /a.db\n    replicas:\n      - path: /b\n        retention: 1.5\n",
    );
    assert!(msg.contains("needs a unit"), "{msg}");
    let msg = load_err(
        "dbs:\n  - path: /a.db\n    replicas:\n      - path: /b\n        retention: [1s]\n",
    );
    assert!(msg.contains("line 5"), "{msg}");
}

#[test]
fn bare_small_numbers_warn() {
    let loaded =
        load("dbs:\n  - path: /a.db\n    replicas:\n      - path: /b\n        sync-interval: 10\n");
    assert_eq!(
        loaded.config.dbs[0].replicas[0].sync_interval,
        Duration::from_nanos(10)
    );
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    assert!(
        loaded.warnings[0].starts_with("dbs[0].replicas[0]: sync-interval: 10 is 10 nanoseconds"),
        "{:?}",
        loaded.warnings
    );
}

#[test]
fn disabling_intervals() {
    let loaded = load(
        "dbs:\n  - path: /a.db\n    checkpoint-interval: 0\n    replicas:\n      - path: /b\n        retention: 0\n        retention-check-interval: 0\n        snapshot-interval: -1h\n        validation-interval: 0s\n",
    );
    let db = &loaded.config.dbs[0];
    assert_eq!(db.checkpoint_interval, None);
    let r = &db.replicas[0];
    assert_eq!(r.retention, None);
    assert_eq!(r.snapshot_interval, None);
    assert_eq!(r.validation_interval, None);
    assert!(r.retention_check_interval > Duration::ZERO);
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    assert!(
        loaded.warnings[0].contains("snapshot-interval is negative (-1h0m0s)"),
        "{:?}",
        loaded.warnings
    );
    let loaded =
        load("dbs:\n  - path: /a.db\n    checkpoint-interval: -1s\n    replicas: [{path: /b}]\n");
    assert_eq!(loaded.config.dbs[0].checkpoint_interval, None);
    assert!(loaded.warnings[0].starts_with("dbs[0]: checkpoint-interval is negative"));
}

#[test]
fn retention_check_interval_is_capped_at_retention() {
    let r = one_replica(
        "dbs:\n  - path: /a.db\n    replicas:\n      - path: /b\n        retention: 10m\n",
    );
    assert_eq!(r.retention_check_interval, Duration::from_secs(600));
    let r = one_replica(
        "dbs:\n  - path: /a.db\n    replicas:\n      - path: /b\n        retention: 10m\n        retention-check-interval: 1m\n",
    );
    assert_eq!(r.retention_check_interval, Duration::from_secs(60));
}

#[test]
fn interval_errors() {
    let msg = load_err(
        "dbs:\n  - path: /a.db\n    replicas:\n      - path: /b\n        sync-interval: 0\n",
    );
    assert!(
        msg.contains("db \"/a.db\" replicas[0]: sync-interval must be > 0 (got 0s)"),
        "{msg}"
    );
    assert!(msg.contains("default 1s"), "{msg}");
    let msg = load_err(
        "dbs:\n  - path: /a.db\n    replicas:\n      - name: r\n        path: /b\n        sync-interval: -1s\n",
    );
    assert!(
        msg.contains("replica \"r\": sync-interval must be > 0 (got -1s)"),
        "{msg}"
    );
    let msg =
        load_err("dbs:\n  - path: /a.db\n    monitor-interval: 0\n    replicas: [{path: /b}]\n");
    assert!(
        msg.contains("db \"/a.db\": monitor-interval must be > 0"),
        "{msg}"
    );
    assert!(msg.contains("silently"), "{msg}");
    let msg = load_err(
        "dbs:\n  - path: /a.db\n    replicas:\n      - path: /b\n        retention-check-interval: -5m\n",
    );
    assert!(
        msg.contains("retention-check-interval must be > 0"),
        "{msg}"
    );
    assert!(msg.contains("retention: 0"), "{msg}");
}

#[test]
fn page_counts() {
    let msg = load_err(
        "dbs:\n  - path: /a.db\n    min-checkpoint-page-count: 0\n    replicas: [{path: /b}]\n",
    );
    assert!(
        msg.contains("min-checkpoint-page-count must be > 0 (got 0)"),
        "{msg}"
    );
    let msg = load_err(
        "dbs:\n  - path: /a.db\n    min-checkpoint-page-count: 99999999999\n    replicas: [{path: /b}]\n",
    );
    assert!(msg.contains("too large"), "{msg}");
    let loaded = load(
        "dbs:\n  - path: /a.db\n    max-checkpoint-page-count: -1\n    replicas: [{path: /b}]\n",
    );
    assert_eq!(loaded.config.dbs[0].max_checkpoint_page_count, 0);
    assert!(
        loaded.warnings[0].contains("negative"),
        "{:?}",
        loaded.warnings
    );
    let loaded = load(
        "dbs:\n  - path: /a.db\n    max-checkpoint-page-count: 500\n    replicas: [{path: /b}]\n",
    );
    assert!(
        loaded.warnings[0].contains("below min-checkpoint-page-count"),
        "{:?}",
        loaded.warnings
    );
}

#[test]
fn structural_errors() {
    let cases: &[(&str, &[&str])] = &[
        (
            "dbs:\n  - path: /x.db\n",
            &["db \"/x.db\": no replicas configured; add a replicas: list"],
        ),
        (
            "dbs:\n  - path: /x.db\n    replicas: []\n",
            &["no replicas configured"],
        ),
        (
            "dbs:\n  - replicas: [{path: /b}]\n",
            &["dbs[0]: missing path", "path: /var/lib/app.db"],
        ),
        (
            "dbs:\n  - path: /x.db\n    replicas: [{path: /b}]\n  - path: /x.db\n    replicas: [{path: /c}]\n",
            &["dbs[1]", "listed twice"],
        ),
        (
            "dbs:\n  - path: /x.db\n    replicas:\n      - url: s3://b/p\n        path: p\n",
            &["url and path are both set", "remove path:"],
        ),
        (
            "dbs:\n  - path: /x.db\n    replicas:\n      - path: s3://b/p\n",
            &[
                "replica path cannot be a url, please use the 'url' field instead",
                "url: s3://b/p",
            ],
        ),
        (
            "dbs:\n  - path: /x.db\n    replicas:\n      - url: s3://b/p\n        bucket: b\n",
            &["url and bucket are both set"],
        ),
        (
            "dbs:\n  - path: /x.db\n    replicas:\n      - type: s3\n        path: p\n",
            &[
                "replicas[0]: bucket required for s3 replica",
                "url: s3://BUCKET/PATH",
            ],
        ),
        (
            "dbs:\n  - path: /x.db\n    replicas:\n      - type: gcs\n",
            &["bucket required for gcs replica"],
        ),
        (
            "dbs:\n  - path: /x.db\n    replicas:\n      - type: abs\n",
            &["bucket (the container) required for abs replica"],
        ),
        (
            "dbs:\n  - path: /x.db\n    replicas:\n      - type: sftp\n        host: h\n",
            &["user required for sftp replica"],
        ),
        (
            "dbs:\n  - path: /x.db\n    replicas:\n      - type: sftp\n        user: u\n",
            &["host required for sftp replica"],
        ),
        (
            "dbs:\n  - path: /x.db\n    replicas:\n      - url: sftp://u@h/p\n        host: h\n",
            &["url and host are both set"],
        ),
        (
            "dbs:\n  - path: /x.db\n    replicas:\n      - type: http\n",
            &["http replica needs a url"],
        ),
        (
            "dbs:\n  - path: /x.db\n    replicas:\n      - type: file\n",
            &["file replica path required"],
        ),
        (
            "dbs:\n  - path: /x.db\n    replicas:\n      - type: nfs\n        path: /b\n",
            &[
                "unknown replica type in config: \"nfs\"",
                "file, s3, gcs, abs, sftp, http",
            ],
        ),
        (
            "dbs:\n  - path: /x.db\n    replicas:\n      - url: foo://x/y\n",
            &[
                "url foo://x/y: unknown replica url scheme \"foo\"",
                "webdav",
            ],
        ),
        (
            "dbs:\n  - path: /x.db\n    replicas:\n      - url: s3://b/one\n        name: s3\n      - url: s3://b/two\n        name: s3\n",
            &[
                "two replicas are named \"s3\" (replicas[0] and replicas[1])",
                "name:",
            ],
        ),
        (
            "dbs:\n  - path: /x.db\n    replicas:\n      - path: /b\n        name: x\n      - url: s3://b/p\n        name: x\n",
            &["two replicas are named \"x\""],
        ),
        (
            "dbs:\n  - path: /x.db\n    replicas: [{path: /b}]\n    replica: {path: /c}\n",
            &["both replicas: and replica: are set"],
        ),
        (
            "logging:\n  type: yaml\n",
            &["logging.type: unknown log type \"yaml\"", "text or json"],
        ),
    ];
    for (yaml, wants) in cases {
        let msg = load_err(yaml);
        for want in *wants {
            assert!(msg.contains(want), "{yaml}\nwanted {want:?} in: {msg}");
        }
    }
}

#[test]
fn malformed_yaml_reports_file_line_and_column() {
    let err = Config::from_yaml(
        "dbs:\n  - path: /x.db\n    replicas: [\n",
        Path::new(FILE),
        false,
    )
    .unwrap_err();
    let ConfigError::Parse { line, column, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!((*line, *column), (Some(3), Some(15)));
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!(
            "cannot parse config file {FILE} at line 3, column 15: "
        )),
        "{msg}"
    );
    let msg = load_err("dbs: [\n  {path: /x.db\n");
    assert!(msg.contains("line"), "{msg}");
    let msg = load_err("dbs:\n  path: /x.db\n");
    assert!(msg.contains("line 2"), "{msg}");
    let msg = load_err("just a string\n");
    assert!(msg.contains("line 1, column 1"), "{msg}");
}

/// The parser's common complaints come with what they mean in a config file and what to
/// do, beside the parser's own words.
#[test]
fn yaml_syntax_errors_say_what_to_fix() {
    let cases = [
        (
            "dbs:\n  - path: /x.db\n    replicas:\n      - url: s3://b/p\n     sync-interval: 1s\n",
            "line 5, column 6: this line is indented differently from the keys above it",
        ),
        (
            "dbs:\n  - path: /x.db\n\treplicas: []\n",
            "YAML indents with spaces only",
        ),
        ("dbs: [\n", "a `[` or `{` that is never closed"),
        (
            "dbs:\n  - path: /x.db\n    exec: a: b\n",
            "quote a value that contains `: `",
        ),
        (
            "dbs:\n  - path: /x.db\n    replicas:\n    - url: s3://b/p\n   - url: s3://c/p\n",
            "start each `- ` in the same column",
        ),
    ];
    for (yaml, want) in cases {
        let msg = load_err(yaml);
        assert!(msg.contains(want), "{yaml:?}: wanted {want:?} in {msg}");
        assert!(msg.contains("(the YAML parser says: "), "{msg}");
    }
}

#[test]
fn yaml_errors_do_not_echo_secrets() {
    let msg = load_err("secret-access-key: [hunter2\n");
    assert!(!msg.contains("hunter2"), "{msg}");
}

#[test]
fn unknown_keys_warn_with_location() {
    let yaml = r#"
snapshot:
  interval: 1h
logging:
  colour: true
dbs:
  - path: /x.db
    busy-timeout: 5s
    replicas:
      - path: /b
        wal-retention: 24h
        sync_interval: 1s
        age:
          identity: x
      - url: s3://b/p
        retention-interval: 1h
"#;
    let loaded = load(yaml);
    let w = &loaded.warnings;
    let expect = [
        "top level: unknown key \"snapshot\" ignored; it belongs to a later Litestream version",
        "logging: unknown key \"colour\" ignored",
        "dbs[0]: unknown key \"busy-timeout\" ignored; it belongs to a later Litestream version",
        "dbs[0].replicas[0]: unknown key \"wal-retention\" ignored; did you mean \"retention\"?",
        "dbs[0].replicas[0]: unknown key \"sync_interval\" ignored; did you mean \"sync-interval\"?",
        "dbs[0].replicas[0].age: unknown key \"identity\" ignored; did you mean \"identities\"?",
        "dbs[0].replicas[1]: unknown key \"retention-interval\" ignored; did you mean \"retention-check-interval\"?",
    ];
    for want in expect {
        assert!(
            w.iter().any(|m| m.starts_with(want)),
            "wanted {want:?} in {w:#?}"
        );
    }
    assert_eq!(w.len(), expect.len(), "{w:#?}");
    // Unknown keys do not change anything else.
    assert_eq!(loaded.config.dbs[0].replicas.len(), 2);
}

#[test]
fn repeated_keys_last_wins_with_warning() {
    let loaded = load("dbs:\n  - path: /x.db\n    path: /y.db\n    replicas: [{path: /b}]\n");
    assert_eq!(loaded.config.dbs[0].path, abs("/y.db"));
    assert_eq!(
        loaded.warnings,
        ["dbs[0]: key \"path\" appears more than once; the last value is used"]
    );
}

#[test]
fn singular_replica_is_a_one_element_list() {
    let loaded = load("dbs:\n  - path: /x.db\n    replica:\n      url: s3://b/p\n      bogus: 1\n");
    let db = &loaded.config.dbs[0];
    assert_eq!(db.replicas.len(), 1);
    assert_eq!(s3_of(&db.replicas[0]).bucket, "b");
    let w = &loaded.warnings;
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(
        w.iter().any(|m| m.starts_with(
            "dbs[0]: \"replica:\" (Litestream v0.5 syntax) treated as a one-element \"replicas:\" list"
        )),
        "{w:?}"
    );
    assert!(
        w.iter()
            .any(|m| m.starts_with("dbs[0].replica: unknown key \"bogus\"")),
        "{w:?}"
    );
    // An empty replicas: list next to replica: is not a conflict.
    let loaded = load("dbs:\n  - path: /x.db\n    replicas: []\n    replica: {path: /b}\n");
    assert_eq!(loaded.config.dbs[0].replicas.len(), 1);
}

#[test]
fn inapplicable_keys_warn() {
    let loaded = load(
        "dbs:\n  - path: /x.db\n    replicas:\n      - path: /b\n        bucket: x\n        region: r\n",
    );
    assert_eq!(
        loaded.warnings,
        [
            "dbs[0].replicas[0]: region has no effect on a file replica; it applies to s3",
            "dbs[0].replicas[0]: bucket has no effect on a file replica; it applies to s3 and gcs and abs",
        ]
    );
}

#[test]
fn logging_levels() {
    for (name, want) in [
        ("debug", LogLevel::Debug),
        ("INFO", LogLevel::Info),
        ("warn", LogLevel::Warn),
        ("Warning", LogLevel::Warn),
        ("error", LogLevel::Error),
    ] {
        let loaded = load(&format!("logging:\n  level: {name}\n"));
        assert_eq!(loaded.config.logging.level, want, "{name}");
        assert!(loaded.warnings.is_empty());
    }
    let loaded = load("logging:\n  level: verbose\n  type: TEXT\n");
    assert_eq!(loaded.config.logging.level, LogLevel::Info);
    assert_eq!(loaded.config.logging.format, LogFormat::Text);
    assert!(loaded.warnings[0].contains("unknown level \"verbose\""));
    assert_eq!(tracing::Level::from(LogLevel::Warn), tracing::Level::WARN);
}

#[test]
fn s3_url_and_keys_merge() {
    // URL-inferred endpoint and region; config keys win where set.
    let r = one_replica(
        "dbs:\n  - path: /x.db\n    replicas:\n      - url: s3://bkt.localhost:9000/db\n",
    );
    let s3 = s3_of(&r);
    assert_eq!(s3.endpoint.as_deref(), Some("http://localhost:9000"));
    assert_eq!(s3.region.as_deref(), Some("us-east-1"));
    assert!(s3.force_path_style);
    let r = one_replica(
        "dbs:\n  - path: /x.db\n    replicas:\n      - url: s3://bkt.localhost:9000/db\n        endpoint: http://127.0.0.1:9001\n        region: eu-central-1\n        force-path-style: false\n",
    );
    let s3 = s3_of(&r);
    assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:9001"));
    assert_eq!(s3.region.as_deref(), Some("eu-central-1"));
    assert!(!s3.force_path_style, "an explicit force-path-style wins");
    // An endpoint alone turns path style on.
    let r = one_replica(
        "dbs:\n  - path: /x.db\n    replicas:\n      - url: s3://bkt/db\n        endpoint: http://127.0.0.1:9000\n",
    );
    assert!(s3_of(&r).force_path_style);
    // Plain AWS: virtual-hosted style.
    let r = one_replica("dbs:\n  - path: /x.db\n    replicas:\n      - url: s3://bkt/db\n");
    assert!(!s3_of(&r).force_path_style);
    // A type that agrees with the url is fine.
    let r = one_replica(
        "dbs:\n  - path: /x.db\n    replicas:\n      - type: s3\n        url: s3://bkt/db\n",
    );
    assert_eq!(s3_of(&r).path, "db");
}

#[test]
fn top_level_credentials_fill_gaps_only() {
    let c = load(
        "access-key-id: TOP\nsecret-access-key: TOPSECRET\ndbs:\n  - path: /x.db\n    replicas:\n      - url: s3://b/one\n        name: own\n        access-key-id: OWN\n      - url: s3://b/two\n        secret-access-key: OWNSECRET\n",
    )
    .config;
    let own = s3_of(&c.dbs[0].replicas[0]);
    assert_eq!(own.access_key_id.as_deref(), Some("OWN"));
    assert_eq!(own.secret_access_key, Some(Secret::new("TOPSECRET")));
    let other = s3_of(&c.dbs[0].replicas[1]);
    assert_eq!(other.access_key_id.as_deref(), Some("TOP"));
    assert_eq!(other.secret_access_key, Some(Secret::new("OWNSECRET")));
}

#[test]
fn file_replica_paths_are_absolute() {
    let cwd = std::env::current_dir().unwrap();
    let home = std::env::home_dir().unwrap();
    let c = load(
        "dbs:\n  - path: ./data/../data/app.db\n    meta-path: ~/meta\n    replicas:\n      - path: ./data/replica\n      - url: file:///srv/r/../replica\n        name: abs\n      - path: ~/backups\n        name: home\n",
    )
    .config;
    let db = &c.dbs[0];
    assert_eq!(db.path, cwd.join("data/app.db"));
    assert_eq!(db.meta_path, Some(home.join("meta")));
    let paths: Vec<_> = db
        .replicas
        .iter()
        .map(|r| match &r.target {
            ReplicaTarget::File { path } => path.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        paths,
        [
            cwd.join("data").join("replica"),
            abs("/srv/replica"),
            home.join("backups")
        ]
    );
}

#[test]
fn find_db_compares_resolved_paths() {
    let cwd = std::env::current_dir().unwrap();
    let home = std::env::home_dir().unwrap();
    let yaml = format!(
        "dbs:\n  - path: {}/app.db\n    replicas: [{{path: /b}}]\n  - path: ~/other.db\n    replicas: [{{path: /c}}]\n",
        cwd.display()
    );
    let c = load(&yaml).config;
    assert_eq!(
        c.find_db(Path::new("app.db")).unwrap().path,
        cwd.join("app.db")
    );
    assert_eq!(
        c.find_db(Path::new("./x/../app.db")).unwrap().path,
        cwd.join("app.db")
    );
    assert_eq!(
        c.find_db(&cwd.join("app.db")).unwrap().path,
        cwd.join("app.db")
    );
    assert_eq!(
        c.find_db(Path::new("~/other.db")).unwrap().path,
        home.join("other.db")
    );
    assert!(c.find_db(Path::new("/nope.db")).is_none());
}

#[test]
fn env_expansion_in_files() {
    let env = |name: &str| match name {
        "BUCKET" => Some("envbkt".to_string()),
        "SECRET" => Some("pa$word".to_string()),
        _ => None,
    };
    let yaml = "dbs:\n  - path: /x.db\n    replicas:\n      - url: s3://${BUCKET}/db\n        region: ${REGION:-us-west-2}\n        secret-access-key: $SECRET\n        access-key-id: lit$$eral\n";
    let loaded = Config::from_yaml_with_env(yaml, Path::new(FILE), &env).unwrap();
    let s3 = s3_of(&loaded.config.dbs[0].replicas[0]).clone();
    assert_eq!(s3.bucket, "envbkt");
    assert_eq!(s3.region.as_deref(), Some("us-west-2"));
    assert_eq!(s3.secret_access_key, Some(Secret::new("pa$word")));
    assert_eq!(s3.access_key_id.as_deref(), Some("lit$eral"));

    // -no-expand-env keeps the text as written.
    let loaded = Config::from_yaml(yaml, Path::new(FILE), false).unwrap();
    let s3 = s3_of(&loaded.config.dbs[0].replicas[0]).clone();
    assert_eq!(s3.bucket, "${BUCKET}");
    assert_eq!(s3.region.as_deref(), Some("${REGION:-us-west-2}"));
}

#[test]
fn debug_redacts_secrets() {
    let yaml = r#"
secret-access-key: S3-TOP-SECRET
dbs:
  - path: /x.db
    replicas:
      - url: s3://b/p
        access-key-id: visible-key-id
        secret-access-key: S3-OWN-SECRET
      - url: sftp://u:SFTP-URL-SECRET@h/p
      - url: https://u:HTTP-URL-SECRET@h/p
        bearer-token: BEARER-SECRET
        name: web
      - type: abs
        bucket: c
        account-key: ABS-SECRET
        age:
          identities: [AGE-SECRET-KEY-SECRET]
          recipients: [age1public]
      - type: sftp
        host: h
        user: u
        password: SFTP-SECRET
        name: sftp2
"#;
    let loaded = load(yaml);
    let debug = format!("{:?} {:#?}", loaded, loaded.config);
    for secret in [
        "S3-TOP-SECRET",
        "S3-OWN-SECRET",
        "SFTP-URL-SECRET",
        "HTTP-URL-SECRET",
        "BEARER-SECRET",
        "ABS-SECRET",
        "AGE-SECRET-KEY-SECRET",
        "SFTP-SECRET",
    ] {
        assert!(!debug.contains(secret), "{secret} leaked: {debug}");
    }
    assert!(debug.contains("<redacted>"));
    assert!(debug.contains("visible-key-id"));
    assert!(debug.contains("age1public"));
    assert_eq!(format!("{:?}", Secret::new("x")), "\"<redacted>\"");
    assert_eq!(Secret::from("x").expose(), "x");
}

#[test]
fn load_reads_files_and_reports_missing_ones() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.yml");
    let err = Config::load(&missing, true).unwrap_err();
    assert!(matches!(err, ConfigError::NotFound { .. }));
    assert_eq!(
        err.to_string(),
        format!("config file not found: {}", missing.display())
    );

    let file = dir.path().join("litestream.yml");
    std::fs::write(
        &file,
        "dbs:\n  - path: /x.db\n    replicas:\n      - path: /b\n        sync-interval: 2s\n",
    )
    .unwrap();
    let loaded = Config::load(&file, true).unwrap();
    assert_eq!(loaded.path, file);
    assert_eq!(
        loaded.config.dbs[0].replicas[0].sync_interval,
        Duration::from_secs(2)
    );

    std::fs::write(
        &file,
        "dbs:\n  - path: /x.db\n    replicas: [{path: /b, sync-interval: 1d}]\n",
    )
    .unwrap();
    let msg = Config::load(&file, false).unwrap_err().to_string();
    assert!(msg.contains(&file.display().to_string()), "{msg}");
    assert!(msg.contains("line 3"), "{msg}");
    assert!(msg.contains("use 24h"), "{msg}");
}

#[test]
fn default_config_path_is_etc_litestream() {
    // Only the fallback can be checked without mutating the process environment.
    if std::env::var_os("LITESTREAM_CONFIG").is_none_or(|v| v.is_empty()) {
        #[cfg(unix)]
        assert_eq!(default_config_path(), PathBuf::from("/etc/litestream.yml"));
        // Litestream v0.3.13's Windows default (cmd/litestream/main_windows.go).
        #[cfg(windows)]
        assert_eq!(
            default_config_path(),
            PathBuf::from(r"C:\Litestream\litestream.yml")
        );
    }
}

#[test]
fn config_error_converts_to_crate_error() {
    let err = ConfigError::NotFound {
        path: PathBuf::from("/x.yml"),
    };
    let e: crate::Error = err.into();
    assert_eq!(e.to_string(), "config file not found: /x.yml");
}

#[test]
fn anchors_and_merge_keys() {
    let yaml = "
defaults: &defaults
  sync-interval: 5s
  retention: 1h
dbs:
  - path: /x.db
    replicas:
      - <<: *defaults
        path: /b
      - <<: *defaults
        url: s3://bkt/x
        retention: 2h
";
    let loaded = load(yaml);
    let rs = &loaded.config.dbs[0].replicas;
    assert_eq!(rs[0].sync_interval, Duration::from_secs(5));
    assert_eq!(rs[0].retention, Some(HOUR));
    assert_eq!(rs[1].sync_interval, Duration::from_secs(5));
    assert_eq!(rs[1].retention, Some(2 * HOUR));
    // Only the anchor holder is unknown; merged keys are neither unknown nor repeated.
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    assert!(loaded.warnings[0].starts_with("top level: unknown key \"defaults\" ignored"));
}

const HOUR: Duration = Duration::from_secs(3600);

#[test]
fn directory_form_is_litestream_v05s() {
    let l = load(
        "dbs:\n  - dir: /data/tenants\n    pattern: \"*.db\"\n    recursive: true\n    watch: true\n    \
         monitor-interval: 2s\n    replicas:\n      - path: /backups/tenants\n",
    );
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    assert!(l.config.dbs.is_empty());
    let d = &l.config.dirs[0];
    assert_eq!(d.dir, abs("/data/tenants"));
    assert_eq!(d.pattern, "*.db");
    assert!(d.recursive && d.watch);
    assert_eq!(d.template.monitor_interval, Duration::from_secs(2));
    let c = l
        .config
        .find_db_in_dirs(&abs("/data/tenants/eu/a.db"))
        .unwrap();
    assert_eq!(
        c.replicas[0].target,
        ReplicaTarget::File {
            path: abs("/backups/tenants/eu/a.db")
        }
    );
    assert!(
        l.config
            .find_db_in_dirs(&abs("/data/tenants/a.txt"))
            .is_none()
    );

    let e = load_err("dbs:\n  - dir: /d\n    replicas: [{path: /b}]\n");
    assert!(e.contains("'pattern' is required"), "{e}");
    let e = load_err(
        "dbs:\n  - dir: /d\n    path: /d/a.db\n    pattern: \"*.db\"\n    replicas: [{path: /b}]\n",
    );
    assert!(e.contains("both 'path' and 'dir'"), "{e}");
    let e = load_err("dbs:\n  - path: /d/a.db\n    watch: true\n    replicas: [{path: /b}]\n");
    assert!(e.contains("watch only applies with dir"), "{e}");
    let e = load_err("dbs:\n  - dir: /d\n    pattern: \"[\"\n    replicas: [{path: /b}]\n");
    assert!(e.contains("invalid pattern"), "{e}");
}

#[test]
fn lease_and_stall_intervals_are_walships_own_keys() {
    let r = |lease: &str| {
        one_replica(&format!(
            "dbs:\n  - path: /d/a.db\n    replicas:\n      - path: /r\n        lease: {lease}\n"
        ))
        .lease
    };
    assert_eq!(r("off"), LeaseConfig::Off);
    assert_eq!(r("false"), LeaseConfig::Off);
    assert_eq!(r("on"), LeaseConfig::Ttl(DEFAULT_LEASE_TTL));
    assert_eq!(r("45s"), LeaseConfig::Ttl(Duration::from_secs(45)));
    let default = one_replica("dbs:\n  - path: /d/a.db\n    replicas:\n      - path: /r\n");
    assert_eq!(default.lease, LeaseConfig::Default);
    for bad in ["500ms", "30", "soon"] {
        let e = load_err(&format!(
            "dbs:\n  - path: /d/a.db\n    replicas:\n      - path: /r\n        lease: {bad}\n"
        ));
        assert!(e.contains("lease"), "{bad}: {e}");
    }

    let c = load("stall-intervals: 5\ndbs:\n  - path: /d/a.db\n    replicas:\n      - path: /r\n");
    assert_eq!(c.config.stall_intervals, 5);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let c = load("dbs:\n  - path: /d/a.db\n    replicas:\n      - path: /r\n");
    assert_eq!(
        c.config.stall_intervals,
        crate::event::DEFAULT_STALL_INTERVALS
    );
}
