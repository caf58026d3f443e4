//! Unit tests of the gateway object builders: names, labels, owner reference,
//! the gateway container (subcommand, UID, ports, probes, no init container),
//! the sysctl, the Service ports, the TLS copy's keys and its Role, and that the
//! webhook leaves the gateway pod alone.

use super::*;
use crate::operator::render::CondValue;
use crate::webhook::Decision;
use k8s_openapi::api::core::v1::Pod;
use weft_proxy_config::GatewayConfig;

pub(crate) fn plan(tls: bool) -> GatewayPlan {
    let ok = |r: &str| CondValue {
        ok: true,
        reason: r.into(),
        message: "m".into(),
    };
    GatewayPlan {
        namespace: "edge".into(),
        name: "web".into(),
        uid: "gw-uid".into(),
        generation: Some(4),
        config: GatewayConfig {
            gateway: "edge/web".into(),
            tls_secret: tls.then(|| "weft-gateway-web-tls".into()),
            listeners: Vec::new(),
        },
        services: BTreeMap::new(),
        ports: if tls { vec![80, 443] } else { vec![80] },
        certificates: if tls {
            BTreeMap::from([(
                "edge.shop-cert".to_string(),
                ("edge".to_string(), "shop-cert".to_string()),
            )])
        } else {
            BTreeMap::new()
        },
        labels: BTreeMap::from([("team".to_string(), "a".to_string())]),
        annotations: BTreeMap::from([("note".to_string(), "x".to_string())]),
        accepted: ok("Accepted"),
        programmed: ok("Programmed"),
        address: Some("198.19.0.9".into()),
        listeners: Vec::new(),
    }
}

fn check_common(meta: &ObjectMeta, name: &str) {
    assert_eq!(meta.name.as_deref(), Some(name));
    assert_eq!(meta.namespace.as_deref(), Some("edge"));
    let l = meta.labels.as_ref().unwrap();
    assert_eq!(l[LABEL_GATEWAY_NAME], "web");
    assert_eq!(l[LABEL_APP_MANAGED_BY], "weft");
    assert_eq!(l["weft.dev/managed-by"], "weft");
    assert_eq!(l["team"], "a");
    let a = meta.annotations.as_ref().unwrap();
    assert_eq!(a["note"], "x");
    assert!(a.contains_key(ANN_CONFIG_HASH));
    let owner = &meta.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (
            owner.api_version.as_str(),
            owner.kind.as_str(),
            owner.name.as_str(),
            owner.uid.as_str()
        ),
        ("gateway.networking.k8s.io/v1", "Gateway", "web", "gw-uid")
    );
    assert_eq!(owner.controller, Some(true));
    assert_eq!(owner_gateway(meta), Some(("edge".to_string(), "web".to_string())));
}

#[test]
fn the_deployment_runs_the_gateway_subcommand_as_the_proxy_user() {
    let cfg = InjectConfig::default();
    let d = deployment(&plan(true), &cfg);
    check_common(&d.metadata, "weft-gateway-web");
    let spec = d.spec.unwrap();
    assert_eq!(spec.replicas, Some(1));
    assert_eq!(
        spec.selector.match_labels.unwrap(),
        BTreeMap::from([(LABEL_GATEWAY_NAME.to_string(), "web".to_string())])
    );
    let tmeta = spec.template.metadata.unwrap();
    assert_eq!(tmeta.labels.unwrap()[LABEL_GATEWAY_NAME], "web");
    assert_eq!(tmeta.annotations.unwrap()["weft.dev/injected"], cfg.version);
    let pod = spec.template.spec.unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some("weft-gateway-web"));
    assert!(pod.init_containers.is_none(), "no init container, no iptables");
    let sysctls = pod.security_context.unwrap().sysctls.unwrap();
    assert_eq!(
        (sysctls[0].name.as_str(), sysctls[0].value.as_str()),
        ("net.ipv4.ip_unprivileged_port_start", "0")
    );
    assert_eq!(pod.containers.len(), 1);
    let c = &pod.containers[0];
    assert_eq!(c.name, "weft-gateway");
    assert_eq!(c.image.as_deref(), Some(cfg.proxy_image.as_str()));
    assert_eq!(c.command.as_deref(), Some(&["weft-proxy".to_string()][..]));
    let args = c.args.as_ref().unwrap();
    assert_eq!(args[0], "gateway");
    assert!(args.contains(&"--admin-port=15020".to_string()), "{args:?}");
    assert_eq!(c.restart_policy, None);
    assert_eq!(c.security_context.as_ref().unwrap().run_as_user, Some(2102));
    let ports: Vec<i32> = c.ports.iter().flatten().map(|p| p.container_port).collect();
    assert_eq!(ports, [80, 443, 15020]);
    let ready = c.readiness_probe.as_ref().unwrap().http_get.as_ref().unwrap();
    assert_eq!(ready.path.as_deref(), Some("/ready"));
    assert_eq!(ready.port, IntOrString::Int(15020));
    let env: Vec<&str> = c.env.iter().flatten().map(|e| e.name.as_str()).collect();
    assert!(env.contains(&"WEFT_IDENTITY_ENDPOINT"), "{env:?}");
    let vols: Vec<&str> = pod.volumes.iter().flatten().map(|v| v.name.as_str()).collect();
    assert_eq!(vols, ["weft-identity", "weft-config", "weft-token"]);
    let config_vol = &pod.volumes.as_ref().unwrap()[1];
    assert_eq!(
        config_vol.config_map.as_ref().unwrap().name,
        "weft-proxy-weft-gateway-web"
    );
}

/// The webhook sees the gateway pod (its namespace may be meshed): it is complete
/// (marked injected, with its proxy container running as the proxy UID), so it is
/// skipped, not denied, even where opting out is forbidden.
#[test]
fn the_webhook_leaves_the_gateway_pod_alone() {
    let cfg = InjectConfig {
        allow_opt_out: false,
        ..InjectConfig::default()
    };
    let d = deployment(&plan(false), &cfg);
    let t = d.spec.unwrap().template;
    let pod = Pod {
        metadata: t.metadata.unwrap(),
        spec: t.spec,
        status: None,
    };
    assert_eq!(
        crate::webhook::enrolment::admit(&pod, "edge", &cfg),
        Ok(Decision::Skip("already injected"))
    );
}

#[test]
fn the_service_exposes_each_listener_port() {
    let s = service(&plan(true));
    check_common(&s.metadata, "weft-gateway-web");
    let spec = s.spec.unwrap();
    assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
    assert_eq!(spec.selector.unwrap()[LABEL_GATEWAY_NAME], "web");
    let ports: Vec<(String, i32, IntOrString)> = spec
        .ports
        .unwrap()
        .into_iter()
        .map(|p| (p.name.unwrap(), p.port, p.target_port.unwrap()))
        .collect();
    assert_eq!(
        ports,
        [
            ("l-80".to_string(), 80, IntOrString::Int(80)),
            ("l-443".to_string(), 443, IntOrString::Int(443))
        ]
    );
    check_common(&service_account(&plan(true)).metadata, "weft-gateway-web");
}

#[test]
fn the_tls_copy_names_keys_by_certificate_and_only_its_reader_may_read_it() {
    let p = plan(true);
    let src = |ns: &str, name: &str| {
        (ns == "edge" && name == "shop-cert")
            .then(|| (ByteString(b"CRT".to_vec()), ByteString(b"KEY".to_vec())))
    };
    let s = tls_secret(&p, src).unwrap();
    check_common(&s.metadata, "weft-gateway-web-tls");
    let data = s.data.as_ref().unwrap();
    let keys: Vec<&str> = data.keys().map(String::as_str).collect();
    assert_eq!(keys, ["edge.shop-cert.crt", "edge.shop-cert.key"]);
    assert_eq!(data["edge.shop-cert.crt"].0, b"CRT");
    assert_eq!(data["edge.shop-cert.key"].0, b"KEY");
    // Content changes change the hash (the copy is rewritten on rotation).
    let rotated = tls_secret(&p, |_, _| {
        Some((ByteString(b"CRT2".to_vec()), ByteString(b"KEY".to_vec())))
    })
    .unwrap();
    assert_ne!(
        s.metadata.annotations.as_ref().unwrap()[ANN_CONFIG_HASH],
        rotated.metadata.annotations.as_ref().unwrap()[ANN_CONFIG_HASH]
    );
    let role = tls_role(&p).unwrap();
    check_common(&role.metadata, "weft-gateway-web-tls");
    let rule = &role.rules.unwrap()[0];
    assert_eq!(rule.resources.as_deref(), Some(&["secrets".to_string()][..]));
    assert_eq!(
        rule.resource_names.as_deref(),
        Some(&["weft-gateway-web-tls".to_string()][..])
    );
    assert_eq!(rule.verbs, ["get", "list", "watch"]);
    let rb = tls_role_binding(&p).unwrap();
    check_common(&rb.metadata, "weft-gateway-web-tls");
    assert_eq!(
        (rb.role_ref.kind.as_str(), rb.role_ref.name.as_str()),
        ("Role", "weft-gateway-web-tls")
    );
    let subject = &rb.subjects.unwrap()[0];
    assert_eq!(
        (
            subject.kind.as_str(),
            subject.name.as_str(),
            subject.namespace.as_deref()
        ),
        ("ServiceAccount", "weft-gateway-web", Some("edge"))
    );
    // No TLS listener: no copy, no Role.
    let plain = plan(false);
    assert!(tls_secret(&plain, src).is_none());
    assert!(tls_role(&plain).is_none());
    assert!(tls_role_binding(&plain).is_none());
}

#[test]
fn only_generated_objects_belong_to_a_gateway() {
    let mut m = service(&plan(false)).metadata;
    assert!(owner_gateway(&m).is_some());
    m.name = Some("user-object".into());
    assert_eq!(
        owner_gateway(&m),
        None,
        "a user's object with the labels is not weft's"
    );
    let mut m = service(&plan(false)).metadata;
    m.labels.as_mut().unwrap().remove(LABEL_MANAGED_BY);
    assert_eq!(owner_gateway(&m), None);
}

/// What the API server stores for an applied object: defaults and server fields added.
fn as_stored<K: Serialize + serde::de::DeserializeOwned>(
    obj: &K,
    defaults: &[(&str, serde_json::Value)],
) -> K {
    let mut v = serde_json::to_value(obj).unwrap();
    v["metadata"]["resourceVersion"] = serde_json::json!("7");
    v["metadata"]["uid"] = serde_json::json!("obj-uid");
    v["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = serde_json::json!("1");
    for (pointer, value) in defaults {
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        let parent = if parent.is_empty() {
            &mut v
        } else {
            v.pointer_mut(parent).unwrap()
        };
        parent
            .as_object_mut()
            .unwrap()
            .insert(key.to_string(), value.clone());
    }
    serde_json::from_value(v).unwrap()
}

/// Server defaults are no drift (nothing is written again on every reconcile); an
/// edit of a field weft sets is.
#[test]
fn stored_gateway_objects_are_in_sync_until_edited() {
    use crate::operator::apply::drift::in_sync;
    let cfg = InjectConfig::default();
    let d = deployment(&plan(true), &cfg);
    let c = "/spec/template/spec/containers/0";
    let stored = as_stored(
        &d,
        &[
            ("/spec/strategy", serde_json::json!({"type": "RollingUpdate"})),
            (
                &format!("{c}/terminationMessagePath"),
                serde_json::json!("/dev/termination-log"),
            ),
            (
                &format!("{c}/env/0/valueFrom/fieldRef/apiVersion"),
                serde_json::json!("v1"),
            ),
            (
                &format!("{c}/readinessProbe/successThreshold"),
                serde_json::json!(1),
            ),
            (
                "/spec/template/spec/volumes/1/configMap/defaultMode",
                serde_json::json!(420),
            ),
            ("/status", serde_json::json!({"readyReplicas": 1})),
        ],
    );
    assert!(in_sync(&d, &stored));
    let mut edited = stored.clone();
    edited
        .spec
        .as_mut()
        .unwrap()
        .template
        .spec
        .as_mut()
        .unwrap()
        .containers[0]
        .args = Some(vec!["run".into()]);
    assert!(!in_sync(&d, &edited));
    let s = service(&plan(true));
    let stored = as_stored(
        &s,
        &[
            ("/spec/clusterIP", serde_json::json!("198.19.0.9")),
            ("/spec/sessionAffinity", serde_json::json!("None")),
        ],
    );
    assert!(in_sync(&s, &stored));
    let secret = tls_secret(&plan(true), |_, _| {
        Some((ByteString(b"C".to_vec()), ByteString(b"K".to_vec())))
    })
    .unwrap();
    let stored = as_stored(&secret, &[]);
    assert!(in_sync(&secret, &stored));
    let mut edited = stored;
    edited
        .data
        .as_mut()
        .unwrap()
        .insert("edge.shop-cert.key".into(), ByteString(b"X".to_vec()));
    assert!(!in_sync(&secret, &edited));
}
