//! The pure rule plan of `weft-proxy init`: which weft chains exist, what they contain
//! and which built-in `nat` chains jump into them, for IPv4 and (optionally) IPv6.
//!
//! Rule order (per family):
//! - `PREROUTING -p tcp → WEFT_INBOUND`: the admin port and skipped inbound ports
//!   return, all other TCP goes to `WEFT_IN_REDIRECT` (`REDIRECT` to the inbound port).
//! - `OUTPUT -p tcp → WEFT_OUTBOUND`:
//!   0. the proxy's forwards of inbound traffic to the app at the pod IP (from the
//!   inbound source address, [`weft_proxy::net::inbound_source`]) return;
//!   1. the proxy UID talking over `lo` to a non-loopback address (its own pod IP:
//!      the hairpin when an app calls its own Service) re-enters `WEFT_INBOUND`, so it
//!      is treated exactly like traffic arriving from another pod;
//!   2. everything else over `lo` returns (app ↔ localhost, proxy → app);
//!   3. the proxy UID returns (its upstream connections);
//!   4. the admin port of any pod (plain-text scrapes), excluded CIDRs and excluded
//!      ports return;
//!   5. all remaining TCP goes to `WEFT_OUT_REDIRECT` (`REDIRECT` to the outbound port).

use super::spec::{Cidr, PortSpec, chunk_ports};

/// Inbound entry chain (jumped to from `PREROUTING`).
pub const INBOUND: &str = "WEFT_INBOUND";
/// Inbound redirect chain.
pub const IN_REDIRECT: &str = "WEFT_IN_REDIRECT";
/// Outbound entry chain (jumped to from `OUTPUT`).
pub const OUTBOUND: &str = "WEFT_OUTBOUND";
/// Outbound redirect chain.
pub const OUT_REDIRECT: &str = "WEFT_OUT_REDIRECT";
/// Every chain weft creates, in declaration order.
pub const CHAINS: [&str; 4] = [INBOUND, IN_REDIRECT, OUTBOUND, OUT_REDIRECT];
/// Prefix shared by all weft chains (cleanup removes every chain with it).
pub const CHAIN_PREFIX: &str = "WEFT_";

/// What to redirect and what to leave alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Port of the sidecar's inbound listener.
    pub inbound_port: u16,
    /// Port of the sidecar's outbound listener.
    pub outbound_port: u16,
    /// The sidecar's admin port (never redirected, in either direction).
    pub admin_port: u16,
    /// UID the sidecar runs as (its own traffic is not redirected).
    pub proxy_uid: u32,
    /// Inbound destination ports not redirected.
    pub skip_inbound_ports: Vec<PortSpec>,
    /// Outbound destination ports not redirected.
    pub skip_outbound_ports: Vec<PortSpec>,
    /// Outbound destination networks not redirected.
    pub skip_outbound_cidrs: Vec<Cidr>,
    /// Whether to install the IPv6 (`ip6tables`) rules too.
    pub ipv6: bool,
}

/// IP family of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `iptables`
    V4,
    /// `ip6tables`
    V6,
}

impl Family {
    fn loopback(self) -> &'static str {
        match self {
            Family::V4 => "127.0.0.0/8",
            Family::V6 => "::1/128",
        }
    }

    fn inbound_source(self) -> String {
        use weft_proxy::net::inbound_source::{INBOUND_SOURCE_V4, INBOUND_SOURCE_V6};
        match self {
            Family::V4 => format!("{INBOUND_SOURCE_V4}/32"),
            Family::V6 => format!("{INBOUND_SOURCE_V6}/128"),
        }
    }
}

/// The rules of one family's `nat` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// The family these rules are for.
    pub family: Family,
    /// Rules inside weft chains, as `-A <chain> <spec>` lines, in order.
    pub rules: Vec<String>,
    /// Jumps from built-in chains, as `-A <builtin> <spec>` lines.
    pub jumps: Vec<String>,
}

/// The full plan: IPv4 always, IPv6 when enabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// `iptables` rules.
    pub v4: Table,
    /// `ip6tables` rules.
    pub v6: Option<Table>,
}

fn port_returns(chain: &str, ports: &[PortSpec], out: &mut Vec<String>) {
    for chunk in chunk_ports(ports) {
        if chunk.contains([',', ':']) {
            out.push(format!(
                "-A {chain} -p tcp -m multiport --dports {chunk} -j RETURN"
            ));
        } else {
            out.push(format!("-A {chain} -p tcp --dport {chunk} -j RETURN"));
        }
    }
}

fn table(cfg: &Config, family: Family) -> Table {
    let uid = cfg.proxy_uid;
    let mut rules = vec![format!(
        "-A {IN_REDIRECT} -p tcp -j REDIRECT --to-ports {}",
        cfg.inbound_port
    )];
    let mut inbound_skip = vec![PortSpec::Single(cfg.admin_port)];
    inbound_skip.extend(
        cfg.skip_inbound_ports
            .iter()
            .copied()
            .filter(|p| *p != PortSpec::Single(cfg.admin_port)),
    );
    port_returns(INBOUND, &inbound_skip, &mut rules);
    rules.push(format!("-A {INBOUND} -p tcp -j {IN_REDIRECT}"));

    rules.push(format!(
        "-A {OUT_REDIRECT} -p tcp -j REDIRECT --to-ports {}",
        cfg.outbound_port
    ));
    let lo = family.loopback();
    rules.push(format!(
        "-A {OUTBOUND} -s {} -o lo -m owner --uid-owner {uid} -j RETURN",
        family.inbound_source()
    ));
    rules.push(format!(
        "-A {OUTBOUND} -o lo ! -d {lo} -m owner --uid-owner {uid} -j {INBOUND}"
    ));
    rules.push(format!("-A {OUTBOUND} -o lo -j RETURN"));
    rules.push(format!("-A {OUTBOUND} -m owner --uid-owner {uid} -j RETURN"));
    port_returns(OUTBOUND, &[PortSpec::Single(cfg.admin_port)], &mut rules);
    for cidr in cfg
        .skip_outbound_cidrs
        .iter()
        .filter(|c| c.is_ipv6() == (family == Family::V6))
    {
        rules.push(format!("-A {OUTBOUND} -d {cidr} -j RETURN"));
    }
    port_returns(OUTBOUND, &cfg.skip_outbound_ports, &mut rules);
    rules.push(format!("-A {OUTBOUND} -p tcp -j {OUT_REDIRECT}"));

    let jumps = vec![
        format!("-A PREROUTING -p tcp -j {INBOUND}"),
        format!("-A OUTPUT -p tcp -j {OUTBOUND}"),
    ];
    Table { family, rules, jumps }
}

/// Computes the rules for `cfg`. Pure: no system access.
pub fn plan(cfg: &Config) -> Plan {
    Plan {
        v4: table(cfg, Family::V4),
        v6: cfg.ipv6.then(|| table(cfg, Family::V6)),
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
