//! `specs.smi-spec.io` HTTPRouteGroup and TCPRoute, each served at v1alpha3 and
//! v1alpha4 (storage). HTTPRouteGroup `headers` accepts both shapes found in the
//! wild (a map per the spec text, a list of maps per the SMI SDK CRD); readers
//! merge a list into one AND-ed map.

use super::status::ObjectStatus;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::BTreeMap;

/// API group of the route kinds.
pub const GROUP: &str = "specs.smi-spec.io";
/// Served versions, the last is storage.
pub const VERSIONS: [&str; 2] = ["v1alpha3", "v1alpha4"];

/// Header filters: name → regex, as a map or a list of single-entry maps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum HeaderFilters {
    /// `{user-agent: ".*Firefox.*"}` (SMI spec text).
    Map(BTreeMap<String, String>),
    /// `[{user-agent: ".*Firefox.*"}]` (SMI SDK CRD).
    List(Vec<BTreeMap<String, String>>),
}

impl HeaderFilters {
    /// All filters as one map with lower-cased header names (AND semantics).
    pub fn merged(&self) -> BTreeMap<String, String> {
        let lower = |(k, v): (&String, &String)| (k.to_ascii_lowercase(), v.clone());
        match self {
            HeaderFilters::Map(m) => m.iter().map(lower).collect(),
            HeaderFilters::List(l) => l.iter().flat_map(|m| m.iter().map(lower)).collect(),
        }
    }
}

impl JsonSchema for HeaderFilters {
    fn schema_name() -> Cow<'static, str> {
        "HeaderFilters".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Header name to value regex: a map, or a list of maps (both shapes are used by SMI tooling).",
            "x-kubernetes-preserve-unknown-fields": true,
        })
    }
}

/// One named HTTP match: all present conditions must hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpMatch {
    /// Name referenced from TrafficTarget rules.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Regex matched against the path, anchored at the start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub path_regex: Option<String>,
    /// Allowed methods (`*` = any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 10), extend("items" = {"type": "string", "enum": ["*", "GET", "HEAD", "PUT", "POST", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"]}))]
    pub methods: Option<Vec<String>>,
    /// Header filters (AND).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<HeaderFilters>,
}

/// TCPRoute port match (empty = every port).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
pub struct TcpMatch {
    /// Destination ports.
    #[serde(default)]
    #[schemars(length(max = 64), extend("items" = {"type": "integer", "minimum": 1, "maximum": 65535}))]
    pub ports: Vec<u16>,
}

macro_rules! spec_versions {
    ($modname:ident, $version:literal, { $($tcp_fields:tt)* }) => {
        #[doc = concat!("HTTPRouteGroup and TCPRoute ", $version, ".")]
        pub mod $modname {
            use super::*;

            /// Named HTTP request matches, referenced by TrafficTargets and TrafficSplits.
            #[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
            #[kube(group = "specs.smi-spec.io", version = $version, kind = "HTTPRouteGroup", namespaced)]
            #[kube(status = "ObjectStatus", shortname = "htr", category = "smi")]
            #[kube(printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#)]
            #[serde(rename_all = "camelCase")]
            pub struct HTTPRouteGroupSpec {
                /// The matches (OR across matches).
                #[schemars(length(min = 1, max = 64))]
                pub matches: Vec<HttpMatch>,
            }

            /// A TCP route: connections to the listed ports.
            #[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
            #[kube(group = "specs.smi-spec.io", version = $version, kind = "TCPRoute", namespaced)]
            #[kube(status = "ObjectStatus", shortname = "tcpr", category = "smi")]
            #[kube(printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#)]
            #[serde(rename_all = "camelCase")]
            pub struct TCPRouteSpec {
                $($tcp_fields)*
            }
        }
    };
}

spec_versions!(v1alpha3, "v1alpha3", {});
spec_versions!(v1alpha4, "v1alpha4", {
    /// Ports this route covers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matches: Option<TcpMatch>,
});
