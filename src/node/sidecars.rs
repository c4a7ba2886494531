//! Native sidecars: init containers with `restartPolicy: Always`. They are
//! stopped after the pod's other containers, one at a time in the reverse
//! of their spec order (the kubelet's killContainersWithSyncResult).

use k8s_openapi::api::core::v1::Pod;

/// Whether `name` is a restartable init container of `pod`.
pub fn is_sidecar(pod: &Pod, name: &str) -> bool {
    sidecar_names(pod).iter().any(|n| n == name)
}

/// The pod's sidecars, in spec order.
pub fn sidecar_names(pod: &Pod) -> Vec<String> {
    pod.spec
        .iter()
        .flat_map(|s| s.init_containers.iter().flatten())
        .filter(|c| c.restart_policy.as_deref() == Some("Always"))
        .map(|c| c.name.clone())
        .collect()
}

/// The running containers in the order they are stopped: first every
/// non-sidecar at once, then each sidecar alone, last one first.
pub fn stop_waves<'a>(
    pod: Option<&Pod>,
    running: &[(&'a str, &'a str)],
) -> Vec<Vec<(&'a str, &'a str)>> {
    let sidecars = pod.map(sidecar_names).unwrap_or_default();
    let first: Vec<_> = running
        .iter()
        .filter(|(_, name)| !sidecars.iter().any(|s| s == name))
        .copied()
        .collect();
    let mut waves = vec![first];
    for s in sidecars.iter().rev() {
        let wave: Vec<_> = running.iter().filter(|(_, n)| n == s).copied().collect();
        if !wave.is_empty() {
            waves.push(wave);
        }
    }
    waves.retain(|w| !w.is_empty());
    waves
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};

    #[test]
    fn apps_stop_first_then_sidecars_in_reverse_order() {
        let c = |n: &str, always: bool| Container {
            name: n.into(),
            restart_policy: always.then(|| "Always".into()),
            ..Default::default()
        };
        let pod = Pod {
            spec: Some(PodSpec {
                init_containers: Some(vec![c("s1", true), c("init", false), c("s2", true)]),
                containers: vec![c("a", false), c("b", false)],
                ..Default::default()
            }),
            ..Default::default()
        };
        let running = [("1", "s1"), ("2", "a"), ("3", "s2"), ("4", "b")];
        assert_eq!(
            stop_waves(Some(&pod), &running),
            vec![
                vec![("2", "a"), ("4", "b")],
                vec![("3", "s2")],
                vec![("1", "s1")]
            ]
        );
        assert_eq!(stop_waves(None, &running), vec![running.to_vec()]);
        assert!(is_sidecar(&pod, "s2") && !is_sidecar(&pod, "init"));
    }

    use crate::cri::api::v1;
    use crate::node::pods::actions::compute_pod_actions_with;
    use crate::node::pods::observe::Observed;
    use v1::ContainerState::{ContainerExited as Exited, ContainerRunning as Running};

    fn pod(policy: &str) -> Pod {
        let c = |n: &str, always: bool| Container {
            name: n.into(),
            restart_policy: always.then(|| "Always".into()),
            ..Default::default()
        };
        Pod {
            spec: Some(PodSpec {
                restart_policy: Some(policy.into()),
                init_containers: Some(vec![c("side", true), c("init", false)]),
                containers: vec![c("app", false)],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn observed(containers: &[(&str, u32, v1::ContainerState, i32)]) -> Observed {
        Observed {
            sandboxes: vec![v1::PodSandboxStatus {
                id: "sb".into(),
                metadata: Some(v1::PodSandboxMetadata::default()),
                state: v1::PodSandboxState::SandboxReady as i32,
                ..Default::default()
            }],
            containers: containers
                .iter()
                .map(|(n, attempt, st, code)| v1::ContainerStatus {
                    id: format!("{n}-{attempt}"),
                    metadata: Some(v1::ContainerMetadata {
                        name: n.to_string(),
                        attempt: *attempt,
                    }),
                    state: *st as i32,
                    exit_code: *code,
                    finished_at: if *st == Exited { 5 } else { 0 },
                    ..Default::default()
                })
                .collect(),
        }
    }

    fn names(a: &crate::node::pods::actions::PodActions) -> Vec<&str> {
        a.start.iter().map(|s| s.name.as_str()).collect()
    }

    #[test]
    fn the_next_init_container_waits_for_the_sidecar_to_be_started() {
        let p = pod("Always");
        let o = observed(&[("side", 0, Running, 0)]);
        assert!(
            compute_pod_actions_with(&p, &o, &|_| false)
                .start
                .is_empty()
        );
        let a = compute_pod_actions_with(&p, &o, &|_| true);
        assert_eq!(names(&a), ["init"]);
        let o = observed(&[("init", 0, Exited, 0), ("side", 0, Running, 0)]);
        assert_eq!(names(&compute_pod_actions_with(&p, &o, &|_| true)), ["app"]);
    }

    #[test]
    fn an_exited_sidecar_is_restarted_beside_the_apps_even_in_a_never_pod() {
        let o = observed(&[
            ("app", 0, Running, 0),
            ("init", 0, Exited, 0),
            ("side", 0, Exited, 1),
        ]);
        let a = compute_pod_actions_with(&pod("Never"), &o, &|_| true);
        assert_eq!(names(&a), ["side"]);
        assert!(
            !a.start[0].init,
            "a restart beside the apps must not block them"
        );
        assert_eq!(a.start[0].restart_count, 1);
        assert!(!a.kill_pod);
        // Before the apps ran, it restarts in the init sequence.
        let o = observed(&[("side", 0, Exited, 1)]);
        let a = compute_pod_actions_with(&pod("Never"), &o, &|_| true);
        assert_eq!(names(&a), ["side"]);
        assert!(a.start[0].init);
    }

    #[test]
    fn a_never_pod_whose_apps_finished_is_killed_sidecars_and_all() {
        let o = observed(&[
            ("app", 0, Exited, 0),
            ("init", 0, Exited, 0),
            ("side", 0, Running, 0),
        ]);
        let a = compute_pod_actions_with(&pod("Never"), &o, &|_| true);
        assert!(a.kill_pod);
        assert!(a.start.is_empty());
        // An Always pod restarts its app instead.
        let a = compute_pod_actions_with(&pod("Always"), &o, &|_| true);
        assert!(!a.kill_pod);
        assert_eq!(names(&a), ["app"]);
    }
}
