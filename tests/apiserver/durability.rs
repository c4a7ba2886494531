//! Durability and consistency: acknowledged writes survive kill -9, events
//! expire after their TTL, concurrent updates lose nothing.

use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;

use super::*;

#[tokio::test]
async fn acknowledged_writes_survive_kill_9() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = Server::start_in(tmp.path(), &[]);
    let cms: Api<ConfigMap> = Api::namespaced(s.client().await, "default");
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let writer = {
        let acked = acked.clone();
        tokio::spawn(async move {
            for i in 0.. {
                let cm: ConfigMap = serde_json::from_value(
                    json!({"metadata": {"name": format!("cm-{i}")}, "data": {"i": i.to_string()}}),
                )
                .unwrap();
                match cms.create(&PostParams::default(), &cm).await {
                    Ok(_) => acked.lock().unwrap().push(format!("cm-{i}")),
                    Err(_) => break,
                }
            }
        })
    };
    // Kill -9 in the middle of the writes, once a few are acknowledged
    // (however slowly a loaded machine makes them).
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() <= 5 {
        assert!(
            Instant::now() < deadline && !writer.is_finished(),
            "the write loop acknowledged {} writes in 60s",
            acked.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.kill9();
    let _ = tokio::time::timeout(Duration::from_secs(30), writer).await;
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 5,
        "the write loop made too little progress: {}",
        acked.len()
    );

    let s2 = Server::start_in(tmp.path(), &[]);
    let cms: Api<ConfigMap> = Api::namespaced(s2.client().await, "default");
    let names: std::collections::HashSet<String> = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    let lost: Vec<&String> = acked.iter().filter(|n| !names.contains(*n)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost after kill -9, e.g. {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(5)]
    );
    // And the store still takes writes.
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "after"}})).unwrap();
    cms.create(&PostParams::default(), &cm)
        .await
        .expect("write after restart");
}

#[test]
fn events_expire_after_ttl() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start_in(tmp.path(), &["--event-ttl", "2s"]);
    let event = "apiVersion: v1\nkind: Event\nmetadata:\n  name: e1\ninvolvedObject:\n  kind: Pod\n  name: p\n  namespace: default\nreason: Test\nmessage: hello\ntype: Normal\n";
    let out = s.kubectl_stdin(&["create", "-f", "-"], event);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = s.ok(&["get", "events"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"],
        "{table}"
    );
    assert!(
        table.contains("pod/p") && table.contains("hello"),
        "{table}"
    );
    // events.k8s.io/v1, as newer recorders (client-go, kube-rs) write them.
    let new_style = "apiVersion: events.k8s.io/v1\nkind: Event\nmetadata:\n  name: e2\neventTime: \"2026-01-01T00:00:00.000000Z\"\nregarding:\n  kind: Node\n  name: n1\nreason: Started\nnote: node up\ntype: Normal\naction: Start\nreportingController: deckhand\nreportingInstance: n1\n";
    let out = s.kubectl_stdin(&["create", "-f", "-"], new_style);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = s.ok(&["get", "events.events.k8s.io"]);
    assert!(
        table.contains("node/n1") && table.contains("node up"),
        "{table}"
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if s.ok(&["get", "events", "-o", "name"]).trim().is_empty()
            && s.ok(&["get", "events.events.k8s.io", "-o", "name"])
                .trim()
                .is_empty()
        {
            break;
        }
        assert!(Instant::now() < deadline, "event did not expire");
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_updates_lose_nothing_and_watch_sees_every_one() {
    let s = Server::start();
    let cms: Api<ConfigMap> = Api::namespaced(s.client().await, "default");
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "counter"}, "data": {"n": "0"}}))
            .unwrap();
    let created = cms.create(&PostParams::default(), &cm).await.unwrap();
    let rv = created.metadata.resource_version.clone().unwrap();
    let mut stream = cms
        .watch(
            &WatchParams::default()
                .fields("metadata.name=counter")
                .timeout(30),
            &rv,
        )
        .await
        .unwrap()
        .boxed();

    // 8 writers x 5 increments, each a read-modify-write retried on 409.
    let (writers, each) = (8, 5);
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let cms = cms.clone();
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0;
            for _ in 0..each {
                loop {
                    let mut cur = cms.get("counter").await.unwrap();
                    let n: u32 = cur.data.as_ref().unwrap()["n"].parse().unwrap();
                    cur.data = Some([("n".to_string(), (n + 1).to_string())].into());
                    match cms.replace("counter", &PostParams::default(), &cur).await {
                        Ok(_) => break,
                        Err(kube::Error::Api(e)) if e.code == 409 => conflicts += 1,
                        Err(e) => panic!("update failed: {e}"),
                    }
                }
            }
            conflicts
        }));
    }
    let mut conflicts = 0;
    for t in tasks {
        conflicts += t.await.unwrap();
    }
    let total = writers * each;
    let final_n = cms.get("counter").await.unwrap().data.unwrap()["n"].clone();
    assert_eq!(
        final_n,
        total.to_string(),
        "lost updates ({conflicts} conflicts)"
    );

    // The watch saw every update, in resourceVersion order, with the values
    // 1..=total: nothing skipped, nothing doubled.
    let mut seen = Vec::new();
    let mut last_rv = rv.parse::<u64>().unwrap();
    while seen.len() < total {
        let ev = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("event in time")
            .expect("stream open")
            .expect("event");
        let WatchEvent::Modified(cm) = ev else {
            panic!("unexpected {ev:?}");
        };
        let rv: u64 = cm.metadata.resource_version.unwrap().parse().unwrap();
        assert!(rv > last_rv, "resourceVersions out of order");
        last_rv = rv;
        seen.push(cm.data.unwrap()["n"].parse::<usize>().unwrap());
    }
    assert_eq!(seen, (1..=total).collect::<Vec<_>>());
}
