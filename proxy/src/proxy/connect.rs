//! Opening connections to upstream endpoints. [`Connector`] is the hook where
//! the mTLS layer plugs in: it gets the endpoint (address and the SPIFFE ID it
//! must present) and returns any byte stream. [`PlainConnector`] is plain TCP.

use crate::endpoint::Endpoint;
use std::fmt::Debug;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// A bidirectional byte stream to an upstream.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// A boxed upstream stream.
pub type BoxIo = Box<dyn Io>;

/// Boxed connect future.
pub type ConnectFuture<'a> = Pin<Box<dyn Future<Output = Result<BoxIo, ConnectError>> + Send + 'a>>;

/// Why a connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connect timed out after {0:?}")]
    Timeout(Duration),
    #[error("connect failed: {0}")]
    Io(#[from] io::Error),
    /// Raised by security layers (e.g. a TLS handshake or identity mismatch).
    #[error("connection rejected: {0}")]
    Rejected(String),
    /// A circuit breaker's connection limit is reached (the reason).
    #[error("connection limit reached: {0}")]
    Overflow(&'static str),
}

/// The protocol that will run over a new upstream connection (the mTLS layer
/// offers it as ALPN: `h2`, `http/1.1`, or nothing for opaque TCP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alpn {
    Http1,
    Http2,
    Opaque,
}

impl ConnectError {
    /// Short reason for the `x-weft-error` header.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Timeout(_) => "connect-timeout",
            Self::Io(_) => "connect-failed",
            Self::Rejected(_) => "connect-rejected",
            Self::Overflow(reason) => reason,
        }
    }
}

/// Opens a stream to an endpoint.
pub trait Connector: Send + Sync + Debug + 'static {
    /// Connects to `ep` for `alpn`, giving up after `timeout`.
    fn connect<'a>(&'a self, ep: &'a Endpoint, timeout: Duration, alpn: Alpn) -> ConnectFuture<'a>;
}

/// TCP keepalive idle time on upstream connections (pooled ones may sit idle).
const UPSTREAM_KEEPALIVE: Duration = Duration::from_secs(60);

/// Opens a TCP connection with `TCP_NODELAY` and TCP keepalive, bounded by `timeout`.
pub async fn tcp_connect(addr: std::net::SocketAddr, timeout: Duration) -> Result<TcpStream, ConnectError> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| ConnectError::Timeout(timeout))??;
    stream.set_nodelay(true)?;
    super::accept::set_keepalive(&stream, Some(UPSTREAM_KEEPALIVE));
    Ok(stream)
}

/// Opens a TCP connection to `addr` from `source` (port chosen by the kernel), like
/// [`tcp_connect`].
pub async fn tcp_connect_from(
    source: std::net::IpAddr,
    addr: std::net::SocketAddr,
    timeout: Duration,
) -> Result<TcpStream, ConnectError> {
    let socket = match addr {
        std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.bind(std::net::SocketAddr::new(source, 0))?;
    let stream = tokio::time::timeout(timeout, socket.connect(addr))
        .await
        .map_err(|_| ConnectError::Timeout(timeout))??;
    stream.set_nodelay(true)?;
    super::accept::set_keepalive(&stream, Some(UPSTREAM_KEEPALIVE));
    Ok(stream)
}

/// Plain TCP.
#[derive(Debug, Default, Clone, Copy)]
pub struct PlainConnector;

/// Plain TCP to the local app: to a non-loopback address (the pod IP the peer dialled)
/// from [`crate::net::inbound_source`], so the iptables plan does not capture it again.
#[derive(Debug, Default, Clone, Copy)]
pub struct AppConnector;

impl Connector for AppConnector {
    fn connect<'a>(&'a self, ep: &'a Endpoint, timeout: Duration, _alpn: Alpn) -> ConnectFuture<'a> {
        Box::pin(async move {
            let s = if ep.addr.ip().is_loopback() {
                tcp_connect(ep.addr, timeout).await?
            } else {
                let source = crate::net::inbound_source::for_destination(ep.addr.ip());
                tcp_connect_from(source, ep.addr, timeout).await?
            };
            Ok(Box::new(s) as BoxIo)
        })
    }
}

impl Connector for PlainConnector {
    fn connect<'a>(&'a self, ep: &'a Endpoint, timeout: Duration, _alpn: Alpn) -> ConnectFuture<'a> {
        Box::pin(async move {
            let s = tcp_connect(ep.addr, timeout).await?;
            Ok(Box::new(s) as BoxIo)
        })
    }
}
