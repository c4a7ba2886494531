use super::*;
use crate::node::podspec::testutil::{first_container, pod};
use serde_json::json;

fn the_pod() -> Pod {
    pod(json!({
        "metadata": {"name": "web", "namespace": "ns", "uid": "uid-1", "labels": {"app": "web"},
                     "annotations": {"a": "b"}, "deletionGracePeriodSeconds": 5},
        "spec": {"terminationGracePeriodSeconds": 30,
                 "initContainers": [{"name": "init", "image": "busybox"}],
                 "containers": [{"name": "c", "image": "nginx:1.27",
                                 "terminationMessagePath": "/dev/termination-log",
                                 "terminationMessagePolicy": "File",
                                 "ports": [{"containerPort": 80, "protocol": "TCP"}],
                                 "lifecycle": {"preStop": {"exec": {"command": ["sleep", "1"]}}}}]},
    }))
}

#[test]
fn hash_is_fnv32a_of_go_rendering() {
    let c: Container = serde_json::from_value(json!({"name": "c", "image": "nginx"})).unwrap();
    // FNV-32a of `[]byte{0x7b, ...}` for {"image":"nginx","name":"c"}, computed independently:
    let json = r#"{"image":"nginx","name":"c"}"#;
    let printed = format!(
        "[]byte{{{}}}",
        json.bytes()
            .map(|b| format!("0x{b:x}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut h: u32 = 2166136261;
    for b in printed.bytes() {
        h = (h ^ b as u32).wrapping_mul(16777619);
    }
    assert_eq!(container_hash(&c), h as u64);
    // Only name and image matter.
    let c2: Container =
        serde_json::from_value(json!({"name": "c", "image": "nginx", "args": ["x"]})).unwrap();
    assert_eq!(container_hash(&c), container_hash(&c2));
    let c3: Container = serde_json::from_value(json!({"name": "c", "image": "nginx:2"})).unwrap();
    assert_ne!(container_hash(&c), container_hash(&c3));
    // HTML characters are escaped as Go's encoder does.
    let mut s = String::new();
    go_json_string("a<b>&", &mut s);
    assert_eq!(s, r#""a\u003cb\u003e\u0026""#);
}

#[test]
fn sandbox_labels_and_annotations() {
    let p = the_pod();
    let l = sandbox_labels(&p);
    assert_eq!(l.get("app").map(String::as_str), Some("web"));
    assert_eq!(l.get(POD_NAME).map(String::as_str), Some("web"));
    assert_eq!(l.get(POD_NAMESPACE).map(String::as_str), Some("ns"));
    assert_eq!(l.get(POD_UID).map(String::as_str), Some("uid-1"));
    assert_eq!(
        parse_sandbox(&l),
        Some(("ns".into(), "web".into(), "uid-1".into()))
    );
    assert_eq!(
        pod_labels_of_sandbox(&l),
        HashMap::from([("app".to_string(), "web".to_string())])
    );
    assert_eq!(
        sandbox_annotations(&p).get("a").map(String::as_str),
        Some("b")
    );
    assert_eq!(parse_sandbox(&HashMap::new()), None);
}

#[test]
fn container_labels_round_trip() {
    let p = the_pod();
    let c = first_container(&p);
    let labels = container_labels(&p, c);
    assert_eq!(labels.len(), 4);
    let ann = container_annotations(&p, c, 3);
    assert_eq!(
        ann.get(CONTAINER_RESTART_COUNT).map(String::as_str),
        Some("3")
    );
    assert_eq!(
        ann.get(CONTAINER_TYPE).map(String::as_str),
        Some("container")
    );
    assert_eq!(
        ann.get(POD_TERMINATION_GRACE_PERIOD).map(String::as_str),
        Some("30")
    );
    assert_eq!(
        ann.get(POD_DELETION_GRACE_PERIOD).map(String::as_str),
        Some("5")
    );
    assert_eq!(
        ann.get(CONTAINER_PORTS).map(String::as_str),
        Some(r#"[{"containerPort":80,"protocol":"TCP"}]"#)
    );
    assert_eq!(
        ann.get(CONTAINER_PRE_STOP_HANDLER).map(String::as_str),
        Some(r#"{"exec":{"command":["sleep","1"]}}"#)
    );
    let parsed = parse_container(&labels, &ann).unwrap();
    assert_eq!(
        parsed,
        ContainerLabels {
            pod_name: "web".into(),
            pod_namespace: "ns".into(),
            pod_uid: "uid-1".into(),
            container_name: "c".into(),
            restart_count: 3,
            hash: Some(container_hash(c)),
            pod_deletion_grace_period: Some(5),
            pod_termination_grace_period: Some(30),
            termination_message_path: "/dev/termination-log".into(),
            termination_message_policy: "File".into(),
            container_type: "container".into(),
            pre_stop_handler: Some(r#"{"exec":{"command":["sleep","1"]}}"#.into()),
        }
    );
    let init = &p.spec.as_ref().unwrap().init_containers.as_ref().unwrap()[0];
    let ann = container_annotations(&p, init, 0);
    assert_eq!(ann.get(CONTAINER_TYPE).map(String::as_str), Some("init"));
    assert!(!ann.contains_key(CONTAINER_PORTS));
    assert!(parse_container(&HashMap::new(), &ann).is_none());
}
