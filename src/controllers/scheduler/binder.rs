//! The scheduler's writes: the binding, the Scheduled and FailedScheduling
//! events, and the PodScheduled=False condition of a pod that fits nowhere.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::node::events::EventRecorder;

/// A call that takes longer than this is abandoned (and retried).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("binding {pod} to {node}: {source}")]
    Api {
        pod: String,
        node: String,
        #[source]
        source: kube::Error,
    },
    #[error("binding {pod} to {node}: no answer within {CALL_TIMEOUT:?}")]
    Timeout { pod: String, node: String },
}

impl BindError {
    /// The pod is already bound or being deleted: nothing to retry.
    pub fn is_conflict(&self) -> bool {
        matches!(self, BindError::Api { source: kube::Error::Api(s), .. } if s.code == 409 || s.code == 404)
    }
}

fn key(pod: &Pod) -> (String, String) {
    (
        pod.metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into()),
        pod.metadata.name.clone().unwrap_or_default(),
    )
}

pub async fn bind(client: &kube::Client, pod: &Pod, node: &str) -> Result<(), BindError> {
    let (ns, name) = key(pod);
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let binding = json!({
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": name, "namespace": ns, "uid": pod.metadata.uid},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    });
    let pp = PostParams::default();
    let call = api.create_subresource::<_, serde_json::Value>("binding", &name, &pp, &binding);
    let id = format!("{ns}/{name}");
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(source)) => Err(BindError::Api {
            pod: id,
            node: node.into(),
            source,
        }),
        Err(_) => Err(BindError::Timeout {
            pod: id,
            node: node.into(),
        }),
    }
}

pub fn scheduled_event(events: &EventRecorder, pod: &Pod, node: &str) {
    let (ns, name) = key(pod);
    events.pod_event(
        pod,
        None,
        "Normal",
        "Scheduled",
        format!("Successfully assigned {ns}/{name} to {node}"),
    );
}

/// The event and the condition kube-scheduler leaves on a pod that fits
/// nowhere. The condition is patched only when its message changes.
pub async fn unschedulable(
    client: &kube::Client,
    events: &EventRecorder,
    pod: &Pod,
    message: &str,
) {
    events.pod_event(
        pod,
        None,
        "Warning",
        "FailedScheduling",
        message.to_string(),
    );
    let current = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"));
    if current.is_some_and(|c| {
        c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
            && c.message.as_deref() == Some(message)
    }) {
        return;
    }
    let (ns, name) = key(pod);
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let now =
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now());
    let patch = json!({"status": {"conditions": [{
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": message,
        "lastProbeTime": null,
        "lastTransitionTime": now,
    }]}});
    let (pp, patch) = (PatchParams::default(), Patch::Strategic(&patch));
    let call = api.patch_status(&name, &pp, &patch);
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(Ok(_)) => {}
        Ok(Err(err)) => {
            tracing::warn!(pod = %format!("{ns}/{name}"), error = %err, "setting PodScheduled=False")
        }
        Err(_) => {
            tracing::warn!(pod = %format!("{ns}/{name}"), "setting PodScheduled=False: timed out")
        }
    }
}
