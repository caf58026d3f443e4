//! The URL arithmetic of Gateway API route filters, as pure functions:
//! `URLRewrite` / `RequestRedirect` path replacement (full or element-wise
//! prefix) and the `Location` of a `RequestRedirect`.

use weft_proxy_config::{PathRewrite, Redirect};

/// `path` with its element-wise `prefix` (no trailing `/`) replaced by
/// `replacement`: prefix `/a` → `/b` turns `/a/x` into `/b/x`; `/a` → `/`
/// turns `/a/x` into `/x` and `/a` into `/`. A path without the prefix is
/// returned unchanged.
pub fn replace_prefix(path: &str, prefix: &str, replacement: &str) -> String {
    let Some(rest) = path
        .strip_prefix(prefix)
        .filter(|r| r.is_empty() || r.starts_with('/'))
    else {
        return path.to_owned();
    };
    let base = replacement.trim_end_matches('/');
    match (base.is_empty(), rest.is_empty()) {
        (true, true) => "/".to_owned(),
        (true, false) => rest.to_owned(),
        (false, _) => format!("{base}{rest}"),
    }
}

/// The path after `rewrite`; `prefix` is the entry's prefix match (without its
/// trailing `/`), needed by [`PathRewrite::Prefix`] (validation guarantees it;
/// without one the path is kept).
pub fn rewritten_path(rewrite: &PathRewrite, prefix: Option<&str>, path: &str) -> String {
    match (rewrite, prefix) {
        (PathRewrite::Full(p), _) => p.clone(),
        (PathRewrite::Prefix(r), Some(prefix)) => replace_prefix(path, prefix, r),
        (PathRewrite::Prefix(_), None) => path.to_owned(),
    }
}

/// The host of an authority (`host[:port]`, `[v6]:port`) without its port.
pub fn host_without_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        return match authority.find(']') {
            Some(end) => &authority[..=end],
            None => authority,
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

/// The request as a redirect sees it.
#[derive(Debug, Clone, Copy)]
pub struct RedirectFrom<'r> {
    /// Request host, without port.
    pub host: &'r str,
    /// The path to redirect to (already rewritten when the filter says so).
    pub path: &'r str,
    /// Raw query, without `?`.
    pub query: Option<&'r str>,
    /// The service port the request was dialled to (gateway: the listener port).
    pub service_port: u16,
    /// The request's scheme (`http`; `https` on a gateway's TLS listeners).
    pub scheme: &'r str,
}

/// The `Location` of `redirect` for `from`, per Gateway API: scheme default
/// the request's; hostname default the request's; port explicit, else the well-known
/// port of an explicit scheme, else the dialled service port; `:80` with
/// `http` and `:443` with `https` left out; query kept.
pub fn location(redirect: &Redirect, from: &RedirectFrom<'_>) -> String {
    let scheme = redirect.scheme.as_deref().unwrap_or(from.scheme);
    let host = redirect.hostname.as_deref().unwrap_or(from.host);
    let port = match (redirect.port, redirect.scheme.as_deref()) {
        (Some(p), _) => p,
        (None, Some("https")) => 443,
        (None, Some(_)) => 80,
        (None, None) => from.service_port,
    };
    let default_port = matches!((scheme, port), ("http", 80) | ("https", 443));
    let mut out = format!("{scheme}://{host}");
    if !default_port {
        out.push(':');
        out.push_str(&port.to_string());
    }
    out.push_str(from.path);
    if let Some(q) = from.query {
        out.push('?');
        out.push_str(q);
    }
    out
}
