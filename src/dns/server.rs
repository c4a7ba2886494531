//! The DNS server: UDP (each query answered in its own task, so a slow
//! upstream holds up no one) and TCP (length-prefixed, RFC 1035 4.2.2) on
//! one address.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

use super::wire::{self, RData, Record};
use super::zone::{self, Answer, ZoneData};
use super::{DnsConfig, forward};

pub struct Server {
    udp: Arc<UdpSocket>,
    tcp: TcpListener,
    handler: Arc<Handler>,
}

pub struct Handler {
    pub domain: String,
    pub upstreams: Vec<SocketAddr>,
    pub data: Arc<dyn ZoneData>,
}

impl Handler {
    fn soa(&self) -> Record {
        Record {
            name: self.domain.clone(),
            ttl: zone::TTL,
            data: RData::Soa {
                mname: format!("ns.dns.{}", self.domain),
                rname: format!("hostmaster.{}", self.domain),
                serial: 1,
            },
        }
    }

    /// The response to one message, none to stay silent.
    pub async fn handle(&self, msg: &[u8], limit: usize) -> Option<Vec<u8>> {
        let q = match wire::parse_query(msg) {
            Ok(q) => q,
            Err(wire::WireError::NotQuery) => return None,
            Err(_) => return wire::error_response(msg, wire::RCODE_FORMERR),
        };
        let ans = if q.qclass == wire::CLASS_IN {
            zone::answer(self.data.as_ref(), &self.domain, &q.name, q.qtype)
        } else {
            Answer::NotOurs
        };
        match ans {
            Answer::Records(rs) => {
                let auth = if rs.is_empty() {
                    vec![self.soa()]
                } else {
                    vec![]
                };
                Some(wire::response(&q, true, 0, &rs, &auth, limit))
            }
            Answer::NxDomain => Some(wire::response(
                &q,
                true,
                wire::RCODE_NXDOMAIN,
                &[],
                &[self.soa()],
                limit,
            )),
            Answer::NotOurs => match forward::forward(msg, &self.upstreams).await {
                Some(r) => Some(r),
                None => wire::error_response(msg, wire::RCODE_SERVFAIL),
            },
        }
    }
}

/// UDP and TCP sockets on `addr` with IP_FREEBIND: bound before any
/// interface has the address (binding is a few syscalls: no await needed).
fn freebound(addr: SocketAddr) -> anyhow::Result<(UdpSocket, TcpListener)> {
    use nix::sys::socket::{
        AddressFamily, Backlog, SockFlag, SockType, SockaddrStorage, bind, listen, setsockopt,
        socket, sockopt,
    };
    let family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let open = |ty: SockType| -> anyhow::Result<std::os::fd::OwnedFd> {
        let fd = socket(
            family,
            ty,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            None,
        )
        .context("creating a socket")?;
        setsockopt(&fd, sockopt::IpFreebind, &true).context("setting IP_FREEBIND")?;
        setsockopt(&fd, sockopt::ReuseAddr, &true).context("setting SO_REUSEADDR")?;
        bind(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            &SockaddrStorage::from(addr),
        )
        .with_context(|| format!("binding {addr}"))?;
        Ok(fd)
    };
    let udp = std::net::UdpSocket::from(open(SockType::Datagram)?);
    let tcp = open(SockType::Stream)?;
    listen(&tcp, Backlog::new(128).context("a backlog")?)
        .with_context(|| format!("listening on {addr}"))?;
    let tcp = std::net::TcpListener::from(tcp);
    Ok((
        UdpSocket::from_std(udp).context("registering the udp socket")?,
        TcpListener::from_std(tcp).context("registering the tcp socket")?,
    ))
}

impl Server {
    pub async fn bind(config: DnsConfig, data: Arc<dyn ZoneData>) -> anyhow::Result<Server> {
        let (udp, tcp) = if config.freebind {
            freebound(config.listen)?
        } else {
            let udp = UdpSocket::bind(config.listen)
                .await
                .with_context(|| format!("binding udp {}", config.listen))?;
            // TCP on the same port as UDP (which may have been chosen: port 0).
            let addr = udp.local_addr()?;
            let tcp = TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding tcp {addr}"))?;
            (udp, tcp)
        };
        let addr = udp.local_addr()?;
        let domain = config.domain.trim_end_matches('.').to_ascii_lowercase();
        let own = addr;
        let upstreams = config.upstreams.into_iter().filter(|u| *u != own).collect();
        Ok(Server {
            udp: Arc::new(udp),
            tcp,
            handler: Arc::new(Handler {
                domain,
                upstreams,
                data,
            }),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.udp
            .local_addr()
            .expect("a bound socket has an address")
    }

    pub async fn serve(self) -> anyhow::Result<()> {
        let udp = self.udp.clone();
        let handler = self.handler.clone();
        let udp_loop = async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let (n, peer) = match udp.recv_from(&mut buf).await {
                    Ok(x) => x,
                    Err(err) => {
                        tracing::debug!(error = %err, "dns udp receive");
                        continue;
                    }
                };
                let msg = buf[..n].to_vec();
                let (udp, handler) = (udp.clone(), handler.clone());
                tokio::spawn(async move {
                    let limit = wire::udp_limit(&msg);
                    if let Some(resp) = handler.handle(&msg, limit).await {
                        let _ = udp.send_to(&resp, peer).await;
                    }
                });
            }
        };
        let handler = self.handler.clone();
        let tcp = self.tcp;
        let tcp_loop = async move {
            loop {
                let Ok((mut conn, _)) = tcp.accept().await else {
                    continue;
                };
                let handler = handler.clone();
                tokio::spawn(async move {
                    let one = async {
                        loop {
                            let len = conn.read_u16().await.ok()?;
                            let mut msg = vec![0u8; usize::from(len)];
                            conn.read_exact(&mut msg).await.ok()?;
                            let resp = handler.handle(&msg, 65535).await?;
                            conn.write_u16(resp.len() as u16).await.ok()?;
                            conn.write_all(&resp).await.ok()?;
                        }
                    };
                    // An idle connection is closed after 10 s.
                    let _: Option<Option<()>> = tokio::time::timeout(Duration::from_secs(10), one)
                        .await
                        .ok();
                });
            }
        };
        tokio::join!(udp_loop, tcp_loop);
        Ok(())
    }
}
