//! Component tests on loopback: HTTP/1.1, HTTP/2 and gRPC-style streaming with
//! trailers, upgrades, and the proxy's own error answers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const DST: &str = "198.19.0.10:80";

#[tokio::test]
async fn http1_keep_alive_hop_by_hop_and_metrics() {
    let backend = http_backend("b1").await;
    let p = proxy(
        &[DST],
        &[],
        &config(vec![service("web", "198.19.0.10", 80, "detect", &[backend.addr])]),
    )
    .await;
    let c = h1_client();
    for _ in 0..5 {
        let (status, h, body) = get(
            &c,
            p.outbound_addrs[0],
            "/",
            &[("connection", "x-hop"), ("x-hop", "1")],
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(body, "b1");
        assert_eq!(h["x-seen-hop"], "no", "hop-by-hop header leaked");
        assert_eq!(
            h["x-seen-host"],
            p.outbound_addrs[0].to_string().as_str(),
            "host must be preserved"
        );
        assert!(!h.contains_key("keep-alive"), "response hop-by-hop header leaked");
    }
    // Keep-alive upstream: the 5 requests reused pooled connections.
    let snap = p.store.load().unwrap();
    let route = snap.table.outbound(&DST.parse().unwrap()).unwrap();
    let ep = &route.root.balancer.endpoints()[0];
    assert!(ep.pool.idle_h1() >= 1);
    let (status, _, _) = get(&c, p.outbound_addrs[0], "/fail", &[]).await;
    assert_eq!(status, 500);
    let m = metrics_text(p.admin_addr.unwrap()).await;
    let labels = "direction=\"outbound\",authority=\"web.test.svc.cluster.local:80\",dst_namespace=\"test\",dst_service=\"web\"";
    assert!(m.contains(&format!("request_total{{{labels}}} 6")), "{m}");
    assert!(
        m.contains(&format!(
            "response_total{{{labels},classification=\"success\",status_code=\"200\"}} 5"
        )),
        "{m}"
    );
    assert!(
        m.contains(&format!(
            "response_total{{{labels},classification=\"failure\",status_code=\"500\"}} 1"
        )),
        "{m}"
    );
    assert!(
        m.contains(&format!("response_latency_ms_count{{{labels}}} 6")),
        "{m}"
    );
    assert!(m.contains("config_reload_total{result=\"success\"} 1"));
}

#[tokio::test]
async fn http2_grpc_streaming_with_trailers() {
    let backend = http_backend("g1").await;
    // Hint grpc on the port: no detection needed, HTTP/2 both sides.
    let p = proxy(
        &[DST],
        &[],
        &config(vec![service("grpc", "198.19.0.10", 80, "grpc", &[backend.addr])]),
    )
    .await;
    let io = TokioIo::new(TcpStream::connect(p.outbound_addrs[0]).await.unwrap());
    let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .unwrap();
    tokio::spawn(conn);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
    let req = Request::post("http://grpc.test:80/stream")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(ChannelBody { rx })
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    // Bidirectional streaming: each message comes back before the next is sent.
    for msg in ["one", "two", "three"] {
        tx.send(Ok(Frame::data(Bytes::from(msg)))).await.unwrap();
        let frame = tokio::time::timeout(Duration::from_secs(2), body.frame())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(frame.into_data().unwrap(), msg);
    }
    drop(tx);
    let trailers = loop {
        let f = body.frame().await.unwrap().unwrap();
        if let Ok(t) = f.into_trailers() {
            break t;
        }
    };
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["x-backend"], "g1");
    // Prior-knowledge HTTP/2 is also detected when the port has no hint.
    let p2 = proxy(
        &[DST],
        &[],
        &config(vec![service("h2", "198.19.0.10", 80, "detect", &[backend.addr])]),
    )
    .await;
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let resp = client
        .request(
            Request::get(format!("http://{}/", p2.outbound_addrs[0]))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-backend"], "g1");
    assert_eq!(
        resp.headers()["x-seen-authority"],
        p2.outbound_addrs[0].to_string().as_str()
    );
}

#[tokio::test]
async fn upgrade_is_tunnelled() {
    let backend = http_backend("ws").await;
    let p = proxy(
        &[DST],
        &[],
        &config(vec![service("ws", "198.19.0.10", 80, "http1", &[backend.addr])]),
    )
    .await;
    let mut s = TcpStream::connect(p.outbound_addrs[0]).await.unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nhost: ws\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = s.read(&mut buf).await.unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: echo"), "{head}");
    s.write_all(b"ping-through-tunnel").await.unwrap();
    let mut got = vec![0u8; 19];
    tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&got, b"ping-through-tunnel");
}

async fn raw(addr: std::net::SocketAddr, req: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(req).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn bad_input_and_failures_get_clear_answers() {
    let backend = http_backend("b").await;
    // A port nobody listens on: bind and drop to get a free one.
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let cfg = config(vec![
        service("web", "198.19.0.10", 80, "http1", &[backend.addr]),
        service("dead", "198.19.0.11", 80, "http1", &[dead]),
        service("empty", "198.19.0.12", 80, "http1", &[]),
    ]);
    let p = proxy(&[DST, "198.19.0.11:80", "198.19.0.12:80"], &[], &cfg).await;
    let web = p.outbound_addrs[0];
    // Malformed request line → 400 and close.
    let r = raw(web, b"GET / HTTP/1.1\r\nbad header line\r\n\r\n").await;
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    // Oversized headers → 431.
    let big = format!(
        "GET / HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(80 * 1024)
    );
    let r = raw(web, big.as_bytes()).await;
    assert!(r.starts_with("HTTP/1.1 431"), "{r}");
    let c = h1_client();
    // Connect failure → 503 with reason.
    let (status, h, _) = get(&c, p.outbound_addrs[1], "/", &[]).await;
    assert_eq!(
        (status, h["x-weft-error"].to_str().unwrap()),
        (503, "connect-failed")
    );
    // No endpoints → 503 with reason.
    let (status, h, _) = get(&c, p.outbound_addrs[2], "/", &[]).await;
    assert_eq!(
        (status, h["x-weft-error"].to_str().unwrap()),
        (503, "no-healthy-endpoints")
    );
    // A hung upstream is cut by the response timeout (2 s in tests) → 504.
    let t = std::time::Instant::now();
    let (status, h, _) = get(&c, web, "/hang", &[]).await;
    assert_eq!(
        (status, h["x-weft-error"].to_str().unwrap()),
        (504, "response-timeout")
    );
    assert!(t.elapsed() < Duration::from_secs(4));
    let m = metrics_text(p.admin_addr.unwrap()).await;
    assert!(
        m.contains("dst_service=\"dead\",classification=\"failure\",status_code=\"503\"} 1"),
        "{m}"
    );
}
