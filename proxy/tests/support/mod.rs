//! Shared helpers for the loopback component tests: small backends (HTTP/1,
//! HTTP/2 with streaming and trailers, TCP echo), config builders and clients.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod fake;
pub mod gateway;
pub mod mesh;
pub mod pki;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use weft_proxy::proxy::Settings;
use weft_proxy::proxy::inbound::InboundTarget;
use weft_proxy::proxy::outbound::OrigDst;
use weft_proxy::run::{Options, Running, start};

/// Aborts a spawned server when dropped.
pub struct Server {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    /// A server whose accept loop is `task` (aborted on drop).
    pub fn new(addr: SocketAddr, hits: Arc<AtomicU64>, task: JoinHandle<()>) -> Self {
        Self { addr, hits, task }
    }

    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }
}

/// An HTTP/1.1 + h2c (auto) backend answering `name` in the body and in
/// `x-backend`, echoing the request's `host` in `x-seen-host` and whether a
/// hop-by-hop header leaked in `x-seen-hop`. `/slow` waits 300 ms, `/hang` never answers.
pub async fn http_backend(name: &'static str) -> Server {
    serve_http(move |req| answer(name, req)).await
}

/// An HTTP/1.1 + h2c (auto, upgrades allowed) backend on a loopback port answering every
/// request with `handler`, counting requests in [`Server::hits`].
pub async fn serve_http<F, Fut>(handler: F) -> Server
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<StreamBodyT>> + Send + 'static,
{
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let hits = Arc::new(AtomicU64::new(0));
    let h = Arc::clone(&hits);
    let task = tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            let h = Arc::clone(&h);
            let handler = handler.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    h.fetch_add(1, Ordering::Relaxed);
                    let resp = handler(req);
                    async move { Ok::<_, Infallible>(resp.await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    Server { addr, hits, task }
}

/// The body type of the test backends' answers.
pub type StreamBodyT = http_body_util::combinators::BoxBody<Bytes, Infallible>;

async fn answer(name: &'static str, mut req: Request<Incoming>) -> Response<StreamBodyT> {
    let host = req
        .headers()
        .get("host")
        .or(req.headers().get(":authority"))
        .cloned();
    let authority = req.uri().authority().map(|a| a.to_string()).unwrap_or_default();
    let hop = req.headers().contains_key("x-hop") || req.headers().contains_key("keep-alive");
    match req.uri().path() {
        "/slow" => tokio::time::sleep(Duration::from_millis(300)).await,
        "/hang" => tokio::time::sleep(Duration::from_secs(3600)).await,
        "/ws" => {
            // Minimal upgrade: 101, then echo bytes.
            let on = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(up) = on.await {
                    let mut io = TokioIo::new(up);
                    let mut buf = [0u8; 64];
                    while let Ok(n) = io.read(&mut buf).await {
                        if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            });
            return Response::builder()
                .status(101)
                .header("connection", "upgrade")
                .header("upgrade", "echo")
                .body(Full::new(Bytes::new()).boxed())
                .unwrap();
        }
        "/stream" => {
            // Echo each request frame back as it arrives, then trailers.
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(8);
            let mut body = req.into_body();
            tokio::spawn(async move {
                while let Some(Ok(frame)) = body.frame().await {
                    if let Ok(data) = frame.into_data()
                        && tx.send(Ok(Frame::data(data))).await.is_err()
                    {
                        return;
                    }
                }
                let mut t = http::HeaderMap::new();
                t.insert("grpc-status", "0".parse().unwrap());
                t.insert("x-backend", name.parse().unwrap());
                let _ = tx.send(Ok(Frame::trailers(t))).await;
            });
            return Response::builder()
                .header("content-type", "application/grpc")
                .body(ChannelBody { rx }.boxed())
                .unwrap();
        }
        _ => {}
    }
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let mut r = Response::builder()
        .header("x-backend", name)
        .header("x-seen-path", path)
        .header("x-seen-authority", authority)
        .header("x-seen-hop", if hop { "yes" } else { "no" })
        .header("connection", "keep-alive")
        .header("keep-alive", "timeout=30");
    if let Some(h) = host {
        r = r.header("x-seen-host", h);
    }
    let status = if req.uri().path() == "/fail" { 500 } else { 200 };
    r.status(status)
        .body(Full::new(Bytes::from(name)).boxed())
        .unwrap()
}

/// A response body fed by a channel of frames.
pub struct ChannelBody {
    pub rx: tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, Infallible>>,
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx.poll_recv(cx)
    }
}

/// A TCP echo server.
pub async fn echo_backend() -> Server {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let hits = Arc::new(AtomicU64::new(0));
    let h = Arc::clone(&hits);
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else { return };
            h.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    Server { addr, hits, task }
}

/// One service in a test config.
pub fn service(
    name: &str,
    cluster_ip: &str,
    port: u16,
    protocol: &str,
    endpoints: &[SocketAddr],
) -> (String, Value) {
    let eps: Vec<Value> = endpoints
        .iter()
        .map(|e| json!({"ip": e.ip().to_string(), "port": e.port()}))
        .collect();
    (
        format!("test/{name}"),
        json!({
            "namespace": "test", "name": name, "clusterIps": [cluster_ip],
            "ports": [{"port": port, "protocol": protocol, "endpoints": eps}],
        }),
    )
}

/// A whole config document from services.
pub fn config(services: Vec<(String, Value)>) -> String {
    let map: serde_json::Map<String, Value> = services.into_iter().collect();
    json!({
        "schemaVersion": 1,
        "identity": {"namespace": "test", "serviceAccount": "client", "spiffeId": "spiffe://cluster.local/ns/test/sa/client"},
        "mesh": {"trustDomain": "cluster.local", "accessMode": "permissive", "mtlsMode": "permissive"},
        "services": map,
        "inbound": {"ports": [], "grants": []},
    })
    .to_string()
}

/// Settings with short timeouts for tests.
pub fn test_settings() -> Settings {
    Settings {
        connect_timeout: Duration::from_millis(500),
        response_timeout: Some(Duration::from_secs(2)),
        tcp_idle_timeout: Duration::from_secs(10),
        detect_timeout: Duration::from_millis(200),
        ..Settings::default()
    }
}

/// Starts a proxy with outbound listeners for `dests` (each a fake original
/// destination), optional inbound listeners to app ports, an admin port and `cfg`.
pub async fn proxy(dests: &[&str], inbound_ports: &[u16], cfg: &str) -> Running {
    let opts = Options {
        settings: test_settings(),
        outbound: dests
            .iter()
            .map(|d| ("127.0.0.1:0".parse().unwrap(), OrigDst::Fixed(d.parse().unwrap())))
            .collect(),
        inbound: inbound_ports
            .iter()
            .map(|p| ("127.0.0.1:0".parse().unwrap(), InboundTarget::Fixed(*p)))
            .collect(),
        admin: Some("127.0.0.1:0".parse().unwrap()),
        ..Options::default()
    };
    let running = start(opts).await.unwrap();
    running.store.apply_json(cfg, "test").unwrap();
    running
}

/// A pooling HTTP/1 client.
pub fn h1_client() -> Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// GET `path` through `proxy_addr` with extra headers; returns status, `x-backend`/error and body.
pub async fn get(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    proxy_addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, http::HeaderMap, String) {
    let mut b = Request::get(format!("http://{proxy_addr}{path}"));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = client
        .request(b.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (status, parts.headers, String::from_utf8_lossy(&body).into_owned())
}

/// Scrapes the admin `/metrics` text.
pub async fn metrics_text(admin: SocketAddr) -> String {
    let c = h1_client();
    get(&c, admin, "/metrics", &[]).await.2
}
