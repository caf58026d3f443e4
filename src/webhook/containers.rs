//! The containers and volumes the injector adds: the `weft-init` iptables init
//! container, the `weft-proxy` native sidecar and its three volumes.

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapProjection, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource,
    HTTPGetAction, KeyToPath, ObjectFieldSelector, Probe, ProjectedVolumeSource, SeccompProfile,
    SecurityContext, ServiceAccountTokenProjection, Volume, VolumeMount, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use weft_proxy_config::CONFIG_KEY;

use super::config::InjectConfig;
use super::exclusions::Exclusions;
use super::names::*;
use super::workload::Workload;

/// Per-pod inputs of the sidecar beyond [`InjectConfig`].
#[derive(Debug, Clone)]
pub struct SidecarInputs<'a> {
    /// The pod's workload.
    pub workload: &'a Workload,
    /// JSON of the rewritten app probes, if any.
    pub app_probes: Option<String>,
}

/// The `weft-init` container: `weft-proxy init` as root with only NET_ADMIN/NET_RAW.
pub fn init_container(cfg: &InjectConfig, ex: &Exclusions) -> Container {
    let mut args = vec![
        "init".to_string(),
        format!("--inbound-port={}", cfg.inbound_port),
        format!("--outbound-port={}", cfg.outbound_port),
        format!("--admin-port={}", cfg.admin_port),
        format!("--proxy-uid={}", cfg.proxy_uid),
    ];
    for (flag, value) in [
        ("--skip-inbound-ports", &ex.inbound_ports),
        ("--skip-outbound-ports", &ex.outbound_ports),
        ("--skip-outbound-cidrs", &ex.outbound_cidrs),
    ] {
        if !value.is_empty() {
            args.push(format!("{flag}={value}"));
        }
    }
    Container {
        name: INIT_CONTAINER.into(),
        image: Some(cfg.proxy_image.clone()),
        image_pull_policy: cfg.image_pull_policy.clone(),
        command: Some(vec![PROXY_COMMAND.into()]),
        args: Some(args),
        resources: Some(cfg.resources.clone()),
        security_context: Some(SecurityContext {
            run_as_user: Some(0),
            run_as_group: Some(0),
            run_as_non_root: Some(false),
            privileged: Some(false),
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                add: Some(vec!["NET_ADMIN".into(), "NET_RAW".into()]),
                drop: Some(vec!["ALL".into()]),
            }),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                localhost_profile: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: None,
                field_path: path.into(),
            }),
            ..Default::default()
        }),
    }
}

fn value_env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

fn admin_probe(cfg: &InjectConfig, path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::Int(i32::from(cfg.admin_port)),
            scheme: Some("HTTP".into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(1),
        ..Default::default()
    }
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(true),
        ..Default::default()
    }
}

/// The `weft-proxy` native sidecar (`restartPolicy: Always` init container).
pub fn sidecar(cfg: &InjectConfig, inputs: &SidecarInputs<'_>) -> Container {
    let args = vec![
        "run".to_string(),
        format!("--inbound-port={}", cfg.inbound_port),
        format!("--outbound-port={}", cfg.outbound_port),
        format!("--admin-port={}", cfg.admin_port),
    ];
    let mut env = vec![
        field_env(ENV_POD_NAME, "metadata.name"),
        field_env(ENV_POD_NAMESPACE, "metadata.namespace"),
        field_env(ENV_POD_IP, "status.podIP"),
        field_env(ENV_SERVICE_ACCOUNT, "spec.serviceAccountName"),
        field_env(ENV_WEFT_SERVICE_ACCOUNT, "spec.serviceAccountName"),
        value_env(ENV_CONFIG, &format!("{CONFIG_DIR}/{CONFIG_KEY}")),
        value_env(ENV_TOKEN_PATH, &format!("{TOKEN_DIR}/{TOKEN_FILE}")),
        value_env(ENV_IDENTITY_ENDPOINT, &cfg.identity_endpoint),
        value_env(
            ENV_IDENTITY_TOKEN,
            &format!("{IDENTITY_DIR}/{IDENTITY_TOKEN_FILE}"),
        ),
        value_env(ENV_CA_BUNDLE, &format!("{IDENTITY_DIR}/{CA_BUNDLE_FILE}")),
        value_env(ENV_LOG, &cfg.log_level),
        value_env(ENV_WORKLOAD_KIND, &inputs.workload.kind),
        value_env(ENV_WORKLOAD_NAME, &inputs.workload.name),
    ];
    if let Some(probes) = &inputs.app_probes {
        env.push(value_env(ENV_APP_PROBES, probes));
    }
    Container {
        name: PROXY_CONTAINER.into(),
        image: Some(cfg.proxy_image.clone()),
        image_pull_policy: cfg.image_pull_policy.clone(),
        restart_policy: Some("Always".into()),
        command: Some(vec![PROXY_COMMAND.into()]),
        args: Some(args),
        env: Some(env),
        ports: Some(vec![ContainerPort {
            name: Some("weft-admin".into()),
            container_port: i32::from(cfg.admin_port),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        // Startup gates the app containers until the proxy has config and identity.
        startup_probe: Some(admin_probe(cfg, READY_PATH, 1, 300)),
        readiness_probe: Some(admin_probe(cfg, READY_PATH, 2, 3)),
        liveness_probe: Some(admin_probe(cfg, LIVE_PATH, 10, 3)),
        resources: Some(cfg.resources.clone()),
        security_context: Some(SecurityContext {
            run_as_user: Some(cfg.proxy_uid),
            run_as_group: Some(cfg.proxy_uid),
            run_as_non_root: Some(true),
            privileged: Some(false),
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities {
                add: None,
                drop: Some(vec!["ALL".into()]),
            }),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                localhost_profile: None,
            }),
            ..Default::default()
        }),
        volume_mounts: Some(vec![
            mount(VOL_IDENTITY, IDENTITY_DIR),
            mount(VOL_CONFIG, CONFIG_DIR),
            mount(VOL_TOKEN, TOKEN_DIR),
        ]),
        ..Default::default()
    }
}

/// The sidecar's volumes: the identity bootstrap (a token for the weft audience and the
/// public trust bundle; no Secret, no key), optional config ConfigMap, and a projected
/// volume with a ServiceAccount token and the API server CA (`token`, `ca.crt`).
pub fn volumes(cfg: &InjectConfig, service_account: &str) -> Vec<Volume> {
    vec![
        Volume {
            name: VOL_IDENTITY.into(),
            projected: Some(ProjectedVolumeSource {
                sources: Some(vec![
                    VolumeProjection {
                        service_account_token: Some(ServiceAccountTokenProjection {
                            audience: Some(weft_proxy_config::identity::AUDIENCE.into()),
                            expiration_seconds: Some(cfg.token_expiration_seconds),
                            path: IDENTITY_TOKEN_FILE.into(),
                        }),
                        ..Default::default()
                    },
                    VolumeProjection {
                        // Not optional (like Istio's istio-ca-root-cert): kubelet retries the
                        // mount until the operator has written it (within a reconcile of the
                        // namespace's first meshed pod), so the sidecar starts with the bundle.
                        config_map: Some(ConfigMapProjection {
                            name: weft_proxy_config::identity::BUNDLE_CONFIG_MAP.into(),
                            items: Some(vec![KeyToPath {
                                key: weft_proxy_config::identity::BUNDLE_KEY.into(),
                                path: CA_BUNDLE_FILE.into(),
                                mode: None,
                            }]),
                            optional: None,
                        }),
                        ..Default::default()
                    },
                ]),
                ..Default::default()
            }),
            ..Default::default()
        },
        Volume {
            name: VOL_CONFIG.into(),
            config_map: Some(ConfigMapVolumeSource {
                name: format!("{CONFIG_MAP_PREFIX}{service_account}"),
                optional: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        },
        Volume {
            name: VOL_TOKEN.into(),
            projected: Some(ProjectedVolumeSource {
                sources: Some(vec![
                    VolumeProjection {
                        service_account_token: Some(ServiceAccountTokenProjection {
                            audience: cfg.token_audience.clone(),
                            expiration_seconds: Some(cfg.token_expiration_seconds),
                            path: TOKEN_FILE.into(),
                        }),
                        ..Default::default()
                    },
                    VolumeProjection {
                        config_map: Some(ConfigMapProjection {
                            name: KUBE_ROOT_CA.into(),
                            items: Some(vec![KeyToPath {
                                key: "ca.crt".into(),
                                path: "ca.crt".into(),
                                mode: None,
                            }]),
                            optional: None,
                        }),
                        ..Default::default()
                    },
                ]),
                ..Default::default()
            }),
            ..Default::default()
        },
    ]
}
