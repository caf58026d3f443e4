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
