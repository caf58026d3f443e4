//! Unit tests for gateway listener and route selection.

use super::*;
use crate::endpoint::EndpointRegistry;
use crate::metrics::Metrics;
use crate::resilience::Resilience;
use crate::routing::RouteTable;
use http::{HeaderMap, Method};
use serde_json::{Value, json};
use weft_proxy_config::ProxyConfig;

fn listener(name: &str, port: u16, hostname: Option<&str>, routes: Value) -> Value {
    let mut l = json!({"name": name, "port": port, "protocol": "http", "routes": routes});
    if let Some(h) = hostname {
        l["hostname"] = json!(h);
    }
    l
}

fn route(source: &str, hostnames: &[&str], prefix: &str) -> Value {
    json!({"hostnames": hostnames, "entry": {
        "source": source,
        "match": {"path": {"kind": "prefix", "value": prefix}},
        "backends": [{"service": "shop/web", "port": 8080, "weight": 1}]}})
}

fn config(listeners: Value) -> ProxyConfig {
    let cfg = ProxyConfig::from_json(
        &json!({
            "schemaVersion": 1,
            "identity": {"namespace": "shop", "serviceAccount": "gw", "spiffeId": "spiffe://cluster.local/ns/shop/sa/gw"},
            "mesh": {"trustDomain": "cluster.local", "accessMode": "permissive", "mtlsMode": "permissive"},
            "services": {"shop/web": {"namespace": "shop", "name": "web", "clusterIps": ["10.0.0.9"],
                "ports": [{"port": 8080, "protocol": "http1", "endpoints": [{"ip": "10.1.0.9", "port": 8080}]}]}},
            "inbound": {"ports": [], "grants": []},
            "gateway": {"gateway": "shop/gw", "listeners": listeners},
        })
        .to_string(),
    )
    .unwrap();
    cfg.validate().unwrap();
    cfg
}

fn table(cfg: &ProxyConfig) -> RouteTable {
    let metrics = Arc::new(Metrics::default());
    let resilience = Resilience::new(Arc::clone(&metrics));
    RouteTable::build(cfg, &EndpointRegistry::default(), &metrics, &resilience).unwrap()
}

fn find<'t>(t: &'t RouteTable, listener: &str, host: &str, path: &str) -> Option<&'t str> {
    let headers = HeaderMap::new();
    let req = RouteRequest {
        method: &Method::GET,
        path,
        query: None,
        headers: &headers,
    };
    t.gateway_listener(listener)?.find(host, &req).map(|e| &*e.source)
}

#[test]
fn listener_by_most_specific_hostname() {
    let cfg = config(json!([
        listener("any", 80, None, json!([])),
        listener("wild", 80, Some("*.example.com"), json!([])),
        listener("longer", 80, Some("*.a.example.com"), json!([])),
        listener("exact", 80, Some("x.a.example.com"), json!([])),
    ]));
    let ls = &cfg.gateway.as_ref().unwrap().listeners;
    let pick = |h| select_listener(ls, h).map(|l| l.name.as_str());
    assert_eq!(pick("x.a.example.com"), Some("exact"));
    assert_eq!(pick("y.a.example.com"), Some("longer"));
    assert_eq!(pick("b.example.com"), Some("wild"));
    assert_eq!(pick("example.com"), Some("any"));
    assert_eq!(pick("other.org"), Some("any"));
    let named: Vec<_> = ls.iter().filter(|l| l.hostname.is_some()).collect();
    assert_eq!(select_listener(named, "other.org").map(|l| l.name.as_str()), None);
}

#[test]
fn routes_by_hostname_group_then_order() {
    let cfg = config(json!([listener(
        "web",
        80,
        None,
        json!([
            route("r/none/0", &[], "/"),
            route("r/wild/0", &["*.example.com"], "/api"),
            route("r/wild/1", &["*.example.com"], "/"),
            route("r/exact/0", &["foo.example.com"], "/only"),
        ])
    )]));
    let t = table(&cfg);
    // The exact group wins for its host even though its entry does not match: 404.
    assert_eq!(find(&t, "web", "foo.example.com", "/only/x"), Some("r/exact/0"));
    assert_eq!(find(&t, "web", "foo.example.com", "/api"), None);
    // Wildcard group: first matching entry in order.
    assert_eq!(find(&t, "web", "bar.example.com", "/api/v1"), Some("r/wild/0"));
    assert_eq!(find(&t, "web", "bar.example.com", "/x"), Some("r/wild/1"));
    // No hostname matches: the entries without hostnames.
    assert_eq!(find(&t, "web", "other.org", "/x"), Some("r/none/0"));
    assert_eq!(find(&t, "nope", "other.org", "/x"), None);
}

#[test]
fn no_matching_hostname_and_no_catch_all_is_none() {
    let cfg = config(json!([listener(
        "web",
        80,
        None,
        json!([route("r/exact/0", &["foo.example.com"], "/")])
    )]));
    let t = table(&cfg);
    assert_eq!(find(&t, "web", "foo.example.com", "/"), Some("r/exact/0"));
    assert_eq!(find(&t, "web", "bar.example.com", "/"), None);
}

#[test]
fn stream_routes_by_most_specific_sni() {
    let stream = |source: &str, hostnames: &[&str], svc: Option<&str>| {
        let mut b = json!({"port": 8080, "weight": 1});
        if let Some(svc) = svc {
            b["service"] = json!(svc);
        }
        json!({"source": source, "hostnames": hostnames, "backends": [b]})
    };
    let cfg = config(json!([
        {"name": "tls", "port": 8443, "protocol": "tls", "streams": [
            stream("tlsroute/shop/any/0", &[], Some("shop/web")),
            stream("tlsroute/shop/wild/0", &["*.example.com"], Some("shop/web")),
            stream("tlsroute/shop/exact/0", &["a.example.com"], None),
        ]},
        {"name": "tcp", "port": 9000, "protocol": "tcp", "streams": [stream("tcproute/shop/db/0", &[], Some("shop/web"))]},
    ]));
    let t = table(&cfg);
    let tls = t.gateway_listener("tls").unwrap();
    let pick = |sni| tls.find_stream(sni).map(|s| &*s.source);
    assert_eq!(pick(Some("a.example.com")), Some("tlsroute/shop/exact/0"));
    assert_eq!(pick(Some("b.example.com")), Some("tlsroute/shop/wild/0"));
    assert_eq!(pick(Some("other.org")), Some("tlsroute/shop/any/0"));
    assert_eq!(pick(None), Some("tlsroute/shop/any/0"));
    // The exact route's backend does not resolve: nothing to connect to.
    assert!(tls.find_stream(Some("a.example.com")).unwrap().pick().is_none());
    assert_eq!(
        &*tls
            .find_stream(Some("b.example.com"))
            .unwrap()
            .pick()
            .unwrap()
            .service,
        "shop/web"
    );
    let tcp = t.gateway_listener("tcp").unwrap();
    assert!(tcp.find_stream(None).unwrap().pick().is_some());
}
