//! Property tests for the admission handler (issue 14, fuzz and property tests):
//! arbitrary AdmissionReview bodies and arbitrary Pod JSON never panic, and every
//! returned patch is a valid JSON Patch that applies to the object the API server
//! sent (for objects with `metadata` and `spec`, as the API server always sends),
//! giving a Pod that decodes and carries the sidecar.

use super::review;
use crate::webhook::InjectConfig;
use proptest::prelude::*;
use serde_json::{Value, json};

fn review_body(namespace: &str, pod: Value, operation: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "0b5a7a2c-1111-2222-3333-444455556666",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace,
            "operation": operation,
            "userInfo": {"username": "tester"},
            "object": pod,
        }
    }))
    .unwrap_or_default()
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(|n| json!(n)),
        "\\PC{0,10}".prop_map(Value::String),
    ];
    let key = prop_oneof![
        prop::sample::select(
            &[
                "metadata",
                "spec",
                "containers",
                "initContainers",
                "name",
                "image",
                "ports",
                "containerPort",
                "annotations",
                "volumes",
                "readinessProbe",
                "httpGet",
                "port",
                "securityContext",
                "runAsUser",
                "restartPolicy",
                "serviceAccountName",
            ][..]
        )
        .prop_map(str::to_string),
        "[a-z]{1,6}",
    ];
    leaf.prop_recursive(5, 96, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn annotation() -> impl Strategy<Value = (String, String)> {
    (
        prop::sample::select(
            &[
                "weft.dev/inject",
                "weft.dev/skip-inbound-ports",
                "weft.dev/skip-outbound-ports",
                "weft.dev/skip-outbound-cidrs",
                "prometheus.io/scrape",
                "a~b/c",
                "x",
            ][..],
        )
        .prop_map(str::to_string),
        prop_oneof![
            Just("enabled".to_string()),
            Just("disabled".to_string()),
            Just("80,8000-8100".to_string()),
            Just("10.0.0.0/8".to_string()),
            "[ -~]{0,8}",
        ],
    )
}

fn container() -> impl Strategy<Value = Value> {
    (
        "[a-z~/][a-z0-9~/-]{0,6}",
        prop::collection::vec(1i32..20000, 0..3),
        prop::option::of(prop_oneof![1i32..20000, "[a-z]{1,5}".prop_map(|_| 0)]),
        prop::option::of(prop_oneof![Just(0i64), Just(1000), Just(2102)]),
        any::<bool>(),
    )
        .prop_map(|(name, ports, probe, uid, native)| {
            let mut c = json!({
                "name": name,
                "image": "app",
                "ports": ports.iter().map(|p| json!({"containerPort": p})).collect::<Vec<_>>(),
            });
            if let Some(p) = probe {
                c["readinessProbe"] = json!({"httpGet": {"path": "/h", "port": p}});
            }
            if let Some(u) = uid {
                c["securityContext"] = json!({"runAsUser": u});
            }
            if native {
                c["restartPolicy"] = json!("Always");
            }
            c
        })
}

fn pod() -> impl Strategy<Value = Value> {
    (
        prop::collection::btree_map("[a-z]{1,5}", "[a-z0-9]{0,5}", 0..3),
        prop::collection::vec(annotation(), 0..4),
        prop::collection::vec(container(), 0..3),
        prop::collection::vec(container(), 0..2),
        prop::collection::vec("[a-z-]{1,12}", 0..3),
        prop::option::of("[a-z]{1,8}"),
        prop::option::of(prop_oneof![Just(0i64), Just(2102)]),
    )
        .prop_map(|(labels, anns, containers, inits, vols, sa, pod_uid)| {
            let mut spec = json!({
                "containers": containers,
                "volumes": vols.iter().map(|v| json!({"name": v, "emptyDir": {}})).collect::<Vec<_>>(),
            });
            if !inits.is_empty() {
                spec["initContainers"] = json!(inits);
            }
            if let Some(sa) = sa {
                spec["serviceAccountName"] = json!(sa);
            }
            if let Some(u) = pod_uid {
                spec["securityContext"] = json!({"runAsUser": u});
            }
            let mut metadata = json!({"generateName": "web-", "labels": labels});
            if !anns.is_empty() {
                metadata["annotations"] =
                    json!(anns.into_iter().collect::<std::collections::BTreeMap<_, _>>());
            }
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec})
        })
}

/// The response's patch applied to `object`: `Ok(None)` when there is no patch.
fn applied(body: &[u8], object: &Value) -> Result<Option<Value>, TestCaseError> {
    let Ok((review, _)) = review(body, &InjectConfig::default()) else {
        return Ok(None);
    };
    let v = serde_json::to_value(review).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let Some(p) = v["response"].get("patch") else {
        return Ok(None);
    };
    prop_assert_eq!(&v["response"]["patchType"], "JSONPatch");
    let bytes: Vec<u8> = serde_json::from_value(p.clone()).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let ops: json_patch::Patch =
        serde_json::from_slice(&bytes).map_err(|e| TestCaseError::fail(format!("not a JSON Patch: {e}")))?;
    let mut doc = object.clone();
    json_patch::patch(&mut doc, &ops)
        .map_err(|e| TestCaseError::fail(format!("patch does not apply: {e}")))?;
    Ok(Some(doc))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bodies_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256), v in any_json()) {
        let _ = review(&bytes, &InjectConfig::default());
        let _ = review(v.to_string().as_bytes(), &InjectConfig::default());
    }

    #[test]
    fn arbitrary_pod_json_never_panics_and_patches_apply(object in any_json(), op in prop::sample::select(&["CREATE", "UPDATE"][..])) {
        let body = review_body("shop", object.clone(), op);
        // The API server always sends `metadata` and `spec`; an object without them is
        // patched as the handler decoded it (k8s-openapi adds the empty `metadata`).
        let decoded = serde_json::from_value::<k8s_openapi::api::core::v1::Pod>(object.clone())
            .ok()
            .and_then(|p| serde_json::to_value(p).ok());
        let base = match (&object["metadata"], &object["spec"], decoded) {
            (Value::Object(_), Value::Object(_), _) | (_, _, None) => object,
            (_, _, Some(d)) => d,
        };
        applied(&body, &base)?;
    }

    #[test]
    fn generated_pods_get_patches_that_apply(object in pod()) {
        let body = review_body("shop", object.clone(), "CREATE");
        if let Some(doc) = applied(&body, &object)? {
            let pod: k8s_openapi::api::core::v1::Pod =
                serde_json::from_value(doc).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let inits = pod.spec.and_then(|s| s.init_containers).unwrap_or_default();
            prop_assert!(inits.iter().any(|c| c.name == "weft-proxy"));
        }
    }
}
