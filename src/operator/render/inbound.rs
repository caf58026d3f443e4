//! The inbound side of each identity: the ports its pods serve (with protocol
//! hints) and the authorization table flattened from the TrafficTargets whose
//! destination is that identity (sources as SPIFFE IDs, rules from TCPRoutes and
//! HTTPRouteGroups).

use super::report::{Reports, reason};
use super::routes::Routes;
use super::services::protocol_hint;
use crate::operator::state::{ClusterState, Kind, PodInfo, TargetInput, spiffe_id};
use std::collections::{BTreeMap, HashMap, HashSet};
use weft_proxy_config::{AccessGrant, AccessRule, InboundPort};

/// `(namespace, serviceaccount)`.
pub type IdentityKey = (String, String);

/// Grants indexed by destination identity, plus who may call whom.
#[derive(Debug, Default)]
pub struct Grants {
    /// Grants per destination identity, sorted by TrafficTarget.
    pub by_destination: HashMap<IdentityKey, Vec<AccessGrant>>,
    /// `(source, destination)` pairs allowed by at least one usable grant.
    pub allowed: HashSet<(IdentityKey, IdentityKey)>,
}

fn rules_for(
    ns: &str,
    name: &str,
    t: &TargetInput,
    routes: &Routes,
    reports: &mut Reports,
) -> Vec<AccessRule> {
    let mut rules = Vec::new();
    for rule in &t.rules {
        let key = (ns.to_string(), rule.name.clone());
        match rule.kind.as_str() {
            "TCPRoute" => match routes.tcp.get(&key) {
                Some(Some(ports)) => {
                    let ports = match t.destination_port {
                        Some(p) if ports.is_empty() || ports.contains(&p) => vec![p],
                        Some(_) => continue,
                        None => ports.clone(),
                    };
                    rules.push(AccessRule::Tcp { ports });
                }
                found => {
                    let what = if found.is_some() {
                        "is invalid"
                    } else {
                        "not found"
                    };
                    let msg = format!("TCPRoute {ns}/{} {what}", rule.name);
                    reports.unresolved(Kind::TrafficTarget, ns, name, reason::TCP_ROUTE_NOT_FOUND, msg);
                }
            },
            "HTTPRouteGroup" => match routes.groups.get(&key) {
                Some(Some(all)) => {
                    let matches: Vec<_> = match &rule.matches {
                        None => all.clone(),
                        Some(names) => {
                            for n in names {
                                if !all.iter().any(|m| m.name == format!("{}/{n}", rule.name)) {
                                    let msg = format!("HTTPRouteGroup {ns}/{} has no match {n:?}", rule.name);
                                    reports.unresolved(
                                        Kind::TrafficTarget,
                                        ns,
                                        name,
                                        reason::MATCH_NOT_FOUND,
                                        msg,
                                    );
                                }
                            }
                            all.iter()
                                .filter(|m| names.iter().any(|n| m.name == format!("{}/{n}", rule.name)))
                                .cloned()
                                .collect()
                        }
                    };
                    if !matches.is_empty() {
                        // SMI `destination.port`: the rule holds on that port only.
                        let ports = t.destination_port.into_iter().collect();
                        rules.push(AccessRule::Http { ports, matches });
                    }
                }
                found => {
                    let what = if found.is_some() {
                        "is invalid"
                    } else {
                        "not found"
                    };
                    let msg = format!("HTTPRouteGroup {ns}/{} {what}", rule.name);
                    reports.unresolved(Kind::TrafficTarget, ns, name, reason::ROUTE_GROUP_NOT_FOUND, msg);
                }
            },
            "UDPRoute" => {
                let msg = format!(
                    "UDPRoute {ns}/{} is not enforced (weft proxies TCP only)",
                    rule.name
                );
                reports.unresolved(Kind::TrafficTarget, ns, name, reason::UNSUPPORTED_KIND, msg);
            }
            other => {
                let msg = format!("rule kind {other:?} is not supported");
                reports.unresolved(Kind::TrafficTarget, ns, name, reason::UNSUPPORTED_KIND, msg);
            }
        }
    }
    rules
}

/// Flattens every TrafficTarget into grants.
pub fn build(state: &ClusterState, routes: &Routes, trust_domain: &str, reports: &mut Reports) -> Grants {
    let mut grants = Grants::default();
    let mut targets: Vec<_> = state.traffic_targets.iter().collect();
    targets.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    for tt in targets {
        let (ns, name) = (tt.namespace.as_str(), tt.name.as_str());
        reports.seen(Kind::TrafficTarget, ns, name, tt.generation);
        let t = match &tt.spec {
            Ok(t) => t,
            Err(e) => {
                reports.rejected(Kind::TrafficTarget, ns, name, reason::INVALID_SPEC, e.clone());
                continue;
            }
        };
        if t.sources.is_empty() {
            reports.rejected(
                Kind::TrafficTarget,
                ns,
                name,
                reason::INVALID_SPEC,
                "no sources".into(),
            );
            continue;
        }
        let rules = rules_for(ns, name, t, routes, reports);
        if rules.is_empty() {
            reports.rejected(
                Kind::TrafficTarget,
                ns,
                name,
                reason::INVALID_SPEC,
                "no usable rule".into(),
            );
            continue;
        }
        let mut sources: Vec<String> = t
            .sources
            .iter()
            .map(|(sns, sa)| spiffe_id(trust_domain, sns, sa))
            .collect();
        sources.sort();
        sources.dedup();
        for s in &t.sources {
            grants.allowed.insert((s.clone(), t.destination.clone()));
        }
        grants
            .by_destination
            .entry(t.destination.clone())
            .or_default()
            .push(AccessGrant {
                source: format!("{ns}/{name}"),
                sources,
                rules,
            });
    }
    grants
}

/// The ports served by an identity's pods, sorted, with protocol hints.
pub fn ports(pods: &[&PodInfo]) -> Vec<InboundPort> {
    let mut by_port: BTreeMap<u16, Option<&str>> = BTreeMap::new();
    for p in pods {
        for cp in &p.ports {
            let slot = by_port.entry(cp.port).or_insert(None);
            if slot.is_none() {
                *slot = cp.name.as_deref();
            }
        }
    }
    by_port
        .into_iter()
        .map(|(port, name)| InboundPort {
            port,
            protocol: protocol_hint(None, name),
        })
        .collect()
}
