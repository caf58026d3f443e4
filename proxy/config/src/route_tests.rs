//! Unit tests of the route schema: JSON round trip and validation errors naming the field.

use super::*;
use crate::validate::tests::minimal;
use crate::{Service, ServicePort};

fn service(ns: &str, name: &str, ports: &[u16]) -> Service {
    let mut s: Service = serde_json::from_value(serde_json::json!({
        "namespace": ns, "name": name, "ports": [] }))
    .unwrap();
    s.ports = ports
        .iter()
        .map(|p| serde_json::from_value::<ServicePort>(serde_json::json!({ "port": p })).unwrap())
        .collect();
    s
}

fn entry() -> RouteEntry {
    RouteEntry {
        source: "httproute/shop/cart/0".into(),
        ports: vec![80],
        matches: RouteMatch {
            path: Some(PathMatch::Prefix("/api".into())),
            method: Some("GET".into()),
            headers: vec![ValueMatch {
                name: "version".into(),
                value: StringMatch::Exact("two".into()),
            }],
            query_params: vec![ValueMatch {
                name: "animal".into(),
                value: StringMatch::Regex("wh.*".into()),
            }],
        },
        filters: vec![
            RouteFilter::RequestHeaders(HeaderEdits {
                set: vec![HeaderPair {
                    name: "x-a".into(),
                    value: "1".into(),
                }],
                ..HeaderEdits::default()
            }),
            RouteFilter::Rewrite(Rewrite {
                hostname: None,
                path: Some(PathRewrite::Prefix("/v2".into())),
            }),
        ],
        backends: vec![
            RouteBackend {
                service: Some("shop/cart-v2".into()),
                port: 8080,
                weight: 70,
                filters: vec![],
            },
            RouteBackend {
                service: None,
                port: 80,
                weight: 30,
                filters: vec![],
            },
        ],
        timeout_ms: Some(1_000),
        backend_timeout_ms: None,
    }
}

fn config(routes: Vec<RouteEntry>) -> ProxyConfig {
    let mut c = minimal();
    let mut root = service("shop", "cart", &[80]);
    root.routes = routes;
    c.services.insert("shop/cart".into(), root);
    c.services
        .insert("shop/cart-v2".into(), service("shop", "cart-v2", &[8080]));
    c
}

#[test]
fn entries_round_trip_and_validate() {
    let c = config(vec![entry()]);
    c.validate().unwrap();
    let json = c.to_json().unwrap();
    assert!(
        json.contains(r#""match":{"path":{"kind":"prefix","value":"/api"}"#),
        "{json}"
    );
    assert_eq!(ProxyConfig::from_json(&json).unwrap(), c);
    let redirect: RouteFilter =
        serde_json::from_str(r#"{"kind":"redirect","spec":{"hostname":"example.org"}}"#).unwrap();
    assert_eq!(
        redirect,
        RouteFilter::Redirect(Redirect {
            scheme: None,
            hostname: Some("example.org".into()),
            port: None,
            path: None,
            status: 302
        })
    );
}

#[test]
fn bad_entries_are_refused_naming_the_field() {
    let check = |f: &dyn Fn(&mut RouteEntry), path: &str| {
        let mut e = entry();
        f(&mut e);
        let got = config(vec![e]).validate().unwrap_err();
        assert_eq!(
            got.path,
            format!("services[\"shop/cart\"].routes[0]{path}"),
            "{got}"
        );
    };
    check(
        &|e| e.matches.path = Some(PathMatch::Regex("(".into())),
        ".match.path",
    );
    check(
        &|e| e.matches.path = Some(PathMatch::Exact("api".into())),
        ".match.path",
    );
    check(&|e| e.matches.method = Some("get".into()), ".match.method");
    check(
        &|e| e.matches.headers[0].name = "Version".into(),
        ".match.headers[0].name",
    );
    check(
        &|e| e.backends[0].service = Some("shop/gone".into()),
        ".backends[0].service",
    );
    check(
        &|e| e.backends[0].weight = MAX_ROUTE_WEIGHT + 1,
        ".backends[0].weight",
    );
    check(
        &|e| e.backends[0].filters = vec![RouteFilter::Rewrite(Rewrite::default())],
        ".backends[0].filters[0]",
    );
    // ReplacePrefixMatch needs a prefix match.
    check(&|e| e.matches.path = None, ".filters[1].path");
    check(
        &|e| {
            e.filters = vec![RouteFilter::Redirect(Redirect {
                scheme: None,
                hostname: None,
                port: None,
                path: None,
                status: 304,
            })]
        },
        ".filters[0].status",
    );
    check(
        &|e| {
            e.filters = vec![RouteFilter::ResponseHeaders(HeaderEdits {
                add: vec![HeaderPair {
                    name: "x-a".into(),
                    value: "a\r\nb".into(),
                }],
                ..HeaderEdits::default()
            })]
        },
        ".filters[0]",
    );
    check(
        &|e| {
            e.filters = vec![RouteFilter::Mirror(RouteMirror {
                service: "shop/cart-v2".into(),
                port: 81,
                percent: 10.0,
            })]
        },
        ".filters[0].port",
    );
}

#[test]
fn route_overlays_need_a_catalog() {
    let mut c = config(vec![]);
    c.routes.insert("shop/cart".into(), vec![entry()]);
    assert_eq!(c.validate().unwrap_err().path, "routes");
}
