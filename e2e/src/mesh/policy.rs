//! SMI access/specs objects and weft policies as JSON, for tests and the demo:
//! TrafficTarget (v1alpha3), HTTPRouteGroup and TCPRoute (v1alpha4), TrafficSplit with
//! header matches, Retry and CircuitBreaker (`policy.weft.dev/v1alpha1`).

use serde_json::{Value, json};

/// One HTTPRouteGroup match: `name`, optional path regex, methods and headers.
#[derive(Debug, Clone, Default)]
pub struct HttpMatch<'a> {
    /// Match name (referenced from TrafficTargets and TrafficSplits).
    pub name: &'a str,
    /// `pathRegex` (anchored at the path start).
    pub path_regex: Option<&'a str>,
    /// Methods (`*` for any); empty = any.
    pub methods: &'a [&'a str],
    /// Headers that must all match.
    pub headers: &'a [(&'a str, &'a str)],
}

/// An HTTPRouteGroup.
pub fn http_route_group(namespace: &str, name: &str, matches: &[HttpMatch<'_>]) -> Value {
    let matches: Vec<Value> = matches
        .iter()
        .map(|m| {
            let mut v = json!({"name": m.name});
            if let Some(p) = m.path_regex {
                v["pathRegex"] = json!(p);
            }
            if !m.methods.is_empty() {
                v["methods"] = json!(m.methods);
            }
            if !m.headers.is_empty() {
                let h: serde_json::Map<String, Value> = m
                    .headers
                    .iter()
                    .map(|(k, v)| ((*k).to_string(), json!(v)))
                    .collect();
                v["headers"] = Value::Object(h);
            }
            v
        })
        .collect();
    json!({"apiVersion": "specs.smi-spec.io/v1alpha4", "kind": "HTTPRouteGroup",
           "metadata": {"name": name, "namespace": namespace},
           "spec": {"matches": matches}})
}

/// A TCPRoute covering every port.
pub fn tcp_route(namespace: &str, name: &str) -> Value {
    json!({"apiVersion": "specs.smi-spec.io/v1alpha4", "kind": "TCPRoute",
           "metadata": {"name": name, "namespace": namespace},
           "spec": {"matches": {"ports": []}}})
}

/// A rule of a TrafficTarget: `("TCPRoute", name, [])` or `("HTTPRouteGroup", name, matches)`.
pub type Rule<'a> = (&'a str, &'a str, &'a [&'a str]);

/// A TrafficTarget letting ServiceAccounts `sources` reach ServiceAccount `destination`.
pub fn traffic_target(
    namespace: &str,
    name: &str,
    destination: &str,
    sources: &[&str],
    rules: &[Rule<'_>],
) -> Value {
    let sa = |n: &str| json!({"kind": "ServiceAccount", "name": n, "namespace": namespace});
    let rules: Vec<Value> = rules
        .iter()
        .map(|(kind, n, matches)| {
            let mut r = json!({"kind": kind, "name": n});
            if !matches.is_empty() {
                r["matches"] = json!(matches);
            }
            r
        })
        .collect();
    json!({"apiVersion": "access.smi-spec.io/v1alpha3", "kind": "TrafficTarget",
           "metadata": {"name": name, "namespace": namespace},
           "spec": {"destination": sa(destination),
                    "sources": sources.iter().map(|s| sa(s)).collect::<Vec<_>>(),
                    "rules": rules}})
}

/// A v1alpha4 TrafficSplit restricted to requests matching HTTPRouteGroup `group`.
pub fn header_split(namespace: &str, name: &str, root: &str, group: &str, backend: &str) -> Value {
    json!({"apiVersion": "split.smi-spec.io/v1alpha4", "kind": "TrafficSplit",
           "metadata": {"name": name, "namespace": namespace},
           "spec": {"service": root,
                    "matches": [{"kind": "HTTPRouteGroup", "name": group}],
                    "backends": [{"service": backend, "weight": 100}]}})
}

/// A Retry from ServiceAccount `source` to Service `destination` on 5xx.
pub fn retry(namespace: &str, name: &str, source: &str, destination: &str, retries: u32) -> Value {
    json!({"apiVersion": "policy.weft.dev/v1alpha1", "kind": "Retry",
           "metadata": {"name": name, "namespace": namespace},
           "spec": {"source": {"kind": "ServiceAccount", "name": source},
                    "destinations": [{"kind": "Service", "name": destination}],
                    "retryOn": ["5xx", "connect-failure", "reset"],
                    "numRetries": retries,
                    "perTryTimeout": "1s",
                    "backoff": {"baseInterval": "5ms", "maxInterval": "50ms"},
                    "budget": {"ratio": 1.0, "minRetriesPerSecond": 100, "window": "10s"}}})
}

/// A CircuitBreaker on Service `destination` that opens at a 50 % failure rate over at
/// least `minimum` requests and answers with a static 503 fallback (header
/// `x-fallback: true`) while open.
pub fn circuit_breaker(namespace: &str, name: &str, destination: &str, minimum: u32) -> Value {
    json!({"apiVersion": "policy.weft.dev/v1alpha1", "kind": "CircuitBreaker",
           "metadata": {"name": name, "namespace": namespace},
           "spec": {"destination": {"kind": "Service", "name": destination},
                    "breaker": {"failureRateThreshold": 50, "window": "10s",
                                "minimumRequests": minimum, "openDuration": "30s",
                                "halfOpenRequests": 1},
                    "fallback": {"static": {"status": 503, "body": "fallback",
                                            "headers": {"x-fallback": "true"}}}}})
}
