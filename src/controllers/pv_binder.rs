//! A small PersistentVolume binder (kube-controller-manager's
//! persistentvolume-binder, static provisioning only): an unbound claim
//! binds to the Available volume it names (spec.volumeName) or to the
//! smallest Available one with its storageClassName, its access modes and
//! enough capacity; both become Bound, the volume's claimRef and the
//! claim's volumeName point at each other. A volume whose claim is gone is
//! Released. A change to either kind triggers a pass; it also resyncs
//! every 15 s, as kcm's binder does.

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use tokio::time::Instant;

use super::watch_item;

use crate::k8s::quantity::parse_units;

const RESYNC: Duration = Duration::from_secs(15);
const DEBOUNCE: Duration = Duration::from_millis(100);
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

async fn call<T>(what: &str, f: impl Future<Output = Result<T, kube::Error>>) -> Option<T> {
    match tokio::time::timeout(CALL_TIMEOUT, f).await {
        Ok(Ok(v)) => Some(v),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "pv binder: {what}");
            None
        }
        Err(_) => {
            tracing::warn!("pv binder: {what} timed out");
            None
        }
    }
}

fn class_of_pv(pv: &PersistentVolume) -> &str {
    pv.spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        .unwrap_or("")
}

fn class_of_claim(c: &PersistentVolumeClaim) -> &str {
    c.spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        .unwrap_or("")
}

fn capacity(pv: &PersistentVolume) -> Option<i128> {
    let q = pv.spec.as_ref()?.capacity.as_ref()?.get("storage")?;
    parse_units(&q.0)
}

fn request(c: &PersistentVolumeClaim) -> Option<i128> {
    let q = c
        .spec
        .as_ref()?
        .resources
        .as_ref()?
        .requests
        .as_ref()?
        .get("storage")?;
    parse_units(&q.0)
}

fn phase_of_pv(pv: &PersistentVolume) -> &str {
    pv.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn claim_ref_matches(pv: &PersistentVolume, c: &PersistentVolumeClaim) -> bool {
    let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return true;
    };
    r.name.as_deref() == c.metadata.name.as_deref()
        && r.namespace.as_deref() == c.metadata.namespace.as_deref()
        && r.uid
            .as_deref()
            .is_none_or(|u| Some(u) == c.metadata.uid.as_deref())
}

/// Whether `pv` can serve claim `c` (findMatchingVolume's checks).
pub fn fits(pv: &PersistentVolume, c: &PersistentVolumeClaim) -> bool {
    let (Some(spec), Some(cspec)) = (pv.spec.as_ref(), c.spec.as_ref()) else {
        return false;
    };
    if pv.metadata.deletion_timestamp.is_some() || !claim_ref_matches(pv, c) {
        return false;
    }
    if !matches!(phase_of_pv(pv), "Available" | "Pending" | "") && spec.claim_ref.is_none() {
        return false;
    }
    if class_of_pv(pv) != class_of_claim(c) {
        return false;
    }
    let pv_mode = spec.volume_mode.as_deref().unwrap_or("Filesystem");
    if cspec.volume_mode.as_deref().unwrap_or("Filesystem") != pv_mode {
        return false;
    }
    let modes = spec.access_modes.as_deref().unwrap_or(&[]);
    if !cspec
        .access_modes
        .iter()
        .flatten()
        .all(|m| modes.contains(m))
    {
        return false;
    }
    if let Some(labels) = cspec
        .selector
        .as_ref()
        .and_then(|s| s.match_labels.as_ref())
    {
        let have = pv.metadata.labels.clone().unwrap_or_default();
        if labels.iter().any(|(k, v)| have.get(k) != Some(v)) {
            return false;
        }
    }
    matches!((capacity(pv), request(c)), (Some(have), Some(want)) if have >= want)
}

/// The volume claim `c` binds to: the one it names, else the smallest fit.
pub fn choose<'a>(
    pvs: &'a [PersistentVolume],
    c: &PersistentVolumeClaim,
) -> Option<&'a PersistentVolume> {
    let named = c
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .filter(|n| !n.is_empty());
    if let Some(name) = named {
        return pvs
            .iter()
            .find(|pv| pv.metadata.name.as_deref() == Some(name) && claim_ref_matches(pv, c));
    }
    pvs.iter()
        .filter(|pv| fits(pv, c))
        // A volume pre-bound to this claim first, then the smallest.
        .min_by_key(|pv| {
            let pre = pv
                .spec
                .as_ref()
                .and_then(|s| s.claim_ref.as_ref())
                .is_some();
            (!pre, capacity(pv).unwrap_or(i128::MAX))
        })
}

/// Binds on every change to a volume or a claim (the watches are only the
/// trigger: each pass relists, so a pass never acts on a volume a cache has
/// not yet seen bound), and resyncs every RESYNC as kcm's binder does. A
/// pass runs DEBOUNCE after the first change it answers, so a burst of
/// events (a pass's own writes, an apply of many objects) makes one pass and
/// a steady stream of them cannot put it off.
pub async fn run(client: kube::Client, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let config = watcher::Config::default;
    let volume_events =
        watcher(Api::<PersistentVolume>::all(client.clone()), config()).default_backoff();
    let claim_events =
        watcher(Api::<PersistentVolumeClaim>::all(client.clone()), config()).default_backoff();
    let mut volume_events = pin!(volume_events);
    let mut claim_events = pin!(claim_events);
    let mut shutdown = pin!(shutdown);
    let mut resync = tokio::time::interval(RESYNC);
    let mut due: Option<Instant> = None;
    loop {
        let pass_due = async {
            match due {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            item = volume_events.next() => {
                if watch_item(item, "volumes")?.is_some() {
                    due.get_or_insert_with(|| Instant::now() + DEBOUNCE);
                }
            }
            item = claim_events.next() => {
                if watch_item(item, "claims")?.is_some() {
                    due.get_or_insert_with(|| Instant::now() + DEBOUNCE);
                }
            }
            _ = resync.tick() => {
                due.get_or_insert_with(Instant::now);
            }
            _ = pass_due => {
                due = None;
                sync(&client).await;
            }
        }
    }
}

/// One pass over every claim and volume.
pub async fn sync(client: &kube::Client) {
    let pv_api: Api<PersistentVolume> = Api::all(client.clone());
    let claim_api: Api<PersistentVolumeClaim> = Api::all(client.clone());
    let lp = ListParams::default();
    let (Some(pvs), Some(claims)) = (
        call("listing volumes", pv_api.list(&lp)).await,
        call("listing claims", claim_api.list(&lp)).await,
    ) else {
        return;
    };
    let mut pvs = pvs.items;
    let claims = claims.items;
    for c in &claims {
        let bound = c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
        if bound || c.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let Some(pv) = choose(&pvs, c).cloned() else {
            continue;
        };
        if bind(client, &pv, c).await {
            // Taken: not offered to the next claim of this pass.
            pvs.retain(|p| p.metadata.name != pv.metadata.name);
        }
    }
    for pv in &pvs {
        let name = pv.metadata.name.clone().unwrap_or_default();
        let claim_ref = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
        let phase = phase_of_pv(pv);
        let want = match claim_ref {
            None => "Available",
            Some(r) => {
                let exists = claims.iter().any(|c| {
                    c.metadata.name == r.name
                        && c.metadata.namespace == r.namespace
                        && (r.uid.is_none() || c.metadata.uid == r.uid)
                });
                match (exists, phase) {
                    (false, "Bound") => "Released",
                    (_, p) => {
                        if p.is_empty() {
                            "Available"
                        } else {
                            continue;
                        }
                    }
                }
            }
        };
        if phase != want {
            let body = json!({"status": {"phase": want}});
            call(
                "setting a volume's phase",
                pv_api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&body)),
            )
            .await;
        }
    }
}

/// Binds volume and claim both ways; true when both writes went through.
async fn bind(client: &kube::Client, pv: &PersistentVolume, c: &PersistentVolumeClaim) -> bool {
    let pv_name = pv.metadata.name.clone().unwrap_or_default();
    let ns = c.metadata.namespace.clone().unwrap_or_default();
    let claim_name = c.metadata.name.clone().unwrap_or_default();
    let pv_api: Api<PersistentVolume> = Api::all(client.clone());
    let claim_api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    let pp = PatchParams::default();
    let claim_ref = json!({"spec": {"claimRef": {
        "kind": "PersistentVolumeClaim", "apiVersion": "v1", "namespace": ns,
        "name": claim_name, "uid": c.metadata.uid, "resourceVersion": c.metadata.resource_version}}});
    if call(
        "binding a volume",
        pv_api.patch(&pv_name, &pp, &Patch::Merge(&claim_ref)),
    )
    .await
    .is_none()
    {
        return false;
    }
    let bound = json!({"status": {"phase": "Bound"}});
    call(
        "marking a volume Bound",
        pv_api.patch_status(&pv_name, &pp, &Patch::Merge(&bound)),
    )
    .await;
    let claim = json!({"metadata": {"annotations": {
            "pv.kubernetes.io/bind-completed": "yes",
            "pv.kubernetes.io/bound-by-controller": "yes"}},
        "spec": {"volumeName": pv_name}});
    if call(
        "binding a claim",
        claim_api.patch(&claim_name, &pp, &Patch::Merge(&claim)),
    )
    .await
    .is_none()
    {
        return false;
    }
    let spec = pv.spec.clone().unwrap_or_default();
    let status = json!({"status": {"phase": "Bound",
        "accessModes": spec.access_modes, "capacity": spec.capacity}});
    let ok = call(
        "marking a claim Bound",
        claim_api.patch_status(&claim_name, &pp, &Patch::Merge(&status)),
    )
    .await
    .is_some();
    if ok {
        tracing::info!(claim = %format!("{ns}/{claim_name}"), volume = %pv_name, "bound");
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pv(name: &str, size: &str, class: &str, modes: &[&str]) -> PersistentVolume {
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": {
            "capacity": {"storage": size}, "storageClassName": class,
            "accessModes": modes, "hostPath": {"path": "/tmp"}},
            "status": {"phase": "Available"}}))
        .unwrap()
    }

    fn claim(
        size: &str,
        class: &str,
        modes: &[&str],
        volume: Option<&str>,
    ) -> PersistentVolumeClaim {
        serde_json::from_value(
            json!({"metadata": {"name": "c", "namespace": "default", "uid": "u1"},
            "spec": {"storageClassName": class, "accessModes": modes, "volumeName": volume,
                "resources": {"requests": {"storage": size}}}}),
        )
        .unwrap()
    }

    #[test]
    fn chooses_the_smallest_volume_that_fits() {
        let pvs = vec![
            pv("big", "10Gi", "manual", &["ReadWriteOnce"]),
            pv("small", "1Gi", "manual", &["ReadWriteOnce"]),
            pv("tiny", "100Mi", "manual", &["ReadWriteOnce"]),
            pv("other-class", "1Gi", "fast", &["ReadWriteOnce"]),
            pv("rox", "1Gi", "manual", &["ReadOnlyMany"]),
        ];
        let c = claim("500Mi", "manual", &["ReadWriteOnce"], None);
        assert_eq!(
            choose(&pvs, &c).unwrap().metadata.name.as_deref(),
            Some("small")
        );
        let c = claim("50Gi", "manual", &["ReadWriteOnce"], None);
        assert!(choose(&pvs, &c).is_none());
        let c = claim("1Gi", "manual", &["ReadWriteMany"], None);
        assert!(choose(&pvs, &c).is_none());
        let c = claim("1Mi", "", &["ReadWriteOnce"], Some("big"));
        assert_eq!(
            choose(&pvs, &c).unwrap().metadata.name.as_deref(),
            Some("big")
        );
        // Bound to another claim: not offered.
        let mut taken = pv("taken", "1Gi", "manual", &["ReadWriteOnce"]);
        taken.spec.as_mut().unwrap().claim_ref = Some(Default::default());
        taken
            .spec
            .as_mut()
            .unwrap()
            .claim_ref
            .as_mut()
            .unwrap()
            .name = Some("x".into());
        let c = claim("1Gi", "manual", &["ReadWriteOnce"], None);
        assert!(!fits(&taken, &c));
    }
}
