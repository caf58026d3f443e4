//! The inbound security layer: detects a TLS ClientHello on each accepted
//! connection, terminates mTLS with the workload certificate (the client must
//! present a certificate from the mesh CA) and reads the peer's SPIFFE ID;
//! plaintext is accepted only in mTLS mode `permissive`. Authorization uses the
//! current config snapshot's [`crate::authz::Authz`]. The admin port is a
//! separate listener and never comes through here; kubelet probes are rewritten
//! to it by the injector (docs/injection.md), so strict mode needs no exception.

use super::identity::{ALPN_H2, ALPN_HTTP1, IdentityStore};
use super::verify::{in_trust_domain, spiffe_id};
use crate::conf::ConfigStore;
use crate::log_limit::LogLimit;
use crate::metrics::{Kind, Metrics, Series};
use crate::net::detect::{Detected, classify};
use crate::net::rewind::Rewind;
use crate::proxy::connect::BoxIo;
use crate::proxy::hooks::{AcceptFuture, InboundSecurity, Peer};
use crate::proxy::{Proto, Settings};
use bytes::BytesMut;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use weft_proxy_config::MtlsMode;

/// Body of the answer to a plaintext HTTP/1 request in strict mode: the caller is not a
/// mesh sidecar, or its sidecar may not call this workload (no TrafficTarget, so its config
/// does not list the service and it did not originate mTLS).
const PLAINTEXT_FORBIDDEN: &str =
    "weft: mTLS required (mtlsMode strict): the caller is not meshed or not allowed by a TrafficTarget\n";

fn plaintext_forbidden_response() -> String {
    format!(
        "HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\nx-weft-error: mtls-required\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{PLAINTEXT_FORBIDDEN}",
        PLAINTEXT_FORBIDDEN.len()
    )
}

/// Time allowed to write the plaintext 403 answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether the first bytes are a TLS handshake record (`None`: need more).
pub fn is_tls_hello(buf: &[u8]) -> Option<bool> {
    match buf {
        [] => None,
        [0x16] | [0x16, 0x03] => None,
        [0x16, 0x03, minor, ..] => Some(*minor <= 0x04),
        _ => Some(false),
    }
}

async fn sniff(stream: &mut TcpStream, timeout: Duration) -> io::Result<(bool, BytesMut)> {
    let mut buf = BytesMut::with_capacity(512);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(tls) = is_tls_hello(&buf) {
            return Ok((tls, buf));
        }
        match tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)).await {
            // Silent client (server-speaks-first protocol): not TLS.
            Err(_) => return Ok((false, buf)),
            Ok(Ok(0)) => return Ok((false, buf)),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
        }
    }
}

/// Largest TLS record a ClientHello may arrive in (RFC 8446 §5.1: 2^14 bytes of
/// plaintext; a little more is tolerated for old clients).
const MAX_HELLO_RECORD: usize = (1 << 14) + 256;

/// Reads the rest of the first TLS record (the ClientHello) into `buf` before any TLS
/// state is allocated, so a peer that sends a record header and stalls costs only this
/// buffer. `Ok(false)`: the deadline passed first.
async fn read_hello_record(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    deadline: tokio::time::Instant,
) -> io::Result<bool> {
    loop {
        if buf.len() >= 5 {
            let len = usize::from(u16::from_be_bytes([buf[3], buf[4]]));
            if len > MAX_HELLO_RECORD {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "oversized TLS record"));
            }
            if buf.len() >= 5 + len {
                return Ok(true);
            }
            buf.reserve(5 + len - buf.len());
        }
        match tokio::time::timeout_at(deadline, stream.read_buf(buf)).await {
            Err(_) => return Ok(false),
            Ok(Ok(0)) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
        }
    }
}

/// Whether a plaintext connection starts with an HTTP/1 request line (reads a little more
/// while undecided).
async fn is_plaintext_http1(stream: &mut TcpStream, buf: &mut BytesMut, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match classify(buf) {
            Detected::Http1 => return true,
            Detected::NeedMore if buf.len() < 64 => {}
            _ => return false,
        }
        match tokio::time::timeout_at(deadline, stream.read_buf(buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return false,
        }
    }
}

/// mTLS termination and SMI authorization.
#[derive(Debug)]
pub struct MeshInbound {
    store: Arc<ConfigStore>,
    identity: Option<Arc<IdentityStore>>,
    detect_timeout: Duration,
    handshake_timeout: Duration,
    plaintext_rejected: Arc<Series>,
    handshake_failed: Arc<Series>,
    handshake_timed_out: Arc<Series>,
    /// Peers whose certificate names no identity of the mesh's trust domain.
    foreign_identity: Arc<Series>,
    /// Bounded logs for what untrusted peers can trigger.
    refused_log: LogLimit,
    denied_log: LogLimit,
}

impl MeshInbound {
    /// Inbound security for the proxy with `store`; without `identity` only
    /// plaintext can be accepted (so strict mode refuses everything).
    pub fn new(
        store: Arc<ConfigStore>,
        identity: Option<Arc<IdentityStore>>,
        settings: &Settings,
        metrics: &Metrics,
    ) -> Self {
        let f = &metrics.families;
        let help = "Inbound connections refused before authorization, by reason.";
        Self {
            store,
            identity,
            detect_timeout: settings.detect_timeout,
            handshake_timeout: settings.tls_handshake_timeout,
            plaintext_rejected: f.series(
                "inbound_tls_rejected_total",
                Kind::Counter,
                help,
                "reason=\"plaintext\"",
            ),
            handshake_failed: f.series(
                "inbound_tls_rejected_total",
                Kind::Counter,
                help,
                "reason=\"handshake\"",
            ),
            handshake_timed_out: f.series(
                "inbound_tls_rejected_total",
                Kind::Counter,
                help,
                "reason=\"handshake_timeout\"",
            ),
            foreign_identity: f.series(
                "inbound_tls_rejected_total",
                Kind::Counter,
                help,
                "reason=\"trust_domain\"",
            ),
            refused_log: LogLimit::default(),
            denied_log: LogLimit::default(),
        }
    }

    /// Counts and logs (bounded) a handshake that did not finish within its timeout.
    fn handshake_timeout_error(&self, addr: SocketAddr, port: u16) -> io::Error {
        self.handshake_timed_out.inc();
        if let Some(suppressed) = self.refused_log.admit() {
            tracing::info!(peer = %addr, port, timeout_ms = self.handshake_timeout.as_millis() as u64,
                suppressed, "inbound TLS handshake not completed in time");
        }
        io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out")
    }

    fn strict(&self) -> bool {
        self.store
            .load()
            .is_none_or(|s| s.config.mesh.mtls_mode == MtlsMode::Strict)
    }
}

impl InboundSecurity for MeshInbound {
    fn accept(&self, stream: TcpStream, addr: SocketAddr, port: u16) -> AcceptFuture<'_> {
        Box::pin(async move {
            let mut stream = stream;
            let handshake_deadline = tokio::time::Instant::now() + self.handshake_timeout;
            let (tls, mut buf) = sniff(&mut stream, self.detect_timeout).await?;
            if !tls && self.strict() && is_plaintext_http1(&mut stream, &mut buf, self.detect_timeout).await {
                // Plaintext HTTP/1 gets a readable answer (as Linkerd does) instead of a reset.
                self.plaintext_rejected.inc();
                if let Some(suppressed) = self.refused_log.admit() {
                    tracing::info!(peer = %addr, port, suppressed, "plaintext HTTP refused with 403 (mTLS mode strict)");
                }
                let _ = tokio::time::timeout(
                    ANSWER_TIMEOUT,
                    stream.write_all(plaintext_forbidden_response().as_bytes()),
                )
                .await;
                let _ = stream.shutdown().await;
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    "plaintext refused",
                ));
            }
            if tls {
                match read_hello_record(&mut stream, &mut buf, handshake_deadline).await {
                    Ok(true) => {}
                    Ok(false) => return Err(self.handshake_timeout_error(addr, port)),
                    Err(error) => {
                        self.handshake_failed.inc();
                        tracing::debug!(peer = %addr, port, %error, "inbound ClientHello unreadable");
                        return Err(error);
                    }
                }
            }
            let io = Rewind::new(buf, stream);
            if !tls {
                if self.strict() {
                    self.plaintext_rejected.inc();
                    if let Some(suppressed) = self.refused_log.admit() {
                        tracing::info!(peer = %addr, port, suppressed, "plaintext connection refused (mTLS mode strict)");
                    }
                    return Err(io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        "plaintext refused",
                    ));
                }
                let peer = Peer {
                    addr,
                    identity: None,
                    alpn: None,
                };
                return Ok((Box::new(io) as BoxIo, peer));
            }
            let material = self.identity.as_ref().and_then(|i| i.current()).ok_or_else(|| {
                self.handshake_failed.inc();
                io::Error::other("no workload certificate loaded yet")
            })?;
            let accepted = tokio::time::timeout_at(
                handshake_deadline,
                TlsAcceptor::from(Arc::clone(&material.server)).accept(io),
            )
            .await;
            let tls = match accepted {
                Ok(Ok(t)) => t,
                Ok(Err(error)) => {
                    self.handshake_failed.inc();
                    tracing::debug!(peer = %addr, port, %error, "inbound mTLS handshake failed");
                    return Err(error);
                }
                Err(_) => return Err(self.handshake_timeout_error(addr, port)),
            };
            let (_, conn) = tls.get_ref();
            let identity = conn
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| spiffe_id(c))
                .map(Arc::<str>::from);
            // The bundle may hold other trust domains' roots (federation, a CA being
            // migrated): only identities of the mesh's own trust domain are accepted.
            let trust_domain = self.store.load().map(|s| s.config.mesh.trust_domain.clone());
            let accepted = match (&identity, &trust_domain) {
                (Some(id), Some(td)) => in_trust_domain(id, td),
                _ => false,
            };
            if !accepted {
                self.foreign_identity.inc();
                if let Some(suppressed) = self.refused_log.admit() {
                    tracing::info!(peer = %addr, port, identity = identity.as_deref().unwrap_or("<none>"),
                        trust_domain = trust_domain.as_deref().unwrap_or("<no config>"), suppressed,
                        "inbound mTLS peer refused: not an identity of the mesh's trust domain");
                }
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    "foreign trust domain",
                ));
            }
            let alpn = match conn.alpn_protocol() {
                Some(p) if p == ALPN_H2 => Some(Proto::Http2),
                Some(p) if p == ALPN_HTTP1 => Some(Proto::Http1),
                _ => None,
            };
            Ok((Box::new(tls) as BoxIo, Peer { addr, identity, alpn }))
        })
    }

    fn allow_tcp(&self, peer: &Peer, port: u16) -> bool {
        let Some(snap) = self.store.load() else {
            return false;
        };
        match snap.authz.check_tcp(peer.identity.as_deref(), port) {
            Ok(_) => true,
            Err(reason) => {
                if let Some(suppressed) = self.denied_log.admit() {
                    tracing::info!(source = peer.identity.as_deref().unwrap_or("<none>"), peer = %peer.addr,
                        port, %reason, suppressed, "inbound TCP connection denied");
                }
                false
            }
        }
    }

    fn allow_http(&self, peer: &Peer, port: u16, req: &http::request::Parts) -> bool {
        let Some(snap) = self.store.load() else {
            return false;
        };
        let source = peer.identity.as_deref();
        match snap
            .authz
            .check_http(source, port, &req.method, req.uri.path(), &req.headers)
        {
            Ok(_) => true,
            Err(reason) => {
                if let Some(suppressed) = self.denied_log.admit() {
                    tracing::info!(source = source.unwrap_or("<none>"), peer = %peer.addr, port,
                        method = %req.method, path = req.uri.path(), %reason, suppressed, "inbound request denied");
                }
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_client_hello() {
        assert_eq!(is_tls_hello(&[0x16, 0x03, 0x01, 0x02, 0x00]), Some(true));
        assert_eq!(is_tls_hello(&[0x16, 0x03]), None);
        assert_eq!(is_tls_hello(b"GET / HTTP/1.1"), Some(false));
        assert_eq!(is_tls_hello(b"PRI * HTTP/2.0"), Some(false));
        assert_eq!(is_tls_hello(&[0x16, 0x03, 0x09]), Some(false));
        assert_eq!(is_tls_hello(&[]), None);
    }
}
