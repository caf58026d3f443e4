//! Compiled HTTPRouteGroup matches. Within one match every present condition
//! must hold (AND); a list of matches is satisfied by any one (OR). `pathRegex`
//! must match the whole path (callers pass the normalized path, see
//! [`super::path`]), header regexes the whole value, and methods may include `*`.
//! Both are compiled by [`weft_proxy_config::compile_full`], the same function
//! the operator and the config validation use.

use http::{HeaderMap, Method};
use regex::Regex;
use weft_proxy_config::{HttpMatch, compile_full};

/// Error compiling a match (the config crate validates regexes too, so this only
/// fires on a config that bypassed validation).
#[derive(Debug, thiserror::Error)]
#[error("route match {name}: {source}")]
pub struct MatchError {
    name: String,
    #[source]
    source: regex::Error,
}

/// One compiled match.
#[derive(Debug, Clone)]
pub struct CompiledMatch {
    /// `<route-group>/<match-name>`.
    pub name: String,
    path: Option<Regex>,
    /// `None` = any method.
    methods: Option<Vec<Method>>,
    headers: Vec<(http::HeaderName, Regex)>,
    impossible: bool,
}

impl CompiledMatch {
    /// Compiles one config match.
    pub fn compile(m: &HttpMatch) -> Result<Self, MatchError> {
        let err = |source| MatchError {
            name: m.name.clone(),
            source,
        };
        let path = m
            .path_regex
            .as_deref()
            .map(compile_full)
            .transpose()
            .map_err(err)?;
        let methods = if m.methods.is_empty() || m.methods.iter().any(|x| x == "*") {
            None
        } else {
            Some(
                m.methods
                    .iter()
                    .filter_map(|x| Method::from_bytes(x.as_bytes()).ok())
                    .collect(),
            )
        };
        let mut headers = Vec::with_capacity(m.headers.len());
        let mut impossible = false;
        for (name, re) in &m.headers {
            let regex = compile_full(re).map_err(err)?;
            match http::HeaderName::from_bytes(name.as_bytes()) {
                Ok(name) => headers.push((name, regex)),
                // A header name no request can carry: the match can never hold.
                Err(_) => impossible = true,
            }
        }
        Ok(Self {
            name: m.name.clone(),
            path,
            methods,
            headers,
            impossible,
        })
    }

    /// Whether a request with this method, path and headers matches.
    pub fn matches(&self, method: &Method, path: &str, headers: &HeaderMap) -> bool {
        if self.impossible || self.methods.as_ref().is_some_and(|m| !m.contains(method)) {
            return false;
        }
        if self.path.as_ref().is_some_and(|re| !re.is_match(path)) {
            return false;
        }
        self.headers.iter().all(|(name, re)| {
            headers
                .get_all(name)
                .iter()
                .any(|v| v.to_str().is_ok_and(|v| re.is_match(v)))
        })
    }
}

/// Compiles a list of matches.
pub fn compile_all(matches: &[HttpMatch]) -> Result<Vec<CompiledMatch>, MatchError> {
    matches.iter().map(CompiledMatch::compile).collect()
}

/// OR across matches; an empty list matches nothing (callers treat "no matches
/// configured" separately).
pub fn any_match(matches: &[CompiledMatch], method: &Method, path: &str, headers: &HeaderMap) -> bool {
    matches.iter().any(|m| m.matches(method, path, headers))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn m(path: Option<&str>, methods: &[&str], headers: &[(&str, &str)]) -> CompiledMatch {
        CompiledMatch::compile(&HttpMatch {
            name: "g/m".into(),
            path_regex: path.map(String::from),
            methods: methods.iter().map(|s| s.to_string()).collect(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        })
        .unwrap()
    }

    fn hdrs(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, http::HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn path_must_match_whole() {
        let x = m(Some("/api"), &[], &[]);
        assert!(x.matches(&Method::GET, "/api", &HeaderMap::new()));
        assert!(!x.matches(&Method::GET, "/api/v1", &HeaderMap::new()));
        assert!(!x.matches(&Method::GET, "/api-admin", &HeaderMap::new()));
        assert!(!x.matches(&Method::GET, "/v1/api", &HeaderMap::new()));
        // A prefix is written with `.*`.
        let p = m(Some("/api/.*"), &[], &[]);
        assert!(p.matches(&Method::GET, "/api/v1", &HeaderMap::new()));
        assert!(!p.matches(&Method::GET, "/api-admin", &HeaderMap::new()));
        // Alternation is anchored as a whole.
        let y = m(Some("/a|/b"), &[], &[]);
        assert!(y.matches(&Method::GET, "/b", &HeaderMap::new()));
        assert!(!y.matches(&Method::GET, "/b/c", &HeaderMap::new()));
        assert!(!y.matches(&Method::GET, "/c/b", &HeaderMap::new()));
    }

    #[test]
    fn methods_and_star() {
        let x = m(None, &["GET", "HEAD"], &[]);
        assert!(x.matches(&Method::HEAD, "/", &HeaderMap::new()));
        assert!(!x.matches(&Method::POST, "/", &HeaderMap::new()));
        assert!(m(None, &["*"], &[]).matches(&Method::DELETE, "/", &HeaderMap::new()));
        assert!(m(None, &[], &[]).matches(&Method::PATCH, "/", &HeaderMap::new()));
    }

    #[test]
    fn headers_are_full_value_and_anded() {
        let x = m(None, &[], &[("end-user", "jason"), ("x-env", "canary|beta")]);
        assert!(x.matches(
            &Method::GET,
            "/",
            &hdrs(&[("end-user", "jason"), ("x-env", "beta")])
        ));
        assert!(!x.matches(
            &Method::GET,
            "/",
            &hdrs(&[("end-user", "jasonx"), ("x-env", "beta")])
        ));
        assert!(!x.matches(&Method::GET, "/", &hdrs(&[("end-user", "jason")])));
        let ff = m(None, &[], &[("user-agent", ".*Firefox.*")]);
        assert!(ff.matches(
            &Method::GET,
            "/",
            &hdrs(&[("user-agent", "Mozilla/5.0 Firefox/120")])
        ));
    }

    #[test]
    fn all_conditions_and_or_across() {
        let a = m(Some("/a"), &["GET"], &[("end-user", "jason")]);
        let b = m(Some("/b"), &[], &[]);
        let both = vec![a, b];
        let h = hdrs(&[("end-user", "jason")]);
        assert!(any_match(&both, &Method::GET, "/a", &h));
        assert!(!any_match(&both, &Method::POST, "/a", &h));
        assert!(any_match(&both, &Method::POST, "/b", &HeaderMap::new()));
        assert!(!any_match(&[], &Method::GET, "/", &HeaderMap::new()));
    }
}
