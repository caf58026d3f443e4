//! Paused-time component tests of retries, timeouts, the retry budget, the
//! circuit breaker, outlier ejection and pool limits. Upstreams are in-memory
//! (see `support::fake`), so the clock only moves when everything waits on it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use support::fake::{Harness, Reply};
use tokio::time::Instant;

const DST: &str = "198.19.0.10:80";
const A: &str = "198.18.0.1:8080";
const B: &str = "198.18.0.2:8080";
const SVC: &str = "dst_namespace=\"test\",dst_service=\"svc\"";

fn cfg(endpoints: &[&str], lb: &str, retry: Option<Value>, cb: Option<Value>) -> String {
    let eps: Vec<Value> = endpoints
        .iter()
        .map(|e| {
            let (ip, port) = e.split_once(':').unwrap();
            json!({"ip": ip, "port": port.parse::<u16>().unwrap()})
        })
        .collect();
    let mut svc = json!({
        "namespace": "test", "name": "svc", "clusterIps": ["198.19.0.10"],
        "ports": [{"port": 80, "protocol": "http1", "endpoints": eps}],
        "loadBalancer": {"kind": lb},
    });
    if let Some(r) = retry {
        svc["retry"] = r;
    }
    if let Some(c) = cb {
        svc["circuitBreaker"] = c;
    }
    support::config(vec![("test/svc".to_string(), svc)])
}

fn retry(on: &[&str], n: u32, extra: Value) -> Value {
    let mut r = json!({
        "source": "test/retry", "retryOn": on, "numRetries": n,
        "backoff": {"baseMs": 25, "maxMs": 250},
        "budget": {"ratio": 0.2, "minPerSecond": 10, "windowMs": 10000},
    });
    for (k, v) in extra.as_object().unwrap() {
        r[k] = v.clone();
    }
    r
}

#[tokio::test(start_paused = true)]
async fn fails_twice_then_succeeds_with_two_retries() {
    let h = Harness::new(&cfg(
        &[A],
        "roundRobin",
        Some(retry(&["5xx"], 3, json!({}))),
        None,
    ));
    h.fake.script(A, |n| Reply::Status(if n < 2 { 503 } else { 200 }));
    let (status, err, body) = h.send(DST, "POST", "payload").await;
    assert_eq!((status, err.as_str(), body.as_str()), (200, "", "n=2"));
    assert_eq!(h.fake.hits(A), 3);
    let retries = format!("{SVC},reason=\"5xx\"");
    assert_eq!(h.metric("outbound_http_retry_total", &retries), 2);
    // The client saw one response: only the final 200 is counted.
    let text = h.render();
    assert!(
        text.contains("classification=\"success\",status_code=\"200\"} 1"),
        "{text}"
    );
    assert!(!text.contains("status_code=\"503\""), "{text}");
}

#[tokio::test(start_paused = true)]
async fn slow_upstream_gets_504_at_the_deadline() {
    let r = retry(&["gateway-error"], 2, json!({"timeoutMs": 500}));
    let h = Harness::new(&cfg(&[A], "roundRobin", Some(r), None));
    h.fake.script(A, |_| Reply::Delay(Duration::from_secs(30), 200));
    let t = Instant::now();
    let (status, err, _) = h.send(DST, "GET", "").await;
    assert_eq!((status, err.as_str()), (504, "timeout"));
    assert_eq!(t.elapsed(), Duration::from_millis(500));

    // Per-try timeouts retry within the overall deadline.
    let r = retry(
        &["gateway-error"],
        5,
        json!({"timeoutMs": 1000, "perTryTimeoutMs": 100}),
    );
    let h = Harness::new(&cfg(&[A], "roundRobin", Some(r), None));
    h.fake.script(A, |n| {
        Reply::Delay(Duration::from_secs(if n < 2 { 30 } else { 0 }), 200)
    });
    let t = Instant::now();
    let (status, _, body) = h.send(DST, "GET", "").await;
    assert_eq!((status, body.as_str()), (200, "n=2"));
    assert!(t.elapsed() >= Duration::from_millis(200) && t.elapsed() < Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn budget_exhaustion_stops_retries() {
    let r = retry(
        &["5xx"],
        3,
        json!({"budget": {"ratio": 0.0, "minPerSecond": 1, "windowMs": 1000}}),
    );
    let h = Harness::new(&cfg(&[A], "roundRobin", Some(r), None));
    h.fake.script(A, |_| Reply::Status(500));
    // The budget allows one retry per second: the first request gets it...
    assert_eq!(h.send(DST, "GET", "").await.0, 500);
    assert_eq!(h.fake.hits(A), 2);
    // ...the next ones are not retried until the window has passed.
    assert_eq!(h.send(DST, "GET", "").await.0, 500);
    assert_eq!(h.fake.hits(A), 3);
    assert_eq!(h.metric("outbound_http_retry_budget_exhausted_total", SVC), 2);
    tokio::time::sleep(Duration::from_secs(2)).await;
    h.send(DST, "GET", "").await;
    assert_eq!(h.fake.hits(A), 5);
    assert_eq!(
        h.metric("outbound_http_retry_total", &format!("{SVC},reason=\"5xx\"")),
        2
    );
}

#[tokio::test(start_paused = true)]
async fn large_bodies_are_not_retried() {
    let h = Harness::new(&cfg(
        &[A],
        "roundRobin",
        Some(retry(&["5xx"], 3, json!({}))),
        None,
    ));
    h.fake.script(A, |_| Reply::Status(503));
    let big: &'static str = Box::leak("x".repeat(70 * 1024).into_boxed_str());
    assert_eq!(h.send(DST, "POST", big).await.0, 503);
    assert_eq!(h.fake.hits(A), 1);
}

fn breaker_cb(fallback: Option<Value>) -> Value {
    let mut cb = json!({"source": "test/cb", "breaker": {
        "failureRateThreshold": 50, "windowMs": 10000, "minimumRequests": 4,
        "openDurationMs": 1000, "halfOpenRequests": 2}});
    if let Some(f) = fallback {
        cb["fallback"] = f;
    }
    cb
}

#[tokio::test(start_paused = true)]
async fn breaker_timeline() {
    let h = Harness::new(&cfg(&[A], "roundRobin", None, Some(breaker_cb(None))));
    let failing = Arc::new(AtomicBool::new(true));
    let f = Arc::clone(&failing);
    h.fake.script(A, move |_| {
        Reply::Status(if f.load(Ordering::Relaxed) { 500 } else { 200 })
    });
    let state = || h.metric("outbound_http_breaker_state", SVC);
    for _ in 0..4 {
        assert_eq!(h.send(DST, "GET", "").await.0, 500);
    }
    assert_eq!(state(), 1, "open");
    // Open: rejected without reaching the upstream.
    assert_eq!(
        h.send(DST, "GET", "").await,
        (503, "circuit-open".into(), "circuit-open".into())
    );
    assert_eq!(h.fake.hits(A), 4);
    // Half-open after openDuration; two good trials close it.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    failing.store(false, Ordering::Relaxed);
    assert_eq!(h.send(DST, "GET", "").await.0, 200);
    assert_eq!(state(), 2, "half-open");
    assert_eq!(h.send(DST, "GET", "").await.0, 200);
    assert_eq!(state(), 0, "closed");
    // Failing again: open; after the period a failed trial re-opens it.
    failing.store(true, Ordering::Relaxed);
    for _ in 0..4 {
        h.send(DST, "GET", "").await;
    }
    assert_eq!(state(), 1);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(h.send(DST, "GET", "").await.0, 500);
    assert_eq!(state(), 1, "a failed trial re-opens");
    assert_eq!(h.send(DST, "GET", "").await.1, "circuit-open");
    let to = |s: &str| {
        h.metric(
            "outbound_http_breaker_transitions_total",
            &format!("{SVC},to=\"{s}\""),
        )
    };
    assert_eq!((to("open"), to("half_open"), to("closed")), (3, 2, 1));
    let rejected = format!("{SVC},reason=\"circuit-open\"");
    assert_eq!(h.metric("outbound_http_breaker_rejected_total", &rejected), 2);
}

#[tokio::test(start_paused = true)]
async fn open_breaker_serves_the_static_fallback() {
    let fb = json!({"kind": "static", "status": 200, "body": "cached", "headers": {"x-cache": "1"}});
    let h = Harness::new(&cfg(&[A], "roundRobin", None, Some(breaker_cb(Some(fb)))));
    h.fake.script(A, |_| Reply::Status(502));
    for _ in 0..4 {
        h.send(DST, "GET", "").await;
    }
    let (status, err, body) = h.send(DST, "GET", "").await;
    assert_eq!(
        (status, err.as_str(), body.as_str()),
        (200, "circuit-open", "cached")
    );
}

#[tokio::test(start_paused = true)]
async fn outlier_ejection_shifts_traffic_away_and_back() {
    let cb = json!({"source": "test/cb", "outlierDetection": {
        "consecutive5xx": 2, "intervalMs": 1000, "baseEjectionMs": 10000, "maxEjectionPercent": 50}});
    let h = Harness::new(&cfg(&[A, B], "roundRobin", None, Some(cb)));
    let bad = Arc::new(AtomicBool::new(true));
    let b2 = Arc::clone(&bad);
    h.fake.script(A, move |_| {
        Reply::Status(if b2.load(Ordering::Relaxed) { 500 } else { 200 })
    });
    h.fake.script(B, |_| Reply::Status(200));
    for _ in 0..20 {
        h.send(DST, "GET", "").await;
    }
    // A failed twice and was ejected; everything else went to B.
    assert_eq!((h.fake.hits(A), h.fake.hits(B)), (2, 18));
    assert_eq!(h.metric("outbound_http_outlier_ejections_total", SVC), 1);
    let view = weft_proxy::resilience::view::render(h.shared.store.resilience(), Instant::now());
    assert_eq!(view["test/svc"]["ejected"][0]["endpoint"], A);
    // After the ejection period A is back in rotation.
    bad.store(false, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(10)).await;
    for _ in 0..10 {
        assert_eq!(h.send(DST, "GET", "").await.0, 200);
    }
    assert_eq!((h.fake.hits(A), h.fake.hits(B)), (7, 23));
}

#[tokio::test(start_paused = true)]
async fn pool_limits_fail_fast() {
    let cb = json!({"source": "test/cb", "connectionPool": {"maxRequests": 1}});
    let h = Arc::new(Harness::new(&cfg(&[A], "roundRobin", None, Some(cb))));
    h.fake.script(A, |_| Reply::Delay(Duration::from_secs(5), 200));
    let h2 = Arc::clone(&h);
    let first = tokio::spawn(async move { h2.send(DST, "GET", "").await.0 });
    tokio::time::sleep(Duration::from_millis(10)).await;
    let t = Instant::now();
    assert_eq!(h.send(DST, "GET", "").await.1, "max-requests");
    assert_eq!(t.elapsed(), Duration::ZERO, "fails fast");
    assert_eq!(first.await.unwrap(), 200);

    // With a pending queue the second waits for the first instead.
    let cb = json!({"source": "test/cb", "connectionPool": {"maxRequests": 1, "maxPendingRequests": 1,
        "connectTimeoutMs": 10000}});
    let h = Arc::new(Harness::new(&cfg(&[A], "roundRobin", None, Some(cb))));
    h.fake.script(A, |_| Reply::Delay(Duration::from_secs(1), 200));
    let (h2, h3) = (Arc::clone(&h), Arc::clone(&h));
    let first = tokio::spawn(async move { h2.send(DST, "GET", "").await.0 });
    tokio::time::sleep(Duration::from_millis(10)).await;
    let second = tokio::spawn(async move { h3.send(DST, "GET", "").await.0 });
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(h.send(DST, "GET", "").await.1, "pending-overflow");
    assert_eq!((first.await.unwrap(), second.await.unwrap()), (200, 200));

    // maxConnections: HTTP/1 needs a connection per concurrent request.
    let cb = json!({"source": "test/cb", "connectionPool": {"maxConnections": 1}});
    let h = Arc::new(Harness::new(&cfg(&[A], "roundRobin", None, Some(cb))));
    h.fake.script(A, |_| Reply::Delay(Duration::from_secs(1), 200));
    let h2 = Arc::clone(&h);
    let first = tokio::spawn(async move { h2.send(DST, "GET", "").await.0 });
    tokio::time::sleep(Duration::from_millis(10)).await;
    let (status, err, _) = h.send(DST, "GET", "").await;
    assert_eq!((status, err.as_str()), (503, "max-connections"));
    assert_eq!(first.await.unwrap(), 200);
    // The connection is pooled and reused afterwards.
    assert_eq!(h.send(DST, "GET", "").await.0, 200);
    assert_eq!(h.fake.connects.load(Ordering::Relaxed), 1);
}

#[tokio::test(start_paused = true)]
async fn connect_failures_retry_on_another_endpoint() {
    let h = Harness::new(&cfg(
        &[A, B],
        "roundRobin",
        Some(retry(&["connect-failure"], 1, json!({}))),
        None,
    ));
    h.fake.script(B, |_| Reply::Status(200));
    h.fake.refuse(A, true);
    for _ in 0..4 {
        assert_eq!(h.send(DST, "GET", "").await.0, 200);
    }
    assert_eq!(h.fake.hits(B), 4);
    // Round robin alternates, so every request starts on A and is retried on B.
    let retries = format!("{SVC},reason=\"connect-failure\"");
    assert_eq!(h.metric("outbound_http_retry_total", &retries), 4);
}

#[tokio::test(start_paused = true)]
async fn open_breaker_routes_to_the_fallback_service() {
    let fb = json!({"kind": "service", "service": "test/backup"});
    let mut doc: Value =
        serde_json::from_str(&cfg(&[A], "roundRobin", None, Some(breaker_cb(Some(fb))))).unwrap();
    doc["services"]["test/backup"] = json!({
        "namespace": "test", "name": "backup", "clusterIps": ["198.19.0.11"],
        "ports": [{"port": 80, "protocol": "http1", "endpoints": [{"ip": "198.18.0.2", "port": 8080}]}],
    });
    let h = Harness::new(&doc.to_string());
    h.fake.script(A, |_| Reply::Status(500));
    h.fake.script(B, |_| Reply::Status(200));
    for _ in 0..4 {
        assert_eq!(h.send(DST, "GET", "").await.0, 500);
    }
    let (status, err, body) = h.send(DST, "GET", "").await;
    assert_eq!((status, err.as_str(), body.as_str()), (200, "", "n=0"));
    assert_eq!((h.fake.hits(A), h.fake.hits(B)), (4, 1));
}
