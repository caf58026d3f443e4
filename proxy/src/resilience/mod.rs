//! Resilience state per destination service: the retry budget, the
//! service-level circuit breaker, per-endpoint outlier detection and
//! connection-pool limits, plus their metric handles. State lives in the
//! [`Resilience`] registry so it survives config swaps while the service's
//! policies stay the same (a changed policy starts fresh).
//!
//! The request-path logic that uses it is [`crate::proxy::policy`].

pub mod breaker;
pub mod budget;
pub mod limits;
pub mod outlier;
pub mod retry;
pub mod view;
pub mod window;

use crate::metrics::{Kind, Metrics, Series, labels};
use breaker::{Breaker, BreakerMetrics};
use budget::Budget;
use limits::Limits;
use outlier::Outlier;
use retry::Reason;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use weft_proxy_config::{CircuitBreakerPolicy, RetryPolicy};

/// Counters of one service's retry layer.
#[derive(Debug)]
pub struct RetryMetrics {
    /// Indexed like [`Reason::ALL`].
    pub retries: Vec<Arc<Series>>,
    pub budget_exhausted: Arc<Series>,
}

impl RetryMetrics {
    /// Counts a retry for `reason`.
    pub fn retried(&self, reason: Reason) {
        if let Some(i) = Reason::ALL.iter().position(|r| *r == reason) {
            self.retries[i].inc();
        }
    }
}

/// Everything one service's policies need at run time.
#[derive(Debug)]
pub struct ServiceState {
    pub key: Arc<str>,
    pub retry: Option<RetryPolicy>,
    pub circuit_breaker: Option<CircuitBreakerPolicy>,
    pub budget: Option<Budget>,
    pub breaker: Option<Arc<Breaker>>,
    pub outlier: Option<Outlier>,
    pub limits: Option<Limits>,
    pub retry_metrics: RetryMetrics,
    /// Requests refused by the breaker or the pool limits, by `x-weft-error` reason.
    rejected: Mutex<BTreeMap<&'static str, Arc<Series>>>,
    metrics: Arc<Metrics>,
    base_labels: String,
}

impl ServiceState {
    fn new(
        key: &str,
        retry: Option<&RetryPolicy>,
        cb: Option<&CircuitBreakerPolicy>,
        m: &Arc<Metrics>,
    ) -> Self {
        let (ns, name) = key.split_once('/').unwrap_or(("", key));
        let base = labels(&[("dst_namespace", ns), ("dst_service", name)]);
        let with = |extra: &[(&str, &str)]| {
            let e = labels(extra);
            if e.is_empty() {
                base.clone()
            } else {
                format!("{base},{e}")
            }
        };
        let f = &m.families;
        let retry_metrics = RetryMetrics {
            retries: Reason::ALL
                .iter()
                .map(|r| {
                    f.series(
                        "outbound_http_retry_total",
                        Kind::Counter,
                        "Retries sent, by the retryOn condition that triggered them.",
                        &with(&[("reason", r.label())]),
                    )
                })
                .collect(),
            budget_exhausted: f.series(
                "outbound_http_retry_budget_exhausted_total",
                Kind::Counter,
                "Retries skipped because the retry budget was exhausted.",
                &base,
            ),
        };
        let breaker = cb.and_then(|c| c.breaker.clone()).map(|p| {
            let bm = BreakerMetrics {
                state: f.series(
                    "outbound_http_breaker_state",
                    Kind::Gauge,
                    "Circuit breaker state: 0 closed, 1 open, 2 half-open.",
                    &base,
                ),
                transitions: ["closed", "open", "half_open"].map(|to| {
                    f.series(
                        "outbound_http_breaker_transitions_total",
                        Kind::Counter,
                        "Circuit breaker state transitions, by new state.",
                        &with(&[("to", to)]),
                    )
                }),
            };
            Arc::new(Breaker::new(p, bm))
        });
        let outlier = cb.and_then(|c| c.outlier_detection.clone()).map(|p| {
            Outlier::new(
                p,
                f.series(
                    "outbound_http_outlier_ejections_total",
                    Kind::Counter,
                    "Endpoints ejected by outlier detection.",
                    &base,
                ),
                f.series(
                    "outbound_http_outlier_ejected_endpoints",
                    Kind::Gauge,
                    "Endpoints currently ejected by outlier detection.",
                    &base,
                ),
            )
        });
        Self {
            key: Arc::from(key),
            retry: retry.cloned(),
            circuit_breaker: cb.cloned(),
            budget: retry.map(|r| Budget::new(&r.budget)),
            breaker,
            outlier,
            limits: cb.and_then(|c| c.connection_pool.as_ref()).map(Limits::new),
            retry_metrics,
            rejected: Mutex::new(BTreeMap::new()),
            metrics: Arc::clone(m),
            base_labels: base,
        }
    }

    /// Counts a request refused locally (breaker open, pool limits).
    pub fn rejected(&self, reason: &'static str) {
        let mut map = self.rejected.lock().unwrap_or_else(|p| p.into_inner());
        let s = map.entry(reason).or_insert_with(|| {
            self.metrics.families.series(
                "outbound_http_breaker_rejected_total",
                Kind::Counter,
                "Requests refused by the circuit breaker or its connection-pool limits, by reason.",
                &format!("{},reason=\"{reason}\"", self.base_labels),
            )
        });
        s.inc();
    }
}

/// Service states by service key, reused across config swaps.
#[derive(Debug)]
pub struct Resilience {
    metrics: Arc<Metrics>,
    services: Mutex<BTreeMap<String, Arc<ServiceState>>>,
}

impl Resilience {
    /// An empty registry recording into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            metrics,
            services: Mutex::new(BTreeMap::new()),
        }
    }

    /// The state of `key` for these policies (`None` when it has neither).
    pub fn get(
        &self,
        key: &str,
        retry: Option<&RetryPolicy>,
        cb: Option<&CircuitBreakerPolicy>,
    ) -> Option<Arc<ServiceState>> {
        if retry.is_none() && cb.is_none() {
            return None;
        }
        let mut map = self.services.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = map.get(key)
            && s.retry.as_ref() == retry
            && s.circuit_breaker.as_ref() == cb
        {
            return Some(Arc::clone(s));
        }
        let s = Arc::new(ServiceState::new(key, retry, cb, &self.metrics));
        map.insert(key.to_string(), Arc::clone(&s));
        Some(s)
    }

    /// Drops states that no routing table uses any more.
    pub fn sweep(&self) {
        let mut map = self.services.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, s| Arc::strong_count(s) > 1);
    }

    /// Every live state, by key.
    pub fn all(&self) -> Vec<Arc<ServiceState>> {
        let map = self.services.lock().unwrap_or_else(|p| p.into_inner());
        map.values().cloned().collect()
    }
}
