//! Pod IP allocation from the pod CIDR (198.18.0.0/16): next-fit from a cursor, so a
//! released address is not handed out again right away (as the CNI host-local plugin does).
//! The gateway (first host address) and the network/broadcast addresses are never given out.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

/// An IPv4 network (address + prefix length).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// Network address.
    pub network: Ipv4Addr,
    /// Prefix length (8..=30).
    pub prefix: u8,
}

impl Cidr {
    /// The pod CIDR of every weft cluster.
    pub const PODS: Cidr = Cidr {
        network: Ipv4Addr::new(198, 18, 0, 0),
        prefix: 16,
    };
    /// The service CIDR of every weft cluster.
    pub const SERVICES: Cidr = Cidr {
        network: Ipv4Addr::new(198, 19, 0, 0),
        prefix: 16,
    };

    fn size(self) -> u32 {
        1u32 << (32 - u32::from(self.prefix))
    }

    /// The first host address (the bridge/gateway address).
    pub fn gateway(self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }

    /// Whether `ip` is inside the network.
    pub fn contains(self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX << (32 - u32::from(self.prefix));
        u32::from(ip) & mask == u32::from(self.network)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// Hands out unique pod addresses.
#[derive(Debug, Clone)]
pub struct Allocator {
    cidr: Cidr,
    used: BTreeSet<u32>,
    /// Offset of the last address handed out.
    cursor: u32,
}

impl Allocator {
    /// An allocator over `cidr` (gateway reserved).
    pub fn new(cidr: Cidr) -> Self {
        Self {
            cidr,
            used: BTreeSet::new(),
            cursor: 1,
        }
    }

    /// The next free address, or `None` when the range is exhausted.
    pub fn allocate(&mut self) -> Option<Ipv4Addr> {
        let size = self.cidr.size();
        // Usable offsets: 2 ..= size-2 (0 network, 1 gateway, size-1 broadcast).
        let usable = size.saturating_sub(3);
        for step in 1..=usable {
            let offset = 2 + (self.cursor - 1 + step - 1) % usable;
            if self.used.insert(offset) {
                self.cursor = offset;
                return Some(Ipv4Addr::from(u32::from(self.cidr.network) + offset));
            }
        }
        None
    }

    /// Returns `ip` to the pool (no-op for addresses not handed out).
    pub fn release(&mut self, ip: Ipv4Addr) {
        if self.cidr.contains(ip) {
            self.used.remove(&(u32::from(ip) - u32::from(self.cidr.network)));
        }
    }

    /// Addresses in use.
    pub fn in_use(&self) -> usize {
        self.used.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_out_unique_addresses_skipping_gateway_and_reuses_late() {
        let mut a = Allocator::new(Cidr::PODS);
        let first = a.allocate().unwrap();
        let second = a.allocate().unwrap();
        assert_eq!(first, Ipv4Addr::new(198, 18, 0, 2));
        assert_eq!(second, Ipv4Addr::new(198, 18, 0, 3));
        a.release(first);
        assert_eq!(
            a.allocate().unwrap(),
            Ipv4Addr::new(198, 18, 0, 4),
            "next-fit, not first-fit"
        );
        assert_eq!(a.in_use(), 2);
        assert_eq!(Cidr::PODS.gateway(), Ipv4Addr::new(198, 18, 0, 1));
        assert!(Cidr::PODS.contains(Ipv4Addr::new(198, 18, 255, 1)));
        assert!(!Cidr::PODS.contains(Ipv4Addr::new(198, 19, 0, 1)));
    }

    #[test]
    fn small_range_exhausts_and_wraps() {
        // /29: offsets 2..=6 usable (5 addresses).
        let cidr = Cidr {
            network: Ipv4Addr::new(10, 0, 0, 0),
            prefix: 29,
        };
        let mut a = Allocator::new(cidr);
        let got: Vec<_> = (0..5).map(|_| a.allocate().unwrap()).collect();
        assert_eq!(got.first(), Some(&Ipv4Addr::new(10, 0, 0, 2)));
        assert_eq!(got.last(), Some(&Ipv4Addr::new(10, 0, 0, 6)));
        assert_eq!(a.allocate(), None);
        a.release(Ipv4Addr::new(10, 0, 0, 3));
        assert_eq!(a.allocate(), Some(Ipv4Addr::new(10, 0, 0, 3)));
        a.release(Ipv4Addr::new(192, 168, 0, 1));
        assert_eq!(a.in_use(), 5);
    }
}
