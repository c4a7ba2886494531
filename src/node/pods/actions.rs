//! What must happen to a pod now, from its spec and what the runtime holds:
//! kuberuntime's computePodActions. Pure.

use k8s_openapi::api::core::v1::{Container, Pod};

use crate::cri::api::v1;
use crate::node::pods::observe::{Observed, attempt, container_name, is_ready};
use crate::node::podspec::labels;

/// A container to (re)start.
#[derive(Debug, Clone, PartialEq)]
pub struct StartContainer {
    pub name: String,
    pub init: bool,
    /// The attempt number (restartCount) the new container gets.
    pub restart_count: u32,
    /// When the previous attempt finished (ns since the epoch), if it did:
    /// the restart waits out the crash-loop back-off from then.
    pub previous_finished_at: Option<i64>,
    /// An ephemeral container's target: the running container whose PID
    /// namespace it joins.
    pub target_id: Option<String>,
}

/// A container to stop.
#[derive(Debug, Clone, PartialEq)]
pub struct KillContainer {
    pub id: String,
    pub name: String,
    pub reason: String,
    /// The Killing event's message when it is not kubelet's default
    /// ("Stopping container NAME").
    pub message: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodActions {
    /// Stop every container and the sandbox (sandbox changed, or nothing is
    /// left to run).
    pub kill_pod: bool,
    /// Create a sandbox with this attempt number.
    pub create_sandbox: Option<u32>,
    /// In order; an init container is started alone.
    pub start: Vec<StartContainer>,
    pub kill: Vec<KillContainer>,
    /// An init container failed for good (restartPolicy Never).
    pub init_failed: bool,
}

fn restart_policy(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always")
}

fn state(c: &v1::ContainerStatus) -> v1::ContainerState {
    v1::ContainerState::try_from(c.state).unwrap_or(v1::ContainerState::ContainerUnknown)
}

/// kubelet's ShouldContainerBeRestarted for an exited container.
fn should_restart(policy: &str, exit_code: i32) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => exit_code != 0,
        _ => true,
    }
}

/// kubelet's containerChanged: the hash the container was created with
/// (its `io.kubernetes.container.hash` annotation) is not the spec's any
/// more. A container without the annotation is left alone.
fn definition_changed(spec: &Container, c: &v1::ContainerStatus) -> bool {
    labels::parse_container(&c.labels, &c.annotations)
        .and_then(|l| l.hash)
        .is_some_and(|hash| hash != labels::container_hash(spec))
}

fn start_of(observed: &Observed, name: &str, init: bool) -> StartContainer {
    let previous = observed.latest(name);
    StartContainer {
        name: name.to_string(),
        init,
        restart_count: previous.map(|c| attempt(c) + 1).unwrap_or(0),
        previous_finished_at: previous
            .filter(|c| state(c) == v1::ContainerState::ContainerExited && c.finished_at > 0)
            .map(|c| c.finished_at),
        target_id: None,
    }
}

pub fn compute_pod_actions(pod: &Pod, observed: &Observed) -> PodActions {
    compute_pod_actions_with(pod, observed, &|_| true)
}

/// As [`compute_pod_actions`], with `started(name)`: whether a running
/// sidecar passed its startup probe (the next init container waits on it).
pub fn compute_pod_actions_with(
    pod: &Pod,
    observed: &Observed,
    started: &dyn Fn(&str) -> bool,
) -> PodActions {
    let spec = pod.spec.clone().unwrap_or_default();
    let sidecars = crate::node::sidecars::sidecar_names(pod);
    let is_sidecar = |name: &str| sidecars.iter().any(|s| s == name);
    let policy = restart_policy(pod);
    let inits: Vec<&str> = spec
        .init_containers
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    let apps: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    let mut actions = PodActions::default();

    // Containers the spec does not know (any more) are stopped.
    let ephemeral = crate::node::pods::ephemeral::names(pod);
    for c in observed.running() {
        let name = container_name(c);
        if !inits.contains(&name) && !apps.contains(&name) && !ephemeral.contains(&name) {
            actions.kill.push(KillContainer {
                id: c.id.clone(),
                name: name.to_string(),
                reason: "Container is not in the pod spec".into(),
                message: None,
            });
        }
    }

    let sandbox = observed.newest_sandbox();
    if !sandbox.is_some_and(is_ready) {
        let attempt = sandbox
            .and_then(|s| s.metadata.as_ref())
            .map(|m| m.attempt + 1)
            .unwrap_or(0);
        // A Never pod whose containers already ran is not started again
        // in a new sandbox: it is done.
        if sandbox.is_some() && policy == "Never" && !observed.containers.is_empty() {
            actions.kill_pod = true;
            return actions;
        }
        actions.kill_pod = sandbox.is_some();
        actions.create_sandbox = Some(attempt);
        // Containers start once the sandbox is there: init containers
        // first, one at a time.
        match inits.first() {
            Some(first) => actions.start.push(start_of(observed, first, true)),
            None => {
                for name in &apps {
                    actions.start.push(start_of(observed, name, false));
                }
            }
        }
        return actions;
    }

    // Once an app container ran, the init sequence is over: an exited
    // sidecar is restarted next to the apps, not before them.
    let initialized = apps.iter().any(|n| observed.latest(n).is_some());
    let mut sidecar_restarts = Vec::new();
    // Init containers, in order, each to completion; sidecars to started.
    for name in &inits {
        let Some(c) = observed.latest(name) else {
            actions.start.push(start_of(observed, name, true));
            return actions;
        };
        match state(c) {
            v1::ContainerState::ContainerRunning if is_sidecar(name) => {
                if !initialized && !started(name) {
                    return actions;
                }
            }
            v1::ContainerState::ContainerRunning => return actions,
            // A sidecar is restarted whatever the pod's policy.
            v1::ContainerState::ContainerExited if is_sidecar(name) => {
                if initialized {
                    sidecar_restarts.push(start_of(observed, name, false));
                } else {
                    actions.start.push(start_of(observed, name, true));
                    return actions;
                }
            }
            v1::ContainerState::ContainerExited if c.exit_code == 0 => continue,
            v1::ContainerState::ContainerExited => {
                if policy == "Never" {
                    actions.init_failed = true;
                    actions.kill_pod = true;
                } else {
                    actions.start.push(start_of(observed, name, true));
                }
                return actions;
            }
            // Created but never started, or unknown: start it over.
            _ => {
                actions.kill.push(KillContainer {
                    id: c.id.clone(),
                    name: name.to_string(),
                    reason: "Init container is in an unknown state".into(),
                    message: None,
                });
                actions.start.push(start_of(observed, name, true));
                return actions;
            }
        }
    }

    let mut keep = 0;
    for container in &spec.containers {
        let name = container.name.as_str();
        match observed.latest(name) {
            None => actions.start.push(start_of(observed, name, false)),
            Some(c) => match state(c) {
                // A changed spec restarts it, whatever the restart policy.
                v1::ContainerState::ContainerRunning if definition_changed(container, c) => {
                    actions.kill.push(KillContainer {
                        id: c.id.clone(),
                        name: name.to_string(),
                        reason: "Container definition changed".into(),
                        message: Some(format!(
                            "Container {name} definition changed, will be restarted"
                        )),
                    });
                    actions.start.push(start_of(observed, name, false));
                }
                v1::ContainerState::ContainerRunning => keep += 1,
                v1::ContainerState::ContainerExited => {
                    if should_restart(policy, c.exit_code) {
                        actions.start.push(start_of(observed, name, false));
                    }
                }
                _ => {
                    actions.kill.push(KillContainer {
                        id: c.id.clone(),
                        name: name.to_string(),
                        reason: "Container is in an unknown state".into(),
                        message: None,
                    });
                    actions.start.push(start_of(observed, name, false));
                }
            },
        }
    }
    // Nothing running and nothing to start: the pod is done; its sandbox
    // goes, and its sidecars with it (after the apps, see sidecars.rs).
    if keep == 0 && actions.start.is_empty() {
        actions.kill_pod = true;
        return actions;
    }
    // Sidecars first, as the kubelet starts init containers first.
    sidecar_restarts.append(&mut actions.start);
    actions.start = sidecar_restarts;
    actions
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};

    fn pod(policy: &str, inits: &[&str], apps: &[&str]) -> Pod {
        let c = |n: &&str| Container {
            name: n.to_string(),
            image: Some("busybox".into()),
            ..Default::default()
        };
        Pod {
            spec: Some(PodSpec {
                restart_policy: Some(policy.into()),
                init_containers: Some(inits.iter().map(c).collect()),
                containers: apps.iter().map(c).collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn sandbox(ready: bool, attempt: u32) -> v1::PodSandboxStatus {
        v1::PodSandboxStatus {
            id: format!("sb{attempt}"),
            metadata: Some(v1::PodSandboxMetadata {
                attempt,
                ..Default::default()
            }),
            state: if ready {
                v1::PodSandboxState::SandboxReady
            } else {
                v1::PodSandboxState::SandboxNotready
            } as i32,
            ..Default::default()
        }
    }

    fn container(
        name: &str,
        attempt: u32,
        st: v1::ContainerState,
        exit: i32,
    ) -> v1::ContainerStatus {
        v1::ContainerStatus {
            id: format!("{name}-{attempt}"),
            metadata: Some(v1::ContainerMetadata {
                name: name.into(),
                attempt,
            }),
            state: st as i32,
            exit_code: exit,
            finished_at: if st == v1::ContainerState::ContainerExited {
                5
            } else {
                0
            },
            ..Default::default()
        }
    }

    use v1::ContainerState::{ContainerExited as Exited, ContainerRunning as Running};

    #[test]
    fn a_new_pod_gets_a_sandbox_and_its_first_init_container() {
        let a = compute_pod_actions(
            &pod("Always", &["i1", "i2"], &["app"]),
            &Observed::default(),
        );
        assert_eq!(a.create_sandbox, Some(0));
        assert!(!a.kill_pod);
        assert_eq!(a.start.len(), 1);
        assert_eq!(a.start[0].name, "i1");
        let a = compute_pod_actions(&pod("Always", &[], &["a", "b"]), &Observed::default());
        assert_eq!(
            a.start.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
    }

    #[test]
    fn init_containers_run_in_order_to_completion() {
        let p = pod("Always", &["i1", "i2"], &["app"]);
        let mut o = Observed {
            sandboxes: vec![sandbox(true, 0)],
            containers: vec![container("i1", 0, Running, 0)],
        };
        assert_eq!(compute_pod_actions(&p, &o).start, vec![]);
        o.containers = vec![container("i1", 0, Exited, 0)];
        assert_eq!(compute_pod_actions(&p, &o).start[0].name, "i2");
        o.containers.insert(0, container("i2", 0, Exited, 0));
        let a = compute_pod_actions(&p, &o);
        assert_eq!(a.start[0].name, "app");
        assert!(!a.start[0].init);
    }

    #[test]
    fn a_failed_init_container_fails_a_never_pod_and_restarts_otherwise() {
        let o = Observed {
            sandboxes: vec![sandbox(true, 0)],
            containers: vec![container("i1", 0, Exited, 1)],
        };
        let a = compute_pod_actions(&pod("Never", &["i1"], &["app"]), &o);
        assert!(a.init_failed && a.kill_pod);
        let a = compute_pod_actions(&pod("OnFailure", &["i1"], &["app"]), &o);
        assert_eq!(a.start[0].restart_count, 1);
        assert_eq!(a.start[0].previous_finished_at, Some(5));
    }

    #[test]
    fn restart_policy_decides_restarts() {
        let exited = |code| Observed {
            sandboxes: vec![sandbox(true, 0)],
            containers: vec![container("app", 2, Exited, code)],
        };
        let a = compute_pod_actions(&pod("Always", &[], &["app"]), &exited(0));
        assert_eq!(a.start[0].restart_count, 3);
        let a = compute_pod_actions(&pod("OnFailure", &[], &["app"]), &exited(0));
        assert!(a.start.is_empty() && a.kill_pod);
        let a = compute_pod_actions(&pod("OnFailure", &[], &["app"]), &exited(3));
        assert_eq!(a.start.len(), 1);
        let a = compute_pod_actions(&pod("Never", &[], &["app"]), &exited(3));
        assert!(a.start.is_empty() && a.kill_pod);
    }

    #[test]
    fn a_running_pod_is_left_alone_and_a_dead_sandbox_replaced() {
        let p = pod("Always", &[], &["app"]);
        let o = Observed {
            sandboxes: vec![sandbox(true, 0)],
            containers: vec![container("app", 0, Running, 0)],
        };
        assert_eq!(compute_pod_actions(&p, &o), PodActions::default());
        let o = Observed {
            sandboxes: vec![sandbox(false, 0)],
            containers: vec![container("app", 0, Exited, 137)],
        };
        let a = compute_pod_actions(&p, &o);
        assert_eq!(a.create_sandbox, Some(1));
        assert!(a.kill_pod);
        assert_eq!(a.start[0].restart_count, 1);
        let a = compute_pod_actions(&pod("Never", &[], &["app"]), &o);
        assert_eq!(a.create_sandbox, None);
    }

    #[test]
    fn containers_not_in_the_spec_are_killed() {
        let o = Observed {
            sandboxes: vec![sandbox(true, 0)],
            containers: vec![
                container("old", 0, Running, 0),
                container("app", 0, Running, 0),
            ],
        };
        let a = compute_pod_actions(&pod("Always", &[], &["app"]), &o);
        assert_eq!(a.kill.len(), 1);
        assert_eq!(a.kill[0].name, "old");
    }

    #[test]
    fn a_running_container_whose_definition_changed_is_restarted() {
        let p = pod("Never", &[], &["app"]);
        let with_hash = |spec: &Container| {
            let mut c = container("app", 0, Running, 0);
            c.labels = labels::container_labels(&p, spec);
            c.labels.insert(labels::POD_UID.into(), "uid".into());
            c.annotations = labels::container_annotations(&p, spec, 0);
            c
        };
        let current = p.spec.as_ref().unwrap().containers[0].clone();
        // Created from this very spec (as a re-adopted container is): kept.
        let o = Observed {
            sandboxes: vec![sandbox(true, 0)],
            containers: vec![with_hash(&current)],
        };
        assert_eq!(compute_pod_actions(&p, &o), PodActions::default());
        // Created from another image: killed and started again, even with
        // restartPolicy Never, as kubelet does.
        let old = Container {
            image: Some("busybox:old".into()),
            ..current.clone()
        };
        let o = Observed {
            sandboxes: vec![sandbox(true, 0)],
            containers: vec![with_hash(&old)],
        };
        let a = compute_pod_actions(&p, &o);
        assert!(!a.kill_pod);
        assert_eq!(a.kill.len(), 1);
        assert_eq!(a.kill[0].id, "app-0");
        assert_eq!(
            a.kill[0].message.as_deref(),
            Some("Container app definition changed, will be restarted")
        );
        assert_eq!(a.start.len(), 1);
        assert_eq!(a.start[0].restart_count, 1);
        assert_eq!(a.start[0].previous_finished_at, None);
        // No hash annotation (not created by a kubelet): left alone.
        let o = Observed {
            sandboxes: vec![sandbox(true, 0)],
            containers: vec![container("app", 0, Running, 0)],
        };
        assert_eq!(compute_pod_actions(&p, &o), PodActions::default());
    }
}
