//! From the resolved config to what the engine runs: a storage client for each replica
//! (opened by [`ReplicaConfig::open`], counting its requests in the metrics) and the
//! options of each database and replica. The defaults live in `config`; this is the one
//! conversion.
use super::*;
use crate::config::LeaseConfig;

/// Database options from a `dbs:` entry.
pub fn db_options(c: &DbConfig) -> DbOptions {
    DbOptions {
        path: c.path.clone(),
        meta_path: c.meta_path.clone(),
        monitor_interval: c.monitor_interval,
        checkpoint_interval: c.checkpoint_interval,
        min_checkpoint_page_count: c.min_checkpoint_page_count,
        max_checkpoint_page_count: c.max_checkpoint_page_count,
    }
}

/// Replica options from a `replicas:` entry: the one conversion from the resolved config
/// (which owns the defaults) to what a [`Replica`] takes.
pub fn replica_options(rc: &ReplicaConfig) -> ReplicaOptions {
    ReplicaOptions {
        name: rc.name.clone(),
        sync_interval: rc.sync_interval,
        snapshot_interval: rc.snapshot_interval,
        retention: rc.retention,
        retention_check_interval: rc.retention_check_interval,
        validation_interval: rc.validation_interval,
        lease_ttl: match rc.lease {
            LeaseConfig::Default => Some(crate::config::DEFAULT_LEASE_TTL),
            LeaseConfig::Off => None,
            LeaseConfig::Ttl(ttl) => Some(ttl),
        },
        lease_required: matches!(rc.lease, LeaseConfig::Ttl(_)),
    }
}

/// The storage clients and options of a database's replicas.
pub(super) fn replicas_for(
    dbc: &DbConfig,
) -> Result<Vec<(Arc<dyn ReplicaClient>, ReplicaOptions)>> {
    let mut replicas = Vec::new();
    for rc in &dbc.replicas {
        let client = rc
            .open(Some(crate::metrics::operation_counter()))
            .map_err(|err| {
                Error::Config(format!(
                    "db {}: replica {:?}: {err}",
                    dbc.path.display(),
                    rc.name
                ))
            })?;
        if matches!(rc.lease, LeaseConfig::Ttl(_)) && !client.conditional_writes() {
            return Err(Error::Config(format!(
                "db {}: replica {:?}: lease: the {} backend cannot hold a replica lease (it \
                 has no conditional writes), so it cannot fence a second writer; remove lease: \
                 or write lease: off",
                dbc.path.display(),
                rc.name,
                client.type_name()
            )));
        }
        replicas.push((client, replica_options(rc)));
    }
    Ok(replicas)
}
