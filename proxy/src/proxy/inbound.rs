//! The inbound listener (:15006): traffic from peers to the local app at the address
//! the peer dialled (the pod IP and original port, never `127.0.0.1`, so listeners the
//! app bound to loopback stay private to the pod). The [`InboundSecurity`](super::hooks::InboundSecurity)
//! hook terminates transport security and authorizes; then HTTP is served
//! (for per-request metrics and authorization) or bytes are forwarded.

use super::connect::{Alpn, BoxIo};
use super::hooks::Peer;
use super::http::{ConnCtx, Side, serve};
use super::{Proto, Shared};
use crate::net::detect::{Detected, detect};
use crate::net::orig_dst::original_dst;
use crate::net::rewind::Rewind;
use crate::net::self_guard::Direction;
use crate::net::tcp;
use bytes::BytesMut;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use weft_proxy_config::Protocol;

/// How the app port of a connection is found.
#[derive(Debug, Clone, Copy)]
pub enum InboundTarget {
    /// Port of `SO_ORIGINAL_DST` (iptables REDIRECT).
    Kernel,
    /// Every connection goes to this local app port (explicit-listener mode).
    Fixed(u16),
}

/// Accepts until draining starts.
pub async fn run(listener: TcpListener, shared: Arc<Shared>, target: InboundTarget) {
    super::accept::accept_loop(
        listener,
        shared,
        "inbound",
        move |shared, stream, peer, _local| handle(shared, stream, peer, target),
    )
    .await;
}

/// Where the app is for this connection: the original destination (iptables
/// `REDIRECT`), or the listener's local address with the fixed app port.
fn app_addr(stream: &TcpStream, target: InboundTarget) -> Option<SocketAddr> {
    match target {
        InboundTarget::Fixed(p) => Some(SocketAddr::new(stream.local_addr().ok()?.ip(), p)),
        InboundTarget::Kernel => original_dst(stream).or_else(|_| stream.local_addr()).ok(),
    }
}

async fn handle(shared: Arc<Shared>, stream: TcpStream, peer_addr: SocketAddr, target: InboundTarget) {
    let _ = stream.set_nodelay(true);
    let Some(app_addr) = app_addr(&stream, target) else {
        return;
    };
    // An app address on one of the proxy's own ports would loop.
    if shared.self_guard.reject(Direction::Inbound, app_addr, peer_addr) {
        return;
    }
    let port = app_addr.port();
    let Some(snap) = shared.store.load() else { return };
    let info = Arc::clone(snap.table.inbound(port));
    drop(snap);
    let app = info.app_at(app_addr);
    let (mut io, peer): (BoxIo, Peer) = match shared.inbound_security.accept(stream, peer_addr, port).await {
        Ok(x) => x,
        Err(error) => {
            tracing::debug!(%error, peer = %peer_addr, "inbound connection rejected");
            return;
        }
    };
    let (proto, buf) = match (peer.alpn, info.protocol) {
        (Some(p), _) => (Some(p), BytesMut::new()),
        (None, protocol) => match protocol {
            Protocol::Http1 => (Some(Proto::Http1), BytesMut::new()),
            Protocol::Http2 | Protocol::Grpc => (Some(Proto::Http2), BytesMut::new()),
            Protocol::Tcp => (None, BytesMut::new()),
            Protocol::Detect => match detect(&mut io, shared.settings.detect_timeout).await {
                Ok((Detected::Http1, buf)) => (Some(Proto::Http1), buf),
                Ok((Detected::Http2, buf)) => (Some(Proto::Http2), buf),
                Ok((Detected::NeedMore, buf)) if buf.is_empty() => return,
                Ok((_, buf)) => (None, buf),
                Err(_) => return,
            },
        },
    };
    let io = Rewind::new(buf, io);
    match proto {
        Some(proto) => {
            let side = Side::Inbound {
                port,
                app,
                info,
                peer,
            };
            // Boxed: the connection task stays small while it waits for a handshake.
            Box::pin(serve(
                Arc::new(ConnCtx {
                    shared,
                    side,
                    peer: peer_addr,
                    proto,
                }),
                io,
            ))
            .await;
        }
        None => {
            if !shared.inbound_security.allow_tcp(&peer, port) {
                tracing::debug!(peer = %peer_addr, port, "tcp connection not authorized");
                return;
            }
            let up = match shared
                .app_connector
                .connect(&app, shared.settings.connect_timeout, Alpn::Opaque)
                .await
            {
                Ok(up) => up,
                Err(error) => {
                    tracing::debug!(%error, port, "connect to app failed");
                    return;
                }
            };
            info.tcp_metrics.opened();
            let out = Box::pin(tcp::forward(io, up, shared.settings.tcp_idle_timeout)).await;
            info.tcp_metrics.closed(out.from_downstream, out.from_upstream);
        }
    }
}
