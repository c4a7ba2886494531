//! The EndpointSlice controller: slices follow pods becoming ready and
//! not ready, in place; ports by name split pods into slices; zone from
//! the node; 150 pods make two slices of at most 100; what deckhand's
//! service proxy reads of them.

use std::collections::BTreeMap;

use deckhand::controllers::endpointslice::{self, pack};
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{ListParams, PostParams};
use serde_json::json;

use crate::endpoints::{service, web_ports};
use crate::harness::{self, Plane, Running, wait};
use crate::kubelet::{create_pod, set_pod};

async fn slices(api: &Api<EndpointSlice>, svc: &str) -> Vec<EndpointSlice> {
    let lp = ListParams::default().labels(&format!("kubernetes.io/service-name={svc}"));
    api.list(&lp).await.unwrap().items
}

/// pod name -> (ready, serving, port names) over every slice.
fn by_pod(list: &[EndpointSlice]) -> BTreeMap<String, (bool, bool, Vec<String>)> {
    let mut out = BTreeMap::new();
    for s in list {
        let ports: Vec<String> = s
            .ports
            .iter()
            .flatten()
            .map(|p| p.name.clone().unwrap_or_default())
            .collect();
        for e in &s.endpoints {
            let c = e.conditions.clone().unwrap_or_default();
            let pod = e.target_ref.as_ref().unwrap().name.clone().unwrap();
            out.insert(pod, (c.ready.unwrap(), c.serving.unwrap(), ports.clone()));
        }
    }
    out
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpointslices_against_the_stock_apiserver() {
    let Some(plane) = Plane::start("endpointslices_against_the_stock_apiserver") else {
        return;
    };
    let client = plane.client().await;
    let ns = "slices";
    harness::namespace(&client, ns).await;
    let node: Node = serde_json::from_value(json!({"metadata": {"name": "node-a",
        "labels": {"topology.kubernetes.io/zone": "zone-1"}}}))
    .unwrap();
    Api::<Node>::all(client.clone())
        .create(&PostParams::default(), &node)
        .await
        .unwrap();
    let _c = Running::spawn(endpointslice::run(client.clone(), harness::never()));
    let svcs: Api<Service> = Api::namespaced(client.clone(), ns);
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), ns);
    let pp = PostParams::default();
    let web = svcs
        .create(
            &pp,
            &service(
                "web",
                json!({"selector": {"app": "web"}, "ports": web_ports()}),
            ),
        )
        .await
        .unwrap();
    let http = json!([{"name": "http", "containerPort": 8080}]);
    create_pod(
        &client,
        ns,
        "p1",
        json!({"app": "web"}),
        http.clone(),
        Some("web"),
    )
    .await;
    create_pod(&client, ns, "p2", json!({"app": "web"}), json!([]), None).await;
    set_pod(&client, ns, "p1", "10.2.0.1", true).await;
    set_pod(&client, ns, "p2", "10.2.0.2", false).await;
    let want = BTreeMap::from([
        ("p1".to_string(), (true, true, names(&["http", "metrics"]))),
        ("p2".to_string(), (false, false, names(&["metrics"]))),
    ]);
    let list = wait("slices of web with p1 and p2", || {
        let api = api.clone();
        let want = want.clone();
        async move {
            let l = slices(&api, "web").await;
            (by_pod(&l) == want && l.len() == 2).then_some(l)
        }
    })
    .await;
    for s in &list {
        assert_eq!(s.address_type, "IPv4");
        let labels = s.metadata.labels.as_ref().unwrap();
        assert_eq!(
            labels[pack::MANAGED_BY_LABEL],
            "endpointslice-controller.k8s.io"
        );
        assert_eq!(labels["tier"], "front");
        assert!(s.metadata.name.as_ref().unwrap().starts_with("web-"));
        let owner = &s.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(owner.uid, web.metadata.uid.clone().unwrap());
        assert_eq!(owner.controller, Some(true));
        let e = &s.endpoints[0];
        assert_eq!(e.zone.as_deref(), Some("zone-1"));
        assert_eq!(e.node_name.as_deref(), Some("node-a"));
    }
    let p1 = list
        .iter()
        .flat_map(|s| &s.endpoints)
        .find(|e| e.addresses == ["10.2.0.1"])
        .unwrap();
    assert_eq!(p1.hostname.as_deref(), Some("p1"));
    // What deckhand's proxy programs from them: the ready pod on http.
    let refs: Vec<&EndpointSlice> = list.iter().collect();
    let http_eps = deckhand::proxy::model::endpoints_for(
        refs.iter().copied(),
        ns,
        "web",
        "http",
        "node-a",
        false,
    );
    assert_eq!(http_eps.len(), 1);
    assert_eq!(http_eps[0].port, 8080);

    // Readiness flips: the same slices, rewritten in place.
    let before: Vec<String> = {
        let mut v: Vec<String> = list
            .iter()
            .map(|s| s.metadata.name.clone().unwrap())
            .collect();
        v.sort();
        v
    };
    set_pod(&client, ns, "p1", "10.2.0.1", false).await;
    set_pod(&client, ns, "p2", "10.2.0.2", true).await;
    let want = BTreeMap::from([
        (
            "p1".to_string(),
            (false, false, names(&["http", "metrics"])),
        ),
        ("p2".to_string(), (true, true, names(&["metrics"]))),
    ]);
    let list = wait("slices of web after the readiness flip", || {
        let api = api.clone();
        let want = want.clone();
        async move {
            let l = slices(&api, "web").await;
            (by_pod(&l) == want).then_some(l)
        }
    })
    .await;
    let mut after: Vec<String> = list
        .iter()
        .map(|s| s.metadata.name.clone().unwrap())
        .collect();
    after.sort();
    assert_eq!(before, after, "updated in place");

    // 150 pods: two slices, none over 100.
    svcs.create(
        &pp,
        &service(
            "many",
            json!({"selector": {"app": "many"}, "ports": [{"name": "http", "port": 80}]}),
        ),
    )
    .await
    .unwrap();
    for i in 0..150u32 {
        let name = format!("m{i}");
        create_pod(&client, ns, &name, json!({"app": "many"}), json!([]), None).await;
        set_pod(
            &client,
            ns,
            &name,
            &format!("10.3.{}.{}", i / 200, i % 200 + 1),
            true,
        )
        .await;
    }
    let list = wait("150 endpoints of many", || {
        let api = api.clone();
        async move {
            let l = slices(&api, "many").await;
            let total: usize = l.iter().map(|s| s.endpoints.len()).sum();
            (total == 150).then_some(l)
        }
    })
    .await;
    let mut sizes: Vec<usize> = list.iter().map(|s| s.endpoints.len()).collect();
    sizes.sort();
    assert_eq!(sizes, [50, 100], "slices of at most 100");
}
