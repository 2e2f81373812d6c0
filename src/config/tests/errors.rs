//! What a config file gets wrong: structural errors, YAML syntax, unknown, repeated and
//! inapplicable keys.
use super::*;

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
