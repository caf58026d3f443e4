//! The outbound listener (:15001): finds each connection's original
//! destination, looks it up in the routing table, detects the protocol (unless
//! the port has a hint) and then serves HTTP or forwards opaque TCP through the
//! route. Destinations unknown to the mesh are passed through as plain TCP.

use super::connect::{Alpn, ConnectError, Connector, tcp_connect};
use super::http::{ConnCtx, Side, serve};
use super::{Proto, Shared};
use crate::net::detect::{Detected, detect};
use crate::net::orig_dst::original_dst;
use crate::net::rewind::Rewind;
use crate::net::self_guard::Direction;
use crate::net::tcp;
use crate::proxy::policy::pick_endpoint;
use crate::resilience::retry::Attempt;
use crate::routing::PortRoute;
use bytes::BytesMut;
use http::HeaderMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use weft_proxy_config::Protocol;

/// How a connection's original destination is found.
#[derive(Debug, Clone, Copy)]
pub enum OrigDst {
    /// `SO_ORIGINAL_DST` (iptables REDIRECT); falls back to the local address
    /// when the connection was not redirected.
    Kernel,
    /// Every connection on this listener is treated as addressed to this
    /// destination (explicit-listener mode, tests, benchmarks).
    Fixed(SocketAddr),
}

/// Accepts until draining starts.
pub async fn run(listener: TcpListener, shared: Arc<Shared>, orig: OrigDst) {
    super::accept::accept_loop(
        listener,
        shared,
        "outbound",
        move |shared, stream, peer, _local| handle(shared, stream, peer, orig),
    )
    .await;
}

fn destination(stream: &TcpStream, orig: OrigDst) -> Option<SocketAddr> {
    match orig {
        OrigDst::Fixed(dst) => Some(dst),
        OrigDst::Kernel => original_dst(stream).or_else(|_| stream.local_addr()).ok(),
    }
}

async fn handle(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr, orig: OrigDst) {
    let _ = stream.set_nodelay(true);
    let Some(dst) = destination(&stream, orig) else {
        return;
    };
    // A destination on one of the proxy's own ports here would loop back into it.
    if shared.self_guard.reject(Direction::Outbound, dst, peer) {
        return;
    }
    let route = shared.store.load().and_then(|s| s.table.outbound(&dst).cloned());
    let Some(route) = route else {
        passthrough(&shared, stream, dst).await;
        return;
    };
    let mut stream = stream;
    let (proto, buf) = match route.protocol {
        Protocol::Http1 => (Some(Proto::Http1), BytesMut::new()),
        Protocol::Http2 | Protocol::Grpc => (Some(Proto::Http2), BytesMut::new()),
        Protocol::Tcp => (None, BytesMut::new()),
        Protocol::Detect => match detect(&mut stream, shared.settings.detect_timeout).await {
            Ok((Detected::Http1, buf)) => (Some(Proto::Http1), buf),
            Ok((Detected::Http2, buf)) => (Some(Proto::Http2), buf),
            Ok((Detected::NeedMore, buf)) if buf.is_empty() => return,
            Ok((_, buf)) => (None, buf),
            Err(error) => {
                tracing::debug!(%error, %peer, "read failed during detection");
                return;
            }
        },
    };
    let io = Rewind::new(buf, stream);
    match proto {
        Some(proto) => {
            serve(
                Arc::new(ConnCtx {
                    shared,
                    side: Side::Outbound { dst },
                    peer,
                    proto,
                }),
                io,
            )
            .await
        }
        None => opaque(&shared, &route, io, peer).await,
    }
}

async fn opaque(shared: &Shared, route: &PortRoute, io: Rewind<TcpStream>, peer: SocketAddr) {
    forward_opaque(shared, route.select_tcp(), io, peer).await;
}

/// Forwards an opaque byte stream to an endpoint of `backend` (connection
/// limits, outlier detection and TCP metrics apply). Used by the gateway's
/// stream listeners too.
pub async fn forward_opaque<I>(shared: &Shared, backend: &crate::routing::Backend, io: I, peer: SocketAddr)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let state = backend.policy.state.as_deref();
    let Some(ep) = pick_endpoint(backend, &HeaderMap::new(), peer, &[], Instant::now()) else {
        tracing::debug!(service = %backend.service, "no ready endpoint for tcp connection");
        return;
    };
    let timeout = backend
        .policy
        .connect_timeout
        .unwrap_or(shared.settings.connect_timeout);
    // maxConnections applies to opaque connections too.
    let limited = state
        .and_then(|s| s.limits.as_ref())
        .and_then(|l| l.connector(&shared.connector));
    let connector: &dyn Connector = match &limited {
        Some(c) => c,
        None => &*shared.connector,
    };
    let up = match connector.connect(&ep, timeout, Alpn::Opaque).await {
        Ok(up) => up,
        Err(error) => {
            if let Some(s) = state {
                if let Some(o) = &s.outlier {
                    o.record(
                        ep.addr,
                        Attempt::ConnectFailure,
                        backend.balancer.endpoints().len(),
                        Instant::now(),
                    );
                }
                if let ConnectError::Overflow(reason) = error {
                    s.rejected(reason);
                }
            }
            tracing::debug!(%error, upstream = %ep.addr, "tcp connect failed");
            return;
        }
    };
    let _in_flight = ep.load.start();
    backend.tcp_metrics.opened();
    let out = tcp::forward(io, up, shared.settings.tcp_idle_timeout).await;
    backend.tcp_metrics.closed(out.from_downstream, out.from_upstream);
}

async fn passthrough(shared: &Shared, stream: TcpStream, dst: SocketAddr) {
    let metrics = shared.store.load().map(|s| Arc::clone(&s.table.passthrough));
    let up = match tcp_connect(dst, shared.settings.connect_timeout).await {
        Ok(up) => up,
        Err(error) => {
            tracing::debug!(%error, %dst, "passthrough connect failed");
            return;
        }
    };
    if let Some(m) = &metrics {
        m.opened();
    }
    let out = tcp::forward(stream, up, shared.settings.tcp_idle_timeout).await;
    if let Some(m) = &metrics {
        m.closed(out.from_downstream, out.from_upstream);
    }
}
