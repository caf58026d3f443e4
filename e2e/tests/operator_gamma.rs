//! GAMMA (Gateway API for the mesh) against a real API server with the upstream
//! Gateway API CRDs: the in-process operator renders HTTPRoutes and GRPCRoutes whose
//! parent is a Service into the right identity ConfigMaps (inline in `smi` mode, the
//! catalog plus the per-identity overlay in `permissive` mode), writes route status
//! (`status.parents[]`, controllerName `weft.dev/mesh`) without touching other
//! controllers' entries, reports a missing backend, and removes the entries when the
//! route is deleted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fixtures;

use std::time::{Duration, Instant};

use fixtures::operator_run::*;
use fixtures::*;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use weft_e2e::{TestNamespace, shared};
use weft_proxy_config::{
    CATALOG_KEY, CONFIG_KEY, CatalogIndex, CatalogShard, INDEX_KEY, PathMatch, ProxyConfig,
};

const GW: &str = "gateway.networking.k8s.io";
const WITHIN: Duration = Duration::from_secs(15);

fn routes(client: &Client, ns: &str, kind: &str) -> Api<DynamicObject> {
    dynamic(client, ns, GW, "v1", kind)
}

async fn create_route(client: &Client, ns: &str, kind: &str, name: &str, spec: Value) {
    create_dyn(client, ns, GW, "v1", kind, name, spec).await;
}

fn parent(name: &str, ns: Option<&str>) -> Value {
    let mut p = json!({"group": "", "kind": "Service", "name": name, "port": 9898});
    if let Some(ns) = ns {
        p["namespace"] = json!(ns);
    }
    p
}

/// weft's `status.parents` entry of a route: `(Accepted, ResolvedRefs)` as `(status, reason)`.
async fn weft_parent(
    api: &Api<DynamicObject>,
    name: &str,
) -> Option<((String, String), (String, String), Value)> {
    let o = api.get(name).await.ok()?;
    let entry = o.data["status"]["parents"]
        .as_array()?
        .iter()
        .find(|p| p["controllerName"] == "weft.dev/mesh")?
        .clone();
    let cond = |ty: &str| {
        let c = entry["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == ty)?
            .clone();
        assert_eq!(c["observedGeneration"], o.metadata.generation.unwrap(), "{c}");
        Some((
            c["status"].as_str()?.to_string(),
            c["reason"].as_str()?.to_string(),
        ))
    };
    Some((
        cond("Accepted")?,
        cond("ResolvedRefs")?,
        entry["parentRef"].clone(),
    ))
}

async fn until_parent(
    api: &Api<DynamicObject>,
    name: &str,
    accepted: (&str, &str),
    resolved: (&str, &str),
) -> Value {
    let began = Instant::now();
    loop {
        if let Some((a, r, p)) = weft_parent(api, name).await
            && (a.0.as_str(), a.1.as_str()) == accepted
            && (r.0.as_str(), r.1.as_str()) == resolved
        {
            return p;
        }
        assert!(
            began.elapsed() < WITHIN,
            "{name}: status never became {accepted:?}/{resolved:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The identity's ConfigMap document, parsed but not assembled (catalog configs too).
async fn raw_config(client: &Client, ns: &str, sa: &str) -> Option<ProxyConfig> {
    let cm = Api::<ConfigMap>::namespaced(client.clone(), ns)
        .get_opt(&format!("weft-proxy-{sa}"))
        .await
        .unwrap()?;
    serde_json::from_str(cm.data?.get(CONFIG_KEY)?).ok()
}

async fn until_raw(client: &Client, ns: &str, sa: &str, f: impl Fn(&ProxyConfig) -> bool) {
    let began = Instant::now();
    loop {
        if let Some(c) = raw_config(client, ns, sa).await
            && f(&c)
        {
            return;
        }
        assert!(
            began.elapsed() < WITHIN,
            "config of {ns}/{sa} never reached the expected state"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Routes of `key` in the current service catalog.
async fn catalog_routes(client: &Client, key: &str) -> Option<Vec<weft_proxy_config::RouteEntry>> {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), SYSTEM_NS);
    let index = cms.get_opt("weft-catalog").await.ok()??;
    let index = CatalogIndex::from_json(index.data?.get(INDEX_KEY)?).ok()?;
    for name in index.shards {
        let shard = cms.get_opt(&name).await.ok()??;
        let shard = CatalogShard::from_json(shard.data?.get(CATALOG_KEY)?).ok()?;
        if let Some(s) = shard.services.get(key) {
            return Some(s.routes.clone());
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_render_into_configs_with_status_and_go_away_when_deleted() {
    let (_guard, ns, client) = setup("op-gamma").await;
    let ns = ns.name();
    // Services without meshed endpoints: every identity may call them in smi mode.
    for svc in ["echo", "echo-v2", "echo-grpc"] {
        service(&client, ns, svc, "nobody", "198.18.40.9").await;
    }
    workload(&client, ns, "client", "client-1", &[], "198.18.40.2").await;
    let op = Running::single(&client, "gamma-e2e");
    let http = routes(&client, ns, "HTTPRoute");
    create_route(
        &client,
        ns,
        "HTTPRoute",
        "echo-canary",
        json!({"parentRefs": [parent("echo", None)], "rules": [
            {"matches": [{"path": {"type": "PathPrefix", "value": "/v2"}}],
             "backendRefs": [{"name": "echo-v2", "port": 9898}], "timeouts": {"request": "5s"}},
            {"backendRefs": [{"name": "echo", "port": 9898}]}]}),
    )
    .await;
    let key = format!("{ns}/echo");
    until_config(&client, ns, "client", WITHIN, |c| {
        c.services.get(&key).is_some_and(|s| {
            s.routes.len() == 2
                && s.routes[0].matches.path == Some(PathMatch::Prefix("/v2".into()))
                && s.routes[0].backends[0].service.as_deref() == Some(&format!("{ns}/echo-v2"))
                && s.routes[0].timeout_ms == Some(5_000)
                && s.routes[0].ports == [9898]
        })
    })
    .await;
    let echoed = until_parent(
        &http,
        "echo-canary",
        ("True", "Accepted"),
        ("True", "ResolvedRefs"),
    )
    .await;
    assert_eq!(echoed, parent("echo", None));

    // Another controller's entry survives weft's status writes.
    let mut obj = http.get_status("echo-canary").await.unwrap();
    let parents = obj.data["status"]["parents"].as_array_mut().unwrap();
    parents.push(
        json!({"parentRef": {"name": "gw"}, "controllerName": "example.com/gateway",
        "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "message": "",
            "lastTransitionTime": "2026-01-01T00:00:00Z"}]}),
    );
    http.replace_status("echo-canary", &PostParams::default(), &obj)
        .await
        .unwrap();

    // A missing backend: ResolvedRefs False and an unresolved entry (the proxy answers 500).
    create_route(
        &client,
        ns,
        "HTTPRoute",
        "broken",
        json!({"parentRefs": [parent("echo-v2", None)], "rules": [{"backendRefs": [{"name": "ghost", "port": 80}]}]}),
    )
    .await;
    until_parent(
        &http,
        "broken",
        ("True", "Accepted"),
        ("False", "BackendNotFound"),
    )
    .await;
    let v2 = format!("{ns}/echo-v2");
    until_config(&client, ns, "client", WITHIN, |c| {
        c.services
            .get(&v2)
            .is_some_and(|s| s.routes.len() == 1 && s.routes[0].backends[0].service.is_none())
    })
    .await;

    // A GRPCRoute: its method match arrives as a path match.
    create_route(
        &client,
        ns,
        "GRPCRoute",
        "grpc",
        json!({"parentRefs": [parent("echo-grpc", None)], "rules": [
            {"matches": [{"method": {"service": "pkg.Echo", "method": "Say"}}], "backendRefs": [{"name": "echo-grpc", "port": 9898}]}]}),
    )
    .await;
    let grpc_key = format!("{ns}/echo-grpc");
    until_config(&client, ns, "client", WITHIN, |c| {
        c.services.get(&grpc_key).is_some_and(|s| {
            s.routes.len() == 1
                && s.routes[0].matches.path == Some(PathMatch::Exact("/pkg.Echo/Say".into()))
                && s.routes[0].source == format!("grpcroute/{ns}/grpc/0")
        })
    })
    .await;
    until_parent(
        &routes(&client, ns, "GRPCRoute"),
        "grpc",
        ("True", "Accepted"),
        ("True", "ResolvedRefs"),
    )
    .await;

    let o = http.get("echo-canary").await.unwrap();
    let controllers: Vec<&str> = o.data["status"]["parents"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["controllerName"].as_str())
        .collect();
    assert!(controllers.contains(&"example.com/gateway"), "{controllers:?}");
    assert!(controllers.contains(&"weft.dev/mesh"), "{controllers:?}");

    // Deleting the routes removes their entries.
    for name in ["echo-canary", "broken"] {
        http.delete(name, &DeleteParams::default()).await.unwrap();
    }
    until_config(&client, ns, "client", WITHIN, |c| {
        c.services.get(&key).is_some_and(|s| s.routes.is_empty())
            && c.services.get(&v2).is_some_and(|s| s.routes.is_empty())
    })
    .await;
    op.stop().await;
}

async fn set_access_mode(client: &Client, mode: &str) {
    let mc: DynamicObject = serde_json::from_value(json!({"apiVersion": "policy.weft.dev/v1alpha1",
        "kind": "MeshConfig", "metadata": {"name": "default"}, "spec": {"accessMode": mode}}))
    .unwrap();
    let ar = kube::api::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
        "policy.weft.dev",
        "v1alpha1",
        "MeshConfig",
    ));
    Api::<DynamicObject>::all_with(client.clone(), &ar)
        .patch("default", &PatchParams::apply("e2e").force(), &Patch::Apply(&mc))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_routes_reach_only_their_namespace_in_both_access_modes() {
    let (_guard, prod, client) = setup("op-gamma-prod").await;
    let prod = prod.name();
    let cp = shared::control_plane().unwrap();
    let cons = TestNamespace::create(cp, "op-gamma-cons").await.unwrap();
    let cons = cons.name();
    for svc in ["echo", "echo-v2"] {
        service(&client, prod, svc, "nobody", "198.18.41.9").await;
    }
    workload(&client, prod, "local", "local-1", &[], "198.18.41.2").await;
    workload(&client, cons, "client", "client-1", &[], "198.18.41.3").await;
    let _mesh = MeshConfigGuard(client.clone());
    let op = Running::single(&client, "gamma-e2e-consumer");
    // Producer route (every client) and a consumer route in `cons` to the producer's
    // echo-v2 (allowed without a ReferenceGrant: it is in the parent's namespace).
    create_route(
        &client,
        prod,
        "HTTPRoute",
        "producer",
        json!({"parentRefs": [parent("echo", None)], "rules": [{"backendRefs": [{"name": "echo", "port": 9898}]}]}),
    )
    .await;
    create_route(
        &client,
        cons,
        "HTTPRoute",
        "consumer",
        json!({"parentRefs": [parent("echo", Some(prod))], "rules": [{"backendRefs": [{"name": "echo-v2", "namespace": prod, "port": 9898}]}]}),
    )
    .await;
    let key = format!("{prod}/echo");
    let source = |c: &ProxyConfig, k: &str| {
        c.services
            .get(k)
            .and_then(|s| s.routes.first())
            .map(|e| e.source.clone())
    };
    let want_consumer = format!("httproute/{cons}/consumer/0");
    let want_producer = format!("httproute/{prod}/producer/0");
    until_config(&client, cons, "client", WITHIN, |c| {
        source(c, &key) == Some(want_consumer.clone())
    })
    .await;
    until_config(&client, prod, "local", WITHIN, |c| {
        source(c, &key) == Some(want_producer.clone())
    })
    .await;
    until_parent(
        &routes(&client, cons, "HTTPRoute"),
        "consumer",
        ("True", "Accepted"),
        ("True", "ResolvedRefs"),
    )
    .await;

    // permissive: producer routes in the catalog, the consumer route as the overlay of
    // the consumer namespace's identity only.
    set_access_mode(&client, "permissive").await;
    until_raw(&client, cons, "client", |c| {
        c.catalog.is_some()
            && c.routes.get(&key).and_then(|r| r.first()).map(|e| &e.source) == Some(&want_consumer)
    })
    .await;
    until_raw(&client, prod, "local", |c| {
        c.catalog.is_some() && c.routes.is_empty()
    })
    .await;
    let began = Instant::now();
    while catalog_routes(&client, &key)
        .await
        .and_then(|r| r.first().map(|e| e.source.clone()))
        != Some(want_producer.clone())
    {
        assert!(
            began.elapsed() < WITHIN,
            "producer route never reached the catalog"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(_mesh);
    op.stop().await;
}
