//! Gateway API types weft reads for GAMMA (Gateway API for the mesh):
//! `HTTPRoute` and `GRPCRoute` (`gateway.networking.k8s.io/v1`) whose
//! `parentRefs` name a Service, and `ReferenceGrant` (`v1beta1`). Only the spec
//! fields weft uses are modelled; unknown fields are ignored, so newer bundles
//! read fine. These are plain serde types, not `CustomResource`s: weft installs
//! the upstream CRDs (`make gateway-api-crds`) and `weft-crdgen` never emits them.

// The `Gateway` kind inside the Gateway API group module: the name is the kind's.
#[allow(clippy::module_inception)]
pub mod gateway;
pub mod grpc;
pub mod http;

use serde::{Deserialize, Serialize};

/// API group of every Gateway API kind.
pub const GROUP: &str = "gateway.networking.k8s.io";
/// `controllerName` weft writes into route status.
pub const CONTROLLER_NAME: &str = "weft.dev/mesh";

/// `(version, kind, plural)` of the kinds weft watches.
pub const HTTP_ROUTE: (&str, &str, &str) = ("v1", "HTTPRoute", "httproutes");
/// See [`HTTP_ROUTE`].
pub const GRPC_ROUTE: (&str, &str, &str) = ("v1", "GRPCRoute", "grpcroutes");
/// See [`HTTP_ROUTE`].
pub const REFERENCE_GRANT: (&str, &str, &str) = ("v1beta1", "ReferenceGrant", "referencegrants");

/// `parentRefs[]` (`ParentReference`). Group defaults to the Gateway group and
/// kind to `Gateway`; weft handles `group: ""` (core) and `kind: Service`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ParentRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
}

impl ParentRef {
    /// Whether the parent is a core Service (the GAMMA case).
    pub fn is_service(&self) -> bool {
        matches!(self.group.as_deref(), Some("" | "core")) && self.kind.as_deref() == Some("Service")
    }

    /// Whether the parent is a Gateway (group and kind default to it).
    pub fn is_gateway(&self) -> bool {
        self.group.as_deref().is_none_or(|g| g == GROUP)
            && self.kind.as_deref().is_none_or(|k| k == "Gateway")
    }
}

/// `backendRefs[]` and filter `backendRef`s (`BackendObjectReference` + weight).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct BackendRef {
    /// Defaults to core (`""`).
    #[serde(default)]
    pub group: Option<String>,
    /// Defaults to `Service`.
    #[serde(default)]
    pub kind: Option<String>,
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub port: Option<i32>,
    /// Defaults to 1.
    #[serde(default)]
    pub weight: Option<i32>,
}

/// A header or query match (`type` defaults to `Exact`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NameValueMatch {
    #[serde(default, rename = "type")]
    pub type_: Option<String>,
    pub name: String,
    pub value: String,
}

/// `HTTPHeaderFilter` (RequestHeaderModifier / ResponseHeaderModifier).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct HeaderFilter {
    #[serde(default)]
    pub set: Vec<HeaderValue>,
    #[serde(default)]
    pub add: Vec<HeaderValue>,
    #[serde(default)]
    pub remove: Vec<String>,
}

/// A header name and value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderValue {
    pub name: String,
    pub value: String,
}

/// `HTTPRequestMirrorFilter`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MirrorFilter {
    pub backend_ref: BackendRef,
    #[serde(default)]
    pub percent: Option<i32>,
    #[serde(default)]
    pub fraction: Option<Fraction>,
}

/// `numerator / denominator` (denominator defaults to 100).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fraction {
    pub numerator: i32,
    #[serde(default)]
    pub denominator: Option<i32>,
}

/// A route filter of any type; weft reads the members it supports and reports
/// the other types as unsupported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    #[serde(rename = "type")]
    pub type_: String,
    #[serde(default)]
    pub request_header_modifier: Option<HeaderFilter>,
    #[serde(default)]
    pub response_header_modifier: Option<HeaderFilter>,
    #[serde(default)]
    pub request_redirect: Option<http::RedirectFilter>,
    #[serde(default, rename = "urlRewrite")]
    pub url_rewrite: Option<http::RewriteFilter>,
    #[serde(default)]
    pub request_mirror: Option<MirrorFilter>,
}

/// A route rule's backend with its own filters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleBackend {
    #[serde(flatten)]
    pub backend: BackendRef,
    #[serde(default)]
    pub filters: Vec<Filter>,
}

/// `status` of a route (`RouteStatus`); other controllers' entries are kept
/// verbatim when weft rewrites its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct RouteStatus {
    #[serde(default)]
    pub parents: Vec<serde_json::Value>,
}

/// `ReferenceGrant` spec (v1beta1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ReferenceGrantSpec {
    #[serde(default)]
    pub from: Vec<GrantFrom>,
    #[serde(default)]
    pub to: Vec<GrantTo>,
}

/// `ReferenceGrantFrom`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantFrom {
    pub group: String,
    pub kind: String,
    pub namespace: String,
}

/// `ReferenceGrantTo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantTo {
    pub group: String,
    pub kind: String,
    #[serde(default)]
    pub name: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// weft installs the upstream Gateway API CRDs; `weft-crdgen` must never emit them.
    #[test]
    fn crdgen_does_not_generate_gateway_api_crds() {
        for (file, crd) in crate::api::crds::all().unwrap() {
            assert_ne!(crd.spec.group, GROUP, "{file}");
        }
    }

    #[test]
    fn routes_read_tolerantly() {
        let r: http::HttpRouteSpec = serde_json::from_value(serde_json::json!({
            "parentRefs": [{"group": "", "kind": "Service", "name": "echo", "port": 80}],
            "hostnames": ["x"], "somethingNew": true,
            "rules": [{"matches": [{"path": {"type": "Exact", "value": "/a"}}],
                "backendRefs": [{"name": "echo-v2", "port": 8080, "weight": 3, "filters": []}],
                "timeouts": {"request": "10s"}}]
        }))
        .unwrap();
        assert!(r.parent_refs[0].is_service());
        assert_eq!(r.rules[0].backend_refs[0].backend.weight, Some(3));
        assert_eq!(
            r.rules[0].timeouts.as_ref().and_then(|t| t.request.as_deref()),
            Some("10s")
        );
        let g: grpc::GrpcRouteSpec = serde_json::from_value(serde_json::json!({
            "parentRefs": [{"group": "", "kind": "Service", "name": "echo"}],
            "rules": [{"matches": [{"method": {"service": "pkg.Svc", "method": "Get"}}]}]
        }))
        .unwrap();
        assert_eq!(
            g.rules[0].matches[0]
                .method
                .as_ref()
                .and_then(|m| m.method.as_deref()),
            Some("Get")
        );
    }
}
