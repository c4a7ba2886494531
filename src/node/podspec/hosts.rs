//! The pod's /etc/hosts as the kubelet writes it (kubelet_pods.go
//! ensureHostsFile): the agent writes this text to the pod's etc-hosts file
//! and mounts it at /etc/hosts in every container.

use k8s_openapi::api::core::v1::{HostAlias, Pod};

use super::{NodeContext, PodSpecError, sandbox};

const MANAGED_HEADER: &str = "# Kubernetes-managed hosts file.\n";
const MANAGED_HEADER_HOST_NETWORK: &str = "# Kubernetes-managed hosts file (host network).\n";

/// The file's text. `node_hosts` is the node's own /etc/hosts, which a
/// hostNetwork pod gets (with its hostAliases appended); other pods get
/// localhost lines and their IPs under the pod's hostname (and FQDN with a
/// subdomain).
pub fn etc_hosts(
    pod: &Pod,
    pod_ips: &[String],
    node: &NodeContext,
    node_hosts: &str,
) -> Result<String, PodSpecError> {
    let spec = pod.spec.as_ref();
    let aliases = spec
        .and_then(|s| s.host_aliases.as_deref())
        .unwrap_or_default();
    if spec.and_then(|s| s.host_network).unwrap_or(false) {
        let mut out = String::from(MANAGED_HEADER_HOST_NETWORK);
        out.push_str(node_hosts);
        out.push_str(&alias_entries(aliases));
        return Ok(out);
    }
    let (hostname, domain) = sandbox::hostname_and_domain(pod, node)?;
    let mut out = String::from(MANAGED_HEADER);
    out.push_str("127.0.0.1\tlocalhost\n");
    out.push_str("::1\tlocalhost ip6-localhost ip6-loopback\n");
    out.push_str("fe00::0\tip6-localnet\n");
    out.push_str("fe00::0\tip6-mcastprefix\n");
    out.push_str("fe00::1\tip6-allnodes\n");
    out.push_str("fe00::2\tip6-allrouters\n");
    for ip in pod_ips {
        if domain.is_empty() {
            out.push_str(&format!("{ip}\t{hostname}\n"));
        } else {
            out.push_str(&format!("{ip}\t{hostname}.{domain}\t{hostname}\n"));
        }
    }
    out.push_str(&alias_entries(aliases));
    Ok(out)
}

/// hostsEntriesFromHostAliases: one line per alias IP.
fn alias_entries(aliases: &[HostAlias]) -> String {
    if aliases.is_empty() {
        return String::new();
    }
    let mut out = String::from("\n# Entries added by HostAliases.\n");
    for a in aliases {
        let names = a.hostnames.as_deref().unwrap_or_default().join("\t");
        out.push_str(&format!("{}\t{names}\n", a.ip));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::podspec::testutil::pod_with_spec;
    use serde_json::json;

    #[test]
    fn managed_file() {
        let p = pod_with_spec(json!({
            "subdomain": "sub",
            "hostAliases": [{"ip": "10.0.0.9", "hostnames": ["foo", "bar"]}],
            "containers": [{"name": "c"}],
        }));
        let text = etc_hosts(&p, &["10.1.0.7".into()], &NodeContext::default(), "ignored").unwrap();
        assert_eq!(
            text,
            "# Kubernetes-managed hosts file.\n\
             127.0.0.1\tlocalhost\n\
             ::1\tlocalhost ip6-localhost ip6-loopback\n\
             fe00::0\tip6-localnet\n\
             fe00::0\tip6-mcastprefix\n\
             fe00::1\tip6-allnodes\n\
             fe00::2\tip6-allrouters\n\
             10.1.0.7\tweb.sub.ns.svc.cluster.local\tweb\n\
             \n# Entries added by HostAliases.\n\
             10.0.0.9\tfoo\tbar\n"
        );
        let p = pod_with_spec(json!({"containers": [{"name": "c"}]}));
        let text = etc_hosts(
            &p,
            &["10.1.0.7".into(), "fd01::7".into()],
            &NodeContext::default(),
            "",
        )
        .unwrap();
        assert!(
            text.ends_with("fe00::2\tip6-allrouters\n10.1.0.7\tweb\nfd01::7\tweb\n"),
            "{text}"
        );
    }

    #[test]
    fn host_network_file() {
        let p = pod_with_spec(json!({"hostNetwork": true, "containers": [{"name": "c"}]}));
        let text = etc_hosts(&p, &[], &NodeContext::default(), "127.0.0.1 localhost\n").unwrap();
        assert_eq!(
            text,
            "# Kubernetes-managed hosts file (host network).\n127.0.0.1 localhost\n"
        );
    }
}
