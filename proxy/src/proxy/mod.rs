//! The data path: listeners, protocol handling and forwarding.
//!
//! Hook points for the security/resilience layer:
//! - [`connect::Connector`]: how upstream connections are opened (mTLS client side).
//! - [`hooks::InboundSecurity`]: TLS termination, peer identity and authorization
//!   for inbound connections and requests.
//! - [`policy::call`]: the per-request layer around the upstream call (retries,
//!   timeouts, circuit breakers).

pub mod accept;
pub mod access_log;
pub mod activity;
pub mod body;
pub mod connect;
pub mod errors;
pub mod fault;
pub mod forward;
pub mod gamma;
pub mod headers;
pub mod hooks;
pub mod http;
pub mod inbound;
pub mod mirror;
pub mod outbound;
pub mod outbound_http;
pub mod policy;
pub mod pool;
pub mod replay;
pub mod sticky;
pub mod tee;
pub mod tunnel;

use crate::conf::ConfigStore;
use crate::drain::Drain;
use crate::metrics::Metrics;
use std::sync::Arc;
use std::time::Duration;

/// Timeouts and switches for the data path.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Upstream connect timeout (a service's circuit breaker may override it).
    pub connect_timeout: Duration,
    /// Time allowed for upstream response headers (`None` = unlimited).
    pub response_timeout: Option<Duration>,
    /// Opaque TCP connections close after this long without traffic.
    pub tcp_idle_timeout: Duration,
    /// How long to wait for first bytes when detecting the protocol.
    pub detect_timeout: Duration,
    /// Downstream HTTP/1 request headers must arrive within this time.
    pub header_read_timeout: Duration,
    /// Largest HTTP/1 request head accepted (bigger → 431).
    pub max_header_bytes: usize,
    /// Emit one JSON line per request on stdout.
    pub access_log: bool,
    /// Which upgrades and CONNECTs may become raw tunnels.
    pub tunnels: tunnel::TunnelPolicy,
    /// Open connections per listener; more are closed at once and counted.
    pub max_connections: usize,
    /// Time a peer has to complete the TLS handshake once it started one.
    pub tls_handshake_timeout: Duration,
    /// An HTTP connection with no request in flight for this long is closed
    /// gracefully (HTTP/2: GOAWAY).
    pub http_idle_timeout: Duration,
    /// A response body that yields nothing for this long is aborted.
    pub stream_idle_timeout: Duration,
    /// HTTP/2 keep-alive PING interval on served connections (`None` = off) and
    /// how long to wait for the PING ACK before closing.
    pub h2_keepalive: Option<(Duration, Duration)>,
    /// Most request header fields accepted (HTTP/1 and HTTP/2; more → 431).
    pub max_headers: usize,
    /// TCP keepalive idle time on accepted and upstream sockets (`None` = off).
    pub tcp_keepalive: Option<Duration>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(1),
            response_timeout: Some(Duration::from_secs(60)),
            tcp_idle_timeout: Duration::from_secs(3600),
            detect_timeout: Duration::from_millis(300),
            header_read_timeout: Duration::from_secs(30),
            max_header_bytes: 64 * 1024,
            access_log: false,
            tunnels: tunnel::TunnelPolicy::default(),
            max_connections: 10_000,
            tls_handshake_timeout: Duration::from_secs(5),
            http_idle_timeout: Duration::from_secs(3600),
            stream_idle_timeout: Duration::from_secs(300),
            h2_keepalive: Some((Duration::from_secs(60), Duration::from_secs(20))),
            max_headers: 100,
            tcp_keepalive: Some(Duration::from_secs(60)),
        }
    }
}

/// State shared by every connection.
#[derive(Debug)]
pub struct Shared {
    pub store: Arc<ConfigStore>,
    pub metrics: Arc<Metrics>,
    pub connector: Arc<dyn connect::Connector>,
    /// Used for connections to the local app (always plaintext).
    pub app_connector: Arc<dyn connect::Connector>,
    pub inbound_security: Arc<dyn hooks::InboundSecurity>,
    pub settings: Settings,
    pub drain: Drain,
    /// Closes connections addressed to the proxy's own listeners (loops).
    pub self_guard: Arc<crate::net::self_guard::SelfGuard>,
    /// Mirror requests in flight ([`mirror::slots`]).
    pub mirror_slots: Arc<tokio::sync::Semaphore>,
}

/// HTTP version spoken on a connection (the same on both sides: the proxy
/// never translates between versions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Http1,
    Http2,
}
