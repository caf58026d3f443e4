//! Bounded resources on loopback: the per-listener connection limit, the HTTP
//! connection idle timeout, the stream idle timeout, the header-count cap, and
//! (against the real `weft-proxy` binary, so its memory can be measured alone)
//! 5,000 half-open TLS handshakes that stay under the sidecar's 64 Mi limit, time
//! out, are counted, and do not stop the proxy serving mTLS.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use support::mesh::{CLIENT_ID, SERVER_ID, client_config, grant, server_config};
use support::pki::{IdentityDir, TestCa};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weft_proxy::proxy::Settings;
use weft_proxy::proxy::outbound::OrigDst;
use weft_proxy::run::{Options, Running, start};

const DST: &str = "198.19.0.10:80";

async fn proxy_with(settings: Settings, backend: SocketAddr, protocol: &str) -> Running {
    let p = start(Options {
        settings,
        outbound: vec![(
            "127.0.0.1:0".parse().unwrap(),
            OrigDst::Fixed(DST.parse().unwrap()),
        )],
        admin: Some("127.0.0.1:0".parse().unwrap()),
        ..Options::default()
    })
    .await
    .unwrap();
    p.store
        .apply_json(
            &config(vec![service("web", "198.19.0.10", 80, protocol, &[backend])]),
            "test",
        )
        .unwrap();
    p
}

type H2Sender = hyper::client::conn::http2::SendRequest<Full<Bytes>>;

/// An HTTP/2 prior-knowledge connection; the handle resolves when it closes.
async fn h2_connect(addr: SocketAddr) -> (H2Sender, tokio::task::JoinHandle<()>) {
    let io = TokioIo::new(TcpStream::connect(addr).await.unwrap());
    let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .unwrap();
    (send, tokio::spawn(async move { drop(conn.await) }))
}

async fn h2_get(send: &mut H2Sender, headers: usize) -> (u16, http::HeaderMap) {
    let mut b = Request::get(format!("http://{DST}/"));
    for i in 0..headers {
        b = b.header(format!("x-h{i}"), "v");
    }
    let resp = send
        .send_request(b.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let (parts, body) = resp.into_parts();
    let _ = body.collect().await;
    (status, parts.headers)
}

#[tokio::test]
async fn idle_h2_connection_closes_after_the_idle_timeout() {
    let backend = http_backend("b").await;
    let settings = Settings {
        http_idle_timeout: Duration::from_millis(400),
        ..test_settings()
    };
    let p = proxy_with(settings, backend.addr, "http2").await;
    let (mut send, closed) = h2_connect(p.outbound_addrs[0]).await;
    // Requests every 200 ms keep it open well past one idle timeout...
    let t0 = Instant::now();
    for _ in 0..6 {
        assert_eq!(h2_get(&mut send, 0).await.0, 200);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        !closed.is_finished(),
        "closed while in use after {:?}",
        t0.elapsed()
    );
    // ...then, idle, the proxy closes it (GOAWAY) after ~400 ms.
    let idle = Instant::now();
    tokio::time::timeout(Duration::from_secs(3), closed)
        .await
        .unwrap()
        .unwrap();
    let took = idle.elapsed();
    assert!(took >= Duration::from_millis(150), "closed too early: {took:?}");
    assert!(send.is_closed());
}

#[tokio::test]
async fn a_long_request_keeps_the_connection_open_past_the_idle_timeout() {
    let backend = http_backend("b").await;
    let settings = Settings {
        http_idle_timeout: Duration::from_millis(200),
        ..test_settings()
    };
    let p = proxy_with(settings, backend.addr, "http1").await;
    // `/slow` takes 300 ms: longer than the idle timeout, but a request is in flight.
    let c = h1_client();
    let (status, _, body) = get(&c, p.outbound_addrs[0], "/slow", &[]).await;
    assert_eq!((status, body.as_str()), (200, "b"));
}

#[tokio::test]
async fn stalled_response_stream_is_aborted_after_the_stream_idle_timeout() {
    let backend = http_backend("b").await;
    let settings = Settings {
        stream_idle_timeout: Duration::from_millis(300),
        ..test_settings()
    };
    let p = proxy_with(settings, backend.addr, "http2").await;
    // `/stream` echoes request frames: send one, then nothing.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
    let req = Request::post(format!("http://{DST}/stream"))
        .body(ChannelBody { rx })
        .unwrap();
    let io = TokioIo::new(TcpStream::connect(p.outbound_addrs[0]).await.unwrap());
    let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .unwrap();
    tokio::spawn(conn);
    tx.send(Ok(Frame::data(Bytes::from_static(b"one"))))
        .await
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert_eq!(first.into_data().unwrap(), "one");
    let t0 = Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .expect("the stalled stream was not aborted");
    assert!(
        matches!(end, Some(Err(_))),
        "expected a reset stream, got {end:?}"
    );
    assert!(t0.elapsed() >= Duration::from_millis(250), "{:?}", t0.elapsed());
    drop(tx);
}

#[tokio::test]
async fn too_many_request_headers_get_431_on_both_versions() {
    let backend = http_backend("b").await;
    let p = proxy_with(test_settings(), backend.addr, "detect").await;
    let (mut send, _closed) = h2_connect(p.outbound_addrs[0]).await;
    assert_eq!(h2_get(&mut send, 90).await.0, 200);
    let (status, h) = h2_get(&mut send, 101).await;
    assert_eq!(status, 431);
    assert_eq!(h["x-weft-error"], "too-many-headers");
    // HTTP/1: hyper enforces the same cap while parsing the head.
    let c = h1_client();
    let many: Vec<(String, &str)> = (0..101).map(|i| (format!("x-h{i}"), "v")).collect();
    let refs: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(get(&c, p.outbound_addrs[0], "/", &refs[..90]).await.0, 200);
    assert_eq!(get(&c, p.outbound_addrs[0], "/", &refs).await.0, 431);
}

#[tokio::test]
async fn connections_over_the_listener_limit_are_closed_and_counted() {
    let echo = echo_backend().await;
    let settings = Settings {
        max_connections: 4,
        ..test_settings()
    };
    let p = proxy_with(settings, echo.addr, "tcp").await;
    let mut open = Vec::new();
    for i in 0..4u8 {
        let mut s = TcpStream::connect(p.outbound_addrs[0]).await.unwrap();
        s.write_all(&[i]).await.unwrap();
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.unwrap();
        open.push(s);
    }
    let mut fifth = TcpStream::connect(p.outbound_addrs[0]).await.unwrap();
    let mut b = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(2), fifth.read(&mut b))
        .await
        .expect("the fifth connection was neither closed nor served");
    assert!(matches!(n, Ok(0) | Err(_)), "over the limit but got data: {n:?}");
    let m = metrics_text(p.admin_addr.unwrap()).await;
    assert!(
        m.contains("listener_connections_rejected_total{side=\"outbound\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("listener_connections_open{side=\"outbound\"} 4"),
        "{m}"
    );
    // A freed slot is usable again.
    drop(open.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut again = TcpStream::connect(p.outbound_addrs[0]).await.unwrap();
    again.write_all(b"z").await.unwrap();
    tokio::time::timeout(Duration::from_secs(2), again.read_exact(&mut b))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&b, b"z");
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Kills the child proxy when the test ends, passing or failing.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const HALF_OPEN: usize = 5_000;
/// The injected sidecar's memory limit (src/webhook/containers.rs).
const LIMIT_KIB: u64 = 64 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_tls_handshakes_stay_bounded_time_out_and_the_proxy_still_serves() {
    let app = http_backend("app").await;
    let ca = TestCa::new("cluster.local");
    let server_dir = IdentityDir::new(&ca.issue(SERVER_ID), &ca.cert_pem);
    let client_dir = IdentityDir::new(&ca.issue(CLIENT_ID), &ca.cert_pem);
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = cfg_dir.path().join("config.json");
    let grants = grant(serde_json::json!([{"kind": "tcp"}]));
    std::fs::write(&cfg, server_config("smi", "strict", app.addr, "http1", grants)).unwrap();
    let (inbound, admin) = (free_port(), free_port());
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_weft-proxy"))
        .args(["run", "--bind", "127.0.0.1", "--admin-port", &admin.to_string()])
        .arg("--inbound-map")
        .arg(format!("127.0.0.1:{inbound}={}", app.addr.port()))
        .arg("--config")
        .arg(&cfg)
        .arg("--identity-dir")
        .arg(server_dir.path())
        .args(["--tls-handshake-timeout-ms", "4000"])
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap();
    let child = Child(child);
    let pid = child.0.id();
    let admin_addr: SocketAddr = format!("127.0.0.1:{admin}").parse().unwrap();
    let inbound_addr: SocketAddr = format!("127.0.0.1:{inbound}").parse().unwrap();
    wait_ready(admin_addr).await;
    let before = rss_kib(pid);

    // A mesh client (in this process) to prove the server still serves.
    let client = start(Options {
        settings: test_settings(),
        outbound: vec![(
            "127.0.0.1:0".parse().unwrap(),
            OrigDst::Fixed(support::mesh::SVC.parse().unwrap()),
        )],
        identity: Some((client_dir.path(), Duration::from_millis(50))),
        ..Options::default()
    })
    .await
    .unwrap();
    client
        .store
        .apply_json(&client_config(inbound_addr, "http1", SERVER_ID), "test")
        .unwrap();

    // Each connection sends the start of a ClientHello record (claiming 512 bytes)
    // and then nothing.
    let t0 = Instant::now();
    let mut conns = Vec::with_capacity(HALF_OPEN);
    for _ in 0..HALF_OPEN {
        let mut s = TcpStream::connect(inbound_addr).await.unwrap();
        s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03])
            .await
            .unwrap();
        conns.push(s);
    }
    let opened = t0.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let peak = rss_kib(pid);
    let h = h1_client();
    let (status, _, body) = get(&h, client.outbound_addrs[0], "/", &[]).await;
    assert_eq!(
        (status, body.as_str()),
        (200, "app"),
        "mTLS request while {HALF_OPEN} handshakes hang"
    );
    eprintln!(
        "half-open: {HALF_OPEN} opened in {opened:?}; proxy RSS {before} KiB idle, {peak} KiB with them open"
    );
    assert!(
        peak < LIMIT_KIB,
        "RSS {peak} KiB with {HALF_OPEN} half-open handshakes"
    );
    // They all time out (4 s after each opened) and are counted.
    let deadline = tokio::time::Instant::now() + opened + Duration::from_secs(8);
    for s in conns.iter_mut() {
        let mut b = [0u8; 16];
        match tokio::time::timeout_at(deadline, s.read(&mut b)).await {
            Ok(Ok(0) | Err(_)) => {}
            other => panic!("half-open handshake not closed: {other:?}"),
        }
    }
    let text = metrics_text(admin_addr).await;
    let line = text
        .lines()
        .find(|l| l.starts_with("inbound_tls_rejected_total{reason=\"handshake_timeout\"}"))
        .unwrap_or_else(|| panic!("{text}"));
    let n: usize = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= HALF_OPEN, "{line}");
    drop(child);
}

async fn wait_ready(admin: SocketAddr) {
    let c = h1_client();
    for _ in 0..100 {
        if let Ok(Ok(resp)) = tokio::time::timeout(
            Duration::from_millis(500),
            c.request(
                Request::get(format!("http://{admin}/ready"))
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            ),
        )
        .await
            && resp.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("weft-proxy did not become ready on {admin}");
}
