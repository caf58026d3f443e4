//! The gateway TLS Secret through a fake API server: GET, then a watch whose
//! event brings a broken version of one certificate (the last good one stays)
//! and a new one; a config naming another Secret switches the watch to it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::ChannelBody;
use tokio::net::TcpListener;
use weft_proxy::conf::ConfigStore;
use weft_proxy::conf::kube_http::{ApiEndpoint, KubeHttp};
use weft_proxy::gateway::secret::watch_secret;
use weft_proxy::gateway::tls::CertStore;
use weft_proxy::metrics::Metrics;
use weft_proxy::ready::Readiness;

fn b64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk.len();
        let mut b = [0u8; 3];
        b[..n].copy_from_slice(chunk);
        let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= n {
                out.push(A[((v >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn pair(name: &str) -> (String, String) {
    let c = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
    (c.cert.pem(), c.signing_key.serialize_pem())
}

fn secret(name: &str, rv: &str, files: &[(&str, &str)]) -> Value {
    let data: serde_json::Map<String, Value> = files
        .iter()
        .map(|(k, v)| (k.to_string(), json!(b64(v.as_bytes()))))
        .collect();
    json!({"kind": "Secret", "metadata": {"name": name, "namespace": "test", "resourceVersion": rv}, "data": data})
}

fn config(secret: &str) -> String {
    json!({
        "schemaVersion": 1,
        "identity": {"namespace": "test", "serviceAccount": "gw", "spiffeId": "spiffe://cluster.local/ns/test/sa/gw"},
        "mesh": {"trustDomain": "cluster.local", "accessMode": "permissive", "mtlsMode": "permissive"},
        "gateway": {"gateway": "test/gw", "tlsSecret": secret, "listeners": []},
    })
    .to_string()
}

#[tokio::test]
async fn secret_get_watch_and_switch() {
    let (shop, alt, other) = (
        pair("shop.example.test"),
        pair("alt.example.test"),
        pair("other.example.test"),
    );
    let first = secret("gw-tls", "5", &[("shop.crt", &shop.0), ("shop.key", &shop.1)]);
    let event = json!({"type": "MODIFIED", "object": secret("gw-tls", "6", &[
        ("shop.crt", "not a certificate"), ("shop.key", &shop.1), ("alt.crt", &alt.0), ("alt.key", &alt.1)])})
    .to_string()
        + "\n";
    let second = secret(
        "gw-tls-2",
        "9",
        &[("other.crt", &other.0), ("other.key", &other.1)],
    );
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = l.local_addr().unwrap();
    let paths = Arc::clone(&seen);
    let server = tokio::spawn(async move {
        loop {
            let (s, _) = l.accept().await.unwrap();
            let (paths, first, event, second) =
                (Arc::clone(&paths), first.clone(), event.clone(), second.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let pq = req.uri().path_and_query().unwrap().to_string();
                    paths.lock().unwrap().push(pq.clone());
                    let (first, event, second) = (first.clone(), event.clone(), second.clone());
                    async move {
                        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
                        tokio::spawn(async move {
                            let body = if pq.contains("watch=true") {
                                (pq.contains("%3Dgw-tls&")).then_some(event)
                            } else if pq.ends_with("/gw-tls") {
                                Some(first.to_string())
                            } else {
                                Some(second.to_string())
                            };
                            if let Some(b) = body {
                                let _ = tx.send(Ok(Frame::data(Bytes::from(b)))).await;
                            }
                            if pq.contains("watch=true") {
                                tokio::time::sleep(Duration::from_secs(30)).await;
                            }
                        });
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
    std::fs::write(dir.path().join("token"), "gw-token\n").unwrap();
    let http = KubeHttp::new(ApiEndpoint {
        base: format!("http://{api}").parse().unwrap(),
        token_path: dir.path().join("token"),
        ca_path: dir.path().join("ca.crt"),
    })
    .unwrap();
    let store = Arc::new(ConfigStore::new(
        Arc::new(Metrics::default()),
        Arc::new(Readiness::default()),
    ));
    store.apply_json(&config("gw-tls"), "test").unwrap();
    let certs = Arc::new(CertStore::default());
    let task = tokio::spawn(watch_secret(
        Arc::clone(&certs),
        Arc::clone(&store),
        http,
        "test".into(),
    ));

    let names = |c: &CertStore| {
        let mut v: Vec<(String, Vec<String>)> = c
            .load()
            .iter()
            .map(|(k, l)| (k.clone(), l.names.clone()))
            .collect();
        v.sort();
        v
    };
    let want = vec![
        ("alt".to_string(), vec!["alt.example.test".to_string()]),
        ("shop".to_string(), vec!["shop.example.test".to_string()]),
    ];
    for _ in 0..100 {
        if names(&certs) == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The broken `shop` in the event kept the good one from the GET.
    assert_eq!(names(&certs), want);
    {
        let p = seen.lock().unwrap();
        assert_eq!(p[0], "/api/v1/namespaces/test/secrets/gw-tls");
        assert!(
            p[1].starts_with(
                "/api/v1/namespaces/test/secrets?fieldSelector=metadata.name%3Dgw-tls&watch=true"
            ),
            "{p:?}"
        );
        assert!(p[1].contains("resourceVersion=5"), "{p:?}");
    }

    // The config names another Secret: the watch follows it.
    store.apply_json(&config("gw-tls-2"), "test").unwrap();
    let want = vec![("other".to_string(), vec!["other.example.test".to_string()])];
    for _ in 0..100 {
        if names(&certs) == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(names(&certs), want);
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .any(|p| p == "/api/v1/namespaces/test/secrets/gw-tls-2")
    );
    task.abort();
    server.abort();
}
