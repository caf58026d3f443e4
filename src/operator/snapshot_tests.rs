//! Reading weft's traffic-policy kinds (LoadBalancing, FaultInjection,
//! TrafficMirror) from the watch caches into [`ClusterState`] lists.

use super::snapshot::{Caches, cluster_state};
use super::state::Kind;
use kube::api::DynamicObject;
use std::sync::Arc;

fn dyn_obj(v: serde_json::Value) -> DynamicObject {
    serde_json::from_value(v).unwrap()
}

#[test]
fn traffic_policy_kinds_reach_their_lists() {
    let obj = |kind: &str, spec: serde_json::Value| {
        Arc::new(dyn_obj(
            serde_json::json!({"apiVersion": "policy.weft.dev/v1alpha1", "kind": kind,
            "metadata": {"name": "p", "namespace": "shop", "generation": 3}, "spec": spec}),
        ))
    };
    let d = serde_json::json!({"kind": "Service", "name": "cart"});
    let caches = Caches {
        objects: vec![
            (
                Kind::LoadBalancing,
                vec![obj(
                    "LoadBalancing",
                    serde_json::json!({"destination": d, "algorithm": "random"}),
                )],
            ),
            (
                Kind::FaultInjection,
                vec![obj(
                    "FaultInjection",
                    serde_json::json!({"destination": d, "abort": {"httpStatus": 503, "percentage": 1.0}}),
                )],
            ),
            (
                Kind::TrafficMirror,
                vec![obj(
                    "TrafficMirror",
                    serde_json::json!({"destination": d, "mirror": 7}),
                )],
            ),
        ],
        ..Caches::default()
    };
    let (st, _) = cluster_state(&caches);
    assert_eq!(st.load_balancings[0].generation, Some(3));
    assert!(st.load_balancings[0].spec.is_ok() && st.fault_injections[0].spec.is_ok());
    assert!(
        st.traffic_mirrors[0].spec.is_err(),
        "unreadable specs become errors"
    );
}

#[test]
fn gateway_routes_and_grants_reach_the_state() {
    use super::state::{RouteKind, RouteSpec};
    let route = |kind: &str, spec: serde_json::Value| {
        Arc::new(dyn_obj(
            serde_json::json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": kind,
            "metadata": {"name": "r", "namespace": "shop", "generation": 2, "creationTimestamp": "2026-01-01T00:00:01Z"},
            "spec": spec}),
        ))
    };
    let caches = Caches {
        gamma_routes: vec![
            (
                RouteKind::Http,
                vec![route(
                    "HTTPRoute",
                    serde_json::json!({"parentRefs": [{"group": "", "kind": "Service", "name": "cart"}]}),
                )],
            ),
            (
                RouteKind::Grpc,
                vec![route("GRPCRoute", serde_json::json!({"rules": 5}))],
            ),
        ],
        reference_grants: vec![Arc::new(dyn_obj(serde_json::json!({
            "apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "ReferenceGrant",
            "metadata": {"name": "g", "namespace": "other"},
            "spec": {"from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": "shop"}],
                "to": [{"group": "", "kind": "Service"}]}})))],
        ..Caches::default()
    };
    let (st, _) = cluster_state(&caches);
    assert_eq!(st.gamma_routes.len(), 2);
    let http = &st.gamma_routes[0];
    assert_eq!(
        (http.generation, http.created_ms),
        (Some(2), Some(1_767_225_601_000))
    );
    assert!(matches!(&http.spec, Ok(RouteSpec::Http(s)) if s.parent_refs[0].is_service()));
    // An unreadable route is an error input, not a failure.
    assert!(st.gamma_routes[1].spec.is_err());
    assert_eq!(
        st.reference_grants[0].spec.as_ref().unwrap().to[0].kind,
        "Service"
    );
}
