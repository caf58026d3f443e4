//! Gateway mode end to end on loopback: a proxy started with a config file and
//! a certificate directory binds its listener ports (no transparent
//! listeners), routes HTTP by host, path and header with request header
//! filters, terminates HTTPS by SNI (HTTP/1.1 and HTTP/2 by ALPN, translated
//! to the HTTP/1 backend), sets `X-Forwarded-For` / `-Proto`, answers `404`
//! for unknown hosts and `500` for unresolved backends, binds and closes ports
//! as the config changes, counts outbound metrics, gates `/ready` on bound
//! ports, and the `weft-proxy gateway` binary serves the same way.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use support::gateway::*;
use support::*;
use tokio::net::TcpStream;

/// A backend echoing request headers as `x-req-<name>` and the HTTP version as `x-seen-version`.
async fn echo(name: &'static str) -> Server {
    serve_http(move |req: Request<Incoming>| async move {
        let mut r = Response::builder()
            .header("x-backend", name)
            .header("x-seen-version", format!("{:?}", req.version()))
            .header("x-seen-path", req.uri().path());
        for key in req.headers().keys() {
            let joined: Vec<&str> = req
                .headers()
                .get_all(key)
                .iter()
                .map(|v| v.to_str().unwrap())
                .collect();
            r = r.header(format!("x-req-{key}"), joined.join(","));
        }
        r.body(Full::new(Bytes::from(name)).boxed()).unwrap()
    })
    .await
}

fn prefix(p: &str) -> Value {
    json!({"kind": "prefix", "value": p})
}

fn to(svc: &str) -> Value {
    json!([{"service": svc, "port": 8080, "weight": 1}])
}

fn http_listener(name: &str, port: u16, hostname: &str) -> Value {
    json!({"name": name, "port": port, "protocol": "http", "hostname": hostname, "routes": [
        {"entry": {"source": format!("httproute/test/{name}/0"),
            "match": {"path": prefix("/app"), "headers": [{"name": "x-env", "value": {"kind": "exact", "value": "prod"}}]},
            "filters": [{"kind": "requestHeaders", "spec": {"set": [{"name": "x-gw", "value": name}], "remove": ["x-drop"]}}],
            "backends": to("test/web")}},
        {"entry": {"source": format!("httproute/test/{name}/1"), "match": {"path": prefix("/unresolved")},
            "backends": [{"port": 8080, "weight": 1}]}},
    ]})
}

fn shop_listener(port: u16) -> Value {
    json!({"name": "shop", "port": port, "protocol": "https", "hostname": SHOP, "certificates": ["shop"],
        "routes": [
            {"hostnames": [SHOP], "entry": {"source": "httproute/test/shop/1", "match": {"path": prefix("/old")},
                "filters": [{"kind": "redirect", "spec": {"status": 302, "path": {"kind": "prefix", "value": "/new"}}}]}},
            {"hostnames": [SHOP], "entry": {"source": "httproute/test/shop/0",
                "match": {"path": prefix("/")}, "backends": to("test/shop")}}]})
}

fn gateway_config(web: SocketAddr, shop: SocketAddr, listeners: Vec<Value>) -> String {
    let mut cfg: Value = serde_json::from_str(&config(vec![
        service("web", "198.19.0.20", 8080, "http1", &[web]),
        service("shop", "198.19.0.21", 8080, "http1", &[shop]),
    ]))
    .unwrap();
    cfg["gateway"] = json!({"gateway": "test/gw", "tlsSecret": "gw-tls", "listeners": listeners});
    cfg.to_string()
}

/// Writes `raw` on a fresh connection and returns what comes back (until close or 2 s).
async fn raw_response(addr: SocketAddr, raw: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(raw).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// One HTTPS request with SNI `SHOP` over HTTP/1.1 or HTTP/2 (ALPN); returns status and headers.
async fn https_get(
    addr: SocketAddr,
    root: &CertificateDer<'static>,
    h2: bool,
    host: &str,
    path: &str,
) -> (u16, http::HeaderMap) {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![if h2 { b"h2".to_vec() } else { b"http/1.1".to_vec() }];
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from(SHOP).unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(
        tls.get_ref().1.alpn_protocol(),
        Some(if h2 { &b"h2"[..] } else { &b"http/1.1"[..] })
    );
    let io = TokioIo::new(tls);
    let resp = if h2 {
        let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = Request::get(format!("https://{host}{path}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        send.send_request(req).await.unwrap()
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        let req = Request::get(path)
            .header("host", host)
            .body(Full::new(Bytes::new()))
            .unwrap();
        send.send_request(req).await.unwrap()
    };
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let _ = resp.into_body().collect().await;
    (status, headers)
}

#[tokio::test]
async fn gateway_mode_routes_terminates_tls_and_follows_the_config() {
    let (web, shop) = (echo("web").await, echo("shop").await);
    let dir = tempfile::tempdir().unwrap();
    let tls_dir = dir.path().join("tls");
    std::fs::create_dir(&tls_dir).unwrap();
    let root = write_cert(&tls_dir);
    let cfg_path = dir.path().join("config.json");
    let (p_http, p_https, p_extra) = (free_port(), free_port(), free_port());
    let listeners = vec![
        http_listener("www", p_http, "www.example.test"),
        shop_listener(p_https),
    ];
    std::fs::write(&cfg_path, gateway_config(web.addr, shop.addr, listeners.clone())).unwrap();

    let gw = gateway(&cfg_path, &tls_dir).await;
    assert!(gw.outbound_addrs.is_empty() && gw.inbound_addrs.is_empty());
    let admin = gw.admin_addr.unwrap();
    eventually("ready", async || ready(admin).await == 200).await;
    let g = gw.gateway.as_ref().unwrap();
    assert_eq!(g.addrs().keys().copied().collect::<Vec<_>>(), {
        let mut v = vec![p_http, p_https];
        v.sort();
        v
    });

    // HTTP: path + header match, request header filter, X-Forwarded-*.
    let c = h1_client();
    let http: SocketAddr = format!("127.0.0.1:{p_http}").parse().unwrap();
    let www = [
        ("host", "www.example.test"),
        ("x-env", "prod"),
        ("x-drop", "1"),
        ("x-forwarded-for", "203.0.113.9"),
    ];
    let (status, h, body) = get(&c, http, "/app/page", &www).await;
    assert_eq!((status, body.as_str()), (200, "web"));
    assert_eq!(h["x-req-x-gw"], "www");
    assert!(!h.contains_key("x-req-x-drop"));
    assert_eq!(h["x-req-x-forwarded-proto"], "http");
    assert_eq!(h["x-req-x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(h["x-req-host"], "www.example.test");
    // The header match fails: no route.
    let (status, h, _) = get(&c, http, "/app/page", &[("host", "www.example.test")]).await;
    assert_eq!((status, h["x-weft-error"].to_str().unwrap()), (404, "no-route"));
    // Unknown host: no listener.
    let (status, h, _) = get(
        &c,
        http,
        "/app/page",
        &[("host", "other.example.test"), ("x-env", "prod")],
    )
    .await;
    assert_eq!((status, h["x-weft-error"].to_str().unwrap()), (404, "no-route"));
    // An unresolved backend reference.
    let (status, h, _) = get(&c, http, "/unresolved", &[("host", "www.example.test")]).await;
    assert_eq!((status, h["x-weft-error"].to_str().unwrap()), (500, "no-backend"));
    // A malformed Host gets a clean 400.
    let (status, h, _) = get(&c, http, "/app", &[("host", "bad host")]).await;
    assert_eq!(
        (status, h["x-weft-error"].to_str().unwrap()),
        (400, "bad-request")
    );
    // Raw malformed requests: garbage, and HTTP/1.1 without Host.
    for raw in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET /app HTTP/1.1\r\nx-env: prod\r\n\r\n",
    ] {
        assert!(
            raw_response(http, raw).await.starts_with("HTTP/1.1 400"),
            "{raw:?}"
        );
    }
    // The gateway still serves afterwards.
    assert_eq!(get(&c, http, "/app/page", &www).await.0, 200);

    // HTTPS by SNI, HTTP/1.1 and HTTP/2 (translated to the HTTP/1 backend).
    let https: SocketAddr = format!("127.0.0.1:{p_https}").parse().unwrap();
    eventually("certificate loaded", async || !g.certs.load().is_empty()).await;
    for h2 in [false, true] {
        let (status, h) = https_get(https, &root, h2, SHOP, "/cart").await;
        assert_eq!(status, 200, "h2={h2}");
        assert_eq!(h["x-backend"], "shop");
        assert_eq!(h["x-req-x-forwarded-proto"], "https");
        assert_eq!(h["x-seen-version"], "HTTP/1.1");
        assert_eq!(h["x-req-host"], SHOP);
    }
    // A redirect without a scheme keeps https and the listener port.
    let (status, h) = https_get(https, &root, false, SHOP, "/old/x?q=1").await;
    assert_eq!(status, 302);
    assert_eq!(h["location"], format!("https://{SHOP}:{p_https}/new/x?q=1"));
    // SNI is right but the Host matches no listener of the port.
    let (status, h) = https_get(https, &root, false, "other.example.test", "/cart").await;
    assert_eq!((status, h["x-weft-error"].to_str().unwrap()), (404, "no-route"));

    // Outbound metrics of the forwarded requests.
    let text = metrics_text(admin).await;
    let counted = text.lines().any(|l| {
        l.starts_with("response_total{") && l.contains("direction=\"outbound\"") && l.contains("shop")
    });
    assert!(counted, "{text}");
    assert!(text.contains("gateway_listener=\"www\""), "{text}");
    // Answers before any listener's routes (unknown host 404, bad Host 400) count per port.
    let unrouted = |port: u16, code: u16| -> Option<u64> {
        let series = format!(
            "response_total{{direction=\"outbound\",gateway_port=\"{port}\",classification=\"success\",status_code=\"{code}\"}} "
        );
        text.lines()
            .find_map(|l| l.strip_prefix(series.as_str()))
            .and_then(|v| v.parse().ok())
    };
    // 404: the unknown host; 400: the bad Host and the HTTP/1.1 request without one.
    assert_eq!(
        (
            unrouted(p_http, 404),
            unrouted(p_http, 400),
            unrouted(p_https, 404)
        ),
        (Some(1), Some(2), Some(1)),
        "{text}"
    );
    let open = format!("listener_connections_open{{side=\"gateway\",port=\"{p_https}\"}}");
    assert!(text.contains(&open), "{text}");

    // A config change adding a listener port binds it; removing it closes it.
    let mut more = listeners.clone();
    more.push(http_listener("extra", p_extra, "extra.example.test"));
    std::fs::write(&cfg_path, gateway_config(web.addr, shop.addr, more)).unwrap();
    eventually("extra port bound", async || g.addrs().contains_key(&p_extra)).await;
    let extra: SocketAddr = format!("127.0.0.1:{p_extra}").parse().unwrap();
    let (status, h, _) = get(
        &c,
        extra,
        "/app",
        &[("host", "extra.example.test"), ("x-env", "prod")],
    )
    .await;
    assert_eq!((status, h["x-req-x-gw"].to_str().unwrap()), (200, "extra"));
    assert_eq!(ready(admin).await, 200);
    std::fs::write(&cfg_path, gateway_config(web.addr, shop.addr, listeners.clone())).unwrap();
    eventually("extra port closed", async || {
        !g.addrs().contains_key(&p_extra) && TcpStream::connect(extra).await.is_err()
    })
    .await;

    // A port that cannot be bound keeps /ready failing until it is gone.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let p_taken = taken.local_addr().unwrap().port();
    let mut clash = listeners.clone();
    clash.push(http_listener("taken", p_taken, "taken.example.test"));
    std::fs::write(&cfg_path, gateway_config(web.addr, shop.addr, clash)).unwrap();
    eventually("not ready while a port is taken", async || {
        ready(admin).await == 503
    })
    .await;
    std::fs::write(&cfg_path, gateway_config(web.addr, shop.addr, listeners)).unwrap();
    eventually("ready again", async || ready(admin).await == 200).await;
    drop(taken);
    gw.shutdown(Duration::from_millis(200)).await;
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn binary_gateway_subcommand_serves_listeners_without_transparent_ports() {
    let web = echo("web").await;
    let dir = tempfile::tempdir().unwrap();
    let cfg_path = dir.path().join("config.json");
    let (p_http, admin, p_out, p_in) = (free_port(), free_port(), free_port(), free_port());
    let cfg = gateway_config(
        web.addr,
        web.addr,
        vec![http_listener("www", p_http, "www.example.test")],
    );
    std::fs::write(&cfg_path, cfg).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_weft-proxy"))
        .args(["gateway", "--workers", "1", "--bind", "127.0.0.1"])
        .args([
            "--admin-port",
            &admin.to_string(),
            "--config",
            cfg_path.to_str().unwrap(),
        ])
        .args(["--gateway-tls-dir", dir.path().to_str().unwrap()])
        // Ports the transparent listeners would take: they must stay free.
        .args([
            "--outbound-port",
            &p_out.to_string(),
            "--inbound-port",
            &p_in.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _proc = Proc(child);
    let admin_addr: SocketAddr = format!("127.0.0.1:{admin}").parse().unwrap();
    eventually("binary ready", async || {
        let c = h1_client();
        let req = Request::get(format!("http://{admin_addr}/ready"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        matches!(c.request(req).await, Ok(r) if r.status() == 200)
    })
    .await;
    let http: SocketAddr = format!("127.0.0.1:{p_http}").parse().unwrap();
    let (status, h, _) = get(
        &h1_client(),
        http,
        "/app",
        &[("host", "www.example.test"), ("x-env", "prod")],
    )
    .await;
    assert_eq!(
        (status, h["x-req-x-forwarded-proto"].to_str().unwrap()),
        (200, "http")
    );
    for p in [p_out, p_in] {
        assert!(
            TcpStream::connect(("127.0.0.1", p)).await.is_err(),
            "port {p} is bound"
        );
    }
}
