//! The node's parsers of untrusted text: resource quantities, the kubelet
//! API's containerLogs query, the KubeletConfiguration file, node labels
//! and taints flags, Go durations.

use proptest::prelude::*;

use deckhand::k8s::quantity;
use deckhand::node::kubelet_config::{KubeletConfiguration, parse_go_duration};
use deckhand::node::server::logs::LogOptions;

use crate::{bounded, config, edits, json_value, mutate, tricky_text};

fn quantity_text() -> impl Strategy<Value = String> {
    prop_oneof![
        (
            any::<i64>(),
            prop::sample::select(vec![
                "", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "e3",
                "E-2", "e400"
            ])
        )
            .prop_map(|(n, s)| format!("{n}{s}")),
        (
            any::<f64>(),
            prop::sample::select(vec!["", "m", "Ki", "e9"])
        )
            .prop_map(|(n, s)| format!("{n}{s}")),
        tricky_text(4),
    ]
}

const KUBELET_CONFIG: &str = "apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 0.0.0.0
port: 10250
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true, cacheTTL: 2m0s}
  x509: {clientCAFile: /etc/kubernetes/pki/ca.crt}
authorization:
  mode: Webhook
  webhook: {cacheAuthorizedTTL: 5m0s, cacheUnauthorizedTTL: 30s}
cgroupDriver: systemd
clusterDNS: [10.96.0.10]
clusterDomain: cluster.local
evictionHard: {memory.available: 100Mi, nodefs.available: 10%}
kubeReserved: {cpu: 100m, memory: 256Mi}
maxPods: 110
staticPodPath: /etc/kubernetes/manifests
syncFrequency: 1m0s
";

proptest! {
    #![proptest_config(config())]

    /// Quantities: Some or None; a plain integer of milli-units reads back
    /// as itself.
    #[test]
    fn fuzz_quantity(text in quantity_text(), n in -1_000_000_000i64..1_000_000_000) {
        bounded("quantity", move || {
            let _ = quantity::parse_milli(&text);
            let _ = quantity::parse_units(&text);
        });
        prop_assert_eq!(quantity::parse_milli(&format!("{n}m")), Some(i128::from(n)));
        prop_assert_eq!(quantity::parse_milli(&n.to_string()), Some(i128::from(n) * 1000));
    }

    /// containerLogs?tailLines=..&sinceSeconds=..&sinceTime=..&limitBytes=..
    #[test]
    fn fuzz_kubelet_log_query(pairs in prop::collection::vec((
        prop::sample::select(vec!["tailLines", "sinceSeconds", "sinceTime", "limitBytes", "follow", "timestamps", "previous", "container", "x"]),
        prop_oneof![tricky_text(3), any::<i64>().prop_map(|n| n.to_string()),
            Just("2024-01-01T00:00:00Z".to_string()), Just("9999-12-31T23:59:59.999999999Z".to_string()),
            Just("-009999-01-01T00:00:00Z".to_string())],
    ), 0..5)) {
        let query: Vec<(String, String)> = pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        bounded("log query", move || {
            let now = k8s_openapi::jiff::Timestamp::now();
            let _ = LogOptions::parse(&query, now);
            let _ = LogOptions::parse(&query, k8s_openapi::jiff::Timestamp::MIN);
            let _ = LogOptions::parse(&query, k8s_openapi::jiff::Timestamp::MAX);
        });
    }

    /// KubeletConfiguration: mutations of a real file, and random JSON
    /// under the right apiVersion/kind.
    #[test]
    fn fuzz_kubelet_config(edits in edits(), fields in prop::collection::btree_map(
        prop::sample::select(vec!["port", "maxPods", "clusterDNS", "evictionHard", "kubeReserved",
            "syncFrequency", "authentication", "authorization", "staticPodPath", "cgroupDriver", "address",
            "podPidsLimit", "systemReserved", "containerLogMaxSize", "imageGCHighThresholdPercent"]),
        json_value(), 0..4)) {
        let body = mutate(KUBELET_CONFIG.as_bytes().to_vec(), &edits);
        let mut object = serde_json::json!({"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration"});
        for (k, v) in fields {
            object[k] = v;
        }
        let json = serde_json::to_vec(&object).unwrap();
        bounded("kubelet config", move || {
            if let Ok(config) = KubeletConfiguration::parse(&body, "fuzz") {
                let _ = config.ignored_fields();
            }
            if let Ok(config) = KubeletConfiguration::parse(&json, "fuzz") {
                let _ = config.ignored_fields();
            }
        });
    }

    /// The kubelet's flags and duration strings.
    #[test]
    fn fuzz_node_flags(text in tricky_text(6)) {
        bounded("node flags", move || {
            let _ = deckhand::node::config::parse_labels(&text);
            let _ = deckhand::node::config::parse_taints(&text);
            let _ = parse_go_duration(&text);
        });
    }
}

#[test]
fn the_sample_kubelet_config_parses() {
    KubeletConfiguration::parse(KUBELET_CONFIG.as_bytes(), "sample").unwrap();
}
