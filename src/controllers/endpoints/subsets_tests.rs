use super::*;
use serde_json::json;

fn svc(v: serde_json::Value) -> Service {
    serde_json::from_value(v).unwrap()
}

fn pod(name: &str, ip: &str, ready: bool, http: bool) -> Pod {
    let ports = if http {
        json!([{"name": "http", "containerPort": 8080}])
    } else {
        json!([])
    };
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}")},
        "spec": {"nodeName": "n1", "hostname": name, "subdomain": "web",
                 "containers": [{"name": "c", "ports": ports}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                   "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]},
    }))
    .unwrap()
}

fn web() -> Service {
    svc(
        json!({"metadata": {"name": "web", "namespace": "ns"}, "spec": {
        "clusterIP": "10.96.0.10", "selector": {"app": "web"},
        "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
                  {"name": "metrics", "port": 9090, "targetPort": 9090, "protocol": "TCP"}]}}),
    )
}

fn ips(l: &Option<Vec<EndpointAddress>>) -> Vec<&str> {
    l.iter().flatten().map(|a| a.ip.as_str()).collect()
}

fn names(s: &EndpointSubset) -> Vec<&str> {
    s.ports
        .iter()
        .flatten()
        .map(|p| p.name.as_deref().unwrap_or(""))
        .collect()
}

#[test]
fn pods_sharing_ports_share_a_subset_and_named_ports_split_them() {
    // As the stock controller answers the same: p1 serves http and metrics,
    // p2 (no http port, not ready) only metrics.
    let (p1, p2) = (
        pod("p1", "10.1.0.1", true, true),
        pod("p2", "10.1.0.2", false, false),
    );
    let out = build(&web(), &[&p1, &p2]);
    assert_eq!(out.len(), 2, "{out:#?}");
    assert_eq!(names(&out[0]), ["http"]);
    assert_eq!(ips(&out[0].addresses), ["10.1.0.1"]);
    assert_eq!(out[0].ports.as_ref().unwrap()[0].port, 8080);
    assert_eq!(names(&out[1]), ["metrics"]);
    assert_eq!(ips(&out[1].addresses), ["10.1.0.1"]);
    assert_eq!(ips(&out[1].not_ready_addresses), ["10.1.0.2"]);
    let a = &out[0].addresses.as_ref().unwrap()[0];
    assert_eq!(a.hostname.as_deref(), Some("p1"));
    assert_eq!(a.node_name.as_deref(), Some("n1"));
    assert_eq!(
        a.target_ref.as_ref().unwrap().uid.as_deref(),
        Some("uid-p1")
    );

    // Both with the named port: one subset, both ports.
    let p3 = pod("p3", "10.1.0.3", true, true);
    let out = build(&web(), &[&p3, &p1]);
    assert_eq!(out.len(), 1);
    assert_eq!(names(&out[0]), ["http", "metrics"]);
    assert_eq!(ips(&out[0].addresses), ["10.1.0.1", "10.1.0.3"]);
}

#[test]
fn publish_not_ready_puts_every_pod_in_addresses() {
    let mut s = web();
    s.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
    let p = pod("p1", "10.1.0.1", false, true);
    let out = build(&s, &[&p]);
    assert_eq!(ips(&out[0].addresses), ["10.1.0.1"]);
    assert!(out[0].not_ready_addresses.is_none());
}

#[test]
fn hostname_only_for_the_pods_subdomain() {
    let other = svc(
        json!({"metadata": {"name": "other", "namespace": "ns"}, "spec": {
        "clusterIP": "10.96.0.11", "ports": [{"port": 80, "protocol": "TCP"}]}}),
    );
    let p = pod("p1", "10.1.0.1", true, true);
    let out = build(&other, &[&p]);
    assert_eq!(out[0].addresses.as_ref().unwrap()[0].hostname, None);
    assert_eq!(out[0].ports.as_ref().unwrap()[0].port, 80);
}

#[test]
fn headless_without_ports_lists_addresses_only() {
    let h = svc(
        json!({"metadata": {"name": "web", "namespace": "ns"}, "spec": {
        "clusterIP": "None", "selector": {"app": "web"}}}),
    );
    let (p1, p2) = (
        pod("p1", "10.1.0.1", true, true),
        pod("p2", "10.1.0.2", false, true),
    );
    let out = build(&h, &[&p1, &p2]);
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(|s| s.ports.is_none()));
}

#[test]
fn repack_keeps_not_ready_over_ready_and_dedups() {
    let a = |ip: &str| EndpointAddress {
        ip: ip.into(),
        ..Default::default()
    };
    let port = |n: &str, p: i32| EndpointPort {
        name: Some(n.into()),
        port: p,
        protocol: Some("TCP".into()),
        app_protocol: None,
    };
    let out = repack(&[
        EndpointSubset {
            addresses: Some(vec![a("10.0.0.2"), a("10.0.0.1")]),
            not_ready_addresses: None,
            ports: Some(vec![port("b", 2)]),
        },
        EndpointSubset {
            addresses: Some(vec![a("10.0.0.1")]),
            not_ready_addresses: Some(vec![a("10.0.0.2")]),
            ports: Some(vec![port("a", 1), port("b", 2)]),
        },
    ]);
    assert_eq!(out.len(), 1, "{out:#?}");
    assert_eq!(names(&out[0]), ["a", "b"]);
    assert_eq!(ips(&out[0].addresses), ["10.0.0.1"]);
    assert_eq!(ips(&out[0].not_ready_addresses), ["10.0.0.2"]);
}

#[test]
fn truncation_cuts_not_ready_first() {
    let many = |n: usize, base: u32| {
        (0..n)
            .map(|i| EndpointAddress {
                ip: std::net::Ipv4Addr::from(base + i as u32).to_string(),
                ..Default::default()
            })
            .collect::<Vec<_>>()
    };
    let mut s = vec![EndpointSubset {
        addresses: Some(many(900, 0x0a00_0000)),
        not_ready_addresses: Some(many(300, 0x0b00_0000)),
        ports: None,
    }];
    assert!(truncate(&mut s));
    assert_eq!(s[0].addresses.as_ref().unwrap().len(), 900);
    assert_eq!(s[0].not_ready_addresses.as_ref().unwrap().len(), 100);
    let mut small = vec![EndpointSubset {
        addresses: Some(many(3, 1)),
        ..Default::default()
    }];
    assert!(!truncate(&mut small));
}
