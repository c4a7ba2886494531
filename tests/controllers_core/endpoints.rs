//! The Endpoints controller: addresses follow pods becoming ready, not
//! ready, terminating and deleted; named target ports resolved per pod;
//! publishNotReadyAddresses; services without a selector left alone; the
//! Endpoints of a deleted service deleted.

use deckhand::controllers::endpoints;
use k8s_openapi::api::core::v1::{EndpointSubset, Endpoints, Pod, Service};
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use serde_json::{Value, json};

use crate::harness::{self, Plane, Running, wait};
use crate::kubelet::{create_pod, set_pod};

pub fn service(name: &str, spec: Value) -> Service {
    serde_json::from_value(
        json!({"metadata": {"name": name, "labels": {"tier": "front"}}, "spec": spec}),
    )
    .unwrap()
}

pub fn web_ports() -> Value {
    json!([{"name": "http", "port": 80, "targetPort": "http"},
           {"name": "metrics", "port": 9090, "targetPort": 9090}])
}

/// (port names, ready IPs, not-ready IPs) of each subset.
type Shape = Vec<(Vec<String>, Vec<String>, Vec<String>)>;

/// Sorted: the order of subsets is not part of the contract (kube orders
/// them by a hash).
fn shape(subsets: &[EndpointSubset]) -> Shape {
    let mut out: Shape = subsets
        .iter()
        .map(|s| {
            let ips = |l: &Option<Vec<k8s_openapi::api::core::v1::EndpointAddress>>| {
                l.iter().flatten().map(|a| a.ip.clone()).collect::<Vec<_>>()
            };
            (
                s.ports
                    .iter()
                    .flatten()
                    .map(|p| format!("{}:{}", p.name.clone().unwrap_or_default(), p.port))
                    .collect(),
                ips(&s.addresses),
                ips(&s.not_ready_addresses),
            )
        })
        .collect();
    out.sort();
    out
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

async fn wait_shape(api: &Api<Endpoints>, name: &str, want: Shape) -> Endpoints {
    let start = std::time::Instant::now();
    loop {
        let ep = api.get_opt(name).await.unwrap();
        let got = ep
            .as_ref()
            .map(|e| shape(e.subsets.as_deref().unwrap_or_default()));
        let mut want = want.clone();
        want.sort();
        if got.as_ref() == Some(&want) {
            return ep.unwrap();
        }
        assert!(
            start.elapsed() < harness::WAIT,
            "endpoints {name}: wanted {want:?}, have {got:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_against_the_stock_apiserver() {
    let Some(plane) = Plane::start("endpoints_against_the_stock_apiserver") else {
        return;
    };
    let client = plane.client().await;
    let ns = "eps";
    harness::namespace(&client, ns).await;
    let _c = Running::spawn(endpoints::run(client.clone(), harness::never()));
    let svcs: Api<Service> = Api::namespaced(client.clone(), ns);
    let eps: Api<Endpoints> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pp = PostParams::default();
    svcs.create(
        &pp,
        &service(
            "web",
            json!({"selector": {"app": "web"}, "ports": web_ports()}),
        ),
    )
    .await
    .unwrap();
    let http = json!([{"name": "http", "containerPort": 8080}]);
    create_pod(&client, ns, "p1", json!({"app": "web"}), http.clone(), None).await;
    create_pod(&client, ns, "p2", json!({"app": "web"}), json!([]), None).await;
    create_pod(
        &client,
        ns,
        "p3",
        json!({"app": "web"}),
        http.clone(),
        Some("web"),
    )
    .await;
    create_pod(
        &client,
        ns,
        "other",
        json!({"app": "db"}),
        http.clone(),
        None,
    )
    .await;
    for (p, ip, ready) in [
        ("p1", "10.1.0.1", true),
        ("p2", "10.1.0.2", false),
        ("p3", "10.1.0.3", true),
        ("other", "10.1.0.9", true),
    ] {
        set_pod(&client, ns, p, ip, ready).await;
    }
    // p2 has no port named http: only in the metrics subset, not ready.
    let ep = wait_shape(
        &eps,
        "web",
        vec![
            (
                strs(&["http:8080"]),
                strs(&["10.1.0.1", "10.1.0.3"]),
                vec![],
            ),
            (
                strs(&["metrics:9090"]),
                strs(&["10.1.0.1", "10.1.0.3"]),
                strs(&["10.1.0.2"]),
            ),
        ],
    )
    .await;
    let labels = ep.metadata.labels.clone().unwrap();
    assert_eq!(labels["tier"], "front", "the service's labels");
    assert_eq!(
        labels[endpoints::MANAGED_BY_LABEL],
        "endpoint-controller",
        "{labels:?}"
    );
    let subsets = ep.subsets.unwrap();
    let addrs = subsets[0].addresses.as_ref().unwrap();
    let p3 = addrs.iter().find(|a| a.ip == "10.1.0.3").unwrap();
    assert_eq!(
        p3.hostname.as_deref(),
        Some("p3"),
        "subdomain = service name"
    );
    assert_eq!(p3.node_name.as_deref(), Some("node-a"));
    let target = p3.target_ref.as_ref().unwrap();
    assert_eq!(
        (target.kind.as_deref(), target.name.as_deref()),
        (Some("Pod"), Some("p3"))
    );
    let p1 = addrs.iter().find(|a| a.ip == "10.1.0.1").unwrap();
    assert_eq!(p1.hostname, None);

    // p1 stops being ready; p2 becomes ready. (The apiserver keeps
    // transition times to the second: a second later, they are changes.)
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    set_pod(&client, ns, "p1", "10.1.0.1", false).await;
    set_pod(&client, ns, "p2", "10.1.0.2", true).await;
    let ep = wait_shape(
        &eps,
        "web",
        vec![
            (
                strs(&["http:8080"]),
                strs(&["10.1.0.3"]),
                strs(&["10.1.0.1"]),
            ),
            (
                strs(&["metrics:9090"]),
                strs(&["10.1.0.2", "10.1.0.3"]),
                strs(&["10.1.0.1"]),
            ),
        ],
    )
    .await;
    let annotations = ep.metadata.annotations.unwrap_or_default();
    assert!(
        annotations.contains_key("endpoints.kubernetes.io/last-change-trigger-time"),
        "{annotations:?}"
    );

    // p3 terminating (no kubelet finishes it): left out at once; then gone.
    pods.delete("p3", &DeleteParams::default()).await.unwrap();
    wait_shape(
        &eps,
        "web",
        vec![
            (strs(&["http:8080"]), vec![], strs(&["10.1.0.1"])),
            (
                strs(&["metrics:9090"]),
                strs(&["10.1.0.2"]),
                strs(&["10.1.0.1"]),
            ),
        ],
    )
    .await;
    pods.delete("p3", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    pods.delete("p1", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    wait_shape(
        &eps,
        "web",
        vec![(strs(&["metrics:9090"]), strs(&["10.1.0.2"]), vec![])],
    )
    .await;

    // publishNotReadyAddresses: every pod in addresses, terminating or not.
    svcs.create(
        &pp,
        &service(
            "all",
            json!({"selector": {"app": "web"}, "publishNotReadyAddresses": true,
                   "ports": [{"name": "metrics", "port": 9090}]}),
        ),
    )
    .await
    .unwrap();
    create_pod(&client, ns, "p4", json!({"app": "web"}), http.clone(), None).await;
    set_pod(&client, ns, "p4", "10.1.0.4", false).await;
    wait_shape(
        &eps,
        "all",
        vec![(
            strs(&["metrics:9090"]),
            strs(&["10.1.0.2", "10.1.0.4"]),
            vec![],
        )],
    )
    .await;

    // A service without a selector: its hand-written Endpoints stay.
    svcs.create(&pp, &service("manual", json!({"ports": [{"port": 80}]})))
        .await
        .unwrap();
    let manual: Endpoints = serde_json::from_value(json!({
        "metadata": {"name": "manual"},
        "subsets": [{"addresses": [{"ip": "192.0.2.7"}], "ports": [{"port": 80}]}],
    }))
    .unwrap();
    eps.create(&pp, &manual).await.unwrap();
    // A marker sync: the controller has handled events after the manual
    // Endpoints were written once a later change shows up elsewhere.
    set_pod(&client, ns, "p4", "10.1.0.4", true).await;
    wait_shape(
        &eps,
        "web",
        vec![
            (strs(&["http:8080"]), strs(&["10.1.0.4"]), vec![]),
            (
                strs(&["metrics:9090"]),
                strs(&["10.1.0.2", "10.1.0.4"]),
                vec![],
            ),
        ],
    )
    .await;
    let kept = eps.get("manual").await.unwrap();
    assert_eq!(
        shape(kept.subsets.as_deref().unwrap()),
        vec![(strs(&[":80"]), strs(&["192.0.2.7"]), vec![])]
    );

    // The service goes: so do its Endpoints.
    svcs.delete("web", &DeleteParams::default()).await.unwrap();
    wait("the endpoints of a deleted service to go", || {
        let eps = eps.clone();
        async move { eps.get_opt("web").await.unwrap().is_none().then_some(()) }
    })
    .await;
    assert!(eps.get_opt("all").await.unwrap().is_some());
}
