//! Reference resolution for GAMMA routes: backendRefs and mirror targets
//! (Service kind, namespace rules, ReferenceGrants, ports) and filter
//! translation, collecting the per-parent problems that become the route's
//! `Accepted` / `ResolvedRefs` conditions.

use super::gamma::{ParentReport, reason};
use super::gamma_match::{self as tr, Unsupported};
use super::report::CondValue;
use super::services::svc_key;
use crate::api::gateway::{BackendRef, Filter, GROUP, ParentRef, ReferenceGrantSpec, RuleBackend};
use crate::operator::state::{GammaRoute, Input};
use std::collections::BTreeMap;
use weft_proxy_config::{MAX_ROUTE_WEIGHT, RouteBackend, RouteFilter, RouteMirror, Service};

/// What went wrong for one parent.
#[derive(Default)]
pub(super) struct Problems {
    pub(super) rejected: Option<(&'static str, String)>,
    refs: Vec<(&'static str, String)>,
}

impl Problems {
    pub(super) fn reject(&mut self, why: &'static str, msg: String) {
        self.rejected.get_or_insert((why, msg));
    }

    fn unresolved(&mut self, why: &'static str, msg: String) {
        if !self.refs.iter().any(|(r, m)| *r == why && *m == msg) {
            self.refs.push((why, msg));
        }
    }

    pub(super) fn finish(self, parent_ref: ParentRef) -> ParentReport {
        self.finish_for(parent_ref, "route attached to the Service")
    }

    /// [`Problems::finish`] with the message of an accepted route.
    pub(super) fn finish_for(self, parent_ref: ParentRef, attached: &str) -> ParentReport {
        let accepted = match self.rejected {
            Some((why, msg)) => cond(false, why, msg),
            None => cond(true, reason::ACCEPTED, attached.into()),
        };
        let resolved_refs = match self.refs.first() {
            None => cond(true, reason::RESOLVED_REFS, "all references resolved".into()),
            Some((why, _)) => {
                let msg = self
                    .refs
                    .iter()
                    .map(|(_, m)| m.as_str())
                    .collect::<Vec<_>>()
                    .join("; ");
                cond(false, why, msg)
            }
        };
        ParentReport {
            parent_ref,
            accepted,
            resolved_refs,
        }
    }
}

fn cond(ok: bool, why: &str, message: String) -> CondValue {
    CondValue {
        ok,
        reason: why.into(),
        message,
    }
}

/// The route being rendered for one parent.
pub(super) struct Ctx<'a> {
    pub(super) route: &'a GammaRoute,
    pub(super) parent_ns: &'a str,
    pub(super) services: &'a BTreeMap<String, Service>,
    pub(super) grants: &'a [Input<ReferenceGrantSpec>],
}

impl Ctx<'_> {
    /// Whether the route may reference Service `ns/name` (same namespace, the
    /// parent's namespace, or a ReferenceGrant there).
    fn permitted(&self, ns: &str, name: &str) -> bool {
        let r = self.route;
        ns == r.namespace
            || ns == self.parent_ns
            || self.grants.iter().any(|g| {
                g.namespace == ns
                    && g.spec.as_ref().is_ok_and(|s| {
                        s.from.iter().any(|f| {
                            f.group == GROUP && f.kind == r.kind.name() && f.namespace == r.namespace
                        }) && s.to.iter().any(|t| {
                            t.group.is_empty()
                                && t.kind == "Service"
                                && t.name.as_deref().is_none_or(|n| n == name)
                        })
                    })
            })
    }

    /// A backend as `(service key, port)`, or why not.
    fn resolve(&self, b: &BackendRef, p: &mut Problems) -> Option<(String, u16)> {
        let group = b.group.as_deref().unwrap_or("");
        let kind = b.kind.as_deref().unwrap_or("Service");
        if !(group.is_empty() || group == "core") || kind != "Service" {
            p.unresolved(
                reason::INVALID_KIND,
                format!("backend {group}/{kind} {} is not a Service", b.name),
            );
            return None;
        }
        let ns = b.namespace.as_deref().unwrap_or(&self.route.namespace);
        let key = svc_key(ns, &b.name);
        if !self.permitted(ns, &b.name) {
            p.unresolved(
                reason::REF_NOT_PERMITTED,
                format!("backend {key}: no ReferenceGrant in {ns} allows it"),
            );
            return None;
        }
        let Some(svc) = self.services.get(&key) else {
            p.unresolved(reason::BACKEND_NOT_FOUND, format!("service {key} not found"));
            return None;
        };
        let port = b.port.and_then(|x| u16::try_from(x).ok());
        match port {
            Some(n) if svc.ports.iter().any(|sp| sp.port == n) => Some((key, n)),
            _ => {
                let port = b.port.map_or("(none)".into(), |x| x.to_string());
                p.unresolved(
                    reason::BACKEND_NOT_FOUND,
                    format!("service {key} has no port {port}"),
                );
                None
            }
        }
    }

    fn filter(
        &self,
        f: &Filter,
        backend: bool,
        p: &mut Problems,
    ) -> Result<Option<RouteFilter>, Unsupported> {
        let missing = || Unsupported(format!("filter {} has no {} settings", f.type_, f.type_));
        let out = match f.type_.as_str() {
            "RequestHeaderModifier" => RouteFilter::RequestHeaders(tr::header_edits(
                f.request_header_modifier.as_ref().ok_or_else(missing)?,
            )),
            "ResponseHeaderModifier" => RouteFilter::ResponseHeaders(tr::header_edits(
                f.response_header_modifier.as_ref().ok_or_else(missing)?,
            )),
            _ if backend => {
                return Err(Unsupported(format!(
                    "backend filter type {} is not supported",
                    f.type_
                )));
            }
            "RequestRedirect" => {
                RouteFilter::Redirect(tr::redirect(f.request_redirect.as_ref().ok_or_else(missing)?)?)
            }
            "URLRewrite" => RouteFilter::Rewrite(tr::rewrite(f.url_rewrite.as_ref().ok_or_else(missing)?)?),
            "RequestMirror" => {
                let m = f.request_mirror.as_ref().ok_or_else(missing)?;
                // An unresolved mirror is left out (ResolvedRefs says why).
                let Some((service, port)) = self.resolve(&m.backend_ref, p) else {
                    return Ok(None);
                };
                let percent = match (&m.percent, &m.fraction) {
                    (Some(pc), _) => f64::from(*pc),
                    (None, Some(fr)) => {
                        let den = fr.denominator.unwrap_or(100);
                        if den <= 0 {
                            return Err(Unsupported("mirror fraction denominator must be positive".into()));
                        }
                        f64::from(fr.numerator) * 100.0 / f64::from(den)
                    }
                    (None, None) => 100.0,
                };
                RouteFilter::Mirror(RouteMirror {
                    service,
                    port,
                    percent: percent.clamp(0.0, 100.0),
                })
            }
            other => return Err(Unsupported(format!("filter type {other} is not supported"))),
        };
        Ok(Some(out))
    }

    pub(super) fn filters(&self, fs: &[Filter], backend: bool, p: &mut Problems) -> Vec<RouteFilter> {
        let mut out = Vec::new();
        for f in fs {
            match self.filter(f, backend, p) {
                Ok(x) => out.extend(x),
                Err(e) => p.reject(reason::UNSUPPORTED_VALUE, e.0),
            }
        }
        out
    }

    pub(super) fn backend(&self, b: &RuleBackend, p: &mut Problems) -> RouteBackend {
        let resolved = self.resolve(&b.backend, p);
        let weight = b.backend.weight.unwrap_or(1).clamp(0, MAX_ROUTE_WEIGHT as i32);
        RouteBackend {
            port: resolved
                .as_ref()
                .map(|r| r.1)
                .or_else(|| b.backend.port.and_then(|x| u16::try_from(x).ok()))
                .unwrap_or(0),
            service: resolved.map(|r| r.0),
            weight: u32::try_from(weight).unwrap_or(0),
            filters: self.filters(&b.filters, true, p),
        }
    }
}
