//! Stopping a pod: every container with its grace period (the runtime sends
//! SIGTERM, or the image's StopSignal, then SIGKILL), then the sandbox; and
//! removing what is left once the pod is gone.

use futures::future::join_all;
use k8s_openapi::api::core::v1::Pod;

use crate::cri::api::v1;
use crate::node::pods::PodContext;
use crate::node::pods::observe::{CRI_CALL_TIMEOUT, Observed, container_name, is_ready};
use crate::node::{lifecycle, sidecars};

/// The kubelet never gives a container less than this to stop.
const MIN_GRACE_SECONDS: i64 = 2;

/// The grace period for stopping `pod` now: the deletion's, else the spec's.
pub fn grace_seconds(pod: Option<&Pod>) -> i64 {
    let grace = pod
        .and_then(|p| {
            p.metadata.deletion_grace_period_seconds.or_else(|| {
                p.spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds)
            })
        })
        .unwrap_or(30);
    grace.max(MIN_GRACE_SECONDS)
}

/// Stops the given containers at once, each with `grace` seconds.
pub async fn stop_containers(
    ctx: &PodContext,
    pod: Option<&Pod>,
    containers: &[(&str, &str)],
    grace: i64,
) {
    let plain: Vec<(&str, &str, Option<&str>)> = containers
        .iter()
        .map(|(id, name)| (*id, *name, None))
        .collect();
    stop_containers_because(ctx, pod, &plain, grace).await;
}

/// [`stop_containers`], each (id, name, message) with the Killing event's
/// message when it is not the default "Stopping container NAME".
pub async fn stop_containers_because(
    ctx: &PodContext,
    pod: Option<&Pod>,
    containers: &[(&str, &str, Option<&str>)],
    grace: i64,
) {
    // The Killing event, the preStop hook and the stop: lifecycle.rs.
    let stops = containers.iter().map(|(id, name, message)| {
        let message = message.map_or_else(|| format!("Stopping container {name}"), str::to_string);
        lifecycle::stop_container(ctx, pod, id, name, grace, message)
    });
    join_all(stops).await;
}

/// Stops every running container of the pod, then its sandboxes.
pub async fn kill_pod(ctx: &PodContext, pod: Option<&Pod>, observed: &Observed, grace: i64) {
    let running: Vec<(&str, &str)> = observed
        .running()
        .map(|c| (c.id.as_str(), container_name(c)))
        .collect();
    // Sidecars stop after the other containers, in reverse order, each
    // with what is left of the grace period.
    let begun = std::time::Instant::now();
    for wave in sidecars::stop_waves(pod, &running) {
        let left = grace - begun.elapsed().as_secs() as i64;
        stop_containers(ctx, pod, &wave, left.max(MIN_GRACE_SECONDS)).await;
    }
    for s in observed.sandboxes.iter().filter(|s| is_ready(s)) {
        let call = ctx.runtime.stop_pod_sandbox(v1::StopPodSandboxRequest {
            pod_sandbox_id: s.id.clone(),
        });
        match tokio::time::timeout(CRI_CALL_TIMEOUT, call).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) if e.is_not_found() => {}
            Ok(Err(e)) => tracing::warn!(sandbox = %s.id, error = %e, "stopping a sandbox"),
            Err(_) => tracing::warn!(sandbox = %s.id, "stopping a sandbox timed out"),
        }
    }
}

/// Removes every container and sandbox of the pod (all stopped already).
pub async fn remove_pod(ctx: &PodContext, observed: &Observed) -> bool {
    let mut clean = true;
    for c in &observed.containers {
        clean &= remove_container(ctx, &c.id).await;
    }
    for s in &observed.sandboxes {
        let call = ctx.runtime.remove_pod_sandbox(v1::RemovePodSandboxRequest {
            pod_sandbox_id: s.id.clone(),
        });
        match tokio::time::timeout(CRI_CALL_TIMEOUT, call).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) if e.is_not_found() => {}
            Ok(Err(e)) => {
                clean = false;
                tracing::warn!(sandbox = %s.id, error = %e, "removing a sandbox");
            }
            Err(_) => {
                clean = false;
                tracing::warn!(sandbox = %s.id, "removing a sandbox timed out");
            }
        }
    }
    clean
}

pub async fn remove_container(ctx: &PodContext, id: &str) -> bool {
    let call = ctx.runtime.remove_container(v1::RemoveContainerRequest {
        container_id: id.to_string(),
    });
    match tokio::time::timeout(CRI_CALL_TIMEOUT, call).await {
        Ok(Ok(_)) => true,
        Ok(Err(e)) if e.is_not_found() => true,
        Ok(Err(e)) => {
            tracing::warn!(container = %id, error = %e, "removing a container");
            false
        }
        Err(_) => {
            tracing::warn!(container = %id, "removing a container timed out");
            false
        }
    }
}
