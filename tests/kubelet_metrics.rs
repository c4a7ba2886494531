//! The kubelet API's metrics, `kubectl top`, log rotation and the
//! interactive streams, end to end with the real kubectl against
//! `deckhand apiserver` + `deckhand node` on containerd: /metrics,
//! /metrics/resource, /metrics/cadvisor (a figure checked against the
//! cgroup files, v1 or v2) and /metrics/probes through nodes/proxy;
//! `kubectl top node/pod` through metrics.k8s.io; a rotated (and
//! compressed) log read by `kubectl logs`; a 10 MB line; `kubectl exec -it`
//! under a pty with a resize; `kubectl attach`; port-forward with two
//! connections at once, then a closed port (which ends the port-forward, as
//! kubectl >= 1.23 does on any stream error); a node identity refused exec;
//! 200 aborted exec sessions leaving nothing behind. Run as root, holding
//! /tmp/deckhand-integration.lock.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::node::{ControlPlane, DeckhandApiserver, KUBECTL, NodeAgent, Runtime, wait_for};
use serde_json::{Value, json};

const BUSYBOX: &str = common::BUSYBOX;
const OCTET: u8 = 232;

fn busybox(name: &str, script: &str) -> Value {
    json!({"name": name, "image": BUSYBOX, "imagePullPolicy": "IfNotPresent",
           "command": ["sh", "-c", script]})
}

fn test_pod(node: &str) -> Value {
    // The probe is on web: idle's cgroup must hold still (an exec probe's
    // processes run in the container's cgroup).
    let mut web = busybox(
        "web",
        "mkdir -p /www && echo served > /www/index.html && exec httpd -f -p 8080 -h /www",
    );
    web["readinessProbe"] = json!({"exec": {"command": ["true"]}, "periodSeconds": 1});
    let mut echoer = busybox("echoer", "while read l; do echo got $l; done; sleep 3600");
    echoer["stdin"] = json!(true);
    json!({"apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "m", "namespace": "default", "labels": {"app": "m"}},
    "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1, "containers": [
        busybox("idle", "exec sleep 3600"),
        echoer,
        busybox("chatty", "i=0; while true; do echo line $i padding-padding-padding-padding; i=$((i+1)); sleep 0.005; done"),
        busybox("big", "head -c 10485760 /dev/zero | tr '\\0' a; echo; exec sleep 3600"),
        web,
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

/// A text exposition's samples: (name, labels, value).
fn samples(text: &str) -> Vec<(String, HashMap<String, String>, f64)> {
    let mut out = vec![];
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (head, value) = line.rsplit_once(' ').expect(line);
        let value: f64 = value.parse().expect(line);
        let (name, labels) = match head.split_once('{') {
            Some((n, rest)) => {
                let mut l = HashMap::new();
                for pair in rest.trim_end_matches('}').split("\",") {
                    if let Some((k, v)) = pair.split_once("=\"") {
                        l.insert(k.to_string(), v.trim_end_matches('"').to_string());
                    }
                }
                (n.to_string(), l)
            }
            None => (head.to_string(), HashMap::new()),
        };
        out.push((name, labels, value));
    }
    out
}

fn find<'a>(
    s: &'a [(String, HashMap<String, String>, f64)],
    name: &str,
    container: &str,
) -> Option<&'a (String, HashMap<String, String>, f64)> {
    s.iter().find(|(n, l, _)| {
        n == name
            && l.get("container").map(String::as_str) == Some(container)
            && l.get("pod").map(String::as_str) == Some("m")
    })
}

/// The container's CPU time in seconds from its cgroup (v2 or v1).
fn cgroup_cpu_seconds(id: &str) -> Option<f64> {
    let v2 = format!("/sys/fs/cgroup{id}/cpu.stat");
    if let Ok(s) = std::fs::read_to_string(&v2) {
        let us: f64 = s
            .lines()
            .find_map(|l| l.strip_prefix("usage_usec "))?
            .trim()
            .parse()
            .ok()?;
        return Some(us / 1e6);
    }
    for dir in ["cpuacct", "cpu,cpuacct", "cpu"] {
        if let Ok(s) = std::fs::read_to_string(format!("/sys/fs/cgroup/{dir}{id}/cpuacct.usage")) {
            return Some(s.trim().parse::<f64>().ok()? / 1e9);
        }
    }
    None
}

fn metrics(plane: &dyn ControlPlane, node: &NodeAgent) {
    let raw = |path: &str| {
        plane.ok(&[
            "get",
            "--raw",
            &format!("/api/v1/nodes/{}/proxy{path}", node.name),
        ])
    };
    let own = samples(&raw("/metrics"));
    for name in [
        "kubelet_running_pods",
        "process_resident_memory_bytes",
        "process_open_fds",
        "kubelet_pleg_relist_duration_seconds_count",
        "kubelet_pod_start_duration_seconds_count",
    ] {
        assert!(
            own.iter().any(|(n, _, _)| n == name),
            "no {name} in /metrics"
        );
    }
    assert!(own.iter().any(|(n, l, v)| n == "kubelet_running_containers"
        && l.get("container_state").map(String::as_str) == Some("running")
        && *v >= 5.0));

    let res = samples(&raw("/metrics/resource"));
    let ws = find(&res, "container_memory_working_set_bytes", "idle").expect("idle's working set");
    assert!(ws.2 > 0.0);
    assert!(find(&res, "container_cpu_usage_seconds_total", "chatty").is_some());
    assert!(res.iter().any(|(n, _, v)| n == "scrape_error" && *v == 0.0));
    assert!(
        res.iter()
            .any(|(n, _, v)| n == "node_memory_working_set_bytes" && *v > 0.0)
    );
    assert!(
        res.iter()
            .any(|(n, l, _)| n == "pod_cpu_usage_seconds_total"
                && l.get("pod").map(String::as_str) == Some("m"))
    );

    // cAdvisor: idle sleeps, so its CPU time holds still between the
    // scrape and the read of its cgroup.
    let cad_text = raw("/metrics/cadvisor");
    let cad = samples(&cad_text);
    let cpu = find(&cad, "container_cpu_usage_seconds_total", "idle").expect("idle's cpu");
    let id = cpu.1["id"].clone();
    assert!(!id.is_empty(), "an id label: {:?}", cpu.1);
    assert_eq!(cpu.1["cpu"], "total");
    assert!(!cpu.1["image"].is_empty(), "{:?}", cpu.1);
    let from_cgroup =
        cgroup_cpu_seconds(&id).unwrap_or_else(|| panic!("no cgroup cpu file for {id}"));
    assert!(
        (cpu.2 - from_cgroup).abs() < 0.05,
        "cadvisor {} vs cgroup {from_cgroup} ({id})",
        cpu.2
    );
    assert!(find(&cad, "container_memory_usage_bytes", "idle").is_some_and(|s| s.2 > 0.0));
    assert!(
        cad.iter()
            .any(|(n, l, _)| n == "container_network_receive_bytes_total"
                && l.contains_key("interface")),
        "{cad_text}"
    );

    wait_for(
        "a readiness probe counted",
        Duration::from_secs(60),
        String::new,
        || {
            let p = samples(&raw("/metrics/probes"));
            p.iter()
                .find(|(n, l, v)| {
                    n == "prober_probe_total"
                        && l["container"] == "web"
                        && l["probe_type"] == "Readiness"
                        && l["result"] == "successful"
                        && *v >= 1.0
                })
                .map(|_| ())
        },
    );
}

fn top(plane: &dyn ControlPlane, node: &NodeAgent) {
    let out = plane.ok(&["top", "node"]);
    assert!(out.contains(&node.name) && out.contains("CPU"), "{out}");
    let out = plane.ok(&["top", "pod", "m", "--containers"]);
    assert!(out.contains("idle") && out.contains("chatty"), "{out}");
    let out = plane.ok(&["top", "pod", "-l", "app=m"]);
    assert!(out.contains('m'), "{out}");
}

fn rotation(plane: &dyn ControlPlane) {
    let uid = plane.pod("m").unwrap()["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let dir = std::path::PathBuf::from(format!("/var/log/pods/default_m_{uid}/chatty"));
    let names = || -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let files = wait_for(
        "a compressed rotated log",
        Duration::from_secs(120),
        || format!("{:?}", names()),
        || {
            let n = names();
            (n.iter().any(|f| f.ends_with(".gz"))
                && n.iter().any(|f| f.contains(".log.") && !f.ends_with(".gz")))
            .then_some(n)
        },
    );
    assert!(files.len() <= 3, "--container-log-max-files=3: {files:?}");
    // The newest rotated file's first line is in `kubectl logs` (tried
    // again if a rotation compressed that file meanwhile).
    let last = std::cell::RefCell::new(String::new());
    wait_for(
        "kubectl logs to read the rotated file",
        Duration::from_secs(60),
        || last.borrow().clone(),
        || {
            let plain = names()
                .into_iter()
                .rfind(|f| f.contains(".log.") && !f.ends_with(".gz"))?;
            let text = std::fs::read_to_string(dir.join(&plain)).ok()?;
            let line = text.lines().next()?.splitn(4, ' ').nth(3)?.to_string();
            let logs = plane.ok(&["logs", "m", "-c", "chatty"]);
            *last.borrow_mut() = format!("{plain}: {line:?} not in {} lines", logs.lines().count());
            logs.lines().any(|l| l == line).then_some(())
        },
    );
}

fn big_line(plane: &dyn ControlPlane) {
    let mut child = kubectl(plane)
        .args(["logs", "m", "-c", "big"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut n = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    let mut out = child.stdout.take().unwrap();
    let mut last = 0u8;
    loop {
        let k = out.read(&mut buf).unwrap();
        if k == 0 {
            break;
        }
        n += k;
        last = buf[k - 1];
    }
    assert!(child.wait().unwrap().success());
    assert_eq!((n, last), (10 * 1024 * 1024 + 1, b'\n'));
}

fn exec_tty_and_attach(plane: &dyn ControlPlane) {
    let kc = plane.admin_kubeconfig();
    let out = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pty_drive.py"))
        .args([
            KUBECTL,
            "--kubeconfig",
            kc.to_str().unwrap(),
            "exec",
            "-it",
            "m",
            "-c",
            "idle",
            "--",
            "sh",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "exec -it: {}",
        String::from_utf8_lossy(&out.stdout)
    );

    let mut att = kubectl(plane)
        .args(["attach", "-i", "m", "-c", "echoer"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = att.stdin.take().unwrap();
    let mut reader = BufReader::new(att.stdout.take().unwrap());
    std::thread::sleep(Duration::from_secs(2));
    stdin.write_all(b"hello\n").unwrap();
    let mut line = String::new();
    while !line.contains("got hello") {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0, "attach ended");
    }
    let _ = att.kill();
    let _ = att.wait();
}

fn port_forward(plane: &dyn ControlPlane) {
    let (open, closed) = {
        let p = common::stock::free_ports(2);
        (p, p + 1)
    };
    let mut pf = kubectl(plane)
        .args([
            "port-forward",
            "pod/m",
            &format!("{open}:8080"),
            &format!("{closed}:9"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(pf.stdout.take().unwrap());
    // Both listeners up (kubectl prints one line per address and port).
    let mut seen = String::new();
    while !(seen.contains(&format!("127.0.0.1:{open} "))
        && seen.contains(&format!("127.0.0.1:{closed} ")))
    {
        let mut line = String::new();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "port-forward ended: {seen}"
        );
        seen.push_str(&line);
    }
    // kubectl logs "Handling connection" per connection: keep the pipe drained.
    let drain = std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    let get = || {
        let s = std::net::TcpStream::connect(("127.0.0.1", open)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        s
    };
    // Two connections open at once, answered in the other order.
    let (mut a, mut b) = (get(), get());
    for s in [&mut b, &mut a] {
        s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n").unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        assert!(resp.contains("served"), "{resp}");
    }
    // A closed port in the pod: that connection ends with nothing, and the
    // error on its error stream ends the whole port-forward, as client-go
    // does since kubernetes PR 103526 against kubelet + containerd too.
    let mut c = std::net::TcpStream::connect(("127.0.0.1", closed)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let _ = c.write_all(b"x");
    let mut got = vec![];
    let _ = c.read_to_end(&mut got);
    assert!(got.is_empty(), "{got:?}");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = pf.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = pf.kill();
            let _ = pf.wait();
            panic!("kubectl port-forward did not end after the closed port's error");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut err = String::new();
    let _ = pf.stderr.take().unwrap().read_to_string(&mut err);
    let _ = drain.join();
    assert!(!status.success(), "{err}");
    assert!(
        err.contains(&format!("{closed} -> 9")) && err.contains("lost connection to pod"),
        "kubectl reports the closed port and the lost connection: {err}"
    );
}

fn node_identity_cannot_exec(plane: &dyn ControlPlane, node: &NodeAgent) {
    let out = Command::new(KUBECTL)
        .arg("--kubeconfig")
        .arg(plane.node_kubeconfig(&node.name))
        .args(["exec", "m", "-c", "idle", "--", "true"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("forbidden") || err.contains("Forbidden"),
        "{err}"
    );
}

fn open_fds(plane: &dyn ControlPlane, node: &NodeAgent) -> f64 {
    let m = samples(&plane.ok(&[
        "get",
        "--raw",
        &format!("/api/v1/nodes/{}/proxy/metrics", node.name),
    ]));
    m.iter()
        .find(|(n, _, _)| n == "process_open_fds")
        .unwrap()
        .2
}

fn sleepers(plane: &dyn ControlPlane) -> usize {
    plane
        .ok(&["exec", "m", "-c", "idle", "--", "ps"])
        .lines()
        .filter(|l| l.contains("sleep 77"))
        .count()
}

/// 200 exec sessions killed mid-stream leave no process in the container
/// and no descriptors in the agent.
fn aborted_execs(plane: &dyn ControlPlane, node: &NodeAgent) {
    let fds_before = open_fds(plane, node);
    for _round in 0..50 {
        let mut kids: Vec<_> = (0..4)
            .map(|_| {
                kubectl(plane)
                    .args(["exec", "-i", "m", "-c", "idle", "--", "sleep", "77"])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        std::thread::sleep(Duration::from_millis(1500));
        for k in &mut kids {
            let _ = k.kill();
            let _ = k.wait();
        }
    }
    wait_for(
        "the aborted execs' processes to go",
        Duration::from_secs(120),
        || format!("{} left", sleepers(plane)),
        || (sleepers(plane) == 0).then_some(()),
    );
    wait_for(
        "the agent's descriptors to settle",
        Duration::from_secs(60),
        || format!("before {fds_before}, now {}", open_fds(plane, node)),
        || (open_fds(plane, node) <= fds_before + 10.0).then_some(()),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_top_rotation_and_interactive_streams() {
    let name = "kmet10";
    let plane = DeckhandApiserver::start(&[name]);
    let mut node = NodeAgent::start(&plane, name, Runtime::InProcess, OCTET, 1).await;
    node.restart_with(&[
        "--container-log-max-size=32Ki",
        "--container-log-max-files=3",
    ]);
    plane.create(&test_pod(name));
    wait_for(
        "pod m to run",
        Duration::from_secs(180),
        || node.log(),
        || {
            let p = plane.pod("m")?;
            let running = p["status"]["containerStatuses"]
                .as_array()?
                .iter()
                .filter(|c| c["state"]["running"].is_object())
                .count();
            (running == 5).then_some(())
        },
    );
    metrics(&plane, &node);
    top(&plane, &node);
    big_line(&plane);
    rotation(&plane);
    exec_tty_and_attach(&plane);
    port_forward(&plane);
    node_identity_cannot_exec(&plane, &node);
    aborted_execs(&plane, &node);
}
