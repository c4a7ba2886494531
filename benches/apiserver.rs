//! The bundled apiserver under load: create 1000 pods, list them, watch 1000
//! events; latency percentiles, throughput, and the server's RSS with the
//! pods stored. No stock kube-apiserver can run here, so the peer is the
//! SLO sig-scalability publishes for kube-apiserver (printed beside ours).
//!
//!   hack/bench apiserver [--pods N]

use std::path::Path;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use kube::api::{Api, ListParams, ObjectMeta, PostParams, WatchEvent, WatchParams};

fn pod(name: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some([("bench".to_string(), "yes".to_string())].into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "c".into(),
                image: Some("registry.k8s.io/e2e-test-images/busybox:1.29-2".into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "apiserver") {
        eprintln!("usage: apiserver apiserver [--pods N]");
        return;
    }
    let pods: usize = args
        .iter()
        .position(|a| a == "--pods")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let binary = std::env::var("DECKHAND_BIN")
        .unwrap_or_else(|_| format!("{}/target/release/deckhand", env!("CARGO_MANIFEST_DIR")));
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = std::process::Command::new(&binary)
        .args(["apiserver", "--data-dir"])
        .arg(dir.path().join("data"))
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--write-kubeconfig",
        ])
        .arg(&kubeconfig)
        .args(["--log-level", "warn"])
        .spawn()
        .expect("start deckhand apiserver");
    for _ in 0..200 {
        if Path::new(&kubeconfig).exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&kubeconfig).unwrap(),
        &Default::default(),
    )
    .await
    .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let api: Api<Pod> = Api::namespaced(client, "default");
    let rss_empty = rss_kib(child.id());

    // Watch from now, in the background: time until all creations are seen.
    let watch_api = api.clone();
    let watcher = tokio::spawn(async move {
        let mut stream = watch_api
            .watch(&WatchParams::default().labels("bench=yes"), "0")
            .await
            .unwrap()
            .boxed();
        let mut seen = 0;
        let started = Instant::now();
        while let Some(event) = stream.next().await {
            if let Ok(WatchEvent::Added(_)) = event {
                seen += 1;
                if seen == pods {
                    break;
                }
            }
        }
        (seen, started.elapsed())
    });

    let mut latencies = Vec::with_capacity(pods);
    let started = Instant::now();
    for i in 0..pods {
        let t = Instant::now();
        api.create(&PostParams::default(), &pod(&format!("bench-{i}")))
            .await
            .expect("create");
        latencies.push(t.elapsed());
    }
    let create_total = started.elapsed();
    let (seen, watch_elapsed) = tokio::time::timeout(Duration::from_secs(120), watcher)
        .await
        .expect("watch saw every creation")
        .unwrap();

    let mut list_latencies = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let list = api.list(&ListParams::default()).await.unwrap();
        assert_eq!(list.items.len(), pods);
        list_latencies.push(t.elapsed());
    }
    let mut get_latencies = Vec::new();
    for i in 0..200 {
        let t = Instant::now();
        api.get(&format!("bench-{}", i % pods)).await.unwrap();
        get_latencies.push(t.elapsed());
    }
    let rss_full = rss_kib(child.id());
    let _ = child.kill();
    let _ = child.wait();

    latencies.sort();
    list_latencies.sort();
    get_latencies.sort();
    println!(
        "deckhand apiserver, {pods} pods, one client, sequential calls (durable writes: fsync per commit)"
    );
    println!(
        "create:  {:.0} pods/s   p50 {:.2} ms   p99 {:.2} ms      kube-apiserver SLO: p99 <= 1000 ms (mutating)",
        pods as f64 / create_total.as_secs_f64(),
        pct(&latencies, 50.0),
        pct(&latencies, 99.0)
    );
    println!(
        "get:     p50 {:.2} ms   p99 {:.2} ms                     kube-apiserver SLO: p99 <= 1000 ms (single object)",
        pct(&get_latencies, 50.0),
        pct(&get_latencies, 99.0)
    );
    println!(
        "list {pods}: p50 {:.1} ms   p99 {:.1} ms                  kube-apiserver SLO: p99 <= 5000 ms (namespace list)",
        pct(&list_latencies, 50.0),
        pct(&list_latencies, 99.0)
    );
    println!(
        "watch:   {seen} ADDED events, the last {:.0} ms after the watch began ({:.0} events/s while creating)",
        watch_elapsed.as_secs_f64() * 1000.0,
        seen as f64 / watch_elapsed.as_secs_f64()
    );
    println!(
        "RSS:     {} KiB empty, {} KiB with {pods} pods",
        rss_empty, rss_full
    );
}
