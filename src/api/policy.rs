//! `policy.weft.dev/v1alpha1` Retry and CircuitBreaker: resilience policies the
//! operator resolves per (source identity, destination service) into the proxy
//! config. Durations are Go-style strings ([`GoDuration`]).

use super::duration::GoDuration;
use super::status::ObjectStatus;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// API group of weft's own kinds.
pub const GROUP: &str = "policy.weft.dev";

/// The calling identity a policy applies to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceRef {
    /// Always `ServiceAccount`.
    #[schemars(extend("enum" = ["ServiceAccount"]))]
    pub kind: String,
    /// ServiceAccount name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace (defaults to the policy's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub namespace: Option<String>,
}

/// A destination Service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceRef {
    /// Always `Service`.
    #[schemars(extend("enum" = ["Service"]))]
    pub kind: String,
    /// Service name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace (defaults to the policy's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub namespace: Option<String>,
}

/// Conditions under which an attempt is retried.
pub const RETRY_ON: [&str; 11] = [
    "5xx",
    "gateway-error",
    "connect-failure",
    "reset",
    "retriable-status-codes",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
    "unknown",
];

/// Retry and timeout policy for calls from `source` to `destinations`.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(group = "policy.weft.dev", version = "v1alpha1", kind = "Retry", namespaced)]
#[kube(status = "ObjectStatus", shortname = "wretry", category = "weft")]
#[kube(printcolumn = r#"{"name":"Retries","type":"integer","jsonPath":".spec.numRetries"}"#)]
#[kube(
    printcolumn = r#"{"name":"Accepted","type":"string","jsonPath":".status.conditions[?(@.type==\"Accepted\")].status"}"#
)]
#[kube(printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.retryOn) || !self.retryOn.exists(c, c == 'retriable-status-codes') || (has(self.retriableStatusCodes) && size(self.retriableStatusCodes) > 0)",
     "message": "spec.retriableStatusCodes must list codes when retryOn has retriable-status-codes", "fieldPath": ".retriableStatusCodes"},
    {"rule": "!has(self.perTryTimeout) || !has(self.timeout) || duration(self.perTryTimeout) <= duration(self.timeout)",
     "message": "spec.perTryTimeout must not exceed spec.timeout", "fieldPath": ".perTryTimeout"}
]))]
#[serde(rename_all = "camelCase")]
pub struct RetrySpec {
    /// Calling identity; absent = every identity in the namespace's mesh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceRef>,
    /// Services whose calls are retried.
    #[schemars(length(min = 1, max = 64))]
    pub destinations: Vec<ServiceRef>,
    /// Retry conditions (default `[5xx, connect-failure, reset]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 11), extend("items" = {"type": "string", "enum": RETRY_ON}))]
    pub retry_on: Option<Vec<String>>,
    /// HTTP status codes retried with `retriable-status-codes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), extend("items" = {"type": "integer", "minimum": 100, "maximum": 599}))]
    pub retriable_status_codes: Option<Vec<u16>>,
    /// Retries after the first attempt, 0–10 (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 10))]
    pub num_retries: Option<u32>,
    /// Deadline of each attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_try_timeout: Option<GoDuration>,
    /// Deadline across all attempts; when exceeded the client gets 504.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<GoDuration>,
    /// Exponential backoff between attempts (with jitter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Backoff>,
    /// Limits retries to a share of regular traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<RetryBudget>,
}

/// Exponential backoff bounds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.baseInterval) || !has(self.maxInterval) || duration(self.baseInterval) <= duration(self.maxInterval)",
     "message": "spec.backoff.maxInterval must be >= spec.backoff.baseInterval", "fieldPath": ".maxInterval"}
]))]
pub struct Backoff {
    /// First backoff (default 25ms); doubles per retry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_interval: Option<GoDuration>,
    /// Cap (default 10 × base).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_interval: Option<GoDuration>,
}

/// Retry budget: retries may add at most `ratio` of regular requests, plus
/// `minRetriesPerSecond`, measured over `window`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetryBudget {
    /// Extra load allowed, e.g. `0.2` = 20% (default 0.2, at most 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 10.0))]
    pub ratio: Option<f64>,
    /// Retries always allowed per second (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100_000))]
    pub min_retries_per_second: Option<u32>,
    /// Accounting window (default 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<GoDuration>,
}

/// Circuit breaking for calls to one Service.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "policy.weft.dev",
    version = "v1alpha1",
    kind = "CircuitBreaker",
    namespaced
)]
#[kube(status = "ObjectStatus", shortname = "wcb", category = "weft")]
#[kube(printcolumn = r#"{"name":"Destination","type":"string","jsonPath":".spec.destination.name"}"#)]
#[kube(
    printcolumn = r#"{"name":"Accepted","type":"string","jsonPath":".status.conditions[?(@.type==\"Accepted\")].status"}"#
)]
#[kube(printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.connectionPool) || has(self.outlierDetection) || has(self.breaker)",
     "message": "spec must set at least one of connectionPool, outlierDetection, breaker"}
]))]
#[serde(rename_all = "camelCase")]
pub struct CircuitBreakerSpec {
    /// The protected Service.
    pub destination: ServiceRef,
    /// Connection-pool limits; excess requests fail fast with 503.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_pool: Option<ConnectionPool>,
    /// Per-endpoint ejection after consecutive failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetection>,
    /// Service-level closed/open/half-open breaker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker: Option<Breaker>,
    /// What an open breaker answers with (default: 503).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Fallback>,
}

/// Connection-pool limits (absent = unlimited).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionPool {
    /// Max TCP connections to all endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_connections: Option<u32>,
    /// Max requests waiting for a connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_pending_requests: Option<u32>,
    /// Max requests in flight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_requests: Option<u32>,
    /// Requests per connection before it is recycled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_requests_per_connection: Option<u32>,
    /// TCP connect deadline (default 5s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<GoDuration>,
}

/// Outlier detection settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutlierDetection {
    /// Consecutive 5xx responses that eject an endpoint (default 5).
    #[serde(default, rename = "consecutive5xx", skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub consecutive_5xx: Option<u32>,
    /// Consecutive 502/503/504 or connect failures that eject (default off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub consecutive_gateway_errors: Option<u32>,
    /// How often ejections are re-evaluated (default 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<GoDuration>,
    /// Ejection time × number of ejections (default 30s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_ejection_time: Option<GoDuration>,
    /// Max share of endpoints ejected at once, percent (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub max_ejection_percent: Option<u32>,
}

/// Service-level breaker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Breaker {
    /// Failure percentage (1–100) over `window` that opens the breaker.
    #[schemars(range(min = 1, max = 100))]
    pub failure_rate_threshold: u32,
    /// Sliding window (default 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<GoDuration>,
    /// Requests needed in the window before the rate counts (default 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub minimum_requests: Option<u32>,
    /// Time spent open before half-open trials (default 30s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_duration: Option<GoDuration>,
    /// Trial requests let through when half-open (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub half_open_requests: Option<u32>,
}

/// Fallback while open: exactly one of `static` or `service`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.static) != has(self.service)", "message": "spec.fallback must set exactly one of static, service"}
]))]
pub struct Fallback {
    /// A fixed response.
    #[serde(default, rename = "static", skip_serializing_if = "Option::is_none")]
    pub static_response: Option<StaticResponse>,
    /// Another Service in the same namespace that takes the traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub service: Option<String>,
}

/// A fixed HTTP response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StaticResponse {
    /// Status code (default 503).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 100, max = 599))]
    pub status: Option<u16>,
    /// Body (at most 4 KiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub body: Option<String>,
    /// Extra response headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 16))]
    pub headers: Option<BTreeMap<String, String>>,
}
