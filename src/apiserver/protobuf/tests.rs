use super::*;
use prost::encoding::{bytes as pb_bytes, int64, string};

fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    let mut tm = Vec::new();
    string::encode(1, &api_version.to_string(), &mut tm);
    string::encode(2, &kind.to_string(), &mut tm);
    let mut out = MAGIC.to_vec();
    pb_bytes::encode(1, &tm, &mut out);
    pb_bytes::encode(2, &raw.to_vec(), &mut out);
    out
}

fn msg(fields: &[(u32, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (tag, data) in fields {
        pb_bytes::encode(*tag, data, &mut out);
    }
    out
}

/// A ConfigMap as Go writes it: empty non-pointer strings and an empty
/// creationTimestamp are on the wire, and must not show in the JSON.
#[test]
fn decodes_configmap_like_go_encodes_it() {
    let meta = msg(&[(1, b"cm1".to_vec()), (2, Vec::new()), (8, Vec::new())]);
    let entry = msg(&[(1, b"a".to_vec()), (2, b"b".to_vec())]);
    let cm = msg(&[(1, meta), (2, entry)]);
    let body = envelope("v1", "ConfigMap", &cm);
    let v = decode(&body, "v1", "ConfigMap").unwrap();
    assert_eq!(
        v,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm1"}, "data": {"a": "b"}})
    );
    assert!(decode(&body[..body.len() - 3], "v1", "ConfigMap").is_err());
    assert!(decode(b"garbage", "v1", "ConfigMap").is_err());
    assert!(decode(&body, "v1", "Secret").is_err());
}

/// Pointer fields keep their zero values (a grace period of 0, a false
/// `ready`); non-pointer `omitempty` ones drop theirs.
#[test]
fn keeps_zero_pointers_and_drops_zero_values() {
    // PodSpec: restartPolicy (3) "" dropped; terminationGracePeriodSeconds
    // (4, *int64) 0 kept; hostNetwork (11, bool omitempty) false dropped.
    let mut spec = Vec::new();
    string::encode(3, &String::new(), &mut spec);
    int64::encode(4, &0, &mut spec);
    prost::encoding::bool::encode(11, &false, &mut spec);
    let pod = msg(&[(1, msg(&[(1, b"p".to_vec())])), (2, spec)]);
    let v = decode(&envelope("v1", "Pod", &pod), "v1", "Pod").unwrap();
    assert_eq!(v["spec"], json!({"terminationGracePeriodSeconds": 0}));

    // EndpointConditions.ready (*bool) false kept.
    let mut cond = Vec::new();
    prost::encoding::bool::encode(1, &false, &mut cond);
    let endpoint = msg(&[(1, b"10.0.0.1".to_vec()), (2, cond)]);
    let mut slice = msg(&[(1, msg(&[(1, b"s".to_vec())])), (2, endpoint)]);
    string::encode(4, &"IPv4".to_string(), &mut slice);
    let v = decode(
        &envelope("discovery.k8s.io/v1", "EndpointSlice", &slice),
        "discovery.k8s.io/v1",
        "EndpointSlice",
    )
    .unwrap();
    assert_eq!(
        v["endpoints"],
        json!([{"addresses": ["10.0.0.1"], "conditions": {"ready": false}}])
    );
    assert_eq!(v["addressType"], "IPv4");
}

/// Every special form survives JSON -> protobuf -> JSON unchanged.
#[test]
fn round_trips_special_types() {
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default", "uid": "u1", "resourceVersion": "7",
            "generation": 3, "creationTimestamp": "2026-01-02T03:04:05Z",
            "labels": {"app": "x"},
            "managedFields": [{"manager": "kubectl", "operation": "Apply", "apiVersion": "v1",
                "time": "2026-01-02T03:04:05Z", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:labels": {"f:app": {}}}}}]},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "c", "image": "busybox",
                "ports": [{"containerPort": 80, "protocol": "TCP"}],
                "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}},
                "readinessProbe": {"httpGet": {"port": "http", "path": "/"}, "periodSeconds": 5},
                "livenessProbe": {"tcpSocket": {"port": 8080}}}],
            "volumes": [{"name": "v", "configMap": {"name": "cm", "defaultMode": 420}},
                        {"name": "e", "emptyDir": {}}],
            "securityContext": {"runAsUser": 0}
        },
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True",
            "lastTransitionTime": "2026-01-02T03:04:06Z"}]}
    });
    let body = encode(&pod).unwrap();
    assert!(body.starts_with(MAGIC));
    let back = decode(&body, "v1", "Pod").unwrap();
    assert_eq!(back, pod);

    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
        "data": {"k": "aGVsbG8="}, "type": "Opaque", "immutable": false});
    assert_eq!(
        decode(&encode(&secret).unwrap(), "v1", "Secret").unwrap(),
        secret
    );

    let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "n1", "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": "n1", "leaseDurationSeconds": 40,
                 "renewTime": "2026-01-02T03:04:05.123456Z"}});
    let back = decode(&encode(&lease).unwrap(), "coordination.k8s.io/v1", "Lease").unwrap();
    assert_eq!(back, lease);

    let status = json!({"apiVersion": "v1", "kind": "Status", "metadata": {},
        "status": "Failure", "message": "pods \"x\" not found", "reason": "NotFound",
        "details": {"name": "x", "kind": "pods"}, "code": 404});
    assert_eq!(
        decode(&encode(&status).unwrap(), "v1", "Status").unwrap(),
        status
    );

    // Items of a list carry no type in protobuf (nor in kube's JSON).
    let mut item = pod.clone();
    item.as_object_mut()
        .unwrap()
        .retain(|k, _| k != "apiVersion" && k != "kind");
    let list = json!({"apiVersion": "v1", "kind": "PodList",
        "metadata": {"resourceVersion": "9"}, "items": [item]});
    assert_eq!(
        decode(&encode(&list).unwrap(), "v1", "PodList").unwrap(),
        list
    );
}

#[test]
fn delete_options_from_any_group() {
    let mut opts = Vec::new();
    int64::encode(1, &0, &mut opts);
    string::encode(4, &"Background".to_string(), &mut opts);
    for gv in ["v1", "coordination.k8s.io/v1", "meta.k8s.io/v1"] {
        let v = decode_delete_options(&envelope(gv, "DeleteOptions", &opts)).unwrap();
        assert_eq!(
            v,
            json!({"gracePeriodSeconds": 0, "propagationPolicy": "Background"})
        );
    }
    assert!(decode_delete_options(&envelope("v1", "Pod", &opts)).is_err());
}

#[test]
fn watch_frames_are_length_prefixed_events() {
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
    let frame = watch_frame("ADDED", &cm).unwrap();
    let len = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
    assert_eq!(len, frame.len() - 4);
    let desc = pool()
        .unwrap()
        .get_message_by_name(&transcode::meta_message("WatchEvent"))
        .unwrap();
    let event = DynamicMessage::decode(desc, &frame[4..]).unwrap();
    assert_eq!(
        event.get_field_by_number(1).unwrap().as_str(),
        Some("ADDED")
    );
    let Some(PValue::Message(ext)) = event.get_field_by_number(2).as_deref().cloned() else {
        panic!("no object");
    };
    let raw = ext
        .get_field_by_number(1)
        .unwrap()
        .as_bytes()
        .unwrap()
        .to_vec();
    assert_eq!(decode(&raw, "v1", "ConfigMap").unwrap(), cm);
}

#[test]
fn negotiation() {
    assert!(wants_protobuf("application/vnd.kubernetes.protobuf, */*"));
    assert!(wants_protobuf(
        "application/vnd.kubernetes.protobuf;stream=watch"
    ));
    assert!(!wants_protobuf(
        "application/json, application/vnd.kubernetes.protobuf"
    ));
    assert!(!wants_protobuf(
        "application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io"
    ));
    assert!(!wants_protobuf(""));
}

/// Bad bytes are errors, never panics.
#[test]
fn garbage_is_refused() {
    for body in [
        &b"k8s\0"[..],
        b"k8s\0\x12\xff\xff\xff\xff\x0f",
        b"k8s\0\x0a\x02\x0a",
        b"",
    ] {
        let _ = decode(body, "v1", "Pod");
        let _ = decode_delete_options(body);
    }
    let wrong = json!({"apiVersion": "v1", "kind": "Pod", "spec": {"containers": "x"}});
    assert!(encode(&wrong).is_err());
    let unknown = json!({"apiVersion": "v1", "kind": "NoSuchKind"});
    assert!(encode(&unknown).is_err());
}
