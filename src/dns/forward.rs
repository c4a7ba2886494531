//! Forwarding to the node's resolvers: the query's bytes relayed as they
//! came, to each upstream in turn, the first answer returned as it came.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;

/// The nameservers of a resolv.conf, on port 53.
pub fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some("nameserver")).then_some(())?;
            let ip: std::net::IpAddr = words.next()?.split('%').next()?.parse().ok()?;
            Some(SocketAddr::new(ip, 53))
        })
        .collect()
}

/// How long one upstream gets to answer.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

/// The first upstream's answer to `query`, or none when none answered.
pub async fn forward(query: &[u8], upstreams: &[SocketAddr]) -> Option<Vec<u8>> {
    if query.len() < 2 {
        return None;
    }
    for up in upstreams {
        let bind: SocketAddr = if up.is_ipv4() {
            "0.0.0.0:0".parse().ok()?
        } else {
            "[::]:0".parse().ok()?
        };
        let Ok(sock) = UdpSocket::bind(bind).await else {
            continue;
        };
        if sock.connect(up).await.is_err() || sock.send(query).await.is_err() {
            continue;
        }
        let mut buf = vec![0u8; 4096];
        let recv = async {
            loop {
                let n = sock.recv(&mut buf).await.ok()?;
                // Only the reply to this query (same id).
                if n >= 2 && buf[..2] == query[..2] {
                    return Some(n);
                }
            }
        };
        match tokio::time::timeout(UPSTREAM_TIMEOUT, recv).await {
            Ok(Some(n)) => {
                buf.truncate(n);
                return Some(buf);
            }
            _ => tracing::debug!(upstream = %up, "upstream did not answer"),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_nameservers() {
        let text = "# c\nsearch a b\nnameserver 10.0.0.2\nnameserver fe80::1%eth0\nnameserver bad\noptions ndots:5\n";
        let got = super::parse_resolv_conf(text);
        assert_eq!(
            got,
            vec![
                "10.0.0.2:53".parse().unwrap(),
                "[fe80::1]:53".parse().unwrap()
            ]
        );
    }
}
