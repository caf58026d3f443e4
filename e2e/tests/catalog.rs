//! The shared service catalog of `permissive` access mode on a real API server:
//! the operator (in-process) writes content-addressed shards and the index
//! `weft-catalog` into `weft-system`, with a Role/RoleBinding granting exactly the
//! meshed identities `get` on exactly those shards and the index; the proxy's own
//! ConfigMap source, authenticated with the identity's real ServiceAccount token,
//! follows the index and assembles the shards; a change moves to new shards
//! without rewriting any identity config and prunes the old after the grace;
//! going back to `smi` mode removes the catalog. An identity outside the mesh is
//! refused by RBAC.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fixtures;

use fixtures::*;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use weft_controller::operator::{self, Handles, Options};
use weft_e2e::{TestNamespace, shared};
use weft_proxy::conf::ConfigStore;
use weft_proxy::conf::kube::{ConfigMapRef, watch_configmap};
use weft_proxy::conf::kube_http::{ApiEndpoint, KubeHttp};
use weft_proxy_config::{AccessMode, CONFIG_KEY, ProxyConfig};

fn mesh_configs(client: &Client) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "policy.weft.dev",
        "v1alpha1",
        "MeshConfig",
    ));
    Api::all_with(client.clone(), &ar)
}

async fn set_access_mode(client: &Client, mode: &str) {
    let mc: DynamicObject = serde_json::from_value(json!({"apiVersion": "policy.weft.dev/v1alpha1",
        "kind": "MeshConfig", "metadata": {"name": "default"}, "spec": {"accessMode": mode}}))
    .unwrap();
    mesh_configs(client)
        .patch("default", &PatchParams::apply("e2e").force(), &Patch::Apply(&mc))
        .await
        .unwrap();
}

/// The identity's ConfigMap document, parsed but not assembled.
async fn raw_config(client: &Client, ns: &str, sa: &str) -> Option<ProxyConfig> {
    let cm = Api::<ConfigMap>::namespaced(client.clone(), ns)
        .get_opt(&format!("weft-proxy-{sa}"))
        .await
        .unwrap()?;
    serde_json::from_str(cm.data?.get(CONFIG_KEY)?).ok()
}

async fn until<T, F: Future<Output = Option<T>>>(
    what: &str,
    within: Duration,
    mut f: impl FnMut() -> F,
) -> T {
    let began = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(began.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The shards the catalog index lists now.
async fn index_shards(cms: &Api<ConfigMap>) -> Vec<String> {
    let index = cms.get("weft-catalog").await.unwrap();
    let text = &index.data.unwrap()[weft_proxy_config::INDEX_KEY];
    weft_proxy_config::CatalogIndex::from_json(text).unwrap().shards
}

/// resourceVersion of every identity ConfigMap in `ns`.
async fn identity_versions(client: &Client, ns: &str) -> Vec<(String, String)> {
    Api::<ConfigMap>::namespaced(client.clone(), ns)
        .list(&kube::api::ListParams::default().labels("weft.dev/managed-by=weft"))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|c| (c.metadata.name.unwrap(), c.metadata.resource_version.unwrap()))
        .collect()
}

/// A client of the API server as `sa` (a real TokenRequest token), like a sidecar.
async fn as_identity(client: &Client, ns: &str, sa: &str, dir: &Path) -> KubeHttp {
    let tr: TokenRequest =
        serde_json::from_value(json!({"spec": {"audiences": [], "expirationSeconds": 3600}})).unwrap();
    let tr: TokenRequest = Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create_subresource("token", sa, &PostParams::default(), &tr)
        .await
        .unwrap();
    let token_path = dir.join(format!("{sa}.token"));
    std::fs::write(&token_path, tr.status.unwrap().token).unwrap();
    let cp = shared::control_plane().unwrap();
    KubeHttp::new(ApiEndpoint {
        base: cp.server_url().parse().unwrap(),
        token_path,
        ca_path: cp.layout().pki.join("ca.crt"),
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissive_mode_shares_one_catalog_that_sidecars_fetch_and_assemble() {
    let cp = shared::control_plane().unwrap();
    let client = cp.client().unwrap();
    crds_and_system_namespace(&client).await;
    let tns = TestNamespace::create(cp, "catalog").await.unwrap();
    let ns = tns.name().to_string();
    let _mesh = MeshConfigGuard(client.clone());
    set_access_mode(&client, "permissive").await;
    workload(&client, &ns, "frontend", "frontend-1", &[], "198.18.20.1").await;
    workload(&client, &ns, "podinfo", "podinfo-1", &["podinfo"], "198.18.20.2").await;
    create::<ServiceAccount>(&client, &ns, json!({"metadata": {"name": "outsider"}})).await;
    let retry = json!({"source": {"kind": "ServiceAccount", "name": "frontend"},
        "destinations": [{"kind": "Service", "name": "podinfo"}], "numRetries": 3});
    create_dyn(
        &client,
        &ns,
        "policy.weft.dev",
        "v1alpha1",
        "Retry",
        "frontend-retry",
        retry,
    )
    .await;

    let mut opts = Options::new(SYSTEM_NS, "op-catalog");
    opts.lease = None;
    // Unreferenced shards are kept this long (default 30 s) before deletion.
    opts.catalog_grace = Duration::from_secs(2);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let op = tokio::spawn(operator::run(
        client.clone(),
        opts,
        Handles::default(),
        async move {
            let _ = stop_rx.await;
        },
    ));

    // The operator: configs reference shards instead of copying services.
    let podinfo_key = format!("{ns}/podinfo");
    let cfg = until(
        "frontend config with a catalog",
        Duration::from_secs(30),
        || async {
            raw_config(&client, &ns, "frontend")
                .await
                .filter(|c| c.catalog.is_some())
        },
    )
    .await;
    assert!(cfg.services.is_empty(), "services are not copied into the config");
    assert!(
        cfg.retries.contains_key(&podinfo_key),
        "the identity's retry travels with it"
    );
    let catalog = cfg.catalog.clone().unwrap();
    assert_eq!(
        (catalog.namespace.as_str(), catalog.index.as_str()),
        (SYSTEM_NS, "weft-catalog")
    );
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), SYSTEM_NS);
    let shards = index_shards(&cms).await;
    for name in &shards {
        let shard = cms.get(name).await.unwrap();
        assert_eq!(shard.immutable, Some(true), "{name}");
        assert!(shard.data.unwrap().contains_key(weft_proxy_config::CATALOG_KEY));
    }
    let role = Api::<Role>::namespaced(client.clone(), SYSTEM_NS)
        .get("weft-catalog")
        .await
        .unwrap();
    let rules = role.rules.unwrap();
    assert_eq!(rules[0].resource_names.as_ref(), Some(&shards));
    assert_eq!(
        rules[1].resource_names.as_deref(),
        Some(&["weft-catalog".to_string()][..])
    );
    let rb = Api::<RoleBinding>::namespaced(client.clone(), SYSTEM_NS)
        .get("weft-catalog")
        .await
        .unwrap();
    let subjects: Vec<(String, String)> = rb
        .subjects
        .unwrap()
        .into_iter()
        .filter(|s| s.namespace.as_deref() == Some(ns.as_str()))
        .map(|s| (s.namespace.unwrap(), s.name))
        .collect();
    assert_eq!(
        subjects,
        [(ns.clone(), "frontend".into()), (ns.clone(), "podinfo".into())]
    );

    // The sidecar's own source, as frontend: fetches the shards through RBAC and assembles.
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(weft_proxy::metrics::Metrics::default());
    let store = Arc::new(ConfigStore::new(
        Arc::clone(&metrics),
        Arc::new(weft_proxy::ready::Readiness::default()),
    ));
    let (shut_tx, shut_rx) = tokio::sync::watch::channel(false);
    let http = as_identity(&client, &ns, "frontend", dir.path()).await;
    let cmref = ConfigMapRef {
        namespace: ns.clone(),
        name: "weft-proxy-frontend".into(),
    };
    let source = tokio::spawn(watch_configmap(Arc::clone(&store), http, cmref, shut_rx));
    let snap = until("proxy assembled the catalog", Duration::from_secs(20), || async {
        store
            .load()
            .filter(|s| s.config.services.contains_key(&podinfo_key))
    })
    .await;
    let podinfo = &snap.config.services[&podinfo_key];
    assert_eq!(podinfo.retry.as_ref().map(|r| r.num_retries), Some(3));
    assert_eq!(podinfo.ports[0].endpoints[0].ip.to_string(), "198.18.20.2");
    assert!(
        snap.config.catalog.is_none(),
        "the proxy runs the assembled config"
    );

    // An identity outside the mesh gets no catalog.
    let outsider = as_identity(&client, &ns, "outsider", dir.path()).await;
    for name in [&shards[0], &"weft-catalog".to_string()] {
        let path = format!("/api/v1/namespaces/{SYSTEM_NS}/configmaps/{name}");
        let (status, _) = outsider.get_bytes(&path).await.unwrap();
        assert_eq!(status.as_u16(), 403, "RBAC refuses identities without a config");
    }

    // A new service: new shard(s) and index, the sidecar follows, no identity config is
    // rewritten, and unreferenced shards are pruned once their grace is over.
    let cm_versions = identity_versions(&client, &ns).await;
    let began = Instant::now();
    service(&client, &ns, "details", "podinfo-1", "198.18.20.2").await;
    let details_key = format!("{ns}/details");
    until("proxy sees the new service", Duration::from_secs(10), || async {
        store
            .load()
            .filter(|s| s.config.services.contains_key(&details_key))
    })
    .await;
    println!("catalog change → sidecar config: {:?}", began.elapsed());
    assert_eq!(
        identity_versions(&client, &ns).await,
        cm_versions,
        "a catalog change rewrites no identity config"
    );
    let now = index_shards(&cms).await;
    let gone: Vec<&String> = shards.iter().filter(|s| !now.contains(s)).collect();
    assert!(!gone.is_empty(), "new content means new shard names");
    until("old shards pruned", Duration::from_secs(10), || async {
        let mut all_gone = true;
        for name in &gone {
            all_gone &= cms.get_opt(name).await.unwrap().is_none();
        }
        all_gone.then_some(())
    })
    .await;
    assert_eq!(metrics.reloads().1, 0, "no config was rejected along the way");

    // Back to smi mode: inline configs, the catalog and its RBAC are removed.
    set_access_mode(&client, "smi").await;
    until("proxy runs the smi config", Duration::from_secs(10), || async {
        store
            .load()
            .filter(|s| s.config.mesh.access_mode == AccessMode::Smi)
    })
    .await;
    until("catalog removed", Duration::from_secs(10), || async {
        let left = cms
            .list(&kube::api::ListParams::default().labels("weft.dev/catalog"))
            .await
            .unwrap();
        let role = Api::<Role>::namespaced(client.clone(), SYSTEM_NS)
            .get_opt("weft-catalog")
            .await
            .unwrap();
        (left.items.is_empty() && role.is_none()).then_some(())
    })
    .await;

    shut_tx.send(true).unwrap();
    source.await.unwrap();
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), op).await;
    drop(tns);
}
