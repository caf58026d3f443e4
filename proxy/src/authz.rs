//! SMI authorization (TrafficTarget) on the inbound side, compiled once per
//! config. Access mode `smi`: a request or connection is denied unless a grant
//! lists the peer's verified SPIFFE ID and one of its rules allows it — a TCP
//! rule covering the port (empty = every port) allows the connection and every
//! request on it; an HTTP rule allows the requests to its ports (empty = every
//! port) that its matches accept (path regex matching the whole normalized path,
//! methods, header regexes); a path that cannot be normalized is denied. Mode
//! `permissive` allows everything. Because the table is part of the config snapshot, a swap
//! that removes a grant denies the next request at once.

use crate::metrics::{Kind, Metrics, Series, labels};
use crate::routing::matcher::{CompiledMatch, MatchError, any_match};
use crate::routing::path;
use http::{HeaderMap, Method};
use std::collections::HashSet;
use std::sync::Arc;
use weft_proxy_config::{AccessMode, AccessRule, ProxyConfig};

#[derive(Debug)]
enum Ports {
    None,
    All,
    Some(HashSet<u16>),
}

impl Ports {
    fn contains(&self, port: u16) -> bool {
        match self {
            Ports::None => false,
            Ports::All => true,
            Ports::Some(p) => p.contains(&port),
        }
    }
}

/// One HTTPRouteGroup rule: its matches, on its ports.
#[derive(Debug)]
struct HttpRule {
    ports: Ports,
    matches: Vec<CompiledMatch>,
}

#[derive(Debug)]
struct Grant {
    name: String,
    sources: HashSet<String>,
    tcp: Ports,
    http: Vec<HttpRule>,
}

impl Grant {
    fn tcp_allows(&self, port: u16) -> bool {
        self.tcp.contains(port)
    }

    /// `path` is already normalized.
    fn http_allows(&self, port: u16, method: &Method, path: &str, headers: &HeaderMap) -> bool {
        self.http
            .iter()
            .any(|r| r.ports.contains(port) && any_match(&r.matches, method, path, headers))
    }
}

/// Counters for one port label: index `i < grants.len()` is grant `i`, the
/// last one is "permissive".
#[derive(Debug)]
struct PortCounters {
    http_allow: Vec<Arc<Series>>,
    tcp_allow: Vec<Arc<Series>>,
    http_deny: Arc<Series>,
    tcp_deny: Arc<Series>,
}

/// The compiled authorization table.
#[derive(Debug)]
pub struct Authz {
    mode: AccessMode,
    grants: Vec<Grant>,
    /// Configured inbound ports (label values); others are counted as "other".
    ports: Vec<u16>,
    counters: Vec<PortCounters>,
}

/// A decision: `Ok(rule name)` or `Err(why)`.
pub type Decision = Result<String, String>;

impl Authz {
    /// Compiles the grants of `cfg`, registering counters in `metrics`.
    pub fn build(cfg: &ProxyConfig, metrics: &Metrics) -> Result<Self, MatchError> {
        let mut grants = Vec::new();
        for g in &cfg.inbound.grants {
            let mut tcp = Ports::None;
            let mut http = Vec::new();
            for rule in &g.rules {
                match rule {
                    AccessRule::Tcp { ports } if ports.is_empty() => tcp = Ports::All,
                    AccessRule::Tcp { ports } => match &mut tcp {
                        Ports::All => {}
                        Ports::Some(set) => set.extend(ports),
                        Ports::None => tcp = Ports::Some(ports.iter().copied().collect()),
                    },
                    AccessRule::Http { ports, matches } => http.push(HttpRule {
                        ports: if ports.is_empty() {
                            Ports::All
                        } else {
                            Ports::Some(ports.iter().copied().collect())
                        },
                        matches: matches
                            .iter()
                            .map(CompiledMatch::compile)
                            .collect::<Result<_, _>>()?,
                    }),
                }
            }
            grants.push(Grant {
                name: g.source.clone(),
                sources: g.sources.iter().cloned().collect(),
                tcp,
                http,
            });
        }
        let mut ports: Vec<u16> = cfg.inbound.ports.iter().map(|p| p.port).collect();
        ports.sort_unstable();
        ports.dedup();
        let f = &metrics.families;
        let names: Vec<&str> = grants
            .iter()
            .map(|g| g.name.as_str())
            .chain(["permissive"])
            .collect();
        let port_labels: Vec<String> = ports
            .iter()
            .map(u16::to_string)
            .chain(["other".to_string()])
            .collect();
        let counters = port_labels
            .iter()
            .map(|p| {
                let allow = |fam: &'static str, help: &'static str| {
                    names
                        .iter()
                        .map(|n| {
                            f.series(
                                fam,
                                Kind::Counter,
                                help,
                                &labels(&[("target_port", p), ("authz", n)]),
                            )
                        })
                        .collect()
                };
                let deny = |fam: &'static str, help: &'static str| {
                    f.series(fam, Kind::Counter, help, &labels(&[("target_port", p)]))
                };
                PortCounters {
                    http_allow: allow(
                        "inbound_http_authz_allow_total",
                        "Inbound HTTP requests authorized.",
                    ),
                    tcp_allow: allow(
                        "inbound_tcp_authz_allow_total",
                        "Inbound TCP connections authorized.",
                    ),
                    http_deny: deny("inbound_http_authz_deny_total", "Inbound HTTP requests denied."),
                    tcp_deny: deny("inbound_tcp_authz_deny_total", "Inbound TCP connections denied."),
                }
            })
            .collect();
        Ok(Self {
            mode: cfg.mesh.access_mode,
            grants,
            ports,
            counters,
        })
    }

    fn counters(&self, port: u16) -> Option<&PortCounters> {
        let i = self.ports.binary_search(&port).unwrap_or(self.ports.len());
        self.counters.get(i)
    }

    fn candidates<'a>(&'a self, source: Option<&'a str>) -> impl Iterator<Item = (usize, &'a Grant)> + 'a {
        self.grants
            .iter()
            .enumerate()
            .filter(move |(_, g)| source.is_some_and(|s| g.sources.contains(s)))
    }

    fn why_denied(&self, source: Option<&str>) -> String {
        let names: Vec<&str> = self.candidates(source).map(|(_, g)| g.name.as_str()).collect();
        match (source, names.is_empty()) {
            (None, _) => "no verified identity (plaintext)".into(),
            (Some(_), true) => "no TrafficTarget lists this source".into(),
            (Some(_), false) => format!("no rule of {} allows it", names.join(", ")),
        }
    }

    /// Authorizes an opaque TCP connection to `port`.
    pub fn check_tcp(&self, source: Option<&str>, port: u16) -> Decision {
        let c = self.counters(port);
        let hit = match self.mode {
            AccessMode::Permissive => Some(self.grants.len()),
            AccessMode::Smi => self
                .candidates(source)
                .find(|(_, g)| g.tcp_allows(port))
                .map(|(i, _)| i),
        };
        match hit {
            Some(i) => {
                if let Some(s) = c.and_then(|c| c.tcp_allow.get(i)) {
                    s.inc();
                }
                Ok(self
                    .grants
                    .get(i)
                    .map_or("permissive", |g| g.name.as_str())
                    .to_string())
            }
            None => {
                if let Some(c) = c {
                    c.tcp_deny.inc();
                }
                Err(self.why_denied(source))
            }
        }
    }

    /// Whether inbound requests have their path normalized (and refused with 400
    /// when that is impossible) before authorization and forwarding: in mode
    /// `smi`, where path rules apply.
    pub fn normalizes_paths(&self) -> bool {
        self.mode == AccessMode::Smi
    }

    /// Authorizes an HTTP request to `port`. `path` is normalized here (callers
    /// forward the normalized form, see [`path::normalize_uri`]); one that cannot
    /// be is denied unless a TCP rule allows the whole port.
    pub fn check_http(
        &self,
        source: Option<&str>,
        port: u16,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
    ) -> Decision {
        let c = self.counters(port);
        let normalized = path::normalize(path);
        let hit = match self.mode {
            AccessMode::Permissive => Some(self.grants.len()),
            AccessMode::Smi => self
                .candidates(source)
                .find(|(_, g)| {
                    g.tcp_allows(port)
                        || normalized
                            .as_deref()
                            .is_ok_and(|p| g.http_allows(port, method, p, headers))
                })
                .map(|(i, _)| i),
        };
        match hit {
            Some(i) => {
                if let Some(s) = c.and_then(|c| c.http_allow.get(i)) {
                    s.inc();
                }
                Ok(self
                    .grants
                    .get(i)
                    .map_or("permissive", |g| g.name.as_str())
                    .to_string())
            }
            None => {
                if let Some(c) = c {
                    c.http_deny.inc();
                }
                match normalized {
                    Err(e) => Err(e.to_string()),
                    Ok(_) => Err(self.why_denied(source)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_proxy_config::{AccessGrant, HttpMatch, InboundPort, MeshSettings, MtlsMode};

    const A: &str = "spiffe://cluster.local/ns/t/sa/a";

    fn cfg(mode: AccessMode, rules: Vec<AccessRule>) -> ProxyConfig {
        let text = r#"{"schemaVersion":1,"identity":{"namespace":"t","serviceAccount":"b","spiffeId":"spiffe://cluster.local/ns/t/sa/b"},
            "mesh":{"trustDomain":"cluster.local","accessMode":"smi","mtlsMode":"strict"}}"#;
        let mut c = ProxyConfig::from_json(text).unwrap();
        c.mesh = MeshSettings {
            trust_domain: "cluster.local".into(),
            access_mode: mode,
            mtls_mode: MtlsMode::Strict,
        };
        c.inbound.ports = vec![InboundPort {
            port: 8080,
            protocol: Default::default(),
        }];
        if !rules.is_empty() {
            c.inbound.grants = vec![AccessGrant {
                source: "t/tt".into(),
                sources: vec![A.into()],
                rules,
            }];
        }
        c
    }

    fn http(a: &Authz, src: Option<&str>, port: u16, m: Method, path: &str) -> bool {
        a.check_http(src, port, &m, path, &HeaderMap::new()).is_ok()
    }

    #[test]
    fn smi_rules() {
        let m = Metrics::default();
        let none = Authz::build(&cfg(AccessMode::Smi, vec![]), &m).unwrap();
        assert!(!http(&none, Some(A), 8080, Method::GET, "/"));
        assert_eq!(
            none.check_tcp(Some(A), 8080).unwrap_err(),
            "no TrafficTarget lists this source"
        );

        let tcp = Authz::build(
            &cfg(AccessMode::Smi, vec![AccessRule::Tcp { ports: vec![8080] }]),
            &m,
        )
        .unwrap();
        assert_eq!(tcp.check_tcp(Some(A), 8080).unwrap(), "t/tt");
        assert!(tcp.check_tcp(Some(A), 9090).is_err());
        assert!(tcp.check_tcp(None, 8080).is_err());
        assert!(
            tcp.check_tcp(Some("spiffe://cluster.local/ns/t/sa/x"), 8080)
                .is_err()
        );
        assert!(http(&tcp, Some(A), 8080, Method::POST, "/anything"));

        let rule = AccessRule::Http {
            ports: vec![],
            matches: vec![HttpMatch {
                name: "rg/metrics".into(),
                path_regex: Some("/metrics".into()),
                methods: vec!["GET".into()],
                ..Default::default()
            }],
        };
        let h = Authz::build(&cfg(AccessMode::Smi, vec![rule]), &m).unwrap();
        assert!(http(&h, Some(A), 8080, Method::GET, "/metrics"));
        assert!(!http(&h, Some(A), 8080, Method::GET, "/echo"));
        assert!(!http(&h, Some(A), 8080, Method::POST, "/metrics"));
        assert!(
            h.check_tcp(Some(A), 8080).is_err(),
            "HTTP rules do not allow opaque TCP"
        );

        let p = Authz::build(&cfg(AccessMode::Permissive, vec![]), &m).unwrap();
        assert!(http(&p, None, 1, Method::GET, "/"));
        let text = m.render();
        assert!(
            text.contains("inbound_http_authz_allow_total{target_port=\"8080\",authz=\"t/tt\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("inbound_tcp_authz_deny_total{target_port=\"other\"} 1"),
            "{text}"
        );
    }

    fn metrics_on(ports: Vec<u16>, regex: &str) -> AccessRule {
        AccessRule::Http {
            ports,
            matches: vec![HttpMatch {
                name: "rg/metrics".into(),
                path_regex: Some(regex.into()),
                ..Default::default()
            }],
        }
    }

    #[test]
    fn http_rules_apply_only_on_their_port() {
        let m = Metrics::default();
        let a = Authz::build(
            &cfg(AccessMode::Smi, vec![metrics_on(vec![8080], "/metrics")]),
            &m,
        )
        .unwrap();
        assert!(http(&a, Some(A), 8080, Method::GET, "/metrics"));
        assert!(
            !http(&a, Some(A), 9090, Method::GET, "/metrics"),
            "grant on 8080 only"
        );
        let any = Authz::build(&cfg(AccessMode::Smi, vec![metrics_on(vec![], "/metrics")]), &m).unwrap();
        assert!(
            http(&any, Some(A), 9090, Method::GET, "/metrics"),
            "no port = every port"
        );
    }

    #[test]
    fn path_bypasses_are_denied() {
        let m = Metrics::default();
        let exact = Authz::build(
            &cfg(AccessMode::Smi, vec![metrics_on(vec![8080], "/metrics")]),
            &m,
        )
        .unwrap();
        for ok in [
            "/metrics",
            "//metrics",
            "/./metrics",
            "/x/../metrics",
            "/%6Detrics",
            "/a/x/../../metrics",
        ] {
            assert!(http(&exact, Some(A), 8080, Method::GET, ok), "{ok} is /metrics");
        }
        for bypass in [
            "/metrics-admin",
            "/metrics/admin",
            "/metrics/../admin",
            "//metrics/../admin",
            "/metrics/%2E%2E/admin",
            "/metrics/%2e./admin",
        ] {
            assert_eq!(
                exact.check_http(Some(A), 8080, &Method::GET, bypass, &HeaderMap::new()),
                Err("no rule of t/tt allows it".into()),
                "{bypass}"
            );
        }
        let prefix = Authz::build(
            &cfg(AccessMode::Smi, vec![metrics_on(vec![8080], "/public/.*")]),
            &m,
        )
        .unwrap();
        assert!(http(&prefix, Some(A), 8080, Method::GET, "/public/a/b"));
        for bypass in [
            "/public/../admin",
            "/public//../admin",
            "/public/x/../../admin",
            "/public-admin",
        ] {
            assert!(!http(&prefix, Some(A), 8080, Method::GET, bypass), "{bypass}");
        }
        for encoded in [
            "/public%2F..%2Fadmin",
            "/public/x%2fy",
            "/public%5C..%5Cadmin",
            "/public\\..\\admin",
        ] {
            assert_eq!(
                prefix.check_http(Some(A), 8080, &Method::GET, encoded, &HeaderMap::new()),
                Err("encoded slash or backslash in the request path".into()),
                "{encoded}"
            );
        }
        assert!(!http(&prefix, Some(A), 8080, Method::GET, "/public/%zz"));
        // A TCP rule allows the whole port, whatever the path.
        let tcp = Authz::build(
            &cfg(AccessMode::Smi, vec![AccessRule::Tcp { ports: vec![8080] }]),
            &m,
        )
        .unwrap();
        assert!(http(&tcp, Some(A), 8080, Method::GET, "/a%2Fb"));
    }
}
