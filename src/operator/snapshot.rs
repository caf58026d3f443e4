//! Conversion of cached Kubernetes objects into the renderer's plain
//! [`ClusterState`]. SMI and policy objects arrive as `DynamicObject`s (read at
//! their storage version) and are parsed one by one, so an unreadable object
//! becomes an `Err` input that is reported, never a failed watch.

use super::state::*;
use crate::api::access::v1alpha2::TrafficTargetSpec;
use crate::api::balancing::LoadBalancingSpec;
use crate::api::fault::FaultInjectionSpec;
use crate::api::mesh::{AccessMode as ApiAccess, MeshConfigSpec, MtlsMode as ApiMtls};
use crate::api::mirror::TrafficMirrorSpec;
use crate::api::policy::{CircuitBreakerSpec, RetrySpec};
use crate::api::specs::v1alpha4::{HTTPRouteGroupSpec, TCPRouteSpec};
use crate::api::split::SplitView;
use k8s_openapi::api::core::v1::{Container, Namespace, Pod, Service, ServiceAccount};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::DynamicObject;
use serde::de::DeserializeOwned;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use weft_proxy_config::{AccessMode, MtlsMode};

/// Pod annotation marking injected (meshed) pods.
pub const ANN_INJECTED: &str = "weft.dev/injected";
/// Namespace label opting a namespace into the mesh (the webhook's `namespaceSelector`).
pub const LABEL_INJECT: &str = "weft.dev/inject";
/// The sidecar container a meshed pod must have.
pub const PROXY_CONTAINER: &str = "weft-proxy";
/// The ingress gateway pod's container: the proxy of a gateway pod (which has no sidecar).
pub const GATEWAY_CONTAINER: &str = crate::webhook::names::GATEWAY_CONTAINER;
/// Containers the mesh adds to pods (their ports are not the app's).
pub const MESH_CONTAINERS: [&str; 3] = ["weft-proxy", "weft-init", GATEWAY_CONTAINER];
/// Default workload certificate lifetime.
pub const DEFAULT_CERT_VALIDITY: Duration = Duration::from_secs(24 * 3600);

fn port(p: i32) -> Option<u16> {
    u16::try_from(p).ok().filter(|p| *p > 0)
}

/// A Service, unless it is an ExternalName service.
pub fn service(s: &Service) -> Option<ServiceInfo> {
    let spec = s.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    let mut ips: Vec<String> = spec.cluster_ips.clone().unwrap_or_default();
    ips.extend(spec.cluster_ip.clone());
    let cluster_ips = ips.iter().filter_map(|i| i.parse::<IpAddr>().ok()).collect();
    let ports = spec
        .ports
        .iter()
        .flatten()
        .filter(|p| p.protocol.as_deref().unwrap_or("TCP") == "TCP")
        .filter_map(|p| {
            Some(ServicePortInfo {
                name: p.name.clone(),
                port: port(p.port)?,
                app_protocol: p.app_protocol.clone(),
            })
        })
        .collect();
    Some(ServiceInfo {
        namespace: s.metadata.namespace.clone()?,
        name: s.metadata.name.clone()?,
        cluster_ips,
        ports,
    })
}

/// An EndpointSlice tied to a service.
pub fn slice(s: &EndpointSlice) -> Option<SliceInfo> {
    let service = s
        .metadata
        .labels
        .as_ref()?
        .get("kubernetes.io/service-name")?
        .clone();
    let ports = s
        .ports
        .iter()
        .flatten()
        .filter(|p| p.protocol.as_deref().unwrap_or("TCP") == "TCP")
        .filter_map(|p| {
            Some(SlicePortInfo {
                name: p.name.clone(),
                port: port(p.port?)?,
            })
        })
        .collect();
    let endpoints = s
        .endpoints
        .iter()
        .map(|e| SliceEndpoint {
            addresses: e.addresses.iter().filter_map(|a| a.parse().ok()).collect(),
            ready: e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true),
            zone: e.zone.clone(),
            pod: e
                .target_ref
                .as_ref()
                .filter(|r| r.kind.as_deref() == Some("Pod"))
                .and_then(|r| r.name.clone()),
        })
        .collect();
    Some(SliceInfo {
        namespace: s.metadata.namespace.clone()?,
        service,
        ports,
        endpoints,
    })
}

fn app_ports(containers: &[Container], out: &mut Vec<ContainerPortInfo>) {
    for c in containers
        .iter()
        .filter(|c| !MESH_CONTAINERS.contains(&c.name.as_str()))
    {
        for p in c.ports.iter().flatten() {
            if p.protocol.as_deref().unwrap_or("TCP") == "TCP"
                && let Some(n) = port(p.container_port)
            {
                out.push(ContainerPortInfo {
                    name: p.name.clone(),
                    port: n,
                });
            }
        }
    }
}

/// Whether a namespace opted into the mesh (label `weft.dev/inject=enabled`).
pub fn meshed_namespace(ns: &Namespace) -> Option<String> {
    let enabled = ns.metadata.labels.as_ref()?.get(LABEL_INJECT)? == "enabled";
    enabled.then(|| ns.metadata.name.clone()).flatten()
}

/// A meshed pod: annotation [`ANN_INJECTED`] *and* the sidecar container (or, for an
/// ingress gateway pod, the [`GATEWAY_CONTAINER`]; the annotation alone can be written
/// by anyone who creates pods), not finished. The namespace is checked by [`cluster_state`].
pub fn meshed_pod(p: &Pod) -> Option<PodInfo> {
    p.metadata.annotations.as_ref()?.get(ANN_INJECTED)?;
    let has_sidecar = p.spec.as_ref().is_some_and(|s| {
        s.containers
            .iter()
            .chain(s.init_containers.iter().flatten())
            .any(|c| c.name == PROXY_CONTAINER || c.name == GATEWAY_CONTAINER)
    });
    if !has_sidecar {
        return None;
    }
    let status = p.status.as_ref();
    if matches!(
        status.and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    ) {
        return None;
    }
    let spec = p.spec.as_ref()?;
    let mut ips: Vec<IpAddr> = status
        .and_then(|s| s.pod_ips.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.parse().ok())
        .collect();
    ips.extend(
        status
            .and_then(|s| s.pod_ip.as_ref())
            .and_then(|i| i.parse::<IpAddr>().ok()),
    );
    ips.sort();
    ips.dedup();
    let mut ports = Vec::new();
    app_ports(&spec.containers, &mut ports);
    let sidecars: Vec<Container> = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"))
        .cloned()
        .collect();
    app_ports(&sidecars, &mut ports);
    Some(PodInfo {
        namespace: p.metadata.namespace.clone()?,
        name: p.metadata.name.clone()?,
        service_account: spec
            .service_account_name
            .clone()
            .unwrap_or_else(|| "default".into()),
        ips,
        ports,
    })
}

/// A ServiceAccount.
pub fn service_account(sa: &ServiceAccount) -> Option<ServiceAccountInfo> {
    Some(ServiceAccountInfo {
        namespace: sa.metadata.namespace.clone()?,
        name: sa.metadata.name.clone()?,
        uid: sa.metadata.uid.clone()?,
    })
}

fn spec_of<T: DeserializeOwned>(o: &DynamicObject) -> Result<T, String> {
    let spec = o.data.get("spec").cloned().unwrap_or(serde_json::Value::Null);
    serde_json::from_value(spec).map_err(|e| format!("spec is unreadable: {e}"))
}

fn input<T>(o: &DynamicObject, spec: Result<T, String>) -> Option<Input<T>> {
    Some(Input {
        namespace: o.metadata.namespace.clone()?,
        name: o.metadata.name.clone()?,
        generation: o.metadata.generation,
        spec,
    })
}

/// A TrafficSplit of any served version.
pub fn split(o: &DynamicObject) -> Option<Input<SplitView>> {
    let spec = o.data.get("spec").cloned().unwrap_or(serde_json::Value::Null);
    input(o, SplitView::from_spec(&spec).map_err(|e| e.to_string()))
}

/// A TrafficTarget (v1alpha2 or v1alpha3 shape).
pub fn traffic_target(o: &DynamicObject) -> Option<Input<TargetInput>> {
    let ns = o.metadata.namespace.clone()?;
    let parsed = spec_of::<TrafficTargetSpec>(o).and_then(|t| {
        let subject = |kind: &str, name: &str, n: &Option<String>| {
            if kind != "ServiceAccount" {
                return Err(format!("kind {kind:?} is not supported (ServiceAccount only)"));
            }
            Ok((n.clone().unwrap_or_else(|| ns.clone()), name.to_string()))
        };
        let d = &t.destination;
        Ok(TargetInput {
            destination: subject(&d.kind, &d.name, &d.namespace)?,
            destination_port: d.port,
            sources: t
                .sources
                .iter()
                .map(|s| subject(&s.kind, &s.name, &s.namespace))
                .collect::<Result<_, _>>()?,
            rules: t
                .rules
                .iter()
                .map(|r| TargetRule {
                    kind: r.kind.clone(),
                    name: r.name.clone(),
                    matches: r.matches.clone(),
                })
                .collect(),
        })
    });
    input(o, parsed)
}

/// An HTTPRouteGroup.
pub fn route_group(o: &DynamicObject) -> Option<Input<Vec<crate::api::specs::HttpMatch>>> {
    input(o, spec_of::<HTTPRouteGroupSpec>(o).map(|s| s.matches))
}

/// A TCPRoute.
pub fn tcp_route(o: &DynamicObject) -> Option<Input<Vec<u16>>> {
    input(
        o,
        spec_of::<TCPRouteSpec>(o).map(|s| s.matches.map(|m| m.ports).unwrap_or_default()),
    )
}

/// A Retry.
pub fn retry(o: &DynamicObject) -> Option<Input<RetrySpec>> {
    input(o, spec_of(o))
}

/// A CircuitBreaker.
pub fn circuit_breaker(o: &DynamicObject) -> Option<Input<CircuitBreakerSpec>> {
    input(o, spec_of(o))
}

/// A LoadBalancing.
pub fn load_balancing(o: &DynamicObject) -> Option<Input<LoadBalancingSpec>> {
    input(o, spec_of(o))
}

/// A FaultInjection.
pub fn fault_injection(o: &DynamicObject) -> Option<Input<FaultInjectionSpec>> {
    input(o, spec_of(o))
}

/// A TrafficMirror.
pub fn traffic_mirror(o: &DynamicObject) -> Option<Input<TrafficMirrorSpec>> {
    input(o, spec_of(o))
}

/// Mesh settings and certificate lifetime from the MeshConfig (defaults if absent
/// or unreadable).
pub fn mesh(o: Option<&DynamicObject>) -> (MeshInput, Duration) {
    let spec: MeshConfigSpec = o.and_then(|o| spec_of(o).ok()).unwrap_or_default();
    let mesh = MeshInput {
        trust_domain: spec
            .trust_domain
            .clone()
            .unwrap_or_else(|| DEFAULT_TRUST_DOMAIN.into()),
        access_mode: match spec.access_mode {
            Some(ApiAccess::Permissive) => AccessMode::Permissive,
            _ => AccessMode::Smi,
        },
        mtls_mode: match spec.mtls_mode {
            Some(ApiMtls::Permissive) => MtlsMode::Permissive,
            _ => MtlsMode::Strict,
        },
        ..MeshInput::default()
    };
    let validity = spec
        .certificate_validity
        .and_then(|d| d.to_millis().ok())
        .filter(|ms| *ms >= 1000)
        .map(Duration::from_millis)
        .unwrap_or(DEFAULT_CERT_VALIDITY);
    (mesh, validity)
}

/// The cached objects the renderer reads.
#[derive(Debug, Default)]
pub struct Caches {
    /// Services.
    pub services: Vec<Arc<Service>>,
    /// EndpointSlices.
    pub slices: Vec<Arc<EndpointSlice>>,
    /// Pods.
    pub pods: Vec<Arc<Pod>>,
    /// ServiceAccounts.
    pub service_accounts: Vec<Arc<ServiceAccount>>,
    /// Dynamic objects per kind, in [`Kind::ALL`] order.
    pub objects: Vec<(Kind, Vec<Arc<DynamicObject>>)>,
    /// MeshConfig objects.
    pub mesh_configs: Vec<Arc<DynamicObject>>,
    /// Namespaces: all of them (their labels feed the gateways' `allowedRoutes`
    /// selectors); only those labelled `weft.dev/inject=enabled` are meshed.
    pub namespaces: Vec<Arc<Namespace>>,
    /// Gateway API routes per kind (empty without the Gateway API CRDs).
    pub gamma_routes: Vec<(RouteKind, Vec<Arc<DynamicObject>>)>,
    /// Gateway API ReferenceGrants.
    pub reference_grants: Vec<Arc<DynamicObject>>,
    /// Ingress gateway inputs (GatewayClasses, Gateways, TLS Secrets, the gateways'
    /// Deployments); see [`super::snapshot_gateway`].
    pub gateway: super::snapshot_gateway::GatewayCaches,
}

/// Builds the render input and the certificate lifetime.
pub fn cluster_state(c: &Caches) -> (ClusterState, Duration) {
    let mesh_obj = c
        .mesh_configs
        .iter()
        .find(|m| m.metadata.name.as_deref() == Some(crate::api::mesh::MESH_CONFIG_NAME));
    let (mesh, validity) = mesh(mesh_obj.map(|m| m.as_ref()));
    let meshed_namespaces: std::collections::HashSet<String> =
        c.namespaces.iter().filter_map(|n| meshed_namespace(n)).collect();
    let mut st = ClusterState {
        mesh,
        services: c.services.iter().filter_map(|s| service(s)).collect(),
        endpoint_slices: c.slices.iter().filter_map(|s| slice(s)).collect(),
        // Only pods of opted-in namespaces become identities and endpoints.
        meshed_pods: c
            .pods
            .iter()
            .filter_map(|p| meshed_pod(p))
            .filter(|p| meshed_namespaces.contains(&p.namespace))
            .collect(),
        service_accounts: c
            .service_accounts
            .iter()
            .filter_map(|s| service_account(s))
            .collect(),
        ..ClusterState::default()
    };
    for (kind, objs) in &c.objects {
        for o in objs {
            match kind {
                Kind::TrafficSplit => st.splits.extend(split(o)),
                Kind::TrafficTarget => st.traffic_targets.extend(traffic_target(o)),
                Kind::HttpRouteGroup => st.route_groups.extend(route_group(o)),
                Kind::TcpRoute => st.tcp_routes.extend(tcp_route(o)),
                Kind::Retry => st.retries.extend(retry(o)),
                Kind::CircuitBreaker => st.circuit_breakers.extend(circuit_breaker(o)),
                Kind::LoadBalancing => st.load_balancings.extend(load_balancing(o)),
                Kind::FaultInjection => st.fault_injections.extend(fault_injection(o)),
                Kind::TrafficMirror => st.traffic_mirrors.extend(traffic_mirror(o)),
            }
        }
    }
    for (kind, objs) in &c.gamma_routes {
        st.gamma_routes
            .extend(objs.iter().filter_map(|o| gamma_route(*kind, o)));
    }
    st.reference_grants = c
        .reference_grants
        .iter()
        .filter_map(|o| input(o, spec_of(o)))
        .collect();
    st.gateway = super::snapshot_gateway::inputs(&c.gateway, &c.namespaces, &c.services);
    (st, validity)
}

/// An HTTPRoute or GRPCRoute.
pub fn gamma_route(kind: RouteKind, o: &DynamicObject) -> Option<GammaRoute> {
    let spec = match kind {
        RouteKind::Http => spec_of(o).map(RouteSpec::Http),
        RouteKind::Grpc => spec_of(o).map(RouteSpec::Grpc),
    };
    Some(GammaRoute {
        kind,
        namespace: o.metadata.namespace.clone()?,
        name: o.metadata.name.clone()?,
        generation: o.metadata.generation,
        created_ms: o
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.as_millisecond()),
        spec,
    })
}

#[cfg(test)]
#[path = "snapshot_read_tests.rs"]
mod tests;
