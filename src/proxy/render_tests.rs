//! Golden outputs of the ruleset rendering (UPDATE_GOLDEN=1 rewrites them).

use std::net::IpAddr;

use super::model::{Endpoint, Proto, ServicePort};
use super::render::{RenderConfig, render, render_delete};

fn ep(ip: &str, port: u16, local: bool) -> Endpoint {
    Endpoint {
        ip: ip.parse().unwrap(),
        port,
        local,
    }
}

fn port(name: &str, ips: &[&str], port: u16, eps: Vec<Endpoint>) -> ServicePort {
    ServicePort {
        namespace: "default".into(),
        name: name.into(),
        port_name: String::new(),
        proto: Proto::Tcp,
        cluster_ips: ips.iter().map(|i| i.parse::<IpAddr>().unwrap()).collect(),
        port,
        node_port: None,
        affinity_timeout: None,
        external_local: false,
        endpoints: eps,
    }
}

fn sample() -> Vec<ServicePort> {
    let web = port(
        "web",
        &["10.96.0.20"],
        80,
        vec![ep("10.85.0.5", 8080, true), ep("10.85.0.6", 8080, false)],
    );
    let mut np = port("np", &["10.96.0.21"], 80, vec![ep("10.85.0.7", 80, false)]);
    np.node_port = Some(30080);
    let mut local = port(
        "local",
        &["10.96.0.22"],
        80,
        vec![ep("10.85.0.8", 80, true)],
    );
    local.node_port = Some(30081);
    local.external_local = true;
    let mut sticky = port(
        "sticky",
        &["10.96.0.23"],
        53,
        vec![ep("10.85.0.9", 53, true)],
    );
    sticky.proto = Proto::Udp;
    sticky.affinity_timeout = Some(60);
    let mut empty = port("empty", &["10.96.0.24"], 80, vec![]);
    empty.node_port = Some(30082);
    let v6 = port("v6", &["fd00::20"], 80, vec![ep("fd01::5", 80, true)]);
    vec![web, np, local, sticky, empty, v6]
}

fn golden(name: &str, got: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/proxy/testdata")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, got).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        got,
        want,
        "{} differs (UPDATE_GOLDEN=1 rewrites it)",
        path.display()
    );
}

#[test]
fn ruleset_matches_golden() {
    let cfg = RenderConfig {
        cluster_cidrs: vec!["10.85.0.0/16".into()],
    };
    golden("sample.nft", &render(&sample(), &cfg));
}

#[test]
fn no_services_is_a_valid_empty_table() {
    golden("empty.nft", &render(&[], &RenderConfig::default()));
    golden("delete.nft", &render_delete());
}

#[test]
fn rendering_is_deterministic_and_reacts_to_endpoints() {
    let cfg = RenderConfig::default();
    let a = render(&sample(), &cfg);
    assert_eq!(a, render(&sample(), &cfg));
    let mut s = sample();
    s[0].endpoints.pop();
    let b = render(&s, &cfg);
    assert_ne!(a, b);
    assert!(!b.contains("10.85.0.6:8080"));
    assert!(a.contains("dnat to 10.85.0.6:8080"));
}

/// The golden ruleset parses in nft (check mode, nothing applied), when
/// nft and the privilege to run it are there.
#[test]
fn golden_ruleset_passes_nft_check() {
    use std::io::Write;
    let Ok(mut child) = std::process::Command::new("nft")
        .args(["-c", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    else {
        eprintln!("skipping: no nft binary");
        return;
    };
    let text = render(&sample(), &RenderConfig::default());
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("Operation not permitted") {
        eprintln!("skipping: nft needs root");
        return;
    }
    assert!(out.status.success(), "nft -c: {err}");
}
