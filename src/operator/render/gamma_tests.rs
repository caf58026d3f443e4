//! Unit tests of the GAMMA render: translation of every match and filter kind,
//! precedence (ties by age and name), producer vs consumer routes in both
//! access modes, cross-namespace backends, unresolved references, durations,
//! gRPC method matches and the per-parent status conditions.

use super::balancing_tests::from_catalog;
use super::gamma::{RouteReport, reason};
use super::gamma_match::{duration_ms, grpc_path};
use super::tests::{NS, id, pod, report, shop, svc};
use super::*;
use crate::api::gateway::grpc::MethodMatch;
use crate::operator::state::{GammaRoute, Input, Kind, RouteKind, RouteSpec, ServiceAccountInfo};
use serde_json::{Value, json};
use weft_proxy_config::{
    HeaderEdits, HeaderPair, PathMatch, PathRewrite, Redirect, Rewrite, RouteBackend, RouteEntry,
    RouteFilter, RouteMirror, StringMatch, ValueMatch,
};

fn route(kind: RouteKind, ns: &str, name: &str, created: i64, spec: Value) -> GammaRoute {
    GammaRoute {
        kind,
        namespace: ns.into(),
        name: name.into(),
        generation: Some(3),
        created_ms: Some(created),
        spec: match kind {
            RouteKind::Http => serde_json::from_value(spec).map(RouteSpec::Http),
            RouteKind::Grpc => serde_json::from_value(spec).map(RouteSpec::Grpc),
        }
        .map_err(|e| e.to_string()),
    }
}

fn http(ns: &str, name: &str, created: i64, spec: Value) -> GammaRoute {
    route(RouteKind::Http, ns, name, created, spec)
}

fn parent(name: &str) -> Value {
    json!({"group": "", "kind": "Service", "name": name})
}

fn status(out: &RenderOutput, kind: RouteKind, ns: &str, name: &str) -> RouteReport {
    out.gamma[&(kind, ns.to_string(), name.to_string())].clone()
}

fn routes_of(out: &RenderOutput, sa: (&str, &str), svc: &str) -> Vec<RouteEntry> {
    out.configs[&(sa.0.to_string(), sa.1.to_string())].config.services[svc]
        .routes
        .clone()
}

fn backend(svc: Option<&str>, port: u16, weight: u32) -> RouteBackend {
    RouteBackend {
        service: svc.map(String::from),
        port,
        weight,
        filters: vec![],
    }
}

/// The shop plus a client namespace `web` with a meshed identity `browser` and a
/// service in a third namespace `other`.
fn mesh() -> ClusterState {
    let mut st = shop();
    let mut p = pod("browser-1", "browser", "198.18.1.5", &[("http", 8080)]);
    p.namespace = "web".into();
    st.meshed_pods.push(p);
    st.service_accounts.push(ServiceAccountInfo {
        namespace: "web".into(),
        name: "browser".into(),
        uid: "uid-browser".into(),
    });
    let mut o = svc("elsewhere", "198.19.5.1", &[("http", 8080)]);
    o.namespace = "other".into();
    st.services.push(o);
    st
}

#[test]
fn every_match_and_filter_kind_translates() {
    let mut st = mesh();
    st.gamma_routes.push(http(
        NS,
        "podinfo",
        1,
        json!({"parentRefs": [{"group": "", "kind": "Service", "name": "podinfo", "port": 9898}],
        "rules": [
          {"name": "api", "matches": [{"path": {"type": "Exact", "value": "/api"}, "method": "get",
              "headers": [{"name": "X-Version", "value": "two"}, {"type": "RegularExpression", "name": "X-Re", "value": "a.*"}],
              "queryParams": [{"name": "Animal", "value": "whale"}]}],
           "filters": [
             {"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "X-A", "value": "1"}], "add": [{"name": "X-B", "value": "2"}], "remove": ["X-C"]}},
             {"type": "ResponseHeaderModifier", "responseHeaderModifier": {"add": [{"name": "X-R", "value": "r"}]}},
             {"type": "URLRewrite", "urlRewrite": {"hostname": "h.example", "path": {"type": "ReplaceFullPath", "replaceFullPath": "/v2"}}},
             {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "legacy", "port": 80}, "fraction": {"numerator": 1, "denominator": 4}}}],
           "backendRefs": [{"name": "podinfo-primary", "port": 9898, "weight": 90,
                "filters": [{"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "X-Be", "value": "p"}]}}]},
              {"name": "podinfo-canary", "port": 9898}],
           "timeouts": {"request": "1m500ms", "backendRequest": "2s"}},
          {"matches": [{"path": {"type": "PathPrefix", "value": "/old"}}, {"path": {"type": "PathPrefix", "value": "/legacy-x"}}],
           "filters": [{"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "statusCode": 301,
              "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/new"}}}]},
          {"backendRefs": [{"name": "podinfo-primary", "port": 9898}]}
        ]}),
    ));
    let out = render(&st);
    assert!(out.skipped.is_empty(), "{:?}", out.skipped);
    let r = status(&out, RouteKind::Http, NS, "podinfo");
    assert_eq!(r.generation, Some(3));
    assert!(r.parents[0].accepted.ok && r.parents[0].resolved_refs.ok, "{r:?}");
    let got = routes_of(&out, (NS, "frontend"), "shop/podinfo");
    let sources: Vec<&str> = got.iter().map(|e| e.source.as_str()).collect();
    // Exact first; then /old (4 chars) and /legacy-x (9 chars): longer first; then "/".
    assert_eq!(
        sources,
        [
            "httproute/shop/podinfo/api",
            "httproute/shop/podinfo/1",
            "httproute/shop/podinfo/1",
            "httproute/shop/podinfo/2"
        ]
    );
    assert_eq!(got[1].matches.path, Some(PathMatch::Prefix("/legacy-x".into())));
    assert_eq!(got[2].matches.path, Some(PathMatch::Prefix("/old".into())));
    assert_eq!(got[3].matches.path, Some(PathMatch::Prefix("/".into())));
    let e = &got[0];
    assert_eq!(e.ports, [9898]);
    assert_eq!(e.matches.method.as_deref(), Some("GET"));
    assert_eq!(
        e.matches.headers,
        [
            ValueMatch {
                name: "x-version".into(),
                value: StringMatch::Exact("two".into())
            },
            ValueMatch {
                name: "x-re".into(),
                value: StringMatch::Regex("a.*".into())
            },
        ]
    );
    assert_eq!(e.matches.query_params[0].name, "Animal");
    let pair = |n: &str, v: &str| HeaderPair {
        name: n.into(),
        value: v.into(),
    };
    assert_eq!(
        e.filters,
        [
            RouteFilter::RequestHeaders(HeaderEdits {
                set: vec![pair("x-a", "1")],
                add: vec![pair("x-b", "2")],
                remove: vec!["x-c".into()]
            }),
            RouteFilter::ResponseHeaders(HeaderEdits {
                add: vec![pair("x-r", "r")],
                ..HeaderEdits::default()
            }),
            RouteFilter::Rewrite(Rewrite {
                hostname: Some("h.example".into()),
                path: Some(PathRewrite::Full("/v2".into()))
            }),
            RouteFilter::Mirror(RouteMirror {
                service: "shop/legacy".into(),
                port: 80,
                percent: 25.0
            }),
        ]
    );
    let mut primary = backend(Some("shop/podinfo-primary"), 9898, 90);
    primary.filters = vec![RouteFilter::RequestHeaders(HeaderEdits {
        set: vec![pair("x-be", "p")],
        ..HeaderEdits::default()
    })];
    assert_eq!(
        e.backends,
        [primary, backend(Some("shop/podinfo-canary"), 9898, 1)]
    );
    assert_eq!((e.timeout_ms, e.backend_timeout_ms), (Some(60_500), Some(2_000)));
    assert_eq!(
        got[1].filters,
        [RouteFilter::Redirect(Redirect {
            scheme: Some("https".into()),
            hostname: None,
            port: None,
            path: Some(PathRewrite::Prefix("/new".into())),
            status: 301
        })]
    );
    assert!(got[1].backends.is_empty());
    // Producer route: every client that lists the service.
    assert_eq!(routes_of(&out, (NS, "podinfo"), "shop/podinfo"), got);
}

#[test]
fn precedence_ties_go_to_the_older_route_then_the_name() {
    let mut st = mesh();
    let rule = |path: &str| json!({"parentRefs": [parent("legacy")], "rules": [{"matches": [{"path": {"value": path}}], "backendRefs": [{"name": "legacy", "port": 80}]}]});
    st.gamma_routes.extend([
        http(NS, "b-new", 20, rule("/a")),
        http(NS, "c-old", 10, rule("/a")),
        http(NS, "a-new", 20, rule("/a")),
        http(NS, "z-longer", 30, rule("/a/b")),
        http(
            NS,
            "hdr",
            40,
            json!({"parentRefs": [parent("legacy")], "rules": [{"matches": [
            {"path": {"value": "/a"}, "headers": [{"name": "x", "value": "1"}]},
            {"path": {"value": "/a"}, "method": "POST"},
            {"path": {"value": "/a"}, "queryParams": [{"name": "q", "value": "1"}]}]}]}),
        ),
    ]);
    let out = render(&st);
    let got: Vec<String> = routes_of(&out, (NS, "frontend"), "shop/legacy")
        .iter()
        .map(|e| {
            e.source
                .rsplit_once('/')
                .map(|x| x.0)
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_eq!(
        got,
        [
            "httproute/shop/z-longer",
            "httproute/shop/hdr", // method
            "httproute/shop/hdr", // headers
            "httproute/shop/hdr", // query params
            "httproute/shop/c-old",
            "httproute/shop/a-new",
            "httproute/shop/b-new",
        ]
    );
    let methods: Vec<Option<String>> = routes_of(&out, (NS, "frontend"), "shop/legacy")
        .iter()
        .map(|e| e.matches.method.clone())
        .collect();
    assert_eq!(methods[1].as_deref(), Some("POST"));
}

fn consumer_state() -> ClusterState {
    let mut st = mesh();
    st.gamma_routes.extend([
        http(NS, "producer", 1, json!({"parentRefs": [parent("legacy")], "rules": [{"backendRefs": [{"name": "podinfo-primary", "port": 9898}]}]})),
        // A consumer route in `web` pointing at the producer's services (no grant needed).
        http("web", "consumer", 2, json!({"parentRefs": [{"group": "", "kind": "Service", "name": "legacy", "namespace": NS}],
            "rules": [{"backendRefs": [{"name": "podinfo-canary", "namespace": NS, "port": 9898}]}]})),
    ]);
    st
}

#[test]
fn consumer_routes_replace_producer_routes_only_for_their_namespace_in_smi_mode() {
    let out = render(&consumer_state());
    let mine = routes_of(&out, ("web", "browser"), "shop/legacy");
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].source, "httproute/web/consumer/0");
    assert_eq!(mine[0].backends, [backend(Some("shop/podinfo-canary"), 9898, 1)]);
    let theirs = routes_of(&out, (NS, "frontend"), "shop/legacy");
    assert_eq!(theirs[0].source, "httproute/shop/producer/0");
    assert!(
        status(&out, RouteKind::Http, "web", "consumer").parents[0]
            .resolved_refs
            .ok
    );
    let web = &out.configs[&("web".to_string(), "browser".to_string())].config;
    assert!(web.services.contains_key("shop/podinfo-canary"));
}

#[test]
fn consumer_routes_become_the_identity_overlay_in_permissive_mode() {
    let mut st = consumer_state();
    st.mesh.access_mode = AccessMode::Permissive;
    let out = render(&st);
    assert!(out.skipped.is_empty(), "{:?}", out.skipped);
    assert_eq!(
        from_catalog(&out, "shop/legacy").routes[0].source,
        "httproute/shop/producer/0"
    );
    let web = &out.configs[&("web".to_string(), "browser".to_string())].config;
    assert_eq!(web.routes["shop/legacy"][0].source, "httproute/web/consumer/0");
    assert!(out.configs[&id("frontend")].config.routes.is_empty());
}

#[test]
fn route_backends_join_the_smi_scope() {
    let mut st = mesh();
    // frontend may not call vault, but a route on legacy sends there.
    st.gamma_routes.push(http(
        NS,
        "to-vault",
        1,
        json!({"parentRefs": [parent("legacy")],
        "rules": [{"backendRefs": [{"name": "vault", "port": 8200}]}]}),
    ));
    let out = render(&st);
    assert!(
        out.configs[&id("frontend")]
            .config
            .services
            .contains_key("shop/vault")
    );
    assert!(out.skipped.is_empty(), "{:?}", out.skipped);
}

#[test]
fn cross_namespace_backends_need_the_parent_namespace_or_a_grant() {
    let mut st = mesh();
    let spec = json!({"parentRefs": [parent("legacy")], "rules": [{"backendRefs": [{"name": "elsewhere", "namespace": "other", "port": 8080}]}]});
    st.gamma_routes.push(http(NS, "far", 1, spec));
    let out = render(&st);
    let p = &status(&out, RouteKind::Http, NS, "far").parents[0];
    assert!(p.accepted.ok);
    assert_eq!(p.resolved_refs.reason, reason::REF_NOT_PERMITTED);
    assert_eq!(
        routes_of(&out, (NS, "frontend"), "shop/legacy")[0].backends,
        [backend(None, 8080, 1)]
    );
    st.reference_grants.push(Input::ok(
        "other",
        "allow-shop",
        serde_json::from_value(
            json!({"from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": NS}],
            "to": [{"group": "", "kind": "Service"}]}),
        )
        .unwrap(),
    ));
    let out = render(&st);
    assert!(
        status(&out, RouteKind::Http, NS, "far").parents[0]
            .resolved_refs
            .ok
    );
    assert_eq!(
        routes_of(&out, (NS, "frontend"), "shop/legacy")[0].backends,
        [backend(Some("other/elsewhere"), 8080, 1)]
    );
    assert!(
        out.configs[&id("frontend")]
            .config
            .services
            .contains_key("other/elsewhere")
    );
}

#[test]
fn unresolved_backends_and_bad_parents_are_reported() {
    let mut st = mesh();
    st.gamma_routes.extend([
        http(NS, "refs", 1, json!({"parentRefs": [parent("legacy")], "rules": [{"backendRefs": [
            {"name": "gone", "port": 80}, {"name": "legacy", "port": 81}, {"group": "example.com", "kind": "Bucket", "name": "b"}]}]})),
        http(NS, "no-parent", 1, json!({"parentRefs": [parent("gone")], "rules": [{}]})),
        http(NS, "no-port", 1, json!({"parentRefs": [{"group": "", "kind": "Service", "name": "legacy", "port": 81}], "rules": [{}]})),
        http(NS, "odd-filter", 1, json!({"parentRefs": [parent("db")], "rules": [{"filters": [{"type": "ExtensionRef", "extensionRef": {"group": "x", "kind": "y", "name": "z"}}]}]})),
        http(NS, "bad-regex", 1, json!({"parentRefs": [parent("db")], "rules": [{"matches": [{"path": {"type": "RegularExpression", "value": "("}}]}]})),
        http(NS, "gateway-only", 1, json!({"parentRefs": [{"name": "gw"}], "rules": [{}]})),
    ]);
    let out = render(&st);
    let p = &status(&out, RouteKind::Http, NS, "refs").parents[0];
    assert!(p.accepted.ok);
    assert_eq!(p.resolved_refs.reason, reason::BACKEND_NOT_FOUND);
    assert!(
        p.resolved_refs.message.contains("shop/gone not found"),
        "{}",
        p.resolved_refs.message
    );
    assert!(p.resolved_refs.message.contains("no port 81"));
    assert!(p.resolved_refs.message.contains("is not a Service"));
    let b = &routes_of(&out, (NS, "frontend"), "shop/legacy")[0].backends;
    assert!(b.iter().all(|b| b.service.is_none()), "{b:?}");
    for (name, why) in [
        ("no-parent", reason::NO_MATCHING_PARENT),
        ("no-port", reason::NO_MATCHING_PARENT),
        ("odd-filter", reason::UNSUPPORTED_VALUE),
        ("bad-regex", reason::UNSUPPORTED_VALUE),
    ] {
        let p = &status(&out, RouteKind::Http, NS, name).parents[0];
        assert!(!p.accepted.ok, "{name}");
        assert_eq!(p.accepted.reason, why, "{name}: {}", p.accepted.message);
    }
    assert!(routes_of(&out, (NS, "frontend"), "shop/db").is_empty());
    assert!(
        status(&out, RouteKind::Http, NS, "gateway-only")
            .parents
            .is_empty()
    );
    assert!(out.skipped.is_empty(), "{:?}", out.skipped);
}

#[test]
fn grpc_methods_become_path_matches() {
    let m = |ty: Option<&str>, s: Option<&str>, x: Option<&str>| MethodMatch {
        type_: ty.map(String::from),
        service: s.map(String::from),
        method: x.map(String::from),
    };
    assert_eq!(
        grpc_path(&m(None, Some("pkg.Echo"), Some("Say"))).unwrap(),
        Some(PathMatch::Exact("/pkg.Echo/Say".into()))
    );
    assert_eq!(
        grpc_path(&m(None, Some("pkg.Echo"), None)).unwrap(),
        Some(PathMatch::Prefix("/pkg.Echo".into()))
    );
    assert_eq!(
        grpc_path(&m(None, None, Some("Say.It"))).unwrap(),
        Some(PathMatch::Regex(r"/[^/]+/Say\.It".into()))
    );
    assert_eq!(
        grpc_path(&m(Some("RegularExpression"), Some("pkg\\..*"), None)).unwrap(),
        Some(PathMatch::Regex("/(?:pkg\\..*)/(?:[^/]+)".into()))
    );
    assert_eq!(grpc_path(&m(None, None, None)).unwrap(), None);
    let mut st = mesh();
    st.gamma_routes.push(route(RouteKind::Grpc, NS, "vault", 1, json!({"parentRefs": [parent("vault")], "rules": [
        {"matches": [{"method": {"service": "pkg.Vault"}}]},
        {"matches": [{"method": {"service": "pkg.Vault", "method": "Get"}, "headers": [{"name": "X-Tenant", "value": "a"}]}],
         "backendRefs": [{"name": "vault", "port": 8200}]}]})));
    let out = render(&st);
    let got = routes_of(&out, (NS, "vault"), "shop/vault");
    assert_eq!(got[0].source, "grpcroute/shop/vault/1");
    assert_eq!(
        got[0].matches.path,
        Some(PathMatch::Exact("/pkg.Vault/Get".into()))
    );
    assert_eq!(got[0].matches.headers[0].name, "x-tenant");
    assert_eq!(got[1].matches.path, Some(PathMatch::Prefix("/pkg.Vault".into())));
    assert!(status(&out, RouteKind::Grpc, NS, "vault").parents[0].accepted.ok);
}

#[test]
fn gateway_durations() {
    assert_eq!(duration_ms("10s").unwrap(), Some(10_000));
    assert_eq!(duration_ms("500ms").unwrap(), Some(500));
    assert_eq!(duration_ms("1h2m").unwrap(), Some(3_720_000));
    assert_eq!(duration_ms("1h1m1s1ms").unwrap(), Some(3_661_001));
    assert_eq!(duration_ms("0s").unwrap(), None);
    for bad in ["", "10", "1d", "1.5s", "123456s", "1h1m1s1ms1s", "s"] {
        assert!(duration_ms(bad).is_err(), "{bad}");
    }
}

#[test]
fn a_split_on_a_routed_service_says_so() {
    let mut st = mesh();
    st.gamma_routes.push(http(NS, "podinfo", 1, json!({"parentRefs": [{"group": "", "kind": "Service", "name": "podinfo", "port": 9898}], "rules": [{}]})));
    let out = render(&st);
    let r = report(&out, Kind::TrafficSplit, "podinfo");
    assert!(r.accepted.ok);
    assert!(
        r.accepted
            .message
            .contains("port(s) [9898] of shop/podinfo are routed by Gateway API routes"),
        "{}",
        r.accepted.message
    );
}

#[test]
fn routed_backends_keep_their_policies_and_render_is_order_independent() {
    let mut st = mesh();
    st.gamma_routes.extend([
        http(NS, "b", 5, json!({"parentRefs": [parent("legacy")], "rules": [{"backendRefs": [{"name": "podinfo", "port": 9898}]}]})),
        http(NS, "a", 5, json!({"parentRefs": [parent("legacy")], "rules": [{"backendRefs": [{"name": "legacy", "port": 80}]}]})),
        http("web", "c", 1, json!({"parentRefs": [{"group": "", "kind": "Service", "name": "legacy", "namespace": NS}], "rules": [{}]})),
    ]);
    let a = render(&st);
    // The CircuitBreaker on podinfo still applies to the routed backend.
    assert!(
        a.configs[&id("frontend")].config.services["shop/podinfo"]
            .circuit_breaker
            .is_some()
    );
    st.gamma_routes.reverse();
    st.services.reverse();
    let b = render(&st);
    let hashes = |o: &RenderOutput| {
        o.configs
            .iter()
            .map(|(k, c)| (k.clone(), c.hash.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(hashes(&a), hashes(&b));
    assert_eq!(a.gamma, b.gamma);
    let sources: Vec<String> = routes_of(&a, (NS, "frontend"), "shop/legacy")
        .into_iter()
        .map(|e| e.source)
        .collect();
    assert_eq!(sources, ["httproute/shop/a/0", "httproute/shop/b/0"]);
}
