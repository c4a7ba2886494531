use super::*;
use crate::node::podspec::testutil::pod_with_spec;
use serde_json::json;
use std::io::Write;

fn resolv(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

const HOST: &str = "# comment\nnameserver 10.0.0.2\nnameserver 10.0.0.3\nsearch old.example\nsearch corp.example. example.com .\noptions ndots:2 timeout:1\noptions ndots:3\n";

fn node(file: &tempfile::NamedTempFile, cluster_dns: &[&str]) -> NodeContext {
    NodeContext {
        resolv_conf: file.path().to_path_buf(),
        cluster_dns: cluster_dns.iter().map(|s| s.to_string()).collect(),
        host_ips: vec!["192.168.1.5".into()],
        ..Default::default()
    }
}

#[test]
fn parses_resolv_conf() {
    let c = parse_resolv_conf(HOST).unwrap();
    assert_eq!(c.servers, vec!["10.0.0.2", "10.0.0.3"]);
    assert_eq!(
        c.searches,
        vec!["corp.example", "example.com"],
        "last search line wins"
    );
    assert_eq!(c.options, vec!["ndots:3", "timeout:1"]);
    assert_eq!(
        parse_resolv_conf("nameserver\n").unwrap_err(),
        "nameserver list is empty "
    );
}

#[test]
fn cluster_first() {
    let f = resolv(HOST);
    let p = pod_with_spec(json!({"dnsPolicy": "ClusterFirst", "containers": [{"name": "c"}]}));
    let c = pod_dns_config(&p, &node(&f, &["10.96.0.10"])).unwrap();
    assert_eq!(c.servers, vec!["10.96.0.10"]);
    assert_eq!(
        c.searches,
        vec![
            "ns.svc.cluster.local",
            "svc.cluster.local",
            "cluster.local",
            "corp.example",
            "example.com"
        ]
    );
    assert_eq!(c.options, vec!["ndots:5"]);
}

#[test]
fn cluster_first_on_host_network_is_default() {
    let f = resolv(HOST);
    let n = node(&f, &["10.96.0.10"]);
    let p = pod_with_spec(
        json!({"dnsPolicy": "ClusterFirst", "hostNetwork": true, "containers": [{"name": "c"}]}),
    );
    let c = pod_dns_config(&p, &n).unwrap();
    assert_eq!(c.servers, vec!["10.0.0.2", "10.0.0.3"]);
    let p = pod_with_spec(
        json!({"dnsPolicy": "ClusterFirstWithHostNet", "hostNetwork": true, "containers": [{"name": "c"}]}),
    );
    assert_eq!(pod_dns_config(&p, &n).unwrap().servers, vec!["10.96.0.10"]);
}

#[test]
fn cluster_first_without_cluster_dns_falls_back() {
    let f = resolv(HOST);
    let p = pod_with_spec(json!({"dnsPolicy": "ClusterFirst", "containers": [{"name": "c"}]}));
    let c = pod_dns_config(&p, &node(&f, &[])).unwrap();
    assert_eq!(c.servers, vec!["10.0.0.2", "10.0.0.3"]);
    assert_eq!(c.searches, vec!["corp.example", "example.com"]);
}

#[test]
fn default_and_none_with_dns_config() {
    let f = resolv(HOST);
    let n = node(&f, &["10.96.0.10"]);
    let p = pod_with_spec(json!({
        "dnsPolicy": "Default",
        "dnsConfig": {"nameservers": ["10.0.0.2", "1.1.1.1", "8.8.8.8"], "searches": ["extra.example"],
                      "options": [{"name": "ndots", "value": "1"}, {"name": "edns0"}]},
        "containers": [{"name": "c"}],
    }));
    let c = pod_dns_config(&p, &n).unwrap();
    assert_eq!(
        c.servers,
        vec!["10.0.0.2", "10.0.0.3", "1.1.1.1"],
        "deduplicated, at most 3"
    );
    assert_eq!(
        c.searches,
        vec!["corp.example", "example.com", "extra.example"]
    );
    assert_eq!(c.options, vec!["ndots:1", "timeout:1", "edns0"]);

    let p = pod_with_spec(json!({
        "dnsPolicy": "None",
        "dnsConfig": {"nameservers": ["9.9.9.9"], "searches": ["a.example"], "options": [{"name": "ndots", "value": "2"}]},
        "containers": [{"name": "c"}],
    }));
    let c = pod_dns_config(&p, &n).unwrap();
    assert_eq!(c.servers, vec!["9.9.9.9"]);
    assert_eq!(c.searches, vec!["a.example"]);
    assert_eq!(c.options, vec!["ndots:2"]);
}

#[test]
fn empty_resolv_conf_path_means_localhost() {
    let n = NodeContext {
        resolv_conf: std::path::PathBuf::new(),
        host_ips: vec!["fd00::1".into()],
        ..Default::default()
    };
    let p = pod_with_spec(json!({"dnsPolicy": "Default", "containers": [{"name": "c"}]}));
    let c = pod_dns_config(&p, &n).unwrap();
    assert_eq!(c.servers, vec!["::1"]);
    assert_eq!(c.searches, vec!["."]);
}

#[test]
fn missing_resolv_conf_fails_the_sandbox() {
    let n = NodeContext {
        resolv_conf: "/nonexistent/resolv.conf".into(),
        ..Default::default()
    };
    let p = pod_with_spec(json!({"dnsPolicy": "None", "containers": [{"name": "c"}]}));
    let err = pod_dns_config(&p, &n).unwrap_err();
    assert!(
        err.message.starts_with("open /nonexistent/resolv.conf: "),
        "{}",
        err.message
    );
}

#[test]
fn search_limits() {
    let long = "a".repeat(254);
    let many: Vec<String> = (0..40).map(|i| format!("d{i}.example")).collect();
    let mut input = vec![long];
    input.extend(many);
    let out = fit_searches(input);
    assert_eq!(out.len(), 31, "cut to 32, then the over-long one dropped");
    assert_eq!(out[0], "d0.example");
    let wide: Vec<String> = (0..20).map(|i| format!("{i:0>200}")).collect();
    let out = fit_searches(wide);
    assert!(out.join(" ").len() <= MAX_SEARCH_LIST_CHARS);
    assert_eq!(out.len(), 10);
}
