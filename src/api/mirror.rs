//! `policy.weft.dev/v1alpha1` TrafficMirror: the calling sidecars copy a share
//! of the requests to one Service to another Service, fire-and-forget (the
//! copy's answer is discarded; the client only ever sees the original's).

use super::policy::ServiceRef;
use super::status::ObjectStatus;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Default share of requests copied.
pub const DEFAULT_PERCENTAGE: f64 = 100.0;
/// Default largest body copied.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 65_536;

/// Copies of requests to `destination` sent to `mirror`.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "policy.weft.dev",
    version = "v1alpha1",
    kind = "TrafficMirror",
    plural = "trafficmirrors",
    namespaced
)]
#[kube(status = "ObjectStatus", shortname = "wmirror", category = "weft")]
#[kube(printcolumn = r#"{"name":"Destination","type":"string","jsonPath":".spec.destination.name"}"#)]
#[kube(printcolumn = r#"{"name":"Mirror","type":"string","jsonPath":".spec.mirror.name"}"#)]
#[kube(
    printcolumn = r#"{"name":"Accepted","type":"string","jsonPath":".status.conditions[?(@.type==\"Accepted\")].status"}"#
)]
#[kube(printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#)]
// `namespace` is a CEL reserved word: Kubernetes exposes the field as `__namespace__`.
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.mirror.name != self.destination.name || (has(self.mirror.__namespace__) ? self.mirror.__namespace__ : '') != (has(self.destination.__namespace__) ? self.destination.__namespace__ : '')",
     "message": "spec.mirror must differ from spec.destination", "fieldPath": ".mirror"}
]))]
#[serde(rename_all = "camelCase")]
pub struct TrafficMirrorSpec {
    /// The Service whose requests are copied.
    pub destination: ServiceRef,
    /// The Service receiving the copies.
    pub mirror: MirrorTarget,
    /// Share of requests copied, 0–100 (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 100.0))]
    pub percentage: Option<f64>,
    /// Requests with a bigger body are not copied (default 65536, at most 1 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1_048_576))]
    pub max_body_bytes: Option<u64>,
}

/// The Service receiving copies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MirrorTarget {
    /// Service name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace (defaults to the TrafficMirror's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub namespace: Option<String>,
    /// Port of the mirror Service; absent = the port the request was sent to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<u16>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;
    use serde_json::json;

    #[test]
    fn schema_carries_cel_rule_naming_the_mirror() {
        let crd = serde_json::to_value(TrafficMirror::crd()).unwrap();
        assert_eq!(crd["spec"]["names"]["plural"], "trafficmirrors");
        assert_eq!(crd["spec"]["names"]["shortNames"], json!(["wmirror"]));
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        let rule = &spec["x-kubernetes-validations"][0];
        assert_eq!(rule["message"], "spec.mirror must differ from spec.destination");
        assert_eq!(rule["fieldPath"], ".mirror");
        let cel = rule["rule"].as_str().unwrap();
        assert!(
            cel.contains("self.mirror.__namespace__") && !cel.contains(".namespace"),
            "reserved word must be escaped: {cel}"
        );
        let p = &spec["properties"];
        assert_eq!(p["maxBodyBytes"]["maximum"], 1_048_576.0);
        assert_eq!(p["percentage"]["maximum"], 100.0);
        assert_eq!(p["mirror"]["properties"]["port"]["minimum"], 1.0);
        assert_eq!(spec["required"], json!(["destination", "mirror"]));
        assert_eq!(
            DEFAULT_MAX_BODY_BYTES, 65_536,
            "documented default in docs/api.md"
        );
    }
}
