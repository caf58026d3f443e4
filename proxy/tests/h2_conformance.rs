//! HTTP/2 conformance of the sidecar's explicit listener (`--listen/--upstream`,
//! protocol detection on): `HEAD` over h2 through the proxy (issue 14, item 14),
//! and the h2spec suite run against it. The h2spec binary is built by
//! `make h2spec` (part of `make test`) into `~/.cache/weft/h2spec/<version>/`;
//! the h2spec test skips, saying so, only when that binary is missing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use support::{Server, test_settings};
use tokio::net::{TcpListener, TcpStream};
use weft_proxy::proxy::outbound::OrigDst;
use weft_proxy::run::cli::explicit_config;
use weft_proxy::run::{Options, Running, start};

/// The h2spec version `make h2spec` installs (keep in step with the Makefile).
const H2SPEC_VERSION: &str = "v2.2.1";
const BODY: &str = "hello over h2\n";

/// An HTTP/2-only (prior knowledge) backend like an h2c app written with hyper
/// that ignores the method: every request, HEAD included, gets 200 with `BODY`.
/// hyper's h2 server sends that body even for HEAD (HTTP/1 drops it), which is
/// what made `curl -I --http2-prior-knowledge` through the sidecar fail.
async fn h2_backend() -> Server {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let task = tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            tokio::spawn(async move {
                let svc = service_fn(|req: Request<Incoming>| async move {
                    // Read the request body so flow control and END_STREAM are exercised.
                    let _ = req.into_body().collect().await;
                    let r = Response::builder()
                        .header("content-type", "text/plain")
                        .body(Full::new(Bytes::from(BODY)))
                        .unwrap();
                    Ok::<_, Infallible>(r)
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    Server::new(addr, hits, task)
}

/// A proxy in explicit-listener mode in front of `upstream`, as
/// `weft-proxy run --listen 127.0.0.1:0 --upstream <upstream>` starts it.
async fn explicit_proxy(upstream: SocketAddr) -> Running {
    start(Options {
        settings: test_settings(),
        outbound: vec![("127.0.0.1:0".parse().unwrap(), OrigDst::Fixed(upstream))],
        admin: Some("127.0.0.1:0".parse().unwrap()),
        initial: Some(explicit_config(upstream)),
        ..Options::default()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn head_over_h2_prior_knowledge_through_the_proxy() {
    let backend = h2_backend().await;
    let p = explicit_proxy(backend.addr).await;
    let tcp = TcpStream::connect(p.outbound_addrs[0]).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    for method in [Method::HEAD, Method::GET, Method::HEAD] {
        let req = Request::builder()
            .method(method.clone())
            .uri(format!("http://{}/", backend.addr))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(3), send.send_request(req))
            .await
            .expect("response in time")
            .unwrap_or_else(|e| panic!("{method} over h2: {e:?}"));
        assert_eq!(resp.status(), 200, "{method}");
        assert_eq!(
            resp.headers()["content-length"],
            BODY.len().to_string().as_str(),
            "{method} keeps the upstream's content-length"
        );
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let want = if method == Method::HEAD { "" } else { BODY };
        assert_eq!(body, want, "{method} body");
    }
    // The same with curl (nghttp2), the client of the original report.
    let url = format!("http://{}/", p.outbound_addrs[0]);
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "-m", "5", "-I", "--http2-prior-knowledge", &url])
        .output()
        .await
        .expect("curl runs (a test dependency: make deps)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.starts_with("HTTP/2 200"),
        "curl -I --http2-prior-knowledge: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn h2spec_version_agrees_with_the_makefile_and_the_go_module() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let mk = std::fs::read_to_string(format!("{root}/mk/h2spec.mk")).unwrap();
    assert!(
        mk.contains(&format!("H2SPEC_VERSION ?= {H2SPEC_VERSION}\n")),
        "mk/h2spec.mk pins another h2spec than {H2SPEC_VERSION}"
    );
    let gomod = std::fs::read_to_string(format!("{root}/e2e/h2spec/go.mod")).unwrap();
    assert!(
        gomod.contains(&format!(
            "github.com/summerwind/h2spec {H2SPEC_VERSION}+incompatible"
        )),
        "e2e/h2spec/go.mod pins another h2spec than {H2SPEC_VERSION}"
    );
}

fn h2spec_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("WEFT_H2SPEC") {
        return Some(PathBuf::from(p));
    }
    let cache = std::env::var_os("WEFT_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/weft")))?;
    let p = cache.join("h2spec").join(H2SPEC_VERSION).join("h2spec");
    p.is_file().then_some(p)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2spec_passes_against_the_explicit_listener() {
    let Some(bin) = h2spec_binary() else {
        eprintln!(
            "SKIP: h2spec {H2SPEC_VERSION} not installed (run `make h2spec`, or set WEFT_H2SPEC to the binary)"
        );
        return;
    };
    let backend = h2_backend().await;
    let p = explicit_proxy(backend.addr).await;
    let port = p.outbound_addrs[0].port().to_string();
    let out = tokio::time::timeout(
        Duration::from_secs(240),
        tokio::process::Command::new(&bin)
            .args(["-h", "127.0.0.1", "-p", &port, "-o", "2"])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("h2spec finished in time")
    .expect("h2spec runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let summary = text
        .lines()
        .rev()
        .find(|l| l.contains(" tests, "))
        .unwrap_or_default()
        .trim()
        .to_string();
    assert_eq!(
        summary,
        "145 tests, 145 passed, 0 skipped, 0 failed",
        "h2spec against the sidecar:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
