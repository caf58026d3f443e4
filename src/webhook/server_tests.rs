//! Component tests of the webhook routers (tower `oneshot`) and of the real TLS
//! listener with certificate rotation.

use std::net::SocketAddr;

use axum::body::{Body, to_bytes};
use http::Request;
use rustls::pki_types::ServerName;
use serde_json::{Value, json};
use time::{Duration as TDuration, OffsetDateTime};
use tower::ServiceExt;

use super::*;
use crate::webhook::certgen::{Pair, ServingIdentity, issue_serving, new_ca};
use crate::webhook::tls::server_config;

fn review_body(pod: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "u-1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "shop", "operation": "CREATE", "userInfo": {}, "object": pod}
    }))
    .unwrap()
}

fn app_pod() -> Value {
    json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "image": "a"}]}})
}

async fn call(app: Router, req: Request<Body>) -> (StatusCode, Vec<u8>) {
    let resp = app.oneshot(req).await.unwrap();
    let status = resp.status();
    (
        status,
        to_bytes(resp.into_body(), 1 << 20).await.unwrap().to_vec(),
    )
}

fn post(body: Vec<u8>) -> Request<Body> {
    Request::post(INJECT_PATH)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap()
}

#[tokio::test]
async fn inject_returns_patch() {
    let (status, body) = call(router(SharedConfig::default()), post(review_body(app_pod()))).await;
    assert_eq!(status, StatusCode::OK);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(v["kind"], "AdmissionReview");
    assert_eq!(v["response"]["uid"], "u-1");
    assert_eq!(v["response"]["allowed"], true);
    assert_eq!(v["response"]["patchType"], "JSONPatch");
}

#[tokio::test]
async fn undecodable_body_is_400_with_reason() {
    let (status, body) = call(router(SharedConfig::default()), post(b"{\"kind\": 3".to_vec())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        String::from_utf8(body)
            .unwrap()
            .starts_with("cannot decode AdmissionReview")
    );
}

#[tokio::test]
async fn deny_is_allowed_false_with_message() {
    let pod = json!({"metadata": {"annotations": {"weft.dev/skip-outbound-ports": "0"}},
        "spec": {"containers": [{"name": "a"}]}});
    let (status, body) = call(router(SharedConfig::default()), post(review_body(pod))).await;
    assert_eq!(status, StatusCode::OK);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["response"]["allowed"], false);
    let msg = v["response"]["status"]["message"].as_str().unwrap();
    assert!(msg.contains("weft.dev/skip-outbound-ports=\"0\""), "{msg}");
}

#[tokio::test]
async fn config_changes_apply_to_next_request() {
    let shared = SharedConfig::default();
    shared.set(InjectConfig {
        proxy_image: "registry.local/p:2".into(),
        ..InjectConfig::default()
    });
    let (_, body) = call(router(shared), post(review_body(app_pod()))).await;
    let v: Value = serde_json::from_slice(&body).unwrap();
    let patch: Vec<u8> = serde_json::from_value(v["response"]["patch"].clone()).unwrap();
    assert!(String::from_utf8(patch).unwrap().contains("registry.local/p:2"));
}

#[tokio::test]
async fn wrong_method_is_405_and_health_reflects_certificate() {
    let get = Request::get(INJECT_PATH).body(Body::empty()).unwrap();
    assert_eq!(
        call(router(SharedConfig::default()), get).await.0,
        StatusCode::METHOD_NOT_ALLOWED
    );
    let certs = CertStore::default();
    let health = || Request::get("/readyz").body(Body::empty()).unwrap();
    assert_eq!(
        call(health_router(certs.clone()), health()).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let live = Request::get("/healthz").body(Body::empty()).unwrap();
    assert_eq!(call(health_router(certs.clone()), live).await.0, StatusCode::OK);
    let (_, serving) = pki();
    certs.set(&serving.cert, &serving.key).unwrap();
    assert_eq!(call(health_router(certs), health()).await.0, StatusCode::OK);
}

fn pki() -> (Pair, Pair) {
    let now = OffsetDateTime::now_utc();
    let ca = new_ca(now, TDuration::days(1)).unwrap();
    let id = ServingIdentity::for_service("weft-injector", "weft-system", vec!["127.0.0.1".parse().unwrap()]);
    let serving = issue_serving(&ca, &id, now, TDuration::hours(1)).unwrap();
    (ca, serving)
}

/// POSTs a review over TLS trusting only `ca_pem`; returns the HTTP status.
async fn post_tls(addr: SocketAddr, ca_pem: &str) -> Result<StatusCode, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("weft-injector.weft-system.svc").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::post(INJECT_PATH)
        .header("host", "weft-injector.weft-system.svc")
        .body(http_body_util::Full::new(Bytes::from(review_body(app_pod()))))
        .unwrap();
    Ok(sender
        .send_request(req)
        .await
        .map_err(|e| e.to_string())?
        .status())
}

#[tokio::test]
async fn tls_listener_serves_and_rotates_certificate() {
    let store = CertStore::default();
    let (ca1, serving1) = pki();
    store.set(&serving1.cert, &serving1.key).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_tls(
        listener,
        router(SharedConfig::default()),
        server_config(store.clone()).unwrap(),
        async move {
            let _ = stop_rx.await;
        },
    ));
    assert_eq!(post_tls(addr, &ca1.cert).await.unwrap(), StatusCode::OK);
    let (ca2, serving2) = pki();
    assert!(store.set(&serving2.cert, &serving2.key).unwrap());
    assert!(
        !store.set(&serving2.cert, &serving2.key).unwrap(),
        "same cert twice is not a change"
    );
    assert_eq!(post_tls(addr, &ca2.cert).await.unwrap(), StatusCode::OK);
    assert!(
        post_tls(addr, &ca1.cert).await.is_err(),
        "old CA must no longer verify the new cert"
    );
    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap();
}

/// Latency benchmark (not part of the normal run): 2000 admissions at 200/s over one
/// kept-alive TLS connection, measured at the client (an upper bound of the
/// server-side time). Run: `cargo test -p weft-controller --release --lib
/// webhook::server::tests::bench_admission_latency -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn bench_admission_latency() {
    let store = CertStore::default();
    let (ca, serving) = pki();
    store.set(&serving.cert, &serving.key).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let tls = server_config(store).unwrap();
    tokio::spawn(serve_tls(
        listener,
        router(SharedConfig::default()),
        tls,
        std::future::pending(),
    ));
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(
            rustls_pemfile::certs(&mut ca.cert.as_bytes())
                .next()
                .unwrap()
                .unwrap(),
        )
        .unwrap();
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("weft-injector.weft-system.svc").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let body = Bytes::from(review_body(json!({
        "metadata": {"generateName": "web-7d9c5b8f6-", "labels": {"pod-template-hash": "7d9c5b8f6"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9c5b8f6",
                "uid": "u", "controller": true}]},
        "spec": {"containers": [{"name": "app", "image": "app:1", "ports": [{"containerPort": 8080}],
            "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}}}]}
    })));
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    let mut samples = Vec::with_capacity(2000);
    for _ in 0..2000 {
        tick.tick().await;
        let req = Request::post(INJECT_PATH)
            .header("host", "weft-injector")
            .body(http_body_util::Full::new(body.clone()))
            .unwrap();
        sender.ready().await.unwrap();
        let start = Instant::now();
        let resp = sender.send_request(req).await.unwrap();
        let _ = http_body_util::BodyExt::collect(resp.into_body()).await.unwrap();
        samples.push(start.elapsed());
    }
    samples.sort();
    let (p50, p99) = (samples[samples.len() / 2], samples[samples.len() * 99 / 100]);
    println!(
        "admission latency at 200/s: p50 {p50:?} p99 {p99:?} max {:?}",
        samples[samples.len() - 1]
    );
    assert!(p99 < Duration::from_millis(5), "p99 {p99:?} over the 5 ms goal");
}
