//! Ingress gateway routes: which HTTPRoutes and GRPCRoutes attach to which
//! listener of which weft Gateway (parentRefs with `sectionName` / `port`,
//! `allowedRoutes` namespaces and kinds, hostname intersection), the
//! [`GatewayRoute`] entries each listener serves, in Gateway API precedence
//! order, and the route status for Gateway parents (controllerName
//! `weft.dev/gateway`). Pure: the caller passes the listeners it accepted.
//!
//! Backends resolve as for GAMMA ([`super::gamma_refs`]) except that the
//! Gateway's namespace grants nothing: a backend outside the route's namespace
//! needs a ReferenceGrant. An unresolved backend stays in its entry with
//! `service: None` (its share of requests gets `500`). A route attaches to
//! every listener its parentRef selects (`sectionName`, `port`) that allows it
//! (`allowedRoutes` namespaces and kinds) and whose hostname intersects the
//! route's; the entry hostnames are that intersection.

use super::gamma::{self, ParentReport, RouteKey, reason as route_reason};
use super::gamma_match::Precedence;
use super::gamma_refs::{Ctx, Problems};
use super::gateway::{reason, weft_gateways};
use super::probe;
use crate::api::gateway::GROUP;
use crate::api::gateway::ParentRef;
use crate::api::gateway::gateway::{AllowedRoutes, RouteGroupKind};
use crate::operator::state::{ClusterState, GammaRoute, RouteSpec};
use std::collections::{BTreeMap, BTreeSet};
use weft_proxy_config::gateway::hostname_matches;
use weft_proxy_config::{
    GatewayConfig, GatewayListener, GatewayRoute, ListenerProtocol, RouteEntry, Service,
};

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

/// Entries of one listener with their sort keys.
type Ranked = Vec<(Precedence, GatewayRoute)>;

/// Attaches the routes of `state` to `listeners` (backends resolved against `services`).
pub fn build(
    state: &ClusterState,
    services: &BTreeMap<String, Service>,
    listeners: &[ListenerView],
) -> GatewayRoutes {
    let gateways: BTreeSet<String> = weft_gateways(state)
        .iter()
        .map(|(g, _)| super::gateway::gateway_key(&g.namespace, &g.name))
        .collect();
    let mut by_gateway: BTreeMap<&str, Vec<&ListenerView>> = BTreeMap::new();
    for l in listeners {
        by_gateway.entry(l.gateway.as_str()).or_default().push(l);
    }
    let mut ranked: BTreeMap<(&str, &str), Ranked> = BTreeMap::new();
    let mut attached: BTreeMap<(&str, &str), BTreeSet<RouteKey>> = BTreeMap::new();
    let mut out = GatewayRoutes::default();
    let mut routes: Vec<&GammaRoute> = state.gamma_routes.iter().collect();
    routes.sort_by(|a, b| (a.kind, &a.namespace, &a.name).cmp(&(b.kind, &b.namespace, &b.name)));
    for route in routes {
        let key: RouteKey = (route.kind, route.namespace.clone(), route.name.clone());
        let mut reports = Vec::new();
        let spec = match &route.spec {
            Ok(s) => s,
            Err(_) => {
                out.reports.insert(key, reports);
                continue;
            }
        };
        let (parents, rules) = gamma::rules(spec);
        let hostnames: Vec<String> = match spec {
            RouteSpec::Http(s) => &s.hostnames,
            RouteSpec::Grpc(s) => &s.hostnames,
        }
        .iter()
        .map(|h| h.to_ascii_lowercase())
        .collect();
        let mut seen = BTreeSet::new();
        for pref in parents.iter().filter(|p| p.is_gateway()) {
            let gw_ns = pref.namespace.as_deref().unwrap_or(&route.namespace);
            let gw = super::gateway::gateway_key(gw_ns, &pref.name);
            if !gateways.contains(&gw) || !seen.insert(pref) {
                continue;
            }
            let ctx = Ctx {
                route,
                // The Gateway's namespace grants nothing: only the route's own.
                parent_ns: &route.namespace,
                services,
                grants: &state.reference_grants,
            };
            let mut p = Problems::default();
            let entries = ctx.entries(&rules, &[], &mut p);
            let own: &[&ListenerView] = by_gateway.get(gw.as_str()).map_or(&[], Vec::as_slice);
            let targets = select(state, route, pref, &gw, &hostnames, own).unwrap_or_else(|(why, msg)| {
                p.reject(why, msg);
                Vec::new()
            });
            if p.rejected.is_none()
                && let Some((_, hosts)) = targets.first()
                && let Err(e) = probe_route(services, &entries, hosts)
            {
                p.reject(
                    route_reason::UNSUPPORTED_VALUE,
                    format!("{}: {}", e.path, e.reason),
                );
            }
            match &p.rejected {
                None => {
                    for (l, hosts) in targets {
                        let slot = (l.gateway.as_str(), l.name.as_str());
                        attached.entry(slot).or_default().insert(key.clone());
                        ranked
                            .entry(slot)
                            .or_default()
                            .extend(entries.iter().map(|(k, e)| {
                                (
                                    k.clone(),
                                    GatewayRoute {
                                        hostnames: hosts.clone(),
                                        entry: e.clone(),
                                    },
                                )
                            }));
                    }
                }
                Some((why, msg)) => {
                    tracing::debug!(kind = route.kind.name(), namespace = %route.namespace, name = %route.name, gateway = %gw, reason = why, message = %msg, "route not attached to the gateway");
                }
            }
            reports.push(p.finish_for(pref.clone(), "route attached to the Gateway"));
        }
        out.reports.insert(key, reports);
    }
    for l in listeners {
        let slot = (l.gateway.as_str(), l.name.as_str());
        let mut list = ranked.remove(&slot).unwrap_or_default();
        list.sort_by(|a, b| a.0.cmp(&b.0));
        let count = attached.get(&slot).map_or(0, BTreeSet::len);
        out.listeners.entry(l.gateway.clone()).or_default().insert(
            l.name.clone(),
            ListenerRoutes {
                routes: list.into_iter().map(|(_, r)| r).collect(),
                attached: i32::try_from(count).unwrap_or(i32::MAX),
            },
        );
    }
    out
}

/// Listeners a parentRef attaches to, each with the entry hostnames on it.
type Selected<'a> = Vec<(&'a ListenerView, Vec<String>)>;

/// The listeners of Gateway `gw` a parentRef attaches to, with the entry
/// hostnames on each, or why none (reason, message).
fn select<'a>(
    state: &ClusterState,
    route: &GammaRoute,
    pref: &ParentRef,
    gw: &str,
    hostnames: &[String],
    listeners: &[&'a ListenerView],
) -> Result<Selected<'a>, (&'static str, String)> {
    let port = pref.port.and_then(|p| u16::try_from(p).ok());
    let candidates: Vec<&ListenerView> = listeners
        .iter()
        .copied()
        .filter(|l| pref.section_name.as_deref().is_none_or(|s| s == l.name))
        .filter(|l| pref.port.is_none() || port == Some(l.port))
        .collect();
    if candidates.is_empty() {
        let which = match (&pref.section_name, pref.port) {
            (Some(s), Some(n)) => format!("a listener {s} on port {n}"),
            (Some(s), None) => format!("a listener {s}"),
            (None, Some(n)) => format!("a listener on port {n}"),
            (None, None) => "listeners".into(),
        };
        return Err((
            route_reason::NO_MATCHING_PARENT,
            format!("gateway {gw} has no {which}"),
        ));
    }
    let mut allowed_any = false;
    let mut out = Vec::new();
    for l in candidates {
        if !l.attachable || !allows(state, l, route) {
            continue;
        }
        allowed_any = true;
        if let Some(hosts) = intersect(l.hostname.as_deref(), hostnames) {
            out.push((l, hosts));
        }
    }
    if !out.is_empty() {
        Ok(out)
    } else if allowed_any {
        Err((
            reason::NO_MATCHING_LISTENER_HOSTNAME,
            format!("no hostname of the route matches a listener of gateway {gw}"),
        ))
    } else {
        Err((
            reason::NOT_ALLOWED_BY_LISTENERS,
            format!(
                "no listener of gateway {gw} allows this {} from namespace {}",
                route.kind.name(),
                route.namespace
            ),
        ))
    }
}

/// Whether listener `l` allows `route` (`allowedRoutes` namespaces and kinds).
fn allows(state: &ClusterState, l: &ListenerView, route: &GammaRoute) -> bool {
    let kind_ok = l
        .supported_kinds
        .iter()
        .any(|k| k.group.as_deref().unwrap_or(GROUP) == GROUP && k.kind == route.kind.name());
    let ns = l.allowed_routes.as_ref().and_then(|a| a.namespaces.as_ref());
    let ns_ok = match ns.and_then(|n| n.from.as_deref()).unwrap_or("Same") {
        "All" => true,
        "Same" => route.namespace == l.gateway_namespace,
        "Selector" => {
            let empty = BTreeMap::new();
            let labels = state
                .gateway
                .namespace_labels
                .get(&route.namespace)
                .unwrap_or(&empty);
            ns.and_then(|n| n.selector.as_ref())
                .is_some_and(|s| s.matches(labels))
        }
        _ => false,
    };
    kind_ok && ns_ok
}

/// The hostnames a route answers on a listener: the intersection of the
/// route's and the listener's (a wildcard meets a name it covers, or a
/// narrower wildcard); `None` = they do not intersect. Empty = every hostname.
pub fn intersect(listener: Option<&str>, route: &[String]) -> Option<Vec<String>> {
    let Some(l) = listener else {
        return Some(route.to_vec());
    };
    if route.is_empty() {
        return Some(vec![l.to_string()]);
    }
    let mut out: Vec<String> = Vec::new();
    for h in route {
        let common = if hostname_matches(l, h) || l == h {
            Some(h.as_str())
        } else if hostname_matches(h, l) {
            Some(l)
        } else {
            None
        };
        if let Some(c) = common
            && !out.iter().any(|o| o == c)
        {
            out.push(c.to_string());
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Validates one route's entries on a throwaway gateway listener.
fn probe_route(
    services: &BTreeMap<String, Service>,
    entries: &[(Precedence, RouteEntry)],
    hostnames: &[String],
) -> Result<(), weft_proxy_config::ValidationError> {
    let list: Vec<RouteEntry> = entries.iter().map(|(_, e)| e.clone()).collect();
    let used = gamma::referenced(&list)
        .into_iter()
        .filter_map(|k| services.get(k).map(probe::bare))
        .collect();
    let config = GatewayConfig {
        gateway: "probe/probe".into(),
        tls_secret: None,
        listeners: vec![GatewayListener {
            name: "probe".into(),
            port: 1,
            protocol: ListenerProtocol::Http,
            hostname: None,
            certificates: Vec::new(),
            routes: list
                .into_iter()
                .map(|entry| GatewayRoute {
                    hostnames: hostnames.to_vec(),
                    entry,
                })
                .collect(),
            streams: Vec::new(),
        }],
    };
    probe::validate_gateway(used, Some(config))
}
