//! Tests of loading and resolving whole config files.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

mod errors;
mod replicas;
mod values;

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
