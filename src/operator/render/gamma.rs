//! GAMMA: HTTPRoutes and GRPCRoutes whose `parentRefs` name a Service, rendered
//! into flat [`RouteEntry`] lists per parent Service in Gateway API precedence
//! order (see docs/gamma.md), plus the per-parent status each route gets.
//!
//! A route in the Service's own namespace is a **producer** route and applies
//! to every client; a route in another namespace is a **consumer** route and
//! applies only to clients in the route's namespace, replacing the producer
//! routes of that Service for them. Each route is checked with the config
//! crate's own validator (the parent and its backends in a throwaway config)
//! before it is used, so a route the proxy would refuse is reported
//! `Accepted=False/UnsupportedValue` and never makes a config invalid.

use super::gamma_match::{self as tr, Precedence, Specificity, Unsupported};
use super::gamma_refs::{Ctx, Problems};
use super::probe;
use super::report::CondValue;
use super::services::svc_key;
use crate::api::gateway::http::Timeouts;
use crate::api::gateway::{Filter, ParentRef, RuleBackend};
use crate::operator::state::{ClusterState, GammaRoute, RouteKind, RouteSpec};
use std::collections::{BTreeMap, BTreeSet};
use weft_proxy_config::{RouteBackend, RouteEntry, RouteFilter, RouteMatch, Service};

/// Route condition reasons (Gateway API).
pub mod reason {
    /// The route is attached.
    pub const ACCEPTED: &str = "Accepted";
    /// Every backend resolved.
    pub const RESOLVED_REFS: &str = "ResolvedRefs";
    /// The parent Service (or its port / section) does not exist.
    pub const NO_MATCHING_PARENT: &str = "NoMatchingParent";
    /// A field value weft cannot express.
    pub const UNSUPPORTED_VALUE: &str = "UnsupportedValue";
    /// A backend Service (or its port) does not exist.
    pub const BACKEND_NOT_FOUND: &str = "BackendNotFound";
    /// A cross-namespace backend without a ReferenceGrant.
    pub const REF_NOT_PERMITTED: &str = "RefNotPermitted";
    /// A backend of a kind other than Service.
    pub const INVALID_KIND: &str = "InvalidKind";
}

/// `(kind, namespace, name)` of a route.
pub type RouteKey = (RouteKind, String, String);

/// The conditions of one parentRef weft handles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentReport {
    /// The parentRef as written (echoed into status).
    pub parent_ref: ParentRef,
    /// `Accepted`.
    pub accepted: CondValue,
    /// `ResolvedRefs`.
    pub resolved_refs: CondValue,
}

/// Status of one route: its Service parents (possibly none: then weft's old
/// entries are removed from status).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouteReport {
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// One entry per Service parentRef, in spec order.
    pub parents: Vec<ParentReport>,
}

/// Rendered GAMMA routes.
#[derive(Debug, Default)]
pub struct Gamma {
    /// Service key → producer entries (every client), in precedence order.
    pub producer: BTreeMap<String, Vec<RouteEntry>>,
    /// Client namespace → service key → consumer entries (replace the producer ones).
    pub consumer: BTreeMap<String, BTreeMap<String, Vec<RouteEntry>>>,
    /// Status per route.
    pub reports: BTreeMap<RouteKey, RouteReport>,
}

/// Every service key the entries reach (backends and mirror targets).
pub fn referenced(entries: &[RouteEntry]) -> BTreeSet<&String> {
    let mut out = BTreeSet::new();
    for e in entries {
        out.extend(e.backends.iter().filter_map(|b| b.service.as_ref()));
        for f in &e.filters {
            if let RouteFilter::Mirror(m) = f {
                out.insert(&m.service);
            }
        }
    }
    out
}

/// One rule of either kind, reduced to what the translation needs.
pub(super) struct Rule<'a> {
    name: Option<&'a str>,
    matches: Vec<Result<(RouteMatch, Specificity), Unsupported>>,
    filters: &'a [Filter],
    backends: &'a [RuleBackend],
    timeouts: Option<&'a Timeouts>,
}

/// The translated matches of a rule (a rule without matches matches everything).
fn rule_matches<M>(
    matches: &[M],
    translate: impl Fn(Option<&M>) -> Result<(RouteMatch, Specificity), Unsupported>,
) -> Vec<Result<(RouteMatch, Specificity), Unsupported>> {
    if matches.is_empty() {
        vec![translate(None)]
    } else {
        matches.iter().map(|m| translate(Some(m))).collect()
    }
}

/// The parentRefs and rules of a route of either kind.
pub(super) fn rules(spec: &RouteSpec) -> (&[ParentRef], Vec<Rule<'_>>) {
    match spec {
        RouteSpec::Http(s) => (
            &s.parent_refs,
            s.rules
                .iter()
                .map(|r| Rule {
                    name: r.name.as_deref(),
                    matches: rule_matches(&r.matches, tr::http_match),
                    filters: &r.filters,
                    backends: &r.backend_refs,
                    timeouts: r.timeouts.as_ref(),
                })
                .collect(),
        ),
        RouteSpec::Grpc(s) => (
            &s.parent_refs,
            s.rules
                .iter()
                .map(|r| Rule {
                    name: r.name.as_deref(),
                    matches: rule_matches(&r.matches, tr::grpc_match),
                    filters: &r.filters,
                    backends: &r.backend_refs,
                    timeouts: None,
                })
                .collect(),
        ),
    }
}

impl Ctx<'_> {
    /// The entries of this route for this parent, with their sort keys.
    pub(super) fn entries(
        &self,
        rules: &[Rule<'_>],
        ports: &[u16],
        p: &mut Problems,
    ) -> Vec<(Precedence, RouteEntry)> {
        let r = self.route;
        let kind = r.kind.name().to_ascii_lowercase();
        let mut out = Vec::new();
        for (ri, rule) in rules.iter().enumerate() {
            let source = format!(
                "{kind}/{}/{}/{}",
                r.namespace,
                r.name,
                rule.name.map_or_else(|| ri.to_string(), str::to_string)
            );
            let filters = self.filters(rule.filters, false, p);
            let backends: Vec<RouteBackend> = rule.backends.iter().map(|b| self.backend(b, p)).collect();
            let mut timeout = |d: Option<&String>| match d.map(|d| tr::duration_ms(d)).transpose() {
                Ok(v) => v.flatten(),
                Err(e) => {
                    p.reject(reason::UNSUPPORTED_VALUE, format!("timeouts: {e}"));
                    None
                }
            };
            let timeout_ms = timeout(rule.timeouts.and_then(|t| t.request.as_ref()));
            let backend_timeout_ms = timeout(rule.timeouts.and_then(|t| t.backend_request.as_ref()));
            for (mi, m) in rule.matches.iter().enumerate() {
                let (matches, spec) = match m {
                    Ok(x) => x.clone(),
                    Err(e) => {
                        p.reject(reason::UNSUPPORTED_VALUE, e.0.clone());
                        continue;
                    }
                };
                let key = tr::precedence(spec, r.created_ms, format!("{}/{}", r.namespace, r.name), ri, mi);
                out.push((
                    key,
                    RouteEntry {
                        source: source.clone(),
                        ports: ports.to_vec(),
                        matches,
                        filters: filters.clone(),
                        backends: backends.clone(),
                        timeout_ms,
                        backend_timeout_ms,
                    },
                ));
            }
        }
        out
    }
}

/// The parent Service's ports the parentRef selects (`port`, or the port named
/// by `sectionName`; empty = every port), or why it matches nothing.
fn parent_ports(r: &ParentRef, svc: &Service, key: &str) -> Result<Vec<u16>, String> {
    let mut ports = Vec::new();
    if let Some(n) = r.port {
        match u16::try_from(n)
            .ok()
            .filter(|n| svc.ports.iter().any(|p| p.port == *n))
        {
            Some(n) => ports.push(n),
            None => return Err(format!("service {key} has no port {n}")),
        }
    }
    if let Some(section) = &r.section_name {
        match svc
            .ports
            .iter()
            .find(|p| p.name.as_deref() == Some(section.as_str()))
        {
            Some(p) if ports.is_empty() || ports == [p.port] => ports = vec![p.port],
            _ => return Err(format!("service {key} has no port named {section}")),
        }
    }
    Ok(ports)
}

/// `(client namespace for consumer routes, parent service key)`.
type Bucket = (Option<String>, String);
/// An entry with its sort key.
type Ranked = (Precedence, RouteEntry);

/// Renders every route; `services` are the shared services (ports only are read).
pub fn build(state: &ClusterState, services: &BTreeMap<String, Service>) -> Gamma {
    let mut routes: Vec<&GammaRoute> = state.gamma_routes.iter().collect();
    routes.sort_by(|a, b| (a.kind, &a.namespace, &a.name).cmp(&(b.kind, &b.namespace, &b.name)));
    let mut buckets: BTreeMap<Bucket, Vec<Ranked>> = BTreeMap::new();
    let mut out = Gamma::default();
    for route in routes {
        let key = (route.kind, route.namespace.clone(), route.name.clone());
        let mut report = RouteReport {
            generation: route.generation,
            parents: Vec::new(),
        };
        let spec = match &route.spec {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(kind = route.kind.name(), namespace = %route.namespace, name = %route.name, error = %e, "route unreadable; ignored");
                out.reports.insert(key, report);
                continue;
            }
        };
        let (parents, rules) = rules(spec);
        let mut seen = BTreeSet::new();
        for pref in parents.iter().filter(|p| p.is_service()) {
            if !seen.insert(pref) {
                continue;
            }
            let parent_ns = pref.namespace.as_deref().unwrap_or(&route.namespace);
            let parent_key = svc_key(parent_ns, &pref.name);
            let ctx = Ctx {
                route,
                parent_ns,
                services,
                grants: &state.reference_grants,
            };
            let mut p = Problems::default();
            let ports = match services.get(&parent_key) {
                None => Err(format!("service {parent_key} not found")),
                Some(svc) => parent_ports(pref, svc, &parent_key),
            };
            let ports = ports.unwrap_or_else(|msg| {
                p.reject(reason::NO_MATCHING_PARENT, msg);
                Vec::new()
            });
            let entries = ctx.entries(&rules, &ports, &mut p);
            if p.rejected.is_none()
                && let Err(e) = probe_entries(services, &parent_key, &entries)
            {
                p.reject(reason::UNSUPPORTED_VALUE, format!("{}: {}", e.path, e.reason));
            }
            match &p.rejected {
                None => {
                    let client_ns = (parent_ns != route.namespace).then(|| route.namespace.clone());
                    buckets
                        .entry((client_ns, parent_key))
                        .or_default()
                        .extend(entries);
                }
                Some((why, msg)) => {
                    tracing::debug!(kind = route.kind.name(), namespace = %route.namespace, name = %route.name, parent = %parent_key, reason = why, message = %msg, "route not attached");
                }
            }
            report.parents.push(p.finish(pref.clone()));
        }
        out.reports.insert(key, report);
    }
    for ((client_ns, svc), mut entries) in buckets {
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let list: Vec<RouteEntry> = entries.into_iter().map(|(_, e)| e).collect();
        match client_ns {
            None => {
                out.producer.insert(svc, list);
            }
            Some(ns) => {
                out.consumer.entry(ns).or_default().insert(svc, list);
            }
        }
    }
    out
}

/// Validates one route's entries on its parent in a throwaway config.
fn probe_entries(
    services: &BTreeMap<String, Service>,
    parent: &str,
    entries: &[(Precedence, RouteEntry)],
) -> Result<(), weft_proxy_config::ValidationError> {
    let Some(svc) = services.get(parent) else {
        return Ok(());
    };
    let list: Vec<RouteEntry> = entries.iter().map(|(_, e)| e.clone()).collect();
    let mut root = probe::bare(svc);
    let others: Vec<Service> = referenced(&list)
        .into_iter()
        .filter(|k| k.as_str() != parent)
        .filter_map(|k| services.get(k).map(probe::bare))
        .collect();
    root.routes = list;
    let mut all = vec![root];
    all.extend(others);
    probe::validate(all)
}

/// Notes on each applied TrafficSplit whose root Service has GAMMA routes: the
/// routed ports do not use the split (the proxy enforces it; docs/gamma.md).
pub fn note_splits(state: &ClusterState, g: &Gamma, reports: &mut super::Reports) {
    for s in &state.splits {
        let Ok(view) = &s.spec else { continue };
        let root = svc_key(&s.namespace, &view.service);
        let mut lists: Vec<(&str, &Vec<RouteEntry>)> = Vec::new();
        if let Some(l) = g.producer.get(&root) {
            lists.push(("every client", l));
        }
        for (ns, m) in &g.consumer {
            if let Some(l) = m.get(&root) {
                lists.push((ns.as_str(), l));
            }
        }
        for (who, list) in lists {
            let mut ports: Vec<u16> = list.iter().flat_map(|e| e.ports.iter().copied()).collect();
            ports.sort_unstable();
            ports.dedup();
            let which = if list.iter().any(|e| e.ports.is_empty()) || ports.is_empty() {
                "all ports".to_string()
            } else {
                format!("port(s) {ports:?}")
            };
            let scope = if who == "every client" {
                who.to_string()
            } else {
                format!("clients in namespace {who}")
            };
            reports.note(
                crate::operator::state::Kind::TrafficSplit,
                &s.namespace,
                &s.name,
                format!("{which} of {root} are routed by Gateway API routes for {scope}; the split is not used there"),
            );
        }
    }
}
