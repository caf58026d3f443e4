//! Gateway API routes (GAMMA: `HTTPRoute` / `GRPCRoute` whose parent is a
//! Service), rendered by the operator into flat [`RouteEntry`] lists on the
//! parent service: one entry per route match, already in Gateway API
//! precedence order, so the proxy takes the first entry that matches. A
//! GRPCRoute's service/method match arrives as a path match
//! (`/<service>/<method>`), so the proxy needs no gRPC-specific matching.
//!
//! When a service port has entries, they decide every HTTP request to it: a
//! request no entry matches is answered `404` (`x-weft-error: no-route`), and a
//! TrafficSplit on the same service is not used for that port (docs/gamma.md).

use crate::validate::err;
use crate::{ProxyConfig, ValidationError, compile_full};
use serde::{Deserialize, Serialize};

/// Largest backend weight (Gateway API's own limit).
pub const MAX_ROUTE_WEIGHT: u32 = 1_000_000;

/// One match of one route rule, with the rule's actions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteEntry {
    /// The rule this entry comes from: `<kind>/<namespace>/<name>/<rule>` where
    /// `<rule>` is the rule's name or its index (e.g.
    /// `httproute/shop/cart-canary/0`). Entries with the same source are one
    /// rule: they share its weighted backend choice.
    pub source: String,
    /// Service ports (of the parent service) the entry applies to; empty = every
    /// port (a parentRef without `port`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u16>,
    /// What a request must look like; the default matches every request.
    #[serde(default, rename = "match")]
    pub matches: RouteMatch,
    /// Applied in order to every request the entry takes (before the backend's
    /// own filters). A redirect answers the request itself.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<RouteFilter>,
    /// Weighted backends. Empty (and no redirect) = every request gets `500`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<RouteBackend>,
    /// `timeouts.request`: the whole request, retries included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// `timeouts.backendRequest`: each attempt to a backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_timeout_ms: Option<u64>,
}

/// Conditions that must all hold (AND). Everything absent = match all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteMatch {
    /// On the normalized request path (no query; dot segments removed,
    /// duplicate slashes merged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathMatch>,
    /// Upper-case method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Request headers; `name` lower-case. A repeated header's values are
    /// joined with `,` before matching.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<ValueMatch>,
    /// Query parameters (exact, case-sensitive names; the first value counts).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query_params: Vec<ValueMatch>,
}

/// A path condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind", content = "value")]
pub enum PathMatch {
    /// The whole path, byte for byte.
    Exact(String),
    /// Element-wise prefix: `/abc` matches `/abc`, `/abc/` and `/abc/d`, not
    /// `/abcd`; a trailing `/` of the value is ignored.
    Prefix(String),
    /// A regex that must match the whole path ([`compile_full`]).
    Regex(String),
}

/// A named value condition (header or query parameter).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ValueMatch {
    pub name: String,
    pub value: StringMatch,
}

/// How a value is compared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind", content = "value")]
pub enum StringMatch {
    Exact(String),
    /// Must match the whole value ([`compile_full`]).
    Regex(String),
}

/// A Gateway API filter, resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind", content = "spec")]
pub enum RouteFilter {
    /// `RequestHeaderModifier`.
    RequestHeaders(HeaderEdits),
    /// `ResponseHeaderModifier`.
    ResponseHeaders(HeaderEdits),
    /// `RequestRedirect`: the proxy answers with a redirect.
    Redirect(Redirect),
    /// `URLRewrite`.
    Rewrite(Rewrite),
    /// `RequestMirror`: a copy of the request goes to another service.
    Mirror(RouteMirror),
}

/// Header changes in Gateway API terms: `set` replaces, `add` appends,
/// `remove` deletes (names compared case-insensitively).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderEdits {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set: Vec<HeaderPair>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<HeaderPair>,
    /// Lower-case names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

/// A header name (lower-case) and value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderPair {
    pub name: String,
    pub value: String,
}

/// `RequestRedirect`: `Location` is built from the request with these parts
/// replaced. Port rules (Gateway API): an explicit `port` is used; else with a
/// `scheme` the scheme's well-known port; else the service port the request
/// was sent to. Port 80 with `http` and 443 with `https` are left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Redirect {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathRewrite>,
    /// 301, 302 (default), 303, 307 or 308.
    #[serde(default = "default_redirect_status")]
    pub status: u16,
}

fn default_redirect_status() -> u16 {
    302
}

/// `URLRewrite`: the request is forwarded with these parts replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rewrite {
    /// New `Host` (`:authority`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathRewrite>,
}

/// A path replacement (query kept).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind", content = "value")]
pub enum PathRewrite {
    /// `ReplaceFullPath`.
    Full(String),
    /// `ReplacePrefixMatch`: replaces the entry's [`PathMatch::Prefix`] (only
    /// valid with one), element-wise: prefix `/a` → `/b` turns `/a/x` into
    /// `/b/x`, and `/a` → `/` turns `/a/x` into `/x` and `/a` into `/`.
    Prefix(String),
}

/// `RequestMirror`, resolved to a service port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteMirror {
    /// Key (`namespace/name`) in [`ProxyConfig::services`].
    pub service: String,
    pub port: u16,
    /// Share of requests copied, 0–100 (Gateway API `percent` / `fraction`).
    pub percent: f64,
}

/// One weighted backend of a rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteBackend {
    /// Key (`namespace/name`) in [`ProxyConfig::services`]; `None` = the
    /// reference did not resolve (unknown Service, missing port, kind not
    /// supported or not permitted): requests picked for it get `500`, as
    /// Gateway API requires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Port of the backend Service.
    pub port: u16,
    /// Relative weight, 0..=[`MAX_ROUTE_WEIGHT`]; 0 = never chosen.
    pub weight: u32,
    /// Only [`RouteFilter::RequestHeaders`] and [`RouteFilter::ResponseHeaders`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<RouteFilter>,
}

/// Checks the route entries of one service (`path` names them in errors).
pub(crate) fn validate_routes(
    cfg: &ProxyConfig,
    path: &str,
    entries: &[RouteEntry],
) -> Result<(), ValidationError> {
    for (i, e) in entries.iter().enumerate() {
        let p = format!("{path}[{i}]");
        if e.source.is_empty() {
            return Err(err(format!("{p}.source"), "must not be empty"));
        }
        validate_match(&format!("{p}.match"), &e.matches)?;
        let prefix = matches!(e.matches.path, Some(PathMatch::Prefix(_)));
        validate_filters(cfg, &format!("{p}.filters"), &e.filters, prefix, false)?;
        for (j, b) in e.backends.iter().enumerate() {
            let bp = format!("{p}.backends[{j}]");
            if b.weight > MAX_ROUTE_WEIGHT {
                return Err(err(
                    format!("{bp}.weight"),
                    format!("must be at most {MAX_ROUTE_WEIGHT}"),
                ));
            }
            if let Some(s) = &b.service
                && !cfg.services.contains_key(s)
            {
                return Err(err(
                    format!("{bp}.service"),
                    format!("{s} is not a known service"),
                ));
            }
            validate_filters(cfg, &format!("{bp}.filters"), &b.filters, prefix, true)?;
        }
        if e.timeout_ms == Some(0) || e.backend_timeout_ms == Some(0) {
            return Err(err(format!("{p}.timeoutMs"), "0 is not a timeout (leave it out)"));
        }
    }
    Ok(())
}

fn validate_match(path: &str, m: &RouteMatch) -> Result<(), ValidationError> {
    match &m.path {
        Some(PathMatch::Exact(v) | PathMatch::Prefix(v)) if !v.starts_with('/') => {
            return Err(err(format!("{path}.path"), "must start with /"));
        }
        Some(PathMatch::Regex(re)) => {
            compile_full(re).map_err(|e| err(format!("{path}.path"), e.to_string()))?;
        }
        _ => {}
    }
    if let Some(m) = &m.method
        && (m.is_empty() || !m.chars().all(|c| c.is_ascii_uppercase()))
    {
        return Err(err(
            format!("{path}.method"),
            format!("{m:?} is not an upper-case method"),
        ));
    }
    for (i, h) in m.headers.iter().enumerate() {
        if h.name.is_empty() || h.name.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(err(
                format!("{path}.headers[{i}].name"),
                "must be a lower-case header name",
            ));
        }
        validate_value(&format!("{path}.headers[{i}].value"), &h.value)?;
    }
    for (i, q) in m.query_params.iter().enumerate() {
        if q.name.is_empty() {
            return Err(err(format!("{path}.queryParams[{i}].name"), "must not be empty"));
        }
        validate_value(&format!("{path}.queryParams[{i}].value"), &q.value)?;
    }
    Ok(())
}

fn validate_value(path: &str, v: &StringMatch) -> Result<(), ValidationError> {
    if let StringMatch::Regex(re) = v {
        compile_full(re).map_err(|e| err(path, e.to_string()))?;
    }
    Ok(())
}

fn validate_filters(
    cfg: &ProxyConfig,
    path: &str,
    filters: &[RouteFilter],
    prefix_match: bool,
    backend: bool,
) -> Result<(), ValidationError> {
    for (i, f) in filters.iter().enumerate() {
        let p = format!("{path}[{i}]");
        match f {
            RouteFilter::RequestHeaders(h) | RouteFilter::ResponseHeaders(h) => validate_edits(&p, h)?,
            _ if backend => return Err(err(p, "a backend may only modify headers")),
            RouteFilter::Redirect(r) => {
                if ![301, 302, 303, 307, 308].contains(&r.status) {
                    return Err(err(format!("{p}.status"), "must be 301, 302, 303, 307 or 308"));
                }
                if let Some(s) = &r.scheme
                    && s != "http"
                    && s != "https"
                {
                    return Err(err(format!("{p}.scheme"), "must be http or https"));
                }
                validate_rewrite_path(&format!("{p}.path"), r.path.as_ref(), prefix_match)?;
            }
            RouteFilter::Rewrite(r) => {
                validate_rewrite_path(&format!("{p}.path"), r.path.as_ref(), prefix_match)?
            }
            RouteFilter::Mirror(m) => {
                if !(m.percent.is_finite() && (0.0..=100.0).contains(&m.percent)) {
                    return Err(err(format!("{p}.percent"), "must be within 0..=100"));
                }
                let Some(svc) = cfg.services.get(&m.service) else {
                    return Err(err(
                        format!("{p}.service"),
                        format!("{} is not a known service", m.service),
                    ));
                };
                if !svc.ports.iter().any(|sp| sp.port == m.port) {
                    return Err(err(
                        format!("{p}.port"),
                        format!("{} has no port {}", m.service, m.port),
                    ));
                }
            }
        }
    }
    Ok(())
}

fn validate_edits(path: &str, h: &HeaderEdits) -> Result<(), ValidationError> {
    let names = h.set.iter().chain(&h.add).map(|p| &p.name).chain(&h.remove);
    for n in names {
        if n.is_empty() || n.chars().any(|c| c.is_ascii_uppercase()) || http_name_invalid(n) {
            return Err(err(path, format!("{n:?} is not a lower-case header name")));
        }
    }
    if let Some(p) = h
        .set
        .iter()
        .chain(&h.add)
        .find(|p| p.value.bytes().any(|b| b == b'\r' || b == b'\n'))
    {
        return Err(err(
            path,
            format!("the value of {} contains a line break", p.name),
        ));
    }
    Ok(())
}

fn http_name_invalid(n: &str) -> bool {
    !n.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn validate_rewrite_path(
    path: &str,
    p: Option<&PathRewrite>,
    prefix_match: bool,
) -> Result<(), ValidationError> {
    match p {
        Some(PathRewrite::Full(v) | PathRewrite::Prefix(v)) if !v.starts_with('/') => {
            Err(err(path, "must start with /"))
        }
        Some(PathRewrite::Prefix(_)) if !prefix_match => {
            Err(err(path, "ReplacePrefixMatch needs a PathPrefix match"))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
#[path = "route_tests.rs"]
mod tests;
