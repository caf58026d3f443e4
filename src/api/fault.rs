//! `policy.weft.dev/v1alpha1` FaultInjection: delays and local error answers
//! injected by the calling sidecar into a share of the requests to one Service,
//! optionally only for one calling identity and only for matching requests.

use super::balancing::TOKEN_PATTERN;
use super::duration::GoDuration;
use super::policy::{ServiceRef, SourceRef};
use super::status::ObjectStatus;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Faults injected into calls from `source` to `destination`.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "policy.weft.dev",
    version = "v1alpha1",
    kind = "FaultInjection",
    plural = "faultinjections",
    namespaced
)]
#[kube(status = "ObjectStatus", shortname = "wfault", category = "weft")]
#[kube(printcolumn = r#"{"name":"Destination","type":"string","jsonPath":".spec.destination.name"}"#)]
#[kube(
    printcolumn = r#"{"name":"Accepted","type":"string","jsonPath":".status.conditions[?(@.type==\"Accepted\")].status"}"#
)]
#[kube(printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.delay) || has(self.abort)", "message": "spec must set at least one of delay, abort"}
]))]
#[serde(rename_all = "camelCase")]
pub struct FaultInjectionSpec {
    /// The Service whose calls get faults.
    pub destination: ServiceRef,
    /// Calling identity; absent = every identity in the FaultInjection's namespace (as Retry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceRef>,
    /// A request must match one of these (OR); absent = every request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub matches: Option<Vec<FaultMatch>>,
    /// Delay a share of requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<Delay>,
    /// Answer a share of requests locally with an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<Abort>,
}

/// One request match: every condition set must hold (AND).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FaultMatch {
    /// Request path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathMatch>,
    /// HTTP method (upper-case).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 32), regex(pattern = r"^[A-Z]+$"))]
    pub method: Option<String>,
    /// Request headers (all must match).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub headers: Option<Vec<HeaderMatch>>,
    /// gRPC service and method (the request path `/<service>/<method>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<GrpcMatch>,
}

/// How a path is compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PathMatchType {
    /// The whole path equals the value.
    Exact,
    /// Path elements start with the value's (`/api` matches `/api` and `/api/x`, not `/apix`).
    PathPrefix,
    /// The whole path matches the regular expression (RE2 syntax).
    RegularExpression,
}

/// A path condition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "(has(self.type) && self.type == 'RegularExpression') || self.value.startsWith('/')",
     "message": "spec.matches[].path.value must start with / unless type is RegularExpression",
     "fieldPath": ".value"}
]))]
pub struct PathMatch {
    /// Comparison (default `PathPrefix`).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<PathMatchType>,
    /// Path, prefix or regular expression.
    #[schemars(length(min = 1, max = 1024))]
    pub value: String,
}

/// How a header value is compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum HeaderMatchType {
    /// The whole value equals.
    Exact,
    /// The whole value matches the regular expression.
    RegularExpression,
}

/// A header condition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HeaderMatch {
    /// Header name (case-insensitive).
    #[schemars(length(min = 1, max = 256), regex(pattern = TOKEN_PATTERN))]
    pub name: String,
    /// Value or regular expression.
    #[schemars(length(max = 4096))]
    pub value: String,
    /// Comparison (default `Exact`).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<HeaderMatchType>,
}

/// A gRPC call; an absent part matches any.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GrpcMatch {
    /// Fully qualified service, e.g. `shop.v1.Cart`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256), regex(pattern = r"^[^/]+$"))]
    pub service: Option<String>,
    /// Method name, e.g. `AddItem`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256), regex(pattern = r"^[^/]+$"))]
    pub method: Option<String>,
}

/// A fixed delay for a share of requests.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "duration(self.fixedDelay) > duration('0s') && duration(self.fixedDelay) <= duration('1h')",
     "message": "spec.delay.fixedDelay must be greater than 0s and at most 1h", "fieldPath": ".fixedDelay"}
]))]
pub struct Delay {
    /// How long requests are held before they are sent.
    pub fixed_delay: GoDuration,
    /// Share of matching requests delayed, 0–100.
    #[schemars(range(min = 0.0, max = 100.0))]
    pub percentage: f64,
}

/// A local error answer for a share of requests.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.httpStatus) || has(self.grpcStatus)",
     "message": "spec.abort must set at least one of httpStatus, grpcStatus"}
]))]
pub struct Abort {
    /// HTTP status answered (also to gRPC requests when `grpcStatus` is unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 200, max = 599))]
    pub http_status: Option<u16>,
    /// gRPC status code answered to gRPC requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 16))]
    pub grpc_status: Option<u32>,
    /// Share of matching requests aborted, 0–100.
    #[schemars(range(min = 0.0, max = 100.0))]
    pub percentage: f64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::cel_messages;
    use kube::CustomResourceExt;
    use serde_json::json;

    #[test]
    fn schema_carries_cel_rules_naming_fields() {
        let crd = serde_json::to_value(FaultInjection::crd()).unwrap();
        assert_eq!(crd["spec"]["names"]["plural"], "faultinjections");
        assert_eq!(crd["spec"]["names"]["shortNames"], json!(["wfault"]));
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        assert_eq!(cel_messages(spec), ["spec must set at least one of delay, abort"]);
        let p = &spec["properties"];
        assert!(cel_messages(&p["delay"])[0].starts_with("spec.delay.fixedDelay"));
        assert!(cel_messages(&p["abort"])[0].starts_with("spec.abort"));
        assert_eq!(p["matches"]["maxItems"], 16);
        let m = &p["matches"]["items"]["properties"];
        assert!(cel_messages(&m["path"])[0].starts_with("spec.matches[].path.value"));
        assert_eq!(
            m["path"]["properties"]["type"]["enum"],
            json!(["Exact", "PathPrefix", "RegularExpression"])
        );
        assert_eq!(m["headers"]["maxItems"], 16);
        assert_eq!(p["abort"]["properties"]["grpcStatus"]["maximum"], 16.0);
        assert_eq!(p["abort"]["properties"]["httpStatus"]["minimum"], 200.0);
        assert_eq!(p["delay"]["properties"]["percentage"]["maximum"], 100.0);
        assert_eq!(
            spec["required"],
            json!(["destination"]),
            "only destination is required"
        );
    }
}
