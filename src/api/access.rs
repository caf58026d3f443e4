//! `access.smi-spec.io` TrafficTarget, served at v1alpha2 and v1alpha3 (storage)
//! from one CRD. Per SMI, traffic to a destination is denied unless a
//! TrafficTarget allows its source; rules name HTTPRouteGroups or TCPRoutes.

use super::status::ObjectStatus;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A ServiceAccount identity (destination or source).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IdentitySubject {
    /// Always `ServiceAccount`.
    #[schemars(extend("enum" = ["ServiceAccount"]))]
    pub kind: String,
    /// ServiceAccount name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace (defaults to the TrafficTarget's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub namespace: Option<String>,
}

/// v1alpha2 destination: as [`IdentitySubject`] with an optional port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DestinationV1alpha2 {
    /// Always `ServiceAccount`.
    #[schemars(extend("enum" = ["ServiceAccount"]))]
    pub kind: String,
    /// ServiceAccount name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace (defaults to the TrafficTarget's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub namespace: Option<String>,
    /// Restricts the grant to this destination port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<u16>,
}

/// A route object the sources may use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrafficTargetRule {
    /// `HTTPRouteGroup`, `TCPRoute` or `UDPRoute` (UDP is accepted but not proxied).
    #[schemars(extend("enum" = ["HTTPRouteGroup", "TCPRoute", "UDPRoute"]))]
    pub kind: String,
    /// Name of the route object in the TrafficTarget's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Match names within an HTTPRouteGroup (absent = all of them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub matches: Option<Vec<String>>,
}

macro_rules! traffic_target_version {
    ($modname:ident, $version:literal, $dest:ty) => {
        #[doc = concat!("TrafficTarget ", $version, ".")]
        pub mod $modname {
            use super::*;

            /// Allows `sources` to reach `destination` through `rules`.
            #[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
            #[kube(group = "access.smi-spec.io", version = $version, kind = "TrafficTarget", namespaced)]
            #[kube(status = "ObjectStatus", shortname = "tt", category = "smi")]
            #[kube(printcolumn = r#"{"name":"Destination","type":"string","jsonPath":".spec.destination.name"}"#)]
            #[kube(printcolumn = r#"{"name":"Accepted","type":"string","jsonPath":".status.conditions[?(@.type==\"Accepted\")].status"}"#)]
            #[kube(printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#)]
            #[serde(rename_all = "camelCase")]
            pub struct TrafficTargetSpec {
                /// The identity being protected.
                pub destination: $dest,
                /// Route objects the sources may use (at least one).
                #[schemars(length(min = 1, max = 64))]
                pub rules: Vec<TrafficTargetRule>,
                /// Identities allowed (at least one).
                #[schemars(length(min = 1, max = 256))]
                pub sources: Vec<IdentitySubject>,
            }
        }
    };
}

traffic_target_version!(v1alpha2, "v1alpha2", DestinationV1alpha2);
traffic_target_version!(v1alpha3, "v1alpha3", IdentitySubject);

/// API group of TrafficTarget.
pub const GROUP: &str = "access.smi-spec.io";
/// Served versions, the last is storage.
pub const VERSIONS: [&str; 2] = ["v1alpha2", "v1alpha3"];
