//! Values: booleans, durations, intervals, page counts, log levels, and walship's own keys.
use super::*;

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
