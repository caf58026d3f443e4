//! Unit tests of reading the ingress gateway inputs: classes and Gateways (readable
//! or not), namespace labels, TLS Secret validity, and the address / ready replicas
//! of the objects weft runs per Gateway.

use super::*;
use crate::operator::snapshot::{Caches, cluster_state};
use k8s_openapi::ByteString;

fn dyn_obj(v: serde_json::Value) -> Arc<DynamicObject> {
    Arc::new(serde_json::from_value(v).unwrap())
}

fn secret(ns: &str, name: &str, ty: &str, crt: &str, key: &str) -> Arc<Secret> {
    let mut s: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": ns}, "type": ty}))
    .unwrap();
    s.data = Some(BTreeMap::from([
        ("tls.crt".to_string(), ByteString(crt.as_bytes().to_vec())),
        ("tls.key".to_string(), ByteString(key.as_bytes().to_vec())),
    ]));
    Arc::new(s)
}

fn pem_pair() -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["shop.example".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    (cert.pem(), key.serialize_pem())
}

fn caches() -> Caches {
    let (crt, key) = pem_pair();
    let gateway = |name: &str, spec: serde_json::Value| {
        dyn_obj(
            serde_json::json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": name, "namespace": "edge", "uid": format!("uid-{name}"), "generation": 3,
                         "creationTimestamp": "2026-12-04T10:00:00Z"},
            "spec": spec}),
        )
    };
    let svc = |name: &str, ip: &str| -> Arc<Service> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "edge"},
            "spec": {"clusterIP": ip, "ports": [{"port": 80}]}}))
            .unwrap(),
        )
    };
    let deployment: Arc<Deployment> = Arc::new(
        serde_json::from_value(serde_json::json!({
        "metadata": {"name": "weft-gateway-web", "namespace": "edge"},
        "status": {"readyReplicas": 1}}))
        .unwrap(),
    );
    let ns: Arc<Namespace> = Arc::new(
        serde_json::from_value(serde_json::json!({
        "metadata": {"name": "edge", "labels": {"team": "a"}}}))
        .unwrap(),
    );
    Caches {
        namespaces: vec![ns],
        services: vec![
            svc("weft-gateway-web", "198.19.0.9"),
            svc("weft-gateway-idle", "None"),
        ],
        gateway: GatewayCaches {
            classes: vec![
                dyn_obj(
                    serde_json::json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
                    "metadata": {"name": "weft", "generation": 2}, "spec": {"controllerName": "weft.dev/gateway"}}),
                ),
                dyn_obj(
                    serde_json::json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
                    "metadata": {"name": "broken"}, "spec": {"controllerName": 5}}),
                ),
            ],
            gateways: vec![
                gateway(
                    "web",
                    serde_json::json!({"gatewayClassName": "weft",
                    "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}),
                ),
                gateway(
                    "idle",
                    serde_json::json!({"gatewayClassName": "weft", "listeners": []}),
                ),
                gateway("bad", serde_json::json!({"listeners": "nope"})),
            ],
            tls_secrets: vec![
                secret("edge", "good", TLS_SECRET_TYPE, &crt, &key),
                secret("edge", "swapped", TLS_SECRET_TYPE, &key, &crt),
                secret("edge", "garbage", TLS_SECRET_TYPE, "x", "y"),
                secret("edge", "opaque", "Opaque", &crt, &key),
            ],
            deployments: vec![deployment],
        },
        ..Caches::default()
    }
}

#[test]
fn gateways_classes_and_their_objects_are_read() {
    let (st, _) = cluster_state(&caches());
    let g = &st.gateway;
    assert_eq!(g.classes.len(), 2);
    assert_eq!(g.classes[0].name, "weft");
    assert_eq!(g.classes[0].generation, Some(2));
    assert_eq!(
        g.classes[0].spec.as_ref().unwrap().controller_name,
        "weft.dev/gateway"
    );
    assert!(g.classes[1].spec.is_err(), "an unreadable class is an Err input");
    let web = g.gateways.iter().find(|x| x.name == "web").unwrap();
    assert_eq!(web.uid, "uid-web");
    assert_eq!(web.generation, Some(3));
    assert!(web.created_ms.is_some());
    assert_eq!(web.address.as_deref(), Some("198.19.0.9"));
    assert_eq!(web.ready_replicas, 1);
    assert_eq!(web.spec.as_ref().unwrap().listeners[0].port, 80);
    let idle = g.gateways.iter().find(|x| x.name == "idle").unwrap();
    assert_eq!(
        (idle.address.as_deref(), idle.ready_replicas),
        (None, 0),
        "headless or missing: no address"
    );
    assert!(g.gateways.iter().find(|x| x.name == "bad").unwrap().spec.is_err());
    assert_eq!(g.namespace_labels["edge"]["team"], "a");
}

#[test]
fn tls_secrets_are_valid_only_with_a_pem_chain_and_key() {
    let (st, _) = cluster_state(&caches());
    let s = &st.gateway.tls_secrets;
    let k = |n: &str| ("edge".to_string(), n.to_string());
    assert!(s[&k("good")]);
    assert!(!s[&k("swapped")]);
    assert!(!s[&k("garbage")]);
    assert!(
        !s.contains_key(&k("opaque")),
        "only kubernetes.io/tls Secrets count"
    );
}

#[test]
fn the_gateway_pod_is_a_meshed_pod_of_its_identity() {
    let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "weft-gateway-web-1", "namespace": "edge",
                     "annotations": {"weft.dev/injected": "0.1.0"}},
        "spec": {"serviceAccountName": "weft-gateway-web",
                 "containers": [{"name": "weft-gateway", "ports": [{"containerPort": 80}]}]},
        "status": {"podIP": "198.18.0.9"}}))
    .unwrap();
    let p = crate::operator::snapshot::meshed_pod(&pod).unwrap();
    assert_eq!(p.service_account, "weft-gateway-web");
    assert!(p.ports.is_empty(), "listener ports are not app ports");
}
