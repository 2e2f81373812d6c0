//! From the resolved config to what the engine runs: a storage client for each replica
//! (age-encrypted where the config says so) and the options of each database and
//! replica. The defaults live in `config`; this is the one conversion.
use super::*;
use crate::config::LeaseConfig;

/// Builds the storage client for a replica target.
pub fn client_for(target: &ReplicaTarget) -> Result<Arc<dyn ReplicaClient>> {
    match target {
        ReplicaTarget::File { path } => Ok(Arc::new(FileClient::new(path.clone()))),
        ReplicaTarget::S3(c) => Ok(Arc::new(
            BucketClient::s3(c)?.with_operation_counter(metrics_counter()),
        )),
        ReplicaTarget::Http(c) => Ok(Arc::new(
            HttpClient::new(c)?.with_operation_counter(metrics_counter()),
        )),
        ReplicaTarget::Gcs { bucket, path } => Ok(Arc::new(
            BucketClient::gcs(bucket, path)?.with_operation_counter(metrics_counter()),
        )),
        ReplicaTarget::Abs {
            account_name,
            account_key,
            bucket,
            path,
            endpoint,
        } => Ok(Arc::new(
            BucketClient::azure(AzureTarget {
                account: account_name.as_deref(),
                key: account_key.as_ref(),
                container: bucket,
                path,
                endpoint: endpoint.as_deref(),
            })?
            .with_operation_counter(metrics_counter()),
        )),
        ReplicaTarget::Sftp {
            host,
            user,
            password,
            key_path,
            host_key,
            skip_host_key_check,
            path,
        } => Ok(Arc::new(
            SftpClient::new(SftpOptions {
                host: host.clone(),
                user: user.clone(),
                password: password.clone(),
                key_path: key_path.clone(),
                host_key: host_key.clone(),
                skip_host_key_check: *skip_host_key_check,
                path: path.clone(),
            })?
            .with_operation_counter(metrics_counter()),
        )),
        #[allow(unreachable_patterns)]
        other => Err(Error::Config(format!(
            "{} replicas are not supported by this walship build yet; use a file, s3, abs or \
             http replica",
            other.type_name()
        ))),
    }
}

/// Records a network backend's requests in the process's Prometheus metrics.
fn metrics_counter() -> crate::backend::OperationCounter {
    Arc::new(|replica_type, operation, bytes| {
        crate::metrics::global().operation(replica_type, operation, bytes)
    })
}

/// Builds the storage client for a configured replica: with `age:` keys, wrapped so that
/// what it writes is encrypted to the recipients and what it reads is decrypted with the
/// identities (Litestream v0.3.13's format).
pub fn replica_client(rc: &ReplicaConfig) -> Result<Arc<dyn ReplicaClient>> {
    let client = client_for(&rc.target)?;
    if !rc.age.is_enabled() {
        return Ok(client);
    }
    let age = AgeClient::new(client, &rc.age.recipients, &rc.age.identities)?;
    Ok(Arc::new(age))
}

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
    }
}

/// The storage clients and options of a database's replicas.
pub(super) fn replicas_for(
    dbc: &DbConfig,
) -> Result<Vec<(Arc<dyn ReplicaClient>, ReplicaOptions)>> {
    let mut replicas = Vec::new();
    for rc in &dbc.replicas {
        let client = replica_client(rc).map_err(|err| {
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
