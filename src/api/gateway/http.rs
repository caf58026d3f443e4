//! `HTTPRoute` (`gateway.networking.k8s.io/v1`) spec, the fields weft uses.

use super::{BackendRef, Filter, NameValueMatch, ParentRef, RuleBackend};
use serde::{Deserialize, Serialize};

/// `HTTPRouteSpec`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteSpec {
    #[serde(default)]
    pub parent_refs: Vec<ParentRef>,
    /// Hostnames the route answers on a Gateway listener (ignored for Service
    /// parents); empty = every hostname the listener takes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<String>,
    #[serde(default)]
    pub rules: Vec<HttpRule>,
}

/// `HTTPRouteRule`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct HttpRule {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub matches: Vec<HttpMatch>,
    #[serde(default)]
    pub filters: Vec<Filter>,
    #[serde(default)]
    pub backend_refs: Vec<RuleBackend>,
    #[serde(default)]
    pub timeouts: Option<Timeouts>,
}

/// `HTTPRouteTimeouts` (Gateway API durations such as `10s`, `1h2m`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Timeouts {
    #[serde(default)]
    pub request: Option<String>,
    #[serde(default)]
    pub backend_request: Option<String>,
}

/// `HTTPRouteMatch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct HttpMatch {
    #[serde(default)]
    pub path: Option<PathMatch>,
    #[serde(default)]
    pub headers: Vec<NameValueMatch>,
    #[serde(default)]
    pub query_params: Vec<NameValueMatch>,
    #[serde(default)]
    pub method: Option<String>,
}

/// `HTTPPathMatch` (`type` defaults to `PathPrefix`, `value` to `/`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PathMatch {
    #[serde(default, rename = "type")]
    pub type_: Option<String>,
    #[serde(default)]
    pub value: Option<String>,
}

/// `HTTPRequestRedirectFilter`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct RedirectFilter {
    #[serde(default)]
    pub scheme: Option<String>,
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub path: Option<PathModifier>,
    #[serde(default)]
    pub port: Option<i32>,
    #[serde(default)]
    pub status_code: Option<i32>,
}

/// `HTTPURLRewriteFilter`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RewriteFilter {
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub path: Option<PathModifier>,
}

/// `HTTPPathModifier`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct PathModifier {
    #[serde(rename = "type")]
    pub type_: String,
    #[serde(default)]
    pub replace_full_path: Option<String>,
    #[serde(default)]
    pub replace_prefix_match: Option<String>,
}

impl HttpRule {
    /// The rule's backends without their filters.
    pub fn backends(&self) -> impl Iterator<Item = &BackendRef> {
        self.backend_refs.iter().map(|b| &b.backend)
    }
}
