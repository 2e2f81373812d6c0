//! Replicas and paths: S3 URLs and keys, credentials, file paths, finding a database.
use super::*;

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
