//! The body of the pod status PATCH the kubelet's status manager sends
//! (util/pod.PatchPodStatus).

use k8s_openapi::api::core::v1::{Pod, PodStatus};

/// None when `new` equals `old`; else a strategic merge patch `{"status":{...}}` for
/// pods/<name>/status. `PodStatus` has no uid: add the precondition with
/// [`with_uid_precondition`], or use [`pod_status_patch`] which does both.
pub fn status_patch(old: &PodStatus, new: &PodStatus) -> Option<serde_json::Value> {
    if old == new {
        return None;
    }
    Some(serde_json::json!({ "status": new }))
}

/// Adds the kubelet's `{"metadata":{"uid":...}}` precondition to a status patch, so it
/// fails (409) when the pod was replaced by one of the same name.
pub fn with_uid_precondition(mut patch: serde_json::Value, uid: &str) -> serde_json::Value {
    if let Some(obj) = patch.as_object_mut() {
        obj.insert("metadata".into(), serde_json::json!({ "uid": uid }));
    }
    patch
}

/// The patch from `pod.status` (the API's) to `new`, with the uid precondition;
/// None when unchanged.
pub fn pod_status_patch(pod: &Pod, new: &PodStatus) -> Option<serde_json::Value> {
    let old = pod.status.clone().unwrap_or_default();
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    status_patch(&old, new).map(|p| with_uid_precondition(p, uid))
}
