//! Ingress gateways: for every `Gateway` of a `GatewayClass` with weft's
//! controllerName (`weft.dev/gateway`), the listeners weft accepts, the routes
//! attached to them ([`super::gateway_routes`]), the objects the operator runs
//! for it (ServiceAccount / Deployment / Service `weft-gateway-<name>`, the TLS
//! Secret copy) and the GatewayClass / Gateway / Listener status. Pure; the
//! apply side (`operator::apply::gateway*`) writes what this plans. See
//! docs/gateway.md.
//!
//! Representation choices: a listener certificate is named
//! `<secret-namespace>.<secret-name>` (keys `<name>.crt` / `<name>.key` in the
//! copy Secret); only listeners that are accepted, have every reference
//! resolved and are not conflicted go into [`GatewayConfig::listeners`]. Route
//! backends that do not resolve stay in their entry with `service: None` (the
//! proxy answers `500` for requests picked for them, as the Gateway API asks).
//! Listener validation lives in [`super::gateway_listeners`].

use super::gamma::{ParentReport, RouteKey};
use super::gateway_listeners::{self as gl, Checked};
use super::gateway_routes::{self, ListenerView};
use super::report::CondValue;
use crate::api::gateway::gateway::{GATEWAY_CONTROLLER_NAME, GatewaySpec, RouteGroupKind};
use crate::operator::state::{ClusterState, GatewayClassInput, GatewayInput};
use std::collections::BTreeMap;
use weft_proxy_config::{GatewayConfig, GatewayListener, ListenerProtocol, Service};

/// Condition reasons of GatewayClasses, Gateways and listeners (Gateway API).
pub mod reason {
    /// Class, Gateway or listener accepted.
    pub const ACCEPTED: &str = "Accepted";
    /// Gateway or listener programmed.
    pub const PROGRAMMED: &str = "Programmed";
    /// The Gateway's proxy is not ready or has no address yet.
    pub const PENDING: &str = "Pending";
    /// A listener cannot be served as written.
    pub const INVALID: &str = "Invalid";
    /// One or more listeners are invalid (the valid ones are still served).
    pub const LISTENERS_NOT_VALID: &str = "ListenersNotValid";
    /// `spec.addresses` was requested; weft assigns the Service's ClusterIP.
    pub const UNSUPPORTED_ADDRESS: &str = "UnsupportedAddress";
    /// A listener protocol weft does not serve.
    pub const UNSUPPORTED_PROTOCOL: &str = "UnsupportedProtocol";
    /// A listener field value weft cannot serve.
    pub const UNSUPPORTED_VALUE: &str = "UnsupportedValue";
    /// Every listener reference resolved.
    pub const RESOLVED_REFS: &str = "ResolvedRefs";
    /// A certificateRef names a missing or invalid `kubernetes.io/tls` Secret (or not a Secret).
    pub const INVALID_CERTIFICATE_REF: &str = "InvalidCertificateRef";
    /// `allowedRoutes.kinds` names a kind weft does not serve on the listener.
    pub const INVALID_ROUTE_KINDS: &str = "InvalidRouteKinds";
    /// A cross-namespace certificateRef without a ReferenceGrant.
    pub const REF_NOT_PERMITTED: &str = "RefNotPermitted";
    /// `Conflicted=False`.
    pub const NO_CONFLICTS: &str = "NoConflicts";
    /// Listeners on one port with incompatible protocols.
    pub const PROTOCOL_CONFLICT: &str = "ProtocolConflict";
    /// Listeners on one port with the same protocol and hostname.
    pub const HOSTNAME_CONFLICT: &str = "HostnameConflict";
    /// A route's parentRef matches no listener that allows it.
    pub const NOT_ALLOWED_BY_LISTENERS: &str = "NotAllowedByListeners";
    /// A route's hostnames intersect no allowing listener's hostname.
    pub const NO_MATCHING_LISTENER_HOSTNAME: &str = "NoMatchingListenerHostname";
}

/// Prefix of the ServiceAccount, Deployment and Service of a gateway.
pub const GATEWAY_PREFIX: &str = "weft-gateway-";

/// `weft-gateway-<gateway>`: the name of the gateway's ServiceAccount,
/// Deployment and Service (its mesh identity).
pub fn gateway_object_name(gateway: &str) -> String {
    format!("{GATEWAY_PREFIX}{gateway}")
}

/// `weft-gateway-<gateway>-tls`: the Secret the listener certificates are copied to.
pub fn gateway_tls_secret_name(gateway: &str) -> String {
    format!("{GATEWAY_PREFIX}{gateway}-tls")
}

/// Everything the gateway renderer produces.
#[derive(Debug, Clone, Default)]
pub struct GatewayRender {
    /// `Accepted` of each GatewayClass with weft's controllerName, by class name,
    /// with the class's generation.
    pub classes: BTreeMap<String, (Option<i64>, CondValue)>,
    /// Per weft Gateway, by `namespace/name`.
    pub gateways: BTreeMap<String, GatewayPlan>,
    /// Gateway-parent conditions per route, one per parentRef naming a weft
    /// Gateway, in spec order (controllerName `weft.dev/gateway`).
    pub routes: BTreeMap<RouteKey, (Option<i64>, Vec<ParentReport>)>,
}

/// One weft Gateway: what to run for it and its status.
#[derive(Debug, Clone)]
pub struct GatewayPlan {
    pub namespace: String,
    pub name: String,
    /// Owner of every generated object.
    pub uid: String,
    pub generation: Option<i64>,
    /// The gateway section of the identity's config (`ProxyConfig.gateway`).
    pub config: GatewayConfig,
    /// Route backends the gateway's identity must have in scope (service keys).
    pub services: BTreeMap<String, Service>,
    /// Distinct listener ports the Service exposes (sorted).
    pub ports: Vec<u16>,
    /// Certificate name in [`GatewayConfig::tls_secret`] → source Secret
    /// `(namespace, name)` (a `kubernetes.io/tls` Secret, ReferenceGrant checked).
    pub certificates: BTreeMap<String, (String, String)>,
    /// Labels / annotations for the generated objects (`spec.infrastructure`).
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// Gateway `Accepted`.
    pub accepted: CondValue,
    /// Gateway `Programmed` (true once the Deployment has a ready replica and the
    /// Service an address).
    pub programmed: CondValue,
    /// `status.addresses[].value` (the Service's ClusterIP), once known.
    pub address: Option<String>,
    /// `status.listeners`, in spec order.
    pub listeners: Vec<ListenerReport>,
}

/// `status.listeners[]` of one listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerReport {
    pub name: String,
    pub supported_kinds: Vec<RouteGroupKind>,
    pub attached_routes: i32,
    pub accepted: CondValue,
    pub programmed: CondValue,
    pub resolved_refs: CondValue,
    /// `Conflicted` (ok = true means *not* conflicted: status False, reason NoConflicts).
    pub conflicted: CondValue,
}

/// Builds a condition value.
pub(super) fn cond(ok: bool, why: &str, message: impl Into<String>) -> CondValue {
    CondValue {
        ok,
        reason: why.into(),
        message: message.into(),
    }
}

/// GatewayClasses with weft's controllerName (readable specs only).
fn weft_classes(state: &ClusterState) -> impl Iterator<Item = &GatewayClassInput> {
    state.gateway.classes.iter().filter(|c| {
        c.spec
            .as_ref()
            .is_ok_and(|s| s.controller_name == GATEWAY_CONTROLLER_NAME)
    })
}

/// The Gateways of a weft class with their readable specs, sorted by
/// `namespace/name` (unreadable Gateways are logged and left alone).
pub(super) fn weft_gateways(state: &ClusterState) -> Vec<(&GatewayInput, &GatewaySpec)> {
    let classes: Vec<&str> = weft_classes(state).map(|c| c.name.as_str()).collect();
    let mut out: Vec<(&GatewayInput, &GatewaySpec)> = Vec::new();
    for g in &state.gateway.gateways {
        match &g.spec {
            Ok(s) if classes.contains(&s.gateway_class_name.as_str()) => out.push((g, s)),
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(namespace = %g.namespace, name = %g.name, error = %e, "gateway unreadable; ignored");
            }
        }
    }
    out.sort_by(|a, b| (&a.0.namespace, &a.0.name).cmp(&(&b.0.namespace, &b.0.name)));
    out
}

/// `namespace/name` of a Gateway.
pub(super) fn gateway_key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// Plans every weft Gateway of `state` (route backends resolved against `services`).
pub fn plan(state: &ClusterState, services: &BTreeMap<String, Service>) -> GatewayRender {
    let mut out = GatewayRender::default();
    for c in weft_classes(state) {
        let accepted = cond(
            true,
            reason::ACCEPTED,
            format!("handled by {GATEWAY_CONTROLLER_NAME}"),
        );
        out.classes.insert(c.name.clone(), (c.generation, accepted));
    }
    let gateways = weft_gateways(state);
    let checked: Vec<Vec<Checked>> = gateways
        .iter()
        .map(|(g, spec)| gl::check(state, g, spec))
        .collect();
    let views: Vec<ListenerView> = checked.iter().flatten().map(|c| c.view.clone()).collect();
    let mut routes = gateway_routes::build(state, services, &views);
    for ((g, spec), listeners) in gateways.into_iter().zip(checked) {
        let attached = routes
            .listeners
            .remove(&gateway_key(&g.namespace, &g.name))
            .unwrap_or_default();
        let p = plan_one(g, spec, listeners, attached, services);
        tracing::debug!(gateway = %p.config.gateway, listeners = p.config.listeners.len(), accepted = p.accepted.ok, programmed = p.programmed.ok, "gateway planned");
        out.gateways.insert(p.config.gateway.clone(), p);
    }
    let generations: BTreeMap<RouteKey, Option<i64>> = state
        .gamma_routes
        .iter()
        .map(|r| ((r.kind, r.namespace.clone(), r.name.clone()), r.generation))
        .collect();
    out.routes = routes
        .reports
        .into_iter()
        .map(|(k, v)| {
            let generation = generations.get(&k).copied().flatten();
            (k, (generation, v))
        })
        .collect();
    out
}

fn plan_one(
    g: &GatewayInput,
    spec: &GatewaySpec,
    listeners: Vec<Checked>,
    mut attached: BTreeMap<String, gateway_routes::ListenerRoutes>,
    services: &BTreeMap<String, Service>,
) -> GatewayPlan {
    let key = gateway_key(&g.namespace, &g.name);
    let invalid: Vec<&str> = listeners
        .iter()
        .filter(|l| !l.usable)
        .map(|l| l.view.name.as_str())
        .collect();
    let accepted = if !spec.addresses.is_empty() {
        cond(
            false,
            reason::UNSUPPORTED_ADDRESS,
            "spec.addresses cannot be honoured: the gateway's address is its Service's ClusterIP",
        )
    } else if !invalid.is_empty() {
        // Gateway API: still Accepted (reason ListenersNotValid) while one listener is
        // usable; not Accepted once none is.
        let some_usable = invalid.len() < listeners.len();
        let message = if some_usable {
            format!(
                "invalid listener(s) {}; the others are served",
                invalid.join(", ")
            )
        } else {
            format!("no valid listener: {} invalid", invalid.join(", "))
        };
        cond(some_usable, reason::LISTENERS_NOT_VALID, message)
    } else {
        cond(true, reason::ACCEPTED, "gateway accepted")
    };
    let programmed = match (&g.address, g.ready_replicas > 0) {
        (Some(_), true) => cond(true, reason::PROGRAMMED, "the gateway proxy is ready"),
        (None, _) => cond(false, reason::PENDING, "the gateway Service has no address yet"),
        (Some(_), false) => cond(false, reason::PENDING, "no gateway proxy replica is ready yet"),
    };
    let mut config_listeners = Vec::new();
    let mut certificates = BTreeMap::new();
    let mut reports = Vec::new();
    for c in listeners {
        let routes = attached.remove(&c.view.name).unwrap_or_default();
        let mut report = c.report;
        report.attached_routes = routes.attached;
        report.programmed = match (c.usable, programmed.ok) {
            (true, true) => cond(true, reason::PROGRAMMED, "listener programmed"),
            (true, false) => cond(false, reason::PENDING, programmed.message.clone()),
            (false, _) => cond(false, reason::INVALID, "listener is invalid and not served"),
        };
        reports.push(report);
        let (true, Some(protocol)) = (c.usable, c.view.protocol) else {
            continue;
        };
        certificates.extend(c.certificates.iter().cloned());
        config_listeners.push(GatewayListener {
            name: c.view.name,
            port: c.view.port,
            protocol,
            hostname: c.view.hostname,
            certificates: c.certificates.into_iter().map(|(name, _)| name).collect(),
            routes: routes.routes,
            streams: Vec::new(),
        });
    }
    config_listeners.sort_by(|a, b| (a.port, &a.name).cmp(&(b.port, &b.name)));
    let terminates = config_listeners
        .iter()
        .any(|l| l.protocol == ListenerProtocol::Https || !l.certificates.is_empty());
    let mut ports: Vec<u16> = config_listeners.iter().map(|l| l.port).collect();
    ports.dedup();
    let config = GatewayConfig {
        gateway: key,
        tls_secret: terminates.then(|| gateway_tls_secret_name(&g.name)),
        listeners: config_listeners,
    };
    let backends: BTreeMap<String, Service> = referenced(&config)
        .into_iter()
        .filter_map(|k| services.get(k).map(|s| (k.clone(), s.clone())))
        .collect();
    let infra = spec.infrastructure.clone().unwrap_or_default();
    GatewayPlan {
        namespace: g.namespace.clone(),
        name: g.name.clone(),
        uid: g.uid.clone(),
        generation: g.generation,
        config,
        services: backends,
        ports,
        certificates,
        labels: infra.labels,
        annotations: infra.annotations,
        accepted,
        programmed,
        address: g.address.clone(),
        listeners: reports,
    }
}

/// The plans by the identity each gateway runs as: `(namespace, weft-gateway-<name>)`.
pub fn by_identity(render: &GatewayRender) -> BTreeMap<(String, String), &GatewayPlan> {
    render
        .gateways
        .values()
        .map(|p| ((p.namespace.clone(), gateway_object_name(&p.name)), p))
        .collect()
}

/// Every service key the gateway's routes reach (backends and mirror targets).
pub fn referenced(config: &GatewayConfig) -> std::collections::BTreeSet<&String> {
    let mut out = std::collections::BTreeSet::new();
    for l in &config.listeners {
        let entries: Vec<&weft_proxy_config::RouteEntry> = l.routes.iter().map(|r| &r.entry).collect();
        for e in entries {
            out.extend(super::gamma::referenced(std::slice::from_ref(e)));
        }
    }
    out
}

/// Validates a gateway section against the services it references (bare
/// copies from `services`), as the proxy will after assembling its catalog.
pub fn probe(
    config: &GatewayConfig,
    services: &BTreeMap<String, Service>,
) -> Result<(), weft_proxy_config::ValidationError> {
    let list = referenced(config)
        .into_iter()
        .filter_map(|k| services.get(k).map(super::probe::bare))
        .collect();
    super::probe::validate_gateway(list, Some(config.clone()))
}
