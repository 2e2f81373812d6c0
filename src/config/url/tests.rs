//! URL forms of every replica type, as Litestream v0.3.13 reads them.
use super::*;

fn s3(url: &str) -> S3Config {
    match ReplicaTarget::from_url(url) {
        Ok(ReplicaTarget::S3(c)) => c,
        other => panic!("{url}: {other:?}"),
    }
}

#[test]
fn is_url_like_litestream() {
    assert!(is_url("s3://bkt/db"));
    assert!(is_url("file:///tmp/x"));
    assert!(is_url("foo_1://x"));
    assert!(!is_url("/var/lib/db"));
    assert!(!is_url("file:rel"));
    assert!(!is_url("://x"));
    assert!(!is_url("a b://x"));
    assert!(!is_url("./s3://x"));
}

#[test]
fn file_urls() {
    // `/abs` on Unix, on the current drive on Windows (`Z:\\abs` under Wine).
    let abs = |p: &str| std::path::absolute(p).unwrap();
    let cwd = std::env::current_dir().unwrap();
    let home = std::env::home_dir().unwrap();
    let cases = [
        ("file:///abs/path", abs("/abs/path")),
        ("file:///tmp/a/../b/", abs("/tmp/b")),
        ("file:/abs", abs("/abs")),
        #[cfg(unix)]
        ("file://host/p", abs("/host/p")),
        ("file:relative/x", cwd.join("relative/x")),
        ("file://./rel", cwd.join("rel")),
        ("file:~/bk", home.join("bk")),
        ("file://~/bk", home.join("bk")),
        ("file:///with%20space", abs("/with space")),
        ("FILE:///upper", abs("/upper")),
    ];
    for (url, want) in cases {
        assert_eq!(
            ReplicaTarget::from_url(url).unwrap(),
            ReplicaTarget::File { path: want },
            "{url}"
        );
    }
    let err = ReplicaTarget::from_url("file://").unwrap_err().to_string();
    assert!(err.contains("file url has no path"), "{err}");
}

/// The paths Windows users write: drive letters after `file:///`, either slash, spaces,
/// and `file://server/share/...` as a UNC path.
#[cfg(windows)]
#[test]
fn file_urls_on_windows() {
    use std::path::PathBuf;
    let cases = [
        ("file:///C:/backups/app", r"C:\backups\app"),
        ("file:///c:/Program%20Files/bk/", r"c:\Program Files\bk"),
        (
            "file://server/share/backups/app",
            r"\\server\share\backups\app",
        ),
        ("file:C:/backups/./app", r"C:\backups\app"),
    ];
    for (url, want) in cases {
        assert_eq!(
            ReplicaTarget::from_url(url).unwrap(),
            ReplicaTarget::File {
                path: PathBuf::from(want)
            },
            "{url}"
        );
    }
}

#[test]
fn s3_plain_and_paths() {
    let c = s3("s3://bucket/some/path");
    assert_eq!(
        (c.bucket.as_str(), c.path.as_str()),
        ("bucket", "some/path")
    );
    assert_eq!(
        (c.region, c.endpoint, c.force_path_style),
        (None, None, false)
    );
    assert_eq!(s3("s3://bkt/a//b/../c/").path, "a/c");
    assert_eq!(s3("s3://bucket").path, "");
    assert_eq!(s3("s3://bucket/").path, "");
    assert_eq!(
        s3("s3://mybkt.litestream.io/db").bucket,
        "mybkt.litestream.io"
    );
    assert_eq!(
        s3("s3://bkt:123/db").bucket,
        "bkt",
        "a port is not part of the bucket"
    );
    assert_eq!(s3("s3://key:secret@bkt/db").bucket, "bkt");
}

#[test]
fn s3_host_inference() {
    struct Case {
        url: &'static str,
        bucket: &'static str,
        path: &'static str,
        region: Option<&'static str>,
        endpoint: Option<&'static str>,
        path_style: bool,
    }
    let cases = [
        Case {
            url: "s3://bkt.localhost/db",
            bucket: "bkt",
            path: "db",
            region: Some("us-east-1"),
            endpoint: Some("http://localhost"),
            path_style: true,
        },
        Case {
            url: "s3://bkt.localhost:9000/db",
            bucket: "bkt",
            path: "db",
            region: Some("us-east-1"),
            endpoint: Some("http://localhost:9000"),
            path_style: true,
        },
        Case {
            url: "s3://localhost:9000/bkt/a/db",
            bucket: "bkt",
            path: "a/db",
            region: Some("us-east-1"),
            endpoint: Some("http://localhost:9000"),
            path_style: true,
        },
        Case {
            url: "s3://my.bkt.s3.us-west-002.backblazeb2.com/db",
            bucket: "my.bkt",
            path: "db",
            region: Some("us-west-002"),
            endpoint: Some("https://s3.us-west-002.backblazeb2.com"),
            path_style: true,
        },
        Case {
            url: "s3://bkt.s3.filebase.com/db",
            bucket: "bkt",
            path: "db",
            region: None,
            endpoint: Some("https://s3.filebase.com"),
            path_style: true,
        },
        Case {
            url: "s3://mybkt.nyc3.digitaloceanspaces.com/db",
            bucket: "mybkt",
            path: "db",
            region: Some("nyc3"),
            endpoint: Some("https://nyc3.digitaloceanspaces.com"),
            path_style: true,
        },
        Case {
            url: "s3://bkt.s3.fr-par.scw.cloud/db",
            bucket: "bkt",
            path: "db",
            region: Some("fr-par"),
            endpoint: Some("https://s3.fr-par.scw.cloud"),
            path_style: true,
        },
        Case {
            url: "s3://bkt.us-east-1.linodeobjects.com/db",
            bucket: "bkt",
            path: "db",
            region: Some("us-east-1"),
            endpoint: Some("https://us-east-1.linodeobjects.com"),
            path_style: true,
        },
        // Litestream quirk #27, done better: AWS virtual-hosted names.
        Case {
            url: "s3://bkt.s3.amazonaws.com/db",
            bucket: "bkt",
            path: "db",
            region: None,
            endpoint: None,
            path_style: false,
        },
        Case {
            url: "s3://bkt.s3.eu-west-1.amazonaws.com/db",
            bucket: "bkt",
            path: "db",
            region: Some("eu-west-1"),
            endpoint: None,
            path_style: false,
        },
        Case {
            url: "s3://bkt.s3-eu-west-1.amazonaws.com/db",
            bucket: "bkt",
            path: "db",
            region: Some("eu-west-1"),
            endpoint: None,
            path_style: false,
        },
        Case {
            url: "s3://s3.eu-west-1.amazonaws.com/bkt/db",
            bucket: "bkt",
            path: "db",
            region: Some("eu-west-1"),
            endpoint: None,
            path_style: false,
        },
        Case {
            url: "s3://BKT.S3.AMAZONAWS.COM/db",
            bucket: "BKT",
            path: "db",
            region: None,
            endpoint: None,
            path_style: false,
        },
    ];
    for case in cases {
        let c = s3(case.url);
        assert_eq!(c.bucket, case.bucket, "{}", case.url);
        assert_eq!(c.path, case.path, "{}", case.url);
        assert_eq!(c.region.as_deref(), case.region, "{}", case.url);
        assert_eq!(c.endpoint.as_deref(), case.endpoint, "{}", case.url);
        assert_eq!(c.force_path_style, case.path_style, "{}", case.url);
    }
    // Hosts that only resemble a provider stay whole bucket names.
    assert_eq!(s3("s3://example.com/db").bucket, "example.com");
    assert_eq!(s3("s3://notlocalhost/db").bucket, "notlocalhost");
    let err = ReplicaTarget::from_url("s3://localhost:9000/").unwrap_err();
    assert!(err.to_string().contains("needs a bucket"), "{err}");
}

#[test]
fn other_schemes() {
    assert_eq!(
        ReplicaTarget::from_url("gcs://bkt/a/b").unwrap(),
        ReplicaTarget::Gcs(GcsConfig {
            bucket: "bkt".into(),
            path: "a/b".into()
        })
    );
    assert_eq!(
        ReplicaTarget::from_url("gs://bkt").unwrap(),
        ReplicaTarget::Gcs(GcsConfig {
            bucket: "bkt".into(),
            path: String::new()
        })
    );
    assert_eq!(
        ReplicaTarget::from_url("abs://acct@container/db").unwrap(),
        ReplicaTarget::Abs(AbsConfig {
            account_name: Some("acct".into()),
            account_key: None,
            bucket: "container".into(),
            path: "db".into(),
            endpoint: None
        })
    );
    assert_eq!(
        ReplicaTarget::from_url("abs://acct.blob.core.windows.net/container/db").unwrap(),
        ReplicaTarget::Abs(AbsConfig {
            account_name: Some("acct".into()),
            account_key: None,
            bucket: "container".into(),
            path: "db".into(),
            endpoint: Some("https://acct.blob.core.windows.net".into())
        })
    );
    assert_eq!(
        ReplicaTarget::from_url("sftp://u:p%40ss@example.com:2222/backups/db").unwrap(),
        ReplicaTarget::Sftp(SftpConfig {
            host: "example.com:2222".into(),
            user: "u".into(),
            password: Some(Secret::new("p@ss")),
            key_path: None,
            host_key: None,
            skip_host_key_check: false,
            path: "/backups/db".into()
        })
    );
    match ReplicaTarget::from_url("sftp://u@example.com/x").unwrap() {
        ReplicaTarget::Sftp(SftpConfig { host, .. }) => assert_eq!(host, "example.com:22"),
        other => panic!("{other:?}"),
    }
    match ReplicaTarget::from_url("https://bob:pw@dav.example.com/r/db?x=1#frag").unwrap() {
        ReplicaTarget::Http(h) => {
            assert_eq!(h.url, "https://dav.example.com/r/db?x=1");
            assert_eq!(h.user.as_deref(), Some("bob"));
            assert_eq!(h.password, Some(Secret::new("pw")));
        }
        other => panic!("{other:?}"),
    }
    match ReplicaTarget::from_url("webdav://127.0.0.1:9015/r").unwrap() {
        ReplicaTarget::Http(h) => assert_eq!(h.url, "http://127.0.0.1:9015/r"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn type_names() {
    let names: Vec<_> = [
        "file:///x",
        "s3://b",
        "http://h/",
        "gcs://b",
        "abs://c",
        "sftp://u@h/",
    ]
    .iter()
    .map(|u| ReplicaTarget::from_url(u).unwrap().type_name())
    .collect();
    assert_eq!(names, ["file", "s3", "http", "gcs", "abs", "sftp"]);
}

#[test]
fn url_errors() {
    let err = ReplicaTarget::from_url("foo://x/y")
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown replica url scheme \"foo\""), "{err}");
    assert!(
        err.contains("s3") && err.contains("sftp") && err.contains("webdav"),
        "{err}"
    );
    let err = ReplicaTarget::from_url("/var/lib/db")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("replica url scheme required: /var/lib/db"),
        "{err}"
    );
    assert!(err.contains("file:///var/lib/db"), "{err}");
    let err = ReplicaTarget::from_url("sftp://host/x")
        .unwrap_err()
        .to_string();
    assert!(err.contains("needs a user"), "{err}");
    let err = ReplicaTarget::from_url("s3://b/%zz")
        .unwrap_err()
        .to_string();
    assert!(err.contains("percent-escape"), "{err}");
    let err = ReplicaTarget::from_url("sftp://u:hunter2@/x")
        .unwrap_err()
        .to_string();
    assert!(!err.contains("hunter2"), "{err}");
    assert!(err.contains("u:<redacted>@"), "{err}");
}

#[test]
fn redaction() {
    assert_eq!(
        redact_url("sftp://u:secret@h:22/p?q=1"),
        "sftp://u:<redacted>@h:22/p?q=1"
    );
    assert_eq!(redact_url("s3://bkt/p"), "s3://bkt/p");
    assert_eq!(redact_url("https://u@h/p"), "https://u@h/p");
    assert_eq!(redact_url("/plain/path"), "/plain/path");
}
