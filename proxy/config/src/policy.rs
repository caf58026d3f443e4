//! Resilience policies as the proxy applies them: retries (from `Retry`) and
//! circuit breaking (from `CircuitBreaker`), already resolved to one destination.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Retry and timeout policy for one destination service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryPolicy {
    /// `namespace/name` of the Retry object.
    pub source: String,
    pub retry_on: Vec<RetryOn>,
    /// Extra status codes retried when `retry_on` has `RetriableStatusCodes`.
    #[serde(default)]
    pub retriable_status_codes: Vec<u16>,
    /// gRPC status codes (numeric) that are retried.
    #[serde(default)]
    pub retriable_grpc_codes: Vec<u32>,
    pub num_retries: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_try_timeout_ms: Option<u64>,
    /// Overall deadline across attempts; exceeded ⇒ 504.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    pub backoff: Backoff,
    pub budget: RetryBudget,
}

/// Conditions that make an attempt retryable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RetryOn {
    #[serde(rename = "5xx")]
    ServerError,
    GatewayError,
    ConnectFailure,
    Reset,
    RetriableStatusCodes,
    Grpc,
}

/// Exponential backoff with full jitter between attempts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Backoff {
    pub base_ms: u64,
    pub max_ms: u64,
}

/// Retries allowed: `ratio` × original requests plus `min_per_second`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryBudget {
    pub ratio: f64,
    pub min_per_second: u32,
    /// Window over which requests and retries are counted.
    pub window_ms: u64,
}

/// Circuit breaking for one destination service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CircuitBreakerPolicy {
    /// `namespace/name` of the CircuitBreaker object.
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_pool: Option<ConnectionPool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker: Option<BreakerPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Fallback>,
}

/// Connection-pool limits; excess fails fast with 503.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConnectionPool {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pending_requests: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_requests: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_requests_per_connection: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout_ms: Option<u64>,
}

/// Per-endpoint ejection on consecutive failures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OutlierDetection {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_5xx: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_gateway_errors: Option<u32>,
    pub interval_ms: u64,
    pub base_ejection_ms: u64,
    pub max_ejection_percent: u32,
}

/// Service-level closed/open/half-open breaker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BreakerPolicy {
    /// Percent (1–100) of failed requests in the window that opens the breaker.
    pub failure_rate_threshold: u32,
    pub window_ms: u64,
    pub minimum_requests: u32,
    pub open_duration_ms: u64,
    pub half_open_requests: u32,
}

/// What an open breaker answers with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Fallback {
    /// A fixed response.
    Static {
        status: u16,
        #[serde(default)]
        body: String,
        #[serde(default)]
        headers: BTreeMap<String, String>,
    },
    /// Send the request to another service instead (key `namespace/name`).
    Service { service: String },
}
