//! Component tests on loopback: opaque TCP through a mesh route and as
//! passthrough, server-speaks-first detection fallback, the inbound side, and
//! graceful drain.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[tokio::test]
async fn tcp_through_route_and_passthrough_with_half_close() {
    let echo = echo_backend().await;
    let unknown = echo_backend().await;
    let cfg = config(vec![service("db", "198.19.0.20", 5432, "detect", &[echo.addr])]);
    let p = proxy(&["198.19.0.20:5432", &unknown.addr.to_string()], &[], &cfg).await;
    for (i, addr) in p.outbound_addrs.iter().enumerate() {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"\x00\x01binary payload").await.unwrap();
        s.shutdown().await.unwrap();
        let mut back = Vec::new();
        tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut back))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(back, b"\x00\x01binary payload", "listener {i}");
    }
    assert_eq!((echo.hits(), unknown.hits()), (1, 1));
    let m = metrics_text(p.admin_addr.unwrap()).await;
    assert!(
        m.contains("tcp_close_total{direction=\"outbound\",dst_namespace=\"test\",dst_service=\"db\"} 1"),
        "{m}"
    );
    assert!(
        m.contains(
            "tcp_read_bytes_total{direction=\"outbound\",dst_namespace=\"test\",dst_service=\"db\"} 16"
        ),
        "{m}"
    );
    assert!(
        m.contains("tcp_open_total{direction=\"outbound\",dst_service=\"\"} 1"),
        "{m}"
    );
}

#[tokio::test]
async fn server_speaks_first_falls_back_to_opaque() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        s.write_all(b"220 greetings\r\n").await.unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await.unwrap();
        buf
    });
    let cfg = config(vec![service("smtp", "198.19.0.25", 25, "detect", &[addr])]);
    let p = proxy(&["198.19.0.25:25"], &[], &cfg).await;
    let mut s = TcpStream::connect(p.outbound_addrs[0]).await.unwrap();
    let mut greet = [0u8; 15];
    tokio::time::timeout(Duration::from_secs(3), s.read_exact(&mut greet))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&greet, b"220 greetings\r\n");
    s.write_all(b"QUIT").await.unwrap();
    assert_eq!(&server.await.unwrap(), b"QUIT");
}

#[tokio::test]
async fn inbound_forwards_to_local_app_with_inbound_metrics() {
    let app = http_backend("app").await;
    let mut cfg: serde_json::Value = serde_json::from_str(&config(vec![])).unwrap();
    cfg["inbound"]["ports"] = serde_json::json!([{"port": app.addr.port(), "protocol": "http1"}]);
    let p = proxy(&[], &[app.addr.port()], &cfg.to_string()).await;
    let c = h1_client();
    for _ in 0..3 {
        let (status, _, body) = get(&c, p.inbound_addrs[0], "/", &[]).await;
        assert_eq!((status, body.as_str()), (200, "app"));
    }
    let m = metrics_text(p.admin_addr.unwrap()).await;
    let labels = format!("direction=\"inbound\",target_port=\"{}\"", app.addr.port());
    assert!(
        m.contains(&format!(
            "response_total{{{labels},classification=\"success\",status_code=\"200\"}} 3"
        )),
        "{m}"
    );
    assert!(
        m.contains(&format!("response_latency_ms_bucket{{{labels},le=\"+Inf\"}} 3")),
        "{m}"
    );
}

#[tokio::test]
async fn drain_finishes_in_flight_and_stops_accepting() {
    let backend = http_backend("b").await;
    let p = proxy(
        &["198.19.0.10:80"],
        &[],
        &config(vec![service("web", "198.19.0.10", 80, "http1", &[backend.addr])]),
    )
    .await;
    let addr = p.outbound_addrs[0];
    let admin = p.admin_addr.unwrap();
    let c = h1_client();
    assert_eq!(get(&c, admin, "/ready", &[]).await.0, 200);
    let slow = tokio::spawn({
        let c = c.clone();
        async move { get(&c, addr, "/slow", &[]).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let t = std::time::Instant::now();
    let left = p.shutdown(Duration::from_secs(3)).await;
    let (status, _, body) = slow.await.unwrap();
    assert_eq!(
        (status, body.as_str()),
        (200, "b"),
        "in-flight request must complete"
    );
    assert!(t.elapsed() < Duration::from_secs(2), "drain should end once idle");
    assert_eq!(left, 0);
    assert!(TcpStream::connect(addr).await.is_err(), "listener must be closed");
}
