//! Unit tests of the ingress gateway render: the class and Gateway status,
//! listener validation (protocols, conflicts, certificate references with and
//! without a ReferenceGrant), route attachment (sectionName, allowedRoutes,
//! hostname intersection) and the gateway identity's config.

use super::gateway::{gateway_object_name, reason};
use super::tests::{NS, shop};
use super::*;
use crate::api::gateway::gateway::GATEWAY_CONTROLLER_NAME;
use crate::operator::state::{
    GammaRoute, GatewayClassInput, GatewayInput, Input, RouteKind, RouteSpec, ServiceAccountInfo,
};
use serde_json::{Value, json};
use weft_proxy_config::ListenerProtocol;

fn class(name: &str, controller: &str) -> GatewayClassInput {
    GatewayClassInput {
        name: name.into(),
        generation: Some(1),
        spec: serde_json::from_value(json!({"controllerName": controller})).map_err(|e| e.to_string()),
    }
}

fn gateway(name: &str, spec: Value) -> GatewayInput {
    GatewayInput {
        namespace: NS.into(),
        name: name.into(),
        uid: format!("uid-{name}"),
        generation: Some(2),
        created_ms: Some(1),
        spec: serde_json::from_value(spec).map_err(|e| e.to_string()),
        address: None,
        ready_replicas: 0,
    }
}

fn http_route(ns: &str, name: &str, spec: Value) -> GammaRoute {
    GammaRoute {
        kind: RouteKind::Http,
        namespace: ns.into(),
        name: name.into(),
        generation: Some(4),
        created_ms: Some(10),
        spec: serde_json::from_value(spec)
            .map(RouteSpec::Http)
            .map_err(|e| e.to_string()),
    }
}

fn web_listeners() -> Value {
    json!([
        {"name": "http", "port": 80, "protocol": "HTTP"},
        {"name": "https", "port": 443, "protocol": "HTTPS", "hostname": "shop.example.test",
         "tls": {"certificateRefs": [{"name": "shop-cert"}]}}
    ])
}

/// The shop with class `weft`, Gateway `web` (HTTP :80, HTTPS :443 for
/// shop.example.test), a valid TLS Secret, the gateway's ServiceAccount and an
/// HTTPRoute `front` to `podinfo:9898`.
fn world() -> ClusterState {
    let mut st = shop();
    st.gateway.classes.push(class("weft", GATEWAY_CONTROLLER_NAME));
    st.gateway.classes.push(class("other", "example.com/other"));
    st.gateway.gateways.push(gateway(
        "web",
        json!({"gatewayClassName": "weft", "listeners": web_listeners()}),
    ));
    st.gateway
        .tls_secrets
        .insert((NS.into(), "shop-cert".into()), true);
    st.service_accounts.push(ServiceAccountInfo {
        namespace: NS.into(),
        name: gateway_object_name("web"),
        uid: "uid-gw-sa".into(),
    });
    st.gamma_routes.push(http_route(
        NS,
        "front",
        json!({"parentRefs": [{"name": "web"}],
               "rules": [{"backendRefs": [{"name": "podinfo", "port": 9898}]}]}),
    ));
    st
}

fn plan_of<'a>(out: &'a RenderOutput, name: &str) -> &'a gateway::GatewayPlan {
    &out.gateways.gateways[&format!("{NS}/{name}")]
}

fn listener<'a>(p: &'a gateway::GatewayPlan, name: &str) -> &'a gateway::ListenerReport {
    p.listeners.iter().find(|l| l.name == name).unwrap()
}

fn parents(out: &RenderOutput, ns: &str, name: &str) -> Vec<gamma::ParentReport> {
    out.gateways.routes[&(RouteKind::Http, ns.to_string(), name.to_string())]
        .1
        .clone()
}

#[test]
fn weft_classes_are_accepted_and_others_left_alone() {
    let out = render(&world());
    assert!(out.gateways.classes["weft"].1.ok);
    assert!(!out.gateways.classes.contains_key("other"));
}

#[test]
fn a_gateway_renders_listeners_routes_and_its_identity_config() {
    let out = render(&world());
    let p = plan_of(&out, "web");
    assert!(p.accepted.ok, "{:?}", p.accepted);
    assert_eq!(p.ports, vec![80, 443]);
    assert_eq!(p.config.tls_secret.as_deref(), Some("weft-gateway-web-tls"));
    let cert = format!("{NS}.shop-cert");
    assert_eq!(p.certificates[&cert], (NS.to_string(), "shop-cert".to_string()));
    let https = p.config.listeners.iter().find(|l| l.name == "https").unwrap();
    assert_eq!(https.protocol, ListenerProtocol::Https);
    assert_eq!(https.certificates, vec![cert]);
    // The route has no hostnames: on the HTTPS listener it takes the listener's.
    assert_eq!(https.routes.len(), 1);
    assert_eq!(https.routes[0].hostnames, vec!["shop.example.test".to_string()]);
    for l in &p.listeners {
        assert_eq!(l.attached_routes, 1, "{l:?}");
        assert!(l.accepted.ok && l.resolved_refs.ok && l.conflicted.ok, "{l:?}");
    }
    let route = parents(&out, NS, "front");
    assert_eq!(route.len(), 1);
    assert!(route[0].accepted.ok && route[0].resolved_refs.ok, "{route:?}");
    // The identity the gateway runs as gets a config with the gateway section
    // and the route backend in scope, before any gateway pod exists.
    let cfg = &out.configs[&(NS.to_string(), gateway_object_name("web"))].config;
    assert_eq!(cfg.gateway.as_ref(), Some(&p.config));
    let backend = https.routes[0].entry.backends[0].service.clone().unwrap();
    assert!(cfg.services.contains_key(&backend), "{:?}", cfg.services.keys());
}

#[test]
fn programmed_needs_an_address_and_a_ready_replica() {
    let mut st = world();
    let out = render(&st);
    assert!(!plan_of(&out, "web").programmed.ok);
    assert!(!listener(plan_of(&out, "web"), "http").programmed.ok);
    st.gateway.gateways[0].address = Some("198.19.0.80".into());
    assert_eq!(plan_of(&render(&st), "web").programmed.reason, reason::PENDING);
    st.gateway.gateways[0].ready_replicas = 1;
    let out = render(&st);
    let p = plan_of(&out, "web");
    assert!(p.programmed.ok, "{:?}", p.programmed);
    assert!(listener(p, "https").programmed.ok);
    assert_eq!(p.address.as_deref(), Some("198.19.0.80"));
}

#[test]
fn unsupported_protocols_and_conflicts_are_reported_and_not_served() {
    let mut st = world();
    st.gateway.gateways[0] = gateway(
        "web",
        json!({"gatewayClassName": "weft", "listeners": [
            {"name": "http", "port": 80, "protocol": "HTTP"},
            {"name": "udp", "port": 53, "protocol": "UDP"},
            {"name": "a", "port": 8080, "protocol": "HTTP", "hostname": "a.example.test"},
            {"name": "b", "port": 8080, "protocol": "HTTP", "hostname": "a.example.test"},
            {"name": "c", "port": 80, "protocol": "HTTPS",
             "tls": {"certificateRefs": [{"name": "shop-cert"}]}}
        ]}),
    );
    let out = render(&st);
    let p = plan_of(&out, "web");
    assert!(!p.accepted.ok);
    assert_eq!(p.accepted.reason, reason::LISTENERS_NOT_VALID);
    assert_eq!(listener(p, "udp").accepted.reason, reason::UNSUPPORTED_PROTOCOL);
    assert_eq!(listener(p, "a").conflicted.reason, reason::HOSTNAME_CONFLICT);
    assert_eq!(listener(p, "b").conflicted.reason, reason::HOSTNAME_CONFLICT);
    assert_eq!(listener(p, "c").conflicted.reason, reason::PROTOCOL_CONFLICT);
    assert_eq!(listener(p, "http").conflicted.reason, reason::PROTOCOL_CONFLICT);
    let served: Vec<&str> = p.config.listeners.iter().map(|l| l.name.as_str()).collect();
    assert!(served.is_empty(), "{served:?}");
}

#[test]
fn a_gateway_with_one_usable_listener_stays_accepted() {
    // Conformance GatewayListenerUnsupportedProtocol: Accepted True, reason ListenersNotValid.
    let mut st = world();
    st.gateway.gateways[0] = gateway(
        "web",
        json!({"gatewayClassName": "weft", "listeners": [
            {"name": "http", "port": 80, "protocol": "HTTP"},
            {"name": "invalid", "port": 8080, "protocol": "example.com/unsupported"}
        ]}),
    );
    let out = render(&st);
    let p = plan_of(&out, "web");
    assert!(p.accepted.ok, "{:?}", p.accepted);
    assert_eq!(p.accepted.reason, reason::LISTENERS_NOT_VALID);
    assert_eq!(
        listener(p, "invalid").accepted.reason,
        reason::UNSUPPORTED_PROTOCOL
    );
    let served: Vec<&str> = p.config.listeners.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(served, ["http"]);
}

#[test]
fn certificate_refs_need_a_valid_secret_and_a_grant_across_namespaces() {
    let mut st = world();
    st.gateway
        .tls_secrets
        .insert((NS.into(), "shop-cert".into()), false);
    let out = render(&st);
    let l = listener(plan_of(&out, "web"), "https").clone();
    assert_eq!(l.resolved_refs.reason, reason::INVALID_CERTIFICATE_REF);
    assert!(!l.programmed.ok);
    assert!(
        plan_of(&out, "web")
            .config
            .listeners
            .iter()
            .all(|l| l.name != "https")
    );

    let mut st = world();
    st.gateway.gateways[0] = gateway(
        "web",
        json!({"gatewayClassName": "weft", "listeners": [
            {"name": "https", "port": 443, "protocol": "HTTPS",
             "tls": {"certificateRefs": [{"name": "vault-cert", "namespace": "vault"}]}}]}),
    );
    st.gateway
        .tls_secrets
        .insert(("vault".into(), "vault-cert".into()), true);
    let out = render(&st);
    assert_eq!(
        listener(plan_of(&out, "web"), "https").resolved_refs.reason,
        reason::REF_NOT_PERMITTED
    );
    st.reference_grants.push(Input {
        namespace: "vault".into(),
        name: "gateways-may-read".into(),
        generation: Some(1),
        spec: serde_json::from_value(json!({
            "from": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "namespace": NS}],
            "to": [{"group": "", "kind": "Secret"}]
        }))
        .map_err(|e| e.to_string()),
    });
    let out = render(&st);
    let p = plan_of(&out, "web");
    assert!(listener(p, "https").resolved_refs.ok);
    assert_eq!(
        p.certificates["vault.vault-cert"],
        ("vault".to_string(), "vault-cert".to_string())
    );
}

#[test]
fn section_names_allowed_routes_and_hostnames_decide_attachment() {
    let mut st = world();
    st.gamma_routes.push(http_route(
        NS,
        "only-http",
        json!({"parentRefs": [{"name": "web", "sectionName": "http"}],
               "rules": [{"backendRefs": [{"name": "podinfo", "port": 9898}]}]}),
    ));
    st.gamma_routes.push(http_route(
        NS,
        "elsewhere",
        json!({"parentRefs": [{"name": "web", "sectionName": "https"}],
               "hostnames": ["other.example.test"],
               "rules": [{"backendRefs": [{"name": "podinfo", "port": 9898}]}]}),
    ));
    st.gamma_routes.push(http_route(
        "web",
        "foreign",
        json!({"parentRefs": [{"name": "web", "namespace": NS}],
               "rules": [{"backendRefs": [{"name": "podinfo", "namespace": NS, "port": 9898}]}]}),
    ));
    st.gamma_routes.push(http_route(
        NS,
        "nowhere",
        json!({"parentRefs": [{"name": "web", "sectionName": "nope"}], "rules": [{}]}),
    ));
    let out = render(&st);
    let p = plan_of(&out, "web");
    assert_eq!(listener(p, "http").attached_routes, 2);
    assert_eq!(listener(p, "https").attached_routes, 1);
    assert!(parents(&out, NS, "only-http")[0].accepted.ok);
    let r = &parents(&out, NS, "elsewhere")[0];
    assert_eq!(r.accepted.reason, "NoMatchingListenerHostname", "{r:?}");
    let r = &parents(&out, "web", "foreign")[0];
    assert_eq!(r.accepted.reason, reason::NOT_ALLOWED_BY_LISTENERS, "{r:?}");
    let r = &parents(&out, NS, "nowhere")[0];
    assert_eq!(r.accepted.reason, "NoMatchingParent", "{r:?}");

    // allowedRoutes from All lets the foreign route attach.
    st.gateway.gateways[0] = gateway(
        "web",
        json!({"gatewayClassName": "weft", "listeners": [
            {"name": "http", "port": 80, "protocol": "HTTP",
             "allowedRoutes": {"namespaces": {"from": "All"}}}]}),
    );
    let out = render(&st);
    assert!(parents(&out, "web", "foreign")[0].accepted.ok);
}

#[test]
fn gateways_of_other_classes_get_nothing() {
    let mut st = world();
    st.gateway.gateways[0] = gateway(
        "web",
        json!({"gatewayClassName": "other", "listeners": web_listeners()}),
    );
    let out = render(&st);
    assert!(out.gateways.gateways.is_empty());
    assert!(
        !out.configs
            .contains_key(&(NS.to_string(), gateway_object_name("web")))
    );
    assert!(parents(&out, NS, "front").is_empty());
}

#[test]
fn in_permissive_mode_the_gateway_config_references_the_catalog() {
    let mut st = world();
    st.mesh.access_mode = weft_proxy_config::AccessMode::Permissive;
    let out = render(&st);
    let cfg = &out.configs[&(NS.to_string(), gateway_object_name("web"))].config;
    assert!(cfg.catalog.is_some() && cfg.services.is_empty());
    let gw = cfg.gateway.as_ref().unwrap();
    let backend = gw.listeners[0].routes[0].entry.backends[0]
        .service
        .clone()
        .unwrap();
    assert_eq!(
        super::balancing_tests::from_catalog(&out, &backend).name,
        "podinfo"
    );
}

#[test]
fn callers_reach_the_gateway_service_without_mtls() {
    let mut st = world();
    let gw_sa = gateway_object_name("web");
    st.meshed_pods
        .push(super::tests::pod("gw-1", &gw_sa, "198.18.7.7", &[]));
    st.services
        .push(super::tests::svc(&gw_sa, "198.19.7.7", &[("l-80", 80)]));
    st.endpoint_slices.push(super::tests::slice(
        &gw_sa,
        ("l-80", 80),
        &[("gw-1", "198.18.7.7", true)],
    ));
    let out = render(&st);
    // The gateway still gets its config (it is a meshed caller) ...
    assert!(out.configs.contains_key(&(NS.to_string(), gw_sa.clone())));
    // ... but its endpoints carry no identity: its listeners are not mTLS.
    let cfg = &out.configs[&super::tests::id("podinfo")].config;
    let front = &cfg.services[&format!("{NS}/{gw_sa}")];
    assert!(
        front.ports[0].endpoints.iter().all(|e| e.identity.is_none()),
        "{front:?}"
    );
}
