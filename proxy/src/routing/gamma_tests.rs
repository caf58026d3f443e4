//! Unit tests for Gateway API routes: matching, precedence, the shared picker
//! of a rule, path rewrites, redirect `Location`s and header edits.

use super::*;
use crate::endpoint::EndpointRegistry;
use crate::metrics::Metrics;
use crate::resilience::Resilience;
use crate::routing::RouteTable;
use crate::routing::gamma_edit::{RedirectFrom, host_without_port, location, replace_prefix, rewritten_path};
use serde_json::{Value, json};
use std::net::SocketAddr;
use weft_proxy_config::{HeaderPair, PathRewrite, ProxyConfig};

fn svc(name: &str, ip: &str, ports: &[(u16, &str)], routes: Value) -> (String, Value) {
    let ports: Vec<Value> = ports
        .iter()
        .map(|(p, ep)| json!({"port": p, "protocol": "http1", "endpoints": [{"ip": ep, "port": 8080}]}))
        .collect();
    (
        format!("shop/{name}"),
        json!({"namespace": "shop", "name": name, "clusterIps": [ip], "ports": ports, "routes": routes}),
    )
}

fn config(routes: Value) -> ProxyConfig {
    let services: serde_json::Map<String, Value> = [
        svc("cart", "10.0.0.1", &[(80, "10.1.0.1"), (81, "10.1.0.2")], routes),
        svc("cart-v1", "10.0.0.2", &[(8080, "10.1.0.3")], json!([])),
        svc("cart-v2", "10.0.0.3", &[(8080, "10.1.0.4")], json!([])),
    ]
    .into_iter()
    .collect();
    let cfg = ProxyConfig::from_json(
        &json!({
            "schemaVersion": 1,
            "identity": {"namespace": "shop", "serviceAccount": "web", "spiffeId": "spiffe://cluster.local/ns/shop/sa/web"},
            "mesh": {"trustDomain": "cluster.local", "accessMode": "permissive", "mtlsMode": "permissive"},
            "services": services,
            "inbound": {"ports": [], "grants": []},
        })
        .to_string(),
    )
    .unwrap();
    cfg.validate().unwrap();
    cfg
}

fn table(routes: Value) -> RouteTable {
    let metrics = Arc::new(Metrics::default());
    let resilience = Resilience::new(Arc::clone(&metrics));
    RouteTable::build(
        &config(routes),
        &EndpointRegistry::default(),
        &metrics,
        &resilience,
    )
    .unwrap()
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn entry(source: &str, m: Value) -> Value {
    json!({"source": source, "match": m, "backends": [{"service": "shop/cart-v1", "port": 8080, "weight": 1}]})
}

/// The source of the entry `routes` picks for a request.
fn pick(t: &RouteTable, method: &str, uri: &str, headers: &[(&'static str, &'static str)]) -> Option<String> {
    let r = t.outbound(&addr("10.0.0.1:80")).unwrap();
    let uri: http::Uri = uri.parse().unwrap();
    let mut h = HeaderMap::new();
    for (k, v) in headers {
        h.append(*k, HeaderValue::from_static(v));
    }
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let req = RouteRequest {
        method: &method,
        path: uri.path(),
        query: uri.query(),
        headers: &h,
    };
    r.gamma.as_ref().unwrap().find(&req).map(|e| e.source.to_string())
}

#[test]
fn prefix_is_element_wise() {
    let t = table(json!([entry(
        "r/v2",
        json!({"path": {"kind": "prefix", "value": "/v2/"}})
    )]));
    for p in ["/v2", "/v2/", "/v2/example"] {
        assert_eq!(pick(&t, "GET", p, &[]).as_deref(), Some("r/v2"), "{p}");
    }
    for p in ["/v2example", "/", "/v1/v2"] {
        assert_eq!(pick(&t, "GET", p, &[]), None, "{p}");
    }
    let all = table(json!([entry(
        "r/all",
        json!({"path": {"kind": "prefix", "value": "/"}})
    )]));
    assert_eq!(pick(&all, "GET", "/anything/x", &[]).as_deref(), Some("r/all"));
    assert!(prefix_holds("", "/x") && !prefix_holds("/a", "/ab"));
}

#[test]
fn exact_regex_and_method() {
    let t = table(json!([
        entry("r/exact", json!({"path": {"kind": "exact", "value": "/exact"}})),
        entry(
            "r/regex",
            json!({"path": {"kind": "regex", "value": "/re/[0-9]+"}})
        ),
        entry("r/post", json!({"method": "POST"})),
    ]));
    assert_eq!(pick(&t, "GET", "/exact", &[]).as_deref(), Some("r/exact"));
    assert_eq!(pick(&t, "GET", "/exact/", &[]), None);
    assert_eq!(pick(&t, "GET", "/re/42", &[]).as_deref(), Some("r/regex"));
    // The regex must match the whole path.
    assert_eq!(pick(&t, "GET", "/re/42/x", &[]), None);
    assert_eq!(pick(&t, "POST", "/other", &[]).as_deref(), Some("r/post"));
    assert_eq!(pick(&t, "PUT", "/other", &[]), None);
}

#[test]
fn headers_exact_and_regex_joined_values() {
    let t = table(json!([
        entry(
            "r/exact",
            json!({"headers": [{"name": "version", "value": {"kind": "exact", "value": "two"}}]})
        ),
        entry(
            "r/regex",
            json!({"headers": [{"name": "x-env", "value": {"kind": "regex", "value": "can.*"}}]})
        ),
        entry(
            "r/joined",
            json!({"headers": [{"name": "x-multi", "value": {"kind": "exact", "value": "a,b"}}]})
        ),
    ]));
    // Header names are case-insensitive on the wire.
    assert_eq!(
        pick(&t, "GET", "/", &[("Version", "two")]).as_deref(),
        Some("r/exact")
    );
    assert_eq!(pick(&t, "GET", "/", &[("version", "Two")]), None);
    assert_eq!(
        pick(&t, "GET", "/", &[("x-env", "canary")]).as_deref(),
        Some("r/regex")
    );
    assert_eq!(pick(&t, "GET", "/", &[("x-env", "xcanary")]), None);
    assert_eq!(
        pick(&t, "GET", "/", &[("x-multi", "a"), ("x-multi", "b")]).as_deref(),
        Some("r/joined")
    );
}

#[test]
fn query_params_first_value_and_and_within_a_match() {
    let t = table(json!([
        entry(
            "r/both",
            json!({
                "path": {"kind": "prefix", "value": "/api"},
                "method": "GET",
                "headers": [{"name": "version", "value": {"kind": "exact", "value": "two"}}],
                "queryParams": [{"name": "animal", "value": {"kind": "exact", "value": "whale"}}],
            })
        ),
        entry(
            "r/regex",
            json!({"queryParams": [{"name": "color", "value": {"kind": "regex", "value": "bl.*"}}]})
        ),
    ]));
    let v2 = [("version", "two")];
    assert_eq!(
        pick(&t, "GET", "/api/x?animal=whale", &v2).as_deref(),
        Some("r/both")
    );
    // The first value counts; escapes are decoded.
    assert_eq!(pick(&t, "GET", "/api?animal=dolphin&animal=whale", &v2), None);
    assert_eq!(
        pick(&t, "GET", "/api?x=1&animal=wh%61le", &v2).as_deref(),
        Some("r/both")
    );
    // Every condition must hold.
    assert_eq!(pick(&t, "POST", "/api?animal=whale", &v2), None);
    assert_eq!(pick(&t, "GET", "/web?animal=whale", &v2), None);
    assert_eq!(pick(&t, "GET", "/api?animal=whale", &[]), None);
    assert_eq!(pick(&t, "GET", "/?color=blue", &[]).as_deref(), Some("r/regex"));
    assert_eq!(pick(&t, "GET", "/?colour=blue", &[]), None);
    assert_eq!(query_value("a&b=2", "a").as_deref(), Some(""));
    assert_eq!(query_value("a=%zz", "a").as_deref(), Some("%zz"));
}

#[test]
fn first_matching_entry_wins_and_ports_filter() {
    let mut on81 = entry("r/81", json!({}));
    on81["ports"] = json!([81]);
    let t = table(json!([
        on81,
        entry("r/specific", json!({"path": {"kind": "exact", "value": "/a"}})),
        entry("r/any", json!({})),
        entry("r/shadowed", json!({"path": {"kind": "exact", "value": "/b"}})),
    ]));
    assert_eq!(pick(&t, "GET", "/a", &[]).as_deref(), Some("r/specific"));
    assert_eq!(pick(&t, "GET", "/b", &[]).as_deref(), Some("r/any"));
    // Port 80 has the three entries without ports; port 81 all four.
    let port = |p: u16| {
        let r = t.outbound(&SocketAddr::new(addr("10.0.0.1:0").ip(), p)).unwrap();
        r.gamma
            .as_ref()
            .unwrap()
            .entries
            .iter()
            .map(|e| e.source.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(port(80), vec!["r/specific", "r/any", "r/shadowed"]);
    assert_eq!(port(81)[0], "r/81");
}

#[test]
fn entries_of_one_rule_share_one_exact_picker() {
    let backends = json!([
        {"service": "shop/cart-v1", "port": 8080, "weight": 70},
        {"service": "shop/cart-v2", "port": 8080, "weight": 30},
        {"service": "shop/cart-v2", "port": 8080, "weight": 0},
    ]);
    let a = json!({"source": "r/split", "match": {"path": {"kind": "exact", "value": "/a"}}, "backends": backends});
    let b = json!({"source": "r/split", "match": {"path": {"kind": "exact", "value": "/b"}}, "backends": backends});
    let t = table(json!([a, b]));
    let routes = t.outbound(&addr("10.0.0.1:80")).unwrap().gamma.as_ref().unwrap();
    let h = HeaderMap::new();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for i in 0..100 {
        let path = if i % 3 == 0 { "/a" } else { "/b" };
        let req = RouteRequest {
            method: &Method::GET,
            path,
            query: None,
            headers: &h,
        };
        let target = routes.find(&req).unwrap().rule.pick().unwrap();
        let b = target.backend.as_ref().unwrap();
        *counts.entry(b.service.to_string()).or_default() += 1;
        // Backends are labelled with the dialled (parent) service.
        assert!(format!("{:?}", b.http_metrics).contains("cart.shop.svc.cluster.local:80"));
    }
    assert_eq!(counts["shop/cart-v1"], 70);
    assert_eq!(counts["shop/cart-v2"], 30);
    assert!(Arc::ptr_eq(&routes.entries[0].rule, &routes.entries[1].rule));
    // The backend port is the backend service's port.
    let v1 = routes.entries[0].rule.targets[0].backend.as_ref().unwrap();
    assert_eq!(v1.balancer.endpoints()[0].addr, addr("10.1.0.3:8080"));
}

#[test]
fn unresolved_and_missing_backends() {
    let t = table(json!([
        {"source": "r/gone", "match": {"path": {"kind": "exact", "value": "/gone"}},
         "backends": [{"port": 80, "weight": 1}]},
        {"source": "r/no-port", "match": {"path": {"kind": "exact", "value": "/no-port"}},
         "backends": [{"service": "shop/cart-v1", "port": 9999, "weight": 1}]},
        {"source": "r/none", "match": {}},
    ]));
    let routes = t.outbound(&addr("10.0.0.1:80")).unwrap().gamma.as_ref().unwrap();
    let h = HeaderMap::new();
    let req = |path| RouteRequest {
        method: &Method::GET,
        path,
        query: None,
        headers: &h,
    };
    let gone = routes.find(&req("/gone")).unwrap();
    assert!(gone.rule.pick().unwrap().backend.is_none());
    let no_port = routes.find(&req("/no-port")).unwrap();
    assert!(no_port.rule.pick().unwrap().backend.is_none());
    assert!(routes.find(&req("/x")).unwrap().rule.pick().is_none());
}

#[test]
fn pod_ip_destinations_and_tcp_bypass_routes() {
    let mut cfg = config(json!([entry("r/all", json!({}))]));
    cfg.services.get_mut("shop/cart").unwrap().split = serde_json::from_value(json!({
        "source": "shop/split", "backends": [{"service": "shop/cart-v1", "weight": 1}]
    }))
    .unwrap();
    let metrics = Arc::new(Metrics::default());
    let resilience = Resilience::new(Arc::clone(&metrics));
    let t = RouteTable::build(&cfg, &EndpointRegistry::default(), &metrics, &resilience).unwrap();
    assert!(t.outbound(&addr("10.1.0.1:8080")).unwrap().gamma.is_none());
    let r = t.outbound(&addr("10.0.0.1:80")).unwrap();
    assert!(r.gamma.is_some());
    // Opaque TCP to a port with routes goes to the service's own endpoints.
    assert_eq!(&*r.select_tcp().service, "shop/cart");
    // A service without routes has none.
    assert!(t.outbound(&addr("10.0.0.2:8080")).unwrap().gamma.is_none());
}

#[test]
fn path_rewrites() {
    assert_eq!(
        replace_prefix("/strip-prefix/three", "/strip-prefix", "/"),
        "/three"
    );
    assert_eq!(replace_prefix("/strip-prefix", "/strip-prefix", "/"), "/");
    assert_eq!(replace_prefix("/strip-prefix/", "/strip-prefix", "/"), "/");
    assert_eq!(
        replace_prefix("/prefix/one/two", "/prefix/one", "/one"),
        "/one/two"
    );
    assert_eq!(replace_prefix("/prefix/one", "/prefix/one", "/one"), "/one");
    assert_eq!(replace_prefix("/prefix/one/", "/prefix/one", "/one/"), "/one/");
    // Prefix `/` (stored as ""): the replacement goes in front.
    assert_eq!(replace_prefix("/a/x", "", "/b"), "/b/a/x");
    // Not element-wise: unchanged.
    assert_eq!(replace_prefix("/prefixes", "/prefix", "/x"), "/prefixes");
    let full = PathRewrite::Full("/one".into());
    assert_eq!(rewritten_path(&full, None, "/full/one/two"), "/one");
    let pre = PathRewrite::Prefix("/v2".into());
    assert_eq!(rewritten_path(&pre, Some("/api"), "/api/x"), "/v2/x");
    assert_eq!(rewritten_path(&pre, None, "/api/x"), "/api/x");
}

fn redirect(scheme: Option<&str>, host: Option<&str>, port: Option<u16>, status: u16) -> Redirect {
    Redirect {
        scheme: scheme.map(String::from),
        hostname: host.map(String::from),
        port,
        path: None,
        status,
    }
}

#[test]
fn redirect_locations() {
    let from = |service_port| RedirectFrom {
        host: "cart",
        path: "/a/b",
        query: Some("x=1"),
        service_port,
        scheme: "http",
    };
    let loc = |r: &Redirect, port| location(r, &from(port));
    // Defaults: http, request host, the dialled port (80 left out).
    assert_eq!(loc(&redirect(None, None, None, 302), 80), "http://cart/a/b?x=1");
    assert_eq!(
        loc(&redirect(None, None, None, 301), 8080),
        "http://cart:8080/a/b?x=1"
    );
    // An explicit scheme brings its well-known port.
    assert_eq!(
        loc(&redirect(Some("https"), None, None, 302), 8080),
        "https://cart/a/b?x=1"
    );
    assert_eq!(
        loc(&redirect(Some("http"), None, None, 302), 8080),
        "http://cart/a/b?x=1"
    );
    // An explicit port wins; only the scheme's own default is left out.
    assert_eq!(
        loc(&redirect(Some("https"), Some("example.org"), Some(8443), 302), 80),
        "https://example.org:8443/a/b?x=1"
    );
    assert_eq!(
        loc(&redirect(Some("https"), None, Some(443), 302), 80),
        "https://cart/a/b?x=1"
    );
    assert_eq!(
        loc(&redirect(Some("https"), None, Some(80), 302), 80),
        "https://cart:80/a/b?x=1"
    );
    assert_eq!(
        loc(&redirect(None, None, Some(443), 302), 80),
        "http://cart:443/a/b?x=1"
    );
    assert_eq!(
        loc(&redirect(None, Some("example.org"), None, 308), 80),
        "http://example.org/a/b?x=1"
    );
    // A request that came in over TLS (gateway HTTPS listener) keeps its scheme.
    let tls = RedirectFrom {
        scheme: "https",
        ..from(443)
    };
    assert_eq!(
        location(&redirect(None, Some("example.org"), None, 302), &tls),
        "https://example.org/a/b?x=1"
    );
    let tls_8443 = RedirectFrom {
        scheme: "https",
        ..from(8443)
    };
    assert_eq!(
        location(&redirect(None, None, None, 302), &tls_8443),
        "https://cart:8443/a/b?x=1"
    );
    assert_eq!(
        location(&redirect(Some("http"), None, None, 302), &tls_8443),
        "http://cart/a/b?x=1"
    );
    let no_query = RedirectFrom {
        query: None,
        ..from(80)
    };
    assert_eq!(
        location(&redirect(None, None, None, 302), &no_query),
        "http://cart/a/b"
    );
    assert_eq!(host_without_port("cart.shop:8080"), "cart.shop");
    assert_eq!(host_without_port("cart"), "cart");
    assert_eq!(host_without_port("[::1]:80"), "[::1]");
}

#[test]
fn header_edits_are_case_insensitive() {
    let pair = |n: &str, v: &str| HeaderPair {
        name: n.into(),
        value: v.into(),
    };
    let edits = CompiledEdits::compile(
        "r",
        &HeaderEdits {
            set: vec![pair("x-set", "new"), pair("x-bad", "a\u{1}b")],
            add: vec![pair("x-add", "two")],
            remove: vec!["x-remove".into()],
        },
    );
    let mut h = HeaderMap::new();
    h.append("X-Set", HeaderValue::from_static("old1"));
    h.append("x-SET", HeaderValue::from_static("old2"));
    h.append("X-Add", HeaderValue::from_static("one"));
    h.append("X-Remove", HeaderValue::from_static("gone"));
    h.append("x-keep", HeaderValue::from_static("kept"));
    edits.apply(&mut h);
    let all = |n: &str| -> Vec<&str> { h.get_all(n).iter().map(|v| v.to_str().unwrap()).collect() };
    assert_eq!(all("x-set"), vec!["new"]);
    assert_eq!(all("x-add"), vec!["one", "two"]);
    assert!(all("x-remove").is_empty());
    assert_eq!(all("x-keep"), vec!["kept"]);
    // A value no header can carry is left out instead of failing the table.
    assert!(all("x-bad").is_empty());
}
