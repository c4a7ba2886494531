//! Starting one container: crash-loop back-off, the image, env, create and
//! start through the CRI, with the kubelet's events and waiting reasons.

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::cri::api::v1;
use crate::node::events::container_field_path;
use crate::node::lifecycle;
use crate::node::pods::PodContext;
use crate::node::pods::actions::StartContainer;
use crate::node::pods::ephemeral;
use crate::node::pods::images::{self, ERR_IMAGE_NEVER_PULL, ERR_IMAGE_PULL, IMAGE_PULL_BACK_OFF};
use crate::node::pods::observe::CRI_CALL_TIMEOUT;
use crate::node::podspec::{self, ContainerContext};
use crate::node::status::backoff::Backoff;
use crate::node::status::events as reasons;

pub const CRASH_LOOP_BACK_OFF: &str = "CrashLoopBackOff";
pub const CREATE_CONTAINER_ERROR: &str = "CreateContainerError";
pub const RUN_CONTAINER_ERROR: &str = "RunContainerError";

/// Per-pod state that outlives one sync.
#[derive(Debug, Default)]
pub struct StartState {
    /// Container name -> why it is not running (shown as its waiting state).
    pub waiting: HashMap<String, (String, String)>,
    pub crash_backoff: Backoff,
    pub pull_backoff: Backoff,
    /// Image -> when its last pull failed, and why.
    pub pull_failures: HashMap<String, (Time, String)>,
    /// The earliest time a back-off ends: the worker wakes then.
    pub wake_after: Option<Duration>,
}

impl StartState {
    fn wake_in(&mut self, d: Duration) {
        self.wake_after = Some(self.wake_after.map_or(d, |w| w.min(d)));
    }
}

pub fn now() -> Time {
    Time(Timestamp::now())
}

fn time_from_nanos(ns: i64) -> Time {
    Time(Timestamp::from_nanosecond(i128::from(ns)).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// How much of `backoff` is left since `since`.
fn remaining(since: &Time, backoff: Duration) -> Duration {
    let since: SystemTime = since.0.into();
    let elapsed = SystemTime::now().duration_since(since).unwrap_or_default();
    backoff.saturating_sub(elapsed)
}

fn pod_desc(pod: &Pod) -> String {
    format!(
        "{}_{}({})",
        pod.metadata.name.as_deref().unwrap_or(""),
        pod.metadata.namespace.as_deref().unwrap_or(""),
        pod.metadata.uid.as_deref().unwrap_or("")
    )
}

/// The container named `name`: an init, regular or ephemeral one.
pub fn find_container<'a>(pod: &'a Pod, name: &str) -> Option<Cow<'a, Container>> {
    let spec = pod.spec.as_ref()?;
    spec.init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
        .find(|c| c.name == name)
        .map(Cow::Borrowed)
        .or_else(|| ephemeral::find(pod, name).map(Cow::Owned))
}

pub struct Sandbox<'a> {
    pub id: &'a str,
    pub config: &'a v1::PodSandboxConfig,
    pub pod_ips: &'a [String],
}

/// Starts `want`; true when the container is running. Failures are
/// recorded in `state` (waiting reason, back-off) and as events.
pub async fn start_container(
    ctx: &PodContext,
    state: &mut StartState,
    pod: &Pod,
    want: &StartContainer,
    sandbox: &Sandbox<'_>,
) -> bool {
    let Some(container) = find_container(pod, &want.name) else {
        return false;
    };
    let container: &Container = &container;
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let field = Some(container_field_path(pod, &want.name));
    let event = |type_: &str, reason: &str, message: String| {
        ctx.events
            .pod_event(pod, field.clone(), type_, reason, message)
    };
    let key = (uid.clone(), want.name.clone());
    let now = now();

    if let Some(finished) = want.previous_finished_at.map(time_from_nanos) {
        if let Some(backoff) = state.crash_backoff.in_backoff(&key, &finished, &now) {
            state.waiting.insert(
                want.name.clone(),
                (
                    CRASH_LOOP_BACK_OFF.into(),
                    format!(
                        "back-off {} restarting failed container={} pod={}",
                        humantime::format_duration(backoff),
                        want.name,
                        pod_desc(pod)
                    ),
                ),
            );
            event(
                reasons::WARNING,
                reasons::BACK_OFF_START_CONTAINER,
                format!(
                    "Back-off restarting failed container {} in pod {}",
                    want.name,
                    pod_desc(pod)
                ),
            );
            state.wake_in(remaining(&finished, backoff));
            return false;
        }
        state.crash_backoff.next(&key, &finished, &now);
    }

    let image = match ensure_image(ctx, state, pod, container, sandbox.config, &event).await {
        Ok(image) => image,
        Err((reason, message)) => {
            state.waiting.insert(want.name.clone(), (reason, message));
            return false;
        }
    };

    let services = match ctx
        .lookup
        .services(pod.metadata.namespace.as_deref().unwrap_or("default"))
        .await
    {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "listing services for service-link env");
            vec![]
        }
    };
    let cctx = ContainerContext {
        pod_ips: sandbox.pod_ips,
        restart_count: want.restart_count,
        image_ref: &image.image_ref,
        image_user: image.user.as_deref(),
        services: &services,
    };
    let config = match podspec::container_env(pod, container, &cctx, &ctx.node, &ctx.lookup).await {
        Ok(envs) => podspec::container_config(pod, container, &cctx, &ctx.node, envs),
        Err(e) => Err(e),
    };
    let config = match config {
        Ok(c) => crate::node::volumes::with_mounts(&ctx.volumes, pod, container, c).await,
        Err(e) => Err(e),
    };
    let config = match config {
        Ok(mut c) => {
            if let Some(target) = &want.target_id {
                ephemeral::apply_target(&mut c, target);
            }
            c
        }
        Err(e) => {
            event(
                reasons::WARNING,
                reasons::FAILED_TO_CREATE_CONTAINER,
                format!("Error: {}", e.message),
            );
            state
                .waiting
                .insert(want.name.clone(), (e.reason.to_string(), e.message));
            return false;
        }
    };
    let created = tokio::time::timeout(
        CRI_CALL_TIMEOUT,
        ctx.runtime.create_container(v1::CreateContainerRequest {
            pod_sandbox_id: sandbox.id.to_string(),
            config: Some(config),
            sandbox_config: Some(sandbox.config.clone()),
        }),
    )
    .await;
    let id = match created {
        Ok(Ok(r)) => r.container_id,
        Ok(Err(e)) => return fail(state, &event, want, CREATE_CONTAINER_ERROR, e.message),
        Err(_) => {
            return fail(
                state,
                &event,
                want,
                CREATE_CONTAINER_ERROR,
                "CreateContainer timed out".into(),
            );
        }
    };
    event(
        reasons::NORMAL,
        reasons::CREATED_CONTAINER,
        format!("Created container: {}", want.name),
    );
    let started = tokio::time::timeout(
        CRI_CALL_TIMEOUT,
        ctx.runtime.start_container(v1::StartContainerRequest {
            container_id: id.clone(),
        }),
    )
    .await;
    match started {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return fail(state, &event, want, RUN_CONTAINER_ERROR, e.message),
        Err(_) => {
            return fail(
                state,
                &event,
                want,
                RUN_CONTAINER_ERROR,
                "StartContainer timed out".into(),
            );
        }
    }
    event(
        reasons::NORMAL,
        reasons::STARTED_CONTAINER,
        format!("Started container {}", want.name),
    );
    // The container is not started until its postStart hook completes.
    let hook = lifecycle::post_start(ctx, pod, container, &id, sandbox.pod_ips).await;
    if let Err(message) = hook {
        state.waiting.insert(
            want.name.clone(),
            (lifecycle::POST_START_HOOK_ERROR.into(), message),
        );
        return false;
    }
    state.waiting.remove(&want.name);
    true
}

fn fail(
    state: &mut StartState,
    event: &(dyn Fn(&str, &str, String) + Sync),
    want: &StartContainer,
    reason: &str,
    message: String,
) -> bool {
    event(
        reasons::WARNING,
        reasons::FAILED_TO_CREATE_CONTAINER,
        format!("Error: {message}"),
    );
    state
        .waiting
        .insert(want.name.clone(), (reason.to_string(), message));
    false
}

/// The image per the container's pull policy; Err is the waiting reason and message.
async fn ensure_image(
    ctx: &PodContext,
    state: &mut StartState,
    pod: &Pod,
    container: &Container,
    sandbox_config: &v1::PodSandboxConfig,
    event: &(dyn Fn(&str, &str, String) + Sync),
) -> Result<images::PulledImage, (String, String)> {
    let image = container.image.clone().unwrap_or_default();
    if image.is_empty() {
        return Err((
            images::INVALID_IMAGE_NAME.into(),
            "container has no image".into(),
        ));
    }
    let policy = images::pull_policy(container);
    if policy != "Always" {
        match images::present(ctx.images.as_ref(), &image).await {
            Ok(Some(found)) => {
                event(
                    reasons::NORMAL,
                    reasons::PULLED_IMAGE,
                    format!("Container image \"{image}\" already present on machine"),
                );
                return Ok(found);
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(image = %image, error = %e, "image status"),
        }
        if policy == "Never" {
            let message =
                format!("Container image \"{image}\" is not present with pull policy of Never");
            event(
                reasons::WARNING,
                reasons::ERR_IMAGE_NEVER_PULL_POLICY,
                message.clone(),
            );
            return Err((ERR_IMAGE_NEVER_PULL.into(), message));
        }
    }
    let key = (
        pod.metadata.uid.clone().unwrap_or_default(),
        format!("image:{image}"),
    );
    let now = now();
    if let Some((failed_at, last)) = state.pull_failures.get(&image).cloned()
        && let Some(backoff) = state.pull_backoff.in_backoff(&key, &failed_at, &now)
    {
        event(
            reasons::NORMAL,
            reasons::BACK_OFF_PULL_IMAGE,
            format!("Back-off pulling image \"{image}\""),
        );
        state.wake_in(remaining(&failed_at, backoff));
        return Err((
            IMAGE_PULL_BACK_OFF.into(),
            format!("Back-off pulling image \"{image}\": ErrImagePull: {last}"),
        ));
    }
    event(
        reasons::NORMAL,
        reasons::PULLING_IMAGE,
        format!("Pulling image \"{image}\""),
    );
    let auths = images::credentials(pod, &image, &ctx.lookup).await;
    match images::pull(ctx.images.as_ref(), &image, &auths, Some(sandbox_config)).await {
        Ok((pulled, took)) => {
            state.pull_failures.remove(&image);
            event(
                reasons::NORMAL,
                reasons::PULLED_IMAGE,
                format!("Successfully pulled image \"{image}\" in {took:.3?}"),
            );
            Ok(pulled)
        }
        Err(message) => {
            event(
                reasons::WARNING,
                reasons::FAILED_TO_PULL_IMAGE,
                format!("Failed to pull image \"{image}\": {message}"),
            );
            event(
                reasons::WARNING,
                reasons::FAILED_TO_PULL_IMAGE,
                "Error: ErrImagePull".into(),
            );
            state.pull_backoff.next(&key, &now, &now);
            if let Some(b) = state.pull_backoff.get(&key) {
                state.wake_in(b);
            }
            state
                .pull_failures
                .insert(image.clone(), (now, message.clone()));
            Err((ERR_IMAGE_PULL.into(), message))
        }
    }
}
