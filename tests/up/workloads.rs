//! The workloads tour of issue 12 on `deckhand up`, with the real kubectl:
//! a ReplicationController refilling deleted pods and scaled, exposed as a
//! NodePort (answering on 127.0.0.1 and, by name through the cluster DNS
//! and the ClusterIP, from inside a pod), and a cascading delete. The
//! proxy's table is the machine's: this is the one test of `up` that runs
//! it. Then a Deployment created, scaled, rolled to another image and
//! back with `rollout undo`, and deleted with its ReplicaSets and pods.

use std::io::{Read, Write};
use std::time::Duration;

use super::common::node::{ControlPlane, wait_for};
use super::{Up, node_name};
use crate::common;

const WAIT: Duration = Duration::from_secs(180);

/// The web server every replica runs: busybox httpd answering its hostname.
const SERVE: &str = "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www";

fn jsonpath(up: &Up, ns: &str, what: &[&str], path: &str) -> String {
    let mut args = vec!["-n", ns, "get"];
    args.extend_from_slice(what);
    let expr = format!("jsonpath={path}");
    args.extend_from_slice(&["-o", &expr]);
    String::from_utf8_lossy(&up.kubectl(&args).stdout).into_owned()
}

fn wait_value(up: &Up, ns: &str, what: &[&str], path: &str, want: &str) {
    wait_for(
        &format!("{what:?} {path} = {want}"),
        WAIT,
        || {
            format!(
                "now {:?}\n{}\n{}",
                jsonpath(up, ns, what, path),
                String::from_utf8_lossy(
                    &up.kubectl(&["-n", ns, "get", "all,events", "-o", "wide"])
                        .stdout
                ),
                up.log()
            )
        },
        || (jsonpath(up, ns, what, path) == want).then_some(()),
    );
}

/// An HTTP GET of / on `addr`, its body (None when nothing answers).
fn http_get(addr: &str) -> Option<String> {
    let mut s =
        std::net::TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(3)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: web\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.").then(|| body.trim().to_string())
}

fn ready_pods(up: &Up, ns: &str, selector: &str) -> Vec<String> {
    let out = jsonpath(
        up,
        ns,
        &["pods", "-l", selector],
        r#"{range .items[?(@.status.phase=="Running")]}{.metadata.name}{" "}{.status.podIP}{"\n"}{end}"#,
    );
    out.lines().map(String::from).collect()
}

#[test]
fn a_replication_controller_is_exposed_refilled_scaled_and_deleted() {
    let name = node_name("work");
    let mut up = Up::with_proxy(&name, 6);
    up.start();
    let ns = name.as_str();
    up.ok(&["create", "namespace", ns]);
    let rc = format!(
        r#"{{"apiVersion":"v1","kind":"ReplicationController","metadata":{{"name":"web","namespace":"{ns}"}},
        "spec":{{"replicas":3,"template":{{"metadata":{{"labels":{{"app":"web"}}}},
        "spec":{{"terminationGracePeriodSeconds":1,"containers":[{{"name":"web","image":"{image}",
        "command":["sh","-c","{SERVE}"],"ports":[{{"containerPort":8080,"name":"http"}}],
        "readinessProbe":{{"tcpSocket":{{"port":8080}},"periodSeconds":1}}}}]}}}}}}}}"#,
        image = common::BUSYBOX
    );
    let path = up.dir().join("rc.json");
    std::fs::write(&path, rc).unwrap();
    up.ok(&["create", "-f", path.to_str().unwrap()]);
    wait_value(&up, ns, &["rc", "web"], "{.status.readyReplicas}", "3");

    up.ok(&[
        "-n",
        ns,
        "expose",
        "rc",
        "web",
        "--type=NodePort",
        "--port=80",
        "--target-port=http",
    ]);
    // The Endpoints list the three pods' IPs.
    wait_for(
        "3 endpoint addresses",
        WAIT,
        || up.ok(&["-n", ns, "get", "endpoints", "web", "-o", "yaml"]),
        || {
            let ips = jsonpath(
                &up,
                ns,
                &["endpoints", "web"],
                "{.subsets[*].addresses[*].ip}",
            );
            (ips.split_whitespace().count() == 3).then_some(())
        },
    );
    let node_port = jsonpath(&up, ns, &["service", "web"], "{.spec.ports[0].nodePort}");
    let cluster_ip = jsonpath(&up, ns, &["service", "web"], "{.spec.clusterIP}");
    let pods = ready_pods(&up, ns, "app=web");
    let names: Vec<&str> = pods
        .iter()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(names.len(), 3, "{pods:?}");
    // The NodePort on 127.0.0.1 answers with one of the replicas' names.
    let body = wait_for(
        "the NodePort to answer",
        Duration::from_secs(60),
        || up.log(),
        || http_get(&format!("127.0.0.1:{node_port}")),
    );
    assert!(
        names.contains(&body.as_str()),
        "{body:?} not one of {names:?}"
    );
    // From inside a pod: the service by name (cluster DNS) and its ClusterIP
    // (a replica may reach itself: hairpin).
    let client = names[0];
    // By name through nslookup: the test image's busybox wget, resolving
    // through glibc, dies of SIGSEGV on any name.
    let fqdn = format!("web.{ns}.svc.cluster.local");
    for name in [fqdn.as_str(), "web"] {
        let out = up.kubectl(&["-n", ns, "exec", client, "--", "nslookup", name]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(&cluster_ip), "nslookup {name}: {text}");
    }
    // The ClusterIP from a pod (busybox nc: the image's wget dies of
    // SIGSEGV); a replica may reach itself (hairpin).
    let get = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {cluster_ip} 80");
    let got = wait_for(
        "the ClusterIP from a pod",
        Duration::from_secs(60),
        || {
            let out = up.kubectl(&["-n", ns, "exec", client, "--", "sh", "-c", &get]);
            format!(
                "from the pod: {}{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                up.log()
            )
        },
        || {
            let out = up.kubectl(&["-n", ns, "exec", client, "--", "sh", "-c", &get]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let (head, body) = text.split_once("\r\n\r\n")?;
            head.starts_with("HTTP/1.").then(|| body.trim().to_string())
        },
    );
    assert!(
        names.contains(&got.as_str()),
        "{got:?} not one of {names:?}"
    );
    let out = up.kubectl(&[
        "-n",
        ns,
        "exec",
        client,
        "--",
        "nslookup",
        "kubernetes.default.svc.cluster.local",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("10.96.0.1"),
        "nslookup kubernetes.default: {text}"
    );

    // Two deleted pods are made again; scaled to 2, one goes.
    up.ok(&[
        "-n",
        ns,
        "delete",
        "pod",
        names[1],
        names[2],
        "--wait=false",
    ]);
    wait_for(
        "the deleted pods to be replaced",
        WAIT,
        || format!("{:?}", ready_pods(&up, ns, "app=web")),
        || {
            let now = ready_pods(&up, ns, "app=web");
            let fresh = now
                .iter()
                .filter(|l| !l.starts_with(names[1]) && !l.starts_with(names[2]));
            (fresh.count() == 3).then_some(())
        },
    );
    up.ok(&["-n", ns, "scale", "rc", "web", "--replicas=2"]);
    wait_value(&up, ns, &["rc", "web"], "{.status.replicas}", "2");
    wait_for(
        "2 endpoint addresses",
        WAIT,
        || up.ok(&["-n", ns, "get", "endpoints", "web", "-o", "yaml"]),
        || {
            let ips = jsonpath(
                &up,
                ns,
                &["endpoints", "web"],
                "{.subsets[*].addresses[*].ip}",
            );
            (ips.split_whitespace().count() == 2).then_some(())
        },
    );

    // Deleting the controller takes its pods with it.
    up.ok(&["-n", ns, "delete", "rc", "web"]);
    wait_for(
        "the pods to go",
        WAIT,
        || up.ok(&["-n", ns, "get", "pods"]),
        || {
            let left = jsonpath(&up, ns, &["pods"], "{.items[*].metadata.name}");
            left.trim().is_empty().then_some(())
        },
    );
}

#[test]
fn a_deployment_is_scaled_rolled_out_undone_and_deleted() {
    let name = node_name("deploy");
    let mut up = Up::new(&name, 7);
    up.start();
    let ns = name.as_str();
    up.ok(&["create", "namespace", ns]);
    up.ok(&[
        "-n",
        ns,
        "create",
        "deployment",
        "web",
        "--image",
        common::BUSYBOX,
        "--",
        "sh",
        "-c",
        SERVE,
    ]);
    wait_value(
        &up,
        ns,
        &["deployment", "web"],
        "{.status.readyReplicas}",
        "1",
    );
    up.ok(&["-n", ns, "scale", "deployment", "web", "--replicas=3"]);
    wait_value(
        &up,
        ns,
        &["deployment", "web"],
        "{.status.readyReplicas}",
        "3",
    );
    let rs = up.ok(&["-n", ns, "get", "rs", "-o", "name"]);
    assert_eq!(rs.lines().count(), 1, "one ReplicaSet: {rs}");
    assert!(rs.trim().starts_with("replicaset.apps/web-"), "{rs}");

    // A new image rolls out; undo brings the old template back.
    let newer = common::BUSYBOX.replace(":1.29-2", ":1.29-4");
    assert_ne!(newer, common::BUSYBOX);
    up.ok(&[
        "-n",
        ns,
        "set",
        "image",
        "deployment/web",
        &format!("busybox={newer}"),
    ]);
    up.ok(&[
        "-n",
        ns,
        "rollout",
        "status",
        "deployment/web",
        "--timeout=180s",
    ]);
    let image = "{.spec.template.spec.containers[0].image}";
    assert_eq!(jsonpath(&up, ns, &["deployment", "web"], image), newer);
    assert_eq!(
        up.ok(&["-n", ns, "get", "rs", "-o", "name"])
            .lines()
            .count(),
        2
    );
    up.ok(&["-n", ns, "rollout", "undo", "deployment/web"]);
    up.ok(&[
        "-n",
        ns,
        "rollout",
        "status",
        "deployment/web",
        "--timeout=180s",
    ]);
    assert_eq!(
        jsonpath(&up, ns, &["deployment", "web"], image),
        common::BUSYBOX
    );
    assert_eq!(
        up.ok(&["-n", ns, "get", "rs", "-o", "name"])
            .lines()
            .count(),
        2
    );
    let history = up.ok(&["-n", ns, "rollout", "history", "deployment/web"]);
    let revisions: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.chars().all(|c| c.is_ascii_digit()))
        .collect();
    assert_eq!(revisions, ["2", "3"], "{history}");
    wait_value(
        &up,
        ns,
        &["deployment", "web"],
        "{.status.availableReplicas}",
        "3",
    );

    // Deleting the Deployment takes its ReplicaSets and pods with it.
    up.ok(&["-n", ns, "delete", "deployment", "web"]);
    wait_for(
        "the ReplicaSets and pods to go",
        WAIT,
        || up.ok(&["-n", ns, "get", "rs,pods"]),
        || {
            let left = jsonpath(&up, ns, &["rs,pods"], "{.items[*].metadata.name}");
            left.trim().is_empty().then_some(())
        },
    );
}
