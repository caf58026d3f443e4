//! weft's traffic policies end to end on a real control plane and node (see `mesh.rs` for
//! the setup): the load balancer a LoadBalancing picks (round robin, consistent hash on a
//! header, sticky sessions on a generated cookie), fault injection whose percentages hold
//! over a run, and fire-and-forget mirroring to a slow, failing shadow.
//!
//! Needs root (skips otherwise, saying so) and the images (`make e2e` builds them).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;
use support::*;
use weft_e2e::mesh::traffic::{Batch, Reply, metric_sum, percentile, sidecar_metrics};
use weft_e2e::mesh::traffic_policy;
use weft_e2e::mesh::workload::{self, DemoApp, HTTP_PORT};

/// Requests per answering pod.
fn by_pod(r: &[Reply]) -> BTreeMap<String, usize> {
    let mut t = BTreeMap::new();
    for reply in r {
        let key = match (&reply.pod, reply.status) {
            (Some(p), 200) => p.clone(),
            (_, s) => format!("status-{s}"),
        };
        *t.entry(key).or_insert(0) += 1;
    }
    t
}

async fn batch(netns: &str, url: &str, n: usize, headers: &[&str], jar: Option<&str>) -> Vec<Reply> {
    let mut b = Batch::get(netns, url, n);
    b.headers = headers;
    b.cookie_jar = jar;
    b.run().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_balancer_choice_round_robin_hash_and_sticky_cookie() {
    let Some((_serial, w)) = World::begin(
        "load_balancer_choice_round_robin_hash_and_sticky_cookie",
        "mesh-lb",
        "smi",
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
    w.change(std::slice::from_ref(&client), async {
        w.allow_client(&["server"]).await;
    })
    .await;
    let url = format!("http://server.{ns}:{HTTP_PORT}/");
    let pods: Vec<String> = servers.iter().map(|p| p.metadata.name.clone().unwrap()).collect();

    // Round robin: 30 sequential requests visit each of the 3 endpoints 10 times.
    w.change(std::slice::from_ref(&client), async {
        w.apply(traffic_policy::load_balancing(
            &ns,
            "server-lb",
            "server",
            "roundRobin",
            None,
        ))
        .await;
    })
    .await;
    let rr = by_pod(&batch(&netns, &url, 30, &[], None).await);
    eprintln!("roundRobin over 30 requests: {rr:?}");
    assert_eq!(rr.len(), 3, "{rr:?}");
    assert!(rr.values().all(|n| (9..=11).contains(n)), "{rr:?}");

    // Consistent hash on a header: one user always lands on one pod, users spread.
    w.change(std::slice::from_ref(&client), async {
        w.apply(traffic_policy::load_balancing(
            &ns,
            "server-lb",
            "server",
            "consistentHash",
            Some(json!({"header": "x-user", "table": "maglev"})),
        ))
        .await;
    })
    .await;
    let alice = by_pod(&batch(&netns, &url, 20, &["x-user: alice"], None).await);
    eprintln!("consistentHash(x-user) for alice over 20 requests: {alice:?}");
    assert_eq!(alice.len(), 1, "{alice:?}");
    let mut users = BTreeMap::new();
    for i in 0..24 {
        let h = format!("x-user: user-{i}");
        let r = batch(&netns, &url, 2, &[h.as_str()], None).await;
        let seen = by_pod(&r);
        assert_eq!(seen.len(), 1, "user-{i} moved between pods: {seen:?}");
        *users.entry(seen.into_keys().next().unwrap()).or_insert(0) += 1;
    }
    eprintln!("consistentHash(x-user): 24 users over pods {users:?}");
    assert!(users.len() >= 2, "24 users all hashed to one pod: {users:?}");
    assert!(users.keys().all(|p| pods.contains(p)), "{users:?}");

    // Sticky sessions: the sidecar generates the cookie; a client that keeps it stays put.
    w.change(std::slice::from_ref(&client), async {
        w.apply(traffic_policy::load_balancing(
            &ns,
            "server-lb",
            "server",
            "consistentHash",
            Some(json!({"cookie": {"name": "weft-session", "ttl": "1h"}})),
        ))
        .await;
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let jar = dir.path().join("cookies.txt");
    let jar = jar.to_str().unwrap();
    let sticky = by_pod(&batch(&netns, &url, 20, &[], Some(jar)).await);
    let cookies = std::fs::read_to_string(jar).unwrap_or_default();
    eprintln!("sticky cookie over 20 requests with a cookie jar: {sticky:?}");
    assert!(
        cookies.contains("weft-session"),
        "no weft-session cookie was set: {cookies}"
    );
    // Netscape jar lines: domain, subdomains, path, secure, expiry (epoch s), name, value.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expiry = cookies
        .lines()
        .map(|l| l.split('\t').collect::<Vec<_>>())
        .find(|f| f.len() == 7 && f[5] == "weft-session")
        .and_then(|f| f[4].parse::<u64>().ok())
        .unwrap_or(0);
    assert!(
        (now + 3000..=now + 3700).contains(&expiry),
        "the cookie should live 1h (expiry {expiry}, now {now}): {cookies}"
    );
    assert_eq!(sticky.len(), 1, "{sticky:?}");
    let fresh = by_pod(&batch(&netns, &url, 30, &[], None).await);
    eprintln!("sticky cookie, 30 requests without a jar (a new session each): {fresh:?}");
    assert!(fresh.len() >= 2, "new sessions should spread: {fresh:?}");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_injection_percentages_hold_over_a_run() {
    let Some((_serial, w)) = World::begin(
        "fault_injection_percentages_hold_over_a_run",
        "mesh-fault",
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
    w.change(&[client.clone(), server], async {
        w.allow_client(&["server", "broken"]).await;
    })
    .await;
    let url = format!("http://server.{ns}:{HTTP_PORT}/");
    let metric = |text: &str, kind: &str| {
        metric_sum(
            text,
            "weft_faults_injected_total",
            &[&format!("kind=\"{kind}\""), "dst_service=\"server\""],
        )
    };

    // 10 % aborts with 503 over 1,000 requests: 100 ± 30 answered by the client's sidecar.
    w.change(std::slice::from_ref(&client), async {
        w.apply(traffic_policy::fault_injection(
            &ns,
            "server-faults",
            "server",
            Some((503, 10.0)),
            None,
        ))
        .await;
    })
    .await;
    let before = sidecar_metrics(&netns).await.unwrap();
    let r = batch(&netns, &url, 1000, &[], None).await;
    let aborted = r.iter().filter(|r| r.status == 503).count();
    let ok = r.iter().filter(|r| r.status == 200).count();
    let after = sidecar_metrics(&netns).await.unwrap();
    let counted = metric(&after, "abort") - metric(&before, "abort");
    eprintln!(
        "FaultInjection abort 10 %: {aborted} of 1000 answered 503 ({ok} reached the server), \
         weft_faults_injected_total{{kind=abort}} +{counted}"
    );
    assert!((70..=130).contains(&aborted), "{}", statuses(&r));
    assert_eq!(aborted + ok, 1000, "{}", statuses(&r));
    assert_eq!(
        counted as usize, aborted,
        "the metric must count every injected abort"
    );

    // 20 % delayed by 200 ms over 500 requests: 100 ± 27 slow ones, the rest fast.
    w.change(std::slice::from_ref(&client), async {
        w.apply(traffic_policy::fault_injection(
            &ns,
            "server-faults",
            "server",
            None,
            Some(("200ms", 20.0)),
        ))
        .await;
    })
    .await;
    let before = sidecar_metrics(&netns).await.unwrap();
    let r = batch(&netns, &url, 500, &[], None).await;
    let after = sidecar_metrics(&netns).await.unwrap();
    assert!(r.iter().all(|r| r.status == 200), "{}", statuses(&r));
    let took: Vec<Duration> = r.iter().map(|r| r.took.unwrap()).collect();
    let (slow, fast): (Vec<Duration>, Vec<Duration>) =
        took.iter().partition(|t| **t >= Duration::from_millis(200));
    let counted = metric(&after, "delay") - metric(&before, "delay");
    eprintln!(
        "FaultInjection delay 20 % x 200ms over 500 requests: {} delayed (p50 {:?}, max {:?}), \
         {} not (p50 {:?}, p99 {:?}); weft_faults_injected_total{{kind=delay}} +{counted}",
        slow.len(),
        percentile(&slow, 50.0),
        percentile(&slow, 100.0),
        fast.len(),
        percentile(&fast, 50.0),
        percentile(&fast, 99.0)
    );
    assert!((73..=127).contains(&slow.len()), "{} delayed of 500", slow.len());
    assert!(percentile(&fast, 50.0) < Duration::from_millis(100));
    assert!(percentile(&slow, 50.0) < Duration::from_millis(400));
    assert_eq!(
        counted as usize,
        slow.len(),
        "the metric must count every injected delay"
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirroring_to_a_slow_failing_shadow_leaves_the_client_alone() {
    let Some((_serial, w)) = World::begin(
        "mirroring_to_a_slow_failing_shadow_leaves_the_client_alone",
        "mesh-mirror",
        "smi",
        "strict",
    )
    .await
    else {
        return;
    };
    let ns = w.ns().to_string();
    let mut shadow = DemoApp::new("shadow", "shadow", "v1");
    shadow.env.insert("DELAY_MS".into(), "2000".into());
    shadow.env.insert("FAIL_RATE".into(), "1.0".into());
    w.deploy(&shadow).await;
    w.apply(workload::service(&ns, "shadow", &[("app", "shadow")]))
        .await;
    let (client, server, _) = server_client(&w, &[]).await;
    let shadow_pod = w.ready_pods("app=shadow", 1).await.remove(0);
    let netns = w.netns(&client);
    let shadow_netns = w.netns(&shadow_pod);
    w.change(&[client.clone(), server], async {
        w.allow_client(&["server", "shadow"]).await;
    })
    .await;
    let url = format!("http://server.{ns}:{HTTP_PORT}/");
    let n = 100;
    let base = batch(&netns, &url, n, &[], None).await;
    assert!(base.iter().all(|r| r.status == 200), "{}", statuses(&base));
    let base_p99 = percentile(&base.iter().map(|r| r.took.unwrap()).collect::<Vec<_>>(), 99.0);

    w.change(std::slice::from_ref(&client), async {
        w.apply(traffic_policy::traffic_mirror(
            &ns,
            "server-mirror",
            "server",
            "shadow",
            100.0,
        ))
        .await;
    })
    .await;
    let shadow_failed = |text: &str| {
        metric_sum(
            text,
            "response_total",
            &["direction=\"inbound\"", "status_code=\"500\""],
        )
    };
    let mirror_metric = |text: &str, result: &str| {
        metric_sum(
            text,
            "weft_mirror_requests_total",
            &["dst_service=\"shadow\"", &format!("result=\"{result}\"")],
        )
    };
    let shadow_before = shadow_failed(&sidecar_metrics(&shadow_netns).await.unwrap());
    let client_before = sidecar_metrics(&netns).await.unwrap();
    let mirrored = batch(&netns, &url, n, &[], None).await;
    assert!(
        mirrored.iter().all(|r| r.status == 200),
        "{}",
        statuses(&mirrored)
    );
    let took: Vec<Duration> = mirrored.iter().map(|r| r.took.unwrap()).collect();
    let p99 = percentile(&took, 99.0);
    // The shadow answers each copy after 2 s; wait for the last ones.
    let mut seen = 0.0;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        seen = shadow_failed(&sidecar_metrics(&shadow_netns).await.unwrap()) - shadow_before;
        if seen >= n as f64 {
            break;
        }
    }
    let client_after = sidecar_metrics(&netns).await.unwrap();
    let failed = mirror_metric(&client_after, "failed") - mirror_metric(&client_before, "failed");
    let dropped = mirror_metric(&client_after, "dropped") - mirror_metric(&client_before, "dropped");
    eprintln!(
        "TrafficMirror 100 % to a shadow that sleeps 2 s and fails: client p99 {p99:?} (without \
         the mirror {base_p99:?}, max {:?}); the shadow answered {seen} copies with 500; client \
         counted {failed} failed and {dropped} dropped copies",
        percentile(&took, 100.0)
    );
    assert!(
        p99 <= base_p99 * 2 + Duration::from_millis(50),
        "the mirror slowed the client: p99 {p99:?} vs {base_p99:?}"
    );
    assert!(
        p99 < Duration::from_secs(1),
        "the client waited for the shadow: {p99:?}"
    );
    assert_eq!(seen as usize, n, "the shadow must see every request");
    assert_eq!(failed as usize, n, "every copy failed and was counted as failed");
    assert_eq!(dropped, 0.0);
    w.stop().await;
}
