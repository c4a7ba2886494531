//! The sandbox's DNS config: dns.Configurer.GetPodDNS (dnsPolicy None,
//! ClusterFirst, ClusterFirstWithHostNet, Default; spec.dnsConfig merged
//! in; trimmed to the resolver's limits).

use k8s_openapi::api::core::v1::{Pod, PodDNSConfig};

use super::{NodeContext, PodSpecError};
use crate::cri::v1;

/// validation.MaxDNSNameservers, MaxDNSSearchPaths, MaxDNSSearchListChars
const MAX_NAMESERVERS: usize = 3;
const MAX_SEARCH_PATHS: usize = 32;
const MAX_SEARCH_LIST_CHARS: usize = 2048;
/// A search domain longer than a DNS-1123 subdomain makes glibc abort().
const MAX_SEARCH_DOMAIN_LEN: usize = 253;
/// utilio.ReadAtMost's limit for resolv.conf
const MAX_RESOLV_CONF_BYTES: usize = 10 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PodDnsType {
    Cluster,
    Host,
    None,
}

fn is_host_network(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false)
}

/// getPodDNSType; an unknown policy falls back to ClusterFirst as the
/// kubelet does.
fn pod_dns_type(pod: &Pod) -> PodDnsType {
    match pod.spec.as_ref().and_then(|s| s.dns_policy.as_deref()) {
        Some("None") => PodDnsType::None,
        Some("ClusterFirstWithHostNet") => PodDnsType::Cluster,
        Some("ClusterFirst") if !is_host_network(pod) => PodDnsType::Cluster,
        Some("ClusterFirst") | Some("Default") => PodDnsType::Host,
        other => {
            tracing::warn!(policy = ?other, "invalid DNSPolicy; falling back to ClusterFirst");
            PodDnsType::Cluster
        }
    }
}

/// parseResolvConf: nameservers accumulate, the last `search` wins (with
/// trailing dots dropped and "." skipped), options merge by name.
pub fn parse_resolv_conf(text: &str) -> Result<v1::DnsConfig, String> {
    let mut out = v1::DnsConfig::default();
    let mut errors = Vec::new();
    for line in text.split('\n') {
        let trimmed = line.trim();
        if trimmed.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = trimmed.split_whitespace().collect();
        match fields.first() {
            Some(&"nameserver") => match fields.get(1) {
                Some(server) => out.servers.push(server.to_string()),
                None => errors.push("nameserver list is empty "),
            },
            Some(&"search") => {
                out.searches = fields[1..]
                    .iter()
                    .filter(|s| **s != ".")
                    .map(|s| s.trim_end_matches('.').to_string())
                    .collect();
            }
            Some(&"options") => {
                append_options(&mut out.options, fields[1..].iter().map(|s| s.to_string()))
            }
            _ => {}
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors.join(", "))
    }
}

fn option_name(option: &str) -> &str {
    option.split(':').next().unwrap_or(option)
}

/// appendOptions: a later option of the same name replaces the earlier
/// (kept at the earlier's place: the kubelet's map order is random anyway).
fn append_options(options: &mut Vec<String>, new: impl IntoIterator<Item = String>) {
    for option in new {
        match options
            .iter_mut()
            .find(|o| option_name(o) == option_name(&option))
        {
            Some(old) => *old = option,
            None => options.push(option),
        }
    }
}

fn omit_duplicates(items: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

/// mergeDNSOptions: pod dnsConfig options override the base's by name; a
/// option without value is written bare.
fn merge_dns_options(
    existing: &[String],
    pod_options: &[k8s_openapi::api::core::v1::PodDNSConfigOption],
) -> Vec<String> {
    let mut merged: Vec<(String, String)> = Vec::new();
    let mut set = |name: &str, value: &str| match merged.iter_mut().find(|(n, _)| n == name) {
        Some(entry) => entry.1 = value.to_string(),
        None => merged.push((name.to_string(), value.to_string())),
    };
    for op in existing {
        match op.split_once(':') {
            Some((name, value)) => set(name, value),
            None => set(op, ""),
        }
    }
    for op in pod_options {
        set(
            op.name.as_deref().unwrap_or_default(),
            op.value.as_deref().unwrap_or_default(),
        );
    }
    merged
        .into_iter()
        .map(|(n, v)| if v.is_empty() { n } else { format!("{n}:{v}") })
        .collect()
}

fn append_dns_config(base: &mut v1::DnsConfig, pod: &PodDNSConfig) {
    let mut servers = std::mem::take(&mut base.servers);
    servers.extend(pod.nameservers.iter().flatten().cloned());
    base.servers = omit_duplicates(servers);
    let mut searches = std::mem::take(&mut base.searches);
    searches.extend(pod.searches.iter().flatten().cloned());
    base.searches = omit_duplicates(searches);
    base.options = merge_dns_options(&base.options, pod.options.as_deref().unwrap_or_default());
}

/// formDNSSearchFitsLimits
fn fit_searches(mut searches: Vec<String>) -> Vec<String> {
    searches.truncate(MAX_SEARCH_PATHS);
    searches.retain(|s| s.len() <= MAX_SEARCH_DOMAIN_LEN);
    let line_len = searches.join(" ").len();
    if line_len > MAX_SEARCH_LIST_CHARS {
        let mut cut_len = 0;
        let mut cut = 0;
        for s in searches.iter().rev() {
            cut_len += s.len() + 1;
            cut += 1;
            if line_len - cut_len <= MAX_SEARCH_LIST_CHARS {
                break;
            }
        }
        searches.truncate(searches.len() - cut);
    }
    searches
}

/// The host's DNS settings (getHostDNSConfig): nothing when the kubelet's
/// resolvConf is "" (an empty path here).
fn host_dns_config(node: &NodeContext) -> Result<v1::DnsConfig, PodSpecError> {
    if node.resolv_conf.as_os_str().is_empty() {
        return Ok(v1::DnsConfig::default());
    }
    let path = node.resolv_conf.display();
    let bytes = std::fs::read(&node.resolv_conf)
        .map_err(|e| PodSpecError::sandbox(format!("open {path}: {e}")))?;
    if bytes.len() > MAX_RESOLV_CONF_BYTES {
        return Err(PodSpecError::sandbox(format!(
            "{path} is larger than {MAX_RESOLV_CONF_BYTES} bytes"
        )));
    }
    parse_resolv_conf(&String::from_utf8_lossy(&bytes)).map_err(PodSpecError::sandbox)
}

/// GetPodDNS
pub fn pod_dns_config(pod: &Pod, node: &NodeContext) -> Result<v1::DnsConfig, PodSpecError> {
    let mut config = host_dns_config(node)?;
    let mut kind = pod_dns_type(pod);
    if kind == PodDnsType::Cluster && node.cluster_dns.is_empty() {
        // The kubelet also posts a MissingClusterDNS event here.
        tracing::warn!(
            "kubelet does not have ClusterDNS IP configured and cannot create Pod using \"ClusterFirst\" policy. Falling back to \"Default\" policy."
        );
        kind = PodDnsType::Host;
    }
    match kind {
        PodDnsType::None => config = v1::DnsConfig::default(),
        PodDnsType::Cluster => {
            config.servers = node.cluster_dns.clone();
            config.searches = cluster_first_searches(config.searches, pod, node);
            config.options = vec!["ndots:5".into()];
        }
        PodDnsType::Host => {
            if node.resolv_conf.as_os_str().is_empty() {
                for ip in &node.host_ips {
                    config.servers.push(if ip.contains(':') {
                        "::1".into()
                    } else {
                        "127.0.0.1".into()
                    });
                }
                if config.servers.is_empty() {
                    config.servers.push("127.0.0.1".into());
                }
                config.searches = vec![".".into()];
            }
        }
    }
    if let Some(pod_config) = pod.spec.as_ref().and_then(|s| s.dns_config.as_ref()) {
        append_dns_config(&mut config, pod_config);
    }
    config.servers.truncate(MAX_NAMESERVERS);
    config.searches = fit_searches(config.searches);
    Ok(config)
}

/// generateSearchesForDNSClusterFirst
fn cluster_first_searches(host: Vec<String>, pod: &Pod, node: &NodeContext) -> Vec<String> {
    let domain = &node.cluster_domain;
    if domain.is_empty() {
        return host;
    }
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let mut searches = vec![
        format!("{ns}.svc.{domain}"),
        format!("svc.{domain}"),
        domain.clone(),
    ];
    searches.extend(host);
    omit_duplicates(searches)
}

#[cfg(test)]
#[path = "dns_tests.rs"]
mod tests;
