//! The routing table built from one [`ProxyConfig`]: ClusterIP:port and pod
//! IP:port → [`PortRoute`]; inbound port → protocol and metrics.

use super::gamma::GammaRoutes;
use super::gateway::ListenerRoutes;
use super::matcher::{CompiledMatch, MatchError, any_match, compile_all};
use super::split::WeightedPicker;
use super::traffic::{Faults, MirrorRoute};
use crate::endpoint::{Endpoint, EndpointRegistry};
use crate::lb::Balancer;
use crate::metrics::{HttpMetrics, Metrics, TcpMetrics, labels};
use crate::resilience::{Resilience, ServiceState};
use http::{HeaderMap, Method};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use weft_proxy_config::{
    CircuitBreakerPolicy, Fallback, LoadBalancer, Protocol, ProxyConfig, RetryPolicy, Service,
};

/// Policies the per-request layer (retries, timeouts, breakers) applies to a backend.
#[derive(Debug, Clone, Default)]
pub struct BackendPolicy {
    pub retry: Option<RetryPolicy>,
    pub circuit_breaker: Option<CircuitBreakerPolicy>,
    /// Connect timeout override from the circuit breaker's connection pool.
    pub connect_timeout: Option<Duration>,
    /// Run-time state (budget, breaker, outliers, limits); `None` without policies.
    pub state: Option<Arc<ServiceState>>,
    /// The fallback Service's backend when the breaker is open.
    pub fallback: Option<Arc<Backend>>,
}

/// One backend service port reached through a route.
#[derive(Debug)]
pub struct Backend {
    /// `namespace/name`.
    pub service: Arc<str>,
    pub balancer: Arc<Balancer>,
    pub policy: Arc<BackendPolicy>,
    pub http_metrics: Arc<HttpMetrics>,
    pub tcp_metrics: Arc<TcpMetrics>,
}

impl Backend {
    /// Another handle on the same backend (same balancer, policy and metrics).
    fn clone_shared(&self) -> Self {
        Self {
            service: Arc::clone(&self.service),
            balancer: Arc::clone(&self.balancer),
            policy: Arc::clone(&self.policy),
            http_metrics: Arc::clone(&self.http_metrics),
            tcp_metrics: Arc::clone(&self.tcp_metrics),
        }
    }
}

/// A split attached to a root service port.
#[derive(Debug)]
pub struct SplitRoute {
    /// `namespace/name` of the TrafficSplit.
    pub source: String,
    matches: Vec<CompiledMatch>,
    picker: WeightedPicker,
    backends: Vec<Arc<Backend>>,
}

/// Everything needed to route traffic to one service port.
#[derive(Debug)]
pub struct PortRoute {
    /// `namespace/name` of the service dialled.
    pub service: Arc<str>,
    pub port: u16,
    pub protocol: Protocol,
    /// The root service's own endpoints.
    pub root: Arc<Backend>,
    pub split: Option<SplitRoute>,
    /// Fault injection for requests to this service.
    pub faults: Arc<Faults>,
    /// Copies of requests sent to other services.
    pub mirrors: Arc<[MirrorRoute]>,
    /// Gateway API routes for this port; when present they choose the backend
    /// of every HTTP request instead of the split. Never on pod-IP destinations.
    pub gamma: Option<Arc<GammaRoutes>>,
}

impl PortRoute {
    /// The backend for an HTTP request. Matches see the normalized path (the raw
    /// one when it cannot be normalized: the destination's sidecar refuses it).
    pub fn select_http(&self, method: &Method, path: &str, headers: &HeaderMap) -> &Arc<Backend> {
        let normalized = super::path::normalize(path);
        let path = normalized.as_deref().unwrap_or(path);
        match &self.split {
            Some(s) if s.matches.is_empty() || any_match(&s.matches, method, path, headers) => {
                &s.backends[s.picker.pick()]
            }
            _ => &self.root,
        }
    }

    /// The backend for an opaque connection (split matches are HTTP-only, so a
    /// split with matches never applies to TCP). Gateway API routes are HTTP-only
    /// too: a port with routes sends opaque connections to the service's own
    /// endpoints, ignoring the split as HTTP requests do.
    pub fn select_tcp(&self) -> &Arc<Backend> {
        match &self.split {
            Some(s) if s.matches.is_empty() && self.gamma.is_none() => &s.backends[s.picker.pick()],
            _ => &self.root,
        }
    }
}

/// An inbound port's protocol hint and metrics.
#[derive(Debug)]
pub struct InboundPort {
    pub protocol: Protocol,
    /// App endpoints (pod IP and port) connected through this port, kept so connection
    /// pools to the app outlive single downstream connections. Never shared with the
    /// outbound side's endpoints of the same address: an outbound request must not reuse
    /// a connection the inbound side opened to the app (it would skip inbound policy).
    apps: std::sync::Mutex<HashMap<SocketAddr, Arc<Endpoint>>>,
    pub http_metrics: Arc<HttpMetrics>,
    pub tcp_metrics: Arc<TcpMetrics>,
}

/// App endpoints one inbound port keeps (the default port serves any port, so a port
/// scan must not grow the map without bound).
const MAX_APP_ENDPOINTS: usize = 64;

impl InboundPort {
    /// The app endpoint at `addr` (the address the peer dialled, with the app port).
    pub fn app_at(&self, addr: SocketAddr) -> Arc<Endpoint> {
        let mut apps = self.apps.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(ep) = apps.get(&addr) {
            return Arc::clone(ep);
        }
        if apps.len() >= MAX_APP_ENDPOINTS {
            apps.clear();
        }
        let ep = Arc::new(Endpoint::new(addr, None));
        apps.insert(addr, Arc::clone(&ep));
        ep
    }
}

/// The whole routing table.
#[derive(Debug)]
pub struct RouteTable {
    by_addr: HashMap<SocketAddr, Arc<PortRoute>>,
    inbound: HashMap<u16, Arc<InboundPort>>,
    inbound_default: Arc<InboundPort>,
    /// Metrics for connections to destinations unknown to the mesh.
    pub passthrough: Arc<TcpMetrics>,
    /// Gateway listeners' routes by listener name (gateway mode only).
    gateway: HashMap<String, Arc<ListenerRoutes>>,
}

/// Error building a table.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Match(#[from] MatchError),
}

pub(super) struct Builder<'a> {
    pub(super) cfg: &'a ProxyConfig,
    registry: &'a EndpointRegistry,
    pub(super) metrics: &'a Metrics,
    resilience: &'a Resilience,
    balancers: HashMap<(&'a str, u16), Arc<Balancer>>,
}

impl<'a> Builder<'a> {
    /// The shared balancer of a service port (ready endpoints only).
    pub(super) fn balancer(&mut self, key: &'a str, svc: &'a Service, port: u16) -> Arc<Balancer> {
        if let Some(b) = self.balancers.get(&(key, port)) {
            return Arc::clone(b);
        }
        let endpoints = svc
            .ports
            .iter()
            .filter(|p| p.port == port)
            .flat_map(|p| p.endpoints.iter())
            .filter(|e| e.ready)
            .map(|e| {
                self.registry
                    .get(SocketAddr::new(e.ip, e.port), e.identity.as_deref())
            })
            .collect();
        // A port's own balancer overrides the service's (LoadBalancing per port).
        let kind = svc
            .ports
            .iter()
            .find(|p| p.port == port)
            .and_then(|p| p.load_balancer.as_ref())
            .unwrap_or(&svc.load_balancer);
        let b = Arc::new(Balancer::new(kind, endpoints));
        self.balancers.insert((key, port), Arc::clone(&b));
        b
    }

    pub(super) fn backend(
        &mut self,
        root: &Service,
        port: u16,
        key: &'a str,
        svc: &'a Service,
        bal: Arc<Balancer>,
        with_fallback: bool,
    ) -> Backend {
        let authority = format!("{}.{}.svc.cluster.local:{port}", root.name, root.namespace);
        let http = labels(&[
            ("direction", "outbound"),
            ("authority", &authority),
            ("dst_namespace", &svc.namespace),
            ("dst_service", &svc.name),
        ]);
        let tcp = labels(&[
            ("direction", "outbound"),
            ("dst_namespace", &svc.namespace),
            ("dst_service", &svc.name),
        ]);
        let fallback = match svc.circuit_breaker.as_ref().and_then(|c| c.fallback.as_ref()) {
            Some(Fallback::Service { service }) if with_fallback => {
                self.cfg.services.get_key_value(service).and_then(|(fkey, fsvc)| {
                    let fport = fsvc
                        .ports
                        .iter()
                        .find(|p| p.port == port)
                        .or(fsvc.ports.first())?
                        .port;
                    let bal = self.balancer(fkey.as_str(), fsvc, fport);
                    Some(Arc::new(self.backend(
                        fsvc,
                        fport,
                        fkey.as_str(),
                        fsvc,
                        bal,
                        false,
                    )))
                })
            }
            _ => None,
        };
        let policy = BackendPolicy {
            retry: svc.retry.clone(),
            circuit_breaker: svc.circuit_breaker.clone(),
            connect_timeout: svc
                .circuit_breaker
                .as_ref()
                .and_then(|c| c.connection_pool.as_ref())
                .and_then(|p| p.connect_timeout_ms)
                .map(Duration::from_millis),
            state: self
                .resilience
                .get(key, svc.retry.as_ref(), svc.circuit_breaker.as_ref()),
            fallback,
        };
        Backend {
            service: Arc::from(key),
            balancer: bal,
            policy: Arc::new(policy),
            http_metrics: self.metrics.http(http),
            tcp_metrics: self.metrics.tcp(tcp),
        }
    }

    fn port_route(
        &mut self,
        key: &'a str,
        svc: &'a Service,
        port: u16,
        protocol: Protocol,
    ) -> Result<PortRoute, BuildError> {
        let bal = self.balancer(key, svc, port);
        let root = Arc::new(self.backend(svc, port, key, svc, bal, true));
        let mut split = None;
        if let Some(s) = &svc.split {
            let mut weights = Vec::new();
            let mut backends = Vec::new();
            for b in &s.backends {
                let Some((bkey, bsvc)) = self.cfg.services.get_key_value(&b.service) else {
                    continue;
                };
                // SMI: a backend without the root's port receives no traffic.
                if b.weight == 0 || !bsvc.ports.iter().any(|p| p.port == port) {
                    continue;
                }
                let bal = self.balancer(bkey.as_str(), bsvc, port);
                backends.push(Arc::new(self.backend(svc, port, bkey.as_str(), bsvc, bal, true)));
                weights.push(b.weight);
            }
            if let Some(picker) = WeightedPicker::new(&weights) {
                split = Some(SplitRoute {
                    source: s.source.clone(),
                    matches: compile_all(&s.matches)?,
                    picker,
                    backends,
                });
            }
        }
        Ok(PortRoute {
            service: Arc::from(key),
            port,
            protocol,
            root,
            split,
            faults: Arc::new(Faults::compile(key, &svc.faults, self.metrics)?),
            mirrors: self.mirrors(svc, port).into(),
            gamma: self.gamma(key, svc, port).map(Arc::new),
        })
    }
}

impl RouteTable {
    /// Builds the table for `cfg`, interning endpoints in `registry`.
    pub fn build(
        cfg: &ProxyConfig,
        registry: &EndpointRegistry,
        metrics: &Metrics,
        resilience: &Resilience,
    ) -> Result<Self, BuildError> {
        let mut b = Builder {
            cfg,
            registry,
            metrics,
            resilience,
            balancers: HashMap::new(),
        };
        let mut by_addr = HashMap::new();
        for (key, svc) in &cfg.services {
            for sp in &svc.ports {
                let route = Arc::new(b.port_route(key.as_str(), svc, sp.port, sp.protocol)?);
                for ip in &svc.cluster_ips {
                    by_addr.insert(SocketAddr::new(*ip, sp.port), Arc::clone(&route));
                }
                // Pod-IP destinations (headless services, direct pod calls) go to
                // that endpoint only; they share the service port's policy, metrics
                // and name (built once: a service may have thousands of endpoints).
                let mut shared: Option<Backend> = None;
                for ep in &sp.endpoints {
                    let addr = SocketAddr::new(ep.ip, ep.port);
                    if by_addr.contains_key(&addr) {
                        continue;
                    }
                    let one = b.registry.get(addr, ep.identity.as_deref());
                    let bal = Arc::new(Balancer::new(&LoadBalancer::RoundRobin, vec![one]));
                    let root = match &shared {
                        Some(s) => Backend {
                            service: Arc::clone(&s.service),
                            balancer: bal,
                            policy: Arc::clone(&s.policy),
                            http_metrics: Arc::clone(&s.http_metrics),
                            tcp_metrics: Arc::clone(&s.tcp_metrics),
                        },
                        None => {
                            let first = b.backend(svc, sp.port, key.as_str(), svc, bal, true);
                            shared.insert(first).clone_shared()
                        }
                    };
                    let pod = PortRoute {
                        service: Arc::clone(&root.service),
                        port: ep.port,
                        protocol: sp.protocol,
                        root: Arc::new(root),
                        split: None,
                        faults: Arc::clone(&route.faults),
                        mirrors: Arc::clone(&route.mirrors),
                        // A request sent straight to a pod IP bypasses routes.
                        gamma: None,
                    };
                    by_addr.insert(addr, Arc::new(pod));
                }
            }
        }
        let gateway = b.gateway();
        let inbound_port = |port: Option<u16>, protocol| {
            let p = port.map(|p| p.to_string());
            let mut l = vec![("direction", "inbound")];
            if let Some(p) = &p {
                l.push(("target_port", p.as_str()));
            }
            Arc::new(InboundPort {
                protocol,
                apps: std::sync::Mutex::default(),
                http_metrics: metrics.http(labels(&l)),
                tcp_metrics: metrics.tcp(labels(&l)),
            })
        };
        let inbound = cfg
            .inbound
            .ports
            .iter()
            .map(|p| (p.port, inbound_port(Some(p.port), p.protocol)))
            .collect();
        Ok(Self {
            by_addr,
            inbound,
            inbound_default: inbound_port(None, Protocol::Detect),
            passthrough: metrics.tcp(labels(&[("direction", "outbound"), ("dst_service", "")])),
            gateway,
        })
    }

    /// The route for an original destination, `None` if unknown to the mesh.
    pub fn outbound(&self, dst: &SocketAddr) -> Option<&Arc<PortRoute>> {
        self.by_addr.get(dst)
    }

    /// The routes of gateway listener `name`.
    pub fn gateway_listener(&self, name: &str) -> Option<&Arc<ListenerRoutes>> {
        self.gateway.get(name)
    }

    /// The inbound settings for a local port.
    pub fn inbound(&self, port: u16) -> &Arc<InboundPort> {
        self.inbound.get(&port).unwrap_or(&self.inbound_default)
    }
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
