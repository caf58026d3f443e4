//! In-memory upstreams for paused-time component tests: a [`Connector`] that
//! serves each endpoint address with a scripted hyper HTTP/1 server over a
//! `tokio::io::duplex` pipe (no sockets, so tokio's auto-advancing paused clock
//! is deterministic), and a harness calling `policy::call` directly.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use weft_proxy::conf::ConfigStore;
use weft_proxy::drain::Drain;
use weft_proxy::endpoint::Endpoint;
use weft_proxy::metrics::Metrics;
use weft_proxy::proxy::body::Body;
use weft_proxy::proxy::connect::{Alpn, BoxIo, ConnectError, ConnectFuture, Connector, PlainConnector};
use weft_proxy::proxy::hooks::Plaintext;
use weft_proxy::proxy::{Proto, Settings, Shared, policy};
use weft_proxy::ready::Readiness;

/// What an endpoint answers to its n-th request (0-based).
#[derive(Debug, Clone, Copy)]
pub enum Reply {
    Status(u16),
    /// Waits, then answers.
    Delay(Duration, u16),
}

type Script = Arc<dyn Fn(u64) -> Reply + Send + Sync>;

/// The scripted endpoints.
#[derive(Default, Clone)]
pub struct Fake {
    scripts: Arc<Mutex<HashMap<SocketAddr, Script>>>,
    refuse: Arc<Mutex<HashSet<SocketAddr>>>,
    hits: Arc<Mutex<HashMap<SocketAddr, Arc<AtomicU64>>>>,
    pub connects: Arc<AtomicU64>,
}

impl std::fmt::Debug for Fake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fake")
    }
}

impl Fake {
    pub fn script(&self, addr: &str, f: impl Fn(u64) -> Reply + Send + Sync + 'static) {
        self.scripts
            .lock()
            .unwrap()
            .insert(addr.parse().unwrap(), Arc::new(f));
    }

    pub fn refuse(&self, addr: &str, on: bool) {
        let a: SocketAddr = addr.parse().unwrap();
        let mut r = self.refuse.lock().unwrap();
        if on {
            r.insert(a);
        } else {
            r.remove(&a);
        }
    }

    fn counter(&self, addr: SocketAddr) -> Arc<AtomicU64> {
        Arc::clone(self.hits.lock().unwrap().entry(addr).or_default())
    }

    pub fn hits(&self, addr: &str) -> u64 {
        self.counter(addr.parse().unwrap()).load(Ordering::Relaxed)
    }
}

impl Connector for Fake {
    fn connect<'a>(&'a self, ep: &'a Endpoint, _timeout: Duration, _alpn: Alpn) -> ConnectFuture<'a> {
        Box::pin(async move {
            if self.refuse.lock().unwrap().contains(&ep.addr) {
                return Err(ConnectError::Io(io::Error::from(
                    io::ErrorKind::ConnectionRefused,
                )));
            }
            let script = self.scripts.lock().unwrap().get(&ep.addr).cloned();
            let Some(script) = script else {
                return Err(ConnectError::Io(io::Error::from(
                    io::ErrorKind::ConnectionRefused,
                )));
            };
            self.connects.fetch_add(1, Ordering::Relaxed);
            let (client, server) = tokio::io::duplex(64 * 1024);
            let hits = self.counter(ep.addr);
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let n = hits.fetch_add(1, Ordering::Relaxed);
                    let reply = script(n);
                    async move {
                        let _ = req.into_body().collect().await;
                        let status = match reply {
                            Reply::Status(s) => s,
                            Reply::Delay(d, s) => {
                                tokio::time::sleep(d).await;
                                s
                            }
                        };
                        let resp = Response::builder()
                            .status(status)
                            .body(Full::new(Bytes::from(format!("n={n}"))))
                            .unwrap();
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(server), svc)
                    .await;
            });
            Ok(Box::new(client) as BoxIo)
        })
    }
}

/// A proxy core (no listeners) whose upstream connector is `fake`.
pub struct Harness {
    pub shared: Arc<Shared>,
    pub fake: Fake,
}

impl Harness {
    pub fn new(cfg: &str) -> Self {
        let fake = Fake::default();
        let metrics = Arc::new(Metrics::default());
        let store = Arc::new(ConfigStore::new(
            Arc::clone(&metrics),
            Arc::new(Readiness::default()),
        ));
        store.apply_json(cfg, "test").unwrap();
        let shared = Arc::new(Shared {
            store,
            metrics,
            connector: Arc::new(fake.clone()),
            app_connector: Arc::new(PlainConnector),
            inbound_security: Arc::new(Plaintext),
            settings: Settings::default(),
            drain: Drain::default(),
            self_guard: Default::default(),
            mirror_slots: weft_proxy::proxy::mirror::slots(),
        });
        Self { shared, fake }
    }

    /// Sends one request for `dst` through the policy layer; returns status,
    /// `x-weft-error` (or "") and body.
    pub async fn send(&self, dst: &str, method: &str, body: &'static str) -> (u16, String, String) {
        let snap = self.shared.store.load().unwrap();
        let route = snap.table.outbound(&dst.parse().unwrap()).unwrap();
        let req = Request::builder()
            .method(method)
            .uri("/")
            .header("host", "svc")
            .body(Body::full(body))
            .unwrap();
        let backend = Arc::clone(route.select_http(req.method(), "/", req.headers()));
        drop(snap);
        let resp = policy::call(
            &self.shared,
            &backend,
            Proto::Http1,
            "127.0.0.1:5555".parse().unwrap(),
            std::time::Instant::now(),
            req,
        )
        .await;
        let status = resp.status().as_u16();
        let err = resp
            .headers()
            .get("x-weft-error")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        (status, err, String::from_utf8_lossy(&body).into_owned())
    }

    pub fn metric(&self, name: &str, labels: &str) -> i64 {
        self.shared.metrics.families.value(name, labels).unwrap_or(0)
    }

    pub fn render(&self) -> String {
        self.shared.metrics.render()
    }
}
