//! The nftables ruleset of one sync, as the text `nft -f -` reads: both
//! tables (`ip` and `ip6`) deleted and redefined in one batch, so the
//! kernel swaps the whole ruleset in one transaction. The layout follows
//! kube-proxy's nftables mode: a `service-ips` verdict map from
//! address . protocol . port to a per-service chain, a `service-nodeports`
//! map for local destinations, per-endpoint chains that DNAT, numgen
//! random balancing, a dynamic set per endpoint for ClientIP affinity, a
//! mark that the postrouting chain masquerades, and `no-endpoint-*` maps in
//! filter hooks that reject what has no endpoint.

use std::fmt::Write;
use std::net::IpAddr;

use sha2::{Digest, Sha256};

use super::model::{Endpoint, ServicePort};

pub const TABLE: &str = "deckhand-proxy";
/// The packet mark meaning "masquerade on the way out" (kube-proxy's).
pub const MASQ_MARK: &str = "0x4000";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub const ALL: [Family; 2] = [Family::V4, Family::V6];

    pub fn table_family(self) -> &'static str {
        match self {
            Family::V4 => "ip",
            Family::V6 => "ip6",
        }
    }
    fn addr_type(self) -> &'static str {
        match self {
            Family::V4 => "ipv4_addr",
            Family::V6 => "ipv6_addr",
        }
    }
    fn matches(self, ip: &IpAddr) -> bool {
        matches!(
            (self, ip),
            (Family::V4, IpAddr::V4(_)) | (Family::V6, IpAddr::V6(_))
        )
    }
}

/// What the rendering needs besides the services.
#[derive(Debug, Clone, Default)]
pub struct RenderConfig {
    /// The pods' CIDRs: traffic to a ClusterIP from outside them is
    /// masqueraded (kube-proxy's --cluster-cidr). Empty: none is.
    pub cluster_cidrs: Vec<String>,
}

/// A chain name for `key`: a short stable hash and a readable tail.
fn chain_name(prefix: &str, key: &str) -> String {
    let hash = Sha256::digest(key.as_bytes());
    let tail: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    format!("{prefix}-{}-{tail}", &hex::encode(hash)[..8])
}

fn addr(ip: &IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    }
}

struct Names {
    svc: String,
    ext: String,
    local: String,
    eps: Vec<String>,
}

fn names(sp: &ServicePort) -> Names {
    let key = format!("{}/{}", sp.key(), sp.proto.nft());
    Names {
        svc: chain_name("svc", &key),
        ext: chain_name("ext", &key),
        local: chain_name("svl", &key),
        eps: sp
            .endpoints
            .iter()
            .map(|e| chain_name("sep", &format!("{key}/{}", SocketFmt(e))))
            .collect(),
    }
}

struct SocketFmt<'a>(&'a Endpoint);
impl std::fmt::Display for SocketFmt<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", addr(&self.0.ip), self.0.port)
    }
}

/// The balancing rules over `eps` (indices into the endpoint chains).
fn balance(out: &mut String, sp: &ServicePort, n: &Names, eps: &[usize], f: Family) {
    let saddr = format!("{} saddr", f.table_family());
    if sp.affinity_timeout.is_some() {
        for &i in eps {
            let _ = writeln!(out, "    {saddr} @aff-{} goto {}", n.eps[i], n.eps[i]);
        }
    }
    let targets: Vec<String> = eps
        .iter()
        .enumerate()
        .map(|(k, &i)| format!("{k} : goto {}", n.eps[i]))
        .collect();
    let _ = writeln!(
        out,
        "    numgen random mod {} vmap {{ {} }}",
        eps.len(),
        targets.join(", ")
    );
}

/// One family's table.
pub fn render_table(ports: &[ServicePort], cfg: &RenderConfig, f: Family) -> String {
    let fam = f.table_family();
    let ty = f.addr_type();
    let mut out = String::new();
    let mut service_ips = Vec::new();
    let mut nodeports = Vec::new();
    let mut no_ep_ips = Vec::new();
    let mut no_ep_nodeports = Vec::new();
    let cidrs: Vec<&String> = cfg
        .cluster_cidrs
        .iter()
        .filter(|c| c.contains(':') == (f == Family::V6))
        .collect();
    let _ = writeln!(out, "table {fam} {TABLE} {{");
    let _ = writeln!(
        out,
        "  chain mark-for-masquerade {{\n    meta mark set meta mark | {MASQ_MARK}\n  }}"
    );
    let _ = writeln!(
        out,
        "  chain masquerading {{\n    meta mark & {MASQ_MARK} == 0 return\n    meta mark set meta mark ^ {MASQ_MARK}\n    masquerade fully-random\n  }}"
    );
    let _ = writeln!(out, "  chain reject-chain {{\n    reject\n  }}");
    for sp in ports {
        let ips: Vec<&IpAddr> = sp.cluster_ips.iter().filter(|ip| f.matches(ip)).collect();
        if ips.is_empty() {
            continue;
        }
        let proto = sp.proto.nft();
        let eps: Vec<usize> = (0..sp.endpoints.len())
            .filter(|&i| f.matches(&sp.endpoints[i].ip))
            .collect();
        let local: Vec<usize> = eps
            .iter()
            .copied()
            .filter(|&i| sp.endpoints[i].local)
            .collect();
        let _ = writeln!(out, "  # {} {proto}", sp.key());
        if eps.is_empty() {
            for ip in &ips {
                no_ep_ips.push(format!("{ip} . {proto} . {} : goto reject-chain", sp.port));
            }
            if let Some(np) = sp.node_port {
                no_ep_nodeports.push(format!("{proto} . {np} : goto reject-chain"));
            }
            continue;
        }
        let n = names(sp);
        for &i in &eps {
            let ep = &sp.endpoints[i];
            if let Some(t) = sp.affinity_timeout {
                let _ = writeln!(
                    out,
                    "  set aff-{} {{\n    type {ty}; flags dynamic,timeout; timeout {t}s;\n  }}",
                    n.eps[i]
                );
            }
            let _ = writeln!(out, "  chain {} {{", n.eps[i]);
            let _ = writeln!(out, "    {fam} saddr {} jump mark-for-masquerade", ep.ip);
            if sp.affinity_timeout.is_some() {
                let _ = writeln!(out, "    update @aff-{} {{ {fam} saddr }}", n.eps[i]);
            }
            let _ = writeln!(out, "    meta l4proto {proto} dnat to {}", SocketFmt(ep));
            let _ = writeln!(out, "  }}");
        }
        let _ = writeln!(out, "  chain {} {{", n.svc);
        for c in &cidrs {
            let _ = writeln!(out, "    {fam} saddr != {c} jump mark-for-masquerade");
        }
        balance(&mut out, sp, &n, &eps, f);
        let _ = writeln!(out, "  }}");
        for ip in &ips {
            service_ips.push(format!("{ip} . {proto} . {} : goto {}", sp.port, n.svc));
        }
        let Some(np) = sp.node_port else { continue };
        let _ = writeln!(out, "  chain {} {{", n.ext);
        if sp.external_local {
            // Local: the client's address is kept, but traffic the node
            // itself sends (127.0.0.1, its own addresses) is masqueraded.
            let _ = writeln!(out, "    fib saddr type local jump mark-for-masquerade");
            if local.is_empty() {
                let _ = writeln!(out, "    drop");
            } else {
                let _ = writeln!(out, "    goto {}", n.local);
            }
        } else {
            let _ = writeln!(out, "    jump mark-for-masquerade");
            let _ = writeln!(out, "    goto {}", n.svc);
        }
        let _ = writeln!(out, "  }}");
        if sp.external_local && !local.is_empty() {
            let _ = writeln!(out, "  chain {} {{", n.local);
            balance(&mut out, sp, &n, &local, f);
            let _ = writeln!(out, "  }}");
        }
        nodeports.push(format!("{proto} . {np} : goto {}", n.ext));
    }
    let maps = [
        (
            "service-ips",
            format!("{ty} . inet_proto . inet_service"),
            &service_ips,
        ),
        (
            "service-nodeports",
            "inet_proto . inet_service".to_string(),
            &nodeports,
        ),
        (
            "no-endpoint-services",
            format!("{ty} . inet_proto . inet_service"),
            &no_ep_ips,
        ),
        (
            "no-endpoint-nodeports",
            "inet_proto . inet_service".to_string(),
            &no_ep_nodeports,
        ),
    ];
    for (name, key, elems) in maps {
        let _ = writeln!(out, "  map {name} {{\n    type {key} : verdict");
        if !elems.is_empty() {
            let _ = writeln!(out, "    elements = {{ {} }}", elems.join(",\n      "));
        }
        let _ = writeln!(out, "  }}");
    }
    let _ = writeln!(
        out,
        "  chain services {{\n    {fam} daddr . meta l4proto . th dport vmap @service-ips\n    fib daddr type local meta l4proto . th dport vmap @service-nodeports\n  }}"
    );
    let _ = writeln!(
        out,
        "  chain endpoints-check {{\n    {fam} daddr . meta l4proto . th dport vmap @no-endpoint-services\n    fib daddr type local meta l4proto . th dport vmap @no-endpoint-nodeports\n  }}"
    );
    for (chain, hook, prio) in [
        ("nat-prerouting", "prerouting", "dstnat"),
        ("nat-output", "output", "-100"),
    ] {
        let _ = writeln!(
            out,
            "  chain {chain} {{\n    type nat hook {hook} priority {prio}; policy accept;\n    jump services\n  }}"
        );
    }
    let _ = writeln!(
        out,
        "  chain nat-postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;\n    jump masquerading\n  }}"
    );
    for hook in ["input", "forward", "output"] {
        let _ = writeln!(
            out,
            "  chain filter-{hook} {{\n    type filter hook {hook} priority -10; policy accept;\n    ct state new jump endpoints-check\n  }}"
        );
    }
    let _ = writeln!(out, "}}");
    out
}

/// The whole batch of one sync: each table created if missing, deleted,
/// and defined again, in one transaction.
pub fn render(ports: &[ServicePort], cfg: &RenderConfig) -> String {
    let mut out = String::new();
    for f in Family::ALL {
        let fam = f.table_family();
        let _ = writeln!(out, "table {fam} {TABLE} {{}}\ndelete table {fam} {TABLE}");
        out.push_str(&render_table(ports, cfg, f));
    }
    out
}

/// The batch that removes both tables (on stop).
pub fn render_delete() -> String {
    let mut out = String::new();
    for f in Family::ALL {
        let fam = f.table_family();
        let _ = writeln!(out, "table {fam} {TABLE} {{}}\ndelete table {fam} {TABLE}");
    }
    out
}
