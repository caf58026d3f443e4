//! Component tests on loopback: TrafficSplit distribution, header routes,
//! endpoint removal by config swap, and zero failures while the config is
//! swapped 100 times under load.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::json;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use support::*;

const APEX: &str = "198.19.0.10:80";

fn split_config(
    v1: &[SocketAddr],
    v2: &[SocketAddr],
    w1: u64,
    w2: u64,
    matches: serde_json::Value,
) -> String {
    let (k, mut apex) = service("reviews", "198.19.0.10", 80, "http1", v1);
    apex["split"] = json!({
        "source": "test/reviews-split",
        "backends": [{"service": "test/reviews-v1", "weight": w1}, {"service": "test/reviews-v2", "weight": w2}],
        "matches": matches,
    });
    config(vec![
        (k, apex),
        service("reviews-v1", "198.19.0.11", 80, "http1", v1),
        service("reviews-v2", "198.19.0.12", 80, "http1", v2),
    ])
}

#[tokio::test]
async fn split_75_25_over_2000_requests() {
    let (v1, v2) = (http_backend("v1").await, http_backend("v2").await);
    let p = proxy(
        &[APEX],
        &[],
        &split_config(&[v1.addr], &[v2.addr], 75_000, 25_000, json!([])),
    )
    .await;
    let c = h1_client();
    let mut counts: HashMap<String, u32> = HashMap::new();
    // A few concurrent clients, as real traffic would be.
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (c, addr) = (c.clone(), p.outbound_addrs[0]);
        tasks.push(tokio::spawn(async move {
            let mut local: Vec<String> = Vec::new();
            for _ in 0..500 {
                let (status, _, body) = get(&c, addr, "/", &[]).await;
                assert_eq!(status, 200);
                local.push(body);
            }
            local
        }));
    }
    for t in tasks {
        for b in t.await.unwrap() {
            *counts.entry(b).or_default() += 1;
        }
    }
    let share = f64::from(counts["v1"]) / 2000.0;
    assert!((0.70..=0.80).contains(&share), "{counts:?}");
    assert_eq!(counts["v1"] + counts["v2"], 2000);
    assert_eq!(v1.hits() + v2.hits(), 2000);
}

#[tokio::test]
async fn header_route_sends_jason_to_v2() {
    let (root, v2) = (http_backend("root").await, http_backend("v2").await);
    let matches = json!([{"name": "ab/jason", "headers": {"end-user": "jason"}}]);
    let (k, mut apex) = service("reviews", "198.19.0.10", 80, "http1", &[root.addr]);
    apex["split"] = json!({"source": "test/ab", "backends": [{"service": "test/reviews-v2", "weight": 100}], "matches": matches});
    let cfg = config(vec![
        (k, apex),
        service("reviews-v2", "198.19.0.12", 80, "http1", &[v2.addr]),
    ]);
    let p = proxy(&[APEX], &[], &cfg).await;
    let c = h1_client();
    for _ in 0..20 {
        assert_eq!(
            get(&c, p.outbound_addrs[0], "/", &[("end-user", "jason")])
                .await
                .2,
            "v2"
        );
        assert_eq!(
            get(&c, p.outbound_addrs[0], "/", &[("end-user", "jasonx")])
                .await
                .2,
            "root"
        );
        assert_eq!(get(&c, p.outbound_addrs[0], "/", &[]).await.2, "root");
    }
}

#[tokio::test]
async fn endpoint_removal_takes_effect_on_swap() {
    let (a, b) = (http_backend("a").await, http_backend("b").await);
    // Round robin: least-request would (correctly) stick to whichever endpoint
    // answers faster than the 1 ms assumed for an untried one.
    let (k, mut web) = service("web", "198.19.0.10", 80, "http1", &[a.addr, b.addr]);
    web["loadBalancer"] = serde_json::json!({"kind": "roundRobin"});
    let p = proxy(&[APEX], &[], &config(vec![(k, web)])).await;
    let c = h1_client();
    let mut seen = HashMap::<String, u32>::new();
    for _ in 0..40 {
        *seen
            .entry(get(&c, p.outbound_addrs[0], "/", &[]).await.2)
            .or_default() += 1;
    }
    assert!(seen.contains_key("a") && seen.contains_key("b"), "{seen:?}");
    // Remove `a` (same keep-alive client connection continues to be used).
    p.store
        .apply_json(
            &config(vec![service("web", "198.19.0.10", 80, "http1", &[b.addr])]),
            "test",
        )
        .unwrap();
    let before = a.hits();
    for _ in 0..40 {
        assert_eq!(get(&c, p.outbound_addrs[0], "/", &[]).await.2, "b");
    }
    assert_eq!(a.hits(), before);
    // Not-ready endpoints leave the pool too.
    let (k, mut svc) = service("web", "198.19.0.10", 80, "http1", &[b.addr]);
    svc["ports"][0]["endpoints"][0]["ready"] = json!(false);
    p.store.apply_json(&config(vec![(k, svc)]), "test").unwrap();
    let (status, h, _) = get(&c, p.outbound_addrs[0], "/", &[]).await;
    assert_eq!(
        (status, h["x-weft-error"].to_str().unwrap()),
        (503, "no-healthy-endpoints")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_failures_across_100_swaps_under_load() {
    let backends = [
        http_backend("a").await,
        http_backend("b").await,
        http_backend("c").await,
    ];
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    let cfgs: Vec<String> = (0..3)
        .map(|i| {
            // Rotating endpoint sets (always two of three) plus a split weight change.
            let set = [addrs[i], addrs[(i + 1) % 3]];
            split_config(&set, &[addrs[(i + 2) % 3]], 50 + i as u64 * 10, 10, json!([]))
        })
        .collect();
    let p = proxy(&[APEX], &[], &cfgs[0]).await;
    let proxy_addr = p.outbound_addrs[0];
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let deadline = Instant::now() + Duration::from_secs(4);
    let mut clients = Vec::new();
    // 8 clients × one request every 16 ms ≈ 500 req/s, bounded by the deadline.
    for _ in 0..8 {
        let (ok, failed) = (Arc::clone(&ok), Arc::clone(&failed));
        let c = h1_client();
        clients.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(16));
            while Instant::now() < deadline {
                tick.tick().await;
                let req = http::Request::get(format!("http://{proxy_addr}/"))
                    .body(http_body_util::Full::new(bytes::Bytes::new()))
                    .unwrap();
                match c.request(req).await {
                    Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    let mut swaps = 0;
    while swaps < 100 {
        tokio::time::sleep(Duration::from_millis(35)).await;
        swaps += 1;
        p.store.apply_json(&cfgs[swaps % 3], "test").unwrap();
    }
    for c in clients {
        c.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert_eq!(failed, 0, "{failed} failed of {}", ok + failed);
    assert!(ok > 1_000, "only {ok} requests");
    assert_eq!(p.store.load().unwrap().generation, 101);
}

#[tokio::test]
async fn generated_cookie_keeps_a_session_on_one_endpoint() {
    let backends = [
        http_backend("a").await,
        http_backend("b").await,
        http_backend("c").await,
    ];
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    let (k, mut s) = service("sticky", "198.19.0.10", 80, "http1", &addrs);
    s["loadBalancer"] = json!({
        "kind": "consistentHash", "key": {"kind": "cookie", "name": "session"},
        "cookie": {"ttlMs": 3_600_500, "path": "/"},
    });
    let p = proxy(&[APEX], &[], &config(vec![(k, s)])).await;
    let c = h1_client();
    let addr = p.outbound_addrs[0];
    let (status, h, first) = get(&c, addr, "/", &[]).await;
    assert_eq!(status, 200);
    let set = h["set-cookie"].to_str().unwrap().to_string();
    let value = set
        .strip_prefix("session=")
        .and_then(|r| r.strip_suffix("; Path=/; Max-Age=3601; HttpOnly"))
        .unwrap_or_else(|| panic!("unexpected set-cookie {set}"));
    assert_eq!(value.len(), 32);
    assert!(value.bytes().all(|b| b.is_ascii_hexdigit()));
    // The generated value routed the first request: replaying it lands there.
    let cookie = format!("other=1; session={value}");
    for _ in 0..50 {
        let (_, h, body) = get(&c, addr, "/", &[("cookie", &cookie)]).await;
        assert_eq!(body, first);
        assert!(
            h.get("set-cookie").is_none(),
            "a request with the cookie gets none"
        );
    }
    // Requests without the cookie get fresh sessions spread over endpoints.
    let mut seen = std::collections::HashSet::new();
    let mut values = std::collections::HashSet::new();
    for _ in 0..30 {
        let (_, h, body) = get(&c, addr, "/", &[]).await;
        seen.insert(body);
        values.insert(h["set-cookie"].to_str().unwrap().to_string());
    }
    assert!(seen.len() >= 2, "{seen:?}");
    assert_eq!(values.len(), 30);
}
