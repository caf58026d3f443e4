//! FaultInjection objects resolved per (calling identity, destination), like
//! Retry: `spec.source` names one identity, without it the policy holds for
//! every identity in the FaultInjection's namespace. Unlike retries, several
//! policies for the same pair are all listed (the proxy applies the first whose
//! matches hold): specific-source ones first, then by namespace/name.

use super::fault_match;
use super::probe;
use super::report::{Reports, reason};
use super::services::svc_key;
use crate::api::fault::FaultInjectionSpec;
use crate::operator::state::{ClusterState, Kind};
use std::collections::BTreeMap;
use weft_proxy_config::{FaultAbort, FaultDelay, FaultPolicy, Service};

/// A FaultInjection resolved against the cluster.
#[derive(Debug, Clone)]
pub struct ResolvedFault {
    /// Calling identity, or `None` = every identity in `namespace`.
    pub source: Option<(String, String)>,
    /// The FaultInjection's namespace.
    pub namespace: String,
    /// The FaultInjection's name.
    pub name: String,
    /// Destination service key (exists).
    pub destination: String,
    /// The policy.
    pub policy: FaultPolicy,
}

/// Converts a FaultInjection spec; `name` is the object's name (for match names).
pub fn fault_policy(source: String, name: &str, spec: &FaultInjectionSpec) -> Result<FaultPolicy, String> {
    let matches = spec
        .matches
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, m)| fault_match::convert(name, i, m))
        .collect::<Result<Vec<_>, _>>()?;
    let delay = match &spec.delay {
        None => None,
        Some(d) => {
            let delay_ms = d
                .fixed_delay
                .to_millis()
                .map_err(|e| format!("spec.delay.fixedDelay: {e}"))?;
            if delay_ms == 0 {
                return Err("spec.delay.fixedDelay must be greater than 0s".into());
            }
            Some(FaultDelay {
                delay_ms,
                percent: d.percentage,
            })
        }
    };
    let abort = spec.abort.as_ref().map(|a| FaultAbort {
        http_status: a.http_status,
        grpc_status: a.grpc_status,
        percent: a.percentage,
    });
    if delay.is_none() && abort.is_none() {
        return Err("spec must set at least one of delay, abort".into());
    }
    Ok(FaultPolicy {
        source,
        matches,
        delay,
        abort,
    })
}

/// The FaultInjection field behind a validation path of the probed policy
/// (`services["a/b"].faults[0].matches[1].pathRegex` → `spec.matches[1].path`).
fn spec_field(path: &str) -> String {
    let rest = path.rsplit_once("faults[0]").map_or("", |(_, rest)| rest);
    let field = [
        (".percent", ".percentage"),
        (".delayMs", ".fixedDelay"),
        (".pathRegex", ".path"),
        (".methods", ".method"),
    ]
    .iter()
    .fold(rest.to_string(), |f, (from, to)| f.replace(from, to));
    format!("spec{field}")
}

/// Resolves every FaultInjection, in the order policies are listed.
pub fn resolve(
    state: &ClusterState,
    services: &BTreeMap<String, Service>,
    reports: &mut Reports,
) -> Vec<ResolvedFault> {
    let mut out = Vec::new();
    for f in &state.fault_injections {
        let (ns, name) = (f.namespace.as_str(), f.name.as_str());
        reports.seen(Kind::FaultInjection, ns, name, f.generation);
        let reject = |reports: &mut Reports, why: &'static str, msg: String| {
            tracing::debug!(namespace = ns, name, reason = why, message = %msg, "FaultInjection not applied");
            reports.rejected(Kind::FaultInjection, ns, name, why, msg);
        };
        let spec = match &f.spec {
            Ok(s) => s,
            Err(e) => {
                reject(reports, reason::INVALID_SPEC, e.clone());
                continue;
            }
        };
        let destination = svc_key(
            spec.destination.namespace.as_deref().unwrap_or(ns),
            &spec.destination.name,
        );
        let Some(svc) = services.get(&destination) else {
            let msg = format!("destination service {destination} not found");
            reports.service_missing(Kind::FaultInjection, ns, name, msg);
            continue;
        };
        let policy = match fault_policy(format!("{ns}/{name}"), name, spec) {
            Ok(p) => p,
            Err(e) => {
                reject(reports, reason::INVALID_SPEC, e);
                continue;
            }
        };
        let mut probe_svc = probe::bare(svc);
        probe_svc.faults = vec![policy.clone()];
        if let Err(e) = probe::validate(vec![probe_svc]) {
            reject(
                reports,
                reason::INVALID_SPEC,
                format!("{}: {}", spec_field(&e.path), e.reason),
            );
            continue;
        }
        let source = spec.source.as_ref().map(|s| {
            (
                s.namespace.clone().unwrap_or_else(|| ns.to_string()),
                s.name.clone(),
            )
        });
        out.push(ResolvedFault {
            source,
            namespace: ns.to_string(),
            name: name.to_string(),
            destination,
            policy,
        });
    }
    out.sort_by(|a, b| {
        (a.source.is_none(), &a.namespace, &a.name).cmp(&(b.source.is_none(), &b.namespace, &b.name))
    });
    out
}

/// The fault policies per destination key for one identity, in order.
pub fn faults_for<'a>(
    faults: &'a [ResolvedFault],
    ns: &str,
    sa: &str,
) -> BTreeMap<&'a str, Vec<FaultPolicy>> {
    let mut out: BTreeMap<&str, Vec<FaultPolicy>> = BTreeMap::new();
    for f in faults {
        let applies = match &f.source {
            Some((sns, ssa)) => sns == ns && ssa == sa,
            None => f.namespace == ns,
        };
        if applies {
            out.entry(f.destination.as_str())
                .or_default()
                .push(f.policy.clone());
        }
    }
    out
}
