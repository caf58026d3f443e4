//! The self-connection guard: a destination on one of the proxy's own ports
//! (inbound, outbound, admin) at a local or loopback address would be forwarded
//! back into the proxy, which forwards it again, until fds or memory run out.
//! Such connections are closed at once, counted in
//! `proxy_self_connection_rejected_total{direction}` and logged at a bounded
//! rate ([`LogLimit`]).

use crate::log_limit::LogLimit;
use crate::metrics::{Kind, Metrics, Series, labels};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;

const METRIC: &str = "proxy_self_connection_rejected_total";
const HELP: &str = "Connections closed because their destination is the proxy itself (a forwarding loop).";

/// The proxy's own listener addresses and the counters for rejected loops.
#[derive(Debug, Default)]
pub struct SelfGuard {
    listeners: Vec<SocketAddr>,
    outbound: Arc<Series>,
    inbound: Arc<Series>,
    log: LogLimit,
}

/// Which listener a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Inbound,
    Outbound,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// Whether `ip` is an address of this network namespace: loopback, unspecified
/// (connecting to it reaches loopback) or bindable (an interface address).
pub fn is_local(ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    // Binding a socket succeeds only for an address of one of our interfaces.
    ip.is_loopback() || ip.is_unspecified() || UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

impl SelfGuard {
    /// A guard for the listeners bound at `listeners` (outbound, inbound, admin).
    pub fn new(listeners: Vec<SocketAddr>, metrics: &Metrics) -> Self {
        let f = &metrics.families;
        let series =
            |d: Direction| f.series(METRIC, Kind::Counter, HELP, &labels(&[("direction", d.as_str())]));
        Self {
            outbound: series(Direction::Outbound),
            inbound: series(Direction::Inbound),
            listeners,
            log: LogLimit::default(),
        }
    }

    /// Whether a connection to `dst` would reach one of the proxy's listeners.
    pub fn is_self(&self, dst: SocketAddr) -> bool {
        let mut local = None;
        self.listeners.iter().any(|l| {
            if l.port() != dst.port() {
                return false;
            }
            if l.ip().is_unspecified() {
                // A wildcard listener answers on every local address.
                *local.get_or_insert_with(|| is_local(dst.ip()))
            } else {
                l.ip() == dst.ip() || dst.ip().is_unspecified()
            }
        })
    }

    /// Checks `dst`; on a loop counts it, logs (rate-limited) and returns `true`.
    pub fn reject(&self, direction: Direction, dst: SocketAddr, peer: SocketAddr) -> bool {
        if !self.is_self(dst) {
            return false;
        }
        match direction {
            Direction::Inbound => self.inbound.inc(),
            Direction::Outbound => self.outbound.inc(),
        }
        if let Some(suppressed) = self.log.admit() {
            tracing::warn!(direction = direction.as_str(), %dst, %peer, suppressed,
                "closing connection addressed to the proxy itself (forwarding loop)");
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn wildcard_listeners_match_every_local_address() {
        let m = Metrics::default();
        let g = SelfGuard::new(
            vec![sa("0.0.0.0:15001"), sa("0.0.0.0:15006"), sa("0.0.0.0:15020")],
            &m,
        );
        for dst in [
            "127.0.0.1:15001",
            "127.0.0.2:15006",
            "0.0.0.0:15020",
            "[::1]:15001",
            "[::ffff:127.0.0.1]:15006",
        ] {
            assert!(g.is_self(sa(dst)), "{dst}");
        }
        // Another host's proxy ports and our own other ports are ordinary destinations.
        for dst in ["198.18.0.9:15001", "127.0.0.1:8080", "198.19.0.1:15020"] {
            assert!(!g.is_self(sa(dst)), "{dst}");
        }
        assert!(g.reject(Direction::Inbound, sa("127.0.0.1:15006"), sa("127.0.0.1:1")));
        assert!(g.reject(Direction::Outbound, sa("127.0.0.1:15020"), sa("127.0.0.1:1")));
        assert!(!g.reject(Direction::Outbound, sa("127.0.0.1:80"), sa("127.0.0.1:1")));
        assert_eq!(m.families.value(METRIC, "direction=\"inbound\""), Some(1));
        assert_eq!(m.families.value(METRIC, "direction=\"outbound\""), Some(1));
    }

    #[test]
    fn specific_listeners_match_their_address() {
        let g = SelfGuard::new(vec![sa("127.0.0.1:4000")], &Metrics::default());
        assert!(g.is_self(sa("127.0.0.1:4000")));
        assert!(g.is_self(sa("0.0.0.0:4000")));
        assert!(!g.is_self(sa("127.0.0.2:4000")));
        assert!(!g.is_self(sa("127.0.0.1:4001")));
    }
}
