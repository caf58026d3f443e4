//! TrafficSplits applied at their root (apex) services: backends that do not
//! exist or lack a root port are excluded and reported, weights stay relative
//! (milli-units as stored, never rewritten), all-zero splits are reported and
//! skipped, referenced HTTPRouteGroups become the split's matches.

use super::report::{Reports, reason};
use super::routes::Routes;
use super::services::svc_key;
use crate::operator::state::{ClusterState, Kind};
use std::collections::BTreeMap;
use weft_proxy_config::{Service, Split, WeightedBackend};

/// Sets `split` on every apex service that has a usable TrafficSplit.
pub fn apply(
    state: &ClusterState,
    routes: &Routes,
    services: &mut BTreeMap<String, Service>,
    reports: &mut Reports,
) {
    let mut splits: Vec<_> = state.splits.iter().collect();
    splits.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    for ts in splits {
        let (ns, name) = (ts.namespace.as_str(), ts.name.as_str());
        reports.seen(Kind::TrafficSplit, ns, name, ts.generation);
        let reject = |reports: &mut Reports, why, msg: String| {
            reports.rejected(Kind::TrafficSplit, ns, name, why, msg)
        };
        let view = match &ts.spec {
            Ok(v) => v,
            Err(e) => {
                reject(reports, reason::INVALID_SPEC, e.clone());
                continue;
            }
        };
        let apex_key = svc_key(ns, &view.service);
        let Some(apex) = services.get(&apex_key) else {
            let msg = format!("root service {apex_key} not found");
            reports.service_missing(Kind::TrafficSplit, ns, name, msg);
            continue;
        };
        if let Some(other) = &apex.split {
            let msg = format!("service {apex_key} is already split by {}", other.source);
            reject(reports, reason::CONFLICTED, msg);
            continue;
        }
        let root_ports: Vec<u16> = apex.ports.iter().map(|p| p.port).collect();
        let mut backends = Vec::new();
        for (svc, weight) in &view.backends {
            let key = svc_key(ns, svc);
            let Some(backend) = services.get(&key) else {
                let msg = format!("backend service {key} not found");
                reports.unresolved(Kind::TrafficSplit, ns, name, reason::BACKEND_NOT_FOUND, msg);
                continue;
            };
            let missing: Vec<u16> = root_ports
                .iter()
                .copied()
                .filter(|p| !backend.ports.iter().any(|bp| bp.port == *p))
                .collect();
            if !missing.is_empty() {
                let msg = format!("backend {key} lacks root port(s) {missing:?}; excluded");
                reports.unresolved(Kind::TrafficSplit, ns, name, reason::PORT_MISMATCH, msg);
                continue;
            }
            backends.push(WeightedBackend {
                service: key,
                weight: *weight,
            });
        }
        let mut matches = Vec::new();
        let mut missing_group = false;
        for group in &view.matches {
            match routes.groups.get(&(ns.to_string(), group.clone())) {
                Some(Some(m)) => matches.extend(m.iter().cloned()),
                found => {
                    let what = if found.is_some() {
                        "is invalid"
                    } else {
                        "not found"
                    };
                    let msg = format!("HTTPRouteGroup {ns}/{group} {what}");
                    reports.unresolved(Kind::TrafficSplit, ns, name, reason::ROUTE_GROUP_NOT_FOUND, msg);
                    missing_group = true;
                }
            }
        }
        if missing_group {
            reject(
                reports,
                reason::ROUTE_GROUP_NOT_FOUND,
                "a referenced HTTPRouteGroup is missing".into(),
            );
            continue;
        }
        if backends.is_empty() {
            reject(reports, reason::NO_BACKENDS, "no usable backend".into());
            continue;
        }
        if backends.iter().all(|b| b.weight == 0) {
            reject(
                reports,
                reason::INVALID_WEIGHTS,
                "the weights of the usable backends sum to zero".into(),
            );
            continue;
        }
        if let Some(apex) = services.get_mut(&apex_key) {
            apex.split = Some(Split {
                source: format!("{ns}/{name}"),
                backends,
                matches,
            });
        }
    }
}
