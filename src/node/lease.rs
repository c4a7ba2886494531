//! The node's Lease in kube-node-lease: the heartbeat the node lifecycle
//! controller reads. Renewed every quarter of its duration (10 s of 40 s),
//! owned by the Node so it goes when the Node does.

use std::sync::Arc;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::sync::watch;

use crate::node::backoff::ApiBackoff;
use crate::node::config::NodeConfig;
use crate::node::registration::sleep_or_stop;

pub const NAMESPACE: &str = "kube-node-lease";

/// Renews the Lease until `stop` fires. Waits for the Node's UID first
/// (the owner reference needs it).
pub async fn run(
    client: Client,
    config: Arc<NodeConfig>,
    mut node_uid: watch::Receiver<Option<String>>,
    mut stop: watch::Receiver<bool>,
) {
    let leases: Api<Lease> = Api::namespaced(client, NAMESPACE);
    let mut backoff = ApiBackoff::default();
    loop {
        let uid = node_uid.borrow_and_update().clone();
        let delay = match uid {
            None => {
                tokio::select! {
                    _ = node_uid.changed() => continue,
                    _ = stop.changed() => return,
                }
            }
            Some(uid) => match renew(&leases, &config, &uid).await {
                Ok(()) => {
                    backoff = ApiBackoff::default();
                    config.lease_renew_interval()
                }
                Err(e) => {
                    let d = backoff.next_delay().min(config.lease_renew_interval());
                    tracing::warn!(error = %e, retry_in = ?d, "renewing the node lease");
                    d
                }
            },
        };
        if sleep_or_stop(delay, &mut stop).await {
            return;
        }
    }
}

async fn renew(
    leases: &Api<Lease>,
    config: &NodeConfig,
    node_uid: &str,
) -> Result<(), kube::Error> {
    let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
    let spec = LeaseSpec {
        holder_identity: Some(config.node_name.clone()),
        lease_duration_seconds: Some(config.lease_duration_seconds),
        renew_time: Some(now),
        ..Default::default()
    };
    let owner = OwnerReference {
        api_version: "v1".into(),
        kind: "Node".into(),
        name: config.node_name.clone(),
        uid: node_uid.to_string(),
        ..Default::default()
    };
    match leases.get_opt(&config.node_name).await? {
        Some(mut lease) => {
            let keep_owner = lease
                .metadata
                .owner_references
                .as_ref()
                .is_some_and(|o| o.iter().any(|r| r.uid == node_uid));
            if !keep_owner {
                lease.metadata.owner_references = Some(vec![owner]);
            }
            let old = lease.spec.take().unwrap_or_default();
            lease.spec = Some(LeaseSpec {
                acquire_time: old.acquire_time,
                lease_transitions: old.lease_transitions,
                ..spec
            });
            // resourceVersion is kept: a concurrent writer makes this a 409,
            // and the next round starts from a fresh read.
            leases
                .replace(&config.node_name, &PostParams::default(), &lease)
                .await?;
        }
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(config.node_name.clone()),
                    namespace: Some(NAMESPACE.into()),
                    owner_references: Some(vec![owner]),
                    ..Default::default()
                },
                spec: Some(spec),
            };
            leases.create(&PostParams::default(), &lease).await?;
        }
    }
    Ok(())
}
