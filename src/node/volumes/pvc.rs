//! persistentVolumeClaim volumes: the claim must be Bound, and its
//! PersistentVolume a hostPath or local one (the path is mounted as is);
//! every other PV type needs an attach/mount plugin deckhand does not have.

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimVolumeSource,
};
use kube::Client;
use kube::api::Api;

use super::{Mounted, VolumeError, blocking, host_path};

const CALL_TIMEOUT: Duration = Duration::from_secs(10);

async fn get<K>(api: Api<K>, kind: &'static str, name: &str) -> Result<K, VolumeError>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match tokio::time::timeout(CALL_TIMEOUT, api.get_opt(name)).await {
        Err(_) => Err(VolumeError::Lookup(format!(
            "getting {kind} {name:?} timed out"
        ))),
        Ok(Err(e)) => Err(VolumeError::Lookup(format!("getting {kind} {name:?}: {e}"))),
        Ok(Ok(None)) => Err(VolumeError::NotFound {
            kind,
            name: name.into(),
        }),
        Ok(Ok(Some(o))) => Ok(o),
    }
}

/// The host path of a PV, or why it has none we can mount.
pub fn pv_path(pv: &PersistentVolume) -> Result<(PathBuf, Option<String>), VolumeError> {
    let name = pv.metadata.name.clone().unwrap_or_default();
    let spec = pv.spec.as_ref();
    if let Some(h) = spec.and_then(|s| s.host_path.as_ref()) {
        return Ok((PathBuf::from(&h.path), h.type_.clone()));
    }
    if let Some(l) = spec.and_then(|s| s.local.as_ref()) {
        return Ok((PathBuf::from(&l.path), None));
    }
    Err(VolumeError::Unsupported(format!(
        "persistentvolume \"{name}\" is neither hostPath nor local: deckhand mounts only those"
    )))
}

pub async fn setup(
    client: &Client,
    namespace: &str,
    source: &PersistentVolumeClaimVolumeSource,
) -> Result<Mounted, VolumeError> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let claim = get(claims, "persistentvolumeclaim", &source.claim_name).await?;
    let phase = claim.status.as_ref().and_then(|s| s.phase.as_deref());
    let volume = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .filter(|v| !v.is_empty());
    let (Some("Bound"), Some(volume)) = (phase, volume) else {
        return Err(VolumeError::Unsupported(format!(
            "persistentvolumeclaim \"{}\" is not bound",
            source.claim_name
        )));
    };
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let pv = get(pvs, "persistentvolume", &volume).await?;
    let (path, type_) = pv_path(&pv)?;
    let p = path.clone();
    blocking(move || Ok(host_path::check_type(&p, type_.as_deref())?)).await?;
    Ok(Mounted {
        path,
        read_only: source.read_only.unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_path_and_local_pvs_have_a_path_others_are_refused() {
        let pv = |spec: serde_json::Value| -> PersistentVolume {
            serde_json::from_value(serde_json::json!({"metadata": {"name": "pv"}, "spec": spec}))
                .unwrap()
        };
        let (p, t) = pv_path(&pv(
            serde_json::json!({"hostPath": {"path": "/data", "type": "Directory"}}),
        ))
        .unwrap();
        assert_eq!(
            (p, t.as_deref()),
            (PathBuf::from("/data"), Some("Directory"))
        );
        let (p, _) = pv_path(&pv(serde_json::json!({"local": {"path": "/mnt/disk"}}))).unwrap();
        assert_eq!(p, PathBuf::from("/mnt/disk"));
        let e = pv_path(&pv(
            serde_json::json!({"nfs": {"server": "s", "path": "/x"}}),
        ))
        .unwrap_err();
        assert!(e.to_string().contains("neither hostPath nor local"), "{e}");
    }
}
