//! `split.smi-spec.io` TrafficSplit, served at v1alpha1–v1alpha4 from one CRD
//! (conversion `None`, v1alpha4 storage), plus [`SplitView`], the one reader that
//! normalises whatever version was stored. Weights are never rewritten: v1alpha1
//! keeps quantity strings, later versions keep integers.

use super::quantity::{Weight, WeightError};
use super::status::ObjectStatus;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of TrafficSplit.
pub const GROUP: &str = "split.smi-spec.io";
/// Kind name.
pub const KIND: &str = "TrafficSplit";
/// Versions served, oldest first; the last is the storage version.
pub const VERSIONS: [&str; 4] = ["v1alpha1", "v1alpha2", "v1alpha3", "v1alpha4"];

/// Reference to an HTTPRouteGroup whose matches select the requests to split.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteGroupRef {
    /// Group of the referenced kind (optional; `specs.smi-spec.io` is implied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_group: Option<String>,
    /// Always `HTTPRouteGroup`.
    #[schemars(extend("enum" = ["HTTPRouteGroup"]))]
    pub kind: String,
    /// Name of the HTTPRouteGroup in the split's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// v1alpha1: quantity weights, no `matches` (written by Flagger's `linkerd` and `smi:v1alpha1`).
pub mod v1alpha1 {
    use super::*;

    /// Desired split of traffic to a root service across backend services.
    #[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
    #[kube(
        group = "split.smi-spec.io",
        version = "v1alpha1",
        kind = "TrafficSplit",
        namespaced
    )]
    #[kube(status = "ObjectStatus", shortname = "ts", category = "smi")]
    #[kube(printcolumn = r#"{"name":"Service","type":"string","jsonPath":".spec.service"}"#)]
    #[kube(
        printcolumn = r#"{"name":"Accepted","type":"string","jsonPath":".status.conditions[?(@.type==\"Accepted\")].status"}"#
    )]
    #[kube(printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#)]
    #[serde(rename_all = "camelCase")]
    pub struct TrafficSplitSpec {
        /// Root (apex) service clients address.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(length(max = 253))]
        pub service: Option<String>,
        /// Weighted backend services.
        #[schemars(length(min = 1, max = 64))]
        #[schemars(extend("x-kubernetes-validations" = [{"rule": "self.all(b, self.exists_one(c, c.service == b.service))", "message": "backend services must be unique"}]))]
        pub backends: Vec<Backend>,
    }

    /// A backend service with a quantity weight.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
    pub struct Backend {
        /// Backend Service name.
        #[schemars(length(min = 1, max = 253))]
        pub service: String,
        /// Relative weight (`"500m"`, `"1"`, `5`).
        pub weight: Weight,
    }
}

/// Generates an integer-weight version; `v1alpha2` has no `matches` and an
/// optional `service`, `v1alpha3`/`v1alpha4` are identical to each other.
macro_rules! int_weight_version {
    ($modname:ident, $version:literal, { $($fields:tt)* }) => {
        #[doc = concat!("TrafficSplit ", $version, " (integer weights).")]
        pub mod $modname {
            use super::*;

            /// Desired split of traffic to a root service across backend services.
            #[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
            #[kube(group = "split.smi-spec.io", version = $version, kind = "TrafficSplit", namespaced)]
            #[kube(status = "ObjectStatus", shortname = "ts", category = "smi")]
            #[kube(printcolumn = r#"{"name":"Service","type":"string","jsonPath":".spec.service"}"#)]
            #[kube(printcolumn = r#"{"name":"Accepted","type":"string","jsonPath":".status.conditions[?(@.type==\"Accepted\")].status"}"#)]
            #[kube(printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#)]
            #[serde(rename_all = "camelCase")]
            pub struct TrafficSplitSpec {
                $($fields)*
                /// Weighted backend services.
                #[schemars(length(min = 1, max = 64))]
                #[schemars(extend("x-kubernetes-validations" = [{"rule": "self.all(b, self.exists_one(c, c.service == b.service))", "message": "backend services must be unique"}]))]
                pub backends: Vec<Backend>,
            }

            /// A backend service with an integer weight.
            #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
            pub struct Backend {
                /// Backend Service name.
                #[schemars(length(min = 1, max = 253))]
                pub service: String,
                /// Relative weight, a whole number >= 0.
                #[schemars(range(min = 0, max = 1_000_000))]
                pub weight: i64,
            }
        }
    };
}

int_weight_version!(v1alpha2, "v1alpha2", {
    /// Root (apex) service clients address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub service: Option<String>,
});

int_weight_version!(v1alpha3, "v1alpha3", {
    /// Root (apex) service clients address.
    #[schemars(length(min = 1, max = 253))]
    pub service: String,
    /// HTTPRouteGroups selecting the requests to split; others go to `service`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub matches: Option<Vec<RouteGroupRef>>,
});

int_weight_version!(v1alpha4, "v1alpha4", {
    /// Root (apex) service clients address.
    #[schemars(length(min = 1, max = 253))]
    pub service: String,
    /// HTTPRouteGroups selecting the requests to split; others go to `service`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub matches: Option<Vec<RouteGroupRef>>,
});

/// A TrafficSplit read from any served version, normalised for rendering.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitView {
    /// Root service name.
    pub service: String,
    /// `(backend service, weight in milli-units)` in the stored order.
    pub backends: Vec<(String, u64)>,
    /// HTTPRouteGroup names selecting the split requests (empty = all).
    pub matches: Vec<String>,
}

/// Why a stored TrafficSplit cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SplitReadError {
    /// The stored spec does not have the TrafficSplit shape.
    #[error("spec is not a TrafficSplit spec: {0}")]
    Shape(#[from] serde_json::Error),
    /// `spec.service` is missing or empty.
    #[error("spec.service is required")]
    MissingService,
    /// A weight is not a non-negative integer or quantity.
    #[error("spec.backends[{index}].weight: {source}")]
    Weight {
        /// Backend index.
        index: usize,
        /// What is wrong.
        source: WeightError,
    },
}

/// Tolerant shape covering every version (weights int or quantity).
#[derive(Deserialize)]
struct AnySpec {
    #[serde(default)]
    service: Option<String>,
    #[serde(default)]
    backends: Vec<AnyBackend>,
    #[serde(default)]
    matches: Option<Vec<RouteGroupRef>>,
}

#[derive(Deserialize)]
struct AnyBackend {
    service: String,
    weight: Weight,
}

impl SplitView {
    /// Normalises a stored `spec` of any served version.
    pub fn from_spec(spec: &serde_json::Value) -> Result<Self, SplitReadError> {
        let any = AnySpec::deserialize(spec)?;
        let service = any
            .service
            .filter(|s| !s.is_empty())
            .ok_or(SplitReadError::MissingService)?;
        let backends = any
            .backends
            .into_iter()
            .enumerate()
            .map(|(index, b)| {
                let millis = b
                    .weight
                    .millis()
                    .map_err(|source| SplitReadError::Weight { index, source })?;
                Ok((b.service, millis))
            })
            .collect::<Result<Vec<_>, SplitReadError>>()?;
        let matches = any
            .matches
            .unwrap_or_default()
            .into_iter()
            .map(|m| m.name)
            .collect();
        Ok(Self {
            service,
            backends,
            matches,
        })
    }
}
