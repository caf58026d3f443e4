//! Gateway API routes (GAMMA) end to end on a real control plane and node (see `mesh.rs`
//! for the setup), in `accessMode: smi` with strict mTLS (the upstream conformance suite,
//! `gamma_conformance.rs`, runs in `permissive`): what the suite does not check — a
//! route's `timeouts.request` cutting a slow backend off, `RequestMirror` copies counted by
//! the mirror's own sidecar, a weft Retry policy applying to a route's backend — plus a
//! rewrite and a redirect through the SMI-authorized, mTLS path.
//!
//! Needs root (skips otherwise, saying so) and the images (`make e2e` builds them).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;
use weft_e2e::mesh::policy;
use weft_e2e::mesh::traffic::{Batch, Reply, metric_sum, sidecar_metrics};
use weft_e2e::mesh::workload::{self, DemoApp, HTTP_PORT};

async fn batch(netns: &str, url: &str, n: usize, headers: &[&str]) -> Vec<Reply> {
    let mut b = Batch::get(netns, url, n);
    b.headers = headers;
    b.run().await.unwrap()
}

/// The HTTPRoute on Service `server`: a full-path rewrite, a prefix rewrite with a 300 ms
/// request timeout, a header match to `flaky`, a redirect, and a default rule mirroring
/// everything to `shadow`.
fn routes(ns: &str) -> serde_json::Value {
    let prefix = |p: &str| json!({"path": {"type": "PathPrefix", "value": p}});
    let server = json!([{"name": "server", "port": HTTP_PORT}]);
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "server-routes", "namespace": ns},
        "spec": {
            "parentRefs": [{"group": "", "kind": "Service", "name": "server", "port": HTTP_PORT}],
            "rules": [
                {"matches": [prefix("/teapot")],
                 "filters": [{"type": "URLRewrite", "urlRewrite": {"path":
                     {"type": "ReplaceFullPath", "replaceFullPath": "/status/418"}}}],
                 "backendRefs": server},
                {"matches": [prefix("/slow")],
                 "filters": [{"type": "URLRewrite", "urlRewrite": {"path":
                     {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/delay"}}}],
                 "timeouts": {"request": "300ms"},
                 "backendRefs": server},
                {"matches": [{"headers": [{"name": "x-flaky", "value": "yes"}]}],
                 "backendRefs": [{"name": "flaky", "port": HTTP_PORT}]},
                {"matches": [{"path": {"type": "Exact", "value": "/moved"}}],
                 "filters": [{"type": "RequestRedirect", "requestRedirect":
                     {"hostname": "example.org", "statusCode": 301}}]},
                {"filters": [{"type": "RequestMirror", "requestMirror":
                     {"backendRef": {"name": "shadow", "port": HTTP_PORT}}}],
                 "backendRefs": server}
            ]
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_timeouts_mirrors_retries_rewrites_and_redirects_under_smi() {
    let Some((_serial, w)) = World::begin(
        "route_timeouts_mirrors_retries_rewrites_and_redirects_under_smi",
        "mesh-gamma",
        "smi",
        "strict",
    )
    .await
    else {
        return;
    };
    let ns = w.ns().to_string();
    let mut flaky = DemoApp::new("flaky", "flaky", "v1");
    flaky.env.insert("FAIL_RATE".into(), "0.3".into());
    for (app, name) in [
        (flaky, "flaky"),
        (DemoApp::new("shadow", "shadow", "v1"), "shadow"),
    ] {
        w.deploy(&app).await;
        w.apply(workload::service(&ns, name, &[("app", name)])).await;
    }
    let (client, server, _) = server_client(&w, &[]).await;
    let shadow = w.ready_pods("app=shadow", 1).await.remove(0);
    w.ready_pods("app=flaky", 1).await;
    let netns = w.netns(&client);
    let shadow_netns = w.netns(&shadow);
    w.change(&[client.clone(), server], async {
        w.allow_client(&["server", "flaky", "shadow"]).await;
    })
    .await;
    let base = format!("http://server.{ns}:{HTTP_PORT}");
    let flaky_url = format!("{base}/");
    let before = batch(&netns, &flaky_url, 100, &["x-flaky: yes"]).await;
    let took = w
        .change(std::slice::from_ref(&client), async {
            w.apply(routes(&ns)).await;
            w.apply(policy::retry(&ns, "flaky", "client", "flaky", 3)).await;
        })
        .await;
    eprintln!("route + retry in force after {took:?}");

    let teapot = batch(&netns, &format!("{base}/teapot"), 5, &[]).await;
    assert!(
        teapot.iter().all(|r| r.status == 418),
        "rewrite: {}",
        statuses(&teapot)
    );

    let slow = batch(&netns, &format!("{base}/slow/3000"), 3, &[]).await;
    assert!(
        slow.iter().all(|r| r.status == 504),
        "request timeout: {}",
        statuses(&slow)
    );
    let slowest = slow.iter().filter_map(|r| r.took).max().unwrap();
    assert!(
        slowest < Duration::from_millis(1500),
        "the 300 ms timeout took {slowest:?}"
    );

    let moved = batch(&netns, &format!("{base}/moved"), 1, &[]).await;
    assert_eq!(moved[0].status, 301, "redirect: {}", statuses(&moved));

    let inbound = |text: &str| metric_sum(text, "response_total", &["direction=\"inbound\""]);
    let shadow_before = inbound(&sidecar_metrics(&shadow_netns).await.unwrap());
    let n = 50;
    let mirrored = batch(&netns, &format!("{base}/"), n, &[]).await;
    assert!(
        mirrored
            .iter()
            .all(|r| r.status == 200 && r.service.as_deref() == Some("server")),
        "default rule: {}",
        statuses(&mirrored)
    );
    let mut copies = 0.0;
    for _ in 0..20 {
        copies = inbound(&sidecar_metrics(&shadow_netns).await.unwrap()) - shadow_before;
        if copies >= n as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(copies as usize, n, "the shadow's sidecar must count every copy");

    let after = batch(&netns, &flaky_url, 100, &["x-flaky: yes"]).await;
    let ok = |r: &[Reply]| r.iter().filter(|r| r.status == 200).count();
    let to_flaky = after
        .iter()
        .filter(|r| r.service.as_deref() == Some("flaky"))
        .count();
    eprintln!(
        "x-flaky: yes before the route: {} | with the route + Retry(3) on flaky: {} ({} answered by flaky)",
        statuses(&before),
        statuses(&after),
        to_flaky
    );
    assert!(
        before.iter().all(|r| r.service.as_deref() != Some("flaky")),
        "without the route the header changes nothing"
    );
    assert!(
        ok(&after) >= 95,
        "Retry must apply to the route's backend: {}",
        statuses(&after)
    );
    assert_eq!(to_flaky, ok(&after), "every success came from flaky");
    w.stop().await;
}
