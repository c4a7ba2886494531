//! Unpacking layers into snapshots: one committed snapshot per layer, named
//! by its chain id, so containerd's own tools and CRI plugin share them.

use containerd_client::services::v1::ApplyRequest;
use containerd_client::services::v1::snapshots::{
    CommitSnapshotRequest, PrepareSnapshotRequest, RemoveSnapshotRequest, StatSnapshotRequest,
};
use containerd_client::types::Descriptor;
use sha2::{Digest as _, Sha256};

use super::error::ImageError;
use crate::runtime::containerd::{Containerd, Lease};

/// The layer chain ids: `chain[0] = diff[0]`, `chain[n] = sha256(chain[n-1] + " " + diff[n])`.
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut chain: Vec<String> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let next = match chain.last() {
            None => diff_id.clone(),
            Some(parent) => format!(
                "sha256:{}",
                hex::encode(Sha256::digest(format!("{parent} {diff_id}").as_bytes()))
            ),
        };
        chain.push(next);
    }
    chain
}

pub struct Layer {
    pub descriptor: Descriptor,
    pub diff_id: String,
}

/// Applies each layer onto its parent snapshot unless the chain exists already.
/// Returns the top chain id.
pub async fn unpack(
    cd: &Containerd,
    lease: &Lease,
    snapshotter: &str,
    layers: &[Layer],
) -> Result<String, ImageError> {
    let diff_ids: Vec<String> = layers.iter().map(|l| l.diff_id.clone()).collect();
    let chain = chain_ids(&diff_ids);
    let mut parent = String::new();
    for (layer, chain_id) in layers.iter().zip(&chain) {
        if !snapshot_exists(cd, snapshotter, chain_id).await? {
            apply_layer(cd, lease, snapshotter, layer, &parent, chain_id).await?;
        }
        parent = chain_id.clone();
    }
    Ok(parent)
}

async fn snapshot_exists(
    cd: &Containerd,
    snapshotter: &str,
    key: &str,
) -> Result<bool, ImageError> {
    let request = cd.request(StatSnapshotRequest {
        snapshotter: snapshotter.to_string(),
        key: key.to_string(),
    });
    match cd.snapshots().stat(request).await {
        Ok(_) => Ok(true),
        Err(status) if status.code() == tonic::Code::NotFound => Ok(false),
        Err(status) => Err(ImageError::containerd(
            format!("snapshot stat {key}"),
            status,
        )),
    }
}

async fn apply_layer(
    cd: &Containerd,
    lease: &Lease,
    snapshotter: &str,
    layer: &Layer,
    parent: &str,
    chain_id: &str,
) -> Result<(), ImageError> {
    let key = format!(
        "extract-{}-{chain_id}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    );
    let prepare = cd.request_in(
        PrepareSnapshotRequest {
            snapshotter: snapshotter.to_string(),
            key: key.clone(),
            parent: parent.to_string(),
            labels: Default::default(),
        },
        Some(lease),
    );
    let mounts = cd
        .snapshots()
        .prepare(prepare)
        .await
        .map_err(|s| {
            ImageError::containerd(
                format!("preparing snapshot for layer {}", layer.descriptor.digest),
                s,
            )
        })?
        .into_inner()
        .mounts;
    let result = apply_and_commit(cd, lease, snapshotter, layer, mounts, &key, chain_id).await;
    if result.is_err() {
        let remove = cd.request(RemoveSnapshotRequest {
            snapshotter: snapshotter.to_string(),
            key: key.clone(),
        });
        if let Err(status) = cd.snapshots().remove(remove).await {
            tracing::warn!(%key, %status, "removing snapshot of a failed unpack");
        }
    }
    result
}

async fn apply_and_commit(
    cd: &Containerd,
    lease: &Lease,
    snapshotter: &str,
    layer: &Layer,
    mounts: Vec<containerd_client::types::Mount>,
    key: &str,
    chain_id: &str,
) -> Result<(), ImageError> {
    let digest = &layer.descriptor.digest;
    let applied = cd
        .diff()
        .apply(cd.request_in(
            ApplyRequest {
                diff: Some(layer.descriptor.clone()),
                mounts,
                payloads: Default::default(),
                sync_fs: false,
            },
            Some(lease),
        ))
        .await
        .map_err(|s| ImageError::containerd(format!("applying layer {digest}"), s))?
        .into_inner()
        .applied
        .map(|d| d.digest)
        .unwrap_or_default();
    if applied != layer.diff_id {
        return Err(ImageError::new(
            super::error::ErrorKind::Unavailable,
            format!(
                "layer {digest} unpacks to {applied}, but the image config says {}",
                layer.diff_id
            ),
        ));
    }
    let commit = cd.request_in(
        CommitSnapshotRequest {
            snapshotter: snapshotter.to_string(),
            name: chain_id.to_string(),
            key: key.to_string(),
            labels: Default::default(),
        },
        Some(lease),
    );
    match cd.snapshots().commit(commit).await {
        Ok(_) => Ok(()),
        // A concurrent unpack committed the same layer first: ours is redundant.
        Err(status) if status.code() == tonic::Code::AlreadyExists => {
            let remove = cd.request(RemoveSnapshotRequest {
                snapshotter: snapshotter.to_string(),
                key: key.to_string(),
            });
            let _ = cd.snapshots().remove(remove).await;
            Ok(())
        }
        Err(status) => Err(ImageError::containerd(
            format!("committing layer {digest}"),
            status,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_match_the_oci_definition() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        let chain = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(chain[0], a);
        let expected = format!("sha256:{}", hex::encode(Sha256::digest(format!("{a} {b}"))));
        assert_eq!(chain[1], expected);
    }
}
