//! Golden tests for [`inject`] and [`decide`].

use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

use super::*;
use crate::webhook::names;

fn cfg() -> InjectConfig {
    InjectConfig {
        proxy_image: "weft/proxy:test".into(),
        version: "test".into(),
        ..InjectConfig::default()
    }
}

fn pod(v: Value) -> Pod {
    serde_json::from_value(v).unwrap()
}

fn plain() -> Pod {
    pod(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "web-7d9c5b8f6-", "namespace": "shop",
            "labels": {"app": "web", "pod-template-hash": "7d9c5b8f6"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9c5b8f6",
                "uid": "u1", "controller": true}]},
        "spec": {"serviceAccountName": "web", "containers": [{"name": "app", "image": "app:1",
            "ports": [{"name": "http", "containerPort": 8080}],
            "readinessProbe": {"httpGet": {"path": "healthz", "port": "http"}, "periodSeconds": 5},
            "livenessProbe": {"tcpSocket": {"port": 8080}, "timeoutSeconds": 3}}]}
    }))
}

fn names(containers: &Option<Vec<k8s_openapi::api::core::v1::Container>>) -> Vec<String> {
    containers.iter().flatten().map(|c| c.name.clone()).collect()
}

fn init_args(p: &Pod) -> Vec<String> {
    p.spec.as_ref().unwrap().init_containers.as_ref().unwrap()[0]
        .args
        .clone()
        .unwrap()
}

#[test]
fn golden_plain_pod() {
    let original = plain();
    let got = serde_json::to_value(inject(&original, &cfg()).unwrap()).unwrap();
    let want: Value = serde_json::from_str(include_str!("testdata/plain_pod_injected.json")).unwrap();
    assert_eq!(got, want, "got:\n{}", serde_json::to_string_pretty(&got).unwrap());
    let mut patched = serde_json::to_value(&original).unwrap();
    let p = patch(&original, &inject(&original, &cfg()).unwrap()).unwrap();
    json_patch::patch(&mut patched, &p).unwrap();
    assert_eq!(patched, want);
}

#[test]
fn existing_init_containers_come_after_init_and_sidecar() {
    let p = pod(json!({"metadata": {"name": "p"}, "spec": {
        "initContainers": [{"name": "migrate", "image": "m"},
            {"name": "logs", "image": "l", "restartPolicy": "Always",
             "readinessProbe": {"grpc": {"port": 9090}}}],
        "containers": [{"name": "app", "image": "a"}]}}));
    let out = inject(&p, &cfg()).unwrap();
    let spec = out.spec.as_ref().unwrap();
    assert_eq!(
        names(&spec.init_containers),
        ["weft-init", "weft-proxy", "migrate", "logs"]
    );
    let logs = &spec.init_containers.as_ref().unwrap()[3];
    let probe = logs.readiness_probe.as_ref().unwrap();
    assert!(probe.grpc.is_none());
    assert_eq!(
        probe.http_get.as_ref().unwrap().path.as_deref(),
        Some("/app-probe/logs/readyz")
    );
    let ann = out.metadata.annotations.as_ref().unwrap();
    assert_eq!(
        ann[names::ANN_APP_PROBES],
        r#"{"/app-probe/logs/readyz":{"grpc":{"port":9090},"timeoutSeconds":1}}"#
    );
    assert_eq!(
        (
            ann[names::ANN_WORKLOAD_KIND].as_str(),
            ann[names::ANN_WORKLOAD_NAME].as_str()
        ),
        ("Pod", "p")
    );
    let vols: Vec<&str> = spec.volumes.iter().flatten().map(|v| v.name.as_str()).collect();
    assert_eq!(vols, ["weft-identity", "weft-config", "weft-token"]);
    let sidecar = &spec.init_containers.as_ref().unwrap()[1];
    let volumes = spec.volumes.as_ref().unwrap();
    // No Secret (no workload key) is mounted: the identity volume holds a token for the
    // weft audience and the public trust bundle; the sidecar obtains its certificate by CSR.
    assert!(volumes.iter().all(|v| v.secret.is_none()), "no Secret volume");
    let sources = volumes[0].projected.as_ref().unwrap().sources.as_ref().unwrap();
    let token = sources[0].service_account_token.as_ref().unwrap();
    assert_eq!(
        (
            token.audience.as_deref(),
            token.expiration_seconds,
            token.path.as_str()
        ),
        (Some("weft.dev/identity"), Some(3600), "token")
    );
    let bundle = sources[1].config_map.as_ref().unwrap();
    assert_eq!((bundle.name.as_str(), bundle.optional), ("weft-ca-bundle", None));
    let env = |k: &str| {
        sidecar
            .env
            .iter()
            .flatten()
            .find(|e| e.name == k)
            .and_then(|e| e.value.clone())
    };
    assert_eq!(
        env("WEFT_IDENTITY_ENDPOINT").as_deref(),
        Some("weft-identity.weft-system.svc:15012")
    );
    assert_eq!(
        env("WEFT_IDENTITY_TOKEN").as_deref(),
        Some("/var/run/weft/identity/token")
    );
    assert_eq!(
        env("WEFT_CA_BUNDLE").as_deref(),
        Some("/var/run/weft/identity/ca.crt")
    );
    assert_eq!(env("WEFT_IDENTITY_DIR"), None);
    assert_eq!(volumes[1].config_map.as_ref().unwrap().name, "weft-proxy-default");
    assert_eq!(sidecar.restart_policy.as_deref(), Some("Always"));
}

#[test]
fn opt_out_and_opt_in_annotations() {
    let with = |v: &str| {
        pod(json!({"metadata": {"annotations": {"weft.dev/inject": v}}, "spec": {"containers": []}}))
    };
    assert_eq!(
        decide(&with("disabled"), "shop").unwrap(),
        Decision::Skip("disabled by pod annotation")
    );
    assert_eq!(decide(&with("enabled"), "shop").unwrap(), Decision::Inject);
    assert_eq!(decide(&plain(), "shop").unwrap(), Decision::Inject);
    let err = decide(&with("yes"), "shop").unwrap_err().to_string();
    assert!(
        err.contains("weft.dev/inject") && err.contains("\"yes\""),
        "{err}"
    );
    assert_eq!(
        decide(&plain(), "weft-system").unwrap(),
        Decision::Skip("weft-system namespace")
    );
}

#[test]
fn host_network_pods_are_skipped() {
    let p = pod(json!({"spec": {"hostNetwork": true, "containers": [{"name": "a"}]}}));
    assert_eq!(decide(&p, "shop").unwrap(), Decision::Skip("hostNetwork pod"));
}

#[test]
fn already_injected_is_skipped_and_injection_is_idempotent() {
    let once = inject(&plain(), &cfg()).unwrap();
    assert_eq!(decide(&once, "shop").unwrap(), Decision::Skip("already injected"));
    let twice = inject(&once, &cfg()).unwrap();
    assert_eq!(once, twice);
    assert!(patch(&once, &twice).unwrap().0.is_empty());
}

#[test]
fn custom_exclusions_reach_the_init_and_keep_skipped_probes() {
    let mut p = plain();
    p.metadata.annotations = Some(
        [
            ("weft.dev/skip-inbound-ports", "8080, 9000-9100"),
            ("weft.dev/skip-outbound-ports", "5432"),
            ("weft.dev/skip-outbound-cidrs", "198.19.7.0/24,fd00::/8"),
            ("prometheus.io/scrape", "false"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .into(),
    );
    let out = inject(&p, &cfg()).unwrap();
    assert_eq!(
        init_args(&out),
        [
            "init",
            "--inbound-port=15006",
            "--outbound-port=15001",
            "--admin-port=15020",
            "--proxy-uid=2102",
            "--skip-inbound-ports=8080,9000-9100",
            "--skip-outbound-ports=5432",
            "--skip-outbound-cidrs=198.19.7.0/24,fd00::/8",
        ]
    );
    // 8080 is not redirected, so its probes stay direct and no probe env is set.
    let app = &out.spec.as_ref().unwrap().containers[0];
    assert_eq!(app, &p.spec.as_ref().unwrap().containers[0]);
    let ann = out.metadata.annotations.unwrap();
    assert!(!ann.contains_key(names::ANN_APP_PROBES));
    assert_eq!(ann["prometheus.io/scrape"], "false");
    assert!(!ann.contains_key("prometheus.io/port"));
}

#[test]
fn invalid_annotation_is_denied_naming_it() {
    let mut p = plain();
    p.metadata.annotations = Some(
        [(
            "weft.dev/skip-outbound-cidrs".to_string(),
            "10.0.0.0/40".to_string(),
        )]
        .into(),
    );
    let err = inject(&p, &cfg()).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"invalid annotation weft.dev/skip-outbound-cidrs="10.0.0.0/40": "10.0.0.0/40" is not an IP address or CIDR"#
    );
}

#[test]
fn reserved_ports_and_name_clashes_are_denied() {
    let p = pod(json!({"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 15001}]}]}}));
    assert_eq!(
        inject(&p, &cfg()).unwrap_err(),
        Deny::ReservedPort {
            container: "a".into(),
            port: 15001
        }
    );
    let p = pod(json!({"spec": {"containers": [{"name": "weft-proxy"}]}}));
    assert!(matches!(
        inject(&p, &cfg()),
        Err(Deny::NameClash {
            what: "container",
            ..
        })
    ));
    let p = pod(
        json!({"spec": {"containers": [{"name": "a"}], "volumes": [{"name": "weft-token", "emptyDir": {}}]}}),
    );
    assert!(matches!(
        inject(&p, &cfg()),
        Err(Deny::NameClash { what: "volume", .. })
    ));
}
