//! The zone's answers over a fixed set of objects.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::wire::{RData, TYPE_A, TYPE_AAAA, TYPE_PTR, TYPE_SRV};
use super::zone::{Answer, ZoneData, answer};

struct Fixed(Vec<Arc<Service>>, Vec<Arc<EndpointSlice>>);

impl ZoneData for Fixed {
    fn service(&self, ns: &str, name: &str) -> Option<Arc<Service>> {
        self.0
            .iter()
            .find(|s| {
                s.metadata.namespace.as_deref() == Some(ns)
                    && s.metadata.name.as_deref() == Some(name)
            })
            .cloned()
    }
    fn services(&self) -> Vec<Arc<Service>> {
        self.0.clone()
    }
    fn slices(&self) -> Vec<Arc<EndpointSlice>> {
        self.1.clone()
    }
}

fn data() -> Fixed {
    let svc = |v: serde_json::Value| Arc::new(serde_json::from_value::<Service>(v).unwrap());
    let slice =
        |v: serde_json::Value| Arc::new(serde_json::from_value::<EndpointSlice>(v).unwrap());
    Fixed(
        vec![
            svc(
                serde_json::json!({"metadata": {"name": "web", "namespace": "ns1"},
                "spec": {"clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20"],
                         "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}),
            ),
            svc(
                serde_json::json!({"metadata": {"name": "db", "namespace": "ns1"},
                "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}}),
            ),
        ],
        vec![slice(serde_json::json!({
        "metadata": {"name": "db-x", "namespace": "ns1",
                     "labels": {"kubernetes.io/service-name": "db"}},
        "addressType": "IPv4",
        "ports": [{"name": "pg", "port": 5433}],
        "endpoints": [
            {"addresses": ["10.85.0.5"], "hostname": "db-0", "conditions": {"ready": true}},
            {"addresses": ["10.85.0.6"], "conditions": {"ready": false}},
            {"addresses": ["10.85.0.7"]}
        ]}))],
    )
}

fn records(a: Answer) -> Vec<RData> {
    match a {
        Answer::Records(r) => r.into_iter().map(|r| r.data).collect(),
        other => panic!("not records: {other:?}"),
    }
}

const D: &str = "cluster.local";

#[test]
fn service_addresses() {
    let d = data();
    let a = records(answer(&d, D, "web.ns1.svc.cluster.local", TYPE_A));
    assert_eq!(a, vec![RData::A("10.96.0.20".parse().unwrap())]);
    assert_eq!(
        records(answer(&d, D, "web.ns1.svc.cluster.local", TYPE_AAAA)),
        vec![]
    );
    // Headless: the ready endpoints.
    let a = records(answer(&d, D, "db.ns1.svc.cluster.local", TYPE_A));
    assert_eq!(
        a,
        vec![
            RData::A("10.85.0.5".parse().unwrap()),
            RData::A("10.85.0.7".parse().unwrap())
        ]
    );
    let a = records(answer(&d, D, "db-0.db.ns1.svc.cluster.local", TYPE_A));
    assert_eq!(a, vec![RData::A("10.85.0.5".parse().unwrap())]);
}

#[test]
fn srv_and_ptr() {
    let d = data();
    let a = records(answer(
        &d,
        D,
        "_http._tcp.web.ns1.svc.cluster.local",
        TYPE_SRV,
    ));
    assert_eq!(
        a,
        vec![RData::Srv {
            priority: 0,
            weight: 100,
            port: 80,
            target: "web.ns1.svc.cluster.local".into()
        }]
    );
    let a = records(answer(&d, D, "_pg._tcp.db.ns1.svc.cluster.local", TYPE_SRV));
    assert_eq!(a.len(), 2);
    assert!(a.contains(&RData::Srv {
        priority: 0,
        weight: 100,
        port: 5433,
        target: "db-0.db.ns1.svc.cluster.local".into()
    }));
    let a = records(answer(&d, D, "20.0.96.10.in-addr.arpa", TYPE_PTR));
    assert_eq!(a, vec![RData::Ptr("web.ns1.svc.cluster.local".into())]);
    assert_eq!(
        answer(&d, D, "1.0.0.10.in-addr.arpa", TYPE_PTR),
        Answer::NotOurs
    );
}

#[test]
fn other_names() {
    let d = data();
    for n in [
        "nope.ns1.svc.cluster.local",
        "web.ns1.ns1.svc.cluster.local",
        "cluster.local",
        "x.cluster.local",
        "_nope._tcp.web.ns1.svc.cluster.local",
        "db-9.db.ns1.svc.cluster.local",
    ] {
        assert_eq!(answer(&d, D, n, TYPE_A), Answer::NxDomain, "{n}");
    }
    assert_eq!(answer(&d, D, "example.com", TYPE_A), Answer::NotOurs);
    assert_eq!(answer(&d, D, "notcluster.local", TYPE_A), Answer::NotOurs);
}
