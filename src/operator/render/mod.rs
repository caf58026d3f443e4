//! The renderer: a pure, deterministic function from [`ClusterState`] to one
//! validated [`ProxyConfig`] per workload identity (namespace + ServiceAccount
//! with meshed pods) plus `Accepted`/`ResolvedRefs` reports for every SMI and
//! policy object. Bad input is reported and skipped; it never blocks other
//! objects, and a config that fails [`ProxyConfig::validate`] is never emitted.
//!
//! Scoping: in `smi` access mode an identity's config lists only the services it
//! can use — services without meshed endpoints, services whose endpoints run as
//! an identity that a TrafficTarget lets it call (or as itself), plus the split
//! backends, fallbacks and mirror targets those need. Anything else would be
//! refused by the destination's sidecar anyway. In `permissive` mode every
//! identity may call every service, so the services go once into the shared
//! [`catalog`] and each config references it instead of copying it (size and
//! render time then grow with services + identities, not their product).

pub mod balancing;
pub mod catalog;
pub mod fault;
pub mod fault_match;
pub mod gamma;
pub mod gamma_match;
pub mod gamma_refs;
pub mod gateway;
pub mod gateway_listeners;
pub mod gateway_routes;
pub mod inbound;
pub mod mirror;
pub mod policy;
pub mod probe;
pub mod report;
pub mod routes;
pub mod services;
pub mod split;

#[cfg(test)]
mod balancing_tests;
#[cfg(test)]
mod fault_tests;
#[cfg(test)]
mod gamma_tests;
#[cfg(test)]
mod gateway_tests;
#[cfg(test)]
mod mirror_tests;
#[cfg(test)]
mod permissive_tests;
#[cfg(test)]
mod tests;

use crate::operator::state::{ClusterState, ObjectKey, PodInfo, spiffe_id};
pub use catalog::{Catalog, RenderedShard};
pub use inbound::IdentityKey;
pub use report::{CondValue, ObjectReport, Reports};
use sha2::Digest;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use weft_proxy_config::{
    AccessMode, FaultPolicy, Identity, Inbound, MeshSettings, ProxyConfig, RetryPolicy, SCHEMA_VERSION,
    Service,
};

/// Largest payload written into a ConfigMap (the API server refuses ConfigMaps
/// over 1 MiB; the rest is headroom for metadata).
pub const MAX_CONFIG_BYTES: usize = 1_000_000;

/// One identity's rendered config.
#[derive(Debug, Clone)]
pub struct RenderedConfig {
    /// The validated config.
    pub config: ProxyConfig,
    /// Its canonical JSON (the ConfigMap payload).
    pub json: String,
    /// Hex SHA-256 of `json` (the `weft.dev/config-hash` annotation).
    pub hash: String,
    /// UID of the ServiceAccount (owner of the ConfigMap).
    pub owner_uid: String,
}

/// Everything one render produces.
#[derive(Debug, Default)]
pub struct RenderOutput {
    /// Configs per `(namespace, serviceaccount)`.
    pub configs: BTreeMap<IdentityKey, RenderedConfig>,
    /// Conditions per SMI/policy object.
    pub reports: BTreeMap<ObjectKey, ObjectReport>,
    /// Identities with meshed pods that got no config, and why.
    pub skipped: BTreeMap<IdentityKey, String>,
    /// The shared service catalog the configs reference (`permissive` mode).
    pub catalog: Option<Catalog>,
    /// Status per Gateway API route (GAMMA).
    pub gamma: BTreeMap<gamma::RouteKey, gamma::RouteReport>,
    /// Ingress gateways: what to run for each weft Gateway and its status.
    pub gateways: gateway::GatewayRender,
}

/// Hex SHA-256 of a payload.
pub fn content_hash(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Renders every identity's config and every object's report.
pub fn render(state: &ClusterState) -> RenderOutput {
    let td = state.mesh.trust_domain.as_str();
    let mut reports = Reports::default();
    let index = services::Index::new(state);
    let mut shared = services::build(&index, td);
    let routes = routes::build(state, &mut reports);
    split::apply(state, &routes, &mut shared, &mut reports);
    policy::apply_breakers(state, &mut shared, &mut reports);
    balancing::apply(state, &mut shared, &mut reports);
    mirror::apply(state, &mut shared, &mut reports);
    let routed = gamma::build(state, &shared);
    gamma::note_splits(state, &routed, &mut reports);
    for (key, entries) in &routed.producer {
        if let Some(svc) = shared.get_mut(key) {
            svc.routes = entries.clone();
        }
    }
    let retries = policy::resolve_retries(state, &shared, &mut reports);
    let faults = fault::resolve(state, &shared, &mut reports);
    let grants = inbound::build(state, &routes, td, &mut reports);
    let gateways = gateway::plan(state, &shared);
    let gateway_ids = gateway::by_identity(&gateways);

    let mut identities: BTreeMap<IdentityKey, Vec<&PodInfo>> = BTreeMap::new();
    for p in &state.meshed_pods {
        identities
            .entry((p.namespace.clone(), p.service_account.clone()))
            .or_default()
            .push(p);
    }
    // A gateway's identity gets its config before its pod exists (the pod
    // waits for it to become ready).
    for id in gateway_ids.keys() {
        identities.entry(id.clone()).or_default();
    }
    let owners: BTreeMap<(&str, &str), &str> = state
        .service_accounts
        .iter()
        .map(|sa| ((sa.namespace.as_str(), sa.name.as_str()), sa.uid.as_str()))
        .collect();
    let mut out = RenderOutput::default();
    if state.mesh.access_mode == AccessMode::Permissive {
        match catalog::build(&mut shared, td, &state.mesh.catalog_namespace) {
            Ok(c) => out.catalog = Some(c),
            Err(e) => {
                tracing::error!(error = %e, "service catalog could not be built; no config emitted");
                out.skipped = identities
                    .into_keys()
                    .map(|id| (id, format!("service catalog: {e}")))
                    .collect();
                out.reports = reports.finish();
                out.gamma = routed.reports;
                out.gateways = gateways;
                return out;
            }
        }
    }
    let scope = Scope::new(&shared);
    let mesh = MeshSettings {
        trust_domain: td.to_string(),
        access_mode: state.mesh.access_mode,
        mtls_mode: state.mesh.mtls_mode,
    };

    for (id, pods) in identities {
        let Some(owner) = owners.get(&(id.0.as_str(), id.1.as_str())).map(|o| o.to_string()) else {
            out.skipped.insert(id, "its ServiceAccount does not exist".into());
            continue;
        };
        let me = spiffe_id(td, &id.0, &id.1);
        let mine = policy::retries_for(&retries, &id.0, &id.1);
        let my_faults = fault::faults_for(&faults, &id.0, &id.1);
        let consumer = routed.consumer.get(&id.0);
        let my_gateway = gateway_ids.get(&id).copied();
        let (services, overlay, fault_overlay, catalog_ref) = match &out.catalog {
            Some(c) => {
                let overlay: BTreeMap<String, RetryPolicy> = mine
                    .into_iter()
                    .filter(|(dest, _)| shared.contains_key(*dest))
                    .map(|(dest, p)| (dest.to_string(), p.clone()))
                    .collect();
                let fault_overlay: BTreeMap<String, Vec<FaultPolicy>> = my_faults
                    .into_iter()
                    .filter(|(dest, _)| shared.contains_key(*dest))
                    .map(|(dest, f)| (dest.to_string(), f))
                    .collect();
                (BTreeMap::new(), overlay, fault_overlay, Some(c.reference()))
            }
            None => {
                let mut keys = scope.for_identity(&id, &me, &grants);
                // Consumer routes of this namespace replace the producer ones on the
                // services it lists, and bring their backends along.
                let extra: Vec<&String> = consumer
                    .into_iter()
                    .flatten()
                    .filter(|(svc, _)| keys.contains(*svc))
                    .flat_map(|(_, entries)| gamma::referenced(entries))
                    .filter_map(|k| shared.get_key_value(k).map(|(k, _)| k))
                    .collect();
                scope.close(&mut keys, extra);
                // A gateway reaches its route backends whatever SMI says: the
                // backends' sidecars decide (a denied gateway gets their 403).
                let backends: Vec<&String> = my_gateway
                    .into_iter()
                    .flat_map(|p| p.services.keys())
                    .filter_map(|k| shared.get_key_value(k).map(|(k, _)| k))
                    .collect();
                scope.close(&mut keys, backends);
                let mut services: BTreeMap<String, Service> =
                    keys.into_iter().map(|k| (k.clone(), shared[k].clone())).collect();
                for (svc, entries) in consumer.into_iter().flatten() {
                    if let Some(s) = services.get_mut(svc) {
                        s.routes = entries.clone();
                    }
                }
                for (dest, policy) in mine {
                    if let Some(svc) = services.get_mut(dest) {
                        svc.retry = Some(policy.clone());
                    }
                }
                for (dest, list) in my_faults {
                    if let Some(svc) = services.get_mut(dest) {
                        svc.faults = list;
                    }
                }
                (services, BTreeMap::new(), BTreeMap::new(), None)
            }
        };
        let mut grants_for_me = grants.by_destination.get(&id).cloned().unwrap_or_default();
        grants_for_me.sort_by(|a, b| a.source.cmp(&b.source));
        let config = ProxyConfig {
            schema_version: SCHEMA_VERSION,
            identity: Identity {
                namespace: id.0.clone(),
                service_account: id.1.clone(),
                spiffe_id: me,
            },
            mesh: mesh.clone(),
            services,
            inbound: Inbound {
                ports: inbound::ports(&pods),
                grants: grants_for_me,
            },
            catalog: catalog_ref,
            retries: overlay,
            faults: fault_overlay,
            routes: match &out.catalog {
                Some(_) => consumer
                    .into_iter()
                    .flatten()
                    .filter(|(svc, _)| shared.contains_key(*svc))
                    .map(|(svc, entries)| (svc.clone(), entries.clone()))
                    .collect(),
                None => BTreeMap::new(),
            },
            gateway: my_gateway.map(|p| p.config.clone()),
        };
        if let Err(e) = config.validate_unassembled(|k| shared.contains_key(k)) {
            tracing::error!(namespace = %id.0, service_account = %id.1, error = %e, "rendered config is invalid; not emitted");
            out.skipped.insert(id, e.to_string());
            continue;
        }
        match config.to_json() {
            Ok(json) if json.len() > MAX_CONFIG_BYTES => {
                tracing::error!(namespace = %id.0, service_account = %id.1, bytes = json.len(), "rendered config exceeds the ConfigMap limit; not emitted");
                out.skipped.insert(
                    id,
                    format!(
                        "config is {} bytes, over the {MAX_CONFIG_BYTES}-byte limit",
                        json.len()
                    ),
                );
            }
            Ok(json) => {
                let hash = content_hash(json.as_bytes());
                out.configs.insert(
                    id,
                    RenderedConfig {
                        config,
                        json,
                        hash,
                        owner_uid: owner,
                    },
                );
            }
            Err(e) => {
                out.skipped.insert(id, format!("serializing: {e}"));
            }
        }
    }
    out.reports = reports.finish();
    out.gamma = routed.reports;
    out.gateways = gateways;
    out
}

/// Which services each identity's config lists (`smi` mode).
struct Scope<'a> {
    /// Service key → SPIFFE IDs of its meshed endpoints.
    endpoint_ids: BTreeMap<&'a String, BTreeSet<&'a str>>,
    /// Service key → keys it depends on (split backends, fallback, mirror targets).
    deps: BTreeMap<&'a String, Vec<&'a String>>,
}

impl<'a> Scope<'a> {
    fn new(shared: &'a BTreeMap<String, Service>) -> Self {
        let mut endpoint_ids = BTreeMap::new();
        let mut deps = BTreeMap::new();
        for (key, svc) in shared {
            let ids: BTreeSet<&str> = svc
                .ports
                .iter()
                .flat_map(|p| p.endpoints.iter().filter_map(|e| e.identity.as_deref()))
                .collect();
            endpoint_ids.insert(key, ids);
            let mut d: Vec<&String> = Vec::new();
            if let Some(split) = &svc.split {
                d.extend(
                    split
                        .backends
                        .iter()
                        .filter_map(|b| shared.get_key_value(&b.service).map(|(k, _)| k)),
                );
            }
            if let Some(weft_proxy_config::Fallback::Service { service }) =
                svc.circuit_breaker.as_ref().and_then(|c| c.fallback.as_ref())
            {
                d.extend(shared.get_key_value(service).map(|(k, _)| k));
            }
            // A mirrored service is only valid next to its mirror targets.
            d.extend(
                svc.mirrors
                    .iter()
                    .filter_map(|m| shared.get_key_value(&m.service).map(|(k, _)| k)),
            );
            // Route backends and mirror targets (GAMMA producer routes).
            d.extend(
                gamma::referenced(&svc.routes)
                    .into_iter()
                    .filter_map(|k| shared.get_key_value(k).map(|(k, _)| k)),
            );
            deps.insert(key, d);
        }
        Self { endpoint_ids, deps }
    }

    fn for_identity(&self, id: &IdentityKey, me: &str, grants: &inbound::Grants) -> BTreeSet<&'a String> {
        let td_prefix = me.split("/ns/").next().unwrap_or_default();
        let allowed: HashSet<String> = grants
            .allowed
            .iter()
            .filter(|(src, _)| src == id)
            .map(|(_, (dns, dsa))| format!("{td_prefix}/ns/{dns}/sa/{dsa}"))
            .collect();
        let mut set: BTreeSet<&'a String> = self
            .endpoint_ids
            .iter()
            .filter(|(_, ids)| ids.is_empty() || ids.iter().any(|i| *i == me || allowed.contains(*i)))
            .map(|(k, _)| *k)
            .collect();
        let roots: Vec<&'a String> = set.iter().copied().collect();
        self.close(&mut set, roots);
        set
    }

    /// Adds `roots` and everything they depend on to `set`.
    fn close(&self, set: &mut BTreeSet<&'a String>, roots: Vec<&'a String>) {
        let mut stack = roots;
        set.extend(stack.iter().copied());
        while let Some(k) = stack.pop() {
            for d in self.deps.get(k).into_iter().flatten() {
                if set.insert(d) {
                    stack.push(d);
                }
            }
        }
    }
}
