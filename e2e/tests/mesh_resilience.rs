//! The mesh's resilience end to end on a real control plane (see `mesh.rs` for the setup):
//! retries and circuit breaking seen from a client pod, mTLS on the wire between sidecars,
//! and pod / operator restarts under load.
//!
//! Needs root (skips otherwise, saying so) and the images (`make e2e` builds them).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, ListParams};
use support::*;
use weft_e2e::mesh::policy::{self};
use weft_e2e::mesh::traffic::success_ratio;
use weft_e2e::mesh::workload::{self, DemoApp, HTTP_PORT};
use weft_e2e::mesh::{capture, install, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_and_circuit_breaking_seen_from_the_client() {
    let Some((_serial, w)) = World::begin(
        "retries_and_circuit_breaking_seen_from_the_client",
        "mesh-resilience",
        "smi",
        "strict",
    )
    .await
    else {
        return;
    };
    let ns = w.ns().to_string();
    let (client, server, broken) = server_client(&w, &[("FAIL_RATE", "0.5")]).await;
    let netns = w.netns(&client);
    w.change(&[client.clone(), server, broken], async {
        w.allow_client(&["server", "broken"]).await;
    })
    .await;
    let url = format!("http://server.{ns}:{HTTP_PORT}/");

    // A server failing half of its requests, without and with a Retry (5 retries).
    let before = success_ratio(&send(&netns, &url, 100).await);
    let took = w
        .change(std::slice::from_ref(&client), async {
            w.apply(policy::retry(&ns, "server", "client", "server", 5)).await;
        })
        .await;
    let after = success_ratio(&send(&netns, &url, 100).await);
    eprintln!("Retry: success {before:.2} -> {after:.2} over 100 requests (in force after {took:?})");
    assert!(before < 0.8, "the server should fail about half: {before}");
    assert!(after >= 0.95, "retries should mask failures: {after}");

    // An always-failing service: the breaker opens after its minimum and the static
    // fallback answers instead.
    let took = w
        .change(std::slice::from_ref(&client), async {
            w.apply(policy::circuit_breaker(&ns, "broken", "broken", 10))
                .await;
        })
        .await;
    let r = send(&netns, &format!("http://broken.{ns}:{HTTP_PORT}/"), 60).await;
    let failed = r.iter().filter(|r| r.status == 500).count();
    let fallback = r
        .iter()
        .filter(|r| r.status == 503 && r.body.contains("fallback"))
        .count();
    eprintln!(
        "CircuitBreaker (in force after {took:?}): 60 requests, {failed} reached the service (500), \
         {fallback} fallback answers (503)"
    );
    assert!((10..=30).contains(&failed), "{}", statuses(&r));
    assert!(fallback >= 30, "{}", statuses(&r));
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_on_the_wire_between_sidecars() {
    let Some((_serial, w)) =
        World::begin("mtls_on_the_wire_between_sidecars", "mesh-mtls", "smi", "strict").await
    else {
        return;
    };
    let ns = w.ns().to_string();
    let (client, server, _) = server_client(&w, &[]).await;
    let netns = w.netns(&client);
    // Frames between two ports of the bridge are not seen on the bridge device itself:
    // capture on the host end of the server pod's veth, which carries all its traffic.
    let veth = w.host_veth(&server);
    w.change(&[client, server], async {
        w.allow_client(&["server"]).await;
    })
    .await;
    let tcpdump = capture::Tcpdump::start(&veth).await.unwrap();
    let r = send(&netns, &format!("http://server.{ns}:{HTTP_PORT}/"), 20).await;
    let wire = tcpdump.finish().await.unwrap();
    assert_eq!(success_ratio(&r), 1.0, "{}", statuses(&r));
    eprintln!("capture of pod-to-pod TCP on the server veth {veth} during 20 requests: {wire:?}");
    assert!(
        wire.tls_records >= 20,
        "expected TLS records between the sidecars: {wire:?}"
    );
    assert_eq!(wire.plaintext_http, 0, "plaintext HTTP on the bridge: {wire:?}");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_and_operator_restarts_under_load() {
    let Some((_serial, w)) = World::begin(
        "pod_and_operator_restarts_under_load",
        "mesh-churn",
        "permissive",
        "strict",
    )
    .await
    else {
        return;
    };
    let ns = w.ns().to_string();
    let mut server = DemoApp::new("server", "server", "v1");
    server.replicas = 3;
    w.deploy(&server).await;
    w.apply(workload::service(&ns, "server", &[("app", "server")]))
        .await;
    w.deploy(&DemoApp::new("client", "client", "v1")).await;
    let servers = w.ready_pods("app=server", 3).await;
    let client = w.ready_pods("app=client", 1).await.remove(0);
    let netns = w.netns(&client);
    let url = format!("http://server.{ns}:{HTTP_PORT}/");
    w.change(std::slice::from_ref(&client), async {
        w.apply(policy::retry(&ns, "server", "client", "server", 3)).await;
    })
    .await;

    // 1. A server pod deleted under load: its endpoint leaves the client's config while
    //    retries cover requests caught by the shutdown.
    let load = Load::start(&netns, &url, Duration::from_secs(60));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pods: Api<Pod> = Api::namespaced(w.client.clone(), &ns);
    let victim = servers[0].metadata.name.clone().unwrap();
    pods.delete(&victim, &DeleteParams::default()).await.unwrap();
    wait_for(
        "the deleted server pod to be gone",
        Duration::from_secs(60),
        || {
            let pods = pods.clone();
            let victim = victim.clone();
            async move {
                Ok(pods
                    .get_opt(&victim)
                    .await
                    .map_err(|e| e.to_string())?
                    .is_none()
                    .then_some(()))
            }
        },
    )
    .await
    .unwrap();
    let replaced = w.ready_pods("app=server", 3).await;
    assert!(
        replaced
            .iter()
            .all(|p| p.metadata.name.as_deref() != Some(victim.as_str()))
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let r = load.finish().await;
    let ratio = success_ratio(&r);
    eprintln!(
        "server pod deleted under load: {} requests, success ratio {ratio:.4} ({})",
        r.len(),
        statuses(&r)
    );
    assert!(r.len() >= 50, "too little load to judge: {}", r.len());
    assert!(
        ratio >= 0.99,
        "requests failed across the pod deletion: {}",
        statuses(&r)
    );

    // 2. Both operator replicas deleted under load: sidecars keep their last config, the
    //    new leader re-renders the same configs and writes nothing.
    let before = configs(&w.client, &ns).await;
    assert!(!before.is_empty());
    let load = Load::start(&netns, &url, Duration::from_secs(90));
    let system: Api<Pod> = Api::namespaced(w.client.clone(), install::SYSTEM_NAMESPACE);
    let sel = ListParams::default().labels("app.kubernetes.io/name=weft-controller");
    let old: Vec<String> = system
        .list(&sel)
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    assert_eq!(old.len(), 2, "{old:?}");
    let restart = Instant::now();
    for name in &old {
        system.delete(name, &DeleteParams::default()).await.unwrap();
    }
    let lease_api: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(w.client.clone(), install::SYSTEM_NAMESPACE);
    let leader = wait_for("a new operator leader", Duration::from_secs(90), || {
        let (system, sel, old, lease_api) = (system.clone(), sel.clone(), old.clone(), lease_api.clone());
        async move {
            let fresh: Vec<String> = system
                .list(&sel)
                .await
                .map_err(|e| e.to_string())?
                .items
                .into_iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .filter_map(|p| p.metadata.name)
                .filter(|n| !old.contains(n))
                .collect();
            let leases = lease_api
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            let holder = leases
                .items
                .into_iter()
                .filter_map(|l| l.spec?.holder_identity)
                .find(|h| fresh.iter().any(|f| h.contains(f.as_str())));
            Ok(holder)
        }
    })
    .await
    .unwrap();
    let took = restart.elapsed();
    // The old leader gives the Lease up on SIGTERM, so a new replica leads long before the
    // 15 s lease would expire.
    assert!(took < Duration::from_secs(10), "new leader only after {took:?}");
    // Give the new leader time for its full initial reconcile before judging churn.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let r = load.finish().await;
    let after = configs(&w.client, &ns).await;
    let ratio = success_ratio(&r);
    let rewritten = before
        .iter()
        .filter(|(k, (rv, _))| after.get(*k).map(|a| &a.0) != Some(rv));
    eprintln!(
        "operator restarted under load: new leader {leader} after {took:?}; {} requests, success \
         ratio {ratio:.4} ({}); ConfigMaps written: {} of {} (only for the operator pods' own \
         new endpoints)",
        r.len(),
        statuses(&r),
        rewritten.count(),
        before.len()
    );
    assert_eq!(
        ratio,
        1.0,
        "traffic lost while the operator restarted: {}",
        statuses(&r)
    );
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    for (name, (rv, config)) in &before {
        let (rv_after, config_after) = &after[name];
        // No churn: a write only when the content changed, and the only change allowed is
        // the weft-system Service endpoints (the replaced operator pods).
        if rv != rv_after {
            assert_ne!(config, config_after, "{name} rewritten with identical content");
        }
        assert_eq!(
            without_system_services(config.clone()),
            without_system_services(config_after.clone()),
            "{name}: the restarted operator changed routing config"
        );
    }
    w.stop().await;
}
