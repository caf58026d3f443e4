//! [`InjectConfig`]: everything the injector needs to build the sidecar and init
//! containers, with defaults, built from the MeshConfig's `proxy` settings.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::api::mesh::{LogLevel, MeshConfigSpec, ProxySettings};

/// Version written into `weft.dev/injected` and the default image tag.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Sidecar and init-container settings.
#[derive(Debug, Clone, PartialEq)]
pub struct InjectConfig {
    /// Image of both the sidecar and the init container.
    pub proxy_image: String,
    /// `imagePullPolicy` of both containers (`None` ⇒ Kubernetes default).
    pub image_pull_policy: Option<String>,
    /// Sidecar resources.
    pub resources: ResourceRequirements,
    /// Sidecar log level (`trace` … `error`).
    pub log_level: String,
    /// Sidecar inbound listener port.
    pub inbound_port: u16,
    /// Sidecar outbound listener port.
    pub outbound_port: u16,
    /// Sidecar admin port (`/ready`, `/live`, `/metrics`, `/app-probe/...`).
    pub admin_port: u16,
    /// UID and GID the sidecar runs as.
    pub proxy_uid: i64,
    /// Audience of the projected ServiceAccount token. `None` (the default) means the
    /// API server's own audience, which the proxy needs to watch its ConfigMap; a
    /// custom audience only works if the API server lists it in `--api-audiences`.
    pub token_audience: Option<String>,
    /// Lifetime requested for the projected token (kubelet rotates it).
    pub token_expiration_seconds: i64,
    /// The controller's identity endpoint (`host:port`) sidecars send CSRs to.
    pub identity_endpoint: String,
    /// Value of the `weft.dev/injected` marker.
    pub version: String,
    /// Whether pods may opt out (`weft.dev/inject: disabled`, `weft.dev/skip-*`);
    /// MeshConfig `spec.injection.allowOptOut`, default `true`.
    pub allow_opt_out: bool,
}

/// Default sidecar image.
pub fn default_image() -> String {
    format!("weft/proxy:{VERSION}")
}

/// Default identity endpoint: the `weft-identity` Service in `weft-system`.
pub fn default_identity_endpoint() -> String {
    use weft_proxy_config::identity::{DEFAULT_PORT, SERVICE};
    format!("{SERVICE}.{}.svc:{DEFAULT_PORT}", super::names::SYSTEM_NAMESPACE)
}

/// Default sidecar resources: requests 10m CPU / 16Mi, limit 64Mi memory.
pub fn default_resources() -> ResourceRequirements {
    let q = |s: &str| Quantity(s.to_string());
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), q("10m")),
            ("memory".to_string(), q("16Mi")),
        ])),
        limits: Some(BTreeMap::from([("memory".to_string(), q("64Mi"))])),
        ..Default::default()
    }
}

fn level_name(level: LogLevel) -> &'static str {
    match level {
        LogLevel::Trace => "trace",
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error => "error",
    }
}

impl Default for InjectConfig {
    fn default() -> Self {
        InjectConfig {
            proxy_image: default_image(),
            image_pull_policy: None,
            resources: default_resources(),
            log_level: "info".to_string(),
            inbound_port: 15006,
            outbound_port: 15001,
            admin_port: 15020,
            proxy_uid: 2102,
            token_audience: None,
            token_expiration_seconds: 3600,
            identity_endpoint: default_identity_endpoint(),
            version: VERSION.to_string(),
            allow_opt_out: true,
        }
    }
}

impl From<&ProxySettings> for InjectConfig {
    fn from(p: &ProxySettings) -> Self {
        let d = InjectConfig::default();
        InjectConfig {
            proxy_image: p.image.clone().unwrap_or(d.proxy_image),
            resources: p.resources.clone().unwrap_or(d.resources),
            log_level: p.log_level.map(level_name).map_or(d.log_level, str::to_string),
            ..d
        }
    }
}

impl From<&MeshConfigSpec> for InjectConfig {
    fn from(spec: &MeshConfigSpec) -> Self {
        let cfg = spec.proxy.as_ref().map(InjectConfig::from).unwrap_or_default();
        InjectConfig {
            allow_opt_out: spec
                .injection
                .as_ref()
                .and_then(|i| i.allow_opt_out)
                .unwrap_or(true),
            ..cfg
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides_from_mesh_config() {
        let d = InjectConfig::from(&MeshConfigSpec::default());
        assert_eq!(d, InjectConfig::default());
        assert_eq!(d.proxy_image, format!("weft/proxy:{VERSION}"));
        let spec = MeshConfigSpec {
            proxy: Some(ProxySettings {
                image: Some("registry.local/weft-proxy:dev".into()),
                resources: None,
                log_level: Some(LogLevel::Debug),
            }),
            ..Default::default()
        };
        let c = InjectConfig::from(&spec);
        assert_eq!(c.proxy_image, "registry.local/weft-proxy:dev");
        assert_eq!(c.log_level, "debug");
        assert_eq!(c.resources, default_resources());
        assert_eq!(c.admin_port, 15020);
        assert!(c.allow_opt_out);
    }

    #[test]
    fn allow_opt_out_follows_mesh_config() {
        let spec: MeshConfigSpec =
            serde_json::from_value(serde_json::json!({"injection": {"allowOptOut": false}}))
                .unwrap_or_default();
        assert!(!InjectConfig::from(&spec).allow_opt_out);
        let spec: MeshConfigSpec =
            serde_json::from_value(serde_json::json!({"injection": {}})).unwrap_or_default();
        assert!(InjectConfig::from(&spec).allow_opt_out);
    }
}
