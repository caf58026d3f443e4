//! The source address the sidecar binds when it forwards inbound traffic to the app at
//! the pod's own IP: the iptables plan returns connections from it before the hairpin
//! rule (which would capture the proxy's own connection to the pod IP again), and the app
//! sees a peer that is not `127.0.0.1`, so "localhost only" checks in apps do not trust
//! mesh traffic (Istio uses `127.0.0.6` the same way).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IPv4 source of forwarded inbound connections (on `lo`, inside `127.0.0.0/8`).
pub const INBOUND_SOURCE_V4: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 6);
/// IPv6 source: `::1` (IPv6 loopback is a single address; see docs/security.md).
pub const INBOUND_SOURCE_V6: Ipv6Addr = Ipv6Addr::LOCALHOST;

/// The source address for a forwarded connection to `dst` (same family).
pub fn for_destination(dst: IpAddr) -> IpAddr {
    match dst {
        IpAddr::V4(_) => IpAddr::V4(INBOUND_SOURCE_V4),
        IpAddr::V6(_) => IpAddr::V6(INBOUND_SOURCE_V6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_is_loopback_in_the_destination_family() {
        let v4 = for_destination("198.18.0.5".parse().unwrap());
        assert_eq!(v4, IpAddr::V4(Ipv4Addr::new(127, 0, 0, 6)));
        assert!(v4.is_loopback());
        let v6 = for_destination("fd00::5".parse().unwrap());
        assert!(v6.is_loopback() && v6.is_ipv6());
    }
}
