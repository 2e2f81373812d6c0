//! The file as written: serde types mirroring Litestream's YAML, and the unknown-key check.
//!
//! Parsing runs twice over the same text: once into these typed structs (type errors carry
//! line and column), once into a [`Node`] skeleton that keeps every key, so keys that the typed
//! pass silently skips can be reported as warnings with their location.

use std::collections::BTreeSet;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, MapAccess, SeqAccess, Visitor};

use super::duration::{GoDuration, parse_go_duration};

/// Top-level keys.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub dbs: Option<Vec<RawDb>>,
    #[serde(default)]
    pub addr: Option<String>,
    #[serde(default)]
    pub exec: Option<String>,
    /// walship's own: see `Config::stall_intervals`.
    #[serde(default)]
    pub stall_intervals: Option<u32>,
    #[serde(default)]
    pub access_key_id: Option<String>,
    #[serde(default)]
    pub secret_access_key: Option<String>,
    #[serde(default)]
    pub logging: Option<RawLogging>,
}

/// `logging:` keys.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct RawLogging {
    #[serde(default)]
    pub level: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub stderr: Option<bool>,
}

/// One `dbs:` entry.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct RawDb {
    #[serde(default)]
    pub path: Option<String>,
    /// Directory form (Litestream v0.5): `dir` + `pattern` (+ `recursive`, `watch`).
    #[serde(default)]
    pub dir: Option<String>,
    #[serde(default)]
    pub pattern: Option<String>,
    #[serde(default)]
    pub recursive: Option<bool>,
    #[serde(default)]
    pub watch: Option<bool>,
    #[serde(default)]
    pub meta_path: Option<String>,
    #[serde(default)]
    pub monitor_interval: Option<RawDuration>,
    #[serde(default)]
    pub checkpoint_interval: Option<RawDuration>,
    #[serde(default)]
    pub min_checkpoint_page_count: Option<i64>,
    #[serde(default)]
    pub max_checkpoint_page_count: Option<i64>,
    #[serde(default)]
    pub replicas: Option<Vec<RawReplica>>,
    /// Litestream v0.5's single-replica form.
    #[serde(default)]
    pub replica: Option<RawReplica>,
}

/// One replica entry.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct RawReplica {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub retention: Option<RawDuration>,
    #[serde(default)]
    pub retention_check_interval: Option<RawDuration>,
    #[serde(default)]
    pub sync_interval: Option<RawDuration>,
    #[serde(default)]
    pub snapshot_interval: Option<RawDuration>,
    #[serde(default)]
    pub validation_interval: Option<RawDuration>,
    /// walship's own: the replica lease (`off`, `on`, or its TTL).
    #[serde(default)]
    pub lease: Option<RawLease>,
    // S3
    #[serde(default)]
    pub access_key_id: Option<String>,
    #[serde(default)]
    pub secret_access_key: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub bucket: Option<String>,
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub force_path_style: Option<bool>,
    #[serde(default)]
    pub skip_verify: Option<bool>,
    // ABS
    #[serde(default)]
    pub account_name: Option<String>,
    #[serde(default)]
    pub account_key: Option<String>,
    // SFTP (user/password also serve HTTP basic auth)
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub key_path: Option<String>,
    /// The server's public key, as in `authorized_keys` (`ssh-ed25519 AAAA...`): Litestream
    /// v0.5's key.
    #[serde(default)]
    pub host_key: Option<String>,
    /// walship's explicit opt-out of host key checking (Litestream v0.3.13 never checks).
    #[serde(default)]
    pub insecure_skip_host_key_check: Option<bool>,
    // HTTP
    #[serde(default)]
    pub bearer_token: Option<String>,
    #[serde(default)]
    pub age: Option<RawAge>,
}

/// `age:` keys.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct RawAge {
    #[serde(default)]
    pub identities: Option<Vec<String>>,
    #[serde(default)]
    pub recipients: Option<Vec<String>>,
}

/// `lease:`: a switch (`off`/`on`, `false`/`true`) or a TTL (a Go duration).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum RawLease {
    Switch(bool),
    Ttl(GoDuration),
}

impl<'de> Deserialize<'de> for RawLease {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawLease;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("off, on, or the lease's TTL as a Go duration such as 30s")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawLease, E> {
                Ok(RawLease::Switch(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawLease, E> {
                Err(E::custom(format!(
                    "lease: {v} needs a unit; write e.g. {v}s, or off"
                )))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawLease, E> {
                Err(E::custom(format!(
                    "lease: {v} needs a unit; write e.g. {v}s, or off"
                )))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawLease, E> {
                match v.trim().to_ascii_lowercase().as_str() {
                    "off" | "false" | "no" => Ok(RawLease::Switch(false)),
                    "on" | "true" | "yes" => Ok(RawLease::Switch(true)),
                    _ => parse_go_duration(v).map(RawLease::Ttl).map_err(|e| {
                        E::custom(format!("lease: {e}; write off, on, or a TTL such as 30s"))
                    }),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// A duration key's value: a Go duration string or a YAML integer (nanoseconds).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct RawDuration {
    pub value: GoDuration,
    /// Written as a bare number (nanoseconds), e.g. `sync-interval: 10`.
    pub bare_number: bool,
}

impl<'de> Deserialize<'de> for RawDuration {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a Go duration such as 1s, 500ms or 1h30m (or integer nanoseconds)")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawDuration, E> {
                Ok(RawDuration {
                    value: GoDuration::from_nanos(v),
                    bare_number: true,
                })
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawDuration, E> {
                let v = i64::try_from(v).map_err(|_| {
                    E::custom(format!("duration {v} (nanoseconds) is out of range"))
                })?;
                self.visit_i64(v)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawDuration, E> {
                Err(E::custom(format!(
                    "{v} is not a duration: a number needs a unit; write e.g. {v}s"
                )))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawDuration, E> {
                let value = parse_go_duration(v).map_err(E::custom)?;
                let bare_number = v
                    .strip_prefix(['-', '+'])
                    .unwrap_or(v)
                    .bytes()
                    .all(|b| b.is_ascii_digit());
                Ok(RawDuration { value, bare_number })
            }
        }
        d.deserialize_any(V)
    }
}

/// The shape of the document with every key kept (values are not needed).
#[derive(Debug)]
pub(crate) enum Node {
    Map(Vec<(String, Node)>),
    Seq(Vec<Node>),
    Scalar,
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Node;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_bool<E>(self, _: bool) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_i128<E>(self, _: i128) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_u128<E>(self, _: u128) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_str<E>(self, _: &str) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_bytes<E>(self, _: &[u8]) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_unit<E>(self) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_none<E>(self) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
                Node::deserialize(d)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Node::Seq(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
                let mut entries = Vec::new();
                while let Some((Key(k), v)) = map.next_entry()? {
                    entries.push((k, v));
                }
                Ok(Node::Map(entries))
            }
        }
        d.deserialize_any(V)
    }
}

/// A mapping key rendered as text (non-string keys such as `1:` or `true:` included).
struct Key(String);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping key")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_unit<E>(self) -> Result<Key, E> {
                Ok(Key("~".into()))
            }
            fn visit_none<E>(self) -> Result<Key, E> {
                Ok(Key("~".into()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Key, A::Error> {
                while seq.next_element::<de::IgnoredAny>()?.is_some() {}
                Ok(Key("<sequence>".into()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Key, A::Error> {
                while map
                    .next_entry::<de::IgnoredAny, de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(Key("<mapping>".into()))
            }
        }
        d.deserialize_any(V)
    }
}

pub(crate) const TOP_KEYS: &[&str] = &[
    "dbs",
    "addr",
    "exec",
    "stall-intervals",
    "access-key-id",
    "secret-access-key",
    "logging",
];
pub(crate) const LOGGING_KEYS: &[&str] = &["level", "type", "stderr"];
pub(crate) const DB_KEYS: &[&str] = &[
    "path",
    "dir",
    "pattern",
    "recursive",
    "watch",
    "meta-path",
    "monitor-interval",
    "checkpoint-interval",
    "min-checkpoint-page-count",
    "max-checkpoint-page-count",
    "replicas",
    "replica",
];
pub(crate) const REPLICA_KEYS: &[&str] = &[
    "type",
    "name",
    "path",
    "url",
    "retention",
    "retention-check-interval",
    "sync-interval",
    "snapshot-interval",
    "validation-interval",
    "lease",
    "access-key-id",
    "secret-access-key",
    "region",
    "bucket",
    "endpoint",
    "force-path-style",
    "skip-verify",
    "account-name",
    "account-key",
    "host",
    "user",
    "password",
    "key-path",
    "host-key",
    "insecure-skip-host-key-check",
    "bearer-token",
    "age",
];
pub(crate) const AGE_KEYS: &[&str] = &["identities", "recipients"];

/// Keys of later Litestream versions (v0.4/v0.5) that v0.3.13 — and so walship — ignores.
const LATER_VERSION_KEYS: &[&str] = &[
    // top level
    "snapshot",
    "validation",
    "levels",
    "l0-retention",
    "l0-retention-check-interval",
    "verify-compaction",
    "heartbeat-url",
    "heartbeat-interval",
    "mcp-addr",
    "socket",
    "shutdown-sync-timeout",
    "shutdown-sync-interval",
    // db
    "busy-timeout",
    "truncate-page-n",
    // replica
    "username",
    "token",
    "jwt",
    "seed",
    "creds",
    "nkey",
    "tls",
    "root-cas",
    "client-cert",
    "client-key",
    "max-reconnects",
    "reconnect-wait",
    "timeout",
    "sse-c-key",
    "sse-kms-key-id",
    "part-size",
    "concurrency",
    "sign-payload",
    "require-content-md5",
];

/// Walks the skeleton and reports unknown and repeated keys, each with its location.
pub(crate) fn check_keys(root: &Node, warnings: &mut Vec<String>) {
    let Node::Map(_) = root else { return };
    check_map(root, TOP_KEYS, "top level", warnings);
    if let Some(logging @ Node::Map(_)) = get(root, "logging") {
        check_map(logging, LOGGING_KEYS, "logging", warnings);
    }
    if let Some(Node::Seq(dbs)) = get(root, "dbs") {
        for (i, db) in dbs.iter().enumerate() {
            let at = format!("dbs[{i}]");
            check_map(db, DB_KEYS, &at, warnings);
            if let Some(Node::Seq(replicas)) = get(db, "replicas") {
                for (j, r) in replicas.iter().enumerate() {
                    check_replica(r, &format!("{at}.replicas[{j}]"), warnings);
                }
            }
            if let Some(r @ Node::Map(_)) = get(db, "replica") {
                check_replica(r, &format!("{at}.replica"), warnings);
            }
        }
    }
}

fn check_replica(node: &Node, at: &str, warnings: &mut Vec<String>) {
    check_map(node, REPLICA_KEYS, at, warnings);
    if let Some(age @ Node::Map(_)) = get(node, "age") {
        check_map(age, AGE_KEYS, &format!("{at}.age"), warnings);
    }
}

/// The last value of `key` in a mapping node (the one the typed pass uses).
fn get<'a>(node: &'a Node, key: &str) -> Option<&'a Node> {
    match node {
        Node::Map(entries) => entries.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
        _ => None,
    }
}

fn check_map(node: &Node, known: &[&str], at: &str, warnings: &mut Vec<String>) {
    let Node::Map(entries) = node else { return };
    let mut seen = BTreeSet::new();
    let mut repeated = BTreeSet::new();
    for (key, _) in entries {
        if !seen.insert(key.as_str()) && repeated.insert(key.as_str()) {
            warnings.push(format!(
                "{at}: key {key:?} appears more than once; the last value is used"
            ));
        }
        if known.contains(&key.as_str()) {
            continue;
        }
        let mut msg = format!("{at}: unknown key {key:?} ignored");
        if let Some(hint) = hint(key, known) {
            msg.push_str("; ");
            msg.push_str(&hint);
        }
        if !repeated.contains(key.as_str()) {
            warnings.push(msg);
        }
    }
}

/// A suggestion for an unknown key: the intended spelling, or why the key does nothing.
fn hint(key: &str, known: &[&str]) -> Option<String> {
    let normalized = key.to_ascii_lowercase().replace('_', "-");
    if known.contains(&normalized.as_str()) {
        return Some(format!("did you mean {normalized:?}?"));
    }
    if LATER_VERSION_KEYS.contains(&normalized.as_str()) {
        return Some(
            "it belongs to a later Litestream version; walship follows v0.3.13, which has no \
             such setting"
                .into(),
        );
    }
    let best = known
        .iter()
        .map(|k| (edit_distance(&normalized, k), *k))
        .min()
        .filter(|&(d, _)| d <= 2 && normalized.len() > 3);
    if let Some((_, k)) = best {
        return Some(format!("did you mean {k:?}?"));
    }
    // A known key contained in the unknown one or containing it, or sharing a long prefix
    // (`wal-retention` → `retention`, `identity` → `identities`); the closest one wins.
    let prefix_len = |k: &str| {
        k.bytes()
            .zip(normalized.bytes())
            .take_while(|(a, b)| a == b)
            .count()
    };
    let mut related: Vec<(usize, &str)> = known
        .iter()
        .copied()
        .filter(|k| k.len() >= 4 && normalized.len() >= 4)
        .filter(|k| normalized.contains(k) || k.contains(normalized.as_str()) || prefix_len(k) >= 6)
        .map(|k| (edit_distance(&normalized, k), k))
        .collect();
    related.sort();
    match related.as_slice() {
        [(_, k)] => Some(format!("did you mean {k:?}?")),
        [(d1, k), (d2, _), ..] if d1 < d2 => Some(format!("did you mean {k:?}?")),
        _ => None,
    }
}

/// Levenshtein distance over chars (keys are short).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, &cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("retention", "retention"), 0);
        assert_eq!(edit_distance("retenton", "retention"), 1);
        assert_eq!(edit_distance("sync-intervall", "sync-interval"), 1);
    }

    #[test]
    fn hints() {
        assert_eq!(
            hint("sync_interval", REPLICA_KEYS).as_deref(),
            Some("did you mean \"sync-interval\"?")
        );
        assert_eq!(
            hint("retenton", REPLICA_KEYS).as_deref(),
            Some("did you mean \"retention\"?")
        );
        assert_eq!(
            hint("wal-retention", REPLICA_KEYS).as_deref(),
            Some("did you mean \"retention\"?")
        );
        assert!(
            hint("busy-timeout", DB_KEYS)
                .unwrap()
                .contains("later Litestream version")
        );
        assert_eq!(
            hint("retention-interval", REPLICA_KEYS).as_deref(),
            Some("did you mean \"retention-check-interval\"?")
        );
        assert_eq!(
            hint("identity", AGE_KEYS).as_deref(),
            Some("did you mean \"identities\"?")
        );
        assert_eq!(hint("zzz", REPLICA_KEYS), None);
    }
}
