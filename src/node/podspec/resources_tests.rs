use super::*;
use crate::node::podspec::testutil::{first_container, pod, pod_with_spec};
use serde_json::json;

fn one(resources: serde_json::Value) -> Pod {
    pod_with_spec(
        json!({"containers": [{"name": "c", "image": "busybox", "resources": resources}]}),
    )
}

fn node() -> NodeContext {
    NodeContext {
        memory_capacity_bytes: 8 << 30,
        ..Default::default()
    }
}

#[test]
fn qos_classes() {
    assert_eq!(qos_class(&one(json!({}))), QosClass::BestEffort);
    assert_eq!(
        qos_class(&one(json!({"requests": {"cpu": "0", "memory": "0"}}))),
        QosClass::BestEffort,
        "zero requests do not count"
    );
    assert_eq!(
        qos_class(&one(json!({"requests": {"cpu": "100m"}}))),
        QosClass::Burstable
    );
    let g = json!({"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1000m", "memory": "1Gi"}});
    assert_eq!(qos_class(&one(g)), QosClass::Guaranteed);
    assert_eq!(
        qos_class(&one(json!({"limits": {"cpu": "1", "memory": "1Gi"}}))),
        QosClass::Burstable,
        "limits only: requests were not defaulted, so counts differ"
    );
    assert_eq!(
        qos_class(&one(
            json!({"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "1Gi"}})
        )),
        QosClass::Burstable
    );
    assert_eq!(
        qos_class(&one(
            json!({"requests": {"cpu": "1"}, "limits": {"cpu": "1"}})
        )),
        QosClass::Burstable,
        "guaranteed needs both cpu and memory limits"
    );
    // Only cpu and memory count.
    assert_eq!(
        qos_class(&one(json!({"requests": {"ephemeral-storage": "1Gi"}}))),
        QosClass::BestEffort
    );
}

#[test]
fn qos_counts_init_containers_and_prefers_status() {
    let p = pod_with_spec(json!({
        "initContainers": [{"name": "i", "resources": {"requests": {"memory": "1Mi"}}}],
        "containers": [{"name": "c"}],
    }));
    assert_eq!(qos_class(&p), QosClass::Burstable);
    let mut p = one(json!({}));
    p.status = Some(serde_json::from_value(json!({"qosClass": "Guaranteed"})).unwrap());
    assert_eq!(qos_class(&p), QosClass::Guaranteed);
}

#[test]
fn qos_from_pod_level_resources() {
    let p = pod_with_spec(json!({
        "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
        "containers": [{"name": "c"}],
    }));
    assert_eq!(qos_class(&p), QosClass::Guaranteed);
}

#[test]
fn cgroup_parents() {
    let n = NodeContext::default();
    assert_eq!(
        pod_cgroup_parent(&one(json!({})), &n),
        "/kubepods/besteffort/poduid-1"
    );
    assert_eq!(
        pod_cgroup_parent(&one(json!({"requests": {"cpu": "1"}})), &n),
        "/kubepods/burstable/poduid-1"
    );
    let g =
        json!({"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}});
    assert_eq!(pod_cgroup_parent(&one(g.clone()), &n), "/kubepods/poduid-1");
    let n = NodeContext {
        cgroup_root: "/deckhand/".into(),
        ..Default::default()
    };
    assert_eq!(
        pod_cgroup_parent(&one(g), &n),
        "/deckhand/kubepods/poduid-1"
    );
}

#[test]
fn shares_and_quota() {
    assert_eq!(milli_cpu_to_shares(0), 2);
    assert_eq!(milli_cpu_to_shares(1), 2);
    assert_eq!(milli_cpu_to_shares(100), 102);
    assert_eq!(milli_cpu_to_shares(1000), 1024);
    assert_eq!(milli_cpu_to_shares(1_000_000), 262_144);
    assert_eq!(milli_cpu_to_quota(0, QUOTA_PERIOD), 0);
    assert_eq!(
        milli_cpu_to_quota(5, QUOTA_PERIOD),
        1000,
        "at least MinQuotaPeriod"
    );
    assert_eq!(milli_cpu_to_quota(250, QUOTA_PERIOD), 25_000);
    assert_eq!(milli_cpu_to_quota(2000, QUOTA_PERIOD), 200_000);
}

#[test]
fn container_resources_burstable() {
    let p = one(json!({
        "requests": {"cpu": "250m", "memory": "1Gi"},
        "limits": {"cpu": "500m", "memory": "2Gi", "hugepages-2Mi": "4Mi"},
    }));
    let r = container_resources(&p, first_container(&p), &node());
    assert_eq!(r.cpu_shares, 256);
    assert_eq!(r.cpu_quota, 50_000);
    assert_eq!(r.cpu_period, 100_000);
    assert_eq!(r.memory_limit_in_bytes, 2 << 30);
    // 1000 - 1000 * 1Gi / 8Gi
    assert_eq!(r.oom_score_adj, 875);
    assert_eq!(
        r.hugepage_limits,
        vec![v1::HugepageLimit {
            page_size: "2MB".into(),
            limit: 4 << 20
        }]
    );
}

#[test]
fn container_resources_besteffort_and_guaranteed() {
    let p = one(json!({}));
    let r = container_resources(&p, first_container(&p), &node());
    assert_eq!(
        (r.cpu_shares, r.cpu_quota, r.memory_limit_in_bytes),
        (2, 0, 0)
    );
    assert_eq!(r.oom_score_adj, 1000);
    let p = one(
        json!({"requests": {"cpu": "1", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "64Mi"}}),
    );
    let r = container_resources(&p, first_container(&p), &node());
    assert_eq!((r.cpu_shares, r.cpu_quota), (1024, 100_000));
    assert_eq!(r.oom_score_adj, -997);
    // cpu limit without request: shares follow the limit.
    let p = one(json!({"limits": {"cpu": "2"}}));
    let r = container_resources(&p, first_container(&p), &node());
    assert_eq!((r.cpu_shares, r.cpu_quota), (2048, 200_000));
}

#[test]
fn oom_score_bounds() {
    let n = node();
    // Request bigger than the machine: floor at 3 (1000 + -997).
    let p = one(json!({"requests": {"memory": "16Gi"}}));
    assert_eq!(
        container_oom_score_adj(&p, first_container(&p), n.memory_capacity_bytes),
        3
    );
    // Tiny request: 1000 is reserved for BestEffort, so 999.
    let p = one(json!({"requests": {"cpu": "1"}}));
    assert_eq!(
        container_oom_score_adj(&p, first_container(&p), n.memory_capacity_bytes),
        999
    );
    // Node-critical pods are scored as Guaranteed.
    let p = pod(json!({
        "metadata": {"name": "x", "namespace": "kube-system", "uid": "u"},
        "spec": {"priorityClassName": "system-node-critical", "priority": 2000001000,
                 "containers": [{"name": "c"}]},
    }));
    assert_eq!(
        container_oom_score_adj(&p, first_container(&p), n.memory_capacity_bytes),
        -997
    );
}

#[test]
fn sidecar_oom_score_not_above_app_containers() {
    let p = pod_with_spec(json!({
        "initContainers": [{"name": "side", "restartPolicy": "Always",
                            "resources": {"requests": {"memory": "1Mi"}}}],
        "containers": [{"name": "c", "resources": {"requests": {"memory": "4Gi"}}}],
    }));
    let side = &p.spec.as_ref().unwrap().init_containers.as_ref().unwrap()[0];
    assert_eq!(container_oom_score_adj(&p, side, 8 << 30), 500);
}

#[test]
fn sandbox_resources_aggregate_and_overhead() {
    let p = pod_with_spec(json!({
        "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "2", "memory": "1Gi"}}}],
        "containers": [
            {"name": "a", "resources": {"requests": {"cpu": "250m"}, "limits": {"cpu": "500m", "memory": "256Mi"}}},
            {"name": "b", "resources": {"requests": {"cpu": "250m"}, "limits": {"cpu": "500m", "memory": "256Mi"}}},
        ],
        "overhead": {"cpu": "100m", "memory": "10Mi"},
    }));
    let (res, overhead) = sandbox_resources(&p);
    // The init container's 2 cpu beats the app containers' 500m sum.
    assert_eq!(res.cpu_shares, 2048);
    assert_eq!(res.cpu_quota, 200_000);
    assert_eq!(res.memory_limit_in_bytes, 1 << 30);
    assert_eq!(overhead.cpu_shares, 102);
    assert_eq!(overhead.cpu_quota, 10_000);
    assert_eq!(overhead.memory_limit_in_bytes, 10 << 20);
    let (_, overhead) = sandbox_resources(&one(json!({})));
    assert_eq!(overhead, v1::LinuxContainerResources::default());
}

#[test]
fn hugepage_sizes() {
    assert_eq!(hugepage_unit_size(2 << 20), "2MB");
    assert_eq!(hugepage_unit_size(1 << 30), "1GB");
    assert_eq!(hugepage_unit_size(64 << 10), "64KB");
    assert_eq!(hugepage_unit_size(1000), "1000B");
}

#[test]
fn swap_is_turned_off_as_the_kubelet_does() {
    let p = one(json!({"limits": {"memory": "64Mi"}}));
    let c = first_container(&p);
    let r = container_resources(&p, c, &node());
    assert!(
        r.unified.is_empty() && r.memory_swap_limit_in_bytes == 0,
        "no controller: untouched"
    );
    let v2 = NodeContext {
        cgroup_v2: true,
        swap_controller: true,
        ..node()
    };
    let r = container_resources(&p, c, &v2);
    assert_eq!(
        r.unified.get("memory.swap.max").map(String::as_str),
        Some("0")
    );
    let v1_node = NodeContext {
        cgroup_v2: false,
        swap_controller: true,
        ..node()
    };
    let r = container_resources(&p, c, &v1_node);
    assert_eq!(r.memory_swap_limit_in_bytes, 64 << 20);
    assert!(r.unified.is_empty());
}
