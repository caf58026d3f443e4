//! The inbound security hook. The default [`Plaintext`] accepts every peer
//! without transport security; the mTLS layer replaces it with one that
//! terminates TLS, reads the peer's SPIFFE ID from its certificate and applies
//! the TrafficTarget grants.

use super::connect::BoxIo;
use std::fmt::Debug;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use tokio::net::TcpStream;

/// Who is on the other end of an inbound connection.
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    /// Verified SPIFFE ID, when the connection used mTLS.
    pub identity: Option<Arc<str>>,
    /// Protocol negotiated with ALPN (mesh hops), used instead of sniffing.
    pub alpn: Option<super::Proto>,
}

/// Result of accepting an inbound connection.
pub type AcceptFuture<'a> = Pin<Box<dyn Future<Output = io::Result<(BoxIo, Peer)>> + Send + 'a>>;

/// Transport security and authorization for inbound traffic.
pub trait InboundSecurity: Send + Sync + Debug + 'static {
    /// Wraps an accepted connection to local `port` (e.g. TLS termination).
    fn accept(&self, stream: TcpStream, peer: SocketAddr, port: u16) -> AcceptFuture<'_>;

    /// Whether an opaque TCP connection to `port` is allowed.
    fn allow_tcp(&self, peer: &Peer, port: u16) -> bool;

    /// Whether an HTTP request to `port` is allowed (→ 403 otherwise).
    fn allow_http(&self, peer: &Peer, port: u16, req: &http::request::Parts) -> bool;
}

/// No transport security, everything allowed.
#[derive(Debug, Default, Clone, Copy)]
pub struct Plaintext;

impl InboundSecurity for Plaintext {
    fn accept(&self, stream: TcpStream, peer: SocketAddr, _port: u16) -> AcceptFuture<'_> {
        Box::pin(async move {
            Ok((
                Box::new(stream) as BoxIo,
                Peer {
                    addr: peer,
                    identity: None,
                    alpn: None,
                },
            ))
        })
    }

    fn allow_tcp(&self, _peer: &Peer, _port: u16) -> bool {
        true
    }

    fn allow_http(&self, _peer: &Peer, _port: u16, _req: &http::request::Parts) -> bool {
        true
    }
}
