//! Loopback component tests of fault injection in the outbound sidecar: abort
//! and delay shares, the gRPC abort shape, matches restricting a fault, and the
//! fault and request metrics agreeing with what clients saw.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use support::*;

const DST: &str = "198.19.0.10:80";
const SVC: &str = "dst_namespace=\"test\",dst_service=\"svc\"";
const HTTP: &str = "direction=\"outbound\",authority=\"svc.test.svc.cluster.local:80\",dst_namespace=\"test\",dst_service=\"svc\"";

fn cfg(protocol: &str, backend: SocketAddr, faults: Value) -> String {
    let (k, mut s) = service("svc", "198.19.0.10", 80, protocol, &[backend]);
    s["faults"] = faults;
    config(vec![(k, s)])
}

/// The value of one series in the exposition text (0 when absent).
fn value(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn ten_percent_abort_is_counted_like_any_response() {
    let b = http_backend("b").await;
    let faults = json!([{"source": "test/fi", "abort": {"httpStatus": 503, "percent": 10}}]);
    let p = proxy(&[DST], &[], &cfg("http1", b.addr, faults)).await;
    let c = h1_client();
    let mut aborted = 0u64;
    for _ in 0..1_000 {
        let (status, h, body) = get(&c, p.outbound_addrs[0], "/", &[]).await;
        if h.get("x-weft-error").is_some_and(|v| v == "fault-abort") {
            assert_eq!((status, body.as_str()), (503, "fault injected\n"));
            aborted += 1;
        } else {
            assert_eq!((status, body.as_str()), (200, "b"));
        }
    }
    assert!((70..=130).contains(&aborted), "aborted {aborted} of 1000");
    assert_eq!(
        b.hits(),
        1_000 - aborted,
        "aborted requests never reach the upstream"
    );
    let text = metrics_text(p.admin_addr.unwrap()).await;
    let abort = format!("weft_faults_injected_total{{{SVC},kind=\"abort\"}}");
    assert_eq!(value(&text, &abort), aborted, "{text}");
    assert_eq!(value(&text, &format!("request_total{{{HTTP}}}")), 1_000);
    let failed = format!("response_total{{{HTTP},classification=\"failure\",status_code=\"503\"}}");
    assert_eq!(value(&text, &failed), aborted);
    assert_eq!(
        value(&text, &format!("response_latency_ms_count{{{HTTP}}}")),
        1_000
    );
}

#[tokio::test]
async fn twenty_percent_delay_slows_only_those_requests() {
    let b = http_backend("b").await;
    let faults = json!([{"source": "test/fi", "delay": {"delayMs": 200, "percent": 20}}]);
    let p = proxy(&[DST], &[], &cfg("http1", b.addr, faults)).await;
    let c = h1_client();
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let (c, addr) = (c.clone(), p.outbound_addrs[0]);
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::new();
            for _ in 0..20 {
                let t = Instant::now();
                assert_eq!(get(&c, addr, "/", &[]).await.0, 200);
                times.push(t.elapsed());
            }
            times
        }));
    }
    let mut times = Vec::new();
    for t in tasks {
        times.extend(t.await.unwrap());
    }
    let slow = times.iter().filter(|t| **t >= Duration::from_millis(200)).count() as u64;
    assert!((20..=60).contains(&slow), "{slow} of 200 delayed");
    let text = metrics_text(p.admin_addr.unwrap()).await;
    let delay = format!("weft_faults_injected_total{{{SVC},kind=\"delay\"}}");
    assert_eq!(
        value(&text, &delay),
        slow,
        "every delayed request and only those are slow"
    );
    assert_eq!(b.hits(), 200, "delayed requests are still sent");
}

#[tokio::test]
async fn grpc_requests_get_a_trailers_only_abort() {
    let b = http_backend("g").await;
    let faults =
        json!([{"source": "test/fi", "abort": {"httpStatus": 500, "grpcStatus": 14, "percent": 100}}]);
    let p = proxy(&[DST], &[], &cfg("grpc", b.addr, faults)).await;
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let url = format!("http://{}/pkg.Svc/Call", p.outbound_addrs[0]);
    let req = Request::post(&url)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from_static(b"\0\0\0\0\0")))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/grpc");
    assert_eq!(resp.headers()["grpc-status"], "14");
    assert_eq!(resp.headers()["grpc-message"], "fault%20injected");
    let body = resp.into_body().collect().await.unwrap();
    assert!(
        body.trailers().is_none(),
        "trailers-only: the status is in the headers"
    );
    assert!(body.to_bytes().is_empty());
    // A plain HTTP/2 request to the same service gets the HTTP status.
    let req = Request::get(&url).body(Full::new(Bytes::new())).unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), 500);
    assert_eq!(resp.headers()["x-weft-error"], "fault-abort");
    assert_eq!(b.hits(), 0);
    let text = metrics_text(p.admin_addr.unwrap()).await;
    let grpc_failed = format!("response_total{{{HTTP},classification=\"failure\",status_code=\"200\"}}");
    assert_eq!(value(&text, &grpc_failed), 1, "a gRPC abort is a failure: {text}");
}

#[tokio::test]
async fn matches_restrict_the_fault_to_matching_requests() {
    let b = http_backend("b").await;
    let faults = json!([{
        "source": "test/fi",
        "matches": [{"name": "g/api", "pathRegex": "/api/.*", "methods": ["GET"]}],
        "abort": {"httpStatus": 418, "percent": 100},
    }]);
    let p = proxy(&[DST], &[], &cfg("http1", b.addr, faults)).await;
    let c = h1_client();
    let addr = p.outbound_addrs[0];
    for path in ["/api/x", "/api//x", "/web/../api/x"] {
        let (status, h, _) = get(&c, addr, path, &[]).await;
        assert_eq!(
            (status, &h["x-weft-error"]),
            (418, &"fault-abort".parse::<http::HeaderValue>().unwrap()),
            "{path}"
        );
    }
    for path in ["/web", "/api", "/apix/y"] {
        assert_eq!(get(&c, addr, path, &[]).await.0, 200, "{path}");
    }
    assert_eq!(b.hits(), 3);
    let text = metrics_text(p.admin_addr.unwrap()).await;
    assert_eq!(
        value(
            &text,
            &format!("weft_faults_injected_total{{{SVC},kind=\"abort\"}}")
        ),
        3
    );
    // 4xx aborts count as answered requests (success class), like upstream 4xx.
    let ok = format!("response_total{{{HTTP},classification=\"success\",status_code=\"418\"}}");
    assert_eq!(value(&text, &ok), 3);
}
