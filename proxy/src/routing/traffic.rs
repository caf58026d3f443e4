//! Traffic policies a service port route carries besides its split, compiled
//! with the routing table: fault injection rules (FaultInjection, matched like
//! split matches, on the normalized path) and mirror routes (TrafficMirror),
//! each with a [`Backend`] for the mirror service built like split backends.
//! The request-path mechanisms are [`crate::proxy::fault`] and
//! [`crate::proxy::mirror`].

use super::matcher::{CompiledMatch, MatchError, any_match, compile_all};
use super::table::{Backend, Builder, PortRoute};
use crate::metrics::{Kind, Metrics, Series, labels};
use http::{HeaderMap, Method};
use std::sync::Arc;
use weft_proxy_config::{FaultAbort, FaultDelay, FaultPolicy, Service};

/// Counter of injected faults.
pub const FAULTS_METRIC: &str = "weft_faults_injected_total";
/// Counter of mirrored requests, by result.
pub const MIRROR_METRIC: &str = "weft_mirror_requests_total";

/// One compiled fault policy.
#[derive(Debug)]
pub struct FaultRule {
    /// `namespace/name` of the FaultInjection.
    pub source: String,
    matches: Vec<CompiledMatch>,
    pub delay: Option<FaultDelay>,
    pub abort: Option<FaultAbort>,
    /// `weft_faults_injected_total{kind="delay"}` of the service.
    pub delays: Arc<Series>,
    /// `weft_faults_injected_total{kind="abort"}` of the service.
    pub aborts: Arc<Series>,
}

/// The fault policies of one service, in order (the first that matches applies).
#[derive(Debug, Default)]
pub struct Faults {
    rules: Vec<FaultRule>,
}

/// `dst_namespace` and `dst_service` labels of a `namespace/name` key.
fn dst_labels(key: &str, extra: (&str, &str)) -> String {
    let (ns, name) = key.split_once('/').unwrap_or(("", key));
    labels(&[("dst_namespace", ns), ("dst_service", name), extra])
}

impl Faults {
    /// Compiles the fault policies of the service `key`.
    pub fn compile(key: &str, faults: &[FaultPolicy], metrics: &Metrics) -> Result<Self, MatchError> {
        let series = |kind| {
            metrics.families.series(
                FAULTS_METRIC,
                Kind::Counter,
                "Faults injected into outbound requests, by kind (delay or abort).",
                &dst_labels(key, ("kind", kind)),
            )
        };
        let rules = faults
            .iter()
            .map(|f| {
                Ok(FaultRule {
                    source: f.source.clone(),
                    matches: compile_all(&f.matches)?,
                    delay: f.delay.clone(),
                    abort: f.abort.clone(),
                    delays: series("delay"),
                    aborts: series("abort"),
                })
            })
            .collect::<Result<_, MatchError>>()?;
        Ok(Self { rules })
    }

    /// The first rule whose matches hold (an empty match list holds always);
    /// `path` must already be normalized.
    pub fn find(&self, method: &Method, path: &str, headers: &HeaderMap) -> Option<&FaultRule> {
        self.rules
            .iter()
            .find(|r| r.matches.is_empty() || any_match(&r.matches, method, path, headers))
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// Copies of a share of the route's requests sent to another service.
#[derive(Debug)]
pub struct MirrorRoute {
    /// `namespace/name` of the TrafficMirror.
    pub source: String,
    /// Share of requests copied, 0–100.
    pub percent: f64,
    /// Bigger bodies are not copied.
    pub max_body_bytes: u64,
    /// The mirror service port (its own balancer, policy and metrics).
    pub backend: Arc<Backend>,
    /// `weft_mirror_requests_total{result="sent"}` of the mirror service.
    pub sent: Arc<Series>,
    /// `…{result="failed"}`: an error, a 5xx or a timeout.
    pub failed: Arc<Series>,
    /// `…{result="dropped"}`: body too large, no free slot, no endpoint.
    pub dropped: Arc<Series>,
}

impl<'a> Builder<'a> {
    /// The mirror routes of `svc` for requests sent to `port`; mirrors whose
    /// service is unknown or lacks the port are skipped.
    pub(super) fn mirrors(&mut self, svc: &'a Service, port: u16) -> Vec<MirrorRoute> {
        let mut out = Vec::new();
        for m in &svc.mirrors {
            let Some((mkey, msvc)) = self.cfg.services.get_key_value(&m.service) else {
                continue;
            };
            let mport = m.port.unwrap_or(port);
            if !msvc.ports.iter().any(|p| p.port == mport) {
                continue;
            }
            let mut route = self.mirror_route(&m.source, mkey.as_str(), msvc, mport);
            route.percent = m.percent;
            route.max_body_bytes = m.max_body_bytes;
            out.push(route);
        }
        out
    }

    /// A mirror route to `mport` of `msvc` (key `mkey`), copying nothing until
    /// the caller sets `percent` and `max_body_bytes`.
    pub(super) fn mirror_route(
        &mut self,
        source: &str,
        mkey: &'a str,
        msvc: &'a Service,
        mport: u16,
    ) -> MirrorRoute {
        let bal = self.balancer(mkey, msvc, mport);
        let backend = Arc::new(self.backend(msvc, mport, mkey, msvc, bal, false));
        let series = |result| {
            self.metrics.families.series(
                MIRROR_METRIC,
                Kind::Counter,
                "Mirrored request copies, by result (sent, failed or dropped).",
                &dst_labels(mkey, ("result", result)),
            )
        };
        MirrorRoute {
            source: source.to_owned(),
            percent: 0.0,
            max_body_bytes: 0,
            backend,
            sent: series("sent"),
            failed: series("failed"),
            dropped: series("dropped"),
        }
    }
}

impl PortRoute {
    /// The fault rule for an HTTP request, if any. Matches see the normalized
    /// path, as split matches do.
    pub fn fault(&self, method: &Method, path: &str, headers: &HeaderMap) -> Option<&FaultRule> {
        if self.faults.is_empty() {
            return None;
        }
        let normalized = super::path::normalize(path);
        self.faults
            .find(method, normalized.as_deref().unwrap_or(path), headers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_proxy_config::HttpMatch;

    fn policy(name: &str, path: Option<&str>) -> FaultPolicy {
        FaultPolicy {
            source: name.into(),
            matches: path
                .map(|p| HttpMatch {
                    name: "g/m".into(),
                    path_regex: Some(p.into()),
                    ..HttpMatch::default()
                })
                .into_iter()
                .collect(),
            delay: None,
            abort: Some(FaultAbort {
                http_status: Some(503),
                grpc_status: None,
                percent: 100.0,
            }),
        }
    }

    #[test]
    fn first_matching_rule_applies_and_metrics_are_labelled() {
        let m = Metrics::default();
        let f = Faults::compile(
            "shop/cart",
            &[policy("shop/api", Some("/api/.*")), policy("shop/all", None)],
            &m,
        )
        .unwrap();
        let h = HeaderMap::new();
        assert_eq!(f.find(&Method::GET, "/api/x", &h).unwrap().source, "shop/api");
        assert_eq!(f.find(&Method::GET, "/web", &h).unwrap().source, "shop/all");
        let only = Faults::compile("shop/cart", &[policy("shop/api", Some("/api/.*"))], &m).unwrap();
        assert!(only.find(&Method::GET, "/web", &h).is_none());
        only.find(&Method::GET, "/api/x", &h).unwrap().aborts.inc();
        let l = "dst_namespace=\"shop\",dst_service=\"cart\",kind=\"abort\"";
        assert_eq!(m.families.value(FAULTS_METRIC, l), Some(1));
        assert!(Faults::default().is_empty());
    }
}
