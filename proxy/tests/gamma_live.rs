//! Loopback component tests of Gateway API routes (GAMMA) through the real
//! proxy: `404 no-route`, redirects, URL rewrites and header filters as the
//! backend sees them, response header filters, an exact 70/30 weighted split,
//! `500 no-backend`, the route request timeout, mirrors, HTTP/2, pod-IP
//! destinations and opaque TCP bypassing the routes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const APEX: &str = "198.19.0.10:80";

/// A backend echoing every request header `h` as response header `x-req-h`
/// (repeated values joined with `,`) and the path in `x-seen-path`.
async fn header_echo(name: &'static str) -> Server {
    serve_http(move |req: Request<Incoming>| async move {
        let mut r = Response::builder().header("x-backend", name);
        for key in req.headers().keys() {
            let joined: Vec<&str> = req
                .headers()
                .get_all(key)
                .iter()
                .map(|v| v.to_str().unwrap())
                .collect();
            r = r.header(format!("x-req-{key}"), joined.join(","));
        }
        let path = req
            .uri()
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default();
        r.header("x-seen-path", path)
            .body(Full::new(Bytes::from(name)).boxed())
            .unwrap()
    })
    .await
}

/// The apex `test/reviews` (protocol detect, its own endpoints `root`) with
/// `routes`, and `reviews-v1` / `reviews-v2` at backend port 8080.
fn routes_config(root: &[SocketAddr], v1: &[SocketAddr], v2: &[SocketAddr], routes: Value) -> String {
    let (k, mut apex) = service("reviews", "198.19.0.10", 80, "detect", root);
    apex["routes"] = routes;
    // A split on the same service is ignored on ports with routes.
    apex["split"] =
        json!({"source": "test/split", "backends": [{"service": "test/reviews-v2", "weight": 1}]});
    config(vec![
        (k, apex),
        service("reviews-v1", "198.19.0.11", 8080, "http1", v1),
        service("reviews-v2", "198.19.0.12", 8080, "http1", v2),
    ])
}

fn backend(svc: &str, weight: u32) -> Value {
    json!({"service": svc, "port": 8080, "weight": weight})
}

fn prefix(p: &str) -> Value {
    json!({"path": {"kind": "prefix", "value": p}})
}

#[tokio::test]
async fn matches_filters_and_answers_on_the_wire() {
    let (root, v1, echo) = (
        http_backend("root").await,
        http_backend("v1").await,
        header_echo("echo").await,
    );
    let routes = json!([
        {"source": "httproute/test/r/redirect", "match": prefix("/old"),
         "filters": [{"kind": "redirect", "spec": {"hostname": "example.org", "status": 301,
                      "path": {"kind": "prefix", "value": "/new"}}}]},
        {"source": "httproute/test/r/port", "match": prefix("/port"),
         "filters": [{"kind": "redirect", "spec": {"port": 8080}}]},
        {"source": "httproute/test/r/strip", "match": prefix("/strip-prefix"),
         "filters": [{"kind": "rewrite", "spec": {"hostname": "rewritten.example", "path": {"kind": "prefix", "value": "/"}}}],
         "backends": [backend("test/reviews-v1", 1)]},
        {"source": "httproute/test/r/headers", "match": prefix("/headers"),
         "filters": [
            {"kind": "requestHeaders", "spec": {"set": [{"name": "x-set", "value": "set"}],
                                                "add": [{"name": "x-add", "value": "added"}],
                                                "remove": ["x-remove"]}},
            {"kind": "responseHeaders", "spec": {"set": [{"name": "x-resp", "value": "route"}]}}],
         "backends": [{"service": "test/reviews-v2", "port": 8080, "weight": 1,
                       "filters": [{"kind": "requestHeaders", "spec": {"add": [{"name": "x-backend-filter", "value": "b"}]}}]}]},
        {"source": "httproute/test/r/unresolved", "match": prefix("/unresolved"),
         "backends": [{"port": 8080, "weight": 1}]},
        {"source": "httproute/test/r/empty", "match": prefix("/empty")},
        {"source": "httproute/test/r/slow-try", "match": {"path": {"kind": "exact", "value": "/slow"}, "method": "PUT"},
         "backendTimeoutMs": 100, "backends": [backend("test/reviews-v1", 1)]},
        {"source": "httproute/test/r/slow", "match": {"path": {"kind": "exact", "value": "/slow"}},
         "timeoutMs": 100, "backends": [backend("test/reviews-v1", 1)]},
        {"source": "httproute/test/r/v1", "match": {"path": {"kind": "exact", "value": "/v1"}, "method": "GET"},
         "backends": [backend("test/reviews-v1", 1)]},
    ]);
    let cfg = routes_config(&[root.addr], &[v1.addr], &[echo.addr], routes);
    let p = proxy(&[APEX], &[], &cfg).await;
    let (c, addr) = (h1_client(), p.outbound_addrs[0]);

    // No entry matches: 404 no-route (not the split, not the root).
    let (status, h, _) = get(&c, addr, "/nothing", &[]).await;
    assert_eq!((status, h["x-weft-error"].to_str().unwrap()), (404, "no-route"));
    assert_eq!(get(&c, addr, "/v1", &[]).await.2, "v1");

    // Redirects: hostname, prefix path, status; the dialled port 80 is left out.
    let (status, h, _) = get(&c, addr, "/old/page?q=1", &[]).await;
    assert_eq!(status, 301);
    assert_eq!(h["location"], "http://example.org/new/page?q=1");
    let (status, h, _) = get(&c, addr, "/port/x", &[("host", "reviews.test:80")]).await;
    assert_eq!(
        (status, h["location"].to_str().unwrap()),
        (302, "http://reviews.test:8080/port/x")
    );

    // Rewrite: the backend sees the new path (query kept) and host.
    let (status, h, body) = get(&c, addr, "/strip-prefix/three?a=b", &[]).await;
    assert_eq!((status, body.as_str()), (200, "v1"));
    assert_eq!(h["x-seen-path"], "/three?a=b");
    assert_eq!(h["x-seen-host"], "rewritten.example");
    assert_eq!(get(&c, addr, "/strip-prefix", &[]).await.1["x-seen-path"], "/");

    // Header filters: route then backend on the request; route on the response.
    let (status, h, body) = get(
        &c,
        addr,
        "/headers",
        &[
            ("X-Set", "old"),
            ("x-add", "mine"),
            ("X-Remove", "gone"),
            ("x-keep", "k"),
        ],
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "echo"));
    assert_eq!(h["x-req-x-set"], "set");
    assert_eq!(h["x-req-x-add"], "mine,added");
    assert!(!h.contains_key("x-req-x-remove"), "{h:?}");
    assert_eq!(h["x-req-x-keep"], "k");
    assert_eq!(h["x-req-x-backend-filter"], "b");
    assert_eq!(h["x-resp"], "route");

    // Unresolved backend or none at all: 500 no-backend.
    for path in ["/unresolved", "/empty"] {
        let (status, h, _) = get(&c, addr, path, &[]).await;
        assert_eq!(
            (status, h["x-weft-error"].to_str().unwrap()),
            (500, "no-backend"),
            "{path}"
        );
    }

    // The route's request timeout: 504 timeout (the backend takes 300 ms).
    let (status, h, _) = get(&c, addr, "/slow", &[]).await;
    assert_eq!((status, h["x-weft-error"].to_str().unwrap()), (504, "timeout"));
    // The per-attempt (backendRequest) timeout.
    let req = Request::put(format!("http://{addr}/slow"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = c.request(req).await.unwrap();
    assert_eq!(resp.status(), 504);
    assert_eq!(resp.headers()["x-weft-error"], "response-timeout");

    assert_eq!(
        root.hits(),
        0,
        "the service's own endpoints never see routed requests"
    );
}

#[tokio::test]
async fn weighted_backends_split_70_30_exactly() {
    let (root, v1, v2) = (
        http_backend("root").await,
        http_backend("v1").await,
        http_backend("v2").await,
    );
    let backends = json!([backend("test/reviews-v1", 70), backend("test/reviews-v2", 30)]);
    // Two matches of one rule share its picker.
    let routes = json!([
        {"source": "httproute/test/r/0", "match": prefix("/a"), "backends": backends},
        {"source": "httproute/test/r/0", "match": prefix("/b"), "backends": backends},
    ]);
    let p = proxy(
        &[APEX],
        &[],
        &routes_config(&[root.addr], &[v1.addr], &[v2.addr], routes),
    )
    .await;
    let c = h1_client();
    let mut counts: HashMap<String, u32> = HashMap::new();
    for i in 0..100 {
        let path = if i % 2 == 0 { "/a" } else { "/b/x" };
        let (status, _, body) = get(&c, p.outbound_addrs[0], path, &[]).await;
        assert_eq!(status, 200);
        *counts.entry(body).or_default() += 1;
    }
    assert_eq!((counts["v1"], counts["v2"]), (70, 30), "{counts:?}");
    // Counted on the chosen backends' metrics, authority of the parent service.
    let text = metrics_text(p.admin_addr.unwrap()).await;
    let routed =
        "authority=\"reviews.test.svc.cluster.local:80\",dst_namespace=\"test\",dst_service=\"reviews-v1\"";
    let line = text
        .lines()
        .find(|l| l.starts_with("request_total") && l.contains(routed))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.ends_with(" 70"), "{line}");
}

#[tokio::test]
async fn mirror_filter_copies_requests() {
    let (root, v1, shadow) = (
        http_backend("root").await,
        http_backend("v1").await,
        http_backend("shadow").await,
    );
    let routes = json!([{"source": "httproute/test/r/0", "match": {},
        "filters": [{"kind": "mirror", "spec": {"service": "test/reviews-v2", "port": 8080, "percent": 100.0}}],
        "backends": [backend("test/reviews-v1", 1)]}]);
    let p = proxy(
        &[APEX],
        &[],
        &routes_config(&[root.addr], &[v1.addr], &[shadow.addr], routes),
    )
    .await;
    let c = h1_client();
    for _ in 0..5 {
        assert_eq!(get(&c, p.outbound_addrs[0], "/", &[]).await.2, "v1");
    }
    for _ in 0..100 {
        if shadow.hits() == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(shadow.hits(), 5);
}

#[tokio::test]
async fn http2_requests_are_routed() {
    let (root, v1) = (http_backend("root").await, http_backend("v1").await);
    let routes = json!([{"source": "grpcroute/test/g/0",
        "match": {"path": {"kind": "exact", "value": "/shop.Cart/Get"}},
        "filters": [{"kind": "responseHeaders", "spec": {"add": [{"name": "x-route", "value": "grpc"}]}}],
        "backends": [backend("test/reviews-v1", 1)]}]);
    let p = proxy(
        &[APEX],
        &[],
        &routes_config(&[root.addr], &[v1.addr], &[], routes),
    )
    .await;
    let c: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let call = |path: &str| {
        let req = Request::post(format!("http://{}{path}", p.outbound_addrs[0]))
            .body(Full::new(Bytes::new()))
            .unwrap();
        c.request(req)
    };
    let resp = call("/shop.Cart/Get").await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(
        (resp.status().as_u16(), &resp.headers()["x-route"]),
        (200, &"grpc".parse::<http::HeaderValue>().unwrap())
    );
    assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "v1");
    let resp = call("/shop.Cart/Put").await.unwrap();
    assert_eq!(resp.status(), 404);
}

#[tokio::test]
async fn pod_ip_and_opaque_tcp_bypass_routes() {
    let (root, v1) = (http_backend("root").await, http_backend("v1").await);
    let routes = json!([{"source": "httproute/test/r/0", "match": prefix("/routed"),
        "backends": [backend("test/reviews-v1", 1)]}]);
    let pod = root.addr.to_string();
    let cfg = routes_config(&[root.addr], &[v1.addr], &[], routes);
    let p = proxy(&[APEX, &pod], &[], &cfg).await;
    let c = h1_client();
    // Through the ClusterIP: routes apply.
    assert_eq!(get(&c, p.outbound_addrs[0], "/other", &[]).await.0, 404);
    // Straight to the pod IP: no routes, the pod answers.
    let (status, _, body) = get(&c, p.outbound_addrs[1], "/other", &[]).await;
    assert_eq!((status, body.as_str()), (200, "root"));
    assert_eq!(v1.hits(), 0);

    // Opaque TCP to a port with routes goes to the service's own endpoints.
    let echo = echo_backend().await;
    let routes =
        json!([{"source": "httproute/test/r/0", "match": {}, "backends": [backend("test/reviews-v1", 1)]}]);
    p.store
        .apply_json(&routes_config(&[echo.addr], &[v1.addr], &[], routes), "test")
        .unwrap();
    let mut s = tokio::net::TcpStream::connect(p.outbound_addrs[0]).await.unwrap();
    s.write_all(b"\x00\x01opaque bytes").await.unwrap();
    let mut buf = [0u8; 14];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"\x00\x01opaque bytes");
    assert_eq!(echo.hits(), 1);
}
