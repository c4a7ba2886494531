//! The ContainerConfig (kuberuntime_container.go generateContainerConfig,
//! kuberuntime_container_linux.go generateLinuxContainerConfig).

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Container, Pod};

use super::env::expand;
use super::{ContainerContext, NodeContext, PodSpecError, labels, resources, security};
use crate::cri::v1;

pub fn container_config(
    pod: &Pod,
    container: &Container,
    ctx: &ContainerContext<'_>,
    node: &NodeContext,
    envs: Vec<v1::KeyValue>,
) -> Result<v1::ContainerConfig, PodSpecError> {
    let (uid, username) = security::image_user(ctx.image_user);
    security::verify_run_as_non_root(pod, container, uid, &username)?;
    let (command, args) = expand_command_and_args(container, &envs);
    let security_context =
        security::container_security_context(pod, container, node, uid, &username)?;
    Ok(v1::ContainerConfig {
        metadata: Some(v1::ContainerMetadata {
            name: container.name.clone(),
            attempt: ctx.restart_count,
        }),
        image: Some(v1::ImageSpec {
            image: ctx.image_ref.to_string(),
            user_specified_image: container.image.clone().unwrap_or_default(),
            ..Default::default()
        }),
        command,
        args,
        working_dir: container.working_dir.clone().unwrap_or_default(),
        labels: labels::container_labels(pod, container),
        annotations: labels::container_annotations(pod, container, ctx.restart_count),
        log_path: container_log_path(&container.name, ctx.restart_count),
        stdin: container.stdin.unwrap_or(false),
        stdin_once: container.stdin_once.unwrap_or(false),
        tty: container.tty.unwrap_or(false),
        linux: Some(v1::LinuxContainerConfig {
            resources: Some(resources::container_resources(pod, container, node)),
            security_context: Some(security_context),
        }),
        envs,
        stop_signal: stop_signal(container),
        ..Default::default()
    })
}

/// getContainerConfigStopSignal: lifecycle.stopSignal by its CRI name
/// ("SIGUSR1"); unset or unknown is RUNTIME_DEFAULT (the image's, else TERM).
fn stop_signal(container: &Container) -> i32 {
    container
        .lifecycle
        .as_ref()
        .and_then(|l| l.stop_signal.as_deref())
        .and_then(v1::Signal::from_str_name)
        .unwrap_or(v1::Signal::RuntimeDefault) as i32
}

/// buildContainerLogsPath: relative to the sandbox's log directory.
pub fn container_log_path(container_name: &str, restart_count: u32) -> String {
    format!("{container_name}/{restart_count}.log")
}

/// kubecontainer.ExpandContainerCommandAndArgs: `$(VAR)` in command and
/// args from the final environment. Empty command/args leave the image's
/// entrypoint/cmd to the runtime, which applies the kubelet's rules.
fn expand_command_and_args(
    container: &Container,
    envs: &[v1::KeyValue],
) -> (Vec<String>, Vec<String>) {
    let map: HashMap<&str, String> = envs
        .iter()
        .map(|kv| {
            (
                kv.key.as_str(),
                String::from_utf8_lossy(&kv.value).into_owned(),
            )
        })
        .collect();
    let lookup = |name: &str| map.get(name).cloned();
    let expand_all = |list: Option<&Vec<String>>| -> Vec<String> {
        list.into_iter()
            .flatten()
            .map(|s| expand(s, &lookup))
            .collect()
    };
    (
        expand_all(container.command.as_ref()),
        expand_all(container.args.as_ref()),
    )
}

#[cfg(test)]
#[path = "container_tests.rs"]
mod tests;
