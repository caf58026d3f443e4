//! Listener validation for weft Gateways (Gateway API v1, GATEWAY-HTTP):
//! protocols (`HTTP`, `HTTPS` with TLS mode `Terminate`; anything else is
//! `Accepted=False/UnsupportedProtocol`), conflicts between listeners on one
//! port (`ProtocolConflict`, `HostnameConflict`), `allowedRoutes.kinds`
//! (`ResolvedRefs=False/InvalidRouteKinds`, `supportedKinds` = the valid
//! subset) and `certificateRefs` (`kubernetes.io/tls` Secrets that exist and
//! parse; cross-namespace only with a ReferenceGrant from the Gateway's
//! namespace; else `InvalidCertificateRef` / `RefNotPermitted`). Pure.

use super::gateway::{GatewayPlan, ListenerReport, cond, gateway_key, reason};
use super::gateway_routes::ListenerView;
use crate::api::gateway::GROUP;
use crate::api::gateway::gateway::{GatewaySpec, Listener, ListenerTls, RouteGroupKind, SecretObjectRef};
use crate::operator::state::{ClusterState, GatewayInput};
use std::collections::BTreeSet;
use weft_proxy_config::ListenerProtocol;

/// Route kinds an HTTP or HTTPS listener serves.
pub const HTTP_ROUTE_KINDS: [&str; 2] = ["HTTPRoute", "GRPCRoute"];

/// One listener as checked.
#[derive(Debug, Clone)]
pub(super) struct Checked {
    /// What the route side sees.
    pub(super) view: ListenerView,
    /// Its status (`programmed` and `attached_routes` are set by the planner).
    pub(super) report: ListenerReport,
    /// Served: accepted, every reference resolved, not conflicted.
    pub(super) usable: bool,
    /// Certificate names (`<secret-ns>.<secret-name>`) with their source Secret.
    pub(super) certificates: Vec<(String, (String, String))>,
}

/// The name of the certificate copied from Secret `namespace/name`.
pub fn certificate_name(namespace: &str, name: &str) -> String {
    format!("{namespace}.{name}")
}

/// Checks every listener of `spec`, in spec order.
pub(super) fn check(state: &ClusterState, gw: &GatewayInput, spec: &GatewaySpec) -> Vec<Checked> {
    let conflicts = conflicts(&spec.listeners);
    let mut names = BTreeSet::new();
    spec.listeners
        .iter()
        .zip(conflicts)
        .map(|(l, conflict)| {
            let unique = names.insert(l.name.as_str());
            one(state, gw, l, conflict, unique)
        })
        .collect()
}

/// Which family of protocols may share a port with each other.
fn family(protocol: &str) -> &str {
    match protocol {
        "HTTPS" | "TLS" => "TLS",
        other => other,
    }
}

/// The conflict of each listener, if any (every listener involved is marked).
fn conflicts(listeners: &[Listener]) -> Vec<Option<(&'static str, String)>> {
    let host = |l: &Listener| l.hostname.as_ref().map(|h| h.to_ascii_lowercase());
    listeners
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let same_port = || {
                listeners
                    .iter()
                    .enumerate()
                    .filter(move |(j, o)| *j != i && o.port == l.port)
                    .map(|(_, o)| o)
            };
            // UDP shares port numbers with TCP-based protocols without conflict.
            let udp = |p: &str| p == "UDP";
            if let Some(o) = same_port()
                .find(|o| udp(&o.protocol) == udp(&l.protocol) && family(&o.protocol) != family(&l.protocol))
            {
                return Some((
                    reason::PROTOCOL_CONFLICT,
                    format!(
                        "listener {} uses protocol {} on port {}",
                        o.name, o.protocol, l.port
                    ),
                ));
            }
            same_port()
                .find(|o| family(&o.protocol) == family(&l.protocol) && host(o) == host(l))
                .map(|o| {
                    (
                        reason::HOSTNAME_CONFLICT,
                        format!("listener {} uses the same hostname on port {}", o.name, l.port),
                    )
                })
        })
        .collect()
}

/// Whether `h` (lower-case) is a hostname or `*.` wildcard the proxy accepts.
pub(super) fn valid_hostname(h: &str) -> bool {
    let body = h.strip_prefix("*.").unwrap_or(h);
    !body.is_empty()
        && h.len() <= 253
        && body.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

/// Problems of one listener.
#[derive(Default)]
struct Problems {
    rejected: Option<(&'static str, String)>,
    refs: Vec<(&'static str, String)>,
}

impl Problems {
    fn reject(&mut self, why: &'static str, msg: String) {
        self.rejected.get_or_insert((why, msg));
    }

    fn unresolved(&mut self, why: &'static str, msg: String) {
        self.refs.push((why, msg));
    }
}

fn one(
    state: &ClusterState,
    gw: &GatewayInput,
    l: &Listener,
    conflict: Option<(&'static str, String)>,
    unique: bool,
) -> Checked {
    let mut p = Problems::default();
    let protocol = match l.protocol.as_str() {
        "HTTP" => Some(ListenerProtocol::Http),
        "HTTPS" => Some(ListenerProtocol::Https),
        other => {
            p.reject(
                reason::UNSUPPORTED_PROTOCOL,
                format!("protocol {other} is not supported (HTTP and HTTPS are)"),
            );
            None
        }
    };
    let port = u16::try_from(l.port).ok().filter(|n| *n > 0);
    if port.is_none() {
        p.reject(reason::UNSUPPORTED_VALUE, format!("{} is not a port", l.port));
    }
    let hostname = l.hostname.as_ref().map(|h| h.to_ascii_lowercase());
    if let Some(h) = hostname.as_deref().filter(|h| !valid_hostname(h)) {
        p.reject(reason::UNSUPPORTED_VALUE, format!("{h:?} is not a hostname"));
    }
    if !unique {
        p.reject(
            reason::UNSUPPORTED_VALUE,
            format!("listener name {} is used twice", l.name),
        );
    }
    let supported_kinds = match protocol {
        Some(_) => route_kinds(l, &mut p),
        None => Vec::new(),
    };
    let certificates = match protocol {
        Some(ListenerProtocol::Https) => certificates(state, gw, l.tls.as_ref(), &mut p),
        _ => Vec::new(),
    };
    let accepted = match &p.rejected {
        Some((why, msg)) => cond(false, why, msg.clone()),
        None => cond(true, reason::ACCEPTED, "listener accepted"),
    };
    let resolved_refs = match p.refs.first() {
        None => cond(true, reason::RESOLVED_REFS, "all references resolved"),
        Some((why, _)) => {
            let msg: Vec<&str> = p.refs.iter().map(|(_, m)| m.as_str()).collect();
            cond(false, why, msg.join("; "))
        }
    };
    let conflicted = match &conflict {
        Some((why, msg)) => cond(false, why, msg.clone()),
        None => cond(true, reason::NO_CONFLICTS, "no conflicts"),
    };
    let usable = accepted.ok && resolved_refs.ok && conflicted.ok;
    if !usable {
        tracing::debug!(gateway = %gateway_key(&gw.namespace, &gw.name), listener = %l.name, accepted = %accepted.reason, resolved_refs = %resolved_refs.reason, conflicted = %conflicted.reason, "listener not served");
    }
    Checked {
        view: ListenerView {
            gateway: gateway_key(&gw.namespace, &gw.name),
            gateway_namespace: gw.namespace.clone(),
            gateway_name: gw.name.clone(),
            name: l.name.clone(),
            port: port.unwrap_or(0),
            protocol,
            hostname,
            allowed_routes: l.allowed_routes.clone(),
            supported_kinds: supported_kinds.clone(),
            attachable: accepted.ok && conflicted.ok,
        },
        report: ListenerReport {
            name: l.name.clone(),
            supported_kinds,
            attached_routes: 0,
            accepted,
            programmed: cond(false, reason::PENDING, "not planned yet"),
            resolved_refs,
            conflicted,
        },
        usable,
        certificates,
    }
}

/// `supportedKinds`: the valid subset of `allowedRoutes.kinds`, or every kind
/// an HTTP(S) listener serves when none are listed.
fn route_kinds(l: &Listener, p: &mut Problems) -> Vec<RouteGroupKind> {
    let kind = |k: &str| RouteGroupKind {
        group: Some(GROUP.into()),
        kind: k.into(),
    };
    let listed = l
        .allowed_routes
        .as_ref()
        .and_then(|a| a.kinds.as_ref())
        .filter(|k| !k.is_empty());
    let Some(listed) = listed else {
        return HTTP_ROUTE_KINDS.iter().map(|k| kind(k)).collect();
    };
    let mut out: Vec<RouteGroupKind> = Vec::new();
    for k in listed {
        let group = k.group.as_deref().unwrap_or(GROUP);
        if group == GROUP && HTTP_ROUTE_KINDS.contains(&k.kind.as_str()) {
            let valid = kind(&k.kind);
            if !out.contains(&valid) {
                out.push(valid);
            }
        } else {
            p.unresolved(
                reason::INVALID_ROUTE_KINDS,
                format!(
                    "route kind {group}/{} is not supported on {} listeners",
                    k.kind, l.protocol
                ),
            );
        }
    }
    out
}

/// Whether a ReferenceGrant in `ns` lets Gateways of `from_ns` use Secret `name`.
fn secret_permitted(state: &ClusterState, from_ns: &str, ns: &str, name: &str) -> bool {
    from_ns == ns
        || state.reference_grants.iter().any(|g| {
            g.namespace == ns
                && g.spec.as_ref().is_ok_and(|s| {
                    s.from
                        .iter()
                        .any(|f| f.group == GROUP && f.kind == "Gateway" && f.namespace == from_ns)
                        && s.to.iter().any(|t| {
                            (t.group.is_empty() || t.group == "core")
                                && t.kind == "Secret"
                                && t.name.as_deref().is_none_or(|n| n == name)
                        })
                })
        })
}

/// The certificates of an HTTPS listener (TLS mode `Terminate`).
fn certificates(
    state: &ClusterState,
    gw: &GatewayInput,
    tls: Option<&ListenerTls>,
    p: &mut Problems,
) -> Vec<(String, (String, String))> {
    let mode = tls.and_then(|t| t.mode.as_deref()).unwrap_or("Terminate");
    if mode != "Terminate" {
        p.reject(
            reason::UNSUPPORTED_VALUE,
            format!("TLS mode {mode} is not supported on HTTPS listeners"),
        );
        return Vec::new();
    }
    let refs: &[SecretObjectRef] = tls.map_or(&[], |t| t.certificate_refs.as_slice());
    if refs.is_empty() {
        p.unresolved(
            reason::INVALID_CERTIFICATE_REF,
            "an HTTPS listener needs a certificateRef".into(),
        );
    }
    let mut out: Vec<(String, (String, String))> = Vec::new();
    for r in refs {
        let group = r.group.as_deref().unwrap_or("");
        let kind = r.kind.as_deref().unwrap_or("Secret");
        let ns = r.namespace.as_deref().unwrap_or(&gw.namespace);
        let what = format!("certificateRef {ns}/{}", r.name);
        if !(group.is_empty() || group == "core") || kind != "Secret" {
            p.unresolved(
                reason::INVALID_CERTIFICATE_REF,
                format!("{what}: {group}/{kind} is not a Secret"),
            );
            continue;
        }
        if !secret_permitted(state, &gw.namespace, ns, &r.name) {
            p.unresolved(
                reason::REF_NOT_PERMITTED,
                format!("{what}: no ReferenceGrant in {ns} allows it"),
            );
            continue;
        }
        match state.gateway.tls_secrets.get(&(ns.to_string(), r.name.clone())) {
            Some(true) => {
                let entry = (certificate_name(ns, &r.name), (ns.to_string(), r.name.clone()));
                if !out.contains(&entry) {
                    out.push(entry);
                }
            }
            Some(false) => p.unresolved(
                reason::INVALID_CERTIFICATE_REF,
                format!("{what}: not a valid kubernetes.io/tls Secret"),
            ),
            None => p.unresolved(
                reason::INVALID_CERTIFICATE_REF,
                format!("{what}: no such kubernetes.io/tls Secret"),
            ),
        }
    }
    out
}

/// Whether a plan's listener named `name` is served (in the config).
pub fn is_served(plan: &GatewayPlan, name: &str) -> bool {
    plan.config.listeners.iter().any(|l| l.name == name)
}
