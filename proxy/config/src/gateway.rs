//! Gateway mode (ingress): the listeners a `weft-proxy gateway` serves for one
//! Gateway API `Gateway` of class `weft`, rendered by the operator into the
//! gateway identity's config ([`crate::ProxyConfig::gateway`]).
//!
//! A gateway proxy is not transparent: it binds every listener port itself.
//! On one port several listeners may exist (one per hostname); a request goes
//! to the listener whose `hostname` matches its `Host` (HTTP) or SNI (HTTPS)
//! most specifically (exact, then the longest wildcard, then no hostname), and
//! then to that listener's routes: the route group with the most specific
//! hostname matching the request (exact, longest wildcard, then routes without
//! hostnames), first matching entry within it. Nothing matching = `404`.
//! Route entries are the same [`RouteEntry`] the mesh uses (GAMMA), with the
//! backends in [`crate::ProxyConfig::services`] (reached over mTLS when meshed).
//!
//! Listener certificates are not in this document (it is a ConfigMap): the
//! operator copies them into the Secret [`GatewayConfig::tls_secret`] in the
//! gateway's namespace, keys `<certificate>.crt` / `<certificate>.key` (PEM),
//! which the proxy watches through the API like its ConfigMap.

use crate::validate::err;
use crate::{ProxyConfig, RouteBackend, RouteEntry, ValidationError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Suffix of a certificate's PEM chain key in the gateway TLS Secret.
pub const CERT_SUFFIX: &str = ".crt";
/// Suffix of a certificate's PEM private key key in the gateway TLS Secret.
pub const KEY_SUFFIX: &str = ".key";

/// What one gateway proxy serves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GatewayConfig {
    /// The Gateway, `namespace/name`.
    pub gateway: String,
    /// Name of the Secret (gateway namespace) with the listener certificates;
    /// `None` when no listener terminates TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_secret: Option<String>,
    /// Listeners, sorted by port, then name.
    #[serde(default)]
    pub listeners: Vec<GatewayListener>,
}

/// One Gateway listener the operator accepted (invalid listeners are left out).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GatewayListener {
    /// `spec.listeners[].name`.
    pub name: String,
    /// The port the proxy binds (all addresses).
    pub port: u16,
    pub protocol: ListenerProtocol,
    /// Exact (`foo.example.com`) or wildcard (`*.example.com`) hostname; `None`
    /// = every hostname.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// `Https` and `Tls` with mode Terminate: certificate names in the TLS
    /// Secret; the one whose certificate covers the SNI is served, else the first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<String>,
    /// `Http` / `Https`: route entries, each with the hostnames it answers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<GatewayRoute>,
    /// `Tcp` / `Tls`: stream routes (TCPRoute / TLSRoute).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub streams: Vec<StreamRoute>,
}

/// Listener protocol as weft serves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ListenerProtocol {
    /// Plaintext HTTP/1.1 and h2c.
    Http,
    /// TLS terminated, then HTTP/1.1 or HTTP/2 (ALPN).
    Https,
    /// TLS by SNI: terminated when [`GatewayListener::certificates`] is set,
    /// else passed through.
    Tls,
    /// Opaque TCP.
    Tcp,
}

/// One HTTP route entry on a listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GatewayRoute {
    /// Hostnames (exact or `*.` wildcard, lower-case) the entry answers: the
    /// intersection of the route's and the listener's; empty = every hostname
    /// the listener takes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<String>,
    /// The match, filters and backends (`ports` is unused here).
    pub entry: RouteEntry,
}

/// A TCPRoute / TLSRoute rule on a listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StreamRoute {
    /// `<kind>/<namespace>/<name>/<rule>`.
    pub source: String,
    /// TLSRoute: SNI hostnames; empty = any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<String>,
    /// Weighted backends (`filters` unused).
    pub backends: Vec<RouteBackend>,
}

/// Whether `pattern` (exact or `*.suffix`) matches `host` (lower-case, no port).
/// A wildcard matches one or more labels before the suffix, never the suffix
/// itself (Gateway API).
pub fn hostname_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix('*') {
        Some(suffix) => host.len() > suffix.len() && host.ends_with(suffix),
        None => pattern == host,
    }
}

/// How specific a hostname pattern is: higher wins. Exact names beat every
/// wildcard; longer wildcards beat shorter ones.
pub fn hostname_rank(pattern: Option<&str>) -> (u8, usize) {
    match pattern {
        None => (0, 0),
        Some(p) if p.starts_with('*') => (1, p.len()),
        Some(p) => (2, p.len()),
    }
}

fn valid_hostname(h: &str) -> bool {
    let body = h.strip_prefix("*.").unwrap_or(h);
    !body.is_empty()
        && h.len() <= 253
        && body.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

fn valid_secret_key(k: &str) -> bool {
    !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
}

impl GatewayConfig {
    /// Checks listeners and their routes against `cfg` (assembled: route
    /// backends must be services of `cfg`).
    pub(crate) fn validate(&self, cfg: &ProxyConfig) -> Result<(), ValidationError> {
        if self.gateway.split('/').count() != 2 {
            return Err(err("gateway.gateway", "must be namespace/name"));
        }
        let mut names = BTreeSet::new();
        for (i, l) in self.listeners.iter().enumerate() {
            let p = format!("gateway.listeners[{i}]");
            if !names.insert(l.name.as_str()) {
                return Err(err(format!("{p}.name"), format!("{} is used twice", l.name)));
            }
            if l.port == 0 {
                return Err(err(format!("{p}.port"), "must not be 0"));
            }
            if let Some(h) = &l.hostname
                && !valid_hostname(h)
            {
                return Err(err(format!("{p}.hostname"), format!("{h:?} is not a hostname")));
            }
            let terminates = matches!(l.protocol, ListenerProtocol::Https)
                || (l.protocol == ListenerProtocol::Tls && !l.certificates.is_empty());
            if l.protocol == ListenerProtocol::Https && l.certificates.is_empty() {
                return Err(err(
                    format!("{p}.certificates"),
                    "an Https listener needs a certificate",
                ));
            }
            if terminates && self.tls_secret.is_none() {
                return Err(err(
                    "gateway.tlsSecret",
                    "listeners terminate TLS but no Secret is named",
                ));
            }
            if let Some(c) = l.certificates.iter().find(|c| !valid_secret_key(c)) {
                return Err(err(
                    format!("{p}.certificates"),
                    format!("{c:?} is not a Secret key"),
                ));
            }
            let http = matches!(l.protocol, ListenerProtocol::Http | ListenerProtocol::Https);
            if !http && !l.routes.is_empty() {
                return Err(err(
                    format!("{p}.routes"),
                    "only Http and Https listeners carry HTTP routes",
                ));
            }
            if http && !l.streams.is_empty() {
                return Err(err(
                    format!("{p}.streams"),
                    "Http and Https listeners carry no stream routes",
                ));
            }
            for (j, r) in l.routes.iter().enumerate() {
                if let Some(h) = r.hostnames.iter().find(|h| !valid_hostname(h)) {
                    return Err(err(
                        format!("{p}.routes[{j}].hostnames"),
                        format!("{h:?} is not a hostname"),
                    ));
                }
            }
            let entries: Vec<RouteEntry> = l.routes.iter().map(|r| r.entry.clone()).collect();
            crate::route::validate_routes(cfg, &format!("{p}.routes"), &entries)?;
            for (j, s) in l.streams.iter().enumerate() {
                for (k, b) in s.backends.iter().enumerate() {
                    let bp = format!("{p}.streams[{j}].backends[{k}]");
                    if let Some(key) = &b.service
                        && !cfg
                            .services
                            .get(key)
                            .is_some_and(|svc| svc.ports.iter().any(|sp| sp.port == b.port))
                    {
                        return Err(err(bp, format!("{key} has no port {}", b.port)));
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_subdomains_only() {
        assert!(hostname_matches("*.example.com", "foo.example.com"));
        assert!(hostname_matches("*.example.com", "a.b.example.com"));
        assert!(!hostname_matches("*.example.com", "example.com"));
        assert!(hostname_matches("foo.example.com", "foo.example.com"));
        assert!(!hostname_matches("foo.example.com", "bar.example.com"));
    }

    #[test]
    fn exact_beats_longer_wildcard_beats_shorter_beats_none() {
        let exact = hostname_rank(Some("a.b.com"));
        let long = hostname_rank(Some("*.x.b.com"));
        let short = hostname_rank(Some("*.com"));
        assert!(exact > long && long > short && short > hostname_rank(None));
    }

    #[test]
    fn hostnames_are_checked() {
        assert!(valid_hostname("*.example.com"));
        assert!(valid_hostname("foo-1.example"));
        assert!(!valid_hostname("Foo.example"));
        assert!(!valid_hostname("*"));
        assert!(!valid_hostname("a..b"));
    }
}
