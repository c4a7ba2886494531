//! `/pods` (the pods bound to this node, as the kubelet's pod manager
//! holds them), `/runningpods/` (what the runtime runs, as minimal Pods),
//! `/configz` (the settled configuration) and `/spec/` (cAdvisor's
//! MachineInfo).

use std::collections::BTreeMap;
use std::time::Duration;

use http::{Response, StatusCode};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use serde_json::{Value, json};

use super::{Body, Server, json as reply, text};
use crate::cri::api::v1;
use crate::node::podspec::labels;

const TIMEOUT: Duration = Duration::from_secs(10);

pub async fn pods(server: &Server) -> Response<Body> {
    let api: Api<Pod> = Api::all(server.client.clone());
    let params = ListParams::default().fields(&format!("spec.nodeName={}", server.node_name));
    match tokio::time::timeout(TIMEOUT, api.list(&params)).await {
        Ok(Ok(list)) => reply(
            StatusCode::OK,
            &json!({
                "kind": "PodList",
                "apiVersion": "v1",
                "metadata": {},
                "items": list.items,
            }),
        ),
        Ok(Err(e)) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("listing pods: {e}"),
        ),
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "listing pods: timed out"),
    }
}

pub async fn running_pods(server: &Server) -> Response<Body> {
    let runtime = server.runtime.as_ref();
    let ready = v1::PodSandboxFilter {
        state: Some(v1::PodSandboxStateValue {
            state: v1::PodSandboxState::SandboxReady as i32,
        }),
        ..Default::default()
    };
    let running = v1::ContainerFilter {
        state: Some(v1::ContainerStateValue {
            state: v1::ContainerState::ContainerRunning as i32,
        }),
        ..Default::default()
    };
    let calls = async {
        let s = runtime
            .list_pod_sandbox(v1::ListPodSandboxRequest {
                filter: Some(ready),
            })
            .await?;
        let c = runtime
            .list_containers(v1::ListContainersRequest {
                filter: Some(running),
            })
            .await?;
        Ok::<_, crate::cri::api::CriError>((s.items, c.containers))
    };
    let (sandboxes, containers) = match tokio::time::timeout(TIMEOUT, calls).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => return text(StatusCode::INTERNAL_SERVER_ERROR, format!("runtime: {e}")),
        Err(_) => return text(StatusCode::INTERNAL_SERVER_ERROR, "runtime: timed out"),
    };
    let mut by_sandbox: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    for c in &containers {
        let name = c
            .labels
            .get(labels::CONTAINER_NAME)
            .cloned()
            .or_else(|| c.metadata.as_ref().map(|m| m.name.clone()))
            .unwrap_or_default();
        let image = c
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default();
        by_sandbox
            .entry(c.pod_sandbox_id.as_str())
            .or_default()
            .push(json!({"name": name, "image": image, "resources": {}}));
    }
    let items: Vec<Value> = sandboxes
        .iter()
        .map(|s| {
            let m = s.metadata.clone().unwrap_or_default();
            json!({
                "metadata": {"name": m.name, "namespace": m.namespace, "uid": m.uid,
                             "creationTimestamp": null},
                "spec": {"containers": by_sandbox.remove(s.id.as_str()).unwrap_or_default()},
                "status": {},
            })
        })
        .collect();
    reply(
        StatusCode::OK,
        &json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}),
    )
}

pub fn configz(server: &Server) -> Response<Body> {
    let c = &server.config;
    let s = &c.server;
    let secs = |d: Duration| format!("{}s", d.as_secs());
    let cfg = json!({
        "kind": "KubeletConfiguration",
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "address": s.address.to_string(),
        "port": c.kubelet_port,
        "tlsCertFile": s.tls_cert_file,
        "tlsPrivateKeyFile": s.tls_private_key_file,
        "authentication": {
            "x509": {"clientCAFile": s.client_ca_file},
            "webhook": {"enabled": s.webhook_authn, "cacheTTL": secs(s.webhook_authn_ttl)},
            "anonymous": {"enabled": s.anonymous_auth},
        },
        "authorization": {
            "mode": format!("{:?}", s.authorization_mode),
            "webhook": {
                "cacheAuthorizedTTL": secs(s.authorized_ttl),
                "cacheUnauthorizedTTL": secs(s.unauthorized_ttl),
            },
        },
        "clusterDNS": c.cluster_dns,
        "clusterDomain": c.cluster_domain,
        "maxPods": c.max_pods,
        "cgroupRoot": c.cgroup_root,
        "cgroupDriver": "cgroupfs",
        "resolvConf": c.resolv_conf,
        "kubeReserved": c.kube_reserved,
        "systemReserved": c.system_reserved,
        "evictionHard": c.eviction_hard,
        "nodeStatusUpdateFrequency": secs(c.status_update_frequency),
        "nodeStatusReportFrequency": secs(c.status_report_frequency),
        "nodeLeaseDurationSeconds": c.lease_duration_seconds,
        "seccompDefault": c.seccomp_default,
        "registerNode": c.register_node,
    });
    reply(StatusCode::OK, &json!({ "kubeletconfig": cfg }))
}

pub fn spec(server: &Server) -> Response<Body> {
    let r = crate::node::machine::MachineResources::read(&server.config.root_dir);
    let m = crate::node::machine::MachineInfo::read();
    reply(
        StatusCode::OK,
        &json!({
            "num_cores": r.cpus,
            "num_physical_cores": r.cpus,
            "num_sockets": 1,
            "cpu_frequency_khz": 0,
            "memory_capacity": r.memory_bytes,
            "hugepages": r.hugepages.iter()
                .map(|(size, n)| json!({"page_size": size, "num_pages": n}))
                .collect::<Vec<_>>(),
            "machine_id": m.machine_id,
            "system_uuid": m.system_uuid,
            "boot_id": m.boot_id,
            "filesystems": [],
            "disk_map": {},
            "network_devices": [],
            "topology": [],
            "cloud_provider": "Unknown",
            "instance_type": "Unknown",
            "instance_id": "None",
        }),
    )
}
