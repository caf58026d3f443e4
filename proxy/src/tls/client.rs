//! The outbound connector: TLS 1.3 with the workload certificate to meshed
//! endpoints (those with an expected SPIFFE ID), checking the server's
//! identity during the handshake; plain TCP to endpoints outside the mesh.
//!
//! Protocol over the mesh hop: the proxy never translates HTTP versions, so the
//! connection carries what the app spoke and says so with ALPN — `h2` for
//! HTTP/2 and gRPC, `http/1.1` for HTTP/1, none for opaque TCP. The inbound
//! proxy uses the negotiated ALPN instead of sniffing.

use super::identity::IdentityStore;
use crate::endpoint::Endpoint;
use crate::proxy::connect::{Alpn, BoxIo, ConnectError, ConnectFuture, Connector, tcp_connect};
use rustls::pki_types::ServerName;
use std::sync::Arc;
use std::time::Duration;
use tokio_rustls::TlsConnector;

/// mTLS to meshed endpoints, plaintext to the rest.
#[derive(Debug, Clone)]
pub struct MeshConnector {
    identity: Arc<IdentityStore>,
}

impl MeshConnector {
    /// A connector using `identity`.
    pub fn new(identity: Arc<IdentityStore>) -> Self {
        Self { identity }
    }
}

impl Connector for MeshConnector {
    fn connect<'a>(&'a self, ep: &'a Endpoint, timeout: Duration, alpn: Alpn) -> ConnectFuture<'a> {
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + timeout;
            let tcp = tcp_connect(ep.addr, timeout).await?;
            let Some(expected) = &ep.identity else {
                return Ok(Box::new(tcp) as BoxIo);
            };
            let material = self
                .identity
                .current()
                .ok_or_else(|| ConnectError::Rejected("no workload certificate loaded yet".into()))?;
            let cfg = material
                .client(expected, alpn)
                .map_err(|e| ConnectError::Rejected(e.to_string()))?;
            // An IP server name: no SNI is sent; the verifier checks the SPIFFE ID.
            let name = ServerName::IpAddress(ep.addr.ip().into());
            let tls = tokio::time::timeout_at(deadline, TlsConnector::from(cfg).connect(name, tcp))
                .await
                .map_err(|_| ConnectError::Timeout(timeout))?
                .map_err(|e| {
                    tracing::debug!(error = %e, upstream = %ep.addr, expected = %expected, "mTLS handshake failed");
                    ConnectError::Rejected(format!("mTLS handshake with {}: {e}", ep.addr))
                })?;
            Ok(Box::new(tls) as BoxIo)
        })
    }
}
