use super::*;
use serde_json::{Value, json};

fn pod(v: Value) -> Pod {
    serde_json::from_value(v).unwrap()
}

fn app(extra: Value) -> Pod {
    let mut v = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "image": "a"}]}});
    if let Value::Object(m) = extra {
        for (k, x) in m {
            if k == "annotations" {
                v["metadata"]["annotations"] = x;
            } else {
                v["spec"][k] = x;
            }
        }
    }
    pod(v)
}

fn locked() -> InjectConfig {
    InjectConfig {
        allow_opt_out: false,
        ..InjectConfig::default()
    }
}

#[test]
fn forged_injected_annotation_is_denied() {
    let p = app(json!({"annotations": {"weft.dev/injected": "0.1.0"}}));
    let e = admit(&p, "shop", &InjectConfig::default()).unwrap_err();
    assert_eq!(e, Deny::ForgedInjected);
    assert!(e.to_string().contains("weft.dev/injected"), "{e}");
    // A pod that really has the sidecar is still skipped as already injected.
    let mut injected = app(json!({"annotations": {"weft.dev/injected": "0.1.0"}}));
    let spec = injected.spec.as_mut().unwrap();
    spec.init_containers = Some(vec![Container {
        name: PROXY_CONTAINER.into(),
        ..Container::default()
    }]);
    assert_eq!(
        admit(&injected, "shop", &InjectConfig::default()),
        Ok(Decision::Skip("already injected"))
    );
}

#[test]
fn containers_running_as_the_proxy_uid_are_denied_naming_the_field() {
    let p =
        app(json!({"containers": [{"name": "a"}, {"name": "b", "securityContext": {"runAsUser": 2102}}]}));
    let e = admit(&p, "shop", &InjectConfig::default()).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("spec.containers[1].securityContext.runAsUser") && msg.contains("2102"),
        "{msg}"
    );

    let p = app(json!({"initContainers": [{"name": "setup", "securityContext": {"runAsUser": 2102}}]}));
    let msg = admit(&p, "shop", &InjectConfig::default())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("spec.initContainers[0].securityContext.runAsUser"),
        "{msg}"
    );

    let p = app(json!({"securityContext": {"runAsUser": 2102}}));
    let msg = admit(&p, "shop", &InjectConfig::default())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("spec.securityContext.runAsUser") && msg.contains("containers[0]"),
        "{msg}"
    );

    // A container overriding the pod-level UID is fine; so are other UIDs.
    let p = app(json!({"securityContext": {"runAsUser": 2102},
        "containers": [{"name": "a", "securityContext": {"runAsUser": 1000}}]}));
    assert_eq!(admit(&p, "shop", &InjectConfig::default()), Ok(Decision::Inject));
    // Opted-out pods get no iptables rules: their UID does not matter.
    let p =
        app(json!({"annotations": {"weft.dev/inject": "disabled"}, "securityContext": {"runAsUser": 2102}}));
    assert!(matches!(
        admit(&p, "shop", &InjectConfig::default()),
        Ok(Decision::Skip(_))
    ));
}

#[test]
fn opt_out_annotations_are_denied_when_mesh_config_forbids_them() {
    for (k, v) in [
        ("weft.dev/inject", "disabled"),
        ("weft.dev/skip-inbound-ports", "8080"),
        ("weft.dev/skip-outbound-ports", "5432"),
        ("weft.dev/skip-outbound-cidrs", "10.0.0.0/8"),
    ] {
        let p = app(json!({"annotations": {k: v}}));
        let e = admit(&p, "shop", &locked()).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains(k) && msg.contains("allowOptOut"), "{msg}");
        // Allowed by default.
        assert!(admit(&p, "shop", &InjectConfig::default()).is_ok(), "{k}");
    }
    // `inject: enabled` is not an opt-out; weft-system is never injected.
    let p = app(json!({"annotations": {"weft.dev/inject": "enabled"}}));
    assert_eq!(admit(&p, "shop", &locked()), Ok(Decision::Inject));
    let p = app(json!({"annotations": {"weft.dev/inject": "disabled"}}));
    assert!(matches!(
        admit(&p, SYSTEM_NAMESPACE, &locked()),
        Ok(Decision::Skip(_))
    ));
}
