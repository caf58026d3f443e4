//! The weft proxy config: the one document the operator renders per workload
//! identity (ConfigMap `weft-proxy-<sa>`, key [`CONFIG_KEY`]) and `weft-proxy`
//! reads. Both sides parse and validate with this crate, so a config that fails
//! [`ProxyConfig::validate`] is never written by the operator and never applied by
//! the proxy.
//!
//! Conventions: durations are integer milliseconds (`*_ms`), weights are relative
//! integers in milli-units (SMI v1alpha1 quantity `500m` = 500, integer `5` = 5000),
//! maps are `BTreeMap` and lists are sorted by the renderer so output is
//! deterministic.

mod catalog;
pub mod gateway;
pub mod identity;
mod pattern;
mod policy;
mod route;
mod traffic;
mod validate;

pub use catalog::{CATALOG_KEY, CatalogIndex, CatalogRef, CatalogShard, INDEX_KEY, catalog_ref};
pub use gateway::{GatewayConfig, GatewayListener, GatewayRoute, ListenerProtocol, StreamRoute};

pub use pattern::compile_full;
pub use policy::{
    Backoff, BreakerPolicy, CircuitBreakerPolicy, ConnectionPool, Fallback, OutlierDetection, RetryBudget,
    RetryOn, RetryPolicy,
};
pub use route::{
    HeaderEdits, HeaderPair, MAX_ROUTE_WEIGHT, PathMatch, PathRewrite, Redirect, Rewrite, RouteBackend,
    RouteEntry, RouteFilter, RouteMatch, RouteMirror, StringMatch, ValueMatch,
};
pub use traffic::{FaultAbort, FaultDelay, FaultPolicy, MAX_MIRROR_BODY_BYTES, MirrorPolicy};
pub use validate::ValidationError;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Schema version this crate reads and writes. Bumped on incompatible changes.
pub const SCHEMA_VERSION: u32 = 1;

/// ConfigMap data key holding the JSON document.
pub const CONFIG_KEY: &str = "config.json";

/// Error returned by [`ProxyConfig::from_json`].
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// The document is not valid JSON for this schema.
    #[error("proxy config is not valid JSON for the schema: {0}")]
    Json(#[from] serde_json::Error),
    /// The document parsed but breaks a semantic rule.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
}

/// The whole config for one workload identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxyConfig {
    /// Must equal [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The workload identity this config is for.
    pub identity: Identity,
    /// Mesh-wide modes copied from MeshConfig.
    pub mesh: MeshSettings,
    /// Services this identity may call, keyed by `namespace/name`.
    #[serde(default)]
    pub services: BTreeMap<String, Service>,
    /// What this identity serves and who may call it.
    #[serde(default)]
    pub inbound: Inbound,
    /// Services come from this shared catalog instead of [`Self::services`]
    /// (`permissive` access mode, where every identity sees every service). A
    /// config with a catalog must be [assembled](ProxyConfig::assemble) before use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog: Option<CatalogRef>,
    /// Per-destination retry policies of this identity, merged into the catalog's
    /// services by [`ProxyConfig::assemble`] (only with a catalog).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub retries: BTreeMap<String, RetryPolicy>,
    /// Per-destination fault injection of this identity, merged into the
    /// catalog's services by [`ProxyConfig::assemble`] (only with a catalog).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub faults: BTreeMap<String, Vec<FaultPolicy>>,
    /// Per-destination Gateway API routes of this identity (consumer routes in
    /// its namespace), replacing the catalog service's own routes in
    /// [`ProxyConfig::assemble`] (only with a catalog).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub routes: BTreeMap<String, Vec<RouteEntry>>,
    /// Gateway mode: the Gateway listeners this (gateway) identity serves;
    /// `None` for sidecars.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewayConfig>,
}

/// A workload identity: a ServiceAccount in a namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Identity {
    pub namespace: String,
    pub service_account: String,
    /// `spiffe://<trust-domain>/ns/<ns>/sa/<sa>`.
    pub spiffe_id: String,
}

/// Mesh-wide settings relevant to the data plane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeshSettings {
    pub trust_domain: String,
    pub access_mode: AccessMode,
    pub mtls_mode: MtlsMode,
}

/// How inbound requests are authorized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AccessMode {
    /// SMI rule: deny unless a TrafficTarget allows the source.
    Smi,
    /// Allow every source.
    Permissive,
}

/// Whether plaintext is accepted inbound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum MtlsMode {
    /// Only mTLS from mesh identities (admin port and kubelet probes excepted).
    Strict,
    /// mTLS and plaintext both accepted.
    Permissive,
}

/// Application protocol of a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum Protocol {
    /// Sniff the first bytes (HTTP/1, HTTP/2 preface, otherwise opaque TCP).
    #[default]
    Detect,
    Http1,
    Http2,
    Grpc,
    /// Opaque TCP, never parsed.
    Tcp,
}

/// Load-balancing algorithm for one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum LoadBalancer {
    /// Power of two choices over an EWMA of latency × outstanding requests.
    #[default]
    LeastRequest,
    RoundRobin,
    Random,
    /// Affinity by a request attribute.
    ConsistentHash {
        key: HashKey,
        #[serde(default)]
        algorithm: HashAlgorithm,
        /// With a cookie key: when a request lacks the cookie the proxy makes one
        /// up, routes by it and sets it on the response with this lifetime
        /// (sticky sessions). `None` = never generate.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cookie: Option<GeneratedCookie>,
    },
}

/// What a consistent hash is computed from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind", content = "name")]
pub enum HashKey {
    Header(String),
    Cookie(String),
    SourceIp,
}

/// A cookie the proxy generates for sticky sessions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GeneratedCookie {
    /// `Max-Age` of the cookie in milliseconds (sent rounded up to seconds);
    /// 0 = a session cookie (no `Max-Age`).
    pub ttl_ms: u64,
    /// `Path` attribute (default `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// Consistent-hash table construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum HashAlgorithm {
    #[default]
    Ring,
    Maglev,
}

/// A Kubernetes Service as the proxy sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Service {
    pub namespace: String,
    pub name: String,
    /// ClusterIPs (empty for headless services: pod IPs are matched instead).
    #[serde(default)]
    pub cluster_ips: Vec<IpAddr>,
    /// Ports, sorted by port number.
    pub ports: Vec<ServicePort>,
    #[serde(default)]
    pub load_balancer: LoadBalancer,
    /// TrafficSplit whose root (apex) is this service, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<Split>,
    /// Retry policy for calls from this identity to this service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// Circuit breaker for calls to this service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<CircuitBreakerPolicy>,
    /// Faults injected into calls from this identity to this service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<FaultPolicy>,
    /// Copies of requests to this service sent to other services.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mirrors: Vec<MirrorPolicy>,
    /// Gateway API routes (HTTPRoute/GRPCRoute with this service as parent), in
    /// precedence order; see [`RouteEntry`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteEntry>,
}

/// One service port and the endpoints behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServicePort {
    pub port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub protocol: Protocol,
    /// Balancer of this port when it differs from the service's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancer>,
    /// Endpoints, sorted by address.
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
}

/// A backend address (pod IP and target port).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Endpoint {
    pub ip: IpAddr,
    pub port: u16,
    #[serde(default = "default_true")]
    pub ready: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// SPIFFE ID the peer must present; `None` = not meshed (plaintext).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// Pod name, for metrics and logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
}

fn default_true() -> bool {
    true
}

/// A TrafficSplit applied at its root service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Split {
    /// `namespace/name` of the TrafficSplit (for status, metrics and logs).
    pub source: String,
    /// Weighted backends: other services' keys (`namespace/name`).
    pub backends: Vec<WeightedBackend>,
    /// Requests must match one of these (OR) to be split; empty = all requests.
    /// Non-matching requests go to the root service's own endpoints.
    #[serde(default)]
    pub matches: Vec<HttpMatch>,
}

/// One backend of a split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WeightedBackend {
    /// Key of the backend service in [`ProxyConfig::services`].
    pub service: String,
    /// Relative weight in milli-units.
    pub weight: u64,
}

/// An HTTPRouteGroup match: every present condition must hold (AND).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpMatch {
    /// `<route-group>/<match-name>`, for logs.
    pub name: String,
    /// Regex that must match the whole normalized request path (dot segments
    /// removed, duplicate slashes merged); a prefix is written `/api/.*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_regex: Option<String>,
    /// Upper-case methods; empty or containing `*` = any.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Header name (lower-case) → regex the value must match (whole value).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// Inbound side: served ports and the authorization table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Inbound {
    /// Container ports of this identity's pods with protocol hints.
    #[serde(default)]
    pub ports: Vec<InboundPort>,
    /// Grants from TrafficTargets whose destination is this identity.
    #[serde(default)]
    pub grants: Vec<AccessGrant>,
}

/// A port the workload serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InboundPort {
    pub port: u16,
    #[serde(default)]
    pub protocol: Protocol,
}

/// One TrafficTarget, flattened: `sources` may use what `rules` allow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccessGrant {
    /// `namespace/name` of the TrafficTarget.
    pub source: String,
    /// SPIFFE IDs allowed.
    pub sources: Vec<String>,
    /// What they may do (OR across rules).
    pub rules: Vec<AccessRule>,
}

/// One rule of a grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum AccessRule {
    /// TCPRoute: connections to these ports (empty = every port).
    Tcp {
        #[serde(default)]
        ports: Vec<u16>,
    },
    /// HTTPRouteGroup: HTTP requests to these ports (empty = every port; the
    /// TrafficTarget's `destination.port` when it names one) matching one of
    /// these (OR).
    Http {
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        ports: Vec<u16>,
        matches: Vec<HttpMatch>,
    },
}

impl ProxyConfig {
    /// Parses and validates a JSON document.
    pub fn from_json(text: &str) -> Result<Self, ParseError> {
        let config: Self = serde_json::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    /// Serializes to the canonical JSON form written into ConfigMaps.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }
}
