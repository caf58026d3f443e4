//! TrafficMirror objects resolved onto the shared destination services (every
//! client mirrors, and the `permissive` catalog carries them). Several mirrors
//! of one Service all apply, in namespace/name order. In `smi` mode the mirror
//! target is a dependency of the mirrored service (see `Scope` in the parent
//! module), so every config that lists the one lists the other.

use super::probe;
use super::report::{Reports, reason};
use super::services::svc_key;
use crate::api::mirror::{DEFAULT_MAX_BODY_BYTES, DEFAULT_PERCENTAGE};
use crate::operator::state::{ClusterState, Kind};
use std::collections::BTreeMap;
use weft_proxy_config::{MirrorPolicy, Service};

/// Appends every TrafficMirror's policy to its destination in `services`.
pub fn apply(state: &ClusterState, services: &mut BTreeMap<String, Service>, reports: &mut Reports) {
    let mut objects: Vec<_> = state.traffic_mirrors.iter().collect();
    objects.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    for o in objects {
        let (ns, name) = (o.namespace.as_str(), o.name.as_str());
        reports.seen(Kind::TrafficMirror, ns, name, o.generation);
        let reject = |reports: &mut Reports, why: &'static str, msg: String| {
            tracing::debug!(namespace = ns, name, reason = why, message = %msg, "TrafficMirror not applied");
            reports.rejected(Kind::TrafficMirror, ns, name, why, msg);
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
        let target = svc_key(spec.mirror.namespace.as_deref().unwrap_or(ns), &spec.mirror.name);
        if let Some(k) = [&dest, &target].into_iter().find(|k| !services.contains_key(*k)) {
            let msg = format!("service {k} not found");
            reports.service_missing(Kind::TrafficMirror, ns, name, msg);
            continue;
        }
        if dest == target {
            reject(
                reports,
                reason::INVALID_SPEC,
                format!("spec.mirror must differ from spec.destination (both are {dest})"),
            );
            continue;
        }
        let policy = MirrorPolicy {
            source: format!("{ns}/{name}"),
            service: target.clone(),
            port: spec.mirror.port,
            percent: spec.percentage.unwrap_or(DEFAULT_PERCENTAGE),
            max_body_bytes: spec.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES),
        };
        let (Some(d), Some(t)) = (services.get(&dest), services.get(&target)) else {
            continue;
        };
        let mut probe_dest = probe::bare(d);
        probe_dest.mirrors = vec![policy.clone()];
        if let Err(e) = probe::validate(vec![probe_dest, probe::bare(t)]) {
            let field = if e.path.ends_with(".port") {
                reports.unresolved(
                    Kind::TrafficMirror,
                    ns,
                    name,
                    reason::PORT_MISMATCH,
                    e.reason.clone(),
                );
                "spec.mirror.port"
            } else if e.path.ends_with(".maxBodyBytes") {
                "spec.maxBodyBytes"
            } else if e.path.ends_with(".percent") {
                "spec.percentage"
            } else {
                "spec"
            };
            reject(reports, reason::INVALID_SPEC, format!("{field}: {}", e.reason));
            continue;
        }
        if let Some(d) = services.get_mut(&dest) {
            d.mirrors.push(policy);
        }
    }
}
