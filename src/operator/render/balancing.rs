//! LoadBalancing objects resolved onto the shared services (every client, and
//! the `permissive` catalog, sees the same choice): `Service.load_balancer`
//! without `spec.ports`, else `ServicePort.load_balancer` of each listed port.
//! Objects are taken in namespace/name order; one that claims what an earlier
//! one already set (both whole-service, or a common port) is `Conflicted`.

use super::probe;
use super::report::{Reports, reason};
use super::services::svc_key;
use crate::api::balancing::{Algorithm, ConsistentHash, HashTable, LoadBalancingSpec};
use crate::operator::state::{ClusterState, Kind};
use std::collections::BTreeMap;
use weft_proxy_config::{GeneratedCookie, HashAlgorithm, HashKey, LoadBalancer, Service};

/// `Path` of a generated cookie when `spec.consistentHash.cookie.path` is absent.
pub const DEFAULT_COOKIE_PATH: &str = "/";

/// Converts a LoadBalancing spec to the proxy's balancer.
pub fn balancer(spec: &LoadBalancingSpec) -> Result<LoadBalancer, String> {
    match (spec.algorithm, &spec.consistent_hash) {
        (Algorithm::ConsistentHash, Some(ch)) => consistent_hash(ch),
        (Algorithm::ConsistentHash, None) => {
            Err("spec.consistentHash must be set when spec.algorithm is consistentHash".into())
        }
        (_, Some(_)) => Err("spec.consistentHash is only valid with algorithm consistentHash".into()),
        (Algorithm::LeastRequest, None) => Ok(LoadBalancer::LeastRequest),
        (Algorithm::RoundRobin, None) => Ok(LoadBalancer::RoundRobin),
        (Algorithm::Random, None) => Ok(LoadBalancer::Random),
    }
}

fn consistent_hash(ch: &ConsistentHash) -> Result<LoadBalancer, String> {
    let source_ip = ch.source_ip == Some(true);
    let (key, cookie) = match (&ch.header, &ch.cookie, source_ip) {
        (Some(h), None, false) => (HashKey::Header(h.to_ascii_lowercase()), None),
        (None, Some(c), false) => {
            let generated = match &c.ttl {
                None => None,
                Some(ttl) => Some(GeneratedCookie {
                    ttl_ms: ttl
                        .to_millis()
                        .map_err(|e| format!("spec.consistentHash.cookie.ttl: {e}"))?,
                    path: Some(c.path.clone().unwrap_or_else(|| DEFAULT_COOKIE_PATH.into())),
                }),
            };
            (HashKey::Cookie(c.name.clone()), generated)
        }
        (None, None, true) => (HashKey::SourceIp, None),
        _ => return Err("spec.consistentHash must set exactly one of header, cookie, sourceIp".into()),
    };
    let algorithm = match ch.table {
        None | Some(HashTable::Ring) => HashAlgorithm::Ring,
        Some(HashTable::Maglev) => HashAlgorithm::Maglev,
    };
    Ok(LoadBalancer::ConsistentHash {
        key,
        algorithm,
        cookie,
    })
}

/// Who set what on one service.
#[derive(Default)]
struct Claims {
    whole: Option<String>,
    ports: BTreeMap<u16, String>,
}

/// Applies every LoadBalancing to `services`.
pub fn apply(state: &ClusterState, services: &mut BTreeMap<String, Service>, reports: &mut Reports) {
    let mut objects: Vec<_> = state.load_balancings.iter().collect();
    objects.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    let mut claims: BTreeMap<String, Claims> = BTreeMap::new();
    for o in objects {
        let (ns, name) = (o.namespace.as_str(), o.name.as_str());
        reports.seen(Kind::LoadBalancing, ns, name, o.generation);
        let reject = |reports: &mut Reports, why: &'static str, msg: String| {
            tracing::debug!(namespace = ns, name, reason = why, message = %msg, "LoadBalancing not applied");
            reports.rejected(Kind::LoadBalancing, ns, name, why, msg);
        };
        let spec = match &o.spec {
            Ok(s) => s,
            Err(e) => {
                reject(reports, reason::INVALID_SPEC, e.clone());
                continue;
            }
        };
        let dest = svc_key(
            spec.destination.namespace.as_deref().unwrap_or(ns),
            &spec.destination.name,
        );
        let Some(svc) = services.get_mut(&dest) else {
            let msg = format!("service {dest} not found");
            reports.service_missing(Kind::LoadBalancing, ns, name, msg);
            continue;
        };
        let lb = match balancer(spec) {
            Ok(lb) => lb,
            Err(e) => {
                reject(reports, reason::INVALID_SPEC, e);
                continue;
            }
        };
        let mut ports: Vec<u16> = spec.ports.clone().unwrap_or_default();
        ports.sort_unstable();
        ports.dedup();
        if let Some(p) = ports.iter().find(|p| !svc.ports.iter().any(|sp| sp.port == **p)) {
            let msg = format!("spec.ports: service {dest} has no port {p}");
            reports.unresolved(Kind::LoadBalancing, ns, name, reason::PORT_MISMATCH, msg.clone());
            reject(reports, reason::INVALID_SPEC, msg);
            continue;
        }
        let mut probe_svc = probe::bare(svc);
        probe_svc.load_balancer = lb.clone();
        if let Err(e) = probe::validate(vec![probe_svc]) {
            reject(reports, reason::INVALID_SPEC, format!("spec: {}", e.reason));
            continue;
        }
        let claim = claims.entry(dest.clone()).or_default();
        let me = format!("{ns}/{name}");
        let conflict = if ports.is_empty() {
            claim
                .whole
                .as_ref()
                .map(|w| format!("service {dest} already has load balancing {w}"))
        } else {
            ports.iter().find_map(|p| {
                claim
                    .ports
                    .get(p)
                    .map(|w| format!("port {p} of service {dest} already has load balancing {w}"))
            })
        };
        if let Some(msg) = conflict {
            reject(reports, reason::CONFLICTED, msg);
            continue;
        }
        if ports.is_empty() {
            claim.whole = Some(me);
            svc.load_balancer = lb;
        } else {
            for sp in svc.ports.iter_mut().filter(|sp| ports.contains(&sp.port)) {
                claim.ports.insert(sp.port, me.clone());
                sp.load_balancer = Some(lb.clone());
            }
        }
    }
}
