//! Validation of the per-pod exclusion annotations (`weft.dev/skip-inbound-ports`,
//! `weft.dev/skip-outbound-ports`, `weft.dev/skip-outbound-cidrs`) into the
//! normalized values passed to `weft-proxy init`. Accepts exactly what the init
//! accepts, so a pod that passes admission never fails in its init container.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::deny::Deny;
use super::names::{ANN_SKIP_INBOUND_PORTS, ANN_SKIP_OUTBOUND_CIDRS, ANN_SKIP_OUTBOUND_PORTS};

/// Normalized exclusions of one pod (comma-separated, no spaces; empty ⇒ none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exclusions {
    /// Inbound ports and ranges (`a-b`).
    pub inbound_ports: String,
    /// Outbound ports and ranges.
    pub outbound_ports: String,
    /// Outbound CIDRs.
    pub outbound_cidrs: String,
}

fn parse_port(s: &str) -> Option<u16> {
    s.trim().parse::<u16>().ok().filter(|p| *p != 0)
}

/// Checks one port-list entry (`80` or `8000-8100`).
fn valid_port_entry(e: &str) -> bool {
    match e.split_once('-') {
        None => parse_port(e).is_some(),
        Some((a, b)) => matches!((parse_port(a), parse_port(b)), (Some(a), Some(b)) if a <= b),
    }
}

/// Checks one CIDR entry (`10.0.0.0/8`, `fd00::/8` or a bare address).
fn valid_cidr_entry(e: &str) -> bool {
    let (addr, prefix) = match e.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (e, None),
    };
    let max = match addr.parse::<IpAddr>() {
        Ok(IpAddr::V4(_)) => 32,
        Ok(IpAddr::V6(_)) => 128,
        Err(_) => return false,
    };
    prefix.is_none_or(|p| p.parse::<u8>().is_ok_and(|p| p <= max))
}

fn list(
    annotations: &BTreeMap<String, String>,
    key: &str,
    valid: fn(&str) -> bool,
    what: &str,
) -> Result<String, Deny> {
    let Some(value) = annotations.get(key) else {
        return Ok(String::new());
    };
    let entries: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    if let Some(bad) = entries.iter().find(|e| !valid(e)) {
        return Err(Deny::InvalidAnnotation {
            annotation: key.to_string(),
            value: value.clone(),
            reason: format!("{bad:?} is not {what}"),
        });
    }
    Ok(entries.join(","))
}

/// Reads and validates the exclusion annotations.
pub fn exclusions(annotations: &BTreeMap<String, String>) -> Result<Exclusions, Deny> {
    const PORT: &str = "a port 1-65535 or a range low-high";
    Ok(Exclusions {
        inbound_ports: list(annotations, ANN_SKIP_INBOUND_PORTS, valid_port_entry, PORT)?,
        outbound_ports: list(annotations, ANN_SKIP_OUTBOUND_PORTS, valid_port_entry, PORT)?,
        outbound_cidrs: list(
            annotations,
            ANN_SKIP_OUTBOUND_CIDRS,
            valid_cidr_entry,
            "an IP address or CIDR",
        )?,
    })
}

/// Whether `port` is listed in a normalized port list.
pub fn port_listed(list: &str, port: u16) -> bool {
    list.split(',')
        .filter(|e| !e.is_empty())
        .any(|e| match e.split_once('-') {
            None => parse_port(e) == Some(port),
            Some((a, b)) => {
                matches!((parse_port(a), parse_port(b)), (Some(a), Some(b)) if (a..=b).contains(&port))
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn normalizes_valid_lists() {
        let e = exclusions(&ann(&[
            (ANN_SKIP_INBOUND_PORTS, " 8081, 9000-9100 "),
            (ANN_SKIP_OUTBOUND_PORTS, "5432"),
            (ANN_SKIP_OUTBOUND_CIDRS, "198.19.7.0/24, fd00::/8,192.0.2.1"),
        ]))
        .unwrap();
        assert_eq!(e.inbound_ports, "8081,9000-9100");
        assert_eq!(e.outbound_ports, "5432");
        assert_eq!(e.outbound_cidrs, "198.19.7.0/24,fd00::/8,192.0.2.1");
        assert_eq!(exclusions(&BTreeMap::new()).unwrap(), Exclusions::default());
        assert!(port_listed("8081,9000-9100", 9050) && port_listed("8081", 8081) && !port_listed("8081", 80));
    }

    #[test]
    fn rejects_bad_values_naming_annotation_and_value() {
        for (key, value) in [
            (ANN_SKIP_INBOUND_PORTS, "80,http"),
            (ANN_SKIP_OUTBOUND_PORTS, "70000"),
            (ANN_SKIP_OUTBOUND_PORTS, "90-80"),
            (ANN_SKIP_OUTBOUND_CIDRS, "10.0.0.0/33"),
            (ANN_SKIP_OUTBOUND_CIDRS, "example.com"),
        ] {
            let err = exclusions(&ann(&[(key, value)])).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(key) && msg.contains(value), "{msg}");
        }
    }
}
