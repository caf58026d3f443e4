//! Unit tests of reading watched objects into snapshot inputs: SMI specs in every served
//! version, unreadable specs as errors, meshed pods and namespaces, MeshConfig defaults.

use super::*;

fn dyn_obj(v: serde_json::Value) -> DynamicObject {
    serde_json::from_value(v).unwrap()
}

#[test]
fn v1alpha1_split_with_quantity_strings_reads() {
    let o = dyn_obj(
        serde_json::json!({"apiVersion": "split.smi-spec.io/v1alpha4", "kind": "TrafficSplit",
        "metadata": {"name": "podinfo", "namespace": "test", "generation": 2},
        "spec": {"service": "podinfo", "backends": [{"service": "c", "weight": "0"}, {"service": "p", "weight": "100"}]}}),
    );
    let i = split(&o).unwrap();
    assert_eq!(i.generation, Some(2));
    assert_eq!(
        i.spec.unwrap().backends,
        [("c".to_string(), 0), ("p".to_string(), 100_000)]
    );
}

#[test]
fn unreadable_specs_become_errors_not_failures() {
    let o = dyn_obj(
        serde_json::json!({"apiVersion": "access.smi-spec.io/v1alpha3", "kind": "TrafficTarget",
        "metadata": {"name": "t", "namespace": "n"}, "spec": {"destination": 5}}),
    );
    assert!(traffic_target(&o).unwrap().spec.is_err());
    let o = dyn_obj(
        serde_json::json!({"apiVersion": "access.smi-spec.io/v1alpha3", "kind": "TrafficTarget",
        "metadata": {"name": "t", "namespace": "n"}, "spec": {"destination": {"kind": "ServiceAccount", "name": "d", "port": 80},
        "rules": [{"kind": "TCPRoute", "name": "r"}], "sources": [{"kind": "ServiceAccount", "name": "s", "namespace": "o"}]}}),
    );
    let t = traffic_target(&o).unwrap().spec.unwrap();
    assert_eq!(t.destination, ("n".to_string(), "d".to_string()));
    assert_eq!(t.destination_port, Some(80));
    assert_eq!(t.sources, [("o".to_string(), "s".to_string())]);
}

fn pod_in(ns: &str, name: &str, annotations: serde_json::Value, sidecar: bool) -> Arc<Pod> {
    let mut spec = serde_json::json!({"serviceAccountName": name,
        "containers": [{"name": "app", "ports": [{"containerPort": 8080}]}]});
    if sidecar {
        spec["initContainers"] = serde_json::json!([{"name": "weft-proxy", "restartPolicy": "Always"}]);
    }
    Arc::new(
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": ns, "annotations": annotations},
            "spec": spec,
            "status": {"podIP": "198.18.0.7"},
        }))
        .unwrap(),
    )
}

fn ns(name: &str, label: Option<&str>) -> Arc<Namespace> {
    let labels = label.map(|v| serde_json::json!({"weft.dev/inject": v}));
    Arc::new(
        serde_json::from_value(serde_json::json!({"metadata": {"name": name, "labels": labels}})).unwrap(),
    )
}

/// Issue 14, item 8: the `weft.dev/injected` annotation alone makes no identity or
/// endpoint; the pod must have the sidecar and live in an opted-in namespace.
#[test]
fn only_sidecar_pods_of_opted_in_namespaces_are_meshed() {
    let injected = serde_json::json!({"weft.dev/injected": "0.1.0"});
    let caches = Caches {
        pods: vec![
            pod_in("shop", "real", injected.clone(), true),
            pod_in("shop", "forged-no-sidecar", injected.clone(), false),
            pod_in("plain", "forged-elsewhere", injected.clone(), true),
            pod_in("off", "label-disabled", injected.clone(), true),
            pod_in("unknown", "no-namespace-object", injected, true),
            pod_in("shop", "not-annotated", serde_json::json!({}), true),
        ],
        namespaces: vec![
            ns("shop", Some("enabled")),
            ns("plain", None),
            ns("off", Some("disabled")),
        ],
        ..Caches::default()
    };
    let (st, _) = cluster_state(&caches);
    let names: Vec<&str> = st.meshed_pods.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["real"]);
    assert_eq!(st.meshed_pods[0].ports.len(), 1);
    // Rendered: one identity only (configs or skipped for lack of a ServiceAccount).
    let out = crate::operator::render::render(&st);
    let ids: Vec<_> = out.configs.keys().chain(out.skipped.keys()).cloned().collect();
    assert_eq!(ids, [("shop".to_string(), "real".to_string())]);
}

#[test]
fn mesh_defaults() {
    let (m, v) = mesh(None);
    assert_eq!(m, MeshInput::default());
    assert_eq!(v, DEFAULT_CERT_VALIDITY);
}
