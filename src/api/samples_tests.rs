//! Serde round trips of every SMI example shape (spec v0.6.0 and Flagger's three
//! TrafficSplit shapes) and of weft's policy samples (also those in
//! `examples/policies/`): each parses into the typed
//! version and serializes back to the same JSON, and [`SplitView`] normalises it.

use super::quantity::Weight;
use super::split::SplitView;
use super::{access, balancing, fault, mesh, mirror, policy, specs, split};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// Parses `doc` as `T` and checks it serializes back to exactly `doc`.
fn round_trip<T: DeserializeOwned + Serialize>(doc: Value) -> T {
    let typed: T = serde_json::from_value(doc.clone()).unwrap();
    assert_eq!(serde_json::to_value(&typed).unwrap(), doc);
    typed
}

fn meta(api: &str, kind: &str) -> Value {
    json!({"apiVersion": api, "kind": kind, "metadata": {"name": "x", "namespace": "test"}})
}

fn with_spec(mut base: Value, spec: Value) -> Value {
    base["spec"] = spec;
    base
}

#[test]
fn flagger_v1alpha1_quantity_weights() {
    let doc = with_spec(
        meta("split.smi-spec.io/v1alpha1", "TrafficSplit"),
        json!({"service": "podinfo", "backends": [
            {"service": "podinfo-canary", "weight": "0"}, {"service": "podinfo-primary", "weight": "100"}]}),
    );
    let ts: split::v1alpha1::TrafficSplit = round_trip(doc.clone());
    assert_eq!(ts.spec.backends[1].weight, Weight::Quantity("100".into()));
    let view = SplitView::from_spec(&doc["spec"]).unwrap();
    assert_eq!(
        view.backends,
        vec![("podinfo-canary".into(), 0), ("podinfo-primary".into(), 100_000)]
    );
}

#[test]
fn spec_v1alpha1_milli_quantities_are_relative() {
    let spec = json!({"service": "numbers", "backends": [
        {"service": "one", "weight": "10m"}, {"service": "two", "weight": "100m"}, {"service": "three", "weight": 1}]});
    let _: split::v1alpha1::TrafficSplit = round_trip(with_spec(
        meta("split.smi-spec.io/v1alpha1", "TrafficSplit"),
        spec.clone(),
    ));
    let view = SplitView::from_spec(&spec).unwrap();
    assert_eq!(
        view.backends.iter().map(|b| b.1).collect::<Vec<_>>(),
        vec![10, 100, 1000]
    );
}

#[test]
fn flagger_v1alpha2_and_v1alpha3_int_weights() {
    let spec = json!({"service": "podinfo", "backends": [
        {"service": "podinfo-canary", "weight": 30}, {"service": "podinfo-primary", "weight": 70}]});
    let _: split::v1alpha2::TrafficSplit = round_trip(with_spec(
        meta("split.smi-spec.io/v1alpha2", "TrafficSplit"),
        spec.clone(),
    ));
    let _: split::v1alpha3::TrafficSplit = round_trip(with_spec(
        meta("split.smi-spec.io/v1alpha3", "TrafficSplit"),
        spec.clone(),
    ));
    assert_eq!(
        SplitView::from_spec(&spec).unwrap().backends[0],
        ("podinfo-canary".into(), 30_000)
    );
}

#[test]
fn v1alpha4_with_matches() {
    let spec = json!({"service": "website", "matches": [{"kind": "HTTPRouteGroup", "name": "ab-test"}],
        "backends": [{"service": "website-v1", "weight": 0}, {"service": "website-v2", "weight": 100}]});
    let _: split::v1alpha4::TrafficSplit = round_trip(with_spec(
        meta("split.smi-spec.io/v1alpha4", "TrafficSplit"),
        spec.clone(),
    ));
    assert_eq!(
        SplitView::from_spec(&spec).unwrap().matches,
        vec!["ab-test".to_string()]
    );
}

#[test]
fn reader_reports_bad_stored_objects() {
    assert!(
        SplitView::from_spec(&json!({"backends": []})).is_err(),
        "missing service"
    );
    let neg = json!({"service": "a", "backends": [{"service": "b", "weight": -1}]});
    assert!(
        SplitView::from_spec(&neg)
            .unwrap_err()
            .to_string()
            .contains("spec.backends[0].weight")
    );
}

#[test]
fn traffic_target_v1alpha3_and_v1alpha2() {
    let spec = json!({
        "destination": {"kind": "ServiceAccount", "name": "service-a", "namespace": "default"},
        "rules": [{"kind": "TCPRoute", "name": "the-routes"},
                  {"kind": "HTTPRouteGroup", "name": "the-routes", "matches": ["metrics"]}],
        "sources": [{"kind": "ServiceAccount", "name": "prometheus", "namespace": "default"}]});
    let _: access::v1alpha3::TrafficTarget = round_trip(with_spec(
        meta("access.smi-spec.io/v1alpha3", "TrafficTarget"),
        spec.clone(),
    ));
    let mut v2 = spec;
    v2["destination"]["port"] = json!(8080);
    let tt: access::v1alpha2::TrafficTarget = round_trip(with_spec(
        meta("access.smi-spec.io/v1alpha2", "TrafficTarget"),
        v2,
    ));
    assert_eq!(tt.spec.destination.port, Some(8080));
}

#[test]
fn http_route_group_headers_in_both_shapes() {
    let map = json!({"matches": [{"name": "firefox", "pathRegex": "/metrics", "methods": ["GET", "*"],
        "headers": {"User-Agent": ".*Firefox.*"}}]});
    let list =
        json!({"matches": [{"name": "firefox", "headers": [{"user-agent": ".*Firefox.*"}, {"x-b": "1"}]}]});
    let a: specs::v1alpha4::HTTPRouteGroup = round_trip(with_spec(
        meta("specs.smi-spec.io/v1alpha4", "HTTPRouteGroup"),
        map,
    ));
    let b: specs::v1alpha4::HTTPRouteGroup = round_trip(with_spec(
        meta("specs.smi-spec.io/v1alpha4", "HTTPRouteGroup"),
        list,
    ));
    let ha = a.spec.matches[0].headers.as_ref().unwrap().merged();
    let hb = b.spec.matches[0].headers.as_ref().unwrap().merged();
    assert_eq!(ha.get("user-agent"), hb.get("user-agent"));
    assert_eq!(hb.len(), 2);
}

#[test]
fn tcp_routes_v1alpha3_and_v1alpha4() {
    let _: specs::v1alpha3::TCPRoute = round_trip(with_spec(
        meta("specs.smi-spec.io/v1alpha3", "TCPRoute"),
        json!({}),
    ));
    let r: specs::v1alpha4::TCPRoute = round_trip(with_spec(
        meta("specs.smi-spec.io/v1alpha4", "TCPRoute"),
        json!({"matches": {"ports": [8301, 8302]}}),
    ));
    assert_eq!(r.spec.matches.unwrap().ports, vec![8301, 8302]);
    let all: specs::v1alpha4::TCPRoute = round_trip(with_spec(
        meta("specs.smi-spec.io/v1alpha4", "TCPRoute"),
        json!({"matches": {"ports": []}}),
    ));
    assert!(all.spec.matches.unwrap().ports.is_empty());
}

#[test]
fn retry_sample() {
    let spec = json!({
        "source": {"kind": "ServiceAccount", "name": "productpage"},
        "destinations": [{"kind": "Service", "name": "ratings"}],
        "retryOn": ["5xx", "connect-failure", "retriable-status-codes", "unavailable"],
        "retriableStatusCodes": [409],
        "numRetries": 3, "perTryTimeout": "250ms", "timeout": "2s",
        "backoff": {"baseInterval": "25ms", "maxInterval": "250ms"},
        "budget": {"ratio": 0.2, "minRetriesPerSecond": 10, "window": "10s"}});
    let r: policy::Retry = round_trip(with_spec(meta("policy.weft.dev/v1alpha1", "Retry"), spec));
    assert_eq!(r.spec.per_try_timeout.unwrap().to_millis(), Ok(250));
}

#[test]
fn circuit_breaker_samples() {
    let spec = json!({
        "destination": {"kind": "Service", "name": "reviews-v3"},
        "connectionPool": {"maxConnections": 100, "maxPendingRequests": 10, "maxRequests": 200,
            "maxRequestsPerConnection": 1000, "connectTimeout": "1s"},
        "outlierDetection": {"consecutive5xx": 5, "consecutiveGatewayErrors": 3, "interval": "10s",
            "baseEjectionTime": "30s", "maxEjectionPercent": 50},
        "breaker": {"failureRateThreshold": 50, "window": "10s", "minimumRequests": 20,
            "openDuration": "30s", "halfOpenRequests": 3},
        "fallback": {"static": {"status": 503, "body": "reviews unavailable", "headers": {"x-fallback": "1"}}}});
    let cb: policy::CircuitBreaker = round_trip(with_spec(
        meta("policy.weft.dev/v1alpha1", "CircuitBreaker"),
        spec,
    ));
    assert_eq!(cb.spec.outlier_detection.unwrap().consecutive_5xx, Some(5));
    let svc = json!({"destination": {"kind": "Service", "name": "reviews"}, "breaker": {"failureRateThreshold": 25},
        "fallback": {"service": "reviews-v1"}});
    let _: policy::CircuitBreaker =
        round_trip(with_spec(meta("policy.weft.dev/v1alpha1", "CircuitBreaker"), svc));
}

#[test]
fn mesh_config_sample() {
    let doc = json!({"apiVersion": "policy.weft.dev/v1alpha1", "kind": "MeshConfig", "metadata": {"name": "default"},
        "spec": {"trustDomain": "cluster.local", "accessMode": "smi", "mtlsMode": "strict",
            "proxy": {"image": "weft/proxy:0.1.0", "logLevel": "info",
                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}}},
            "certificateValidity": "24h"}});
    let m: mesh::MeshConfig = round_trip(doc);
    assert_eq!(m.spec.access_mode, Some(mesh::AccessMode::Smi));
}

#[test]
fn load_balancing_samples() {
    let sticky = json!({"destination": {"kind": "Service", "name": "cart"}, "ports": [8080],
        "algorithm": "consistentHash",
        "consistentHash": {"cookie": {"name": "cart-session", "ttl": "1h", "path": "/cart"}, "table": "maglev"}});
    let lb: balancing::LoadBalancing = round_trip(with_spec(
        meta("policy.weft.dev/v1alpha1", "LoadBalancing"),
        sticky,
    ));
    assert_eq!(lb.spec.algorithm, balancing::Algorithm::ConsistentHash);
    let ch = lb.spec.consistent_hash.unwrap();
    assert_eq!(ch.table, Some(balancing::HashTable::Maglev));
    assert_eq!(ch.cookie.unwrap().ttl.unwrap().to_millis(), Ok(3_600_000));
    for ch in [json!({"header": "x-user"}), json!({"sourceIp": true})] {
        let spec = json!({"destination": {"kind": "Service", "name": "cart"}, "algorithm": "consistentHash",
            "consistentHash": ch});
        let _: balancing::LoadBalancing =
            round_trip(with_spec(meta("policy.weft.dev/v1alpha1", "LoadBalancing"), spec));
    }
    let rr = json!({"destination": {"kind": "Service", "name": "cart", "namespace": "shop"}, "algorithm": "roundRobin"});
    let _: balancing::LoadBalancing =
        round_trip(with_spec(meta("policy.weft.dev/v1alpha1", "LoadBalancing"), rr));
}

#[test]
fn fault_injection_sample() {
    let spec = json!({
        "destination": {"kind": "Service", "name": "ratings"},
        "source": {"kind": "ServiceAccount", "name": "reviews"},
        "matches": [
            {"path": {"type": "PathPrefix", "value": "/ratings"}, "method": "GET",
             "headers": [{"name": "x-chaos", "value": "on"}, {"name": "user-agent", "value": ".*Firefox.*", "type": "RegularExpression"}]},
            {"grpc": {"service": "bookinfo.v1.Ratings", "method": "Get"}}],
        "delay": {"fixedDelay": "2s", "percentage": 10.0},
        "abort": {"httpStatus": 503, "grpcStatus": 14, "percentage": 5.5}});
    let f: fault::FaultInjection = round_trip(with_spec(
        meta("policy.weft.dev/v1alpha1", "FaultInjection"),
        spec,
    ));
    let m = f.spec.matches.unwrap();
    assert_eq!(
        m[0].path.as_ref().unwrap().type_,
        Some(fault::PathMatchType::PathPrefix)
    );
    assert_eq!(
        m[0].headers.as_ref().unwrap()[1].type_,
        Some(fault::HeaderMatchType::RegularExpression)
    );
    assert_eq!(f.spec.delay.unwrap().fixed_delay.to_millis(), Ok(2000));
    assert_eq!(f.spec.abort.unwrap().percentage, 5.5);
}

#[test]
fn traffic_mirror_sample() {
    let spec = json!({"destination": {"kind": "Service", "name": "reviews"},
        "mirror": {"name": "reviews-shadow", "namespace": "staging", "port": 9080},
        "percentage": 25.0, "maxBodyBytes": 131072});
    let m: mirror::TrafficMirror =
        round_trip(with_spec(meta("policy.weft.dev/v1alpha1", "TrafficMirror"), spec));
    assert_eq!(m.spec.mirror.port, Some(9080));
    assert_eq!(m.spec.max_body_bytes, Some(131_072));
    let minimal =
        json!({"destination": {"kind": "Service", "name": "reviews"}, "mirror": {"name": "reviews-v2"}});
    let m: mirror::TrafficMirror = round_trip(with_spec(
        meta("policy.weft.dev/v1alpha1", "TrafficMirror"),
        minimal,
    ));
    assert_eq!((m.spec.percentage, m.spec.max_body_bytes), (None, None));
}

/// Parses `examples/policies/<file>` as `T` and checks it serializes back to the same JSON.
fn example<T: DeserializeOwned + Serialize>(file: &str) -> T {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/policies")
        .join(file);
    let doc: Value = serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    round_trip(doc)
}

#[test]
fn policy_examples_parse() {
    let lb: balancing::LoadBalancing = example("loadbalancing.yaml");
    assert_eq!(lb.spec.ports, Some(vec![9080]));
    let f: fault::FaultInjection = example("faultinjection.yaml");
    assert!(f.spec.delay.is_some() && f.spec.abort.is_some());
    let m: mirror::TrafficMirror = example("trafficmirror.yaml");
    assert_eq!(m.spec.mirror.name, "reviews-v2");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/policies");
    assert_eq!(
        std::fs::read_dir(dir).unwrap().count(),
        3,
        "one example per kind, each tested here"
    );
}
