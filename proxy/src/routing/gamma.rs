//! Gateway API routes (GAMMA: HTTPRoute / GRPCRoute attached to a Service),
//! compiled per service port from the flat [`RouteEntry`] lists the operator
//! renders. The entries arrive in precedence order; a request takes the first
//! entry whose match holds ([`GammaRoutes::find`]). Entries with the same
//! `source` are one rule and share one [`RuleBackends`] (one weighted picker),
//! so the split is exact over the rule's window whichever match a request took.
//!
//! Compilation never fails for a validated config: a regex or header value
//! that cannot be compiled anyway makes its match impossible or drops that one
//! edit (logged), it does not fail the table. The request-path side is
//! [`crate::proxy::gamma`].

use super::split::WeightedPicker;
use super::table::{Backend, Builder};
use super::traffic::MirrorRoute;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use regex::Regex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use weft_proxy_config::{
    HeaderEdits, MAX_MIRROR_BODY_BYTES, PathMatch, Protocol, Redirect, Rewrite, RouteBackend, RouteEntry,
    RouteFilter, RouteMatch, Service, StringMatch, compile_full,
};

/// What a route match looks at.
#[derive(Debug, Clone, Copy)]
pub struct RouteRequest<'r> {
    pub method: &'r Method,
    /// The normalized path (see [`super::path`]), no query.
    pub path: &'r str,
    /// The raw query string, without `?`.
    pub query: Option<&'r str>,
    pub headers: &'r HeaderMap,
}

/// Time limits a route sets for its requests; each replaces the backend's
/// Retry value when set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouteTimeouts {
    /// `timeouts.request`: the whole request, retries and backoff included.
    pub request: Option<Duration>,
    /// `timeouts.backendRequest`: each attempt.
    pub backend: Option<Duration>,
}

#[derive(Debug)]
enum PathCond {
    Exact(String),
    /// Without a trailing `/`; empty = every path.
    Prefix(String),
    Regex(Regex),
}

#[derive(Debug)]
enum ValueCond {
    Exact(String),
    Regex(Regex),
}

impl ValueCond {
    fn compile(v: &StringMatch) -> Option<Self> {
        match v {
            StringMatch::Exact(s) => Some(Self::Exact(s.clone())),
            StringMatch::Regex(re) => compile_full(re).ok().map(Self::Regex),
        }
    }

    fn holds(&self, value: &str) -> bool {
        match self {
            Self::Exact(s) => s == value,
            Self::Regex(re) => re.is_match(value),
        }
    }
}

/// One compiled [`RouteMatch`]: every present condition must hold.
#[derive(Debug)]
struct EntryMatch {
    path: Option<PathCond>,
    method: Option<Method>,
    headers: Vec<(HeaderName, ValueCond)>,
    query: Vec<(String, ValueCond)>,
    /// A condition no request can satisfy (a name or regex that does not compile).
    never: bool,
}

/// Whether `path` starts with `prefix` (no trailing `/`) element-wise.
pub fn prefix_holds(prefix: &str, path: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The first value of query parameter `name` in a raw query string (names and
/// values percent-decoded; a parameter without `=` has an empty value).
pub fn query_value(query: &str, name: &str) -> Option<String> {
    query.split('&').filter(|p| !p.is_empty()).find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == name).then(|| percent_decode(v))
    })
}

/// Decodes `%XX` escapes; malformed escapes are kept as they are.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    if !b.contains(&b'%') {
        return s.to_owned();
    }
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let escaped = (c == b'%')
            .then(|| Some((hex(*b.get(i + 1)?)?, hex(*b.get(i + 2)?)?)))
            .flatten();
        match escaped {
            Some((h, l)) => {
                out.push((h << 4) | l);
                i += 3;
            }
            None => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A header's values joined with `,` (`None` when absent).
fn joined_header(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let mut values = headers.get_all(name).iter().peekable();
    values.peek()?;
    let parts: Vec<String> = values
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    Some(parts.join(","))
}

impl EntryMatch {
    fn compile(source: &str, m: &RouteMatch) -> Self {
        let mut never = false;
        let path = match &m.path {
            None => None,
            Some(PathMatch::Exact(p)) => Some(PathCond::Exact(p.clone())),
            Some(PathMatch::Prefix(p)) => Some(PathCond::Prefix(p.trim_end_matches('/').to_owned())),
            Some(PathMatch::Regex(re)) => match compile_full(re) {
                Ok(r) => Some(PathCond::Regex(r)),
                Err(error) => {
                    tracing::warn!(%source, %error, "route path regex does not compile; the match never holds");
                    never = true;
                    None
                }
            },
        };
        let method = match m.method.as_deref().map(|x| Method::from_bytes(x.as_bytes())) {
            None => None,
            Some(Ok(x)) => Some(x),
            Some(Err(_)) => {
                never = true;
                None
            }
        };
        let mut headers = Vec::with_capacity(m.headers.len());
        for h in &m.headers {
            match (
                HeaderName::from_bytes(h.name.as_bytes()),
                ValueCond::compile(&h.value),
            ) {
                (Ok(n), Some(c)) => headers.push((n, c)),
                _ => never = true,
            }
        }
        let mut query = Vec::with_capacity(m.query_params.len());
        for q in &m.query_params {
            match ValueCond::compile(&q.value) {
                Some(c) => query.push((q.name.clone(), c)),
                None => never = true,
            }
        }
        if never {
            tracing::warn!(%source, "route match cannot be compiled; it never holds");
        }
        Self {
            path,
            method,
            headers,
            query,
            never,
        }
    }

    fn holds(&self, req: &RouteRequest<'_>) -> bool {
        if self.never || self.method.as_ref().is_some_and(|m| m != req.method) {
            return false;
        }
        let path_ok = match &self.path {
            None => true,
            Some(PathCond::Exact(p)) => p == req.path,
            Some(PathCond::Prefix(p)) => prefix_holds(p, req.path),
            Some(PathCond::Regex(re)) => re.is_match(req.path),
        };
        path_ok
            && self
                .headers
                .iter()
                .all(|(name, cond)| joined_header(req.headers, name).is_some_and(|v| cond.holds(&v)))
            && self.query.iter().all(|(name, cond)| {
                req.query
                    .and_then(|q| query_value(q, name))
                    .is_some_and(|v| cond.holds(&v))
            })
    }
}

/// Compiled header edits: `set` replaces, `add` appends, `remove` deletes.
#[derive(Debug, Default)]
pub struct CompiledEdits {
    set: Vec<(HeaderName, HeaderValue)>,
    add: Vec<(HeaderName, HeaderValue)>,
    remove: Vec<HeaderName>,
}

impl CompiledEdits {
    /// Compiles `edits`, leaving out (and logging) names or values no message can carry.
    pub fn compile(source: &str, edits: &HeaderEdits) -> Self {
        let pair = |p: &weft_proxy_config::HeaderPair| match (
            HeaderName::from_bytes(p.name.as_bytes()),
            HeaderValue::from_str(&p.value),
        ) {
            (Ok(n), Ok(v)) => Some((n, v)),
            _ => {
                tracing::warn!(%source, header = %p.name, "route header edit is not a valid header; left out");
                None
            }
        };
        Self {
            set: edits.set.iter().filter_map(pair).collect(),
            add: edits.add.iter().filter_map(pair).collect(),
            remove: edits
                .remove
                .iter()
                .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
                .collect(),
        }
    }

    /// Applies the edits (header names are case-insensitive by construction).
    pub fn apply(&self, headers: &mut HeaderMap) {
        for (n, v) in &self.set {
            headers.insert(n.clone(), v.clone());
        }
        for (n, v) in &self.add {
            headers.append(n.clone(), v.clone());
        }
        for n in &self.remove {
            headers.remove(n);
        }
    }
}

/// Request and response header edits of a rule or a backend, in filter order.
#[derive(Debug, Default)]
pub struct HeaderFilters {
    pub request: Vec<CompiledEdits>,
    pub response: Vec<CompiledEdits>,
}

impl HeaderFilters {
    fn compile(source: &str, filters: &[RouteFilter]) -> Self {
        let mut out = Self::default();
        for f in filters {
            match f {
                RouteFilter::RequestHeaders(h) => out.request.push(CompiledEdits::compile(source, h)),
                RouteFilter::ResponseHeaders(h) => out.response.push(CompiledEdits::compile(source, h)),
                _ => {}
            }
        }
        out
    }
}

/// One weighted backend of a rule.
#[derive(Debug)]
pub struct RouteTarget {
    /// `None`: the reference did not resolve; requests picked for it get `500`.
    pub backend: Option<Arc<Backend>>,
    /// The protocol of the backend's service port (`Detect` when unresolved).
    pub protocol: Protocol,
    /// The backend's own header filters (after the rule's).
    pub headers: HeaderFilters,
}

/// The backends of one rule and their picker, shared by the rule's entries.
#[derive(Debug)]
pub struct RuleBackends {
    /// `None` when there is no backend with a non-zero weight.
    picker: Option<WeightedPicker>,
    targets: Vec<RouteTarget>,
}

impl RuleBackends {
    /// The next backend by weight; `None` when the rule has none.
    pub fn pick(&self) -> Option<&RouteTarget> {
        self.picker.as_ref().and_then(|p| self.targets.get(p.pick()))
    }
}

/// One compiled entry (one match of one rule).
#[derive(Debug)]
pub struct GammaEntry {
    /// `<kind>/<namespace>/<name>/<rule>`.
    pub source: Arc<str>,
    matcher: EntryMatch,
    /// The prefix match value without its trailing `/` (for `ReplacePrefixMatch`).
    pub prefix: Option<String>,
    pub headers: HeaderFilters,
    /// A redirect answers the request itself.
    pub redirect: Option<Redirect>,
    pub rewrite: Option<Rewrite>,
    /// Copies of the requests the entry takes.
    pub mirrors: Arc<[MirrorRoute]>,
    pub rule: Arc<RuleBackends>,
    pub timeouts: RouteTimeouts,
}

/// The entries of one service port, in precedence order.
#[derive(Debug)]
pub struct GammaRoutes {
    entries: Vec<GammaEntry>,
}

impl GammaEntry {
    /// Whether the entry's match holds for `req`.
    pub fn holds(&self, req: &RouteRequest<'_>) -> bool {
        self.matcher.holds(req)
    }
}

impl GammaRoutes {
    /// The first entry whose match holds.
    pub fn find(&self, req: &RouteRequest<'_>) -> Option<&GammaEntry> {
        self.entries.iter().find(|e| e.matcher.holds(req))
    }

    /// Number of entries (for logs and tests).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries (never true for a built table).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl<'a> Builder<'a> {
    /// The routes of `svc` (key `key`) for requests dialled to `port`; `None`
    /// when no entry applies to the port.
    pub(super) fn gamma(&mut self, key: &'a str, svc: &'a Service, port: u16) -> Option<GammaRoutes> {
        let applicable = svc
            .routes
            .iter()
            .filter(|e| e.ports.is_empty() || e.ports.contains(&port));
        let mut rules: HashMap<&'a str, Arc<RuleBackends>> = HashMap::new();
        let mut entries = Vec::new();
        for e in applicable {
            let rule = match rules.get(e.source.as_str()) {
                Some(r) => Arc::clone(r),
                None => {
                    let r = Arc::new(self.rule_backends(Some((svc, port)), e));
                    rules.insert(e.source.as_str(), Arc::clone(&r));
                    r
                }
            };
            entries.push(self.gamma_entry(e, rule));
        }
        if entries.is_empty() {
            return None;
        }
        tracing::debug!(service = %key, port, entries = entries.len(), "gamma routes compiled");
        Some(GammaRoutes { entries })
    }

    pub(super) fn gamma_entry(&mut self, e: &'a RouteEntry, rule: Arc<RuleBackends>) -> GammaEntry {
        let mut redirect = None;
        let mut rewrite = None;
        let mut mirrors = Vec::new();
        for f in &e.filters {
            match f {
                RouteFilter::Redirect(r) => redirect = redirect.or_else(|| Some(r.clone())),
                RouteFilter::Rewrite(r) => rewrite = rewrite.or_else(|| Some(r.clone())),
                RouteFilter::Mirror(m) => {
                    let Some((mkey, msvc)) = self.cfg.services.get_key_value(&m.service) else {
                        continue;
                    };
                    if msvc.ports.iter().any(|p| p.port == m.port) {
                        let mut copy = self.mirror_route(&e.source, mkey.as_str(), msvc, m.port);
                        copy.percent = m.percent;
                        copy.max_body_bytes = MAX_MIRROR_BODY_BYTES;
                        mirrors.push(copy);
                    }
                }
                RouteFilter::RequestHeaders(_) | RouteFilter::ResponseHeaders(_) => {}
            }
        }
        GammaEntry {
            source: Arc::from(e.source.as_str()),
            matcher: EntryMatch::compile(&e.source, &e.matches),
            prefix: match &e.matches.path {
                Some(PathMatch::Prefix(p)) => Some(p.trim_end_matches('/').to_owned()),
                _ => None,
            },
            headers: HeaderFilters::compile(&e.source, &e.filters),
            redirect,
            rewrite,
            mirrors: mirrors.into(),
            rule,
            timeouts: RouteTimeouts {
                request: e.timeout_ms.map(Duration::from_millis),
                backend: e.backend_timeout_ms.map(Duration::from_millis),
            },
        }
    }

    /// The backends of the rule `e` belongs to, reached through `root` port `port`
    /// (`None`: each backend is addressed directly, as from a gateway listener);
    /// built from the rule's first entry: every entry of a rule carries the
    /// same backends.
    pub(super) fn rule_backends(
        &mut self,
        root: Option<(&'a Service, u16)>,
        e: &'a RouteEntry,
    ) -> RuleBackends {
        self.backends_of(root, &e.source, &e.backends)
    }

    /// The weighted `backends` of the rule `source` (also stream routes' backends).
    pub(super) fn backends_of(
        &mut self,
        root: Option<(&'a Service, u16)>,
        source: &str,
        backends: &[RouteBackend],
    ) -> RuleBackends {
        let weights: Vec<u64> = backends.iter().map(|b| u64::from(b.weight)).collect();
        let targets = backends
            .iter()
            .map(|b| RouteTarget {
                backend: self.route_backend(root, b),
                protocol: self.backend_protocol(b),
                headers: HeaderFilters::compile(source, &b.filters),
            })
            .collect();
        RuleBackends {
            picker: WeightedPicker::new(&weights),
            targets,
        }
    }

    /// The protocol of `b`'s service port, `Detect` when it does not resolve.
    fn backend_protocol(&self, b: &RouteBackend) -> Protocol {
        b.service
            .as_deref()
            .and_then(|k| self.cfg.services.get(k))
            .and_then(|svc| svc.ports.iter().find(|p| p.port == b.port))
            .map_or(Protocol::Detect, |p| p.protocol)
    }

    fn route_backend(&mut self, root: Option<(&'a Service, u16)>, b: &RouteBackend) -> Option<Arc<Backend>> {
        let (bkey, bsvc) = self.cfg.services.get_key_value(b.service.as_deref()?)?;
        // A port the backend Service does not have is an unresolved reference too.
        if !bsvc.ports.iter().any(|p| p.port == b.port) {
            tracing::debug!(backend = %bkey, port = b.port, "route backend lacks the port; requests to it get 500");
            return None;
        }
        let bal = self.balancer(bkey.as_str(), bsvc, b.port);
        let (root, port) = root.unwrap_or((bsvc, b.port));
        Some(Arc::new(self.backend(root, port, bkey.as_str(), bsvc, bal, true)))
    }
}

#[cfg(test)]
#[path = "gamma_tests.rs"]
mod tests;
