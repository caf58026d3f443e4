//! The SMI access cases through two proxies with mTLS: no TrafficTarget →
//! denied; a TCPRoute grant → allowed; the grant removed by a config swap →
//! denied on the next request; an HTTPRouteGroup path rule and a method rule;
//! HTTP rules scoped to their port and matched on the normalized path, which is
//! what the app receives (issue 14 item 3).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use bytes::Bytes;
use http_body_util::Full;
use serde_json::json;
use std::time::Duration;
use support::mesh::{Mesh, grant};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Writes `msg` through the mesh and returns what comes back before close.
async fn tcp_roundtrip(m: &Mesh, msg: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(m.outbound()).await.unwrap();
    let _ = s.write_all(msg).await;
    let _ = s.shutdown().await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .unwrap();
    out
}

async fn request(m: &Mesh, method: &str, path: &str) -> (u16, String) {
    let c = h1_client();
    let req = http::Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", m.outbound()))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = c.request(req).await.unwrap();
    let err = resp
        .headers()
        .get("x-weft-error")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (resp.status().as_u16(), err)
}

#[tokio::test]
async fn tcp_no_grant_then_grant_then_revoked() {
    let echo = echo_backend().await;
    let m = Mesh::start(echo.addr, "tcp", "smi", "strict", json!([])).await;
    assert!(
        tcp_roundtrip(&m, b"hello").await.is_empty(),
        "no TrafficTarget: closed"
    );
    assert_eq!(echo.hits(), 0);

    let port = echo.addr.port();
    m.set_server(
        "smi",
        "strict",
        "tcp",
        grant(json!([{"kind": "tcp", "ports": [port]}])),
    );
    assert_eq!(tcp_roundtrip(&m, b"hello").await, b"hello");
    // A grant for other ports does not cover this one.
    m.set_server(
        "smi",
        "strict",
        "tcp",
        grant(json!([{"kind": "tcp", "ports": [port - 1]}])),
    );
    assert!(tcp_roundtrip(&m, b"hello").await.is_empty());
    // Empty ports = every port.
    m.set_server("smi", "strict", "tcp", grant(json!([{"kind": "tcp"}])));
    assert_eq!(tcp_roundtrip(&m, b"again").await, b"again");
    m.set_server("smi", "strict", "tcp", json!([]));
    assert!(tcp_roundtrip(&m, b"hello").await.is_empty(), "revoked");
    let text = metrics_text(m.server.admin_addr.unwrap()).await;
    assert!(
        text.contains(&format!(
            "inbound_tcp_authz_deny_total{{target_port=\"{port}\"}} 3"
        )),
        "{text}"
    );
    // Permissive access mode allows everything.
    m.set_server("permissive", "strict", "tcp", json!([]));
    assert_eq!(tcp_roundtrip(&m, b"open").await, b"open");
}

#[tokio::test]
async fn http_grant_revoked_by_config_swap_on_a_live_connection() {
    let app = http_backend("app").await;
    let m = Mesh::start(app.addr, "http1", "smi", "strict", json!([])).await;
    assert_eq!(request(&m, "GET", "/").await, (403, "forbidden".into()));
    m.set_server(
        "smi",
        "strict",
        "http1",
        grant(json!([{"kind": "tcp", "ports": []}])),
    );
    // The same pooled client → proxy → proxy connections are reused below.
    let c = h1_client();
    assert_eq!(get(&c, m.outbound(), "/", &[]).await.0, 200);
    m.set_server("smi", "strict", "http1", json!([]));
    let (status, headers, _) = get(&c, m.outbound(), "/", &[]).await;
    assert_eq!(
        (status, &headers["x-weft-error"]),
        (403, &"forbidden".parse::<http::HeaderValue>().unwrap())
    );
    assert_eq!(app.hits(), 1);
}

#[tokio::test]
async fn http_path_and_method_rules() {
    let app = http_backend("app").await;
    let metrics_rule =
        json!([{"kind": "http", "matches": [{"name": "routes/metrics", "pathRegex": "/metrics"}]}]);
    let m = Mesh::start(app.addr, "http1", "smi", "strict", grant(metrics_rule)).await;
    assert_eq!(request(&m, "GET", "/metrics").await.0, 200);
    assert_eq!(
        request(&m, "GET", "/metrics/sub").await.0,
        403,
        "the whole path must match"
    );
    assert_eq!(request(&m, "GET", "/echo").await.0, 403);
    assert_eq!(request(&m, "GET", "/x/metrics").await.0, 403);

    let get_rule = json!([{"kind": "http", "matches": [{"name": "routes/get", "methods": ["GET"]}]}]);
    m.set_server("smi", "strict", "http1", grant(get_rule));
    assert_eq!(request(&m, "GET", "/echo").await.0, 200);
    assert_eq!(request(&m, "POST", "/echo").await.0, 403);

    // Header rule: AND within a match.
    let hdr = json!([{"kind": "http", "matches": [{"name": "routes/ff", "pathRegex": "/", "headers": {"x-user": "alice|bob"}}]}]);
    m.set_server("smi", "strict", "http1", grant(hdr));
    let c = h1_client();
    assert_eq!(get(&c, m.outbound(), "/", &[("x-user", "bob")]).await.0, 200);
    assert_eq!(get(&c, m.outbound(), "/", &[("x-user", "eve")]).await.0, 403);
    assert_eq!(app.hits(), 3);
}

#[tokio::test]
async fn http_rules_are_port_scoped_and_see_the_normalized_path() {
    let app = http_backend("app").await;
    let on = |port: u16| {
        grant(json!([{"kind": "http", "ports": [port],
            "matches": [{"name": "routes/public", "pathRegex": "/public/.*"}]}]))
    };
    let m = Mesh::start(app.addr, "http1", "smi", "strict", on(app.addr.port())).await;
    let c = h1_client();
    let (status, headers, _) = get(&c, m.outbound(), "/public//a/./b?q=%2F", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(
        headers["x-seen-path"], "/public/a/b?q=%2F",
        "the app gets the authorized path"
    );
    for bypass in [
        "/public/../admin",
        "/public/%2E%2E/admin",
        "/public-admin",
        "/public",
    ] {
        assert_eq!(
            request(&m, "GET", bypass).await,
            (403, "forbidden".into()),
            "{bypass}"
        );
    }
    for encoded in ["/public%2F..%2Fadmin", "/public/a%5Cb", "/public/%zz"] {
        assert_eq!(
            request(&m, "GET", encoded).await,
            (400, "bad-path".into()),
            "{encoded}"
        );
    }
    // The same grant on another port allows nothing on this one.
    m.set_server("smi", "strict", "http1", on(app.addr.port().wrapping_add(1)));
    assert_eq!(request(&m, "GET", "/public/a").await, (403, "forbidden".into()));
    // A TCP rule allows the whole port: the path is forwarded as it came.
    m.set_server(
        "smi",
        "strict",
        "http1",
        grant(json!([{"kind": "tcp", "ports": [app.addr.port()]}])),
    );
    let (status, headers, _) = get(&c, m.outbound(), "/a%2Fb/../c", &[]).await;
    assert_eq!(
        (status, &headers["x-seen-path"]),
        (200, &http::HeaderValue::from_static("/a%2Fb/../c"))
    );
    assert_eq!(app.hits(), 2);
}
