//! `policy.weft.dev/v1alpha1` MeshConfig: the one typed place for mesh-wide
//! settings. Cluster-scoped, a single object named `default`.

use super::duration::GoDuration;
use super::status::ObjectStatus;
use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Name of the one MeshConfig the operator reads.
pub const MESH_CONFIG_NAME: &str = "default";

/// Mesh-wide settings.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[kube(group = "policy.weft.dev", version = "v1alpha1", kind = "MeshConfig")]
#[kube(status = "ObjectStatus", shortname = "meshcfg", category = "weft")]
#[kube(validation = kube::core::Rule::new("self.metadata.name == 'default'").message("metadata.name must be 'default' (one MeshConfig per cluster)"))]
#[kube(printcolumn = r#"{"name":"Access","type":"string","jsonPath":".spec.accessMode"}"#)]
#[kube(printcolumn = r#"{"name":"mTLS","type":"string","jsonPath":".spec.mtlsMode"}"#)]
#[kube(printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#)]
#[serde(rename_all = "camelCase")]
pub struct MeshConfigSpec {
    /// SPIFFE trust domain (default `cluster.local`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$")
    )]
    pub trust_domain: Option<String>,
    /// `smi` (default: deny unless a TrafficTarget allows) or `permissive`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_mode: Option<AccessMode>,
    /// `strict` (default: mTLS only) or `permissive` (plaintext also accepted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtls_mode: Option<MtlsMode>,
    /// Sidecar settings used by the injector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxySettings>,
    /// Workload certificate lifetime (default 24h; renewed at 2/3 of it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_validity: Option<GoDuration>,
    /// Injection policy in the namespaces that opted into the mesh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub injection: Option<InjectionSettings>,
}

/// Injection policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct InjectionSettings {
    /// Whether pods of meshed namespaces may opt out with `weft.dev/inject: disabled` or
    /// bypass the proxy for some traffic with the `weft.dev/skip-*` annotations (default
    /// `true`). `false`: the webhook denies such pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_opt_out: Option<bool>,
}

/// Access mode values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum AccessMode {
    /// Deny unless a TrafficTarget allows (the SMI rule).
    Smi,
    /// Allow every source.
    Permissive,
}

/// mTLS mode values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum MtlsMode {
    /// Plaintext refused (admin port and kubelet probes excepted).
    Strict,
    /// mTLS and plaintext accepted.
    Permissive,
}

/// Log levels the proxy accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum LogLevel {
    /// Everything.
    Trace,
    /// Debugging.
    Debug,
    /// Default.
    Info,
    /// Problems only.
    Warn,
    /// Errors only.
    Error,
}

/// Sidecar settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct ProxySettings {
    /// Sidecar image (default `weft/proxy:<controller version>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,
    /// Sidecar resources (default requests 10m CPU / 16Mi, limit 64Mi).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Sidecar log level (default `info`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_level: Option<LogLevel>,
}
