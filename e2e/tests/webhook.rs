//! The injection webhook against a real kube-apiserver: the API server calls the
//! webhook through `clientConfig.url` (https://127.0.0.1:<port>/inject) with the
//! caBundle the certificate manager wrote; pods in a labelled namespace are stored
//! with the init container and sidecar, pods elsewhere are untouched, server-side
//! dry-run shows the injection, invalid annotations are denied, and with the
//! webhook down `failurePolicy: Fail` refuses pods only in meshed namespaces.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use weft_controller::webhook::certgen::ServingIdentity;
use weft_controller::webhook::certmgr::{self, CertManagerConfig};
use weft_controller::webhook::configuration::{CONFIGURATION_NAME, Endpoint, webhook_configuration};
use weft_controller::webhook::server::{SharedConfig, router, serve_tls};
use weft_controller::webhook::tls::{CertStore, server_config};
use weft_controller::webhook::{InjectConfig, names};
use weft_e2e::{TestNamespace, shared};

/// The webhook server on its own runtime/thread, so stopping it also kills the API
/// server's kept-alive connections (a real outage, not a graceful drain).
struct WebhookProcess {
    runtime: Option<tokio::runtime::Runtime>,
}

impl WebhookProcess {
    fn start(listener: std::net::TcpListener, store: CertStore, shared: SharedConfig) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        listener.set_nonblocking(true).unwrap();
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let tls = server_config(store).unwrap();
            serve_tls(listener, router(shared), tls, std::future::pending()).await;
        });
        WebhookProcess {
            runtime: Some(runtime),
        }
    }

    fn stop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Drop for WebhookProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

fn pod(name: &str, annotations: Value) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"containers": [{"name": "app", "image": "weft/demo-app:e2e",
            "ports": [{"name": "http", "containerPort": 8080}],
            "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}}}]}
    }))
    .unwrap()
}

fn init_names(p: &Pod) -> Vec<String> {
    p.spec
        .iter()
        .flat_map(|s| s.init_containers.iter().flatten())
        .map(|c| c.name.clone())
        .collect()
}

fn is_injected(p: &Pod) -> bool {
    p.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(names::ANN_INJECTED))
}

async fn label_for_mesh(client: &kube::Client, ns: &str) {
    let patch = json!({"metadata": {"labels": {names::ANN_INJECT: "enabled"}}});
    Api::<Namespace>::all(client.clone())
        .patch(ns, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

fn kubectl_dry_run(cp: &weft_e2e::ControlPlane, ns: &str, pod: &Pod) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pod.json");
    std::fs::write(&file, serde_json::to_vec(pod).unwrap()).unwrap();
    let out = Command::new(&cp.binaries().kubectl)
        .arg(format!("--kubeconfig={}", cp.kubeconfig_path().display()))
        .args(["apply", "--dry-run=server", "-o", "json", "-n", ns, "-f"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn api_server_calls_the_webhook_and_stores_injected_pods() {
    let cp = shared::control_plane().unwrap();
    let client = cp.client().unwrap();
    let system = Namespace {
        metadata: kube::api::ObjectMeta {
            name: Some(names::SYSTEM_NAMESPACE.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let _ = Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &system)
        .await;

    // The webhook: a loopback listener, its configuration, and its certificate.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "https://127.0.0.1:{}/inject",
        listener.local_addr().unwrap().port()
    );
    let mwcs: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let _ = mwcs.delete(CONFIGURATION_NAME, &DeleteParams::default()).await;
    mwcs.create(
        &PostParams::default(),
        &webhook_configuration(&Endpoint::Url(url), None),
    )
    .await
    .unwrap();
    let loopback = vec![IpAddr::V4(Ipv4Addr::LOCALHOST)];
    let certs_cfg = CertManagerConfig::new(ServingIdentity::for_service(
        "weft-injector",
        "weft-system",
        loopback,
    ));
    let store = CertStore::default();
    certmgr::ensure(&client, &certs_cfg, &store).await.unwrap();
    let secret = Api::<Secret>::namespaced(client.clone(), "weft-system")
        .get("weft-injector-tls")
        .await
        .unwrap();
    let ca = secret.data.unwrap()["ca.crt"].0.clone();
    let stored = mwcs.get(CONFIGURATION_NAME).await.unwrap();
    assert_eq!(
        stored.webhooks.unwrap()[0]
            .client_config
            .ca_bundle
            .as_ref()
            .unwrap()
            .0,
        ca
    );
    certmgr::ensure(&client, &certs_cfg, &store).await.unwrap(); // second run: nothing to do
    assert_eq!(
        Api::<Secret>::namespaced(client.clone(), "weft-system")
            .get("weft-injector-tls")
            .await
            .unwrap()
            .metadata
            .resource_version,
        secret.metadata.resource_version,
        "an up-to-date certificate must not be rewritten"
    );
    let e2e_cfg = InjectConfig {
        proxy_image: "weft/proxy:e2e".into(),
        ..InjectConfig::default()
    };
    let shared_cfg = SharedConfig::new(e2e_cfg.clone());
    let mut webhook = WebhookProcess::start(listener, store, shared_cfg.clone());

    let meshed = TestNamespace::create(cp, "inject-on").await.unwrap();
    let plain = TestNamespace::create(cp, "inject-off").await.unwrap();
    label_for_mesh(&client, meshed.name()).await;
    let meshed_pods: Api<Pod> = Api::namespaced(client.clone(), meshed.name());
    let plain_pods: Api<Pod> = Api::namespaced(client.clone(), plain.name());

    // The API server picks up new webhook configurations asynchronously: poll with
    // server-side dry-run (which also proves dry-run works) until the injection shows.
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let p = meshed_pods.create(&dry, &pod("probe", json!({}))).await.unwrap();
        if is_injected(&p) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "webhook never called: {:?}",
            p.metadata.annotations
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        meshed_pods.get_opt("probe").await.unwrap().is_none(),
        "dry-run must not store the pod"
    );

    // A real create in the labelled namespace is stored injected.
    meshed_pods
        .create(&PostParams::default(), &pod("web", json!({})))
        .await
        .unwrap();
    let stored = meshed_pods.get("web").await.unwrap();
    assert_eq!(init_names(&stored), ["weft-init", "weft-proxy"]);
    assert!(is_injected(&stored));
    let spec = stored.spec.as_ref().unwrap();
    let sidecar = &spec.init_containers.as_ref().unwrap()[1];
    assert_eq!(sidecar.restart_policy.as_deref(), Some("Always"));
    assert_eq!(sidecar.image.as_deref(), Some("weft/proxy:e2e"));
    let probe = spec.containers[0]
        .readiness_probe
        .as_ref()
        .unwrap()
        .http_get
        .as_ref()
        .unwrap();
    assert_eq!(probe.path.as_deref(), Some("/app-probe/app/readyz"));
    let ann = stored.metadata.annotations.as_ref().unwrap();
    assert_eq!(ann[names::ANN_WORKLOAD_NAME], "web");

    // The opt-out annotation and an unlabelled namespace leave pods untouched.
    let opted_out = pod("opted-out", json!({names::ANN_INJECT: "disabled"}));
    let p = meshed_pods
        .create(&PostParams::default(), &opted_out)
        .await
        .unwrap();
    assert!(init_names(&p).is_empty() && !is_injected(&p));
    let p = plain_pods
        .create(&PostParams::default(), &pod("web", json!({})))
        .await
        .unwrap();
    assert!(init_names(&p).is_empty() && !is_injected(&p));
    let probe = p.spec.unwrap().containers[0]
        .readiness_probe
        .clone()
        .unwrap()
        .http_get
        .unwrap();
    assert_eq!(
        probe.path.as_deref(),
        Some("/ready"),
        "probes outside the mesh are not rewritten"
    );

    // kubectl apply --dry-run=server shows the injection without storing anything.
    let shown = kubectl_dry_run(cp, meshed.name(), &pod("dry", json!({})));
    let inits: Vec<&str> = shown["spec"]["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(inits, ["weft-init", "weft-proxy"]);
    assert!(meshed_pods.get_opt("dry").await.unwrap().is_none());

    // An invalid exclusion annotation is denied with a message naming it.
    let bad = pod("bad", json!({names::ANN_SKIP_OUTBOUND_CIDRS: "10.0.0.0/99"}));
    let err = meshed_pods
        .create(&PostParams::default(), &bad)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("weft.dev/skip-outbound-cidrs") && err.contains("10.0.0.0/99"),
        "{err}"
    );

    // Enrolment (issue 14, item 8): a forged `weft.dev/injected` marker and an app
    // container running as the proxy UID are denied; with allowOptOut false (what the
    // injector reads from MeshConfig) so is the opt-out annotation, in meshed namespaces only.
    let forged = pod("forged", json!({names::ANN_INJECTED: "0.1.0"}));
    let err = meshed_pods
        .create(&PostParams::default(), &forged)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("weft.dev/injected") && err.contains("no weft-proxy container"),
        "{err}"
    );
    let mut as_proxy = pod("as-proxy", json!({}));
    as_proxy.spec.as_mut().unwrap().containers[0].security_context =
        Some(serde_json::from_value(json!({"runAsUser": 2102})).unwrap());
    let err = meshed_pods
        .create(&PostParams::default(), &as_proxy)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("spec.containers[0].securityContext.runAsUser"),
        "{err}"
    );
    plain_pods
        .create(&PostParams::default(), &as_proxy)
        .await
        .unwrap();
    shared_cfg.set(InjectConfig {
        allow_opt_out: false,
        ..e2e_cfg
    });
    let err = meshed_pods
        .create(
            &PostParams::default(),
            &pod("opt-out-locked", json!({names::ANN_INJECT: "disabled"})),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("allowOptOut") && err.contains(names::ANN_INJECT),
        "{err}"
    );
    plain_pods
        .create(
            &PostParams::default(),
            &pod("opt-out-locked", json!({names::ANN_INJECT: "disabled"})),
        )
        .await
        .unwrap();

    // Webhook down: failurePolicy Fail refuses meshed pods, other namespaces still work.
    webhook.stop();
    let err = meshed_pods
        .create(&PostParams::default(), &pod("while-down", json!({})))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("inject.weft.dev"), "{err}");
    plain_pods
        .create(&PostParams::default(), &pod("while-down", json!({})))
        .await
        .unwrap();

    mwcs.delete(CONFIGURATION_NAME, &DeleteParams::default())
        .await
        .unwrap();
}
