//! The cluster services `up` runs beside the node: the service proxy and
//! the cluster DNS. Neither is fatal to `up`: one that cannot start says
//! why and the node goes on without it (as a cluster without kube-proxy or
//! CoreDNS still runs pods).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use super::network::BridgeNetwork;
use crate::proxy::{ProxyConfig, nft::NftCommand};

/// Where the DNS serves, from `--dns-listen`, and whether it binds with
/// IP_FREEBIND (the gateway's bridge appears with the first pod).
pub fn dns_listen(
    flag: &str,
    network: Option<&BridgeNetwork>,
) -> anyhow::Result<Option<(SocketAddr, bool)>> {
    match flag {
        "none" => Ok(None),
        "auto" => match network {
            Some(n) => Ok(Some((SocketAddr::new(IpAddr::V4(n.gateway), 53), true))),
            None => {
                tracing::warn!(
                    "no cluster DNS: the pod network is not a gateway bridge (pass --dns-listen ADDRESS:53)"
                );
                Ok(None)
            }
        },
        addr => addr.parse().map(|a| Some((a, false))).map_err(|_| {
            anyhow::anyhow!("--dns-listen: {addr:?} is not auto, none or ADDRESS:PORT")
        }),
    }
}

/// The nameserver the pods' resolv.conf gets: only a DNS on port 53 can be
/// one (resolv.conf has no port).
pub fn cluster_dns(listen: Option<(SocketAddr, bool)>) -> Vec<String> {
    match listen {
        Some((addr, _)) if addr.port() == 53 => vec![addr.ip().to_string()],
        Some((addr, _)) => {
            tracing::warn!(%addr, "the cluster DNS is not on port 53: pods will not use it");
            vec![]
        }
        None => vec![],
    }
}

/// The proxy until `shutdown` (its tables removed then).
pub async fn proxy(
    client: kube::Client,
    node: &str,
    network: Option<&BridgeNetwork>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let mut config = ProxyConfig::new(node);
    config.render.cluster_cidrs = network.iter().map(|n| n.subnet.clone()).collect();
    let run = crate::proxy::run(
        client,
        config,
        Arc::new(NftCommand::default()),
        None,
        shutdown,
    );
    if let Err(err) = run.await {
        tracing::warn!(error = %format!("{err:#}"), "the service proxy stopped: ClusterIPs and NodePorts do not answer");
    }
    Ok(())
}

/// The cluster DNS until `shutdown`.
pub async fn dns(
    client: kube::Client,
    listen: (SocketAddr, bool),
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let config = crate::dns::DnsConfig {
        listen: listen.0,
        domain: "cluster.local".into(),
        upstreams: crate::cli::proxy::upstreams(&[], std::path::Path::new("/etc/resolv.conf")),
        freebind: listen.1,
    };
    if let Err(err) = crate::dns::run(client, config, shutdown).await {
        tracing::warn!(error = %format!("{err:#}"), "the cluster DNS stopped: pods resolve no service names");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dns_address_follows_the_flag() {
        let net = BridgeNetwork {
            gateway: [10, 85, 0, 1].into(),
            subnet: "10.85.0.0/16".into(),
        };
        let auto = dns_listen("auto", Some(&net)).unwrap();
        assert_eq!(auto, Some(("10.85.0.1:53".parse().unwrap(), true)));
        assert_eq!(cluster_dns(auto), ["10.85.0.1"]);
        assert_eq!(dns_listen("auto", None).unwrap(), None);
        assert_eq!(dns_listen("none", Some(&net)).unwrap(), None);
        let given = dns_listen("127.0.0.1:5353", None).unwrap();
        assert_eq!(given, Some(("127.0.0.1:5353".parse().unwrap(), false)));
        assert!(cluster_dns(given).is_empty());
        let err = dns_listen("here", None).unwrap_err().to_string();
        assert!(err.contains("\"here\""), "{err}");
    }
}
