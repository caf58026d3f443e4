//! Outbound discovery: every Service as the proxy sees it (ClusterIPs, ports with
//! protocol hints, endpoints with readiness, zone, pod and peer identity). The
//! result is shared by every identity's config before per-identity policies and
//! scoping are applied.

use crate::operator::state::{ClusterState, PodInfo, ServiceInfo, SliceInfo, spiffe_id};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use weft_proxy_config::{Endpoint, LoadBalancer, Protocol, Service, ServicePort};

/// Lookup tables over a [`ClusterState`].
#[derive(Debug)]
pub struct Index<'a> {
    /// Services by `namespace/name`.
    pub services: BTreeMap<String, &'a ServiceInfo>,
    /// Meshed pods by `(namespace, name)`.
    pub pods: HashMap<(&'a str, &'a str), &'a PodInfo>,
    /// Meshed pods by IP.
    pub pods_by_ip: HashMap<IpAddr, &'a PodInfo>,
    slices: HashMap<(&'a str, &'a str), Vec<&'a SliceInfo>>,
}

/// `namespace/name`.
pub fn svc_key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

impl<'a> Index<'a> {
    /// Builds the tables.
    pub fn new(state: &'a ClusterState) -> Self {
        let services = state
            .services
            .iter()
            .map(|s| (svc_key(&s.namespace, &s.name), s))
            .collect();
        // A gateway pod is meshed as a caller only: it has no inbound mTLS
        // listener, so its endpoints carry no identity and callers reach its
        // listeners as they are (plaintext HTTP or their own TLS).
        let gateway_ids: HashSet<(&str, String)> = state
            .gateway
            .gateways
            .iter()
            .map(|g| (g.namespace.as_str(), super::gateway::gateway_object_name(&g.name)))
            .collect();
        let mesh_side = || {
            state
                .meshed_pods
                .iter()
                .filter(|p| !gateway_ids.contains(&(p.namespace.as_str(), p.service_account.clone())))
        };
        let pods = mesh_side()
            .map(|p| ((p.namespace.as_str(), p.name.as_str()), p))
            .collect();
        let pods_by_ip = mesh_side()
            .flat_map(|p| p.ips.iter().map(move |ip| (*ip, p)))
            .collect();
        let mut slices: HashMap<(&str, &str), Vec<&SliceInfo>> = HashMap::new();
        for s in &state.endpoint_slices {
            slices
                .entry((s.namespace.as_str(), s.service.as_str()))
                .or_default()
                .push(s);
        }
        Self {
            services,
            pods,
            pods_by_ip,
            slices,
        }
    }
}

/// Protocol hint from `appProtocol`, else from the port name (`http`, `http-web`,
/// `grpc-api`, ...; the part before the first `-`).
pub fn protocol_hint(app_protocol: Option<&str>, name: Option<&str>) -> Protocol {
    let by_word = |w: &str| match w.to_ascii_lowercase().as_str() {
        "http" | "http1" | "kubernetes.io/ws" | "kubernetes.io/wss" => Some(Protocol::Http1),
        "http2" | "h2c" | "kubernetes.io/h2c" => Some(Protocol::Http2),
        "grpc" | "grpc-web" => Some(Protocol::Grpc),
        "tcp" | "tls" | "https" | "mongo" | "mysql" | "redis" => Some(Protocol::Tcp),
        _ => None,
    };
    if let Some(p) = app_protocol.and_then(by_word) {
        return p;
    }
    name.and_then(|n| by_word(n.split('-').next().unwrap_or(n)))
        .unwrap_or(Protocol::Detect)
}

fn same_name(a: Option<&str>, b: Option<&str>) -> bool {
    a.unwrap_or("") == b.unwrap_or("")
}

/// The SPIFFE ID of the meshed pod behind an endpoint, if any.
fn endpoint_pod<'a>(
    index: &Index<'a>,
    namespace: &str,
    pod: Option<&str>,
    ip: IpAddr,
) -> Option<&'a PodInfo> {
    pod.and_then(|name| index.pods.get(&(namespace, name)).copied())
        .or_else(|| {
            index
                .pods_by_ip
                .get(&ip)
                .copied()
                .filter(|p| p.namespace == namespace)
        })
}

/// Every Service with its endpoints, keyed by `namespace/name`.
pub fn build(index: &Index<'_>, trust_domain: &str) -> BTreeMap<String, Service> {
    index
        .services
        .iter()
        .map(|(key, svc)| {
            let slices = index.slices.get(&(svc.namespace.as_str(), svc.name.as_str()));
            let mut ports: Vec<ServicePort> = Vec::with_capacity(svc.ports.len());
            let mut sorted: Vec<_> = svc.ports.iter().collect();
            sorted.sort_by_key(|p| p.port);
            sorted.dedup_by_key(|p| p.port);
            for sp in sorted {
                let mut endpoints = Vec::new();
                for slice in slices.into_iter().flatten() {
                    for port in slice
                        .ports
                        .iter()
                        .filter(|p| same_name(p.name.as_deref(), sp.name.as_deref()))
                    {
                        for ep in &slice.endpoints {
                            for ip in &ep.addresses {
                                let pod = endpoint_pod(index, &svc.namespace, ep.pod.as_deref(), *ip);
                                endpoints.push(Endpoint {
                                    ip: *ip,
                                    port: port.port,
                                    ready: ep.ready,
                                    zone: ep.zone.clone(),
                                    identity: pod
                                        .map(|p| spiffe_id(trust_domain, &p.namespace, &p.service_account)),
                                    pod: ep.pod.clone().or_else(|| pod.map(|p| p.name.clone())),
                                });
                            }
                        }
                    }
                }
                endpoints.sort_by(|a, b| (a.ip, a.port, &a.pod).cmp(&(b.ip, b.port, &b.pod)));
                endpoints.dedup_by(|a, b| a.ip == b.ip && a.port == b.port);
                ports.push(ServicePort {
                    port: sp.port,
                    name: sp.name.clone().filter(|n| !n.is_empty()),
                    protocol: protocol_hint(sp.app_protocol.as_deref(), sp.name.as_deref()),
                    endpoints,
                    load_balancer: None,
                });
            }
            let mut cluster_ips = svc.cluster_ips.clone();
            cluster_ips.sort();
            cluster_ips.dedup();
            let service = Service {
                namespace: svc.namespace.clone(),
                name: svc.name.clone(),
                cluster_ips,
                ports,
                load_balancer: LoadBalancer::default(),
                split: None,
                retry: None,
                circuit_breaker: None,
                faults: Default::default(),
                mirrors: Vec::new(),
                routes: Vec::new(),
            };
            (key.clone(), service)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_hints() {
        assert_eq!(
            protocol_hint(Some("kubernetes.io/h2c"), Some("web")),
            Protocol::Http2
        );
        assert_eq!(protocol_hint(Some("grpc"), None), Protocol::Grpc);
        assert_eq!(protocol_hint(None, Some("http")), Protocol::Http1);
        assert_eq!(protocol_hint(None, Some("http-metrics")), Protocol::Http1);
        assert_eq!(protocol_hint(None, Some("grpc-api")), Protocol::Grpc);
        assert_eq!(protocol_hint(None, Some("h2c")), Protocol::Http2);
        assert_eq!(protocol_hint(None, Some("tcp-db")), Protocol::Tcp);
        assert_eq!(protocol_hint(None, Some("web")), Protocol::Detect);
        assert_eq!(protocol_hint(None, None), Protocol::Detect);
        assert_eq!(protocol_hint(Some("custom"), Some("http")), Protocol::Http1);
    }
}
