//! weft policies resolved to proxy policies: CircuitBreaker per destination
//! (shared by every client) and Retry per (client identity, destination), with
//! the documented defaults filled in.

use super::report::{Reports, reason};
use super::services::svc_key;
use crate::api::duration::GoDuration;
use crate::api::policy::{CircuitBreakerSpec, RetrySpec};
use crate::operator::state::{ClusterState, Kind};
use std::collections::{BTreeMap, HashSet};
use weft_proxy_config::{
    Backoff, BreakerPolicy, CircuitBreakerPolicy, ConnectionPool, Fallback, OutlierDetection, RetryBudget,
    RetryOn, RetryPolicy, Service,
};

/// Retry defaults.
pub mod defaults {
    /// Retry conditions when `retryOn` is absent.
    pub const RETRY_ON: [&str; 3] = ["5xx", "connect-failure", "reset"];
    /// Retries after the first attempt.
    pub const NUM_RETRIES: u32 = 2;
    /// First backoff, ms.
    pub const BACKOFF_BASE_MS: u64 = 25;
    /// Backoff cap = base × this.
    pub const BACKOFF_MAX_FACTOR: u64 = 10;
    /// Retry budget ratio.
    pub const BUDGET_RATIO: f64 = 0.2;
    /// Retries always allowed per second.
    pub const BUDGET_MIN_PER_SECOND: u32 = 10;
    /// Budget window, ms.
    pub const BUDGET_WINDOW_MS: u64 = 10_000;
}

fn ms(d: &Option<GoDuration>, default: u64, field: &str) -> Result<u64, String> {
    match d {
        None => Ok(default),
        Some(d) => match d.to_millis() {
            Ok(0) => Err(format!("{field} must be > 0")),
            Ok(v) => Ok(v),
            Err(e) => Err(format!("{field}: {e}")),
        },
    }
}

fn opt_ms(d: &Option<GoDuration>, field: &str) -> Result<Option<u64>, String> {
    d.as_ref().map(|_| ms(d, 0, field)).transpose()
}

/// Converts a Retry spec (defaults filled in).
pub fn retry_policy(source: String, spec: &RetrySpec) -> Result<RetryPolicy, String> {
    let mut retry_on = Vec::new();
    let mut grpc = Vec::new();
    let conditions: Vec<&str> = match &spec.retry_on {
        Some(list) => list.iter().map(String::as_str).collect(),
        None => defaults::RETRY_ON.to_vec(),
    };
    for c in conditions {
        let (on, code) = match c {
            "5xx" => (RetryOn::ServerError, None),
            "gateway-error" => (RetryOn::GatewayError, None),
            "connect-failure" => (RetryOn::ConnectFailure, None),
            "reset" => (RetryOn::Reset, None),
            "retriable-status-codes" => (RetryOn::RetriableStatusCodes, None),
            "cancelled" => (RetryOn::Grpc, Some(1)),
            "unknown" => (RetryOn::Grpc, Some(2)),
            "deadline-exceeded" => (RetryOn::Grpc, Some(4)),
            "resource-exhausted" => (RetryOn::Grpc, Some(8)),
            "internal" => (RetryOn::Grpc, Some(13)),
            "unavailable" => (RetryOn::Grpc, Some(14)),
            other => return Err(format!("retryOn: unknown condition {other:?}")),
        };
        retry_on.push(on);
        grpc.extend(code);
    }
    retry_on.sort();
    retry_on.dedup();
    grpc.sort();
    grpc.dedup();
    let mut codes = spec.retriable_status_codes.clone().unwrap_or_default();
    codes.sort();
    codes.dedup();
    let num_retries = spec.num_retries.unwrap_or(defaults::NUM_RETRIES);
    if num_retries > 10 {
        return Err("numRetries must be at most 10".into());
    }
    let backoff = spec.backoff.as_ref();
    let base_ms = ms(
        &backoff.and_then(|b| b.base_interval.clone()),
        defaults::BACKOFF_BASE_MS,
        "backoff.baseInterval",
    )?;
    let max_ms = ms(
        &backoff.and_then(|b| b.max_interval.clone()),
        base_ms.saturating_mul(defaults::BACKOFF_MAX_FACTOR),
        "backoff.maxInterval",
    )?;
    if max_ms < base_ms {
        return Err("backoff.maxInterval must be >= backoff.baseInterval".into());
    }
    let budget = spec.budget.as_ref();
    let ratio = budget.and_then(|b| b.ratio).unwrap_or(defaults::BUDGET_RATIO);
    if !(0.0..=10.0).contains(&ratio) {
        return Err("budget.ratio must be within 0..=10".into());
    }
    let per_try_timeout_ms = opt_ms(&spec.per_try_timeout, "perTryTimeout")?;
    let timeout_ms = opt_ms(&spec.timeout, "timeout")?;
    if let (Some(p), Some(t)) = (per_try_timeout_ms, timeout_ms)
        && p > t
    {
        return Err("perTryTimeout must not exceed timeout".into());
    }
    Ok(RetryPolicy {
        source,
        retry_on,
        retriable_status_codes: codes,
        retriable_grpc_codes: grpc,
        num_retries,
        per_try_timeout_ms,
        timeout_ms,
        backoff: Backoff { base_ms, max_ms },
        budget: RetryBudget {
            ratio,
            min_per_second: budget
                .and_then(|b| b.min_retries_per_second)
                .unwrap_or(defaults::BUDGET_MIN_PER_SECOND),
            window_ms: ms(
                &budget.and_then(|b| b.window.clone()),
                defaults::BUDGET_WINDOW_MS,
                "budget.window",
            )?,
        },
    })
}

/// Converts a CircuitBreaker spec (defaults filled in); `fallback_key` is the
/// resolved fallback service key.
pub fn breaker_policy(
    source: String,
    spec: &CircuitBreakerSpec,
    fallback_key: Option<String>,
) -> Result<CircuitBreakerPolicy, String> {
    let connection_pool = match &spec.connection_pool {
        None => None,
        Some(p) => Some(ConnectionPool {
            max_connections: p.max_connections,
            max_pending_requests: p.max_pending_requests,
            max_requests: p.max_requests,
            max_requests_per_connection: p.max_requests_per_connection,
            connect_timeout_ms: opt_ms(&p.connect_timeout, "connectionPool.connectTimeout")?,
        }),
    };
    let outlier_detection = match &spec.outlier_detection {
        None => None,
        Some(o) => Some(OutlierDetection {
            consecutive_5xx: Some(o.consecutive_5xx.unwrap_or(5)),
            consecutive_gateway_errors: o.consecutive_gateway_errors,
            interval_ms: ms(&o.interval, 10_000, "outlierDetection.interval")?,
            base_ejection_ms: ms(&o.base_ejection_time, 30_000, "outlierDetection.baseEjectionTime")?,
            max_ejection_percent: o.max_ejection_percent.unwrap_or(10).min(100),
        }),
    };
    let breaker = match &spec.breaker {
        None => None,
        Some(b) => {
            if !(1..=100).contains(&b.failure_rate_threshold) {
                return Err("breaker.failureRateThreshold must be 1..=100".into());
            }
            Some(BreakerPolicy {
                failure_rate_threshold: b.failure_rate_threshold,
                window_ms: ms(&b.window, 10_000, "breaker.window")?,
                minimum_requests: b.minimum_requests.unwrap_or(20).max(1),
                open_duration_ms: ms(&b.open_duration, 30_000, "breaker.openDuration")?,
                half_open_requests: b.half_open_requests.unwrap_or(1).max(1),
            })
        }
    };
    let fallback = match (&spec.fallback, fallback_key) {
        (None, _) => None,
        (Some(f), Some(service)) if f.service.is_some() => Some(Fallback::Service { service }),
        (Some(f), _) => {
            let s = f.static_response.as_ref();
            let headers = s.and_then(|s| s.headers.clone()).unwrap_or_default();
            Some(Fallback::Static {
                status: s.and_then(|s| s.status).unwrap_or(503),
                body: s.and_then(|s| s.body.clone()).unwrap_or_default(),
                headers: headers
                    .into_iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v))
                    .collect(),
            })
        }
    };
    if let Some(Fallback::Static { status, .. }) = &fallback
        && !(100..=599).contains(status)
    {
        return Err("fallback.static.status must be 100..=599".into());
    }
    Ok(CircuitBreakerPolicy {
        source,
        connection_pool,
        outlier_detection,
        breaker,
        fallback,
    })
}

/// Sets `circuit_breaker` on destination services (first object by namespace/name wins).
pub fn apply_breakers(state: &ClusterState, services: &mut BTreeMap<String, Service>, reports: &mut Reports) {
    let mut cbs: Vec<_> = state.circuit_breakers.iter().collect();
    cbs.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    for cb in cbs {
        let (ns, name) = (cb.namespace.as_str(), cb.name.as_str());
        reports.seen(Kind::CircuitBreaker, ns, name, cb.generation);
        let spec = match &cb.spec {
            Ok(s) => s,
            Err(e) => {
                reports.rejected(Kind::CircuitBreaker, ns, name, reason::INVALID_SPEC, e.clone());
                continue;
            }
        };
        let dest = svc_key(
            spec.destination.namespace.as_deref().unwrap_or(ns),
            &spec.destination.name,
        );
        let fallback_key = spec
            .fallback
            .as_ref()
            .and_then(|f| f.service.as_ref())
            .map(|s| svc_key(ns, s));
        let missing = [Some(&dest), fallback_key.as_ref()]
            .into_iter()
            .flatten()
            .find(|k| !services.contains_key(*k));
        if let Some(k) = missing {
            let msg = format!("service {k} not found");
            reports.service_missing(Kind::CircuitBreaker, ns, name, msg);
            continue;
        }
        let policy = match breaker_policy(format!("{ns}/{name}"), spec, fallback_key) {
            Ok(p) => p,
            Err(e) => {
                reports.rejected(Kind::CircuitBreaker, ns, name, reason::INVALID_SPEC, e);
                continue;
            }
        };
        if let Some(svc) = services.get_mut(&dest) {
            if let Some(existing) = &svc.circuit_breaker {
                let msg = format!("service {dest} already has circuit breaker {}", existing.source);
                reports.rejected(Kind::CircuitBreaker, ns, name, reason::CONFLICTED, msg);
            } else {
                svc.circuit_breaker = Some(policy);
            }
        }
    }
}

/// A Retry resolved against the cluster.
#[derive(Debug, Clone)]
pub struct ResolvedRetry {
    /// Calling identity, or `None` = every identity in `namespace`.
    pub source: Option<(String, String)>,
    /// The Retry's namespace.
    pub namespace: String,
    /// Destination service keys that exist.
    pub destinations: Vec<String>,
    /// The policy.
    pub policy: RetryPolicy,
}

/// Resolves every Retry; specific-source ones come first (they win over
/// namespace-wide ones), then by namespace/name.
pub fn resolve_retries(
    state: &ClusterState,
    services: &BTreeMap<String, Service>,
    reports: &mut Reports,
) -> Vec<ResolvedRetry> {
    let mut out = Vec::new();
    for r in &state.retries {
        let (ns, name) = (r.namespace.as_str(), r.name.as_str());
        reports.seen(Kind::Retry, ns, name, r.generation);
        let spec = match &r.spec {
            Ok(s) => s,
            Err(e) => {
                reports.rejected(Kind::Retry, ns, name, reason::INVALID_SPEC, e.clone());
                continue;
            }
        };
        let policy = match retry_policy(format!("{ns}/{name}"), spec) {
            Ok(p) => p,
            Err(e) => {
                reports.rejected(Kind::Retry, ns, name, reason::INVALID_SPEC, e);
                continue;
            }
        };
        let mut destinations = Vec::new();
        let mut seen = HashSet::new();
        for d in &spec.destinations {
            let key = svc_key(d.namespace.as_deref().unwrap_or(ns), &d.name);
            if !services.contains_key(&key) {
                let msg = format!("destination service {key} not found");
                reports.unresolved(Kind::Retry, ns, name, reason::SERVICE_NOT_FOUND, msg);
            } else if seen.insert(key.clone()) {
                destinations.push(key);
            }
        }
        if destinations.is_empty() {
            reports.rejected(
                Kind::Retry,
                ns,
                name,
                reason::SERVICE_NOT_FOUND,
                "no destination service exists".into(),
            );
            continue;
        }
        let source = spec.source.as_ref().map(|s| {
            (
                s.namespace.clone().unwrap_or_else(|| ns.to_string()),
                s.name.clone(),
            )
        });
        out.push(ResolvedRetry {
            source,
            namespace: ns.to_string(),
            destinations,
            policy,
        });
    }
    out.sort_by(|a, b| {
        (a.source.is_none(), &a.namespace, &a.policy.source).cmp(&(
            b.source.is_none(),
            &b.namespace,
            &b.policy.source,
        ))
    });
    out
}

/// The retry policy per destination key for one identity.
pub fn retries_for<'a>(
    retries: &'a [ResolvedRetry],
    ns: &str,
    sa: &str,
) -> BTreeMap<&'a str, &'a RetryPolicy> {
    let mut out = BTreeMap::new();
    for r in retries {
        let applies = match &r.source {
            Some((sns, ssa)) => sns == ns && ssa == sa,
            None => r.namespace == ns,
        };
        if applies {
            for d in &r.destinations {
                out.entry(d.as_str()).or_insert(&r.policy);
            }
        }
    }
    out
}
