//! Guards `config-examples/`: every `*.yml` there loads, walship's own examples load without
//! warnings, and the values that each example is meant to demonstrate come out as documented
//! in `config-examples/README.md`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use walship::config::{
    Config, DbConfig, LoadedConfig, LogFormat, LogLevel, ReplicaConfig, ReplicaTarget, S3Config,
    Secret, SftpConfig,
};

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config-examples")
}

/// The environment the examples reference, so the test does not depend on the real one.
fn fake_env(name: &str) -> Option<String> {
    let value = match name {
        "AWS_ACCESS_KEY_ID" => "AKIAEXAMPLE",
        "AWS_SECRET_ACCESS_KEY" => "aws-secret",
        "WEBDAV_PASSWORD" => "dav-pa$$word",
        "BACKUP_MIRROR_TOKEN" => "mirror-token",
        "SPACES_KEY" => "spaces-key",
        "SPACES_SECRET" => "spaces-secret",
        _ => return None,
    };
    Some(value.to_string())
}

fn load(name: &str) -> LoadedConfig {
    let path = examples_dir().join(name);
    Config::load_with_env(&path, &fake_env).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn db<'a>(c: &'a Config, path: &str) -> &'a DbConfig {
    c.find_db(Path::new(path))
        .unwrap_or_else(|| panic!("no db {path} in {c:#?}"))
}

fn replica<'a>(db: &'a DbConfig, name: &str) -> &'a ReplicaConfig {
    db.replica(name)
        .unwrap_or_else(|| panic!("no replica {name} in {db:#?}"))
}

fn s3(r: &ReplicaConfig) -> &S3Config {
    match &r.target {
        ReplicaTarget::S3(s3) => s3,
        other => panic!("{} is not s3: {other:?}", r.name),
    }
}

fn file_path(r: &ReplicaConfig) -> &Path {
    match &r.target {
        ReplicaTarget::File { path } => path,
        other => panic!("{} is not a file replica: {other:?}", r.name),
    }
}

const HOUR: Duration = Duration::from_secs(3600);

#[test]
fn every_example_loads() {
    let mut loaded = BTreeMap::new();
    for entry in std::fs::read_dir(examples_dir()).expect("config-examples exists") {
        let path = entry.expect("readable directory").path();
        if path.extension().and_then(|e| e.to_str()) != Some("yml") {
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let config = load(&name);
        assert_eq!(config.path, path, "{name}: LoadedConfig.path");
        assert!(
            !config.config.dbs.is_empty() || !config.config.dirs.is_empty(),
            "{name}: no databases"
        );
        // These two are copied as their authors wrote them, and warn on purpose (see
        // guide_configs_load_as_their_authors_meant).
        if !name.starts_with("upstream-v05") && !name.starts_with("guide-") {
            assert!(
                config.warnings.is_empty(),
                "{name} should load without warnings: {:#?}",
                config.warnings
            );
        }
        loaded.insert(name, config);
    }
    // Every example named in the README is here.
    for name in [
        "quickstart.yml",
        "minimal.yml",
        "file.yml",
        "s3.yml",
        "s3-url.yml",
        "http-webdav.yml",
        "http-static-restore.yml",
        "directory.yml",
        "many-databases.yml",
        "sftp.yml",
        "upstream-s3-url.yml",
        "upstream-multiple-replicas.yml",
        "upstream-retention.yml",
        "upstream-v05-database-options.yml",
        "guide-central.yml",
        "guide-laptop.yml",
        "guide-windows.yml",
    ] {
        assert!(
            loaded.contains_key(name),
            "{name} missing from config-examples/"
        );
    }
    let readme = std::fs::read_to_string(examples_dir().join("README.md")).unwrap();
    for name in loaded.keys() {
        assert!(
            readme.contains(&format!("`{name}`")),
            "README.md does not describe {name}"
        );
    }
}

#[test]
fn every_example_loads_with_the_real_environment_and_without_expansion() {
    for entry in std::fs::read_dir(examples_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) == Some("yml") {
            Config::load(&path, true).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            Config::load(&path, false).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
    }
}

#[test]
fn quickstart_resolves_against_the_current_directory() {
    // cargo runs integration tests from the package root, as the README's command does.
    let cwd = std::env::current_dir().unwrap();
    let c = load("quickstart.yml").config;
    assert_eq!(c.dbs.len(), 1);
    let db = &c.dbs[0];
    assert_eq!(db.path, cwd.join("data/app.db"));
    assert!(c.find_db(Path::new("data/app.db")).is_some());
    assert_eq!(db.replicas.len(), 1);
    let r = &db.replicas[0];
    assert_eq!(r.name, "file");
    assert_eq!(file_path(r), cwd.join("data/replica"));
    assert_eq!(r.sync_interval, Duration::from_secs(1));
}

#[test]
fn minimal_takes_every_default() {
    let c = load("minimal.yml").config;
    let mut want = DbConfig::new("/var/lib/app/app.db");
    want.replicas.push(ReplicaConfig::new(ReplicaTarget::File {
        path: PathBuf::from("/var/backups/app"),
    }));
    assert_eq!(c.dbs, vec![want]);
    assert_eq!(c.addr, None);
    assert_eq!(c.logging.level, LogLevel::Info);
}

#[test]
fn file_example_values() {
    let c = load("file.yml").config;
    assert_eq!(c.logging.format, LogFormat::Text);
    assert!(!c.logging.stderr);
    let db = db(&c, "/var/lib/app/app.db");
    assert_eq!(
        db.meta_path.as_deref(),
        Some(Path::new("/var/lib/app/.app.db-litestream"))
    );
    assert_eq!(db.checkpoint_interval, Some(Duration::from_secs(60)));
    assert_eq!(db.max_checkpoint_page_count, 10_000);
    let local = replica(db, "local");
    assert_eq!(file_path(local), Path::new("/var/backups/app"));
    assert_eq!(local.retention, Some(72 * HOUR));
    assert_eq!(local.snapshot_interval, Some(6 * HOUR));
    let nas = replica(db, "nas");
    assert_eq!(file_path(nas), Path::new("/mnt/nas/backups/app"));
    assert_eq!(nas.sync_interval, Duration::from_secs(10));
    assert_eq!(nas.validation_interval, Some(24 * HOUR));
}

#[test]
fn s3_example_takes_credentials_from_the_environment() {
    let c = load("s3.yml").config;
    let r = replica(db(&c, "/var/lib/app/app.db"), "minio");
    assert_eq!(
        s3(r),
        &S3Config {
            bucket: "litestream".into(),
            path: "app/app.db".into(),
            region: Some("us-east-1".into()),
            endpoint: Some("http://127.0.0.1:9000".into()),
            force_path_style: true,
            skip_verify: false,
            access_key_id: Some("AKIAEXAMPLE".into()),
            secret_access_key: Some(Secret::new("aws-secret")),
        }
    );
    assert_eq!(r.snapshot_interval, Some(4 * HOUR));
    // The secret never shows in Debug output.
    assert!(!format!("{c:?}").contains("aws-secret"));
}

#[test]
fn s3_url_example_infers_providers() {
    let c = load("s3-url.yml").config;
    let db = db(&c, "/var/lib/app/app.db");
    let aws = s3(replica(db, "aws"));
    assert_eq!(aws.bucket, "app-backups");
    assert_eq!(aws.region.as_deref(), Some("eu-west-1"));
    assert_eq!(aws.endpoint, None);
    assert!(!aws.force_path_style);
    assert_eq!(aws.access_key_id.as_deref(), Some("AKIAEXAMPLE"));
    let minio = s3(replica(db, "minio"));
    assert_eq!(minio.bucket, "litestream");
    assert_eq!(minio.endpoint.as_deref(), Some("http://localhost:9000"));
    assert!(minio.force_path_style);
    let b2 = s3(replica(db, "b2"));
    assert_eq!(b2.bucket, "app-backups");
    assert_eq!(b2.region.as_deref(), Some("us-west-002"));
    assert_eq!(
        b2.endpoint.as_deref(),
        Some("https://s3.us-west-002.backblazeb2.com")
    );
    assert_eq!(replica(db, "b2").retention, Some(168 * HOUR));
}

#[test]
fn http_examples() {
    let c = load("http-webdav.yml").config;
    let r = replica(db(&c, "/var/lib/app/app.db"), "webdav");
    let ReplicaTarget::Http(h) = &r.target else {
        panic!("{r:?}")
    };
    assert_eq!(h.url, "http://127.0.0.1:9015/replicas/app");
    assert_eq!(h.user.as_deref(), Some("walship"));
    // Expansion happens once, over the file text: a `$` inside a variable's value stays.
    assert_eq!(h.password, Some(Secret::new("dav-pa$$word")));
    assert_eq!(r.sync_interval, Duration::from_secs(5));

    let c = load("http-static-restore.yml").config;
    let r = replica(db(&c, "/var/lib/app/app.db"), "mirror");
    let ReplicaTarget::Http(h) = &r.target else {
        panic!("{r:?}")
    };
    assert_eq!(h.url, "https://backups.example.com/replicas/app");
    assert_eq!(h.bearer_token, Some(Secret::new("mirror-token")));
    assert_eq!(r.target.type_name(), "http");
}

/// The guides' central server: two unnamed file replicas both replicate, the second named
/// "file-2", with a warning that says to name them.
#[test]
fn guide_configs_load_as_their_authors_meant() {
    let loaded = load("guide-central.yml");
    let d = db(
        &loaded.config,
        "/home/me/.local/share/mcp-memory/sqlite_vec.db",
    );
    let names: Vec<_> = d.replicas.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["file", "file-2"]);
    assert_eq!(
        file_path(&d.replicas[0]),
        Path::new("/srv/litestream/mcp-memory")
    );
    assert_eq!(
        file_path(&d.replicas[1]),
        Path::new("/mnt/backup/litestream/mcp-memory")
    );
    assert_eq!(loaded.warnings.len(), 1, "{:#?}", loaded.warnings);
    let w = &loaded.warnings[0];
    for want in ["both unnamed file replicas", "\"file-2\"", "name: key"] {
        assert!(w.contains(want), "{want:?} not in {w}");
    }

    // The laptop: `type: file` beside an http:// url is an HTTP replica, with a warning.
    let loaded = load("guide-laptop.yml");
    let d = db(
        &loaded.config,
        "/home/me/.local/share/mcp-memory/sqlite_vec.db",
    );
    let r = &d.replicas[0];
    let ReplicaTarget::Http(h) = &r.target else {
        panic!("{r:?}")
    };
    assert_eq!(h.url, "http://central/litestream/mcp-memory");
    assert_eq!(r.name, "http");
    assert_eq!(loaded.warnings.len(), 1, "{:#?}", loaded.warnings);
    let w = &loaded.warnings[0];
    for want in [
        "type: file does not match the url http://central/litestream/mcp-memory",
        "the url decides",
        "http replica",
    ] {
        assert!(w.contains(want), "{want:?} not in {w}");
    }
}

#[test]
fn sftp_example() {
    let c = load("sftp.yml").config;
    let r = replica(db(&c, "/var/lib/app/app.db"), "offsite");
    let ReplicaTarget::Sftp(SftpConfig {
        host,
        user,
        key_path,
        host_key,
        skip_host_key_check,
        path,
        ..
    }) = &r.target
    else {
        panic!("{r:?}")
    };
    assert_eq!(host, "backup.example.com:22");
    assert_eq!(user, "walship");
    assert_eq!(
        key_path.as_deref(),
        Some(Path::new("/etc/walship/id_ed25519"))
    );
    assert!(host_key.as_deref().unwrap().starts_with("ssh-ed25519 AAAA"));
    assert!(!skip_host_key_check);
    assert_eq!(path, "/srv/backups/app");
}

#[test]
fn many_databases_example() {
    let c = load("many-databases.yml").config;
    assert_eq!(c.addr.as_deref(), Some(":9090"));
    assert_eq!(c.logging.format, LogFormat::Json);
    assert_eq!(c.dbs.len(), 3);
    let names = |db: &DbConfig| {
        db.replicas
            .iter()
            .map(|r| r.name.clone())
            .collect::<Vec<_>>()
    };

    let users = db(&c, "/srv/app/users.db");
    assert_eq!(names(users), ["file", "s3"]);
    assert_eq!(s3(replica(users, "s3")).bucket, "acme-backups");

    let orders = db(&c, "/srv/app/orders.db");
    assert_eq!(orders.monitor_interval, Duration::from_millis(500));
    assert_eq!(names(orders), ["local", "s3-eu", "s3-us"]);
    assert_eq!(
        s3(replica(orders, "s3-us")).region.as_deref(),
        Some("us-east-2")
    );
    assert_eq!(replica(orders, "s3-eu").retention, Some(720 * HOUR));

    let sessions = db(&c, "/srv/app/sessions.db");
    assert_eq!(sessions.checkpoint_interval, Some(Duration::from_secs(30)));
    let spaces = s3(replica(sessions, "spaces"));
    assert_eq!(spaces.region.as_deref(), Some("fra1"));
    assert_eq!(spaces.access_key_id.as_deref(), Some("spaces-key"));
    assert_eq!(spaces.secret_access_key, Some(Secret::new("spaces-secret")));
    assert_eq!(replica(sessions, "webdav").target.type_name(), "http");
}

#[test]
fn directory_example() {
    let c = load("directory.yml").config;
    assert!(c.dbs.is_empty());
    let d = &c.dirs[0];
    assert_eq!(d.dir, Path::new("/srv/tenants"));
    assert_eq!(d.pattern, "*.db");
    assert!(d.recursive && d.watch);
    let tenant = c
        .find_db_in_dirs(Path::new("/srv/tenants/eu/acme.db"))
        .expect("a tenant database matches");
    assert_eq!(
        file_path(replica(&tenant, "file")),
        Path::new("/var/backups/tenants/eu/acme.db")
    );
    let s3r = replica(&tenant, "s3");
    assert_eq!(s3(s3r).bucket, "acme-backups");
    assert_eq!(s3(s3r).path, "tenants/eu/acme.db");
    assert_eq!(s3r.validation_interval, Some(24 * HOUR));
    assert_eq!(s3r.retention, Some(720 * HOUR));
    for not in [
        "/srv/tenants/eu/acme.db-wal",
        "/srv/tenants/notes.txt",
        "/srv/other/x.db",
    ] {
        assert!(c.find_db_in_dirs(Path::new(not)).is_none(), "{not}");
    }
}

#[test]
fn upstream_examples() {
    let c = load("upstream-s3-url.yml").config;
    let r = &db(&c, "/var/lib/db").replicas[0];
    assert_eq!(r.name, "s3");
    assert_eq!(s3(r).bucket, "mybkt.litestream.io");
    assert_eq!(s3(r).path, "db");
    assert_eq!(r.retention, Some(24 * HOUR));

    let c = load("upstream-multiple-replicas.yml").config;
    let db1 = db(&c, "/local/path/to/db");
    assert_eq!(s3(replica(db1, "my_aws_replica")).bucket, "myawsbucket");
    let spaces = s3(replica(db1, "my_do_replica"));
    assert_eq!(spaces.bucket, "mybkt");
    assert_eq!(spaces.region.as_deref(), Some("nyc3"));
    assert_eq!(
        spaces.endpoint.as_deref(),
        Some("https://nyc3.digitaloceanspaces.com")
    );

    let c = load("upstream-retention.yml").config;
    let r = &db(&c, "/var/lib/db").replicas[0];
    assert_eq!(r.retention, Some(4 * HOUR));
    assert_eq!(r.retention_check_interval, HOUR);
}

#[test]
fn upstream_v05_example_is_translated_with_warnings() {
    let loaded = load("upstream-v05-database-options.yml");
    let c = &loaded.config;
    let db = db(c, "/var/lib/myapp.db");
    assert_eq!(
        db.meta_path.as_deref(),
        Some(Path::new("/var/lib/myapp-litestream"))
    );
    assert_eq!(db.monitor_interval, Duration::from_millis(500));
    assert_eq!(db.checkpoint_interval, Some(Duration::from_secs(30)));
    assert_eq!(db.min_checkpoint_page_count, 500);
    assert_eq!(db.max_checkpoint_page_count, 5000);
    assert_eq!(db.replicas.len(), 1);
    assert_eq!(s3(&db.replicas[0]).bucket, "mybucket");
    assert_eq!(s3(&db.replicas[0]).path, "myapp");

    let w = &loaded.warnings;
    assert_eq!(w.len(), 2, "{w:#?}");
    assert!(
        w.iter()
            .any(|m| m.starts_with("dbs[0]: unknown key \"busy-timeout\" ignored")),
        "{w:#?}"
    );
    assert!(
        w.iter()
            .any(|m| m.contains("\"replica:\" (Litestream v0.5 syntax) treated as a one-element")),
        "{w:#?}"
    );
}
