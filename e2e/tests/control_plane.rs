//! Integration tests against a real kube-apiserver (with etcd, controller-manager and
//! scheduler) started by the harness, shared by all tests of this binary: CRDs and install
//! manifests apply (the controller's PodDisruptionBudget and topology spread kept), CRD validation rejects bad objects naming the field, Flagger-shaped
//! TrafficSplits round-trip byte for byte, and the controllers and scheduler work.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::json;
use serde_json::value::RawValue;
use weft_e2e::apply::{self, Manifest};
use weft_e2e::{TestNamespace, shared};

const SPLIT_GROUP: &str = "split.smi-spec.io";

fn crds() -> Vec<Manifest> {
    apply::load_dir(&apply::repo_root().join("crds")).unwrap()
}

/// Installs every CRD in crds/ (idempotent, so each test may call it) and waits for
/// Established. Returns the CRD names.
async fn install_crds(client: &kube::Client) -> Vec<String> {
    let crds = crds();
    assert!(!crds.is_empty(), "crds/ holds no CRDs");
    apply::install_crds(client, &crds, Duration::from_secs(60))
        .await
        .unwrap()
}

/// `Err(status)` of a failed API call; panics on success or on a non-API error.
fn api_status<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> kube::core::Status {
    match result {
        Err(kube::Error::Api(status)) => *status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

async fn raw(
    client: &kube::Client,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<String, kube::Error> {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(body.unwrap_or_default().as_bytes().to_vec())
        .unwrap();
    client.request_text(req).await
}

fn dynamic_api(
    client: &kube::Client,
    ns: &str,
    group: &str,
    version: &str,
    kind: &str,
) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
    Api::namespaced_with(client.clone(), ns, &resource)
}

fn object(group: &str, version: &str, kind: &str, name: &str, spec: serde_json::Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": format!("{group}/{version}"),
        "kind": kind,
        "metadata": {"name": name},
        "spec": spec,
    }))
    .unwrap()
}

#[tokio::test]
async fn api_server_serves_its_pinned_version_and_namespaces() {
    let cp = shared::control_plane().unwrap();
    let ns = TestNamespace::create(cp, "smoke").await.unwrap();
    let client = ns.client().unwrap();
    let names: Vec<String> = Api::<Namespace>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    for want in ["default", "kube-system", "kube-node-lease", ns.name()] {
        assert!(names.iter().any(|n| n == want), "{want} missing from {names:?}");
    }
    let version = client.apiserver_version().await.unwrap();
    assert_eq!(
        version.git_version,
        weft_e2e::control_plane::binaries::kube_version()
    );
    // kube-root-ca.crt comes from the controller-manager's root-ca publisher.
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client, ns.name());
    let deadline = Instant::now() + Duration::from_secs(30);
    while cms.get_opt("kube-root-ca.crt").await.unwrap().is_none() {
        assert!(Instant::now() < deadline, "kube-root-ca.crt never published");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn crds_establish_and_install_manifests_are_accepted() {
    let cp = shared::control_plane().unwrap();
    let client = cp.client().unwrap();
    let names = install_crds(&client).await;
    assert_eq!(names.len(), crds().len());
    assert!(
        names.contains(&"trafficsplits.split.smi-spec.io".to_string()),
        "{names:?}"
    );

    let manifests = apply::load_dir(&apply::repo_root().join("manifests")).unwrap();
    assert!(!manifests.is_empty(), "manifests/ holds no objects");
    apply::apply_all(&client, &manifests, Duration::from_secs(30))
        .await
        .unwrap();
    // Every object is now readable from the API server as applied.
    for m in &manifests {
        let gvk = m.gvk().unwrap();
        let (resource, caps) = kube::discovery::pinned_kind(&client, &gvk).await.unwrap();
        let api: Api<DynamicObject> = match (&caps.scope, m.object.metadata.namespace.as_deref()) {
            (kube::discovery::Scope::Namespaced, Some(ns)) => {
                Api::namespaced_with(client.clone(), ns, &resource)
            }
            _ => Api::all_with(client.clone(), &resource),
        };
        let got = api.get(m.name()).await.unwrap();
        let managers: Vec<_> = got
            .metadata
            .managed_fields
            .iter()
            .flatten()
            .filter_map(|f| f.manager.clone())
            .collect();
        assert!(
            managers.iter().any(|f| f == apply::FIELD_MANAGER),
            "{} {}: {managers:?}",
            gvk.kind,
            m.name()
        );
    }

    // The controller's availability settings survive the API server's validation
    // (policy/v1 PodDisruptionBudget, topology spread on the pod template).
    let pdb = Api::<PodDisruptionBudget>::namespaced(client.clone(), "weft-system")
        .get("weft-controller")
        .await
        .unwrap();
    let spec = pdb.spec.unwrap();
    assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
    let deploy = Api::<Deployment>::namespaced(client.clone(), "weft-system")
        .get("weft-controller")
        .await
        .unwrap();
    let template = deploy.spec.unwrap().template;
    let spread = template.spec.unwrap().topology_spread_constraints.unwrap();
    assert_eq!(
        (
            spread[0].topology_key.as_str(),
            spread[0].when_unsatisfiable.as_str()
        ),
        ("kubernetes.io/hostname", "ScheduleAnyway")
    );
    assert_eq!(
        spec.selector.unwrap().match_labels,
        spread[0].label_selector.clone().unwrap().match_labels
    );

    // The same files through the real kubectl (server-side dry run: same field manager).
    let kubectl = &cp.binaries().kubectl;
    if kubectl.is_file() {
        let root = apply::repo_root();
        let out = std::process::Command::new(kubectl)
            .arg("--kubeconfig")
            .arg(cp.kubeconfig_path())
            .args([
                "apply",
                "--server-side",
                "--dry-run=server",
                "--field-manager",
                apply::FIELD_MANAGER,
                "-f",
            ])
            .arg(root.join("crds"))
            .arg("-f")
            .arg(root.join("manifests"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kubectl apply failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("serverside-applied (server dry run)"), "{stdout}");
    }

    // Leave the shared cluster as we found it (CRDs stay: other tests use them).
    for m in manifests.iter().rev() {
        let gvk = m.gvk().unwrap();
        let (resource, caps) = kube::discovery::pinned_kind(&client, &gvk).await.unwrap();
        let api: Api<DynamicObject> = match (&caps.scope, m.object.metadata.namespace.as_deref()) {
            (kube::discovery::Scope::Namespaced, Some(ns)) => {
                Api::namespaced_with(client.clone(), ns, &resource)
            }
            _ => Api::all_with(client.clone(), &resource),
        };
        let _ = api.delete(m.name(), &DeleteParams::default()).await;
    }
}

#[tokio::test]
async fn crd_validation_rejects_bad_objects_naming_the_field() {
    let cp = shared::control_plane().unwrap();
    let ns = TestNamespace::create(cp, "crd-validation").await.unwrap();
    let client = ns.client().unwrap();
    install_crds(&client).await;
    let splits = dynamic_api(&client, ns.name(), SPLIT_GROUP, "v1alpha4", "TrafficSplit");
    let post = PostParams::default();

    let negative = object(
        SPLIT_GROUP,
        "v1alpha4",
        "TrafficSplit",
        "negative",
        json!({"service": "web", "backends": [{"service": "web-v1", "weight": -1}]}),
    );
    let status = api_status(splits.create(&post, &negative).await);
    assert_eq!(status.code, 422, "{status:?}");
    assert!(
        status.message.contains("spec.backends[0].weight"),
        "{}",
        status.message
    );

    let empty = object(
        SPLIT_GROUP,
        "v1alpha4",
        "TrafficSplit",
        "empty",
        json!({"service": "web", "backends": []}),
    );
    let status = api_status(splits.create(&post, &empty).await);
    assert_eq!(status.code, 422, "{status:?}");
    assert!(status.message.contains("spec.backends"), "{}", status.message);
    assert!(
        !status.message.contains("spec.service"),
        "only backends is wrong: {}",
        status.message
    );

    let retries = dynamic_api(&client, ns.name(), "policy.weft.dev", "v1alpha1", "Retry");
    let bad_duration = object(
        "policy.weft.dev",
        "v1alpha1",
        "Retry",
        "bad-duration",
        json!({"destinations": [{"kind": "Service", "name": "web"}], "perTryTimeout": "abc"}),
    );
    let status = api_status(retries.create(&post, &bad_duration).await);
    assert_eq!(status.code, 422, "{status:?}");
    assert!(
        status.message.contains("spec.perTryTimeout"),
        "{}",
        status.message
    );

    // The same shapes with valid values are accepted (the rejections were about the field).
    let good = object(
        SPLIT_GROUP,
        "v1alpha4",
        "TrafficSplit",
        "good",
        json!({"service": "web", "backends": [{"service": "web-v1", "weight": 0}]}),
    );
    splits.create(&post, &good).await.unwrap();
    let good_retry = object(
        "policy.weft.dev",
        "v1alpha1",
        "Retry",
        "good",
        json!({"destinations": [{"kind": "Service", "name": "web"}], "perTryTimeout": "250ms"}),
    );
    retries.create(&post, &good_retry).await.unwrap();
}

#[derive(serde::Deserialize)]
struct RawObject<'a> {
    #[serde(rename = "apiVersion")]
    api_version: String,
    #[serde(borrow)]
    spec: &'a RawValue,
}

#[tokio::test]
async fn flagger_shaped_traffic_splits_round_trip_byte_for_byte() {
    let cp = shared::control_plane().unwrap();
    let ns = TestNamespace::create(cp, "flagger-splits").await.unwrap();
    let client = ns.client().unwrap();
    install_crds(&client).await;
    // Specs written the way the API server serializes (sorted keys, compact), so any change
    // it makes (a weight normalized, a field pruned or defaulted) shows up as a byte diff.
    let cases = [
        (
            "v1alpha1",
            "linkerd-canary",
            r#"{"backends":[{"service":"podinfo-canary","weight":"0"},{"service":"podinfo-primary","weight":"100"}],"service":"podinfo"}"#,
        ),
        (
            "v1alpha1",
            "milli-weights",
            r#"{"backends":[{"service":"podinfo-canary","weight":"500m"},{"service":"podinfo-primary","weight":"1"}],"service":"podinfo"}"#,
        ),
        (
            "v1alpha2",
            "osm-canary",
            r#"{"backends":[{"service":"podinfo-canary","weight":10},{"service":"podinfo-primary","weight":90}],"service":"podinfo"}"#,
        ),
        (
            "v1alpha3",
            "ab-test",
            r#"{"backends":[{"service":"podinfo-canary","weight":100},{"service":"podinfo-primary","weight":0}],"matches":[{"kind":"HTTPRouteGroup","name":"podinfo-canary"}],"service":"podinfo"}"#,
        ),
    ];
    for (version, name, spec) in cases {
        let path = format!(
            "/apis/{SPLIT_GROUP}/{version}/namespaces/{}/trafficsplits",
            ns.name()
        );
        let body = format!(
            r#"{{"apiVersion":"{SPLIT_GROUP}/{version}","kind":"TrafficSplit","metadata":{{"name":"{name}"}},"spec":{spec}}}"#
        );
        let created = raw(&client, "POST", &path, Some(&body))
            .await
            .unwrap_or_else(|e| panic!("{version} {name}: {e}"));
        let created: RawObject<'_> = serde_json::from_str(&created).unwrap();
        assert_eq!(created.spec.get(), spec, "{version} {name}: create response");
        let read = raw(&client, "GET", &format!("{path}/{name}"), None)
            .await
            .unwrap();
        let read: RawObject<'_> = serde_json::from_str(&read).unwrap();
        assert_eq!(read.api_version, format!("{SPLIT_GROUP}/{version}"));
        assert_eq!(read.spec.get(), spec, "{version} {name}: read back");
    }
}

/// Deletes the test node when the test ends, however it ends.
struct NodeGuard {
    config: kube::Config,
    name: String,
}

impl Drop for NodeGuard {
    fn drop(&mut self) {
        let (config, name) = (self.config.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let client = kube::Client::try_from(config).unwrap();
                let _ = Api::<Node>::all(client.clone())
                    .delete(&name, &DeleteParams::default())
                    .await;
                let leases: Api<Lease> = Api::namespaced(client, "kube-node-lease");
                let _ = leases.delete(&name, &DeleteParams::default()).await;
            });
        })
        .join();
    }
}

/// Registers a Ready node (what a kubelet does at startup) tainted so that only pods
/// tolerating `taint_value` land on it.
async fn register_ready_node(client: &kube::Client, name: &str, taint_value: &str) {
    let now = k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}},
        "spec": {"taints": [{"key": "weft.dev/e2e-test", "value": taint_value, "effect": "NoSchedule"}]},
    }))
    .unwrap();
    let nodes: Api<Node> = Api::all(client.clone());
    nodes.create(&PostParams::default(), &node).await.unwrap();
    let resources = json!({"cpu": "4", "memory": "8Gi", "pods": "110"});
    let status = json!({"status": {
        "capacity": resources,
        "allocatable": resources,
        "conditions": [{
            "type": "Ready", "status": "True", "reason": "KubeletReady", "message": "e2e test node",
            "lastHeartbeatTime": now, "lastTransitionTime": now,
        }],
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
    }});
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    let lease: Lease = serde_json::from_value(json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name, "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": now},
    }))
    .unwrap();
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    leases.create(&PostParams::default(), &lease).await.unwrap();
}

#[tokio::test]
async fn controllers_create_pods_scheduler_binds_them_namespace_deletion_completes() {
    let cp = shared::control_plane().unwrap();
    let ns = TestNamespace::create(cp, "controllers").await.unwrap();
    let client = ns.client().unwrap();
    let node_name = "test-node-0";
    let _node = NodeGuard {
        config: cp.config().clone(),
        name: node_name.to_string(),
    };
    register_ready_node(&client, node_name, ns.name()).await;

    let deployment: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [{"name": "app", "image": "weft/test-app:none"}],
                    "tolerations": [{"key": "weft.dev/e2e-test", "operator": "Equal", "value": ns.name(), "effect": "NoSchedule"}],
                },
            },
        },
    }))
    .unwrap();
    let started = Instant::now();
    Api::<Deployment>::namespaced(client.clone(), ns.name())
        .create(&PostParams::default(), &deployment)
        .await
        .unwrap();

    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    let replica_sets: Api<ReplicaSet> = Api::namespaced(client.clone(), ns.name());
    let deadline = Instant::now() + Duration::from_secs(90);
    let bound = loop {
        let rs = replica_sets.list(&ListParams::default()).await.unwrap().items;
        let list = pods.list(&ListParams::default()).await.unwrap().items;
        let bound: Vec<&Pod> = list
            .iter()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node_name))
            .collect();
        if rs.len() == 1 && bound.len() == 2 {
            let owner = rs[0].metadata.owner_references.as_ref().unwrap();
            assert_eq!(owner[0].kind, "Deployment");
            assert_eq!(owner[0].name, "web");
            for p in &bound {
                assert_eq!(
                    p.metadata.owner_references.as_ref().unwrap()[0].kind,
                    "ReplicaSet"
                );
                let conditions = p
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.clone())
                    .unwrap_or_default();
                assert!(
                    conditions
                        .iter()
                        .any(|c| c.type_ == "PodScheduled" && c.status == "True"),
                    "{conditions:?}"
                );
            }
            break bound.len();
        }
        assert!(
            Instant::now() < deadline,
            "after 90s: {} ReplicaSets, pods {:?}",
            rs.len(),
            list.iter()
                .map(|p| (&p.metadata.name, p.status.as_ref().map(|s| &s.conditions)))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    eprintln!(
        "deployment -> {bound} pods bound to {node_name} in {:?}",
        started.elapsed()
    );

    // Pods bound to a node are only removed once its kubelet confirms; this test stands in
    // for the kubelet and finishes the deletion of terminating pods.
    let ns_name = ns.name().to_string();
    let took = ns
        .delete_and_wait(Duration::from_secs(90), |client| {
            let ns_name = ns_name.clone();
            async move {
                let pods: Api<Pod> = Api::namespaced(client, &ns_name);
                for p in pods
                    .list(&ListParams::default())
                    .await
                    .map(|l| l.items)
                    .unwrap_or_default()
                {
                    if p.metadata.deletion_timestamp.is_some() {
                        let _ = pods
                            .delete(
                                &p.metadata.name.unwrap_or_default(),
                                &DeleteParams {
                                    grace_period_seconds: Some(0),
                                    ..DeleteParams::default()
                                },
                            )
                            .await;
                    }
                }
            }
        })
        .await
        .unwrap();
    eprintln!("namespace deletion completed in {took:?}");
}
