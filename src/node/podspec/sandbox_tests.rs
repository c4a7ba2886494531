use super::*;
use crate::node::podspec::testutil::{pod, pod_with_spec};
use serde_json::json;

fn node() -> NodeContext {
    NodeContext {
        // No file read: a test must not depend on the host's resolv.conf.
        resolv_conf: std::path::PathBuf::new(),
        cluster_dns: vec!["10.96.0.10".into()],
        ..Default::default()
    }
}

#[test]
fn full_sandbox_config() {
    let p = pod(json!({
        "metadata": {"name": "web", "namespace": "ns", "uid": "uid-1", "labels": {"app": "web"},
                     "annotations": {"note": "x"}},
        "spec": {
            "hostname": "host-a", "subdomain": "sub",
            "dnsPolicy": "ClusterFirst",
            "securityContext": {"sysctls": [{"name": "kernel.shm_rmid_forced", "value": "1"}]},
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "100m"}},
                 "ports": [{"containerPort": 80, "hostPort": 8080, "protocol": "TCP"},
                           {"containerPort": 53, "protocol": "UDP", "hostIP": "127.0.0.1"},
                           {"containerPort": 80, "hostPort": 8080, "protocol": "TCP"}]},
                {"name": "b", "ports": [{"name": "metrics", "containerPort": 9090, "protocol": "SCTP"}]},
            ],
        },
    }));
    let c = sandbox_config(&p, 2, &node()).unwrap();
    let m = c.metadata.unwrap();
    assert_eq!(
        (
            m.name.as_str(),
            m.namespace.as_str(),
            m.uid.as_str(),
            m.attempt
        ),
        ("web", "ns", "uid-1", 2)
    );
    assert_eq!(c.hostname, "host-a");
    assert_eq!(c.log_directory, "/var/log/pods/ns_web_uid-1");
    assert_eq!(c.labels.get("app").map(String::as_str), Some("web"));
    assert_eq!(
        c.labels.get(labels::POD_UID).map(String::as_str),
        Some("uid-1")
    );
    assert_eq!(c.annotations.get("note").map(String::as_str), Some("x"));
    let dns = c.dns_config.unwrap();
    assert_eq!(dns.servers, vec!["10.96.0.10"]);
    assert_eq!(dns.searches[0], "ns.svc.cluster.local");
    assert_eq!(
        c.port_mappings,
        vec![
            v1::PortMapping {
                protocol: v1::Protocol::Tcp as i32,
                container_port: 80,
                host_port: 8080,
                host_ip: String::new()
            },
            v1::PortMapping {
                protocol: v1::Protocol::Udp as i32,
                container_port: 53,
                host_port: 0,
                host_ip: "127.0.0.1".into()
            },
            v1::PortMapping {
                protocol: v1::Protocol::Sctp as i32,
                container_port: 9090,
                host_port: 0,
                host_ip: String::new()
            },
        ],
        "every port, the duplicate dropped"
    );
    let linux = c.linux.unwrap();
    assert_eq!(linux.cgroup_parent, "/kubepods/burstable/poduid-1");
    assert_eq!(
        linux
            .sysctls
            .get("kernel.shm_rmid_forced")
            .map(String::as_str),
        Some("1")
    );
    let sc = linux.security_context.unwrap();
    assert_eq!(
        sc.namespace_options.unwrap().network,
        v1::NamespaceMode::Pod as i32
    );
    assert_eq!(linux.resources.unwrap().cpu_shares, 102);
    assert_eq!(
        linux.overhead.unwrap(),
        v1::LinuxContainerResources::default()
    );
}

#[test]
fn host_network_has_no_hostname() {
    let p = pod_with_spec(
        json!({"hostNetwork": true, "dnsPolicy": "ClusterFirst", "containers": [{"name": "c"}]}),
    );
    let c = sandbox_config(&p, 0, &node()).unwrap();
    assert_eq!(c.hostname, "");
    assert_eq!(
        c.linux
            .unwrap()
            .security_context
            .unwrap()
            .namespace_options
            .unwrap()
            .network,
        v1::NamespaceMode::Node as i32
    );
}

#[test]
fn hostnames() {
    let n = node();
    let p = pod_with_spec(json!({"containers": [{"name": "c"}]}));
    assert_eq!(
        hostname_and_domain(&p, &n).unwrap(),
        ("web".into(), String::new())
    );
    let long = format!("{}-{}", "a".repeat(62), "b".repeat(10));
    let p = pod(
        json!({"metadata": {"name": long, "namespace": "ns"}, "spec": {"containers": [{"name": "c"}]}}),
    );
    assert_eq!(
        hostname_and_domain(&p, &n).unwrap().0,
        "a".repeat(62),
        "cut to 63, trailing '-' trimmed"
    );
    let p = pod_with_spec(json!({"hostname": "Bad_Name", "containers": [{"name": "c"}]}));
    let err = hostname_and_domain(&p, &n).unwrap_err();
    assert!(
        err.message
            .starts_with("pod Hostname \"Bad_Name\" is not a valid DNS label: "),
        "{}",
        err.message
    );
    let p = pod_with_spec(
        json!({"subdomain": "sub", "setHostnameAsFQDN": true, "containers": [{"name": "c"}]}),
    );
    let c = sandbox_config(&p, 0, &n).unwrap();
    assert_eq!(c.hostname, "web.sub.ns.svc.cluster.local");
    let p = pod_with_spec(
        json!({"hostname": "h".repeat(50), "subdomain": "sub", "setHostnameAsFQDN": true, "containers": [{"name": "c"}]}),
    );
    let err = sandbox_config(&p, 0, &n).unwrap_err();
    assert!(
        err.message
            .starts_with("failed to construct FQDN from pod hostname and cluster domain, FQDN "),
        "{}",
        err.message
    );
    assert!(
        err.message
            .ends_with("is too long (64 characters is the max, 75 characters requested)"),
        "{}",
        err.message
    );
}

#[test]
fn custom_logs_dir() {
    let n = NodeContext {
        pod_logs_dir: "/tmp/pods".into(),
        ..node()
    };
    let p = pod_with_spec(json!({"containers": [{"name": "c"}]}));
    assert_eq!(pod_log_directory(&p, &n), "/tmp/pods/ns_web_uid-1");
    assert_eq!(
        container_log_directory(&p, "c", &n),
        "/tmp/pods/ns_web_uid-1/c"
    );
}
