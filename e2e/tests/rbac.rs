//! Least privilege (issue 14 item 7), checked two ways. The shipped RBAC
//! (`manifests/10-rbac.yaml`) gives no cluster-wide write on Secrets or ConfigMaps
//! (manifest check). The operator and the identity endpoint do their whole job on the
//! real API server while impersonating the controller's ServiceAccount with exactly
//! that RBAC: writes land only in meshed namespaces, through the RoleBinding the
//! operator creates at opt-in, and that binding goes away when the namespace leaves
//! the mesh.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fixtures;

use std::time::{Duration, Instant};

use fixtures::*;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::Client;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{Value, json};
use weft_controller::operator::{self, Handles, Options};
use weft_e2e::{TestNamespace, apply, shared};

const WRITE_VERBS: &[&str] = &["create", "update", "patch", "delete", "deletecollection", "*"];

fn rbac_manifests() -> Vec<Value> {
    apply::load_dir(&apply::repo_root().join("manifests"))
        .unwrap()
        .iter()
        .map(|m| serde_json::to_value(&m.object).unwrap())
        .filter(|v| {
            let k = v["kind"].as_str().unwrap_or_default();
            [
                "ClusterRole",
                "ClusterRoleBinding",
                "Role",
                "RoleBinding",
                "ServiceAccount",
                "Namespace",
            ]
            .contains(&k)
        })
        .collect()
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

/// Write verbs a rule grants on `resource` of the core group (`*` included).
fn writes_on(rule: &Value, resource: &str) -> Vec<String> {
    let core = strs(&rule["apiGroups"]).iter().any(|g| g.is_empty() || *g == "*");
    let res = strs(&rule["resources"])
        .iter()
        .any(|r| *r == resource || *r == "*");
    if !(core && res) {
        return Vec::new();
    }
    strs(&rule["verbs"])
        .into_iter()
        .filter(|v| WRITE_VERBS.contains(v))
        .map(String::from)
        .collect()
}

/// Issue 14 item 7: no ClusterRole bound cluster-wide may write Secrets or ConfigMaps; the
/// one ClusterRole holding per-namespace writes is never bound cluster-wide, and the
/// controller may bind only that ClusterRole (no `escalate`, no `bind` on others).
#[test]
fn no_cluster_wide_write_on_secrets_or_configmaps() {
    let objs = rbac_manifests();
    let bound: Vec<&str> = objs
        .iter()
        .filter(|o| o["kind"] == "ClusterRoleBinding")
        .filter_map(|o| o["roleRef"]["name"].as_str())
        .collect();
    let mut bound_writers = Vec::new();
    for cr in objs.iter().filter(|o| o["kind"] == "ClusterRole") {
        let name = cr["metadata"]["name"].as_str().unwrap();
        for rule in cr["rules"].as_array().into_iter().flatten() {
            assert!(
                !strs(&rule["verbs"]).contains(&"escalate"),
                "{name} grants escalate"
            );
            if strs(&rule["verbs"]).contains(&"bind") {
                assert_eq!(
                    strs(&rule["resourceNames"]),
                    ["weft-controller-workloads"],
                    "{name} may bind only the workloads ClusterRole"
                );
            }
            for resource in ["secrets", "configmaps"] {
                let w = writes_on(rule, resource);
                if !w.is_empty() && bound.contains(&name) {
                    bound_writers.push(format!("{name}: {w:?} on {resource}"));
                }
            }
        }
    }
    assert!(bound_writers.is_empty(), "cluster-wide writes: {bound_writers:?}");
    assert!(
        !bound.contains(&"weft-controller-workloads"),
        "the workloads ClusterRole is bound per namespace only"
    );
    // And the controller's cluster-wide ClusterRole still exists and is bound.
    assert!(bound.contains(&"weft-controller"));
}

/// A client acting as the controller's ServiceAccount (RBAC as shipped).
fn as_controller(cp: &weft_e2e::ControlPlane) -> Client {
    let mut cfg = cp.config().clone();
    cfg.auth_info.impersonate = Some(format!("system:serviceaccount:{SYSTEM_NS}:weft-controller"));
    Client::try_from(cfg).unwrap()
}

async fn until<F, Fut>(what: &str, secs: u64, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let began = Instant::now();
    while !f().await {
        assert!(began.elapsed() < Duration::from_secs(secs), "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_works_with_the_shipped_rbac_and_writes_only_in_meshed_namespaces() {
    let cp = shared::control_plane().unwrap();
    let admin = cp.client().unwrap();
    crds_and_system_namespace(&admin).await;
    let manifests: Vec<apply::Manifest> = apply::load_dir(&apply::repo_root().join("manifests"))
        .unwrap()
        .into_iter()
        .filter(|m| {
            let v = serde_json::to_value(&m.object).unwrap();
            rbac_manifests()
                .iter()
                .any(|r| r["kind"] == v["kind"] && r["metadata"] == v["metadata"])
        })
        .collect();
    apply::apply_all(&admin, &manifests, Duration::from_secs(30))
        .await
        .unwrap();
    let sa = as_controller(cp);

    let meshed = TestNamespace::create(cp, "rbac-meshed").await.unwrap();
    let other = TestNamespace::create(cp, "rbac-other").await.unwrap();
    let ns = meshed.name().to_string();
    // An identity Secret an earlier version left (with a workload key).
    let legacy: Secret = serde_json::from_value(json!({
        "metadata": {"name": "weft-identity-frontend",
            "labels": {"weft.dev/managed-by": "weft", "weft.dev/identity": "frontend"}},
        "stringData": {"tls.key": "-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----\n"}}))
    .unwrap();
    Api::<Secret>::namespaced(admin.clone(), &ns)
        .create(&PostParams::default(), &legacy)
        .await
        .unwrap();
    workload(&admin, &ns, "frontend", "frontend-1", &[], "198.18.30.1").await;
    workload(&admin, &ns, "podinfo", "podinfo-1", &["podinfo"], "198.18.30.2").await;

    // Without a binding the controller cannot write ConfigMaps or Secrets anywhere else.
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "probe"}})).unwrap();
    let denied = Api::<ConfigMap>::namespaced(sa.clone(), other.name())
        .create(&PostParams::default(), &cm)
        .await;
    assert!(
        matches!(denied, Err(kube::Error::Api(ref s)) if s.code == 403),
        "{denied:?}"
    );

    let mut opts = Options::new(SYSTEM_NS, "rbac-op");
    opts.lease = None;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let op = tokio::spawn(operator::run(sa.clone(), opts, Handles::default(), async move {
        let _ = stop_rx.await;
    }));
    let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), &ns);
    let rbs: Api<RoleBinding> = Api::namespaced(admin.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &ns);
    until(
        "configs, bundle and opt-in binding written as the controller",
        60,
        || async {
            cms.get_opt("weft-proxy-frontend").await.unwrap().is_some()
                && cms.get_opt("weft-proxy-podinfo").await.unwrap().is_some()
                && cms.get_opt("weft-ca-bundle").await.unwrap().is_some()
                && rbs.get_opt("weft-proxy-frontend").await.unwrap().is_some()
                && rbs.get_opt("weft-controller").await.unwrap().is_some()
        },
    )
    .await;
    until("legacy identity Secret deleted", 30, || async {
        secrets.get_opt("weft-identity-frontend").await.unwrap().is_none()
    })
    .await;
    let binding = rbs.get("weft-controller").await.unwrap();
    assert_eq!(binding.role_ref.name, "weft-controller-workloads");
    // Nothing was written in the namespace that is not meshed.
    let written = Api::<ConfigMap>::namespaced(admin.clone(), other.name())
        .list(&Default::default())
        .await
        .unwrap();
    assert!(
        written
            .items
            .iter()
            .all(|c| c.metadata.name.as_deref() == Some("kube-root-ca.crt")),
        "writes outside the mesh"
    );

    // The identity endpoint, as the controller too: CA read, TokenReview, signing.
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (ep_stop, ep_stopped) = tokio::sync::oneshot::channel::<()>();
    let ep_opts = weft_controller::identity::run::IdentityOptions {
        addr: "127.0.0.1:0".parse().unwrap(),
        namespace: SYSTEM_NS.into(),
        service: "weft-identity".into(),
    };
    let ep = tokio::spawn(weft_controller::identity::run::run(
        sa.clone(),
        ep_opts,
        async move {
            let _ = ep_stopped.await;
        },
        Some(tx),
    ));
    let addr = rx.await.unwrap();
    let bundle = cms.get("weft-ca-bundle").await.unwrap().data.unwrap()["ca.crt"].clone();
    let tr = k8s_openapi::api::authentication::v1::TokenRequest {
        spec: k8s_openapi::api::authentication::v1::TokenRequestSpec {
            audiences: vec![weft_controller::identity::AUDIENCE.into()],
            expiration_seconds: Some(600),
            bound_object_ref: None,
        },
        ..Default::default()
    };
    let token = Api::<ServiceAccount>::namespaced(admin.clone(), &ns)
        .create_token_request("frontend", &PostParams::default(), &tr)
        .await
        .unwrap()
        .status
        .unwrap()
        .token;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), token).unwrap();
    let csr = weft_proxy::tls::csr::CsrClient::new(&addr.to_string(), dir.path().join("token"), None)
        .with_server_name("weft-identity.weft-system.svc")
        .with_bundle(bundle.as_bytes());
    let began = Instant::now();
    let got = loop {
        match csr.obtain().await {
            Ok(g) => break g,
            Err(e) => assert!(
                began.elapsed() < Duration::from_secs(30),
                "no certificate as the controller: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        got.material.spiffe_id,
        format!("spiffe://cluster.local/ns/{ns}/sa/frontend")
    );
    let _ = ep_stop.send(());
    let _ = ep.await;

    // The namespace leaves the mesh: its objects go, the controller's binding last.
    for pod in ["frontend-1", "podinfo-1"] {
        let _ = Api::<Pod>::namespaced(admin.clone(), &ns)
            .delete(pod, &DeleteParams::default().grace_period(0))
            .await;
    }
    for sa_name in ["frontend", "podinfo"] {
        let _ = Api::<ServiceAccount>::namespaced(admin.clone(), &ns)
            .delete(sa_name, &DeleteParams::default())
            .await;
    }
    until("objects and the opt-in binding removed", 60, || async {
        cms.get_opt("weft-proxy-frontend").await.unwrap().is_none()
            && cms.get_opt("weft-ca-bundle").await.unwrap().is_none()
            && rbs.get_opt("weft-controller").await.unwrap().is_none()
    })
    .await;
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), op).await;
    drop(meshed);
    drop(other);
}
