//! `deckhand proxy` with real nftables, in a network namespace this test
//! creates (and deletes, with everything in it): the bundled apiserver, the
//! proxy and two busybox httpd backends all run inside it (`ip netns exec`),
//! the Services and EndpointSlices are written by hand with kubectl, and
//! curl inside the namespace checks a ClusterIP, a NodePort on 127.0.0.1,
//! ClientIP affinity, the rejection of a service without endpoints, and
//! that the table is gone once the proxy stops. Needs root, ip and nft.

mod net;

use std::process::{Command, Stdio};
use std::time::Instant;

use net::eventually;

struct Netns(String);

impl Netns {
    fn sh(&self, script: &str) -> (bool, String) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.0, "sh", "-c", script])
            .stdin(Stdio::null())
            .output()
            .expect("ip netns exec");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_string()
                + &String::from_utf8_lossy(&out.stderr),
        )
    }
    fn ok(&self, script: &str) -> String {
        let (ok, out) = self.sh(script);
        assert!(ok, "{script}: {out}");
        out
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Every process in it was ours (and is killed by its guard first);
        // the veth pair and the rules go with the namespace.
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn usable() -> bool {
    let root = nix::unistd::geteuid().is_root();
    let tools = ["ip", "nft", "curl", "busybox", "kubectl"].iter().all(|t| {
        Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if !root || !tools {
        eprintln!("skipping: needs root and ip, nft, curl, busybox, kubectl");
    }
    root && tools
}

const EP1: &str = "10.251.0.1";
const EP2: &str = "10.251.0.2";

fn manifests() -> String {
    let svc = |name: &str, ip: &str, extra: &str| {
        format!(
            r#"{{"apiVersion":"v1","kind":"Service","metadata":{{"name":"{name}","namespace":"default"}},
"spec":{{"clusterIP":"{ip}","ports":[{{"name":"http","port":80,"targetPort":8080,"protocol":"TCP"{np}}}]{extra}}}}}"#,
            np = if name == "web" {
                r#","nodePort":30080"#
            } else {
                ""
            },
            extra = extra
        )
    };
    let slice = |name: &str, ips: &[&str]| {
        let eps: Vec<String> = ips
            .iter()
            .map(|ip| {
                format!(r#"{{"addresses":["{ip}"],"conditions":{{"ready":true}},"nodeName":"n1"}}"#)
            })
            .collect();
        format!(
            r#"{{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{{"name":"{name}-x","namespace":"default","labels":{{"kubernetes.io/service-name":"{name}"}}}},
"addressType":"IPv4","ports":[{{"name":"http","port":8080,"protocol":"TCP"}}],"endpoints":[{}]}}"#,
            eps.join(",")
        )
    };
    [
        svc("web", "10.96.100.10", r#","type":"NodePort""#),
        svc("sticky", "10.96.100.11", r#","sessionAffinity":"ClientIP""#),
        svc("empty", "10.96.100.12", ""),
        slice("web", &[EP1, EP2]),
        slice("sticky", &[EP1, EP2]),
    ]
    .join("\n")
}

#[test]
fn clusterip_nodeport_affinity_reject_and_cleanup() {
    if !usable() {
        return;
    }
    let ns = Netns(format!("dh-proxy-{}", std::process::id()));
    let st = Command::new("ip")
        .args(["netns", "add", &ns.0])
        .status()
        .unwrap();
    assert!(st.success(), "ip netns add");
    ns.ok(&format!(
        "ip link set lo up && ip link add d0 type veth peer name d1 && ip link set d0 up && ip link set d1 up && \
         ip addr add {EP1}/32 dev d0 && ip addr add {EP2}/32 dev d0 && \
         ip addr add 10.251.0.100/32 dev d0 && \
         ip route add 10.96.0.0/12 dev d0 src 10.251.0.100"
    ));
    let wrap = ["ip", "netns", "exec", ns.0.as_str()];
    let api = net::apiserver_in(&wrap);
    let kc = api.kubeconfig.display().to_string();
    // Two backends, each saying who it is.
    let mut backends = vec![];
    for (i, ip) in [EP1, EP2].iter().enumerate() {
        let dir = api.dir.path().join(format!("www{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("index.html"), format!("backend-{i}\n")).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.0, "busybox", "httpd", "-f", "-p"])
            .arg(format!("{ip}:8080"))
            .arg("-h")
            .arg(&dir)
            .spawn()
            .expect("busybox httpd");
        backends.push(net::Proc(Some(child), dir.join("log")));
    }
    let m = api.dir.path().join("objects.json");
    std::fs::write(&m, manifests()).unwrap();
    ns.ok(&format!(
        "kubectl --kubeconfig {kc} apply -f {}",
        m.display()
    ));

    let mut proxy = api.run(&wrap, &["proxy", "--hostname-override", "n1"], "proxy.log");
    let curl = |url: &str| ns.sh(&format!("curl -s -m 5 {url}"));
    let t = Instant::now();
    eventually(90, "the ClusterIP answering", || {
        let (ok, out) = curl("http://10.96.100.10/");
        (ok && out.starts_with("backend-")).then_some(())
    });
    eprintln!(
        "ClusterIP answered {:?} after the proxy started",
        t.elapsed()
    );
    // Both endpoints get traffic (random balance).
    let seen: std::collections::BTreeSet<String> =
        (0..30).map(|_| curl("http://10.96.100.10/").1).collect();
    assert!(seen.len() >= 2, "one backend only: {seen:?}");
    // NodePort on 127.0.0.1 (route_localnet) answers.
    let (ok, out) = curl("http://127.0.0.1:30080/");
    assert!(
        ok && out.starts_with("backend-"),
        "NodePort: {out}\n{}",
        proxy.log()
    );
    // ClientIP affinity sticks.
    let sticky: std::collections::BTreeSet<String> =
        (0..15).map(|_| curl("http://10.96.100.11/").1).collect();
    assert_eq!(sticky.len(), 1, "affinity did not stick: {sticky:?}");
    // No endpoints: rejected (connection refused, curl exit 7), not a timeout.
    let (code_ok, _) = ns.sh("curl -s -m 5 http://10.96.100.12/; test $? -eq 7");
    assert!(code_ok, "the service without endpoints was not rejected");
    // Stop: the table goes.
    proxy.stop();
    let (listed, _) = ns.sh("nft list table ip deckhand-proxy");
    assert!(!listed, "the table is still there after stop");
    drop(backends);
    drop(api);
}
