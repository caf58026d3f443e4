//! Path normalization: one case per rule, the URI rewrite, and a property test
//! that authorization through an HTTP rule agrees with a reference (RFC 3986
//! §5.2.4 written as its input-buffer loop, no regex) full match.

use super::*;
use crate::authz::Authz;
use crate::metrics::Metrics;
use http::{HeaderMap, Method};
use proptest::prelude::*;
use weft_proxy_config::ProxyConfig;

fn n(p: &str) -> Result<String, PathError> {
    normalize(p).map(Cow::into_owned)
}

#[test]
fn dot_segments_and_slashes() {
    for (raw, want) in [
        ("/", "/"),
        ("/metrics", "/metrics"),
        ("//metrics", "/metrics"),
        ("/metrics//", "/metrics/"),
        ("/./metrics", "/metrics"),
        ("/metrics/.", "/metrics/"),
        ("/metrics/../admin", "/admin"),
        ("/metrics/..", "/"),
        ("/../../admin", "/admin"),
        ("/a//../b", "/b"),
        ("/a/..b/.c", "/a/..b/.c"),
        ("", ""),
        ("*", "*"),
    ] {
        assert_eq!(n(raw).as_deref(), Ok(want), "{raw}");
    }
    assert!(
        matches!(normalize("/a/b"), Ok(Cow::Borrowed(_))),
        "no copy when unchanged"
    );
}

#[test]
fn escapes() {
    for (raw, want) in [
        ("/%6Detrics", "/metrics"),
        ("/metrics/%2E%2E/admin", "/admin"),
        ("/metrics/.%2e/admin", "/admin"),
        ("/a%3bb", "/a%3Bb"),
        ("/a%20b", "/a%20b"),
        ("/%7E%2D", "/~-"),
    ] {
        assert_eq!(n(raw).as_deref(), Ok(want), "{raw}");
    }
    for raw in [
        "/a%2Fb",
        "/a%2fb",
        "/a%5Cb",
        "/a%5cb",
        "/a\\b",
        "/a/..%2F..%2Fadmin",
    ] {
        assert_eq!(n(raw), Err(PathError::EscapedSlash), "{raw}");
    }
    for raw in ["/a%", "/a%2", "/a%zz", "/a%2G"] {
        assert_eq!(n(raw), Err(PathError::BadEscape), "{raw}");
    }
}

#[test]
fn uri_keeps_scheme_authority_and_query() {
    let mut uri: http::Uri = "https://podinfo:9898//metrics/../admin?x=1&y=%2F"
        .parse()
        .unwrap();
    normalize_uri(&mut uri).unwrap();
    assert_eq!(uri.to_string(), "https://podinfo:9898/admin?x=1&y=%2F");
    let mut origin: http::Uri = "/a/./b".parse().unwrap();
    normalize_uri(&mut origin).unwrap();
    assert_eq!(origin.to_string(), "/a/b");
    let mut bad: http::Uri = "/a%2Fb".parse().unwrap();
    assert_eq!(normalize_uri(&mut bad), Err(PathError::EscapedSlash));
    assert_eq!(bad.to_string(), "/a%2Fb", "left as it was");
}

/// The reference normalization: `None` = refused.
fn reference(raw: &str) -> Option<String> {
    if raw.contains('\\') {
        return None;
    }
    let mut pieces = raw.split('%');
    let mut s = pieces.next()?.to_string();
    for piece in pieces {
        let v = u8::from_str_radix(piece.get(..2)?, 16).ok()?;
        let c = char::from(v);
        match c {
            '/' | '\\' => return None,
            c if c.is_ascii_alphanumeric() || "-._~".contains(c) => s.push(c),
            _ => s.push_str(&format!("%{v:02X}")),
        }
        s.push_str(piece.get(2..)?);
    }
    while s.contains("//") {
        s = s.replace("//", "/");
    }
    let mut input = s.as_str();
    let mut owned;
    let mut out = String::new();
    let pop = |out: &mut String| out.truncate(out.rfind('/').unwrap_or(0));
    while !input.is_empty() {
        if let Some(rest) = input.strip_prefix("../").or_else(|| input.strip_prefix("./")) {
            input = rest;
        } else if let Some(rest) = input.strip_prefix("/./") {
            owned = format!("/{rest}");
            input = &owned;
        } else if input == "/." {
            input = "/";
        } else if let Some(rest) = input.strip_prefix("/../") {
            owned = format!("/{rest}");
            input = &owned;
            pop(&mut out);
        } else if input == "/.." {
            input = "/";
            pop(&mut out);
        } else if input == "." || input == ".." {
            input = "";
        } else {
            let end = input[1..].find('/').map_or(input.len(), |i| i + 1);
            out.push_str(&input[..end]);
            input = &input[end..];
        }
    }
    Some(out)
}

const SEGMENTS: &[&str] = &[
    "",
    ".",
    "..",
    "a",
    "b",
    "metrics",
    "admin",
    "metrics-admin",
    "%2E",
    "%2e",
    "%2E%2E",
    ".%2E",
    "%61",
    "%6D",
    "%2F",
    "%2f",
    "%5C",
    "\\",
    "%",
    "%z1",
    "%3b",
    "a;b",
    "..a",
];

/// `(pathRegex, reference full match)`.
type Pattern = (&'static str, fn(&str) -> bool);
const PATTERNS: &[Pattern] = &[
    ("/metrics", |p| p == "/metrics"),
    ("/a/b", |p| p == "/a/b"),
    ("/", |p| p == "/"),
    ("/metrics/.*", |p| p.starts_with("/metrics/")),
    ("/a/.*", |p| p.starts_with("/a/")),
    ("/.*", |p| p.starts_with('/')),
    ("/a|/b", |p| p == "/a" || p == "/b"),
];

fn authz(regex: &str) -> Authz {
    let text = serde_json::json!({
        "schemaVersion": 1,
        "identity": {"namespace": "t", "serviceAccount": "b", "spiffeId": "spiffe://cluster.local/ns/t/sa/b"},
        "mesh": {"trustDomain": "cluster.local", "accessMode": "smi", "mtlsMode": "strict"},
        "inbound": {"ports": [{"port": 8080}], "grants": [{"source": "t/tt", "sources": [SRC],
            "rules": [{"kind": "http", "ports": [8080], "matches": [{"name": "g/m", "pathRegex": regex}]}]}]}
    });
    Authz::build(
        &ProxyConfig::from_json(&text.to_string()).unwrap(),
        &Metrics::default(),
    )
    .unwrap()
}

const SRC: &str = "spiffe://cluster.local/ns/t/sa/a";

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn matcher_agrees_with_reference_full_match(
        segs in proptest::collection::vec(proptest::sample::select(SEGMENTS), 0..7),
        pattern in 0..PATTERNS.len(),
    ) {
        let raw = format!("/{}", segs.join("/"));
        let (regex, full_match) = PATTERNS[pattern];
        let want = reference(&raw);
        prop_assert_eq!(n(&raw).ok(), want.clone(), "normalize({})", raw);
        if let Some(p) = &want {
            prop_assert_eq!(n(p), Ok(p.clone()), "idempotent");
        }
        let allowed = authz(regex).check_http(Some(SRC), 8080, &Method::GET, &raw, &HeaderMap::new()).is_ok();
        prop_assert_eq!(allowed, want.as_deref().is_some_and(full_match), "{} on {}", regex, raw);
    }
}
