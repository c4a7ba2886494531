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
}
