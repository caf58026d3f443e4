//! The mesh end to end on a real cluster: weft installed from `crds/` and `manifests/`
//! (the controller runs from its image as 2 pods on the real kubelet + containerd node,
//! and the API server calls its webhook through the Service via kube-proxy), demo-app pods
//! injected with the real init container (iptables inside a real container) and native
//! sidecar, and real traffic from inside a client pod's network namespace.
//!
//! Needs root (skips otherwise, saying so) and the images (`make images node-tools`;
//! `make e2e` does it). The tests of this binary take turns on one node (the mesh modes are
//! cluster-wide); each removes its namespace afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::Api;
use kube::api::ListParams;
use support::*;
use weft_e2e::mesh::policy::{self, HttpMatch};
use weft_e2e::mesh::traffic::{Batch, format_tally, percentile, success_ratio, tally};
use weft_e2e::mesh::workload::{self, DemoApp, HTTP_PORT};
use weft_e2e::mesh::{sync, wait_for};

/// The SMI conformance split layout: `app-b` (version b) and `app-c` (version c) behind
/// the root Service `app-svc`, plus a `client` pod. Returns the client's netns and pod.
async fn split_layout(w: &World) -> (String, Pod) {
    for v in ["b", "c"] {
        // Two replicas each: the proxy's peak-EWMA balancer keeps sending sequential
        // requests to the fastest endpoint it has measured, and an unmeasured endpoint
        // starts with a higher default cost, so with one pod per backend the other backend
        // of an unsplit Service may never be tried within 50 requests.
        let mut app = DemoApp::new(&format!("app-{v}"), "app-svc", v);
        app.replicas = 2;
        w.deploy(&app).await;
        let svc = format!("app-{v}");
        w.apply(workload::service(
            w.ns(),
            &svc,
            &[("app", "app-svc"), ("version", v)],
        ))
        .await;
    }
    w.apply(workload::service(w.ns(), "app-svc", &[("app", "app-svc")]))
        .await;
    w.deploy(&DemoApp::new("client", "client", "v1")).await;
    w.ready_pods("app=app-svc", 4).await;
    let mut client = w.ready_pods("app=client", 1).await;
    let netns = w.netns(&client[0]);
    (netns, client.remove(0))
}

/// Waits until the client's sidecar serves the operator's latest config and that config
/// splits `app-svc` as `want` (another change, e.g. endpoints settling, may land first).
async fn split_in_sidecar(w: &World, client: &Pod, before: &str, want: &[(&str, u64)]) -> Duration {
    let began = Instant::now();
    sync::wait_in_force(&w.client, w.node().cri(), client, before, Duration::from_secs(10))
        .await
        .unwrap();
    let root = format!("{}/app-svc", w.ns());
    wait_for(
        "the split in the client's sidecar",
        Duration::from_secs(10),
        || async {
            let loaded = sync::proxy_config(w.node().cri(), client).await?;
            match sync::split_weights(&loaded, &root) {
                Some(got) if sync::same_proportions(&got, want) => Ok(Some(())),
                other => Err(format!("sidecar split: {other:?}")),
            }
        },
    )
    .await
    .unwrap();
    began.elapsed()
}

fn root_url(ns: &str) -> String {
    format!("http://app-svc.{ns}:{HTTP_PORT}/")
}

/// Waits until `n` consecutive requests all come from `version`.
async fn until_all(netns: &str, url: &str, version: &str, n: usize, timeout: Duration) -> Duration {
    let began = Instant::now();
    wait_for(&format!("all traffic to {version}"), timeout, || async {
        let r = Batch::get(netns, url, n).run().await.map_err(|e| e.to_string())?;
        let t = tally(&r);
        if t.get(version) == Some(&n) {
            Ok(Some(()))
        } else {
            Err(format_tally(&t))
        }
    })
    .await
    .unwrap();
    began.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_split_cases_and_config_propagation() {
    let Some((_serial, w)) = World::begin(
        "traffic_split_cases_and_config_propagation",
        "mesh-split",
        "permissive",
        "permissive",
    )
    .await
    else {
        return;
    };
    let ns = w.ns().to_string();
    let (netns, client_pod) = split_layout(&w).await;
    let url = root_url(&ns);

    // The client's sidecar gets its config: requests start succeeding.
    let first = wait_for(
        "the first successful request through the mesh",
        READY_TIMEOUT,
        || async {
            let r = Batch::get(&netns, &url, 1)
                .run()
                .await
                .map_err(|e| e.to_string())?;
            Ok((r[0].status == 200).then_some(()))
        },
    );
    first.await.unwrap();

    // No split: both backends get traffic. The first success only shows that some
    // endpoints reached the client's config; the other backend's pods may join a moment
    // later (EndpointSlice -> operator -> ConfigMap), so look at batches of 50 for a while.
    let mut batches = 0;
    let t = wait_for("both backends without a split", Duration::from_secs(30), || {
        batches += 1;
        async {
            let r = Batch::get(&netns, &url, 50)
                .run()
                .await
                .map_err(|e| e.to_string())?;
            let t = tally(&r);
            if success_ratio(&r) < 1.0 {
                return Err(format!("failures: {}", statuses(&r)));
            }
            let both = t.get("b").copied().unwrap_or(0) > 0 && t.get("c").copied().unwrap_or(0) > 0;
            Ok(both.then_some(t))
        }
    })
    .await
    .unwrap();
    eprintln!("no split, 50 requests: {} (batch {batches})", format_tally(&t));

    // v1alpha4 1/0 and 0/1: everything to one backend.
    // Sequential requests may stick to one backend anyway, so "all replies from one
    // backend" alone cannot prove the split is in force: wait until the client's sidecar
    // serves the newly rendered config, then count.
    for (wb, wc, only) in [(1, 0, "b"), (0, 1, "c")] {
        let before = sync::current_hash(&w.client, &client_pod).await.unwrap();
        w.apply(workload::traffic_split(
            &ns,
            "app-split",
            "app-svc",
            &[("app-b", wb), ("app-c", wc)],
        ))
        .await;
        let want = [("app-b", u64::from(wb)), ("app-c", u64::from(wc))];
        let took = split_in_sidecar(&w, &client_pod, &before, &want).await;
        let r = send(&netns, &url, 50).await;
        let t = tally(&r);
        eprintln!(
            "split {wb}/{wc} (followed after {took:?}), 50 requests: {}",
            format_tally(&t)
        );
        assert_eq!(t.get(only), Some(&50), "{t:?}");
    }

    // 75/25 and 25/75: the heavier backend gets more of 50 requests. Each case starts
    // pinned to the lighter backend, so the first reply from the heavier one shows the
    // weighted split is in force.
    for (wb, wc, heavy, light) in [(75, 25, "b", "c"), (25, 75, "c", "b")] {
        let pin = if light == "b" {
            [("app-b", 1), ("app-c", 0)]
        } else {
            [("app-b", 0), ("app-c", 1)]
        };
        w.apply(workload::traffic_split(&ns, "app-split", "app-svc", &pin))
            .await;
        until_all(&netns, &url, light, 5, Duration::from_secs(10)).await;
        w.apply(workload::traffic_split(
            &ns,
            "app-split",
            "app-svc",
            &[("app-b", wb), ("app-c", wc)],
        ))
        .await;
        wait_for("the weighted split to apply", Duration::from_secs(10), || async {
            let t = tally(
                &Batch::get(&netns, &url, 5)
                    .run()
                    .await
                    .map_err(|e| e.to_string())?,
            );
            Ok(t.contains_key(heavy).then_some(()))
        })
        .await
        .unwrap();
        let r = send(&netns, &url, 50).await;
        let t = tally(&r);
        eprintln!("split {wb}/{wc}, 50 requests: {}", format_tally(&t));
        assert_eq!(success_ratio(&r), 1.0, "{t:?}");
        assert!(
            t.get(heavy).copied().unwrap_or(0) > t.get(light).copied().unwrap_or(0),
            "{t:?}"
        );
    }

    // Config propagation: flip 100/0 <-> 0/100 and time, from the accepted write, until
    // the client's ConfigMap changes (operator) and until traffic follows (end to end).
    // The version covers the catalog index too (permissive mode moves it, not the ConfigMap).
    let hash = || async { sync::current_hash(&w.client, &client_pod).await.unwrap() };
    let (mut operator, mut delays) = (Vec::new(), Vec::new());
    for i in 0..20 {
        let (wb, wc, to) = if i % 2 == 0 { (100, 0, "b") } else { (0, 100, "c") };
        let before = hash().await;
        w.apply(workload::traffic_split(
            &ns,
            "app-split",
            "app-svc",
            &[("app-b", wb), ("app-c", wc)],
        ))
        .await;
        let began = Instant::now();
        let mut cm_changed = None;
        loop {
            if cm_changed.is_none() && hash().await != before {
                cm_changed = Some(began.elapsed());
            }
            let t = tally(&send(&netns, &url, 2).await);
            if t.get(to) == Some(&2) {
                break;
            }
            assert!(
                began.elapsed() < Duration::from_secs(10),
                "traffic never followed {wb}/{wc}: {t:?}"
            );
        }
        delays.push(began.elapsed());
        operator.push(cm_changed.unwrap_or_else(|| began.elapsed()));
    }
    let (p50, p99) = (percentile(&delays, 50.0), percentile(&delays, 99.0));
    eprintln!(
        "config propagation over {} weight changes: traffic follows p50 {p50:?} p99 {p99:?}; \
         ConfigMap updated p50 {:?} p99 {:?}",
        delays.len(),
        percentile(&operator, 50.0),
        percentile(&operator, 99.0)
    );
    assert!(p99 < Duration::from_secs(2), "p99 {p99:?}: {delays:?}");

    // Deleting the split: plain routing over both backends again.
    workload::delete(
        &w.client,
        "split.smi-spec.io/v1alpha4",
        "TrafficSplit",
        &ns,
        "app-split",
    )
    .await
    .unwrap();
    wait_for(
        "both backends after deleting the split",
        Duration::from_secs(10),
        || async {
            let t = tally(
                &Batch::get(&netns, &url, 20)
                    .run()
                    .await
                    .map_err(|e| e.to_string())?,
            );
            Ok((t.len() == 2 && t.contains_key("b") && t.contains_key("c")).then_some(()))
        },
    )
    .await
    .unwrap();

    // The operator wrote a config per identity; the sidecars are Ready (checked above).
    let cms: Api<ConfigMap> = Api::namespaced(w.client.clone(), &ns);
    let names: Vec<String> = cms
        .list(&ListParams::default().labels("weft.dev/managed-by=weft"))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    for sa in ["app-b", "app-c", "client"] {
        assert!(names.contains(&format!("weft-proxy-{sa}")), "{names:?}");
    }
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_default_deny_traffic_target_and_route_rules() {
    let Some((_serial, w)) = World::begin(
        "access_default_deny_traffic_target_and_route_rules",
        "mesh-access",
        "smi",
        "strict",
    )
    .await
    else {
        return;
    };
    let ns = w.ns().to_string();
    let (client, server, _) = server_client(&w, &[]).await;
    let netns = w.netns(&client);
    let base = format!("http://server.{ns}:{HTTP_PORT}");
    let allowed = format!("{base}/allowed");

    // Default deny: no TrafficTarget names the client.
    let r = send(&netns, &allowed, 10).await;
    eprintln!("default deny, 10 requests: {}", statuses(&r));
    assert!(all_denied(&r), "{r:?}");

    // A TrafficTarget with a TCPRoute (every port) allows the client.
    let both = [client.clone(), server.clone()];
    let took = w
        .change(&both, async {
            w.allow_client(&["server"]).await;
        })
        .await;
    let r = send(&netns, &allowed, 20).await;
    eprintln!(
        "TrafficTarget + TCPRoute (in force after {took:?}), 20 requests: {}",
        statuses(&r)
    );
    assert_eq!(success_ratio(&r), 1.0, "{r:?}");

    // Deleting it denies again.
    let took = w
        .change(&both, async {
            workload::delete(
                &w.client,
                "access.smi-spec.io/v1alpha3",
                "TrafficTarget",
                &ns,
                "server",
            )
            .await
            .unwrap();
        })
        .await;
    let r = send(&netns, &allowed, 10).await;
    eprintln!(
        "TrafficTarget deleted (in force after {took:?}), 10 requests: {}",
        statuses(&r)
    );
    assert!(all_denied(&r), "{r:?}");

    // HTTPRouteGroup rule: only GET on paths starting with /allowed.
    let matches = [HttpMatch {
        name: "get-allowed",
        path_regex: Some("/allowed"),
        methods: &["GET"],
        ..HttpMatch::default()
    }];
    let took = w
        .change(&both, async {
            w.apply(policy::http_route_group(&ns, "server-routes", &matches))
                .await;
            let rules: [policy::Rule<'_>; 1] = [("HTTPRouteGroup", "server-routes", &["get-allowed"])];
            w.apply(policy::traffic_target(
                &ns,
                "server",
                "server",
                &["client"],
                &rules,
            ))
            .await;
        })
        .await;
    let get_ok = send(&netns, &allowed, 10).await;
    let get_other = send(&netns, &format!("{base}/other"), 10).await;
    let mut post = Batch::get(&netns, &allowed, 10);
    post.method = "POST";
    let post = post.run().await.unwrap();
    eprintln!(
        "HTTPRouteGroup GET /allowed (in force after {took:?}): GET /allowed {} | GET /other {} | POST /allowed {}",
        statuses(&get_ok),
        statuses(&get_other),
        statuses(&post)
    );
    assert_eq!(success_ratio(&get_ok), 1.0, "{get_ok:?}");
    assert!(all_denied(&get_other), "path rule: {get_other:?}");
    assert!(all_denied(&post), "method rule: {post:?}");
    w.stop().await;
}
