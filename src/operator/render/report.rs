//! Status reports: what the renderer found wrong with each SMI/policy object,
//! reduced to the two conditions every object carries (`Accepted`,
//! `ResolvedRefs`). Problems are collected while rendering; [`Reports::finish`]
//! turns them into condition values.

use crate::operator::state::{Kind, ObjectKey};
use std::collections::BTreeMap;

/// Condition reasons used by the operator.
pub mod reason {
    /// Object accepted.
    pub const ACCEPTED: &str = "Accepted";
    /// Every reference resolved.
    pub const RESOLVED: &str = "ResolvedRefs";
    /// A split backend Service does not exist.
    pub const BACKEND_NOT_FOUND: &str = "BackendNotFound";
    /// A referenced Service (split root, policy destination, fallback) does not exist.
    pub const SERVICE_NOT_FOUND: &str = "ServiceNotFound";
    /// A backend lacks a port of the root service.
    pub const PORT_MISMATCH: &str = "PortMismatch";
    /// A referenced HTTPRouteGroup does not exist (or is unusable).
    pub const ROUTE_GROUP_NOT_FOUND: &str = "RouteGroupNotFound";
    /// A referenced TCPRoute does not exist.
    pub const TCP_ROUTE_NOT_FOUND: &str = "TCPRouteNotFound";
    /// A rule names a match the route group does not have.
    pub const MATCH_NOT_FOUND: &str = "MatchNotFound";
    /// Weights sum to zero (or no backend is left).
    pub const INVALID_WEIGHTS: &str = "InvalidWeights";
    /// No usable backend is left.
    pub const NO_BACKENDS: &str = "NoBackends";
    /// The stored object cannot be read or breaks a rule.
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// Another object already configures the same thing.
    pub const CONFLICTED: &str = "Conflicted";
    /// The kind is accepted but not enforced (UDPRoute).
    pub const UNSUPPORTED_KIND: &str = "UnsupportedKind";
}

/// One condition's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CondValue {
    /// `True` or `False`.
    pub ok: bool,
    /// CamelCase reason.
    pub reason: String,
    /// Human-readable message.
    pub message: String,
}

/// The conditions of one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectReport {
    /// Generation the report is about.
    pub generation: Option<i64>,
    /// `Accepted`.
    pub accepted: CondValue,
    /// `ResolvedRefs`.
    pub resolved_refs: CondValue,
}

#[derive(Debug, Default)]
struct Problems {
    generation: Option<i64>,
    refs: Vec<(&'static str, String)>,
    rejected: Option<(&'static str, String)>,
    notes: Vec<String>,
}

/// Collects problems per object while rendering.
#[derive(Debug, Default)]
pub struct Reports {
    objects: BTreeMap<ObjectKey, Problems>,
}

fn key(kind: Kind, namespace: &str, name: &str) -> ObjectKey {
    ObjectKey {
        kind,
        namespace: namespace.to_string(),
        name: name.to_string(),
    }
}

impl Reports {
    /// Registers an object (so it gets a report even without problems).
    pub fn seen(&mut self, kind: Kind, namespace: &str, name: &str, generation: Option<i64>) {
        self.objects
            .entry(key(kind, namespace, name))
            .or_default()
            .generation = generation;
    }

    /// A reference did not resolve; the object may still be partly used.
    pub fn unresolved(&mut self, kind: Kind, namespace: &str, name: &str, why: &'static str, msg: String) {
        let p = self.objects.entry(key(kind, namespace, name)).or_default();
        if !p.refs.iter().any(|(r, m)| *r == why && *m == msg) {
            p.refs.push((why, msg));
        }
    }

    /// A Service the object names does not exist: reported as an unresolved
    /// reference and the object is not applied.
    pub fn service_missing(&mut self, kind: Kind, namespace: &str, name: &str, msg: String) {
        tracing::debug!(?kind, namespace, name, message = %msg, "service not found; object not applied");
        self.unresolved(kind, namespace, name, reason::SERVICE_NOT_FOUND, msg.clone());
        self.rejected(kind, namespace, name, reason::SERVICE_NOT_FOUND, msg);
    }

    /// The object is not applied at all (the first rejection wins).
    pub fn rejected(&mut self, kind: Kind, namespace: &str, name: &str, why: &'static str, msg: String) {
        let p = self.objects.entry(key(kind, namespace, name)).or_default();
        if p.rejected.is_none() {
            p.rejected = Some((why, msg));
        }
    }

    /// A remark added to the `Accepted=True` message (e.g. a TrafficSplit whose
    /// ports are routed by Gateway API routes instead).
    pub fn note(&mut self, kind: Kind, namespace: &str, name: &str, msg: String) {
        let p = self.objects.entry(key(kind, namespace, name)).or_default();
        if !p.notes.contains(&msg) {
            p.notes.push(msg);
        }
    }

    /// Whether the object was rejected so far.
    pub fn is_rejected(&self, kind: Kind, namespace: &str, name: &str) -> bool {
        self.objects
            .get(&key(kind, namespace, name))
            .is_some_and(|p| p.rejected.is_some())
    }

    /// The final conditions per object.
    pub fn finish(self) -> BTreeMap<ObjectKey, ObjectReport> {
        self.objects
            .into_iter()
            .map(|(k, p)| {
                let accepted = match p.rejected {
                    Some((why, msg)) => CondValue {
                        ok: false,
                        reason: why.into(),
                        message: msg,
                    },
                    None => CondValue {
                        ok: true,
                        reason: reason::ACCEPTED.into(),
                        message: std::iter::once("applied")
                            .chain(p.notes.iter().map(String::as_str))
                            .collect::<Vec<_>>()
                            .join("; "),
                    },
                };
                let resolved_refs = match p.refs.first() {
                    None => CondValue {
                        ok: true,
                        reason: reason::RESOLVED.into(),
                        message: "all references resolved".into(),
                    },
                    Some((why, _)) => CondValue {
                        ok: false,
                        reason: (*why).into(),
                        message: p
                            .refs
                            .iter()
                            .map(|(_, m)| m.as_str())
                            .collect::<Vec<_>>()
                            .join("; "),
                    },
                };
                (
                    k,
                    ObjectReport {
                        generation: p.generation,
                        accepted,
                        resolved_refs,
                    },
                )
            })
            .collect()
    }
}
