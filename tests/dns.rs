//! `deckhand dns` against `deckhand apiserver` with Services and
//! EndpointSlices written by hand, queried over raw UDP. No root needed.

mod net;

use std::time::Instant;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;

use net::{ask, eventually};

const A: u16 = 1;
const PTR: u16 = 12;
const SRV: u16 = 33;

fn slice(ns: &str, svc: &str, ips: &[&str]) -> serde_json::Value {
    let eps: Vec<_> = ips
        .iter()
        .enumerate()
        .map(|(i, ip)| json!({"addresses": [ip], "hostname": format!("{svc}-{i}"), "conditions": {"ready": true}}))
        .collect();
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{svc}-abc"), "namespace": ns,
                     "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": eps})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_follow_the_apiserver_and_forward_the_rest() {
    let api = net::apiserver();
    let client = api.client().await;
    let ns = "dns-test";
    net::namespace(&client, ns).await;
    net::apply::<Service>(
        &client,
        ns,
        json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": ns},
        "spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]}}),
    )
    .await;
    net::apply::<Service>(
        &client,
        ns,
        json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "db", "namespace": ns},
        "spec": {"clusterIP": "None", "ports": [{"name": "http", "port": 80}]}}),
    )
    .await;
    net::apply::<EndpointSlice>(&client, ns, slice(ns, "db", &["10.85.9.1"])).await;

    let svc: Service = kube::Api::namespaced(client.clone(), ns)
        .get("web")
        .await
        .unwrap();
    let cluster_ip = svc
        .spec
        .unwrap()
        .cluster_ip
        .expect("a ClusterIP was allocated");

    let upstream = net::fake_upstream();
    let port = net::free_udp_port();
    let listen = format!("127.0.0.1:{port}");
    let mut dns = api.run(
        &[],
        &[
            "dns",
            "--listen",
            &listen,
            "--upstream",
            &upstream.to_string(),
        ],
        "dns.log",
    );
    let server: std::net::SocketAddr = listen.parse().unwrap();
    let name = format!("web.{ns}.svc.cluster.local");
    let got = eventually(60, "the service's A record", || {
        std::net::UdpSocket::bind("127.0.0.1:0").ok()?;
        let r = std::panic::catch_unwind(|| ask(server, &name, A)).ok()?;
        (r.answers == vec![format!("A {cluster_ip}")]).then_some(r)
    });
    assert_eq!(got.rcode, 0);

    let srv = ask(
        server,
        &format!("_http._tcp.web.{ns}.svc.cluster.local"),
        SRV,
    );
    assert_eq!(
        srv.answers,
        vec![format!("SRV 0 100 80 web.{ns}.svc.cluster.local")]
    );
    let rev: Vec<&str> = cluster_ip.split('.').rev().collect();
    let ptr = ask(server, &format!("{}.in-addr.arpa", rev.join(".")), PTR);
    assert_eq!(ptr.answers, vec![format!("PTR web.{ns}.svc.cluster.local")]);
    let nx = ask(server, &format!("nope.{ns}.svc.cluster.local"), A);
    assert_eq!((nx.rcode, nx.answers.len()), (3, 0), "NXDOMAIN in the zone");
    let k = ask(server, "kubernetes.default.svc.cluster.local", A);
    assert_eq!(k.answers.len(), 1, "the kubernetes service: {k:?}");

    // Headless: the endpoints, and a pod's hostname under the service.
    let db = ask(server, &format!("db.{ns}.svc.cluster.local"), A);
    assert_eq!(db.answers, vec!["A 10.85.9.1"]);
    let host = ask(server, &format!("db-0.db.{ns}.svc.cluster.local"), A);
    assert_eq!(host.answers, vec!["A 10.85.9.1"]);
    let srv = ask(
        server,
        &format!("_http._tcp.db.{ns}.svc.cluster.local"),
        SRV,
    );
    assert_eq!(
        srv.answers,
        vec![format!("SRV 0 100 8080 db-0.db.{ns}.svc.cluster.local")]
    );

    // An endpoint change shows at once (no cache in between).
    let t = Instant::now();
    net::apply::<EndpointSlice>(&client, ns, slice(ns, "db", &["10.85.9.1", "10.85.9.2"])).await;
    eventually(30, "the new endpoint", || {
        (ask(server, &format!("db.{ns}.svc.cluster.local"), A)
            .answers
            .len()
            == 2)
            .then_some(())
    });
    eprintln!("endpoint change visible in DNS after {:?}", t.elapsed());

    // Other names go to the upstream.
    let fwd = ask(server, "example.com", A);
    assert_eq!(fwd.answers, vec!["A 192.0.2.99"]);

    dns.stop();
    let _ = dns.log();
}
