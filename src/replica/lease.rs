//! The replica lease: one writer per replica.
//!
//! Two replicators shipping to one replica path (a rolling deploy that starts the new pod
//! before the old one stops, a restored laptop with `replicate` still on, a copy-pasted
//! config) would write generations side by side, and a restore would pick one of them.
//! So every walship that writes a replica holds a lease on it: the object
//! [`layout::LEASE_PATH`] at the replica's root, outside `generations/` (Litestream never
//! looks there), naming its holder and when the lease expires. It is taken with a
//! create-only write and renewed with a compare-and-swap on its version
//! ([`ReplicaClient::put_if`]), so of two writers racing for it exactly one wins.
//!
//! - A second writer is refused while the lease is live, with an error that names the
//!   holder; once it has expired (the holder crashed, or stopped without releasing it) the
//!   next writer takes it over.
//! - The holder renews the lease only when it is about to upload and less than half of
//!   the TTL is left: an idle replica costs no request. Its own deadline is measured on its
//!   monotonic clock from *before* the renewal was sent; no upload starts past it without a
//!   renewal, so a holder that was paused or cut off past its TTL (SIGSTOP, a suspended VM)
//!   uploads nothing more once it wakes if someone else took the lease meanwhile: its
//!   compare-and-swap fails, and the replica stops with [`Error::InUse`].
//! - A previous incarnation of the same walship (same host, same database: the meta
//!   directory's lock proves no other process of this host replicates that database) is
//!   taken over at once, so a restart after a crash does not wait out the TTL.
//! - A clean stop releases the lease (expiry 0), so the next writer starts at once.
//!
//! What stays open: an upload already sent when the holder was paused can still land
//! after its lease expired; the lease bounds how long a lost holder keeps writing, to the
//! uploads it had in flight. Other writers judge expiry on their own wall clock, so clocks
//! must agree to well within the TTL (NTP).
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};

use crate::backend::ReplicaClient;
use crate::error::{Error, Result};
use crate::event::Event;
use crate::layout;

/// What the lease object holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    /// Random, one per replica of one process: tells a holder its own lease.
    token: String,
    pid: u32,
    host: String,
    /// The database the holder replicates (absolute path).
    db: String,
    /// When the holder took the lease (RFC 3339).
    started: String,
    /// Unix milliseconds after which the lease is free; 0: released.
    expires_ms: u64,
    /// The holder's TTL, in milliseconds.
    ttl_ms: u64,
}

impl Record {
    fn describe(&self) -> String {
        format!(
            "walship pid {} on {} replicating {}, since {}",
            self.pid,
            if self.host.is_empty() {
                "an unknown host"
            } else {
                &self.host
            },
            self.db,
            self.started
        )
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[derive(Debug, Default)]
struct State {
    /// The version of the lease object this holder wrote last.
    version: Option<String>,
    /// No upload starts after this without a renewal.
    deadline: Option<Instant>,
    /// Set once the lease was lost: the reason, returned by every later [`Lease::ensure`].
    lost: Option<String>,
}

/// One replica's lease, as its writer holds it.
pub struct Lease {
    client: Arc<dyn ReplicaClient>,
    ttl: Duration,
    /// Asked for explicitly (`lease:` in the config): a server that cannot hold it is an
    /// error rather than a replica without a lease.
    required: bool,
    /// Why this replica's server cannot hold a lease (`None`: it can), asked once.
    unsupported: tokio::sync::OnceCell<Option<String>>,
    me: Record,
    state: tokio::sync::Mutex<State>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("location", &self.client.location())
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// What happened to a lease when it was lost (for [`crate::event::Event::LeaseLost`]).
pub(super) enum Ensure {
    /// The lease is held for at least half its TTL more.
    Held,
    /// It was lost just now (the first time): the message says to whom.
    LostNow(String),
}

impl Lease {
    /// A lease on `client`'s replica for the writer of `db`, `ttl` long. `required`: a
    /// server that turns out unable to hold it ([`ReplicaClient::lease_unsupported`]) is a
    /// [`Error::Config`] rather than a replica without a lease.
    pub fn new(client: Arc<dyn ReplicaClient>, ttl: Duration, db: &Path, required: bool) -> Lease {
        let mut token = [0u8; 16];
        let _ = getrandom::fill(&mut token);
        Lease {
            client,
            ttl,
            required,
            unsupported: tokio::sync::OnceCell::new(),
            me: Record {
                token: token.iter().map(|b| format!("{b:02x}")).collect(),
                pid: std::process::id(),
                host: crate::platform::hostname(),
                db: db.display().to_string(),
                started: crate::metrics::rfc3339(SystemTime::now()),
                expires_ms: 0,
                ttl_ms: ttl.as_millis() as u64,
            },
            state: tokio::sync::Mutex::new(State::default()),
        }
    }

    fn object(&self) -> String {
        self.client.conditional_object(layout::LEASE_PATH)
    }

    /// Whether the lease works on this replica's server: `false` when it cannot hold one and
    /// the lease was not asked for (logged once: the replica runs without one); an error when
    /// it was asked for, or the server cannot be asked.
    async fn supported(&self) -> Result<bool> {
        let why = self
            .unsupported
            .get_or_try_init(|| async {
                let why = self.client.lease_unsupported().await?;
                if let Some(why) = &why
                    && !self.required
                {
                    warn!(replica = %self.client.location(), "no replica lease: {why}; a second writer on this replica would not be stopped (set lease: off to silence this)");
                }
                Ok::<_, Error>(why)
            })
            .await?;
        match why {
            None => Ok(true),
            Some(why) if self.required => Err(Error::Config(format!(
                "replica {}: lease: {why}, so walship cannot fence a second writer there; \
                 remove lease: (the replica then runs without one) or write lease: off",
                self.client.location()
            ))),
            Some(_) => Ok(false),
        }
    }

    fn body(&self, expires_ms: u64) -> Bytes {
        let mut r = self.me.clone();
        r.expires_ms = expires_ms;
        Bytes::from(serde_json::to_vec_pretty(&r).unwrap_or_default())
    }

    /// Before an upload (or any write to the replica): `Held` when the lease is this
    /// writer's for at least half its TTL more, renewing it first if needed; an error when
    /// another writer holds it, or the store cannot be asked.
    pub(super) async fn ensure(&self) -> Result<Ensure> {
        if !self.supported().await? {
            return Ok(Ensure::Held);
        }
        let mut st = self.state.lock().await;
        if let Some(why) = &st.lost {
            return Err(Error::InUse(why.clone()));
        }
        if st
            .deadline
            .is_some_and(|d| Instant::now() + self.ttl / 2 < d)
        {
            return Ok(Ensure::Held);
        }
        match self.claim(&mut st).await {
            Ok(()) => Ok(Ensure::Held),
            Err(Error::InUse(why)) if st.version.is_some() => {
                // We held it, and someone else has it now.
                st.lost = Some(why.clone());
                Ok(Ensure::LostNow(why))
            }
            Err(e) => Err(e),
        }
    }

    /// Fails with [`Error::InUse`] when another live writer holds the lease; writes nothing
    /// (the lease is taken at the first upload, so a start that fails later, on a database
    /// that is not SQLite for instance, leaves no trace on the replica).
    pub async fn check(&self) -> Result<()> {
        if !self.supported().await? {
            return Ok(());
        }
        let Some((data, _)) = self.client.get_versioned(layout::LEASE_PATH).await? else {
            return Ok(());
        };
        match serde_json::from_slice::<Record>(&data) {
            Ok(r) if !self.is_mine(&r) && r.expires_ms > now_ms() => Err(self.held_by(&r)),
            _ => Ok(()),
        }
    }

    /// The lease's state for [`crate::event::ReplicaStatus::lease`]; `renewing` while a
    /// renewal holds it (never waits).
    pub fn state_text(&self) -> String {
        if let Some(Some(why)) = self.unsupported.get() {
            return format!("none: {why}");
        }
        let Ok(st) = self.state.try_lock() else {
            return "renewing".into();
        };
        if let Some(why) = &st.lost {
            format!("lost: {why}")
        } else if st.deadline.is_some_and(|d| Instant::now() < d) {
            "held".into()
        } else if st.version.is_some() {
            "expired".into()
        } else {
            "not taken yet".into()
        }
    }

    /// A lease this writer may take over at once: its own, or its previous run's.
    fn is_mine(&self, r: &Record) -> bool {
        r.token == self.me.token || (r.host == self.me.host && r.db == self.me.db)
    }

    fn held_by(&self, r: &Record) -> Error {
        Error::InUse(format!(
            "replica {} is being written by {} (its lease runs {} s more): two writers on \
             one replica overwrite each other's generations; stop that one, or if it is gone \
             for good wait for its lease to expire (lease TTL {} s) or delete {}",
            self.client.location(),
            r.describe(),
            r.expires_ms.saturating_sub(now_ms()).div_ceil(1000),
            r.ttl_ms / 1000,
            self.object()
        ))
    }

    /// Takes or renews the lease; [`Error::InUse`] names the other holder.
    async fn claim(&self, st: &mut State) -> Result<()> {
        let sent = Instant::now();
        let expires = now_ms() + self.ttl.as_millis() as u64;
        if let Some(v) = st.version.clone() {
            if let Some(nv) = self
                .client
                .put_if(layout::LEASE_PATH, self.body(expires), Some(&v))
                .await?
            {
                st.version = Some(nv);
                st.deadline = Some(sent + self.ttl);
                return Ok(());
            }
            let holder = match self.client.get_versioned(layout::LEASE_PATH).await? {
                Some((data, _)) => serde_json::from_slice::<Record>(&data)
                    .map(|r| r.describe())
                    .unwrap_or_else(|_| "a writer whose lease walship cannot read".into()),
                None => "nobody (the lease object was deleted)".into(),
            };
            return Err(Error::InUse(format!(
                "lost the lease of replica {} to {holder}: another walship writes this \
                 replica now, so this one uploads nothing more to it; stop one of the two \
                 (two writers on one replica overwrite each other's generations), then restart \
                 this one",
                self.client.location()
            )));
        }
        // Three rounds at most: each lost race means another writer just wrote the lease.
        for _ in 0..3 {
            let current = self.client.get_versioned(layout::LEASE_PATH).await?;
            let expected = match &current {
                None => None,
                Some((data, version)) => {
                    match serde_json::from_slice::<Record>(data) {
                        Ok(r) if r.token == self.me.token => {}
                        Ok(r) if r.host == self.me.host && r.db == self.me.db => {
                            info!(replica = %self.client.location(), previous = %r.describe(), "taking over the replica lease of this walship's previous run");
                        }
                        Ok(r) if r.expires_ms > now_ms() => return Err(self.held_by(&r)),
                        Ok(r) if r.expires_ms > 0 => {
                            warn!(replica = %self.client.location(), previous = %r.describe(), "taking over an expired replica lease: its holder stopped renewing it");
                        }
                        Ok(_) => {}
                        Err(e) => {
                            warn!(object = %self.object(), error = %e, "replacing a replica lease walship cannot read");
                        }
                    }
                    Some(version.as_str())
                }
            };
            if let Some(v) = self
                .client
                .put_if(layout::LEASE_PATH, self.body(expires), expected)
                .await?
            {
                st.version = Some(v);
                st.deadline = Some(sent + self.ttl);
                return Ok(());
            }
        }
        Err(Error::InUse(format!(
            "replica {}: another walship keeps taking its lease; two writers on one replica \
             overwrite each other's generations",
            self.client.location()
        )))
    }

    /// Gives the lease up (a clean stop): the next writer takes it at once. Nothing when it
    /// is not held.
    pub async fn release(&self) {
        let mut st = self.state.lock().await;
        let Some(v) = st.version.take() else {
            return;
        };
        st.deadline = None;
        match self
            .client
            .put_if(layout::LEASE_PATH, self.body(0), Some(&v))
            .await
        {
            Ok(Some(_)) => {}
            Ok(None) => {
                warn!(replica = %self.client.location(), "the replica lease was not ours any more at release")
            }
            Err(e) => {
                warn!(replica = %self.client.location(), error = %e, "cannot release the replica lease; the next writer waits for it to expire")
            }
        }
    }
}

impl super::Replica {
    /// Makes sure this writer holds the replica's lease for a while more before it writes
    /// (see this module): renews it when due; fails with [`Error::InUse`] once another writer
    /// has it. No lease (off, or a backend without one): always fine.
    pub async fn ensure_lease(&self) -> Result<()> {
        let Some(l) = &self.lease else {
            return Ok(());
        };
        match l.ensure().await? {
            Ensure::Held => Ok(()),
            Ensure::LostNow(why) => {
                error!(db = %self.db.path().display(), replica = %self.opts.name, "{why}");
                self.emit(Event::LeaseLost {
                    db: self.db.path().to_path_buf(),
                    replica: self.opts.name.clone(),
                    message: why.clone(),
                });
                Err(Error::InUse(why))
            }
        }
    }

    /// Fails with [`Error::InUse`] when another live writer holds the replica's lease;
    /// writes nothing (the lease is taken at the first upload).
    pub async fn check_lease(&self) -> Result<()> {
        match &self.lease {
            Some(l) => l.check().await,
            None => Ok(()),
        }
    }

    /// Gives the replica lease up, so the next writer starts at once (a clean stop).
    pub async fn release_lease(&self) {
        if let Some(l) = &self.lease {
            l.release().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::file::FileClient;

    fn lease(root: &Path, db: &str, ttl_ms: u64) -> Lease {
        Lease::new(
            Arc::new(FileClient::new(root)),
            Duration::from_millis(ttl_ms),
            Path::new(db),
            true,
        )
    }

    async fn held(l: &Lease) -> bool {
        matches!(l.ensure().await, Ok(Ensure::Held))
    }

    #[tokio::test]
    async fn one_writer_at_a_time_then_takeover_after_the_ttl() {
        let dir = tempfile::tempdir().unwrap();
        let a = lease(dir.path(), "/data/a.db", 400);
        let b = lease(dir.path(), "/data/b.db", 400);
        assert!(held(&a).await);
        let err = b.ensure().await.err().expect("b is refused");
        assert!(
            matches!(&err, Error::InUse(m) if m.contains("/data/a.db") && m.contains(&format!("pid {}", std::process::id()))),
            "{err}"
        );
        // a stops renewing (paused); b takes over once the lease expired.
        tokio::time::sleep(Duration::from_millis(450)).await;
        assert!(held(&b).await);
        // a wakes up past its deadline: its renewal fails, and it stays lost.
        assert!(matches!(a.ensure().await, Ok(Ensure::LostNow(m)) if m.contains("/data/b.db")));
        assert!(matches!(a.ensure().await, Err(Error::InUse(_))));
        // b releases; a third writer starts at once.
        b.release().await;
        let c = lease(dir.path(), "/data/c.db", 400);
        assert!(held(&c).await);
    }

    #[tokio::test]
    async fn a_restart_of_the_same_writer_takes_over_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let before = lease(dir.path(), "/data/a.db", 60_000);
        assert!(held(&before).await);
        // The process died without releasing; the next run of the same database goes on.
        let after = lease(dir.path(), "/data/a.db", 60_000);
        assert!(held(&after).await);
        assert!(
            matches!(before.ensure().await, Ok(Ensure::Held)),
            "renewal not due yet"
        );
    }

    #[tokio::test]
    async fn renewals_happen_only_when_half_the_ttl_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let a = lease(dir.path(), "/data/a.db", 60_000);
        assert!(held(&a).await);
        let path = dir.path().join(layout::LEASE_PATH);
        let first = std::fs::read(&path).unwrap();
        assert!(held(&a).await);
        assert_eq!(std::fs::read(&path).unwrap(), first, "renewed too early");
    }
}
