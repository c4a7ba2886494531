//! A typed protobuf client against `deckhand apiserver`, as client-go is by
//! default: bodies are k8s-pb's prost types (generated from the same
//! generated.proto as client-go's) filled the way Go's encoder writes
//! them (non-pointer fields present even when zero), sent and accepted as
//! `application/vnd.kubernetes.protobuf`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_pb::api::coordination::v1 as coord;
use k8s_pb::api::core::v1 as core;
use k8s_pb::api::discovery::v1 as discovery;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use prost::Message;
use reqwest::Method;
use serde_json::Value;

use super::{ADMIN_TOKEN, Server};

const PB: &str = "application/vnd.kubernetes.protobuf";
/// What client-go sends as Accept with its default content type.
const PB_ACCEPT: &str = "application/vnd.kubernetes.protobuf, */*";

fn envelope<M: Message>(api_version: &str, kind: &str, m: &M) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        }),
        raw: Some(m.encode_to_vec()),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut out = b"k8s\0".to_vec();
    out.extend(unknown.encode_to_vec());
    out
}

/// Open a protobuf body: its type and its object.
fn open<M: Message + Default>(body: &[u8]) -> (String, M) {
    let rest = body
        .strip_prefix(b"k8s\0")
        .unwrap_or_else(|| panic!("no k8s envelope: {:?}", String::from_utf8_lossy(body)));
    let unknown = Unknown::decode(rest).expect("runtime.Unknown");
    let tm = unknown.type_meta.unwrap_or_default();
    let m = M::decode(unknown.raw.unwrap_or_default().as_slice()).expect("object message");
    (
        format!(
            "{} {}",
            tm.api_version.unwrap_or_default(),
            tm.kind.unwrap_or_default()
        ),
        m,
    )
}

fn q(s: &str) -> Quantity {
    Quantity {
        string: Some(s.into()),
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// ObjectMeta as Go writes it: every non-pointer field, zero or not.
fn go_meta(name: &str, namespace: &str) -> meta::ObjectMeta {
    meta::ObjectMeta {
        name: Some(name.into()),
        generate_name: Some(String::new()),
        namespace: Some(namespace.into()),
        self_link: Some(String::new()),
        uid: Some(String::new()),
        resource_version: Some(String::new()),
        generation: Some(0),
        creation_timestamp: Some(meta::Time::default()),
        ..Default::default()
    }
}

impl Server {
    /// A protobuf request as the admin; returns (status, Content-Type, body).
    async fn pb(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> (u16, String, Vec<u8>) {
        let mut req = self
            .http()
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(ADMIN_TOKEN)
            .header("Accept", PB_ACCEPT);
        if let Some(b) = body {
            req = req.header("Content-Type", PB).body(b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        (status, ct, resp.bytes().await.expect("body").to_vec())
    }

    async fn get_json(&self, path: &str) -> Value {
        let (code, v) = self
            .call(
                Method::GET,
                path,
                Some(ADMIN_TOKEN),
                "application/json",
                Vec::new(),
            )
            .await;
        assert_eq!(code, 200, "GET {path}: {v}");
        v
    }
}

fn ready_node(name: &str) -> core::Node {
    let t = meta::Time {
        seconds: Some(now()),
        nanos: Some(0),
    };
    core::Node {
        metadata: Some(go_meta(name, "")),
        spec: Some(core::NodeSpec {
            pod_cidr: Some(String::new()),
            provider_id: Some(String::new()),
            unschedulable: Some(false),
            ..Default::default()
        }),
        status: Some(core::NodeStatus {
            capacity: BTreeMap::from([("cpu".into(), q("4")), ("memory".into(), q("8Gi"))]),
            phase: Some(String::new()),
            conditions: vec![core::NodeCondition {
                r#type: Some("Ready".into()),
                status: Some("True".into()),
                last_heartbeat_time: Some(t),
                last_transition_time: Some(t),
                reason: Some("KubeletReady".into()),
                message: Some(String::new()),
            }],
            ..Default::default()
        }),
    }
}

/// Create, get, update, list, watch and delete with protobuf bodies and
/// replies, as the stock kubelet and controllers do.
#[tokio::test]
async fn typed_protobuf_client_crud_watch_and_delete() {
    let s = Server::start();

    // Create a Node; the reply is protobuf too.
    let (code, ct, body) = s
        .pb(
            Method::POST,
            "/api/v1/nodes",
            Some(envelope("v1", "Node", &ready_node("pb1"))),
        )
        .await;
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&body));
    assert_eq!(ct, PB);
    let (ty, node): (_, core::Node) = open(&body);
    assert_eq!(ty, "v1 Node");
    let m = node.metadata.clone().unwrap();
    assert_eq!(m.name.as_deref(), Some("pb1"));
    assert!(!m.uid.unwrap_or_default().is_empty());
    assert!(m.creation_timestamp.and_then(|t| t.seconds).unwrap_or(0) > 0);
    let cap = &node.status.as_ref().unwrap().capacity;
    assert_eq!(cap["memory"].string.as_deref(), Some("8Gi"));

    // The JSON form is kube's: Go's zero non-pointer fields are not there.
    let json = s.get_json("/api/v1/nodes/pb1").await;
    assert_eq!(json["status"]["capacity"]["cpu"], "4");
    assert!(json["spec"].get("unschedulable").is_none(), "{json}");
    assert!(json["metadata"].get("generateName").is_none(), "{json}");
    let hb = json["status"]["conditions"][0]["lastHeartbeatTime"]
        .as_str()
        .unwrap();
    assert!(hb.ends_with('Z') && hb.len() == 20, "{hb}");

    // Update what was read, as a typed client does.
    let mut node = node;
    let md = node.metadata.as_mut().unwrap();
    let rv = md.resource_version.clone().unwrap();
    md.labels.insert("tier".into(), "pb".into());
    let (code, _, body) = s
        .pb(
            Method::PUT,
            "/api/v1/nodes/pb1",
            Some(envelope("v1", "Node", &node)),
        )
        .await;
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let (_, node): (_, core::Node) = open(&body);
    let md = node.metadata.unwrap();
    assert_eq!(md.labels.get("tier").map(String::as_str), Some("pb"));
    assert_ne!(md.resource_version.unwrap(), rv);

    // A Lease with MicroTime and pointer ints, as leader election writes it.
    let lease = coord::Lease {
        metadata: Some(go_meta("pb1", "kube-node-lease")),
        spec: Some(coord::LeaseSpec {
            holder_identity: Some("pb1".into()),
            lease_duration_seconds: Some(40),
            renew_time: Some(meta::MicroTime {
                seconds: Some(now()),
                nanos: Some(123_456_000),
            }),
            lease_transitions: Some(0),
            ..Default::default()
        }),
    };
    let (code, _, body) = s
        .pb(
            Method::POST,
            "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
            Some(envelope("coordination.k8s.io/v1", "Lease", &lease)),
        )
        .await;
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&body));
    let json = s
        .get_json("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/pb1")
        .await;
    assert_eq!(json["spec"]["leaseTransitions"], 0, "{json}");
    assert!(
        json["spec"]["renewTime"]
            .as_str()
            .unwrap()
            .ends_with(".123456Z"),
        "{json}"
    );

    // A pointer's zero stays (ready: false); a non-pointer's goes.
    let slice = discovery::EndpointSlice {
        metadata: Some(go_meta("web-1", "default")),
        address_type: Some("IPv4".into()),
        endpoints: vec![discovery::Endpoint {
            addresses: vec!["10.1.0.5".into()],
            conditions: Some(discovery::EndpointConditions {
                ready: Some(false),
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    };
    let (code, _, body) = s
        .pb(
            Method::POST,
            "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices",
            Some(envelope("discovery.k8s.io/v1", "EndpointSlice", &slice)),
        )
        .await;
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&body));
    let json = s
        .get_json("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/web-1")
        .await;
    assert_eq!(
        json["endpoints"][0]["conditions"],
        serde_json::json!({"ready": false})
    );

    // A Pod: restartPolicy "" (non-pointer) is defaulted, a grace period of
    // 0 (pointer) kept, the volume's inline source in place.
    let pod = core::Pod {
        metadata: Some(go_meta("p1", "default")),
        spec: Some(core::PodSpec {
            containers: vec![core::Container {
                name: Some("c".into()),
                image: Some("busybox".into()),
                resources: Some(core::ResourceRequirements {
                    limits: BTreeMap::from([("cpu".into(), q("250m"))]),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            restart_policy: Some(String::new()),
            termination_grace_period_seconds: Some(0),
            volumes: vec![core::Volume {
                name: Some("scratch".into()),
                volume_source: Some(core::VolumeSource {
                    empty_dir: Some(core::EmptyDirVolumeSource {
                        medium: Some(String::new()),
                        size_limit: None,
                    }),
                    ..Default::default()
                }),
            }],
            node_name: Some("pb1".into()),
            ..Default::default()
        }),
        status: Some(core::PodStatus::default()),
    };
    let (code, _, body) = s
        .pb(
            Method::POST,
            "/api/v1/namespaces/default/pods",
            Some(envelope("v1", "Pod", &pod)),
        )
        .await;
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&body));
    let json = s.get_json("/api/v1/namespaces/default/pods/p1").await;
    assert_eq!(json["spec"]["restartPolicy"], "Always", "{json}");
    assert_eq!(json["spec"]["terminationGracePeriodSeconds"], 0, "{json}");
    assert_eq!(
        json["spec"]["volumes"][0],
        serde_json::json!({"name": "scratch", "emptyDir": {}})
    );
    assert_eq!(
        json["spec"]["containers"][0]["resources"]["limits"]["cpu"],
        "250m"
    );

    // Lists are protobuf lists.
    let (code, _, body) = s
        .pb(Method::GET, "/api/v1/namespaces/default/pods", None)
        .await;
    assert_eq!(code, 200);
    let (ty, list): (_, core::PodList) = open(&body);
    assert_eq!(ty, "v1 PodList");
    assert_eq!(list.items.len(), 1);
    assert!(
        !list
            .metadata
            .unwrap()
            .resource_version
            .unwrap_or_default()
            .is_empty()
    );

    // Watch: length-prefixed WatchEvents, each object a full body.
    let resp = s
        .http()
        .get(format!(
            "{}/api/v1/namespaces/default/configmaps?watch=1",
            s.url
        ))
        .bearer_auth(ADMIN_TOKEN)
        .header("Accept", PB_ACCEPT)
        .send()
        .await
        .expect("watch");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "application/vnd.kubernetes.protobuf;stream=watch"
    );
    let cm = core::ConfigMap {
        metadata: Some(go_meta("watched", "default")),
        data: BTreeMap::from([("k".into(), "v".into())]),
        binary_data: BTreeMap::from([("b".into(), vec![0u8, 1, 2])]),
        immutable: None,
    };
    let (code, _, body) = s
        .pb(
            Method::POST,
            "/api/v1/namespaces/default/configmaps",
            Some(envelope("v1", "ConfigMap", &cm)),
        )
        .await;
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&body));
    let mut stream = resp.bytes_stream();
    let mut buf = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let seen = 'watch: loop {
        while buf.len() >= 4 {
            let len = u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize;
            if buf.len() < 4 + len {
                break;
            }
            let frame: Vec<u8> = buf.drain(..4 + len).skip(4).collect();
            let event = meta::WatchEvent::decode(frame.as_slice()).expect("WatchEvent");
            let raw = event.object.and_then(|o| o.raw).unwrap_or_default();
            let (ty, got): (_, core::ConfigMap) = open(&raw);
            assert_eq!(ty, "v1 ConfigMap");
            if got.metadata.as_ref().and_then(|m| m.name.as_deref()) == Some("watched") {
                break 'watch (event.r#type.unwrap_or_default(), got);
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.next()).await {
            Ok(Some(Ok(chunk))) => buf.extend_from_slice(&chunk),
            other => panic!("no watch event for the new configmap: {other:?}"),
        }
    };
    assert_eq!(seen.0, "ADDED");
    assert_eq!(seen.1.binary_data["b"], vec![0u8, 1, 2]);

    // Delete with protobuf DeleteOptions: grace 0 removes the pod now.
    let opts = meta::DeleteOptions {
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    let (code, _, body) = s
        .pb(
            Method::DELETE,
            "/api/v1/namespaces/default/pods/p1",
            Some(envelope("v1", "DeleteOptions", &opts)),
        )
        .await;
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    // Errors are protobuf Status objects.
    let (code, ct, body) = s
        .pb(Method::GET, "/api/v1/namespaces/default/pods/p1", None)
        .await;
    assert_eq!((code, ct.as_str()), (404, PB));
    let (ty, status): (_, meta::Status) = open(&body);
    assert_eq!(ty, "v1 Status");
    assert_eq!(status.reason.as_deref(), Some("NotFound"));
    assert_eq!(status.code, Some(404));

    // DeleteCollection with a body in another group's version.
    let (code, _, body) = s
        .pb(
            Method::DELETE,
            "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
            Some(envelope(
                "coordination.k8s.io/v1",
                "DeleteOptions",
                &meta::DeleteOptions::default(),
            )),
        )
        .await;
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let (_, leases): (_, coord::LeaseList) = open(&body);
    assert_eq!(leases.items.len(), 1);

    // A body of the wrong kind is refused, not misread.
    let (code, ct, body) = s
        .pb(
            Method::POST,
            "/api/v1/namespaces/default/configmaps",
            Some(envelope("v1", "Secret", &core::Secret::default())),
        )
        .await;
    assert_eq!(
        (code, ct.as_str()),
        (400, PB),
        "{}",
        String::from_utf8_lossy(&body)
    );
}
