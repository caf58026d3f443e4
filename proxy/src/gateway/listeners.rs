//! The bound gateway ports, reconciled with every applied config: the ports of
//! its listeners are bound (new ones), closed (removed ones)
//! or kept (the rest; established connections on a closed port finish).
//! Accept loops hold no config: each connection looks up its port's current
//! listeners (plaintext or TLS) and each request the current route table, so
//! route and certificate changes apply without rebinding. `Tcp` / `Tls`
//! ports are served by [`super::stream`].

use super::tls::{CertStore, SniResolver, server_config};
use crate::net::detect::{Detected, detect};
use crate::net::rewind::Rewind;
use crate::proxy::Proto;
use crate::proxy::Shared;
use crate::proxy::http::{ConnCtx, Side, serve};
use crate::tls::identity::{ALPN_H2, ALPN_HTTP1};
use rustls::ServerConfig;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use weft_proxy_config::{GatewayConfig, ListenerProtocol};

/// How each port is served: the protocol of its first listener (the operator
/// does not put conflicting protocols on one port).
pub fn wanted_ports(gw: Option<&GatewayConfig>) -> BTreeMap<u16, ListenerProtocol> {
    let mut ports = BTreeMap::new();
    for l in gw.iter().flat_map(|g| &g.listeners) {
        let kind = ports.entry(l.port).or_insert(l.protocol);
        if *kind != l.protocol {
            tracing::debug!(listener = %l.name, port = l.port, protocol = ?l.protocol, served_as = ?kind,
                "listener protocol differs from the port's first listener");
        }
    }
    ports
}

/// What to change to serve `wanted` when `bound` are bound.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub bind: Vec<u16>,
    pub close: Vec<u16>,
    pub keep: Vec<u16>,
}

/// The reconcile plan (each list ascending).
pub fn plan(bound: &BTreeSet<u16>, wanted: &BTreeSet<u16>) -> Plan {
    Plan {
        bind: wanted.difference(bound).copied().collect(),
        close: bound.difference(wanted).copied().collect(),
        keep: bound.intersection(wanted).copied().collect(),
    }
}

/// The kind a port has in the current config (`None`: not a served port any more).
fn current_kind(shared: &Shared, port: u16) -> Option<ListenerProtocol> {
    let snap = shared.store.load()?;
    wanted_ports(snap.config.gateway.as_ref()).get(&port).copied()
}

/// One bound port; dropping it stops accepting.
#[derive(Debug)]
struct BoundPort {
    addr: SocketAddr,
    /// The accept loop, and the IPv6 one when bound on every address.
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for BoundPort {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// `[::]:port` with `IPV6_V6ONLY` (the IPv4 socket has the IPv4 addresses):
/// the IPv6 half of binding every address; `None` without IPv6.
fn bind_v6_only(port: u16) -> Option<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let result = (|| {
        let s = Socket::new(Domain::IPV6, Type::STREAM, None)?;
        s.set_only_v6(true)?;
        s.set_reuse_address(true)?;
        s.set_nonblocking(true)?;
        s.bind(&SocketAddr::new(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED), port).into())?;
        s.listen(1024)?;
        TcpListener::from_std(s.into())
    })();
    match result {
        Ok(l) => Some(l),
        Err(error) => {
            tracing::debug!(port, %error, "no IPv6 listener for the gateway port");
            None
        }
    }
}

/// The bound ports of a gateway.
#[derive(Debug)]
pub struct Listeners {
    shared: Arc<Shared>,
    certs: Arc<CertStore>,
    bind: IpAddr,
    bound: BTreeMap<u16, BoundPort>,
    /// Ports whose last bind failed, with the error (logged once per error).
    failed: BTreeMap<u16, String>,
}

impl Listeners {
    pub fn new(shared: Arc<Shared>, certs: Arc<CertStore>, bind: IpAddr) -> Self {
        Self {
            shared,
            certs,
            bind,
            bound: BTreeMap::new(),
            failed: BTreeMap::new(),
        }
    }

    /// The bound addresses, by port.
    pub fn addrs(&self) -> BTreeMap<u16, SocketAddr> {
        self.bound.iter().map(|(p, b)| (*p, b.addr)).collect()
    }

    /// Binds (on the bind address; on every address also IPv6 when the host
    /// has it) and closes ports for `gw`; `true` when every wanted port is bound.
    pub async fn reconcile(&mut self, gw: Option<&GatewayConfig>) -> bool {
        let wanted = wanted_ports(gw);
        let bound: BTreeSet<u16> = self.bound.keys().copied().collect();
        let want: BTreeSet<u16> = wanted.keys().copied().collect();
        let p = plan(&bound, &want);
        for port in &p.close {
            self.bound.remove(port);
            tracing::info!(port, "gateway listener port closed");
        }
        self.failed.retain(|port, _| want.contains(port));
        for port in p.bind {
            match self.bind_port(port).await {
                Ok(b) => {
                    tracing::info!(port, addr = %b.addr, kind = ?wanted.get(&port), "gateway listener port bound");
                    self.failed.remove(&port);
                    self.bound.insert(port, b);
                }
                Err(error) => {
                    let msg = error.to_string();
                    if self.failed.get(&port) != Some(&msg) {
                        tracing::error!(port, bind = %self.bind, %error, "cannot bind gateway listener port; not ready");
                    }
                    self.failed.insert(port, msg);
                }
            }
        }
        self.failed.is_empty()
    }

    async fn bind_port(&self, port: u16) -> std::io::Result<BoundPort> {
        let listener = TcpListener::bind(SocketAddr::new(self.bind, port)).await?;
        let addr = listener.local_addr()?;
        let resolver = SniResolver {
            port,
            store: Arc::clone(&self.shared.store),
            certs: Arc::clone(&self.certs),
        };
        let tls = server_config(resolver).map_err(std::io::Error::other)?;
        let v6 = (self.bind == IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
            .then(|| bind_v6_only(port))
            .flatten();
        let tasks = std::iter::once(listener)
            .chain(v6)
            .map(|l| {
                let tls = Arc::clone(&tls);
                tokio::spawn(crate::proxy::accept::accept_loop_on(
                    l,
                    Arc::clone(&self.shared),
                    "gateway",
                    Some(port),
                    move |shared, stream, peer, _local| {
                        connection(shared, Arc::clone(&tls), port, stream, peer)
                    },
                ))
            })
            .collect();
        Ok(BoundPort { addr, tasks })
    }
}

/// Serves HTTP on `io` as gateway port `port`, detecting the version when not known.
async fn serve_http<I>(
    shared: Arc<Shared>,
    port: u16,
    tls: bool,
    proto: Option<Proto>,
    mut io: I,
    peer: SocketAddr,
) where
    I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (proto, buf) = match proto {
        Some(p) => (p, bytes::BytesMut::new()),
        // Clients may open connections before they need them (preconnect): wait
        // for the first bytes as long as for a request head.
        None => match detect(&mut io, shared.settings.header_read_timeout).await {
            Ok((Detected::Http2, buf)) => (Proto::Http2, buf),
            Ok((_, buf)) if buf.is_empty() => return,
            // Anything else is served as HTTP/1: hyper answers garbage with 400.
            Ok((_, buf)) => (Proto::Http1, buf),
            Err(error) => {
                tracing::debug!(%error, %peer, port, "read failed before the first request");
                return;
            }
        },
    };
    let ctx = Arc::new(ConnCtx {
        shared,
        side: Side::Gateway { port, tls },
        peer,
        proto,
    });
    serve(ctx, Rewind::new(buf, io)).await;
}

/// One accepted connection on gateway port `port`.
async fn connection(
    shared: Arc<Shared>,
    tls: Arc<ServerConfig>,
    port: u16,
    stream: TcpStream,
    peer: SocketAddr,
) {
    let _ = stream.set_nodelay(true);
    match current_kind(&shared, port) {
        Some(ListenerProtocol::Http) => serve_http(shared, port, false, None, stream, peer).await,
        Some(ListenerProtocol::Tcp) => super::stream::serve_tcp(shared, port, stream, peer).await,
        Some(ListenerProtocol::Tls) => super::stream::serve_tls(shared, tls, port, stream, peer).await,
        Some(ListenerProtocol::Https) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(tls);
            let timeout = shared.settings.tls_handshake_timeout;
            let stream = match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                Ok(Ok(s)) => s,
                Ok(Err(error)) => {
                    tracing::debug!(%error, %peer, port, "gateway TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, port, "gateway TLS handshake timed out");
                    return;
                }
            };
            let proto = match stream.get_ref().1.alpn_protocol() {
                Some(p) if p == ALPN_H2 => Some(Proto::Http2),
                Some(p) if p == ALPN_HTTP1 => Some(Proto::Http1),
                _ => None,
            };
            serve_http(shared, port, true, proto, stream, peer).await;
        }
        None => tracing::debug!(port, %peer, "connection on a port no longer served"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn plan_binds_new_closes_removed_keeps_the_rest() {
        let set = |v: &[u16]| v.iter().copied().collect::<BTreeSet<u16>>();
        assert_eq!(
            plan(&set(&[80, 443]), &set(&[443, 8080])),
            Plan {
                bind: vec![8080],
                close: vec![80],
                keep: vec![443]
            }
        );
        assert_eq!(plan(&set(&[]), &set(&[80])).bind, vec![80]);
        assert_eq!(plan(&set(&[80]), &set(&[])).close, vec![80]);
        assert_eq!(
            plan(&set(&[80]), &set(&[80])),
            Plan {
                keep: vec![80],
                ..Plan::default()
            }
        );
    }

    #[tokio::test]
    async fn ipv6_half_binds_beside_the_ipv4_socket() {
        if std::net::TcpListener::bind("[::1]:0").is_err() {
            return; // no IPv6 on this host
        }
        let v4 = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
        let port = v4.local_addr().unwrap().port();
        let v6 = bind_v6_only(port).expect("v6-only socket beside the IPv4 one");
        assert_eq!(v6.local_addr().unwrap().port(), port);
        let accept = tokio::spawn(async move { v6.accept().await.map(|(_, peer)| peer.is_ipv6()) });
        let _c = TcpStream::connect(("::1", port)).await.unwrap();
        assert!(accept.await.unwrap().unwrap());
    }

    #[test]
    fn ports_take_their_first_listeners_protocol() {
        let gw: GatewayConfig = serde_json::from_value(json!({
            "gateway": "shop/gw", "tlsSecret": "s",
            "listeners": [
                {"name": "a", "port": 80, "protocol": "http", "hostname": "a.example"},
                {"name": "b", "port": 80, "protocol": "http"},
                {"name": "c", "port": 443, "protocol": "https", "certificates": ["c"]},
                {"name": "d", "port": 9000, "protocol": "tcp"},
            ]
        }))
        .unwrap();
        let ports = wanted_ports(Some(&gw));
        assert_eq!(
            ports.into_iter().collect::<Vec<_>>(),
            vec![
                (80, ListenerProtocol::Http),
                (443, ListenerProtocol::Https),
                (9000, ListenerProtocol::Tcp)
            ]
        );
        assert!(wanted_ports(None).is_empty());
    }
}
