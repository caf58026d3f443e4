//! mTLS between two proxies on loopback with certificates from a CA made like
//! the operator's: the handshake and identity check, a wrong expected identity,
//! plaintext in strict and permissive mode, readiness waiting for the identity,
//! and certificate rotation (new connections use the new certificate while
//! established ones continue).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use support::mesh::{CLIENT_ID, Mesh, SERVER_ID, client_config, grant};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weft_proxy::proxy::connect::Alpn;
use weft_proxy::tls::identity::Material;

async fn echo_once(s: &mut TcpStream, msg: &[u8]) -> Vec<u8> {
    s.write_all(msg).await.unwrap();
    let mut buf = vec![0u8; msg.len()];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    buf
}

#[tokio::test]
async fn http_over_mtls_with_peer_identity() {
    let app = http_backend("app").await;
    // Access mode smi with a grant for the client identity: a 200 proves the
    // server read the client's SPIFFE ID from its certificate.
    let m = Mesh::start(
        app.addr,
        "http1",
        "smi",
        "strict",
        grant(json!([{"kind": "tcp"}])),
    )
    .await;
    let c = h1_client();
    for _ in 0..3 {
        let (status, _, body) = get(&c, m.outbound(), "/", &[]).await;
        assert_eq!((status, body.as_str()), (200, "app"));
    }
    assert_eq!(app.hits(), 3);
    let text = metrics_text(m.server.admin_addr.unwrap()).await;
    let port = app.addr.port();
    assert!(
        text.contains(&format!(
            "inbound_http_authz_allow_total{{target_port=\"{port}\",authz=\"test/tt\"}} 3"
        )),
        "{text}"
    );
    assert!(text.contains("identity_cert_refresh_total{} 1"), "{text}");
}

#[tokio::test]
async fn grpc_style_h2_over_mtls() {
    let app = http_backend("h2app").await;
    let m = Mesh::start(app.addr, "http2", "permissive", "strict", json!([])).await;
    let c = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let (status, _, body) = get(&c, m.outbound(), "/", &[]).await;
    assert_eq!((status, body.as_str()), (200, "h2app"));
}

#[tokio::test]
async fn wrong_identity_is_refused() {
    let app = http_backend("app").await;
    let m = Mesh::start(app.addr, "http1", "permissive", "strict", json!([])).await;
    m.client
        .store
        .apply_json(
            &client_config(m.inbound(), "http1", "spiffe://cluster.local/ns/test/sa/impostor"),
            "test",
        )
        .unwrap();
    let (status, headers, _) = get(&h1_client(), m.outbound(), "/", &[]).await;
    assert_eq!(status, 503);
    assert_eq!(headers["x-weft-error"], "connect-rejected");
    assert_eq!(app.hits(), 0);
}

#[tokio::test]
async fn plaintext_refused_in_strict_accepted_in_permissive() {
    let app = http_backend("app").await;
    let m = Mesh::start(app.addr, "http1", "permissive", "strict", json!([])).await;
    // Plaintext HTTP/1: a readable 403 (as Linkerd answers), never the app.
    let mut s = TcpStream::connect(m.inbound()).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{text}");
    assert!(
        text.contains("x-weft-error: mtls-required") && text.ends_with("TrafficTarget\n"),
        "{text}"
    );
    // Other plaintext bytes: the connection is closed without an answer.
    let mut s = TcpStream::connect(m.inbound()).await.unwrap();
    s.write_all(b"\x00\x01binary").await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .unwrap();
    assert!(out.is_empty(), "strict mode answered opaque plaintext: {out:?}");
    assert_eq!(app.hits(), 0);
    // Permissive: the same plaintext request reaches the app.
    m.set_server("permissive", "permissive", "http1", json!([]));
    let (status, _, body) = get(&h1_client(), m.inbound(), "/", &[]).await;
    assert_eq!((status, body.as_str()), (200, "app"));
    let text = metrics_text(m.server.admin_addr.unwrap()).await;
    assert!(
        text.contains("inbound_tls_rejected_total{reason=\"plaintext\"} 2"),
        "{text}"
    );
}

#[tokio::test]
async fn ready_waits_for_the_identity() {
    let dir = tempfile::tempdir().unwrap();
    let p = weft_proxy::run::start(weft_proxy::run::Options {
        admin: Some("127.0.0.1:0".parse().unwrap()),
        identity: Some((dir.path().to_path_buf(), Duration::from_millis(20))),
        ..Default::default()
    })
    .await
    .unwrap();
    p.store.apply_json(&config(vec![]), "test").unwrap();
    assert_eq!(p.readiness.check().unwrap_err(), "waiting for: Identity");
    let ca = pki::TestCa::new("cluster.local");
    let _d = pki::IdentityDir::new(&ca.issue(CLIENT_ID), &ca.cert_pem);
    for (name, src) in ["tls.crt", "tls.key", "ca.crt"].iter().zip([&_d.path(); 3]) {
        std::fs::copy(src.join(name), dir.path().join(name)).unwrap();
    }
    for _ in 0..250 {
        if p.readiness.check().is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("never became ready");
}

/// The certificate the server proxy presents to a new connection.
async fn presented_cert(m: &Mesh) -> Vec<u8> {
    let leaf = m.ca.issue(CLIENT_ID);
    let me = Material::from_pem(
        leaf.cert_pem.as_bytes(),
        leaf.key_pem.as_bytes(),
        m.ca.cert_pem.as_bytes(),
    )
    .unwrap();
    let cfg = me.client(&Arc::from(SERVER_ID), Alpn::Opaque).unwrap();
    let tcp = TcpStream::connect(m.inbound()).await.unwrap();
    let name = ServerName::IpAddress(m.inbound().ip().into());
    let tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test]
async fn rotated_cert_is_used_for_new_connections_while_old_ones_continue() {
    let echo = echo_backend().await;
    let m = Mesh::start(echo.addr, "tcp", "permissive", "strict", json!([])).await;
    let mut old = TcpStream::connect(m.outbound()).await.unwrap();
    assert_eq!(echo_once(&mut old, b"before").await, b"before");
    let first = presented_cert(&m).await;

    let next = m.ca.issue(SERVER_ID);
    m.server_dir.write(&next, &m.ca.cert_pem);
    let id = m.server.identity.as_ref().unwrap();
    for _ in 0..250 {
        if m.server.metrics.families.value("identity_cert_refresh_total", "") == Some(2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let want = CertificateDer::from_pem_slice(next.cert_pem.as_bytes())
        .unwrap()
        .to_vec();
    assert_eq!(
        presented_cert(&m).await,
        want,
        "new connections get the rotated certificate"
    );
    assert_ne!(first, want);
    assert!(id.current().is_some());
    // The connection made before the rotation still works, and so do new ones.
    assert_eq!(echo_once(&mut old, b"after").await, b"after");
    let mut new = TcpStream::connect(m.outbound()).await.unwrap();
    assert_eq!(echo_once(&mut new, b"fresh").await, b"fresh");
    // A broken update (key from another cert) keeps the last good identity.
    let other = m.ca.issue(SERVER_ID);
    std::fs::write(m.server_dir.path().join("tls.key"), &other.key_pem).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(presented_cert(&m).await, want);
}

/// Waits until `p` has loaded the certificate for `id` (before any request, so no pooled
/// connection made with the previous certificate is reused).
async fn wait_for_identity(p: &weft_proxy::run::Running, id: &str) {
    for _ in 0..250 {
        if p.identity
            .as_ref()
            .and_then(|i| i.current())
            .is_some_and(|m| m.spiffe_id == id)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{id} never loaded");
}

/// A certificate from the mesh CA that names another trust domain (issue 14 item 5):
/// the server refuses it even in `accessMode: permissive`, and counts it.
#[tokio::test]
async fn a_peer_of_another_trust_domain_is_refused_inbound() {
    const FOREIGN: &str = "spiffe://evil.example/ns/test/sa/client";
    let app = http_backend("app").await;
    let m = Mesh::start(app.addr, "http1", "permissive", "strict", json!([])).await;
    m.client_dir.write(&m.ca.issue(FOREIGN), &m.ca.cert_pem);
    wait_for_identity(&m.client, FOREIGN).await;
    for _ in 0..2 {
        let (status, _, _) = get(&h1_client(), m.outbound(), "/", &[]).await;
        // The server closes right after the TLS 1.3 handshake the client saw finish: 502.
        assert!(
            matches!(status, 502 | 503),
            "a foreign trust domain's identity got {status}"
        );
    }
    assert_eq!(app.hits(), 0, "refused before the app");
    let text = metrics_text(m.server.admin_addr.unwrap()).await;
    let refused: f64 = text
        .lines()
        .find(|l| l.starts_with("inbound_tls_rejected_total{reason=\"trust_domain\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("{text}"));
    assert!(refused >= 2.0, "counted: {refused}");
    // Back to the mesh's trust domain: served again.
    m.client_dir.write(&m.ca.issue(CLIENT_ID), &m.ca.cert_pem);
    wait_for_identity(&m.client, CLIENT_ID).await;
    let (status, _, _) = get(&h1_client(), m.outbound(), "/", &[]).await;
    assert_eq!(status, 200);
}

/// The client side: a server whose certificate (same CA, same path) names another trust
/// domain is refused, because the expected SPIFFE ID is matched exactly.
#[tokio::test]
async fn a_server_of_another_trust_domain_is_refused_outbound() {
    const FOREIGN: &str = "spiffe://evil.example/ns/test/sa/server";
    let app = http_backend("app").await;
    let m = Mesh::start(app.addr, "http1", "permissive", "strict", json!([])).await;
    m.server_dir.write(&m.ca.issue(FOREIGN), &m.ca.cert_pem);
    wait_for_identity(&m.server, FOREIGN).await;
    let (status, headers, _) = get(&h1_client(), m.outbound(), "/", &[]).await;
    assert_eq!(status, 503, "a server of a foreign trust domain was trusted");
    assert_eq!(headers["x-weft-error"], "connect-rejected");
    assert_eq!(app.hits(), 0);
}
