//! `GRPCRoute` (`gateway.networking.k8s.io/v1`) spec, the fields weft uses.

use super::{Filter, NameValueMatch, ParentRef, RuleBackend};
use serde::{Deserialize, Serialize};

/// `GRPCRouteSpec`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct GrpcRouteSpec {
    #[serde(default)]
    pub parent_refs: Vec<ParentRef>,
    /// Hostnames the route answers on a Gateway listener (ignored for Service
    /// parents); empty = every hostname the listener takes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<String>,
    #[serde(default)]
    pub rules: Vec<GrpcRule>,
}

/// `GRPCRouteRule`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct GrpcRule {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub matches: Vec<GrpcMatch>,
    #[serde(default)]
    pub filters: Vec<Filter>,
    #[serde(default)]
    pub backend_refs: Vec<RuleBackend>,
}

/// `GRPCRouteMatch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct GrpcMatch {
    #[serde(default)]
    pub method: Option<MethodMatch>,
    #[serde(default)]
    pub headers: Vec<NameValueMatch>,
}

/// `GRPCMethodMatch` (`type` defaults to `Exact`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct MethodMatch {
    #[serde(default, rename = "type")]
    pub type_: Option<String>,
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default)]
    pub method: Option<String>,
}
