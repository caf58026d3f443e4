//! Parsing of the exclusion lists `weft-proxy init` accepts (`80,443,8000-8100` port
//! lists and `10.0.0.0/8,fd00::/8` CIDR lists) and their chunking into iptables
//! `multiport` arguments.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// At most this many ports fit one `-m multiport` match (a range counts twice).
pub const MULTIPORT_MAX: usize = 15;

/// Why a port or CIDR list was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// A port entry is not a number in 1..=65535 or a `low-high` range of such.
    #[error("invalid port {0:?}: expected a port 1-65535 or a range low-high")]
    Port(String),
    /// A CIDR entry is not `address[/prefix]`.
    #[error("invalid CIDR {0:?}: expected address/prefix")]
    Cidr(String),
}

/// One entry of a port list: a single port or an inclusive range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortSpec {
    /// One port.
    Single(u16),
    /// An inclusive range `low..=high` with `low < high`.
    Range(u16, u16),
}

impl PortSpec {
    /// How many of the 15 multiport slots this entry uses.
    fn weight(self) -> usize {
        match self {
            PortSpec::Single(_) => 1,
            PortSpec::Range(..) => 2,
        }
    }
}

impl fmt::Display for PortSpec {
    /// Renders the entry in iptables syntax (`a:b` for ranges).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortSpec::Single(p) => write!(f, "{p}"),
            PortSpec::Range(a, b) => write!(f, "{a}:{b}"),
        }
    }
}

/// A comma-separated list of ports and ranges (empty string ⇒ empty list).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortList(pub Vec<PortSpec>);

fn parse_port(s: &str) -> Option<u16> {
    s.parse::<u16>().ok().filter(|p| *p != 0)
}

impl FromStr for PortList {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = Vec::new();
        for raw in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let bad = || SpecError::Port(raw.to_string());
            let spec = match raw.split_once('-') {
                None => PortSpec::Single(parse_port(raw).ok_or_else(bad)?),
                Some((a, b)) => {
                    let (a, b) = (
                        parse_port(a.trim()).ok_or_else(bad)?,
                        parse_port(b.trim()).ok_or_else(bad)?,
                    );
                    match a.cmp(&b) {
                        std::cmp::Ordering::Less => PortSpec::Range(a, b),
                        std::cmp::Ordering::Equal => PortSpec::Single(a),
                        std::cmp::Ordering::Greater => return Err(bad()),
                    }
                }
            };
            if !out.contains(&spec) {
                out.push(spec);
            }
        }
        Ok(PortList(out))
    }
}

/// Splits ports into `multiport --dports` arguments of at most [`MULTIPORT_MAX`] slots.
pub fn chunk_ports(ports: &[PortSpec]) -> Vec<String> {
    let mut chunks: Vec<Vec<String>> = Vec::new();
    let mut used = MULTIPORT_MAX;
    for p in ports {
        if used + p.weight() > MULTIPORT_MAX {
            chunks.push(Vec::new());
            used = 0;
        }
        used += p.weight();
        if let Some(last) = chunks.last_mut() {
            last.push(p.to_string());
        }
    }
    chunks.into_iter().map(|c| c.join(",")).collect()
}

/// An IP network `address/prefix`, normalized to its network address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The network address (host bits cleared).
    pub addr: IpAddr,
    /// The prefix length.
    pub prefix: u8,
}

impl Cidr {
    /// Whether this is an IPv6 network.
    pub fn is_ipv6(&self) -> bool {
        self.addr.is_ipv6()
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || SpecError::Cidr(s.to_string());
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().map_err(|_| bad())?)),
            None => (s, None),
        };
        match addr.parse::<IpAddr>().map_err(|_| bad())? {
            IpAddr::V4(a) => {
                let prefix = prefix.unwrap_or(32);
                let host_bits = 32u32.checked_sub(u32::from(prefix)).ok_or_else(bad)?;
                let mask = u32::MAX.checked_shl(host_bits).unwrap_or(0);
                Ok(Cidr {
                    addr: IpAddr::V4((u32::from(a) & mask).into()),
                    prefix,
                })
            }
            IpAddr::V6(a) => {
                let prefix = prefix.unwrap_or(128);
                let host_bits = 128u32.checked_sub(u32::from(prefix)).ok_or_else(bad)?;
                let mask = u128::MAX.checked_shl(host_bits).unwrap_or(0);
                Ok(Cidr {
                    addr: IpAddr::V6((u128::from(a) & mask).into()),
                    prefix,
                })
            }
        }
    }
}

/// A comma-separated list of CIDRs (empty string ⇒ empty list).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CidrList(pub Vec<Cidr>);

impl FromStr for CidrList {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = Vec::new();
        for raw in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let c: Cidr = raw.parse()?;
            if !out.contains(&c) {
                out.push(c);
            }
        }
        Ok(CidrList(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ports_and_ranges() {
        let l: PortList = " 80, 443,8000-8100,9000-9000,80".parse().unwrap();
        assert_eq!(
            l.0,
            vec![
                PortSpec::Single(80),
                PortSpec::Single(443),
                PortSpec::Range(8000, 8100),
                PortSpec::Single(9000)
            ]
        );
        assert_eq!("".parse::<PortList>().unwrap().0, vec![]);
    }

    #[test]
    fn rejects_bad_ports() {
        for bad in ["0", "65536", "abc", "90-80", "1-", "-5", "8080 9090"] {
            assert!(bad.parse::<PortList>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn chunks_at_fifteen_slots_counting_ranges_twice() {
        let ports: Vec<PortSpec> = (1..=16).map(PortSpec::Single).collect();
        let c = chunk_ports(&ports);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0], "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15");
        assert_eq!(c[1], "16");
        let mut ports: Vec<PortSpec> = (1..=14).map(PortSpec::Single).collect();
        ports.push(PortSpec::Range(100, 200));
        let c = chunk_ports(&ports);
        assert_eq!(
            c,
            vec![
                "1,2,3,4,5,6,7,8,9,10,11,12,13,14".to_string(),
                "100:200".to_string()
            ]
        );
        assert!(chunk_ports(&[]).is_empty());
    }

    #[test]
    fn parses_and_normalizes_cidrs() {
        let l: CidrList = "198.19.0.0/16, 10.1.2.3/8,192.0.2.1,fd00::1/8".parse().unwrap();
        let s: Vec<String> = l.0.iter().map(ToString::to_string).collect();
        assert_eq!(s, vec!["198.19.0.0/16", "10.0.0.0/8", "192.0.2.1/32", "fd00::/8"]);
        assert!(l.0[3].is_ipv6());
        assert_eq!("0.0.0.0/0".parse::<Cidr>().unwrap().to_string(), "0.0.0.0/0");
        for bad in ["10.0.0.0/33", "::/129", "10.0.0/8", "x/8", "10.0.0.0/"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad} accepted");
        }
    }
}
