//! Container lifecycle hooks (the kubelet's handler runner): postStart
//! right after StartContainer, before the container counts as started;
//! preStop before StopContainer, inside the termination grace period; and
//! stopping a container with its preStop hook, which every stop goes through.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Pod};

use crate::cri::api::v1;
use crate::node::events::container_field_path;
use crate::node::pods::PodContext;
use crate::node::pods::start::find_container;
use crate::node::probes::{Outcome, exec, http};
use crate::node::status::events as reasons;

/// The waiting reason of a container whose postStart hook failed.
pub const POST_START_HOOK_ERROR: &str = "PostStartHookError";
/// The kubelet never gives a container less than this to stop.
pub const MIN_GRACE_SECONDS: i64 = 2;
/// The kubelet sets no limit on postStart; ours keeps a stuck hook from
/// holding the pod worker for ever.
const POST_START_LIMIT: Duration = Duration::from_secs(300);
/// Beyond the grace period, how long a StopContainer call may take.
const STOP_SLACK: Duration = Duration::from_secs(30);

/// Runs one hook handler against the container, within `limit`.
pub async fn run_handler(
    ctx: &PodContext,
    handler: &LifecycleHandler,
    container: &Container,
    container_id: &str,
    pod_ip: &str,
    limit: Duration,
) -> Result<(), String> {
    if let Some(e) = &handler.exec {
        let cmd = e.command.clone().unwrap_or_default();
        // ExecSync with no timeout of its own: the hook's limit is ours.
        return match exec::run(
            ctx.runtime.as_ref(),
            container_id,
            &cmd,
            Duration::ZERO,
            limit,
        )
        .await
        {
            Outcome::Success => Ok(()),
            Outcome::Failure(m) => Err(format!("Exec lifecycle hook ({cmd:?}) failed: {m}")),
        };
    }
    if let Some(h) = &handler.http_get {
        let ports = container.ports.clone().unwrap_or_default();
        let req = http::request(h, pod_ip, &ports)?;
        let client = http::client()?;
        return match http::probe(&client, &req, limit).await {
            Outcome::Success => Ok(()),
            Outcome::Failure(m) => Err(format!("HTTP lifecycle hook ({}) failed: {m}", req.url)),
        };
    }
    if let Some(s) = &handler.sleep {
        let d = Duration::from_secs(s.seconds.max(0) as u64);
        // A sleep cut by the limit is not a failure (kubelet: the grace
        // period ends it).
        let _ = tokio::time::timeout(limit, tokio::time::sleep(d)).await;
        return Ok(());
    }
    if handler.tcp_socket.is_some() {
        // Deprecated and a no-op in the kubelet, kept for old manifests.
        return Ok(());
    }
    Err("lifecycle hook has no handler (exec, httpGet or sleep)".into())
}

/// The postStart hook, if the container has one; on failure the container
/// is killed (FailedPostStartHook) and Err is its waiting message.
pub async fn post_start(
    ctx: &PodContext,
    pod: &Pod,
    container: &Container,
    container_id: &str,
    pod_ips: &[String],
) -> Result<(), String> {
    let Some(handler) = container
        .lifecycle
        .as_ref()
        .and_then(|l| l.post_start.as_ref())
    else {
        return Ok(());
    };
    let pod_ip = pod_ips.first().map(String::as_str).unwrap_or("");
    let Err(message) = run_handler(
        ctx,
        handler,
        container,
        container_id,
        pod_ip,
        POST_START_LIMIT,
    )
    .await
    else {
        return Ok(());
    };
    let field = Some(container_field_path(pod, &container.name));
    ctx.events.pod_event(
        pod,
        field,
        reasons::WARNING,
        reasons::FAILED_POST_START_HOOK,
        message.clone(),
    );
    stop_container(
        ctx,
        Some(pod),
        container_id,
        &container.name,
        crate::node::pods::kill::grace_seconds(Some(pod)),
        format!(
            "FailedPostStartHook: container {} will be killed",
            container.name
        ),
    )
    .await;
    Err(message)
}

/// Stops one container: a `Killing` event with `message`, its preStop hook
/// (cut at the grace period), then StopContainer with what is left of the
/// grace period (at least 2 s, as the kubelet).
pub async fn stop_container(
    ctx: &PodContext,
    pod: Option<&Pod>,
    id: &str,
    name: &str,
    grace: i64,
    message: String,
) {
    let grace = grace.max(0);
    let begun = Instant::now();
    if let Some(pod) = pod {
        ctx.events.pod_event(
            pod,
            Some(container_field_path(pod, name)),
            reasons::NORMAL,
            reasons::KILLING_CONTAINER,
            message,
        );
        pre_stop(ctx, pod, id, name, Duration::from_secs(grace as u64)).await;
    }
    let spent = begun.elapsed().as_secs() as i64;
    let left = (grace - spent).max(MIN_GRACE_SECONDS);
    let call = ctx.runtime.stop_container(v1::StopContainerRequest {
        container_id: id.to_string(),
        timeout: left,
    });
    let limit = Duration::from_secs(left as u64) + STOP_SLACK;
    match tokio::time::timeout(limit, call).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) if e.is_not_found() => {}
        Ok(Err(e)) => tracing::warn!(container = %id, error = %e, "stopping a container"),
        Err(_) => tracing::warn!(container = %id, "stopping a container timed out"),
    }
}

/// The preStop hook of a running container, cut at `grace`.
async fn pre_stop(ctx: &PodContext, pod: &Pod, id: &str, name: &str, grace: Duration) {
    let Some(container) = find_container(pod, name) else {
        return;
    };
    let container: &k8s_openapi::api::core::v1::Container = &container;
    let Some(handler) = container
        .lifecycle
        .as_ref()
        .and_then(|l| l.pre_stop.as_ref())
    else {
        return;
    };
    if !is_running(ctx, id).await {
        return;
    }
    let pod_ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .unwrap_or_default();
    let run = run_handler(ctx, handler, container, id, &pod_ip, grace);
    let failed = match tokio::time::timeout(grace, run).await {
        Ok(Ok(())) => None,
        Ok(Err(m)) => Some(m),
        Err(_) => Some(format!(
            "PreStopHook for container {name} did not complete within the grace period ({}s)",
            grace.as_secs()
        )),
    };
    if let Some(message) = failed {
        ctx.events.pod_event(
            pod,
            Some(container_field_path(pod, name)),
            reasons::WARNING,
            reasons::FAILED_PRE_STOP_HOOK,
            message,
        );
    }
}

async fn is_running(ctx: &PodContext, id: &str) -> bool {
    let call = ctx.runtime.container_status(v1::ContainerStatusRequest {
        container_id: id.to_string(),
        verbose: false,
    });
    match tokio::time::timeout(Duration::from_secs(10), call).await {
        Ok(Ok(r)) => r
            .status
            .is_some_and(|s| s.state == v1::ContainerState::ContainerRunning as i32),
        _ => false,
    }
}
