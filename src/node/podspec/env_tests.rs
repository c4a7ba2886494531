use super::*;
use crate::node::podspec::testutil::{FakeLookup, first_container, pod};
use serde_json::json;

fn svc(ns: &str, name: &str, ip: &str, ports: serde_json::Value) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": ns},
        "spec": {"clusterIP": ip, "ports": ports},
    }))
    .unwrap()
}

fn the_pod(container: serde_json::Value, enable_links: bool) -> Pod {
    pod(json!({
        "metadata": {"name": "web", "namespace": "ns", "uid": "uid-1",
                     "labels": {"app": "web", "tier": "a\"b"}, "annotations": {"note": "x"}},
        "spec": {"nodeName": "node-1", "serviceAccountName": "sa", "enableServiceLinks": enable_links,
                 "containers": [container]},
    }))
}

fn node() -> NodeContext {
    NodeContext {
        host_ips: vec!["192.168.1.5".into(), "fd00::5".into()],
        allocatable: [
            ("cpu".to_string(), Quantity("4".into())),
            ("memory".to_string(), Quantity("8Gi".into())),
        ]
        .into_iter()
        .collect(),
        ..Default::default()
    }
}

async fn env_of(
    p: &Pod,
    services: &[Service],
    lookup: &FakeLookup,
) -> Result<Vec<(String, String)>, PodSpecError> {
    let ips = vec!["10.1.0.7".to_string(), "fd01::7".to_string()];
    let ctx = ContainerContext {
        pod_ips: &ips,
        restart_count: 0,
        image_ref: "sha256:abc",
        image_user: None,
        services,
    };
    let kv = container_env(p, first_container(p), &ctx, &node(), lookup).await?;
    Ok(kv
        .into_iter()
        .map(|kv| (kv.key, String::from_utf8(kv.value).unwrap()))
        .collect())
}

fn get<'a>(env: &'a [(String, String)], k: &str) -> Option<&'a str> {
    env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

#[test]
fn expansion_rules() {
    let vars: HashMap<&str, &str> = [("A", "1"), ("B", "two")].into_iter().collect();
    let f = |n: &str| vars.get(n).map(|v| v.to_string());
    assert_eq!(expand("$(A)-$(B)", &f), "1-two");
    assert_eq!(expand("$(MISSING)", &f), "$(MISSING)");
    assert_eq!(expand("$$(A)", &f), "$(A)", "escaped");
    assert_eq!(expand("$A $", &f), "$A $");
    assert_eq!(expand("$(A", &f), "$(A");
    assert_eq!(expand("x$(A)$(A)y", &f), "x11y");
    assert_eq!(expand("é$é$(B)", &f), "é$étwo");
    assert_eq!(expand("$()", &f), "$()");
}

#[tokio::test]
async fn literal_field_and_resource_refs() {
    let c = json!({"name": "c", "image": "busybox",
    "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}},
    "env": [
        {"name": "A", "value": "a"},
        {"name": "B", "value": "$(A)-b-$(LATER)"},
        {"name": "LATER", "value": "l"},
        {"name": "EMPTY"},
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "NS", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}},
        {"name": "UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
        {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
        {"name": "LABELS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels"}}},
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
        {"name": "PODIP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "PODIPS", "valueFrom": {"fieldRef": {"fieldPath": "status.podIPs"}}},
        {"name": "HOSTIP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
        {"name": "HOSTIPS", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIPs"}}},
        {"name": "CPUREQ", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu", "divisor": "1m"}}},
        {"name": "CPUREQ1", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu"}}},
        {"name": "CPULIM", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
        {"name": "MEMLIM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
    ]});
    let p = the_pod(c, false);
    let env = env_of(&p, &[], &FakeLookup::default()).await.unwrap();
    let expect = [
        ("A", "a"),
        ("B", "a-b-$(LATER)"),
        ("LATER", "l"),
        ("EMPTY", ""),
        ("POD", "web"),
        ("NS", "ns"),
        ("UID", "uid-1"),
        ("APP", "web"),
        ("LABELS", "app=\"web\"\ntier=\"a\\\"b\""),
        ("NODE", "node-1"),
        ("SA", "sa"),
        ("PODIP", "10.1.0.7"),
        ("PODIPS", "10.1.0.7,fd01::7"),
        ("HOSTIP", "192.168.1.5"),
        ("HOSTIPS", "192.168.1.5,fd00::5"),
        ("CPUREQ", "250"),
        ("CPUREQ1", "1"),
        ("CPULIM", "4"),
        ("MEMLIM", "128"),
    ];
    let got: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(got, expect, "declaration order, no service vars");
}

#[tokio::test]
async fn bad_field_refs() {
    for (path, msg) in [
        ("spec.bogus", "field label not supported: spec.bogus"),
        (
            "metadata.name['x']",
            "field label does not support subscript: metadata.name['x']",
        ),
        ("status.phase", "unsupported fieldPath: status.phase"),
    ] {
        let c = json!({"name": "c", "env": [{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": path}}}]});
        let err = env_of(&the_pod(c, false), &[], &FakeLookup::default())
            .await
            .unwrap_err();
        assert_eq!(err.message, msg);
        assert_eq!(err.reason, "CreateContainerConfigError");
    }
}

#[tokio::test]
async fn config_map_and_secret_refs() {
    let lookup = FakeLookup::default()
        .with_config_map("ns", "cfg", &[("color", "blue"), ("size", "L")])
        .with_secret("ns", "creds", &[("password", "hunter2"), ("user", "admin")]);
    let c = json!({"name": "c",
    "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}, {"secretRef": {"name": "creds"}}],
    "env": [
        {"name": "COLOR", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "color"}}},
        {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
        {"name": "user", "value": "override-$(CFG_size)"},
        {"name": "OPT", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "nope", "optional": true}}},
        {"name": "OPT2", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k", "optional": true}}},
    ]});
    let env = env_of(&the_pod(c, false), &[], &lookup).await.unwrap();
    let got: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        got,
        [
            ("CFG_color", "blue"),
            ("CFG_size", "L"),
            ("password", "hunter2"),
            ("user", "override-L"),
            ("COLOR", "blue"),
            ("PW", "hunter2"),
        ]
    );
    // Each object is fetched once per container.
    let calls = lookup.calls.lock().unwrap().clone();
    assert_eq!(
        calls,
        ["configmap ns/cfg", "secret ns/creds", "secret ns/absent"]
    );
}

#[tokio::test]
async fn missing_objects_and_keys() {
    let lookup = FakeLookup::default()
        .with_config_map("ns", "cfg", &[("a", "1")])
        .with_secret("ns", "s", &[("a", "1")]);
    let cases = [
        (
            json!([{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "x", "key": "k"}}}]),
            "configmap \"x\" not found",
        ),
        (
            json!([{"name": "X", "valueFrom": {"secretKeyRef": {"name": "x", "key": "k"}}}]),
            "secret \"x\" not found",
        ),
        (
            json!([{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k"}}}]),
            "couldn't find key k in ConfigMap ns/cfg",
        ),
        (
            json!([{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]),
            "couldn't find key k in Secret ns/s",
        ),
    ];
    for (env, msg) in cases {
        let c = json!({"name": "c", "env": env});
        let err = env_of(&the_pod(c, false), &[], &lookup).await.unwrap_err();
        assert_eq!(
            (err.reason, err.message.as_str()),
            ("CreateContainerConfigError", msg)
        );
    }
    let c = json!({"name": "c", "envFrom": [{"configMapRef": {"name": "gone"}}]});
    let err = env_of(&the_pod(c, false), &[], &lookup).await.unwrap_err();
    assert_eq!(err.message, "configmap \"gone\" not found");
    let c = json!({"name": "c", "envFrom": [{"configMapRef": {"name": "gone", "optional": true}}]});
    assert!(
        env_of(&the_pod(c, false), &[], &lookup)
            .await
            .unwrap()
            .is_empty()
    );

    let failing = FakeLookup {
        fail: Some("apiserver unavailable".into()),
        ..Default::default()
    };
    let c = json!({"name": "c", "envFrom": [{"secretRef": {"name": "s", "optional": true}}]});
    let err = env_of(&the_pod(c, false), &[], &failing).await.unwrap_err();
    assert_eq!(
        err.message, "apiserver unavailable",
        "optional covers not-found only"
    );
}

#[tokio::test]
async fn enable_service_links_must_be_set() {
    let mut p = the_pod(json!({"name": "c"}), true);
    p.spec.as_mut().unwrap().enable_service_links = None;
    let err = env_of(&p, &[], &FakeLookup::default()).await.unwrap_err();
    assert_eq!(
        err.message,
        "nil pod.spec.enableServiceLinks encountered, cannot construct envvars"
    );
}

#[tokio::test]
async fn service_links() {
    let services = vec![
        svc(
            "default",
            "kubernetes",
            "10.96.0.1",
            json!([{"name": "https", "port": 443, "protocol": "TCP"}]),
        ),
        svc(
            "ns",
            "my-db",
            "10.96.0.20",
            json!([{"port": 5432}, {"name": "metrics", "port": 9187, "protocol": "UDP"}]),
        ),
        svc("ns", "headless", "None", json!([{"port": 80}])),
        svc("other", "elsewhere", "10.96.0.30", json!([{"port": 80}])),
    ];
    let c = json!({"name": "c", "env": [{"name": "MY_DB_SERVICE_HOST", "value": "mine"},
                                        {"name": "URL", "value": "$(MY_DB_SERVICE_HOST):$(MY_DB_SERVICE_PORT)"}]});
    let env = env_of(&the_pod(c.clone(), true), &services, &FakeLookup::default())
        .await
        .unwrap();
    assert_eq!(
        get(&env, "MY_DB_SERVICE_HOST"),
        Some("mine"),
        "the container's own wins"
    );
    assert_eq!(
        env.iter()
            .filter(|(k, _)| k == "MY_DB_SERVICE_HOST")
            .count(),
        1
    );
    assert_eq!(get(&env, "URL"), Some("mine:5432"));
    assert_eq!(get(&env, "MY_DB_SERVICE_PORT"), Some("5432"));
    assert_eq!(get(&env, "MY_DB_SERVICE_PORT_METRICS"), Some("9187"));
    assert_eq!(get(&env, "MY_DB_PORT"), Some("tcp://10.96.0.20:5432"));
    assert_eq!(
        get(&env, "MY_DB_PORT_5432_TCP"),
        Some("tcp://10.96.0.20:5432")
    );
    assert_eq!(get(&env, "MY_DB_PORT_5432_TCP_PROTO"), Some("tcp"));
    assert_eq!(get(&env, "MY_DB_PORT_5432_TCP_PORT"), Some("5432"));
    assert_eq!(get(&env, "MY_DB_PORT_5432_TCP_ADDR"), Some("10.96.0.20"));
    assert_eq!(
        get(&env, "MY_DB_PORT_9187_UDP"),
        Some("udp://10.96.0.20:9187")
    );
    assert_eq!(get(&env, "KUBERNETES_SERVICE_HOST"), Some("10.96.0.1"));
    assert_eq!(get(&env, "KUBERNETES_SERVICE_PORT"), Some("443"));
    assert_eq!(get(&env, "KUBERNETES_SERVICE_PORT_HTTPS"), Some("443"));
    assert_eq!(get(&env, "KUBERNETES_PORT"), Some("tcp://10.96.0.1:443"));
    assert_eq!(get(&env, "HEADLESS_SERVICE_HOST"), None);
    assert_eq!(get(&env, "ELSEWHERE_SERVICE_HOST"), None);

    let env = env_of(&the_pod(c, false), &services, &FakeLookup::default())
        .await
        .unwrap();
    assert_eq!(
        get(&env, "MY_DB_PORT"),
        None,
        "links off: only the master service"
    );
    assert_eq!(get(&env, "KUBERNETES_SERVICE_HOST"), Some("10.96.0.1"));
    assert_eq!(get(&env, "URL"), Some("mine:$(MY_DB_SERVICE_PORT)"));
}

#[test]
fn ipv6_service_addresses() {
    let env = service_env(
        &[svc("ns", "v6", "fd00::10", json!([{"port": 80}]))],
        "ns",
        true,
    );
    assert_eq!(
        env.get("V6_PORT").map(String::as_str),
        Some("tcp://[fd00::10]:80")
    );
}
