//! FaultInjection request matches converted to the proxy's [`HttpMatch`]: every
//! condition becomes a regex the proxy anchors to the whole path or value
//! ([`weft_proxy_config::compile_full`]). Paths follow Gateway API semantics:
//! `Exact` is the escaped path, `PathPrefix` matches whole path elements
//! (`/api` matches `/api` and `/api/x`, not `/apix`; `/` matches every path; a
//! value ending in `/` matches what starts with it), `RegularExpression` is
//! taken as written. A gRPC match is the path `/<service>/<method>`.

use crate::api::fault::{FaultMatch, HeaderMatchType, PathMatch, PathMatchType};
use std::collections::BTreeMap;
use weft_proxy_config::HttpMatch;

/// Any one path segment (an absent gRPC service or method).
const SEGMENT: &str = "[^/]+";

/// The whole-path regex of a path condition.
pub fn path_regex(p: &PathMatch) -> String {
    match p.type_.unwrap_or(PathMatchType::PathPrefix) {
        PathMatchType::Exact => regex::escape(&p.value),
        PathMatchType::RegularExpression => p.value.clone(),
        PathMatchType::PathPrefix if p.value == "/" => ".*".into(),
        PathMatchType::PathPrefix if p.value.ends_with('/') => format!("{}.*", regex::escape(&p.value)),
        PathMatchType::PathPrefix => format!("{}(/.*)?", regex::escape(&p.value)),
    }
}

/// The whole-path regex of a gRPC call.
pub fn grpc_regex(service: Option<&str>, method: Option<&str>) -> String {
    let part = |s: Option<&str>| s.map(regex::escape).unwrap_or_else(|| SEGMENT.into());
    format!("/{}/{}", part(service), part(method))
}

/// Converts `spec.matches[index]` of the FaultInjection `name`.
pub fn convert(name: &str, index: usize, m: &FaultMatch) -> Result<HttpMatch, String> {
    let field = format!("spec.matches[{index}]");
    let path_regex = match (&m.path, &m.grpc) {
        (Some(_), Some(_)) => return Err(format!("{field}: grpc cannot be combined with path")),
        (Some(p), None) => Some(path_regex(p)),
        (None, Some(g)) => Some(grpc_regex(g.service.as_deref(), g.method.as_deref())),
        (None, None) => None,
    };
    let mut headers = BTreeMap::new();
    for h in m.headers.iter().flatten() {
        let key = h.name.to_ascii_lowercase();
        let re = match h.type_.unwrap_or(HeaderMatchType::Exact) {
            HeaderMatchType::Exact => regex::escape(&h.value),
            HeaderMatchType::RegularExpression => h.value.clone(),
        };
        if headers.insert(key.clone(), re).is_some() {
            return Err(format!("{field}.headers: header {key} is listed twice"));
        }
    }
    Ok(HttpMatch {
        name: format!("{name}/matches[{index}]"),
        path_regex,
        methods: m.method.iter().cloned().collect(),
        headers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::fault::{GrpcMatch, HeaderMatch};
    use weft_proxy_config::compile_full;

    fn path(t: PathMatchType, value: &str) -> PathMatch {
        PathMatch {
            type_: Some(t),
            value: value.into(),
        }
    }

    fn matches(re: &str, p: &str) -> bool {
        compile_full(re).unwrap().is_match(p)
    }

    #[test]
    fn path_prefix_matches_whole_elements() {
        let re = path_regex(&path(PathMatchType::PathPrefix, "/api"));
        for p in ["/api", "/api/", "/api/x", "/api/x/y"] {
            assert!(matches(&re, p), "{re} {p}");
        }
        for p in ["/apix", "/ap", "/", "/x/api"] {
            assert!(!matches(&re, p), "{re} {p}");
        }
        let root = path_regex(&path(PathMatchType::PathPrefix, "/"));
        for p in ["/", "/a", "/a/b"] {
            assert!(matches(&root, p), "{p}");
        }
        let slash = path_regex(&path(PathMatchType::PathPrefix, "/api/"));
        assert!(matches(&slash, "/api/x") && matches(&slash, "/api/"));
        assert!(!matches(&slash, "/apix"));
        let default = PathMatch {
            type_: None,
            value: "/v1.0".into(),
        };
        let re = path_regex(&default);
        assert!(matches(&re, "/v1.0/items"), "default is PathPrefix");
        assert!(!matches(&re, "/v1x0"), "dots are escaped");
    }

    #[test]
    fn exact_and_regular_expression_paths() {
        let exact = path_regex(&path(PathMatchType::Exact, "/a.b+c"));
        assert!(matches(&exact, "/a.b+c"));
        assert!(!matches(&exact, "/a.b+c/"));
        assert!(!matches(&exact, "/aXbbc"));
        let re = path_regex(&path(PathMatchType::RegularExpression, "/items/[0-9]+"));
        assert!(matches(&re, "/items/42"));
        assert!(!matches(&re, "/items/42/x"));
    }

    #[test]
    fn grpc_headers_and_method_convert() {
        let m = FaultMatch {
            path: None,
            method: Some("POST".into()),
            headers: Some(vec![
                HeaderMatch {
                    name: "X-User".into(),
                    value: "a.b".into(),
                    type_: None,
                },
                HeaderMatch {
                    name: "x-env".into(),
                    value: "stag.*".into(),
                    type_: Some(HeaderMatchType::RegularExpression),
                },
            ]),
            grpc: Some(GrpcMatch {
                service: Some("shop.v1.Cart".into()),
                method: None,
            }),
        };
        let h = convert("fi", 2, &m).unwrap();
        assert_eq!(h.name, "fi/matches[2]");
        assert_eq!(h.methods, ["POST"]);
        let re = h.path_regex.unwrap();
        assert!(matches(&re, "/shop.v1.Cart/AddItem"));
        assert!(!matches(&re, "/shopXv1.Cart/AddItem"));
        assert!(!matches(&re, "/shop.v1.Cart/Add/Item"));
        assert!(matches(&h.headers["x-user"], "a.b"));
        assert!(!matches(&h.headers["x-user"], "axb"));
        assert!(matches(&h.headers["x-env"], "staging"));
        assert!(matches(&grpc_regex(None, Some("Get")), "/any.Svc/Get"));
    }

    #[test]
    fn grpc_with_path_and_duplicate_headers_are_refused() {
        let mut m = FaultMatch {
            path: Some(path(PathMatchType::Exact, "/x")),
            method: None,
            headers: None,
            grpc: Some(GrpcMatch {
                service: None,
                method: None,
            }),
        };
        assert!(convert("fi", 0, &m).unwrap_err().contains("spec.matches[0]"));
        m.grpc = None;
        let h = HeaderMatch {
            name: "x-a".into(),
            value: "1".into(),
            type_: None,
        };
        m.headers = Some(vec![
            h.clone(),
            HeaderMatch {
                name: "X-A".into(),
                ..h
            },
        ]);
        assert!(
            convert("fi", 1, &m)
                .unwrap_err()
                .contains("spec.matches[1].headers")
        );
    }
}
