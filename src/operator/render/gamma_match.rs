//! Gateway API matches, filters and durations translated into the proxy's
//! route schema ([`weft_proxy_config::RouteEntry`] parts), plus the precedence
//! key that orders the flattened (rule, match) pairs of one parent Service.
//! Pure functions; anything weft cannot express is an [`Unsupported`] error
//! that the caller reports as `Accepted=False/UnsupportedValue`.

use crate::api::gateway::grpc::{GrpcMatch, MethodMatch};
use crate::api::gateway::http::{HttpMatch, PathModifier, RedirectFilter, RewriteFilter};
use crate::api::gateway::{HeaderFilter, NameValueMatch};
use std::cmp::Reverse;
use weft_proxy_config::{
    HeaderEdits, HeaderPair, PathMatch, PathRewrite, Redirect, Rewrite, RouteMatch, StringMatch, ValueMatch,
};

/// A value weft cannot express (the message names the field).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unsupported(pub String);

fn unsupported(msg: impl Into<String>) -> Unsupported {
    Unsupported(msg.into())
}

/// How specific a match is; smaller sorts first (Gateway API precedence
/// within one Service, before route age and name).
pub type Specificity = [i64; 5];

fn value_match(what: &str, m: &NameValueMatch, lower: bool) -> Result<ValueMatch, Unsupported> {
    let value = match m.type_.as_deref().unwrap_or("Exact") {
        "Exact" => StringMatch::Exact(m.value.clone()),
        "RegularExpression" => StringMatch::Regex(m.value.clone()),
        other => {
            return Err(unsupported(format!(
                "{what} {:?}: match type {other} is not supported",
                m.name
            )));
        }
    };
    let name = if lower {
        m.name.to_ascii_lowercase()
    } else {
        m.name.clone()
    };
    Ok(ValueMatch { name, value })
}

fn len(s: &str) -> i64 {
    i64::try_from(s.len()).unwrap_or(i64::MAX)
}

fn count<T>(v: &[T]) -> i64 {
    i64::try_from(v.len()).unwrap_or(i64::MAX)
}

/// An `HTTPRouteMatch` (absent = the default `PathPrefix /`).
pub fn http_match(m: Option<&HttpMatch>) -> Result<(RouteMatch, Specificity), Unsupported> {
    let default = HttpMatch::default();
    let m = m.unwrap_or(&default);
    let value = m
        .path
        .as_ref()
        .and_then(|p| p.value.clone())
        .unwrap_or_else(|| "/".into());
    let ty = m
        .path
        .as_ref()
        .and_then(|p| p.type_.as_deref())
        .unwrap_or("PathPrefix");
    let (path, rank) = match ty {
        "Exact" => (PathMatch::Exact(value.clone()), 0),
        "PathPrefix" => (PathMatch::Prefix(value.clone()), 1),
        "RegularExpression" => (PathMatch::Regex(value.clone()), 1),
        other => return Err(unsupported(format!("path match type {other} is not supported"))),
    };
    let headers = m
        .headers
        .iter()
        .map(|h| value_match("header", h, true))
        .collect::<Result<Vec<_>, _>>()?;
    let query_params = m
        .query_params
        .iter()
        .map(|q| value_match("query parameter", q, false))
        .collect::<Result<Vec<_>, _>>()?;
    let method = m.method.as_ref().map(|x| x.to_ascii_uppercase());
    let key = [
        rank,
        -len(&value),
        i64::from(method.is_none()),
        -count(&headers),
        -count(&query_params),
    ];
    Ok((
        RouteMatch {
            path: Some(path),
            method,
            headers,
            query_params,
        },
        key,
    ))
}

/// A gRPC method condition as a path condition: `/svc/method` exact, service
/// only → prefix `/svc`, method only → regex `/[^/]+/method`,
/// `RegularExpression` → a regex over both parts.
pub fn grpc_path(m: &MethodMatch) -> Result<Option<PathMatch>, Unsupported> {
    let (svc, method) = (m.service.as_deref(), m.method.as_deref());
    Ok(match m.type_.as_deref().unwrap_or("Exact") {
        "Exact" => match (svc, method) {
            (Some(s), Some(x)) => Some(PathMatch::Exact(format!("/{s}/{x}"))),
            (Some(s), None) => Some(PathMatch::Prefix(format!("/{s}"))),
            (None, Some(x)) => Some(PathMatch::Regex(format!("/[^/]+/{}", regex::escape(x)))),
            (None, None) => None,
        },
        "RegularExpression" => match (svc, method) {
            (None, None) => None,
            _ => Some(PathMatch::Regex(format!(
                "/(?:{})/(?:{})",
                svc.unwrap_or("[^/]+"),
                method.unwrap_or("[^/]+")
            ))),
        },
        other => return Err(unsupported(format!("method match type {other} is not supported"))),
    })
}

/// A `GRPCRouteMatch` (absent = every request).
pub fn grpc_match(m: Option<&GrpcMatch>) -> Result<(RouteMatch, Specificity), Unsupported> {
    let Some(m) = m else {
        return Ok((RouteMatch::default(), [0, 0, 0, 0, 0]));
    };
    let path = m.method.as_ref().map(grpc_path).transpose()?.flatten();
    let headers = m
        .headers
        .iter()
        .map(|h| value_match("header", h, true))
        .collect::<Result<Vec<_>, _>>()?;
    let chars = |s: Option<&String>| -s.map_or(0, |s| len(s));
    let key = [
        0,
        chars(m.method.as_ref().and_then(|x| x.service.as_ref())),
        chars(m.method.as_ref().and_then(|x| x.method.as_ref())),
        -count(&headers),
        0,
    ];
    Ok((
        RouteMatch {
            path,
            method: None,
            headers,
            query_params: Vec::new(),
        },
        key,
    ))
}

/// A header modifier, names lower-cased.
pub fn header_edits(h: &HeaderFilter) -> HeaderEdits {
    let pairs = |v: &[crate::api::gateway::HeaderValue]| {
        v.iter()
            .map(|p| HeaderPair {
                name: p.name.to_ascii_lowercase(),
                value: p.value.clone(),
            })
            .collect()
    };
    HeaderEdits {
        set: pairs(&h.set),
        add: pairs(&h.add),
        remove: h.remove.iter().map(|n| n.to_ascii_lowercase()).collect(),
    }
}

fn path_rewrite(p: Option<&PathModifier>) -> Result<Option<PathRewrite>, Unsupported> {
    let Some(p) = p else { return Ok(None) };
    match (p.type_.as_str(), &p.replace_full_path, &p.replace_prefix_match) {
        ("ReplaceFullPath", Some(v), _) => Ok(Some(PathRewrite::Full(v.clone()))),
        ("ReplacePrefixMatch", _, Some(v)) => Ok(Some(PathRewrite::Prefix(v.clone()))),
        (t, _, _) => Err(unsupported(format!(
            "path modifier {t} is not supported or has no value"
        ))),
    }
}

fn port(p: Option<i32>, what: &str) -> Result<Option<u16>, Unsupported> {
    p.map(|p| {
        u16::try_from(p)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| unsupported(format!("{what} {p} is not a port")))
    })
    .transpose()
}

/// `RequestRedirect`.
pub fn redirect(r: &RedirectFilter) -> Result<Redirect, Unsupported> {
    let status = match r.status_code.unwrap_or(302) {
        s @ (301 | 302 | 303 | 307 | 308) => s as u16,
        s => return Err(unsupported(format!("redirect statusCode {s} is not supported"))),
    };
    Ok(Redirect {
        scheme: r.scheme.as_ref().map(|s| s.to_ascii_lowercase()),
        hostname: r.hostname.clone(),
        port: port(r.port, "redirect port")?,
        path: path_rewrite(r.path.as_ref())?,
        status,
    })
}

/// `URLRewrite`.
pub fn rewrite(r: &RewriteFilter) -> Result<Rewrite, Unsupported> {
    Ok(Rewrite {
        hostname: r.hostname.clone(),
        path: path_rewrite(r.path.as_ref())?,
    })
}

/// A Gateway API duration (`1h2m3s4ms`: up to four number+unit parts, units
/// `h`, `m`, `s`, `ms`) in milliseconds; `0s` is `None` (no timeout).
pub fn duration_ms(s: &str) -> Result<Option<u64>, Unsupported> {
    let bad = || unsupported(format!("{s:?} is not a Gateway API duration"));
    let mut total: u64 = 0;
    let mut rest = s;
    let mut parts = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 5 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let (mult, unit) = if rest.starts_with("ms") {
            (1, 2)
        } else if rest.starts_with('h') {
            (3_600_000, 1)
        } else if rest.starts_with('m') {
            (60_000, 1)
        } else if rest.starts_with('s') {
            (1_000, 1)
        } else {
            return Err(bad());
        };
        rest = &rest[unit..];
        total += n * mult;
        parts += 1;
    }
    if parts == 0 || parts > 4 {
        return Err(bad());
    }
    Ok((total > 0).then_some(total))
}

/// The full sort key of one flattened entry: specificity, then the older
/// route, then `namespace/name`, then rule and match order.
pub type Precedence = (Specificity, Reverse<bool>, i64, String, usize, usize);

/// Builds a [`Precedence`]; a route without a creation time sorts after dated ones.
pub fn precedence(
    spec: Specificity,
    created_ms: Option<i64>,
    ns_name: String,
    rule: usize,
    matched: usize,
) -> Precedence {
    (
        spec,
        Reverse(created_ms.is_some()),
        created_ms.unwrap_or(i64::MAX),
        ns_name,
        rule,
        matched,
    )
}
