//! In-place pod resize (InPlacePodVerticalScaling, as kubelet 1.33+): a
//! running container whose spec resources changed gets them through CRI
//! UpdateContainerResources (the pod cgroup first when it grows), or is
//! restarted when its resizePolicy for a changed resource says
//! RestartContainer. The status shows what is applied, and the
//! PodResizePending / PodResizeInProgress conditions while it is not.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod, PodCondition, PodStatus, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::cri::api::v1;
use crate::k8s::quantity;
use crate::node::pods::PodContext;
use crate::node::pods::observe::{Observed, container_name};
use crate::node::podspec;

pub const POD_RESIZE_PENDING: &str = "PodResizePending";
pub const POD_RESIZE_IN_PROGRESS: &str = "PodResizeInProgress";
const CRI_TIMEOUT: Duration = Duration::from_secs(30);

/// What this agent applied to each running container, and how the last
/// resize went.
#[derive(Debug, Default)]
pub struct ResizeState {
    /// Container id -> the resources it runs with.
    applied: HashMap<String, ResourceRequirements>,
    /// Container name -> the resources it runs with (for the status).
    by_name: HashMap<String, ResourceRequirements>,
    /// (condition type, reason, message) while a resize is not done.
    condition: Option<(&'static str, String, String)>,
}

fn resizable(pod: &Pod) -> Vec<&Container> {
    let Some(spec) = pod.spec.as_ref() else {
        return vec![];
    };
    spec.init_containers
        .iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"))
        .chain(spec.containers.iter())
        .collect()
}

fn get<'a>(r: &'a ResourceRequirements, which: &str, name: &str) -> Option<&'a Quantity> {
    let list = if which == "limits" {
        r.limits.as_ref()
    } else {
        r.requests.as_ref()
    };
    list.and_then(|l| l.get(name))
}

/// The resources (cpu, memory) whose request or limit differ.
fn changed(a: &ResourceRequirements, b: &ResourceRequirements) -> Vec<&'static str> {
    ["cpu", "memory"]
        .into_iter()
        .filter(|res| {
            ["requests", "limits"]
                .iter()
                .any(|w| match (get(a, w, res), get(b, w, res)) {
                    (None, None) => false,
                    (Some(x), Some(y)) => quantity::cmp(x, y) != std::cmp::Ordering::Equal,
                    _ => true,
                })
        })
        .collect()
}

fn needs_restart(c: &Container, resources: &[&str]) -> bool {
    c.resize_policy.iter().flatten().any(|p| {
        resources.contains(&p.resource_name.as_str()) && p.restart_policy == "RestartContainer"
    })
}

/// A request beyond the node's allocatable can never fit: Infeasible.
fn infeasible(pod: &Pod, node: &podspec::NodeContext) -> Option<String> {
    for res in ["cpu", "memory"] {
        let Some(alloc) = node.allocatable.get(res) else {
            continue;
        };
        let total = resizable(pod)
            .iter()
            .filter_map(|c| c.resources.as_ref().and_then(|r| get(r, "requests", res)))
            .fold(Quantity("0".into()), |a, b| quantity::add(&a, b));
        if quantity::cmp(&total, alloc) == std::cmp::Ordering::Greater {
            return Some(format!(
                "Node didn't have enough capacity: {res}, requested: {}, capacity: {}",
                if res == "cpu" {
                    quantity::milli_value(&total)
                } else {
                    quantity::value(&total)
                },
                if res == "cpu" {
                    quantity::milli_value(alloc)
                } else {
                    quantity::value(alloc)
                }
            ));
        }
    }
    None
}

impl ResizeState {
    /// Applies resizes to the pod's running containers; returns the
    /// (id, name) of containers to restart for one.
    pub async fn sync(
        &mut self,
        ctx: &PodContext,
        pod: &Pod,
        observed: &Observed,
    ) -> Vec<(String, String)> {
        let mut restart = Vec::new();
        let running: HashMap<&str, &v1::ContainerStatus> =
            observed.running().map(|c| (container_name(c), c)).collect();
        self.applied
            .retain(|id, _| running.values().any(|c| &c.id == id));
        self.condition = None;
        let sandbox = observed.newest_sandbox().map(|s| s.id.clone());
        for c in resizable(pod) {
            let want = c.resources.clone().unwrap_or_default();
            let Some(status) = running.get(c.name.as_str()) else {
                self.by_name.remove(&c.name);
                continue;
            };
            // A container first seen runs with the spec it was created from.
            let have = self
                .applied
                .entry(status.id.clone())
                .or_insert_with(|| want.clone())
                .clone();
            let diff = changed(&have, &want);
            if diff.is_empty() {
                self.by_name.insert(c.name.clone(), have);
                continue;
            }
            if let Some(message) = infeasible(pod, &ctx.node) {
                self.condition = Some((POD_RESIZE_PENDING, "Infeasible".into(), message));
                self.by_name.insert(c.name.clone(), have);
                continue;
            }
            if needs_restart(c, &diff) {
                tracing::info!(container = %c.name, "resize restarts the container");
                restart.push((status.id.clone(), c.name.clone()));
                self.applied.remove(&status.id);
                continue;
            }
            match self
                .apply(ctx, pod, c, &status.id, sandbox.as_deref())
                .await
            {
                Ok(()) => {
                    tracing::info!(container = %c.name, ?diff, "resized in place");
                    self.applied.insert(status.id.clone(), want.clone());
                    self.by_name.insert(c.name.clone(), want);
                }
                Err(message) => {
                    self.condition = Some((POD_RESIZE_IN_PROGRESS, "Error".into(), message));
                    self.by_name.insert(c.name.clone(), have);
                }
            }
        }
        restart
    }

    async fn apply(
        &self,
        ctx: &PodContext,
        pod: &Pod,
        c: &Container,
        id: &str,
        sandbox: Option<&str>,
    ) -> Result<(), String> {
        let pod_level = || async {
            let Some(sb) = sandbox else { return };
            let (resources, overhead) = podspec::sandbox_resources(pod);
            let call =
                ctx.runtime
                    .update_pod_sandbox_resources(v1::UpdatePodSandboxResourcesRequest {
                        pod_sandbox_id: sb.to_string(),
                        overhead: Some(overhead),
                        resources: Some(resources),
                    });
            match tokio::time::timeout(CRI_TIMEOUT, call).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::debug!(error = %e, "updating the pod cgroup"),
                Err(_) => tracing::warn!("updating the pod cgroup timed out"),
            }
        };
        // The pod cgroup grows before its container and shrinks after it.
        pod_level().await;
        let linux = podspec::container_resources(pod, c, &ctx.node);
        let call = ctx
            .runtime
            .update_container_resources(v1::UpdateContainerResourcesRequest {
                container_id: id.to_string(),
                linux: Some(linux),
                ..Default::default()
            });
        let result = match tokio::time::timeout(CRI_TIMEOUT, call).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("UpdateContainerResources failed: {}", e.message)),
            Err(_) => Err("UpdateContainerResources timed out".into()),
        };
        pod_level().await;
        result
    }

    /// The applied resources into the container statuses and the resize
    /// conditions into the pod's, from the previous status' times.
    pub fn report(&self, old: Option<&PodStatus>, status: &mut PodStatus, generation: Option<i64>) {
        for s in status
            .container_statuses
            .iter_mut()
            .chain(status.init_container_statuses.iter_mut())
            .flatten()
        {
            if let Some(r) = self.by_name.get(&s.name) {
                s.resources = Some(r.clone());
            }
        }
        let conds = status.conditions.get_or_insert_with(Vec::new);
        conds.retain(|c| c.type_ != POD_RESIZE_PENDING && c.type_ != POD_RESIZE_IN_PROGRESS);
        if let Some((type_, reason, message)) = &self.condition {
            let previous = old
                .and_then(|s| s.conditions.as_ref())
                .and_then(|cs| cs.iter().find(|c| c.type_ == *type_));
            let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::from_second(
                    k8s_openapi::jiff::Timestamp::now().as_second(),
                )
                .unwrap_or_default(),
            );
            conds.push(PodCondition {
                type_: type_.to_string(),
                status: "True".into(),
                reason: Some(reason.clone()),
                message: Some(message.clone()),
                last_transition_time: Some(
                    previous
                        .and_then(|p| p.last_transition_time.clone())
                        .unwrap_or_else(|| now.clone()),
                ),
                last_probe_time: previous.and_then(|p| p.last_probe_time.clone()),
                observed_generation: generation,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ContainerResizePolicy;

    fn res(cpu: &str, mem: &str) -> ResourceRequirements {
        ResourceRequirements {
            limits: Some(
                [
                    ("cpu".to_string(), Quantity(cpu.into())),
                    ("memory".to_string(), Quantity(mem.into())),
                ]
                .into(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn finds_what_changed_and_whether_it_restarts() {
        assert!(changed(&res("1", "64Mi"), &res("1000m", "64Mi")).is_empty());
        assert_eq!(changed(&res("1", "64Mi"), &res("1", "128Mi")), ["memory"]);
        assert_eq!(
            changed(&res("1", "64Mi"), &res("2", "128Mi")),
            ["cpu", "memory"]
        );
        let c = Container {
            resize_policy: Some(vec![ContainerResizePolicy {
                resource_name: "memory".into(),
                restart_policy: "RestartContainer".into(),
            }]),
            ..Default::default()
        };
        assert!(needs_restart(&c, &["memory"]));
        assert!(!needs_restart(&c, &["cpu"]));
        assert!(!needs_restart(&Container::default(), &["memory"]));
    }

    #[test]
    fn reports_conditions_and_clears_them() {
        let mut st = ResizeState {
            condition: Some((POD_RESIZE_PENDING, "Infeasible".into(), "no".into())),
            ..Default::default()
        };
        let mut status = PodStatus::default();
        st.report(None, &mut status, Some(2));
        let c = &status.conditions.as_ref().unwrap()[0];
        assert_eq!(
            (c.type_.as_str(), c.status.as_str()),
            (POD_RESIZE_PENDING, "True")
        );
        st.condition = None;
        st.report(None, &mut status, Some(2));
        assert!(status.conditions.unwrap().is_empty());
    }
}
