//! Upgrades and CONNECT (issue 14, item 4): only WebSocket upgrades become raw
//! tunnels by default; other upgrade protocols get 403 and CONNECT 405 (with
//! `x-weft-error`), in both directions, unless the proxy's tunnel policy allows
//! them; an `h2c` upgrade is served as plain HTTP/1.1; open tunnels are tracked by
//! the drain, so shutdown waits for them and counts them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weft_proxy::proxy::inbound::InboundTarget;
use weft_proxy::proxy::outbound::OrigDst;
use weft_proxy::proxy::tunnel::TunnelPolicy;
use weft_proxy::run::{Options, Running, start};

const DST: &str = "198.19.0.10:80";

/// A proxy with an outbound listener for `DST`, an inbound one to `app_port`, and `tunnels`.
async fn proxy_with(backend: std::net::SocketAddr, app_port: u16, tunnels: TunnelPolicy) -> Running {
    let mut settings = test_settings();
    settings.tunnels = tunnels;
    let running = start(Options {
        settings,
        outbound: vec![(
            "127.0.0.1:0".parse().unwrap(),
            OrigDst::Fixed(DST.parse().unwrap()),
        )],
        inbound: vec![("127.0.0.1:0".parse().unwrap(), InboundTarget::Fixed(app_port))],
        admin: Some("127.0.0.1:0".parse().unwrap()),
        ..Options::default()
    })
    .await
    .unwrap();
    let mut cfg: serde_json::Value = serde_json::from_str(&config(vec![service(
        "ws",
        "198.19.0.10",
        80,
        "http1",
        &[backend],
    )]))
    .unwrap();
    cfg["inbound"]["ports"] = serde_json::json!([{"port": app_port, "protocol": "http1"}]);
    running.store.apply_json(&cfg.to_string(), "test").unwrap();
    running
}

/// Sends a raw request head and returns the stream and the response head.
async fn send_head(addr: std::net::SocketAddr, head: &str) -> (TcpStream, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 2048];
    let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
        .await
        .expect("a response in time")
        .unwrap();
    (s, String::from_utf8_lossy(&buf[..n]).to_lowercase())
}

fn upgrade(proto: &str) -> String {
    format!("GET /ws HTTP/1.1\r\nhost: ws\r\nconnection: upgrade\r\nupgrade: {proto}\r\n\r\n")
}

const CONNECT: &str = "CONNECT 198.19.0.10:80 HTTP/1.1\r\nhost: 198.19.0.10:80\r\n\r\n";

async fn echoes(s: &mut TcpStream) -> bool {
    if s.write_all(b"through-the-tunnel").await.is_err() {
        return false;
    }
    let mut got = [0u8; 18];
    matches!(
        tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut got)).await,
        Ok(Ok(_)) if &got == b"through-the-tunnel"
    )
}

#[tokio::test]
async fn only_websocket_upgrades_become_tunnels_by_default() {
    let backend = http_backend("ws").await;
    let p = proxy_with(backend.addr, backend.addr.port(), TunnelPolicy::default()).await;
    for (side, addr) in [("outbound", p.outbound_addrs[0]), ("inbound", p.inbound_addrs[0])] {
        let (mut s, head) = send_head(addr, &upgrade("websocket")).await;
        assert!(head.starts_with("http/1.1 101"), "{side} websocket: {head}");
        assert!(echoes(&mut s).await, "{side}: websocket tunnel echoes");

        let hits = backend.hits();
        for proto in ["echo", "tls/1.0", "h2c, echo"] {
            let (_, head) = send_head(addr, &upgrade(proto)).await;
            assert!(head.starts_with("http/1.1 403"), "{side} {proto}: {head}");
            assert!(head.contains("x-weft-error: upgrade-not-allowed"), "{head}");
        }
        let (_, head) = send_head(addr, CONNECT).await;
        assert!(head.starts_with("http/1.1 405"), "{side} CONNECT: {head}");
        assert!(head.contains("x-weft-error: connect-not-allowed"), "{head}");
        assert_eq!(
            backend.hits(),
            hits,
            "{side}: refused requests never reach the upstream"
        );

        // h2c is ignored: a plain HTTP/1.1 answer from the upstream, no 101 (the
        // backend answers 101 on /ws whatever it is asked, so ask for /).
        let h2c = upgrade("h2c").replace("GET /ws", "GET /");
        let (_, head) = send_head(addr, &h2c).await;
        assert!(head.starts_with("http/1.1 200"), "{side} h2c: {head}");
        assert!(head.contains("x-backend: ws"), "{head}");
    }
    let m = metrics_text(p.admin_addr.unwrap()).await;
    assert!(
        m.contains("proxy_tunnel_refused_total{reason=\"upgrade-not-allowed\"} 6"),
        "{m}"
    );
    assert!(
        m.contains("proxy_tunnel_refused_total{reason=\"connect-not-allowed\"} 2"),
        "{m}"
    );
}

#[tokio::test]
async fn other_upgrades_and_connect_by_config() {
    let backend = http_backend("ws").await;
    let policy = TunnelPolicy {
        upgrades: vec!["echo".into()],
        connect: true,
    };
    let p = proxy_with(backend.addr, backend.addr.port(), policy).await;
    let (mut s, head) = send_head(p.outbound_addrs[0], &upgrade("echo")).await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(echoes(&mut s).await);
    // WebSocket is no longer listed, so it is refused now.
    let (_, head) = send_head(p.outbound_addrs[0], &upgrade("websocket")).await;
    assert!(head.starts_with("http/1.1 403"), "{head}");
    let hits = backend.hits();
    let (_, head) = send_head(p.outbound_addrs[0], CONNECT).await;
    assert!(head.starts_with("http/1.1 200"), "CONNECT allowed: {head}");
    assert_eq!(backend.hits(), hits + 1);
}

#[tokio::test]
async fn shutdown_waits_for_open_tunnels_and_counts_them() {
    let backend = http_backend("ws").await;
    // A tunnel still open at the end of the grace period is counted.
    let p = proxy_with(backend.addr, backend.addr.port(), TunnelPolicy::default()).await;
    let (mut s, head) = send_head(p.outbound_addrs[0], &upgrade("websocket")).await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(echoes(&mut s).await);
    assert_eq!(
        p.shutdown(Duration::from_millis(300)).await,
        1,
        "the open tunnel is counted"
    );
    drop(s);

    // A tunnel that ends within the grace period is waited for.
    let p = proxy_with(backend.addr, backend.addr.port(), TunnelPolicy::default()).await;
    let (mut s, _) = send_head(p.outbound_addrs[0], &upgrade("websocket")).await;
    assert!(echoes(&mut s).await);
    let closer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(400)).await;
        drop(s);
    });
    let t0 = Instant::now();
    assert_eq!(p.shutdown(Duration::from_secs(5)).await, 0);
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(4),
        "shutdown waited for the tunnel to end: {took:?}"
    );
    closer.await.unwrap();
}
