//! The files a sandbox prepares for its containers to mount: resolv.conf,
//! hostname, hosts. Pure rendering here; the manager writes them.

use crate::cri::api::v1 as cri;

/// resolv.conf from the pod's DNSConfig; None means "use the node's", as
/// containerd and CRI-O do when the kubelet passes no DNS config.
pub fn resolv_conf(dns: Option<&cri::DnsConfig>) -> Option<String> {
    let dns = dns?;
    if dns.servers.is_empty() && dns.searches.is_empty() && dns.options.is_empty() {
        return None;
    }
    let mut out = String::new();
    if !dns.searches.is_empty() {
        out.push_str(&format!("search {}\n", dns.searches.join(" ")));
    }
    for server in &dns.servers {
        out.push_str(&format!("nameserver {server}\n"));
    }
    if !dns.options.is_empty() {
        out.push_str(&format!("options {}\n", dns.options.join(" ")));
    }
    Some(out)
}

/// The pod's /etc/hosts when it has its own network (the kubelet overwrites
/// it with its managed one for most pods; this is the fallback).
pub fn hosts(hostname: &str, ips: &[String]) -> String {
    let mut out = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    for ip in ips {
        out.push_str(&format!("{ip}\t{hostname}\n"));
    }
    out
}

/// A hostname the kernel accepts (at most 64 bytes, no NUL or '/').
pub fn valid_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '/' || c == '#')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_renders_dns_config() {
        let dns = cri::DnsConfig {
            servers: vec!["10.96.0.10".into(), "8.8.8.8".into()],
            searches: vec![
                "default.svc.cluster.local".into(),
                "svc.cluster.local".into(),
            ],
            options: vec!["ndots:5".into()],
        };
        assert_eq!(
            resolv_conf(Some(&dns)).unwrap(),
            "search default.svc.cluster.local svc.cluster.local\nnameserver 10.96.0.10\nnameserver 8.8.8.8\noptions ndots:5\n"
        );
        assert_eq!(resolv_conf(None), None);
        assert_eq!(resolv_conf(Some(&cri::DnsConfig::default())), None);
    }

    #[test]
    fn hosts_maps_the_pod_ips() {
        let h = hosts("web", &["10.1.0.2".into()]);
        assert!(h.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(h.ends_with("10.1.0.2\tweb\n"));
    }

    #[test]
    fn hostnames_are_checked() {
        assert!(valid_hostname("web-0"));
        assert!(!valid_hostname(""));
        assert!(!valid_hostname(&"a".repeat(65)));
        assert!(!valid_hostname("a/b"));
        // Found by tests/fuzz (fuzz_cri_hostname): a tab added an alias to
        // the hosts line, a carriage return split it for some readers, a '#'
        // made the rest a comment.
        for bad in ["a#b", "a\tevil", "a\rb", "a\u{85}b", "a\u{2028}b", "a\x7fb"] {
            assert!(!valid_hostname(bad), "{bad:?}");
        }
    }
}
