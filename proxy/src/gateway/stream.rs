//! `Tcp` and `Tls` gateway listener ports: whole connections forwarded to a
//! stream route's backend ([`forward_opaque`]: mTLS to meshed backends,
//! connection limits, TCP metrics). A `Tcp` port's first listener takes every
//! connection (TCPRoute). On a `Tls` port the ClientHello's SNI picks the
//! listener ([`listener_for_sni`]) and its TLSRoute (most specific hostname);
//! a listener with certificates terminates TLS and forwards the plaintext, one
//! without passes the TLS bytes through untouched. Nothing matching closes
//! the connection.

use super::tls::listener_for_sni;
use crate::conf::Snapshot;
use crate::net::rewind::Rewind;
use crate::proxy::Shared;
use crate::proxy::outbound::forward_opaque;
use crate::routing::Backend;
use bytes::BytesMut;
use rustls::ServerConfig;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpStream;
use weft_proxy_config::{GatewayListener, ListenerProtocol};

/// Largest ClientHello read before giving up.
const MAX_HELLO: usize = 64 * 1024;

/// Why a connection's ClientHello could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HelloError {
    #[error("read: {0}")]
    Io(#[from] std::io::Error),
    #[error("the peer closed before the ClientHello")]
    Closed,
    #[error("timed out waiting for the ClientHello")]
    Timeout,
    #[error("not a TLS ClientHello: {0}")]
    Tls(rustls::Error),
    #[error("ClientHello larger than {MAX_HELLO} bytes")]
    TooLarge,
}

/// Reads until a whole ClientHello has arrived; returns its SNI (lower-case)
/// and every byte read (to replay to the backend or the TLS acceptor).
pub async fn read_client_hello<R: AsyncRead + Unpin>(
    io: &mut R,
    timeout: Duration,
) -> Result<(Option<String>, BytesMut), HelloError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut acceptor = rustls::server::Acceptor::default();
    let mut buf = BytesMut::with_capacity(4096);
    let mut fed = 0;
    loop {
        let n = tokio::time::timeout_at(deadline, io.read_buf(&mut buf))
            .await
            .map_err(|_| HelloError::Timeout)??;
        if n == 0 {
            return Err(HelloError::Closed);
        }
        let mut fresh = &buf[fed..];
        while !fresh.is_empty() {
            if acceptor.read_tls(&mut fresh)? == 0 {
                return Err(HelloError::TooLarge);
            }
        }
        fed = buf.len();
        match acceptor.accept() {
            Ok(Some(accepted)) => {
                let sni = accepted
                    .client_hello()
                    .server_name()
                    .map(|s| s.trim_end_matches('.').to_ascii_lowercase());
                return Ok((sni, buf));
            }
            Ok(None) if buf.len() > MAX_HELLO => return Err(HelloError::TooLarge),
            Ok(None) => {}
            Err((e, _alert)) => return Err(HelloError::Tls(e)),
        }
    }
}

/// The listeners of `protocol` on `port` in the applied config.
fn listeners_of(snap: &Snapshot, port: u16, protocol: ListenerProtocol) -> Vec<&GatewayListener> {
    snap.config
        .gateway
        .iter()
        .flat_map(|g| &g.listeners)
        .filter(|l| l.port == port && l.protocol == protocol)
        .collect()
}

/// The backend the stream route of `listener` for `sni` picks.
fn pick(snap: &Snapshot, listener: &str, sni: Option<&str>) -> Option<Arc<Backend>> {
    let entry = snap.table.gateway_listener(listener)?.find_stream(sni)?;
    let backend = entry.pick();
    if backend.is_none() {
        tracing::debug!(listener, source = %entry.source, "stream route has no usable backend");
    }
    backend
}

/// One connection on a `Tcp` listener port.
pub async fn serve_tcp(shared: Arc<Shared>, port: u16, stream: TcpStream, peer: SocketAddr) {
    let backend = shared.store.load().and_then(|snap| {
        let l = listeners_of(&snap, port, ListenerProtocol::Tcp)
            .into_iter()
            .next()?;
        pick(&snap, &l.name, None)
    });
    let Some(backend) = backend else {
        tracing::debug!(port, %peer, "no TCP route for the connection; closed");
        return;
    };
    forward_opaque(&shared, &backend, stream, peer).await;
}

/// One connection on a `Tls` listener port (`tls` terminates for listeners with certificates).
pub async fn serve_tls(
    shared: Arc<Shared>,
    tls: Arc<ServerConfig>,
    port: u16,
    mut stream: TcpStream,
    peer: SocketAddr,
) {
    let timeout = shared.settings.tls_handshake_timeout;
    let (sni, buf) = match read_client_hello(&mut stream, timeout).await {
        Ok(x) => x,
        Err(error) => {
            tracing::debug!(port, %peer, %error, "no ClientHello; closed");
            return;
        }
    };
    let chosen = shared.store.load().and_then(|snap| {
        let ls = listeners_of(&snap, port, ListenerProtocol::Tls);
        let l = listener_for_sni(&ls, sni.as_deref())?;
        Some((!l.certificates.is_empty(), pick(&snap, &l.name, sni.as_deref())?))
    });
    let Some((terminate, backend)) = chosen else {
        tracing::debug!(port, %peer, sni = sni.as_deref().unwrap_or(""), "no TLS route for the SNI; closed");
        return;
    };
    let io = Rewind::new(buf, stream);
    if !terminate {
        forward_opaque(&shared, &backend, io, peer).await;
        return;
    }
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    match tokio::time::timeout(timeout, acceptor.accept(io)).await {
        Ok(Ok(tls)) => forward_opaque(&shared, &backend, tls, peer).await,
        Ok(Err(error)) => tracing::debug!(port, %peer, %error, "gateway TLS handshake failed"),
        Err(_) => tracing::debug!(port, %peer, "gateway TLS handshake timed out"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// The bytes a rustls client sends first for `sni`.
    fn client_hello(sni: &str) -> Vec<u8> {
        let cfg = rustls::ClientConfig::builder_with_provider(crate::tls::identity::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(sni.to_string()).unwrap();
        let mut conn = rustls::ClientConnection::new(Arc::new(cfg), name).unwrap();
        let mut out = Vec::new();
        conn.write_tls(&mut out).unwrap();
        out
    }

    #[tokio::test]
    async fn reads_the_sni_in_pieces_and_keeps_the_bytes() {
        let hello = client_hello("Shop.Example.Test");
        let (mut a, mut b) = tokio::io::duplex(64 * 1024);
        let sent = hello.clone();
        tokio::spawn(async move {
            let (x, y) = sent.split_at(7);
            a.write_all(x).await.unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
            a.write_all(y).await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        let (sni, buf) = read_client_hello(&mut b, Duration::from_secs(2)).await.unwrap();
        assert_eq!(sni.as_deref(), Some("shop.example.test"));
        assert_eq!(&buf[..], &hello[..]);
    }

    #[tokio::test]
    async fn refuses_what_is_not_tls() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        a.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        assert!(matches!(
            read_client_hello(&mut b, Duration::from_secs(1)).await,
            Err(HelloError::Tls(_))
        ));
        drop(a);
        let (a, mut b) = tokio::io::duplex(1024);
        drop(a);
        assert!(matches!(
            read_client_hello(&mut b, Duration::from_secs(1)).await,
            Err(HelloError::Closed)
        ));
    }
}
