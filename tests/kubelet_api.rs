//! The kubelet API that `deckhand node` serves, end to end: the real
//! `deckhand apiserver` (and the stock kube-apiserver when ../shared/k8s is
//! there) proxying /usr/bin/kubectl's logs, exec, cp and port-forward to a
//! real node on real containerd, and the API's own authn/authz answers
//! (curl straight at the node's port). Run as root, holding
//! /tmp/deckhand-integration.lock.
//!
//! Each test takes its own node name and CNI subnet 10.231.<index>.0/24.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::node::{ControlPlane, DeckhandApiserver, KUBECTL, NodeAgent, Runtime, wait_for};
use serde_json::{Value, json};

const BUSYBOX: &str = common::BUSYBOX;
const OCTET: u8 = 231;
const TOKEN: &str = "kapi10-served-by-httpd";

fn busybox(name: &str, script: &str) -> Value {
    json!({"name": name, "image": BUSYBOX, "imagePullPolicy": "IfNotPresent",
           "command": ["sh", "-c", script]})
}

/// One pod with the containers every check needs: `main` (three lines of
/// output, then idle: logs, exec, cp), `ticker` (a line every 200 ms:
/// follow), `short` (one line, then exits 1 after 2 s: --previous, and a
/// follow that ends) and `web` (httpd on 8080: port-forward).
fn test_pod(node: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "talk", "namespace": "default"},
    "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1, "containers": [
        // The log driver reads stdout and stderr apart: a second between
        // the lines keeps their order even when a loaded host runs it late.
        busybox("main", "echo one; sleep 1; echo two >&2; sleep 1; echo three; exec sleep 3600"),
        busybox("ticker", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done"),
        busybox("short", "echo run; sleep 2; exit 1"),
        busybox("web", &format!(
            "mkdir -p /www && echo {TOKEN} > /www/index.html && exec httpd -f -p 8080 -h /www")),
    ]}})
}

fn kubectl(plane: &dyn ControlPlane) -> Command {
    let mut c = Command::new(KUBECTL);
    c.arg("--kubeconfig")
        .arg(plane.admin_kubeconfig())
        .arg("--cache-dir")
        .arg(plane.dir().join("kubectl-cache"));
    c
}

fn container_running(pod: &Value, name: &str) -> bool {
    pod["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["name"] == name && c["state"]["running"].is_object())
}

fn restart_count(pod: &Value, name: &str) -> i64 {
    pod["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == name)
        .and_then(|c| c["restartCount"].as_i64())
        .unwrap_or(0)
}

/// `curl` at the node's port: (status code, body). `auth` are extra curl
/// arguments (a client certificate, a bearer token).
fn curl(node: &NodeAgent, path: &str, auth: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sk", "--max-time", "20", "-w", "\n%{http_code}"])
        .args(auth)
        .arg(format!("https://127.0.0.1:{}{path}", node.port))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn wait_talk_running(plane: &dyn ControlPlane, node: &NodeAgent) {
    wait_for(
        "pod talk's containers to run",
        Duration::from_secs(120),
        || {
            format!(
                "pod: {}\nnode log:\n{}",
                plane
                    .pod("talk")
                    .map(|p| p["status"].to_string())
                    .unwrap_or_default(),
                node.log()
            )
        },
        || {
            let p = plane.pod("talk")?;
            ["main", "ticker", "web"]
                .iter()
                .all(|c| container_running(&p, c))
                .then_some(())
        },
    );
}

fn logs_and_exec(plane: &dyn ControlPlane, node: &NodeAgent) {
    // Logs: the three lines (stdout and stderr, in order), then the options.
    let last = std::cell::RefCell::new(String::new());
    let all = wait_for(
        "main's three lines",
        Duration::from_secs(60),
        || format!("last answer: {}\n{}", last.borrow(), node.log()),
        || {
            let out = plane.kubectl(&["logs", "talk", "-c", "main"]);
            let s = String::from_utf8_lossy(&out.stdout).into_owned();
            *last.borrow_mut() = format!("{s:?} {}", String::from_utf8_lossy(&out.stderr));
            (s == "one\ntwo\nthree\n").then_some(s)
        },
    );
    assert_eq!(all, "one\ntwo\nthree\n");
    assert_eq!(
        plane.ok(&["logs", "talk", "-c", "main", "--tail=1"]),
        "three\n"
    );
    assert_eq!(plane.ok(&["logs", "talk", "-c", "main", "--tail=0"]), "");
    assert_eq!(
        plane.ok(&["logs", "talk", "-c", "main", "--limit-bytes=6"]),
        "one\ntw"
    );
    assert_eq!(plane.ok(&["logs", "talk", "-c", "main", "--since=1h"]), all);
    let future = "2099-01-01T00:00:00Z";
    assert_eq!(
        plane.ok(&[
            "logs",
            "talk",
            "-c",
            "main",
            &format!("--since-time={future}")
        ]),
        ""
    );
    let stamped = plane.ok(&["logs", "talk", "-c", "main", "--timestamps"]);
    let lines: Vec<&str> = stamped.lines().collect();
    assert_eq!(lines.len(), 3, "{stamped}");
    for (line, want) in lines.iter().zip(["one", "two", "three"]) {
        let (ts, rest) = line.split_once(' ').expect("a timestamp first");
        assert_eq!(rest, want);
        assert!(ts.ends_with('Z') && ts.contains('T'), "RFC 3339: {ts}");
    }

    // Follow: new lines arrive while the stream is open.
    let mut follow = kubectl(plane)
        .args(["logs", "-f", "talk", "-c", "ticker", "--tail=1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(follow.stdout.take().unwrap());
    let mut seen = vec![];
    for _ in 0..4 {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        seen.push(line.trim().to_string());
    }
    let _ = follow.kill();
    let _ = follow.wait();
    let numbers: Vec<u64> = seen
        .iter()
        .map(|l| l.strip_prefix("tick ").expect(l).parse().unwrap())
        .collect();
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{seen:?}");

    // --previous after a restart; a follow on the running instance ends
    // when it exits, as the kubelet's does.
    wait_for(
        "short to restart",
        Duration::from_secs(60),
        || node.log(),
        || plane.pod("talk").filter(|p| restart_count(p, "short") >= 1),
    );
    assert_eq!(
        plane.ok(&["logs", "talk", "-c", "short", "--previous"]),
        "run\n"
    );
    let started = Instant::now();
    let out = wait_for(
        "a follow of short that ends by itself",
        Duration::from_secs(90),
        || node.log(),
        || {
            let out = kubectl(plane)
                .args(["logs", "-f", "talk", "-c", "short", "--request-timeout=30s"])
                .output()
                .unwrap();
            (out.status.success() && out.stdout == b"run\n").then_some(out)
        },
    );
    assert!(started.elapsed() < Duration::from_secs(90), "{out:?}");

    // Exec: the exit code, stdin piped through.
    let out = plane.kubectl(&[
        "exec",
        "talk",
        "-c",
        "main",
        "--",
        "sh",
        "-c",
        "echo out; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    let mut child = kubectl(plane)
        .args([
            "exec",
            "-i",
            "talk",
            "-c",
            "main",
            "--",
            "sh",
            "-c",
            "cat; echo done",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"hello\nworld\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\nworld\ndone\n");

    // cp both ways (tar over exec).
    let tmp = tempfile::tempdir().unwrap();
    let local = tmp.path().join("up.txt");
    let payload: String = (0..2000).map(|i| format!("line {i}\n")).collect();
    std::fs::write(&local, &payload).unwrap();
    plane.ok(&[
        "cp",
        local.to_str().unwrap(),
        "default/talk:/tmp/up.txt",
        "-c",
        "main",
    ]);
    assert_eq!(
        plane
            .ok(&["exec", "talk", "-c", "main", "--", "md5sum", "/tmp/up.txt"])
            .split_whitespace()
            .next()
            .unwrap()
            .len(),
        32
    );
    let back = tmp.path().join("back.txt");
    plane.ok(&[
        "cp",
        "default/talk:/tmp/up.txt",
        back.to_str().unwrap(),
        "-c",
        "main",
    ]);
    assert_eq!(std::fs::read_to_string(&back).unwrap(), payload);
}

fn port_forward(plane: &dyn ControlPlane) {
    let local = common::stock::free_ports(1);
    let mut pf = kubectl(plane)
        .args(["port-forward", "pod/talk", &format!("{local}:8080")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(pf.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(line.contains("Forwarding from"), "{line:?}");
    // Two round trips, each on its own connection.
    for _ in 0..2 {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", local)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(b"GET /index.html HTTP/1.0\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        assert!(resp.contains(TOKEN), "{resp}");
    }
    let _ = pf.kill();
    let _ = pf.wait();
}

/// 401 without credentials, 403 for an identity without nodes/proxy, 404
/// and 400 with the kubelet's messages; the apiserver's kubelet client
/// certificate gets in.
fn auth_and_bad_input(plane: &dyn ControlPlane, node: &NodeAgent, client: (&Path, &Path)) {
    let (code, body) = curl(node, "/pods", &[]);
    assert_eq!((code, body.trim()), (401, "Unauthorized"));
    let (code, _) = curl(node, "/pods", &["-H", "Authorization: Bearer not-a-token"]);
    assert_eq!(code, 401);

    plane.ok(&["create", "serviceaccount", "kapi-nobody"]);
    let token = plane.ok(&["create", "token", "kapi-nobody"]);
    let bearer = format!("Authorization: Bearer {}", token.trim());
    let (code, body) = curl(node, "/pods", &["-H", &bearer]);
    assert_eq!(code, 403, "{body}");
    assert!(
        body.contains("user=system:serviceaccount:default:kapi-nobody")
            && body.contains("verb=get"),
        "{body}"
    );
    let (code, _) = curl(node, "/stats/summary", &["-H", &bearer]);
    assert_eq!(code, 403);

    let cert = [
        "--cert",
        client.0.to_str().unwrap(),
        "--key",
        client.1.to_str().unwrap(),
    ];
    let (code, body) = curl(node, "/pods", &cert);
    assert_eq!(code, 200, "{body}");
    let pods: Value = serde_json::from_str(&body).unwrap();
    assert!(
        pods["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["metadata"]["name"] == "talk"),
        "{body}"
    );
    let (code, body) = curl(node, "/healthz", &cert);
    assert_eq!((code, body.trim()), (200, "ok"));
    let (code, body) = curl(node, "/runningpods/", &cert);
    assert_eq!(code, 200);
    assert!(body.contains("\"talk\""), "{body}");
    let (code, body) = curl(node, "/configz", &cert);
    assert_eq!(code, 200);
    let configz: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(configz["kubeletconfig"]["port"], node.port);
    let (code, body) = curl(node, "/spec/", &cert);
    assert_eq!(code, 200);
    assert!(serde_json::from_str::<Value>(&body).unwrap()["num_cores"].as_u64() >= Some(1));

    let (code, body) = curl(node, "/containerLogs/default/talk/nope", &cert);
    assert_eq!(code, 404);
    assert!(
        body.contains("container \"nope\" not found in pod \"talk\""),
        "{body}"
    );
    let (code, body) = curl(node, "/containerLogs/default/missing/main", &cert);
    assert_eq!(code, 404);
    assert!(body.contains("pod \"missing\" does not exist"), "{body}");
    let (code, body) = curl(
        node,
        "/containerLogs/default/talk/main?sinceTime=yesterday",
        &cert,
    );
    assert_eq!(code, 400, "{body}");
    let (code, body) = curl(node, "/exec/default/talk/nope?command=true&output=1", &cert);
    assert_eq!(code, 404);
    assert!(body.contains("not found"), "{body}");
    let (code, body) = curl(
        node,
        "/run/default/talk/main?cmd=echo%20ran",
        &["-X", "POST", cert[0], cert[1], cert[2], cert[3]],
    );
    assert_eq!((code, body.as_str()), (200, "ran\n"));

    // Through the apiserver: the kubelet's 400 for a bad sinceTime, and
    // nodes/proxy reaching the kubelet API.
    let out = plane.kubectl(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/pods/talk/log?container=main&sinceTime=yesterday",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("BadRequest") || err.contains("400"), "{err}");
    let healthz = plane.ok(&[
        "get",
        "--raw",
        &format!("/api/v1/nodes/{}/proxy/healthz", node.name),
    ]);
    assert_eq!(healthz.trim(), "ok");
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_logs_exec_cp_port_forward_through_the_bundled_apiserver() {
    let name = "kapi10-bundled";
    let plane = DeckhandApiserver::start(&[name]);
    let node = NodeAgent::start(&plane, name, Runtime::InProcess, OCTET, 1).await;
    plane.create(&test_pod(name));
    wait_talk_running(&plane, &node);
    let pki = plane.dir().join("data/pki");
    auth_and_bad_input(
        &plane,
        &node,
        (
            &pki.join("kubelet-client.crt"),
            &pki.join("kubelet-client.key"),
        ),
    );
    logs_and_exec(&plane, &node);
    port_forward(&plane);
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_logs_and_exec_through_the_stock_apiserver() {
    let Some(k8s) = common::node::stock_k8s_dir() else {
        common::say_skipped(
            "kubectl_logs_and_exec_through_the_stock_apiserver",
            "no stock Kubernetes binaries (../shared/k8s or DECKHAND_K8S_DIR)",
        );
        return;
    };
    let name = "kapi10-stock";
    let port = common::stock::free_ports(4);
    let plane = common::node::StockApiserver::start(&k8s, port, name);
    let node = NodeAgent::start(&plane, name, Runtime::InProcess, OCTET, 2).await;
    plane.create(&test_pod(name));
    wait_talk_running(&plane, &node);
    let pki = plane.dir().join("pki");
    let (code, _) = curl(&node, "/pods", &[]);
    assert_eq!(code, 401);
    let (code, body) = curl(
        &node,
        "/healthz",
        &[
            "--cert",
            pki.join("apiserver-kubelet-client.crt").to_str().unwrap(),
            "--key",
            pki.join("apiserver-kubelet-client.key").to_str().unwrap(),
        ],
    );
    assert_eq!((code, body.trim()), (200, "ok"));
    logs_and_exec(&plane, &node);
    port_forward(&plane);
}
