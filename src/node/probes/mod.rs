//! The prober manager of one pod (the kubelet's prober_manager): a task per
//! probe per running container, their results (readiness, startup,
//! liveness) read by the pod worker, which restarts containers whose
//! liveness or startup probe failed and reports readiness in the status.

pub mod exec;
pub mod grpc;
pub mod http;
pub mod results;
pub mod tcp;
mod worker;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::{Container, ContainerPort, Pod, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use crate::cri::api::v1;
use crate::node::pods::PodContext;
use crate::node::pods::observe::Observed;
pub use results::{Kind, Outcome};

/// `host:port`, with IPv6 literals in brackets.
pub fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A port by number, or by the name of one of the container's ports.
pub fn resolve_port(port: &IntOrString, ports: &[ContainerPort]) -> Result<u16, String> {
    let n = match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(s) => match s.parse::<i32>() {
            Ok(n) => n,
            Err(_) => ports
                .iter()
                .find(|p| p.name.as_deref() == Some(s.as_str()))
                .map(|p| p.container_port)
                .ok_or_else(|| format!("couldn't find port {s:?} in the container's ports"))?,
        },
    };
    u16::try_from(n)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("invalid port number: {n}"))
}

/// Where a probe goes: the container (exec) and the pod's IP.
#[derive(Debug, Clone)]
pub struct Target {
    pub container_id: String,
    pub pod_ip: String,
    pub ports: Vec<ContainerPort>,
}

/// The latest results of one container's probes.
#[derive(Debug, Clone, Default)]
pub struct Results {
    pub startup: Option<bool>,
    pub liveness: Option<bool>,
    pub readiness: Option<bool>,
}

impl Results {
    fn get(&self, kind: Kind) -> Option<bool> {
        match kind {
            Kind::Startup => self.startup,
            Kind::Liveness => self.liveness,
            Kind::Readiness => self.readiness,
        }
    }

    fn set(&mut self, kind: Kind, v: Option<bool>) {
        match kind {
            Kind::Startup => self.startup = v,
            Kind::Liveness => self.liveness = v,
            Kind::Readiness => self.readiness = v,
        }
    }
}

/// The probes of a container's spec, by kind.
pub fn probes_of(c: &Container) -> Vec<(Kind, &Probe)> {
    [
        (Kind::Startup, c.startup_probe.as_ref()),
        (Kind::Liveness, c.liveness_probe.as_ref()),
        (Kind::Readiness, c.readiness_probe.as_ref()),
    ]
    .into_iter()
    .filter_map(|(k, p)| p.map(|p| (k, p)))
    .collect()
}

struct Running {
    id: String,
    results: watch::Receiver<Results>,
    /// Dropping it aborts the container's probe tasks.
    _tasks: JoinSet<()>,
    /// Killed for a failed liveness/startup probe already.
    killed: bool,
}

/// A container whose liveness or startup probe failed.
#[derive(Debug, Clone)]
pub struct Unhealthy {
    pub id: String,
    pub name: String,
    pub kind: Kind,
    /// The probe's terminationGracePeriodSeconds, when it sets one.
    pub grace: Option<i64>,
}

#[derive(Default)]
pub struct ProbeManager {
    /// Container name -> its running attempt's probes.
    running: HashMap<String, Running>,
    kick: Option<Arc<Notify>>,
}

fn spec_containers(pod: &Pod) -> impl Iterator<Item = &Container> {
    pod.spec.iter().flat_map(|s| {
        s.init_containers
            .iter()
            .flatten()
            .filter(|c| c.restart_policy.as_deref() == Some("Always"))
            .chain(s.containers.iter())
    })
}

impl ProbeManager {
    /// What wakes the pod worker when a result changes.
    pub fn set_kick(&mut self, kick: Arc<Notify>) {
        self.kick = Some(kick);
    }

    /// Starts probing running containers that have probes and stops the
    /// probes of containers that are gone or replaced.
    pub fn sync(&mut self, ctx: &PodContext, pod: &Arc<Pod>, observed: &Observed) {
        let pod_ip = observed
            .pod_ips()
            .into_iter()
            .next()
            .or_else(|| ctx.node.host_ips.first().cloned())
            .unwrap_or_default();
        let mut keep = HashMap::new();
        for c in spec_containers(pod) {
            let probes = probes_of(c);
            if probes.is_empty() {
                continue;
            }
            let Some(status) = observed
                .latest(&c.name)
                .filter(|s| s.state == v1::ContainerState::ContainerRunning as i32)
            else {
                continue;
            };
            if let Some(r) = self.running.remove(&c.name).filter(|r| r.id == status.id) {
                keep.insert(c.name.clone(), r);
                continue;
            }
            let started_at =
                SystemTime::UNIX_EPOCH + Duration::from_nanos(status.started_at.max(0) as u64);
            let target = Target {
                container_id: status.id.clone(),
                pod_ip: pod_ip.clone(),
                ports: c.ports.clone().unwrap_or_default(),
            };
            let mut initial = Results::default();
            for (kind, _) in &probes {
                initial.set(*kind, kind.initial());
            }
            let (tx, rx) = watch::channel(initial);
            let tx = Arc::new(tx);
            let mut tasks = JoinSet::new();
            let has_startup = c.startup_probe.is_some();
            for (kind, probe) in probes {
                let task = worker::ProbeTask {
                    kind,
                    probe: probe.clone(),
                    target: target.clone(),
                    container: c.name.clone(),
                    has_startup,
                    started_at,
                    runtime: ctx.runtime.clone(),
                    events: ctx.events.clone(),
                    pod: pod.clone(),
                    results: tx.clone(),
                    kick: self.kick.clone(),
                };
                tasks.spawn(task.run());
            }
            keep.insert(
                c.name.clone(),
                Running {
                    id: status.id.clone(),
                    results: rx,
                    _tasks: tasks,
                    killed: false,
                },
            );
        }
        // Whatever is left is not running any more: its tasks end here.
        self.running = keep;
    }

    pub fn stop_all(&mut self) {
        self.running.clear();
    }

    fn results(&self, kind: Kind) -> HashMap<String, bool> {
        self.running
            .iter()
            .filter_map(|(name, r)| Some((name.clone(), r.results.borrow().get(kind)?)))
            .collect()
    }

    /// Container name -> its readiness result, for the status.
    pub fn readiness(&self) -> HashMap<String, bool> {
        self.results(Kind::Readiness)
    }

    /// Container name -> its startup result, for the status.
    pub fn startup(&self) -> HashMap<String, bool> {
        self.results(Kind::Startup)
    }

    /// Whether container `name` counts as started: running and past its
    /// startup probe (at once without one). The next init container waits
    /// on a sidecar's.
    pub fn started(&self, pod: &Pod, name: &str) -> bool {
        let has_startup = spec_containers(pod)
            .find(|c| c.name == name)
            .is_some_and(|c| c.startup_probe.is_some());
        !has_startup
            || self
                .running
                .get(name)
                .is_some_and(|r| r.results.borrow().startup == Some(true))
    }

    /// Containers to kill for a failed liveness or startup probe; each is
    /// returned once per attempt.
    pub fn take_unhealthy(&mut self, pod: &Pod) -> Vec<Unhealthy> {
        let mut out = Vec::new();
        for (name, r) in self.running.iter_mut().filter(|(_, r)| !r.killed) {
            let results = r.results.borrow().clone();
            let kind = if results.startup == Some(false) {
                Kind::Startup
            } else if results.liveness == Some(false) {
                Kind::Liveness
            } else {
                continue;
            };
            r.killed = true;
            let grace = spec_containers(pod)
                .find(|c| &c.name == name)
                .and_then(|c| match kind {
                    Kind::Startup => c.startup_probe.as_ref(),
                    _ => c.liveness_probe.as_ref(),
                })
                .and_then(|p| p.termination_grace_period_seconds);
            out.push(Unhealthy {
                id: r.id.clone(),
                name: name.clone(),
                kind,
                grace,
            });
        }
        out
    }
}

/// Runs a probe's action once against `target`.
pub async fn run_once(
    probe: &Probe,
    target: &Target,
    runtime: &dyn crate::cri::api::RuntimeService,
    client: Option<&reqwest::Client>,
    timeout: Duration,
) -> Outcome {
    if let Some(e) = &probe.exec {
        let cmd = e.command.clone().unwrap_or_default();
        return exec::probe(runtime, &target.container_id, &cmd, timeout).await;
    }
    if let Some(h) = &probe.http_get {
        let req = match http::request(h, &target.pod_ip, &target.ports) {
            Ok(r) => r,
            Err(e) => return Outcome::Failure(e),
        };
        let Some(client) = client else {
            return Outcome::Failure("no HTTP client".into());
        };
        return http::probe(client, &req, timeout).await;
    }
    if let Some(t) = &probe.tcp_socket {
        let port = match resolve_port(&t.port, &target.ports) {
            Ok(p) => p,
            Err(e) => return Outcome::Failure(e),
        };
        let host = t
            .host
            .as_deref()
            .filter(|h| !h.is_empty())
            .unwrap_or(&target.pod_ip);
        return tcp::probe(host, port, timeout).await;
    }
    if let Some(g) = &probe.grpc {
        let Some(port) = u16::try_from(g.port).ok().filter(|p| *p > 0) else {
            return Outcome::Failure(format!("invalid port number: {}", g.port));
        };
        let service = g.service.as_deref().unwrap_or("");
        return grpc::probe(&target.pod_ip, port, service, timeout).await;
    }
    Outcome::Failure("probe has no handler (exec, httpGet, tcpSocket or grpc)".into())
}

/// Kills the containers whose liveness or startup probe failed (with their
/// preStop hook and the probe's grace period, if it sets one); the next
/// sync restarts them per the restart policy.
pub async fn kill_unhealthy(ctx: &PodContext, pod: &Pod, unhealthy: &[Unhealthy]) {
    let policy = pod
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always");
    let kills = unhealthy.iter().map(|u| {
        // Killed, it exits non-zero: OnFailure restarts it too.
        let restart = policy != "Never" || crate::node::sidecars::is_sidecar(pod, &u.name);
        let mut message = format!("Container {} failed {} probe", u.name, u.kind.lower());
        if restart {
            message.push_str(", will be restarted");
        }
        let grace = u
            .grace
            .unwrap_or_else(|| crate::node::pods::kill::grace_seconds(Some(pod)));
        crate::node::lifecycle::stop_container(ctx, Some(pod), &u.id, &u.name, grace, message)
    });
    futures::future::join_all(kills).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_resolve_by_number_and_name() {
        let ports = [ContainerPort {
            name: Some("web".into()),
            container_port: 8080,
            ..Default::default()
        }];
        assert_eq!(resolve_port(&IntOrString::Int(80), &ports), Ok(80));
        assert_eq!(
            resolve_port(&IntOrString::String("web".into()), &ports),
            Ok(8080)
        );
        assert_eq!(
            resolve_port(&IntOrString::String("81".into()), &ports),
            Ok(81)
        );
        assert!(resolve_port(&IntOrString::String("db".into()), &ports).is_err());
        assert!(resolve_port(&IntOrString::Int(0), &ports).is_err());
        assert!(resolve_port(&IntOrString::Int(70000), &ports).is_err());
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        assert_eq!(join_host_port("10.0.0.1", 80), "10.0.0.1:80");
        assert_eq!(join_host_port("fd00::1", 80), "[fd00::1]:80");
    }
}
