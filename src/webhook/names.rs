//! Every name the injector writes into a pod: annotations, labels, container and
//! volume names, mount paths, ports and environment variables. This is the contract
//! between the injector and `weft-proxy` (see `docs/injection.md`).

/// Pod annotation overriding the namespace opt-in: `enabled` or `disabled`.
pub const ANN_INJECT: &str = "weft.dev/inject";
/// Marker set on injected pods; value = controller version.
pub const ANN_INJECTED: &str = "weft.dev/injected";
/// Inbound ports (list `80,8000-8100`) not redirected to the sidecar.
pub const ANN_SKIP_INBOUND_PORTS: &str = "weft.dev/skip-inbound-ports";
/// Outbound destination ports not redirected to the sidecar.
pub const ANN_SKIP_OUTBOUND_PORTS: &str = "weft.dev/skip-outbound-ports";
/// Outbound destination CIDRs not redirected to the sidecar.
pub const ANN_SKIP_OUTBOUND_CIDRS: &str = "weft.dev/skip-outbound-cidrs";
/// Kind of the workload owning the pod (`Deployment`, `StatefulSet`, ...).
pub const ANN_WORKLOAD_KIND: &str = "weft.dev/workload-kind";
/// Name of the workload owning the pod.
pub const ANN_WORKLOAD_NAME: &str = "weft.dev/workload-name";
/// JSON of the rewritten app probes (informational copy of `WEFT_APP_PROBES`).
pub const ANN_APP_PROBES: &str = "weft.dev/app-probes";

/// Namespace the mesh itself runs in; never injected.
pub const SYSTEM_NAMESPACE: &str = "weft-system";

/// The iptables init container.
pub const INIT_CONTAINER: &str = "weft-init";
/// The sidecar (a native sidecar: an init container with `restartPolicy: Always`).
pub const PROXY_CONTAINER: &str = "weft-proxy";
/// The ingress gateway's only container (`weft-proxy gateway`, in the pods of the
/// Deployments the operator runs per Gateway): it takes the sidecar's place, so a pod
/// marked injected that has it is complete and is left alone.
pub const GATEWAY_CONTAINER: &str = "weft-gateway";
/// Executable inside the proxy image (looked up in `PATH`).
pub const PROXY_COMMAND: &str = "weft-proxy";

/// Projected volume of the identity bootstrap: a ServiceAccount token with audience
/// `weft.dev/identity` ([`IDENTITY_TOKEN_FILE`]) and the public mesh trust bundle from
/// ConfigMap `weft-ca-bundle` ([`CA_BUNDLE_FILE`]). No private key: the sidecar
/// generates it in memory and obtains its certificate by CSR.
pub const VOL_IDENTITY: &str = "weft-identity";
/// Volume holding the proxy ConfigMap `weft-proxy-<sa>` (optional).
pub const VOL_CONFIG: &str = "weft-config";
/// Volume holding the projected ServiceAccount token.
pub const VOL_TOKEN: &str = "weft-token";
/// Mount path of [`VOL_IDENTITY`].
pub const IDENTITY_DIR: &str = "/var/run/weft/identity";
/// File name of the identity token inside [`IDENTITY_DIR`].
pub const IDENTITY_TOKEN_FILE: &str = "token";
/// File name of the mesh trust bundle inside [`IDENTITY_DIR`].
pub const CA_BUNDLE_FILE: &str = "ca.crt";
/// Mount path of [`VOL_CONFIG`].
pub const CONFIG_DIR: &str = "/var/run/weft/config";
/// Mount path of [`VOL_TOKEN`].
pub const TOKEN_DIR: &str = "/var/run/weft/token";
/// File name of the token inside [`TOKEN_DIR`].
pub const TOKEN_FILE: &str = "token";
/// ConfigMap every namespace gets with the API server CA (`ca.crt`), projected into
/// [`TOKEN_DIR`] next to the token.
pub const KUBE_ROOT_CA: &str = "kube-root-ca.crt";

/// Prefix of the per-identity ConfigMap name.
pub const CONFIG_MAP_PREFIX: &str = "weft-proxy-";

/// Admin port path: readiness (config and identity loaded).
pub const READY_PATH: &str = "/ready";
/// Admin port path: liveness.
pub const LIVE_PATH: &str = "/live";
/// Admin port path: Prometheus metrics.
pub const METRICS_PATH: &str = "/metrics";
/// Admin port path prefix of rewritten app probes: `/app-probe/<container>/<kind>`.
pub const APP_PROBE_PREFIX: &str = "/app-probe/";

/// Env: pod name (downward API).
pub const ENV_POD_NAME: &str = "POD_NAME";
/// Env: pod namespace (downward API).
pub const ENV_POD_NAMESPACE: &str = "POD_NAMESPACE";
/// Env: pod IP (downward API).
pub const ENV_POD_IP: &str = "POD_IP";
/// Env: ServiceAccount name (downward API).
pub const ENV_SERVICE_ACCOUNT: &str = "SERVICE_ACCOUNT";
/// Env: ServiceAccount whose ConfigMap the proxy watches (`weft-proxy run --service-account`).
pub const ENV_WEFT_SERVICE_ACCOUNT: &str = "WEFT_SERVICE_ACCOUNT";
/// Env: the mounted config file (`weft-proxy run --config`).
pub const ENV_CONFIG: &str = "WEFT_CONFIG";
/// Env: the projected token; `ca.crt` sits next to it (`weft-proxy run --token-path`).
pub const ENV_TOKEN_PATH: &str = "WEFT_TOKEN_PATH";
/// Env: the controller's identity endpoint `host:port` (`weft-proxy run --identity-endpoint`).
pub const ENV_IDENTITY_ENDPOINT: &str = "WEFT_IDENTITY_ENDPOINT";
/// Env: the identity token (`weft-proxy run --identity-token`).
pub const ENV_IDENTITY_TOKEN: &str = "WEFT_IDENTITY_TOKEN";
/// Env: the mesh trust bundle (`weft-proxy run --ca-bundle`).
pub const ENV_CA_BUNDLE: &str = "WEFT_CA_BUNDLE";
/// Env: the proxy's log filter (tracing `EnvFilter` syntax; the MeshConfig log level).
pub const ENV_LOG: &str = "RUST_LOG";
/// Env: owning workload kind.
pub const ENV_WORKLOAD_KIND: &str = "WEFT_WORKLOAD_KIND";
/// Env: owning workload name.
pub const ENV_WORKLOAD_NAME: &str = "WEFT_WORKLOAD_NAME";
/// Env: JSON map of rewritten probe path → original probe (absent when none).
pub const ENV_APP_PROBES: &str = "WEFT_APP_PROBES";
