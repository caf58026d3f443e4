//! Gateway stream listeners on loopback: a `Tcp` listener forwarding bytes to
//! its TCPRoute backend, and on one `Tls` port a listener terminating TLS with
//! its certificate and one passing TLS through to a backend that terminates
//! it itself, chosen by SNI; an unknown SNI is refused; TCP metrics counted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use support::gateway::*;
use support::*;
use tokio::net::TcpStream;

/// A TLS echo server for `name` (the passthrough backend); returns its address and certificate.
async fn tls_echo(name: &str) -> (SocketAddr, CertificateDer<'static>, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let c = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
    let der = c.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::try_from(c.signing_key.serialize_der()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut s) = acceptor.accept(s).await else {
                    return;
                };
                let mut buf = [0u8; 256];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr, der, task)
}

/// Writes `msg` and reads it back (`None`: the connection failed or closed).
async fn echo_through<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    s: &mut S,
    msg: &[u8],
) -> Option<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(msg).await.ok()?;
    let mut buf = vec![0u8; msg.len()];
    tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut buf))
        .await
        .ok()?
        .ok()?;
    Some(buf)
}

async fn tls_connect(
    addr: SocketAddr,
    root: &CertificateDer<'static>,
    sni: &str,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).unwrap();
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await?;
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from(sni.to_string()).unwrap(), tcp)
        .await
}

#[tokio::test]
async fn stream_listeners_forward_tcp_and_tls() {
    let echo = echo_backend().await;
    let (db, db_cert, _db_task) = tls_echo("db.example.test").await;
    let dir = tempfile::tempdir().unwrap();
    let root = write_cert(dir.path());
    let cfg_path = dir.path().join("config.json");
    let (p_tcp, p_tls) = (free_port(), free_port());
    let stream = |source: &str, hostnames: &[&str], svc: &str| json!({"source": source, "hostnames": hostnames, "backends": [{"service": svc, "port": 8080, "weight": 1}]});
    let mut cfg: Value = serde_json::from_str(&config(vec![
        service("echo", "198.19.0.30", 8080, "tcp", &[echo.addr]),
        service("db", "198.19.0.31", 8080, "tcp", &[db]),
    ]))
    .unwrap();
    cfg["gateway"] = json!({"gateway": "test/gw", "tlsSecret": "gw-tls", "listeners": [
        {"name": "tcp", "port": p_tcp, "protocol": "tcp", "streams": [stream("tcproute/test/echo/0", &[], "test/echo")]},
        {"name": "term", "port": p_tls, "protocol": "tls", "hostname": SHOP, "certificates": ["shop"],
         "streams": [stream("tlsroute/test/term/0", &[SHOP], "test/echo")]},
        {"name": "pass", "port": p_tls, "protocol": "tls", "hostname": "db.example.test",
         "streams": [stream("tlsroute/test/pass/0", &["db.example.test"], "test/db")]},
    ]});
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let gw = gateway(&cfg_path, dir.path()).await;
    let admin = gw.admin_addr.unwrap();
    eventually("ready", async || ready(admin).await == 200).await;
    let g = gw.gateway.as_ref().unwrap();
    eventually("certificate loaded", async || !g.certs.load().is_empty()).await;

    // TCP: bytes both ways.
    let mut s = TcpStream::connect(("127.0.0.1", p_tcp)).await.unwrap();
    assert_eq!(echo_through(&mut s, b"ping").await.as_deref(), Some(&b"ping"[..]));
    // TLS terminated by the gateway (its certificate), plaintext to the backend.
    let tls: SocketAddr = format!("127.0.0.1:{p_tls}").parse().unwrap();
    let mut t = tls_connect(tls, &root, SHOP).await.unwrap();
    assert_eq!(
        echo_through(&mut t, b"hello").await.as_deref(),
        Some(&b"hello"[..])
    );
    assert_eq!(echo.hits(), 2);
    // TLS passed through: the backend's own certificate, end to end.
    let mut p = tls_connect(tls, &db_cert, "db.example.test").await.unwrap();
    assert_eq!(
        echo_through(&mut p, b"secret").await.as_deref(),
        Some(&b"secret"[..])
    );
    // An SNI no listener takes: the connection is closed.
    assert!(tls_connect(tls, &root, "nobody.example.test").await.is_err());

    let text = metrics_text(admin).await;
    assert!(
        text.lines()
            .any(|l| l.starts_with("tcp_open_total{") && l.contains("echo")),
        "{text}"
    );
    drop((s, t, p));
    gw.shutdown(Duration::from_millis(200)).await;
}
