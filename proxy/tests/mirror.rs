//! Loopback component tests of traffic mirroring: fire-and-forget copies with
//! the `-shadow` host and the same body that never slow the primary, bodies
//! over the bound delivered to the primary but not mirrored, and the mirrored
//! share.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::*;
use tokio::net::{TcpListener, TcpStream};

const DST: &str = "198.19.0.10:80";
const SHADOW: &str = "dst_namespace=\"test\",dst_service=\"shadow\"";

type Seen = Arc<Mutex<Vec<(String, Bytes)>>>;

/// A backend that reads the whole body, records `(host, body)`, waits
/// `delay`, then answers `status` with the body length in `x-len`.
async fn recorder(delay: Duration, status: u16) -> (Server, Seen) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let s = Arc::clone(&seen);
    let task = tokio::spawn(async move {
        loop {
            let Ok((io, _)) = l.accept().await else { return };
            let s = Arc::clone(&s);
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let s = Arc::clone(&s);
                    async move {
                        let host = req.headers().get("host").map(|h| h.to_str().unwrap().to_string());
                        let host = host.or_else(|| req.uri().authority().map(|a| a.to_string()));
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let len = body.len();
                        s.lock().unwrap().push((host.unwrap_or_default(), body));
                        tokio::time::sleep(delay).await;
                        let r = Response::builder()
                            .status(status)
                            .header("x-len", len.to_string())
                            .body(Full::new(Bytes::new()))
                            .unwrap();
                        Ok::<_, Infallible>(r)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(io), svc)
                    .await;
            });
        }
    });
    (Server::new(addr, Arc::new(AtomicU64::new(0)), task), seen)
}

fn cfg(primary: SocketAddr, shadow: SocketAddr, percent: f64, max_body: u64) -> String {
    let (k, mut s) = service("reviews", "198.19.0.10", 80, "http1", &[primary]);
    s["mirrors"] = json!([{"source": "test/tm", "service": "test/shadow", "percent": percent, "maxBodyBytes": max_body}]);
    config(vec![
        (k, s),
        service("shadow", "198.19.0.20", 80, "http1", &[shadow]),
    ])
}

fn value(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

/// Polls the metrics until `series` reaches `want` (or 10 s pass).
async fn wait_for(admin: SocketAddr, series: &str, want: u64) -> String {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let text = metrics_text(admin).await;
        if value(&text, series) >= want || Instant::now() > end {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn post(
    c: &hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    addr: SocketAddr,
    body: Bytes,
) -> (u16, String) {
    let req = Request::post(format!("http://{addr}/submit"))
        .header("host", "reviews:9080")
        .body(Full::new(body))
        .unwrap();
    let resp = c.request(req).await.unwrap();
    let len = resp
        .headers()
        .get("x-len")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (resp.status().as_u16(), len)
}

#[tokio::test]
async fn slow_failing_mirror_never_delays_the_primary() {
    let (primary, primary_seen) = recorder(Duration::ZERO, 200).await;
    let (shadow, seen) = recorder(Duration::from_secs(2), 500).await;
    let p = proxy(&[DST], &[], &cfg(primary.addr, shadow.addr, 100.0, 1024)).await;
    let c = h1_client();
    let t = Instant::now();
    for i in 0..20 {
        let body = Bytes::from(format!("payload-{i}"));
        let s = Instant::now();
        assert_eq!(
            post(&c, p.outbound_addrs[0], body.clone()).await,
            (200, body.len().to_string())
        );
        assert!(
            s.elapsed() < Duration::from_millis(500),
            "primary took {:?}",
            s.elapsed()
        );
    }
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "20 primaries took {:?}",
        t.elapsed()
    );
    let admin = p.admin_addr.unwrap();
    let failed = format!("weft_mirror_requests_total{{{SHADOW},result=\"failed\"}}");
    let text = wait_for(admin, &failed, 20).await;
    assert_eq!(value(&text, &failed), 20, "{text}");
    assert_eq!(
        value(
            &text,
            &format!("weft_mirror_requests_total{{{SHADOW},result=\"sent\"}}")
        ),
        0
    );
    let mut got: Vec<(String, Bytes)> = seen.lock().unwrap().clone();
    got.sort();
    let mut want: Vec<(String, Bytes)> = (0..20)
        .map(|i| {
            (
                "reviews-shadow:9080".to_string(),
                Bytes::from(format!("payload-{i}")),
            )
        })
        .collect();
    want.sort();
    assert_eq!(got, want);
    assert!(
        primary_seen
            .lock()
            .unwrap()
            .iter()
            .all(|(h, _)| h == "reviews:9080")
    );
    // The copies are counted in the mirror service's own request metrics.
    let own = "request_total{direction=\"outbound\",authority=\"shadow.test.svc.cluster.local:80\",dst_namespace=\"test\",dst_service=\"shadow\"}";
    assert_eq!(value(&text, own), 20, "{text}");
}

#[tokio::test]
async fn bodies_over_the_bound_reach_only_the_primary() {
    let (primary, _) = recorder(Duration::ZERO, 200).await;
    let (shadow, seen) = recorder(Duration::ZERO, 200).await;
    let p = proxy(&[DST], &[], &cfg(primary.addr, shadow.addr, 100.0, 1024)).await;
    let c = h1_client();
    let addr = p.outbound_addrs[0];
    // Known length over the bound: not mirrored at all.
    assert_eq!(
        post(&c, addr, Bytes::from(vec![b'x'; 4096])).await,
        (200, "4096".into())
    );
    // Unknown length (chunked) that grows past the bound: forwarded, copy dropped.
    let io = TokioIo::new(TcpStream::connect(addr).await.unwrap());
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(conn);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
    let req = Request::post("/stream")
        .header("host", "reviews")
        .body(ChannelBody { rx })
        .unwrap();
    let feed = tokio::spawn(async move {
        for _ in 0..3 {
            tx.send(Ok(Frame::data(Bytes::from(vec![b'y'; 1000]))))
                .await
                .unwrap();
        }
    });
    let resp = sender.send_request(req).await.unwrap();
    feed.await.unwrap();
    assert_eq!(resp.headers()["x-len"], "3000");
    // A small body is mirrored.
    assert_eq!(
        post(&c, addr, Bytes::from_static(b"small")).await,
        (200, "5".into())
    );
    let sent = format!("weft_mirror_requests_total{{{SHADOW},result=\"sent\"}}");
    let text = wait_for(p.admin_addr.unwrap(), &sent, 1).await;
    assert_eq!(value(&text, &sent), 1, "{text}");
    let dropped = format!("weft_mirror_requests_total{{{SHADOW},result=\"dropped\"}}");
    assert_eq!(value(&text, &dropped), 2, "{text}");
    let got = seen.lock().unwrap().clone();
    assert_eq!(
        got,
        vec![("reviews-shadow:9080".to_string(), Bytes::from_static(b"small"))]
    );
}

#[tokio::test]
async fn half_of_the_requests_are_mirrored_at_fifty_percent() {
    let (primary, _) = recorder(Duration::ZERO, 200).await;
    let (shadow, seen) = recorder(Duration::ZERO, 200).await;
    let p = proxy(&[DST], &[], &cfg(primary.addr, shadow.addr, 50.0, 1024)).await;
    let c = h1_client();
    for _ in 0..400 {
        assert_eq!(get(&c, p.outbound_addrs[0], "/", &[]).await.0, 200);
    }
    let admin = p.admin_addr.unwrap();
    let sent = format!("weft_mirror_requests_total{{{SHADOW},result=\"sent\"}}");
    // Settle: the count stops moving once every started mirror has finished.
    let mut last = u64::MAX;
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = value(&metrics_text(admin).await, &sent);
        if now == last {
            break;
        }
        last = now;
    }
    assert!((150..=250).contains(&last), "{last} of 400 mirrored");
    assert_eq!(seen.lock().unwrap().len() as u64, last);
}

#[tokio::test]
async fn mirrors_in_flight_do_not_hold_up_shutdown() {
    let (primary, _) = recorder(Duration::ZERO, 200).await;
    let (shadow, seen) = recorder(Duration::from_secs(30), 200).await;
    let p = proxy(&[DST], &[], &cfg(primary.addr, shadow.addr, 100.0, 1024)).await;
    let c = h1_client();
    assert_eq!(
        post(&c, p.outbound_addrs[0], Bytes::from_static(b"x")).await.0,
        200
    );
    let end = Instant::now() + Duration::from_secs(5);
    while seen.lock().unwrap().is_empty() && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen.lock().unwrap().len(), 1, "the mirror is in flight");
    drop(c);
    let t = Instant::now();
    let left = p.shutdown(Duration::from_secs(10)).await;
    assert_eq!(left, 0);
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "shutdown took {:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn http2_copies_get_the_shadow_authority() {
    let (primary, primary_seen) = recorder(Duration::ZERO, 200).await;
    let (shadow, seen) = recorder(Duration::ZERO, 200).await;
    let (k, mut s) = service("reviews", "198.19.0.10", 80, "http2", &[primary.addr]);
    s["mirrors"] =
        json!([{"source": "test/tm", "service": "test/shadow", "percent": 100, "maxBodyBytes": 1024}]);
    let p = proxy(
        &[DST],
        &[],
        &config(vec![
            (k, s),
            service("shadow", "198.19.0.20", 80, "http2", &[shadow.addr]),
        ]),
    )
    .await;
    let io = TokioIo::new(TcpStream::connect(p.outbound_addrs[0]).await.unwrap());
    let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::post("http://reviews:9080/pkg.Svc/Call")
        .header("content-type", "application/grpc")
        .body(Full::new(Bytes::from_static(b"\0\0\0\0\x01z")))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let sent = format!("weft_mirror_requests_total{{{SHADOW},result=\"sent\"}}");
    let text = wait_for(p.admin_addr.unwrap(), &sent, 1).await;
    assert_eq!(value(&text, &sent), 1, "{text}");
    assert_eq!(primary_seen.lock().unwrap()[0].0, "reviews:9080");
    let got = seen.lock().unwrap().clone();
    assert_eq!(
        got,
        vec![(
            "reviews-shadow:9080".to_string(),
            Bytes::from_static(b"\0\0\0\0\x01z")
        )]
    );
}

#[tokio::test]
async fn a_mirror_without_endpoints_is_dropped() {
    let (primary, _) = recorder(Duration::ZERO, 200).await;
    let (k, mut s) = service("reviews", "198.19.0.10", 80, "http1", &[primary.addr]);
    s["mirrors"] =
        json!([{"source": "test/tm", "service": "test/shadow", "percent": 100, "maxBodyBytes": 1024}]);
    let p = proxy(
        &[DST],
        &[],
        &config(vec![(k, s), service("shadow", "198.19.0.20", 80, "http1", &[])]),
    )
    .await;
    let c = h1_client();
    for _ in 0..3 {
        assert_eq!(get(&c, p.outbound_addrs[0], "/", &[]).await.0, 200);
    }
    let text = metrics_text(p.admin_addr.unwrap()).await;
    let dropped = format!("weft_mirror_requests_total{{{SHADOW},result=\"dropped\"}}");
    assert_eq!(value(&text, &dropped), 3, "{text}");
}
