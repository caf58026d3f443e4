//! The operator's input as plain data: a snapshot of the cluster objects that
//! matter for rendering, already reduced to the fields the renderer reads. Built
//! from the reflector caches by [`super::snapshot`], or directly by tests and
//! benchmarks. No I/O, no kube client.

use crate::api::balancing::LoadBalancingSpec;
use crate::api::fault::FaultInjectionSpec;
use crate::api::gateway::ReferenceGrantSpec;
use crate::api::gateway::grpc::GrpcRouteSpec;
use crate::api::gateway::http::HttpRouteSpec;
use crate::api::mirror::TrafficMirrorSpec;
use crate::api::policy::{CircuitBreakerSpec, RetrySpec};
use crate::api::specs::HttpMatch as ApiHttpMatch;
use crate::api::split::SplitView;
use std::collections::BTreeMap;
use std::net::IpAddr;
use weft_proxy_config::{AccessMode, MtlsMode};

/// Default SPIFFE trust domain.
pub const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";
/// Namespace of the shared service catalog unless the operator is told otherwise.
pub const DEFAULT_CATALOG_NAMESPACE: &str = "weft-system";

/// Everything [`super::render::render`] reads.
#[derive(Debug, Clone, Default)]
pub struct ClusterState {
    /// Mesh-wide settings (from MeshConfig `default`).
    pub mesh: MeshInput,
    /// Services (ExternalName services may be left out).
    pub services: Vec<ServiceInfo>,
    /// EndpointSlices, each tied to its service by the `kubernetes.io/service-name` label.
    pub endpoint_slices: Vec<SliceInfo>,
    /// Pods carrying the `weft.dev/injected` annotation.
    pub meshed_pods: Vec<PodInfo>,
    /// ServiceAccounts (configs are owned by them).
    pub service_accounts: Vec<ServiceAccountInfo>,
    /// TrafficSplits (any served version), normalised.
    pub splits: Vec<Input<SplitView>>,
    /// TrafficTargets.
    pub traffic_targets: Vec<Input<TargetInput>>,
    /// HTTPRouteGroups (their matches).
    pub route_groups: Vec<Input<Vec<ApiHttpMatch>>>,
    /// TCPRoutes (their ports; empty = every port).
    pub tcp_routes: Vec<Input<Vec<u16>>>,
    /// Retry policies.
    pub retries: Vec<Input<RetrySpec>>,
    /// CircuitBreaker policies.
    pub circuit_breakers: Vec<Input<CircuitBreakerSpec>>,
    /// LoadBalancing policies.
    pub load_balancings: Vec<Input<LoadBalancingSpec>>,
    /// FaultInjection policies.
    pub fault_injections: Vec<Input<FaultInjectionSpec>>,
    /// TrafficMirror policies.
    pub traffic_mirrors: Vec<Input<TrafficMirrorSpec>>,
    /// Gateway API HTTPRoutes and GRPCRoutes (GAMMA; empty when the CRDs are absent).
    pub gamma_routes: Vec<GammaRoute>,
    /// Gateway API ReferenceGrants.
    pub reference_grants: Vec<Input<ReferenceGrantSpec>>,
    /// Ingress gateway inputs (GatewayClasses, Gateways, namespaces' labels,
    /// listener certificate Secrets); empty when the CRDs are absent.
    pub gateway: GatewayInputs,
}

/// What the ingress gateway renderer reads (`render::gateway*`).
#[derive(Debug, Clone, Default)]
pub struct GatewayInputs {
    /// Every GatewayClass (the renderer keeps those with weft's controllerName).
    pub classes: Vec<GatewayClassInput>,
    /// Every Gateway.
    pub gateways: Vec<GatewayInput>,
    /// Labels of every namespace (`allowedRoutes.namespaces.from: Selector`).
    pub namespace_labels: BTreeMap<String, BTreeMap<String, String>>,
    /// `kubernetes.io/tls` Secrets, `(namespace, name)` → whether `tls.crt`
    /// and `tls.key` parse as a PEM certificate chain and private key.
    pub tls_secrets: BTreeMap<(String, String), bool>,
}

/// One GatewayClass.
#[derive(Debug, Clone)]
pub struct GatewayClassInput {
    pub name: String,
    pub generation: Option<i64>,
    pub spec: Result<crate::api::gateway::gateway::GatewayClassSpec, String>,
}

/// One Gateway, with what the cluster says about the objects weft runs for it.
#[derive(Debug, Clone)]
pub struct GatewayInput {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub generation: Option<i64>,
    pub created_ms: Option<i64>,
    pub spec: Result<crate::api::gateway::gateway::GatewaySpec, String>,
    /// ClusterIP of the gateway's Service (`status.addresses`), once it exists.
    pub address: Option<String>,
    /// Ready replicas of the gateway's Deployment.
    pub ready_replicas: i32,
}

/// The Gateway API route kinds weft renders (GAMMA).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RouteKind {
    /// `HTTPRoute`.
    Http,
    /// `GRPCRoute`.
    Grpc,
}

impl RouteKind {
    /// Both kinds.
    pub const ALL: [RouteKind; 2] = [RouteKind::Http, RouteKind::Grpc];

    /// `(version, kind, plural)`.
    pub fn gvk(self) -> (&'static str, &'static str, &'static str) {
        match self {
            RouteKind::Http => crate::api::gateway::HTTP_ROUTE,
            RouteKind::Grpc => crate::api::gateway::GRPC_ROUTE,
        }
    }

    /// The kind name (`HTTPRoute`).
    pub fn name(self) -> &'static str {
        self.gvk().1
    }
}

/// A parsed route spec of either kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteSpec {
    /// An HTTPRoute.
    Http(HttpRouteSpec),
    /// A GRPCRoute.
    Grpc(GrpcRouteSpec),
}

/// One HTTPRoute or GRPCRoute.
#[derive(Debug, Clone)]
pub struct GammaRoute {
    /// Its kind.
    pub kind: RouteKind,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// `metadata.creationTimestamp` in Unix milliseconds (precedence: older first).
    pub created_ms: Option<i64>,
    /// The parsed spec, or the parse error.
    pub spec: Result<RouteSpec, String>,
}

/// Mesh-wide settings with defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshInput {
    /// SPIFFE trust domain.
    pub trust_domain: String,
    /// Inbound authorization mode.
    pub access_mode: AccessMode,
    /// Whether plaintext is accepted inbound.
    pub mtls_mode: MtlsMode,
    /// Namespace the shared service catalog is written to (the mesh's own).
    pub catalog_namespace: String,
}

impl Default for MeshInput {
    fn default() -> Self {
        Self {
            trust_domain: DEFAULT_TRUST_DOMAIN.to_string(),
            access_mode: AccessMode::Smi,
            mtls_mode: MtlsMode::Strict,
            catalog_namespace: DEFAULT_CATALOG_NAMESPACE.to_string(),
        }
    }
}

/// The SMI or weft kinds the operator reports status on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `split.smi-spec.io` TrafficSplit.
    TrafficSplit,
    /// `access.smi-spec.io` TrafficTarget.
    TrafficTarget,
    /// `specs.smi-spec.io` HTTPRouteGroup.
    HttpRouteGroup,
    /// `specs.smi-spec.io` TCPRoute.
    TcpRoute,
    /// `policy.weft.dev` Retry.
    Retry,
    /// `policy.weft.dev` CircuitBreaker.
    CircuitBreaker,
    /// `policy.weft.dev` LoadBalancing.
    LoadBalancing,
    /// `policy.weft.dev` FaultInjection.
    FaultInjection,
    /// `policy.weft.dev` TrafficMirror.
    TrafficMirror,
}

impl Kind {
    /// Every kind, in a fixed order.
    pub const ALL: [Kind; 9] = [
        Kind::TrafficSplit,
        Kind::TrafficTarget,
        Kind::HttpRouteGroup,
        Kind::TcpRoute,
        Kind::Retry,
        Kind::CircuitBreaker,
        Kind::LoadBalancing,
        Kind::FaultInjection,
        Kind::TrafficMirror,
    ];

    /// `(group, storage version, kind, plural)`.
    pub fn gvk(self) -> (&'static str, &'static str, &'static str, &'static str) {
        match self {
            Kind::TrafficSplit => ("split.smi-spec.io", "v1alpha4", "TrafficSplit", "trafficsplits"),
            Kind::TrafficTarget => (
                "access.smi-spec.io",
                "v1alpha3",
                "TrafficTarget",
                "traffictargets",
            ),
            Kind::HttpRouteGroup => (
                "specs.smi-spec.io",
                "v1alpha4",
                "HTTPRouteGroup",
                "httproutegroups",
            ),
            Kind::TcpRoute => ("specs.smi-spec.io", "v1alpha4", "TCPRoute", "tcproutes"),
            Kind::Retry => ("policy.weft.dev", "v1alpha1", "Retry", "retries"),
            Kind::CircuitBreaker => ("policy.weft.dev", "v1alpha1", "CircuitBreaker", "circuitbreakers"),
            Kind::LoadBalancing => ("policy.weft.dev", "v1alpha1", "LoadBalancing", "loadbalancings"),
            Kind::FaultInjection => ("policy.weft.dev", "v1alpha1", "FaultInjection", "faultinjections"),
            Kind::TrafficMirror => ("policy.weft.dev", "v1alpha1", "TrafficMirror", "trafficmirrors"),
        }
    }
}

/// Which object a status report is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    /// Its kind.
    pub kind: Kind,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

/// One SMI/policy object: identity, generation and its parsed spec, or why it
/// could not be read (reported, never fatal).
#[derive(Debug, Clone)]
pub struct Input<T> {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// The parsed spec, or the parse error.
    pub spec: Result<T, String>,
}

impl<T> Input<T> {
    /// A readable object.
    pub fn ok(namespace: &str, name: &str, spec: T) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            generation: Some(1),
            spec: Ok(spec),
        }
    }
}

/// A TrafficTarget, tolerant of v1alpha2 (destination port) and v1alpha3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetInput {
    /// Destination identity `(namespace, serviceaccount)`.
    pub destination: (String, String),
    /// v1alpha2 destination port, if set.
    pub destination_port: Option<u16>,
    /// Source identities `(namespace, serviceaccount)`.
    pub sources: Vec<(String, String)>,
    /// Rules.
    pub rules: Vec<TargetRule>,
}

/// One TrafficTarget rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetRule {
    /// `HTTPRouteGroup`, `TCPRoute` or `UDPRoute`.
    pub kind: String,
    /// Route object name (in the TrafficTarget's namespace).
    pub name: String,
    /// Match names (absent = all).
    pub matches: Option<Vec<String>>,
}

/// A Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInfo {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// ClusterIPs (empty for headless).
    pub cluster_ips: Vec<IpAddr>,
    /// TCP ports.
    pub ports: Vec<ServicePortInfo>,
}

/// A Service port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePortInfo {
    /// Port name (`None` or empty for a single unnamed port).
    pub name: Option<String>,
    /// Service port number.
    pub port: u16,
    /// `appProtocol`.
    pub app_protocol: Option<String>,
}

/// An EndpointSlice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceInfo {
    /// Namespace.
    pub namespace: String,
    /// Service it belongs to (`kubernetes.io/service-name` label).
    pub service: String,
    /// Ports (name must equal the service port name).
    pub ports: Vec<SlicePortInfo>,
    /// Endpoints.
    pub endpoints: Vec<SliceEndpoint>,
}

/// An EndpointSlice port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlicePortInfo {
    /// Name (matches the service port name).
    pub name: Option<String>,
    /// Target port number.
    pub port: u16,
}

/// An EndpointSlice endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceEndpoint {
    /// Addresses.
    pub addresses: Vec<IpAddr>,
    /// `conditions.ready` (absent = ready).
    pub ready: bool,
    /// Zone.
    pub zone: Option<String>,
    /// Pod name from `targetRef` (kind Pod).
    pub pod: Option<String>,
}

/// A meshed pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInfo {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// ServiceAccount (`default` if unset).
    pub service_account: String,
    /// Pod IPs (may be empty before scheduling).
    pub ips: Vec<IpAddr>,
    /// TCP container ports of app containers (not the mesh's own).
    pub ports: Vec<ContainerPortInfo>,
}

/// A container port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerPortInfo {
    /// Port name.
    pub name: Option<String>,
    /// Port number.
    pub port: u16,
}

/// A ServiceAccount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccountInfo {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID (for owner references).
    pub uid: String,
}

/// `spiffe://<td>/ns/<ns>/sa/<sa>`.
pub fn spiffe_id(trust_domain: &str, namespace: &str, service_account: &str) -> String {
    format!("spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    /// The shipped ClusterRole lets the controller watch every kind it reports
    /// on and write their status (the controller watches [`Kind::ALL`]).
    #[test]
    fn rbac_covers_every_kind_and_its_status() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/10-rbac.yaml");
        let text = std::fs::read_to_string(path).unwrap();
        let mut granted: Vec<(String, Vec<String>)> = Vec::new();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v = serde_json::Value::deserialize(doc).unwrap();
            for rule in v["rules"].as_array().into_iter().flatten() {
                let verbs: Vec<String> = rule["verbs"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect();
                for r in rule["resources"].as_array().into_iter().flatten() {
                    granted.push((r.as_str().unwrap_or_default().to_string(), verbs.clone()));
                }
            }
        }
        let has = |resource: &str, verb: &str| {
            granted
                .iter()
                .any(|(r, verbs)| r == resource && verbs.iter().any(|v| v == verb))
        };
        for kind in Kind::ALL {
            let plural = kind.gvk().3;
            assert!(has(plural, "watch") && has(plural, "list"), "{plural}");
            assert!(has(&format!("{plural}/status"), "patch"), "{plural}/status");
        }
        for kind in RouteKind::ALL {
            let plural = kind.gvk().2;
            assert!(has(plural, "watch") && has(plural, "list"), "{plural}");
            assert!(has(&format!("{plural}/status"), "update"), "{plural}/status");
        }
        assert!(has("referencegrants", "watch") && has("referencegrants", "list"));
    }
}
