//! Config sources end to end: the ConfigMap GET + watch against a fake API
//! server, and the `weft-proxy run` binary in explicit-listener and file modes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;
use std::convert::Infallible;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::*;
use tokio::net::TcpListener;
use weft_proxy::conf::ConfigStore;
use weft_proxy::conf::kube::{ConfigMapRef, watch_configmap};
use weft_proxy::conf::kube_http::{ApiEndpoint, KubeHttp};
use weft_proxy::metrics::Metrics;
use weft_proxy::ready::Readiness;

fn cm(config: &str, rv: &str) -> serde_json::Value {
    json!({"kind": "ConfigMap", "metadata": {"name": "weft-proxy-client", "namespace": "test", "resourceVersion": rv},
           "data": {"config.json": config}})
}

#[tokio::test]
async fn configmap_get_then_watch() {
    let first = config(vec![]);
    let second = config(vec![service(
        "web",
        "198.19.0.10",
        80,
        "http1",
        &["127.0.0.1:9".parse().unwrap()],
    )]);
    let seen_paths = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = l.local_addr().unwrap();
    let (paths, f1, f2) = (Arc::clone(&seen_paths), first.clone(), second.clone());
    let server = tokio::spawn(async move {
        loop {
            let (s, _) = l.accept().await.unwrap();
            let (paths, f1, f2) = (Arc::clone(&paths), f1.clone(), f2.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let auth = req
                        .headers()
                        .get("authorization")
                        .map(|v| v.to_str().unwrap().to_string())
                        .unwrap_or_default();
                    let pq = req.uri().path_and_query().unwrap().to_string();
                    paths.lock().unwrap().push((pq.clone(), auth));
                    let (f1, f2) = (f1.clone(), f2.clone());
                    async move {
                        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
                        if pq.contains("watch=true") {
                            let bad =
                                json!({"type": "MODIFIED", "object": cm("{broken", "11")}).to_string() + "\n";
                            let good =
                                json!({"type": "MODIFIED", "object": cm(&f2, "12")}).to_string() + "\n";
                            tokio::spawn(async move {
                                // Split one event across frames to exercise line reassembly.
                                let (a, b) = bad.split_at(10);
                                for chunk in [a.to_string(), b.to_string(), good] {
                                    tx.send(Ok(Frame::data(Bytes::from(chunk)))).await.unwrap();
                                    tokio::time::sleep(Duration::from_millis(20)).await;
                                }
                                tokio::time::sleep(Duration::from_secs(30)).await;
                            });
                        } else {
                            tx.send(Ok(Frame::data(Bytes::from(cm(&f1, "10").to_string()))))
                                .await
                                .unwrap();
                        }
                        Ok::<_, Infallible>(Response::new(ChannelBody { rx }))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "secret-token\n").unwrap();
    let http = KubeHttp::new(ApiEndpoint {
        base: format!("http://{api}").parse().unwrap(),
        token_path: dir.path().join("token"),
        ca_path: dir.path().join("ca.crt"),
    })
    .unwrap();
    let metrics = Arc::new(Metrics::default());
    let store = Arc::new(ConfigStore::new(
        Arc::clone(&metrics),
        Arc::new(Readiness::default()),
    ));
    let (tx, rx) = tokio::sync::watch::channel(false);
    let cmref = ConfigMapRef {
        namespace: "test".into(),
        name: "weft-proxy-client".into(),
    };
    let task = tokio::spawn(watch_configmap(Arc::clone(&store), http, cmref, rx));
    for _ in 0..100 {
        if store.load().is_some_and(|s| s.generation == 2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let snap = store.load().unwrap();
    assert_eq!(snap.generation, 2);
    assert!(snap.config.services.contains_key("test/web"));
    assert_eq!(
        metrics.reloads(),
        (2, 1),
        "one good GET, one bad and one good event"
    );
    let paths = seen_paths.lock().unwrap().clone();
    assert_eq!(paths[0].0, "/api/v1/namespaces/test/configmaps/weft-proxy-client");
    assert!(
        paths[1]
            .0
            .contains("fieldSelector=metadata.name%3Dweft-proxy-client"),
        "{paths:?}"
    );
    assert!(paths[1].0.contains("resourceVersion=10"), "{paths:?}");
    assert!(paths.iter().all(|(_, auth)| auth == "Bearer secret-token"));
    tx.send(true).unwrap();
    task.await.unwrap();
    server.abort();
}

/// Kills the child on drop (tests must not leak processes).
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_ready(admin: u16) -> bool {
    let c = h1_client();
    for _ in 0..100 {
        let req = Request::get(format!("http://127.0.0.1:{admin}/ready"))
            .body(http_body_util::Full::new(Bytes::new()))
            .unwrap();
        if let Ok(r) = c.request(req).await
            && r.status() == 200
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn binary_explicit_listener_and_file_modes_drain_on_sigterm() {
    let backend = http_backend("bin").await;
    let (listen, admin) = (free_port(), free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_weft-proxy"))
        .args([
            "run",
            "--workers",
            "1",
            "--bind",
            "127.0.0.1",
            "--admin-port",
            &admin.to_string(),
        ])
        .args([
            "--listen",
            &format!("127.0.0.1:{listen}"),
            "--upstream",
            &backend.addr.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut proc = Proc(child);
    assert!(
        wait_ready(admin).await,
        "explicit-listener proxy never became ready"
    );
    let c = h1_client();
    let (status, _, body) = get(&c, format!("127.0.0.1:{listen}").parse().unwrap(), "/", &[]).await;
    assert_eq!((status, body.as_str()), (200, "bin"));
    let cfg_text = get(&c, format!("127.0.0.1:{admin}").parse().unwrap(), "/config", &[])
        .await
        .2;
    assert!(cfg_text.contains("weft-explicit"), "{cfg_text}");
    // SIGTERM → drain → clean exit.
    let pid = proc.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let mut exited = None;
    for _ in 0..100 {
        if let Some(s) = proc.0.try_wait().unwrap() {
            exited = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(exited.expect("proxy did not exit after SIGTERM").success());

    // File mode with an outbound mapping: config changes are picked up by polling.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(
        &path,
        config(vec![service("web", "198.19.0.10", 80, "http1", &[])]),
    )
    .unwrap();
    let (listen, admin) = (free_port(), free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_weft-proxy"))
        .args([
            "run",
            "--workers",
            "1",
            "--bind",
            "127.0.0.1",
            "--admin-port",
            &admin.to_string(),
        ])
        .args(["--config", path.to_str().unwrap(), "--config-poll-ms", "50"])
        .args(["--outbound-map", &format!("127.0.0.1:{listen}=198.19.0.10:80")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _proc = Proc(child);
    assert!(wait_ready(admin).await);
    let addr = format!("127.0.0.1:{listen}").parse().unwrap();
    assert_eq!(get(&c, addr, "/", &[]).await.0, 503);
    std::fs::write(
        &path,
        config(vec![service("web", "198.19.0.10", 80, "http1", &[backend.addr])]),
    )
    .unwrap();
    let mut ok = false;
    for _ in 0..60 {
        if get(&c, addr, "/", &[]).await.0 == 200 {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "file change was not applied");
}

#[tokio::test]
async fn kube_client_verifies_the_api_server_with_ca_crt() {
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.crt"), ck.cert.pem()).unwrap();
    std::fs::write(dir.path().join("token"), "tok").unwrap();
    let key = rustls::pki_types::PrivateKeyDer::try_from(ck.signing_key.serialize_der()).unwrap();
    let server_cfg =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![ck.cert.der().clone()], key)
            .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_cfg));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = l.local_addr().unwrap();
    let server = tokio::spawn(async move {
        loop {
            let (s, _) = l.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(s).await else { return };
                let svc = service_fn(|_req: Request<Incoming>| async {
                    Ok::<_, Infallible>(Response::new(http_body_util::Full::new(Bytes::from_static(
                        b"{}",
                    ))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    let endpoint = |ca: &str| ApiEndpoint {
        base: format!("https://{api}").parse().unwrap(),
        token_path: dir.path().join("token"),
        ca_path: dir.path().join(ca),
    };
    let http = KubeHttp::new(endpoint("ca.crt")).unwrap();
    let (status, body) = http.get_bytes("/api").await.unwrap();
    assert_eq!((status.as_u16(), &body[..]), (200, &b"{}"[..]));
    // A different CA must not be trusted.
    let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    std::fs::write(dir.path().join("other.crt"), other.cert.pem()).unwrap();
    let http = KubeHttp::new(endpoint("other.crt")).unwrap();
    assert!(http.get_bytes("/api").await.is_err());
    server.abort();
}
