//! App probes proxied by the admin port (docs/injection.md): the injector
//! rewrites the app's kubelet probes to `GET :15020/app-probe/...` and passes
//! the originals in `WEFT_APP_PROBES`; the proxy runs the original probe
//! against `127.0.0.1` (httpGet, tcpSocket or gRPC health) within its timeout.
//! Only listed paths are served, so the admin port cannot reach other ports.

use bytes::{BufMut, Bytes, BytesMut};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Deserialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

/// One original probe.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Probe {
    #[serde(default)]
    pub http_get: Option<HttpGet>,
    #[serde(default)]
    pub tcp_socket: Option<TcpSocket>,
    #[serde(default)]
    pub grpc: Option<Grpc>,
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
}

/// `httpGet` fields the proxy uses.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpGet {
    pub port: serde_json::Value,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub scheme: Option<String>,
    #[serde(default)]
    pub http_headers: Vec<NameValue>,
}

/// A probe header.
#[derive(Debug, Clone, Deserialize)]
pub struct NameValue {
    pub name: String,
    pub value: String,
}

/// `tcpSocket`.
#[derive(Debug, Clone, Deserialize)]
pub struct TcpSocket {
    pub port: serde_json::Value,
}

/// `grpc`.
#[derive(Debug, Clone, Deserialize)]
pub struct Grpc {
    pub port: serde_json::Value,
    #[serde(default)]
    pub service: Option<String>,
}

/// The probes by admin path.
#[derive(Debug, Clone, Default)]
pub struct AppProbes {
    map: Arc<HashMap<String, Probe>>,
}

/// Why a probe failed to run.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("invalid WEFT_APP_PROBES: {0}")]
    Parse(#[from] serde_json::Error),
}

fn port(v: &serde_json::Value) -> Option<u16> {
    match v {
        serde_json::Value::Number(n) => n.as_u64().and_then(|p| u16::try_from(p).ok()),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

impl AppProbes {
    /// Parses the `WEFT_APP_PROBES` JSON map.
    pub fn from_json(text: &str) -> Result<Self, ProbeError> {
        Ok(Self {
            map: Arc::new(serde_json::from_str(text)?),
        })
    }

    /// Whether `path` (without query) is a probe path.
    pub fn get(&self, path: &str) -> Option<&Probe> {
        self.map.get(path)
    }

    /// Runs the probe for `path`; `None` if it is not listed (→ 404).
    pub async fn run(&self, path: &str) -> Option<StatusCode> {
        let probe = self.get(path)?.clone();
        let limit = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1));
        let result = tokio::time::timeout(limit, execute(&probe)).await;
        Some(result.unwrap_or(StatusCode::SERVICE_UNAVAILABLE))
    }
}

async fn connect(p: Option<u16>) -> Option<TcpStream> {
    TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], p?)))
        .await
        .ok()
}

async fn execute(p: &Probe) -> StatusCode {
    let down = StatusCode::SERVICE_UNAVAILABLE;
    if let Some(t) = &p.tcp_socket {
        return if connect(port(&t.port)).await.is_some() {
            StatusCode::OK
        } else {
            down
        };
    }
    if let Some(h) = &p.http_get {
        return http_get(h).await.unwrap_or(down);
    }
    if let Some(g) = &p.grpc {
        return match grpc_health(g).await {
            Some(true) => StatusCode::OK,
            _ => down,
        };
    }
    down
}

async fn http_get(h: &HttpGet) -> Option<StatusCode> {
    let tcp = connect(port(&h.port)).await?;
    let path = h.path.clone().unwrap_or_else(|| "/".into());
    let mut req = Request::get(if path.starts_with('/') {
        path
    } else {
        format!("/{path}")
    });
    let mut host = false;
    for hv in &h.http_headers {
        host |= hv.name.eq_ignore_ascii_case("host");
        req = req.header(hv.name.as_str(), hv.value.as_str());
    }
    if !host {
        req = req.header("host", "127.0.0.1");
    }
    let req = req
        .header("user-agent", "kube-probe/weft")
        .body(Full::new(Bytes::new()))
        .ok()?;
    let https = h
        .scheme
        .as_deref()
        .is_some_and(|s| s.eq_ignore_ascii_case("https"));
    let status = if https {
        let cfg = rustls::ClientConfig::builder_with_provider(crate::tls::identity::provider())
            .with_safe_default_protocol_versions()
            .ok()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(insecure::AcceptAny))
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
        let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(name, tcp)
            .await
            .ok()?;
        send_h1(TokioIo::new(tls), req).await?
    } else {
        send_h1(TokioIo::new(tcp), req).await?
    };
    Some(status)
}

async fn send_h1<I>(io: I, req: Request<Full<Bytes>>) -> Option<StatusCode>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.ok()?;
    tokio::spawn(conn);
    let resp = sender.send_request(req).await.ok()?;
    Some(resp.status())
}

/// `grpc.health.v1.Health/Check` over h2c; `Some(true)` when SERVING.
async fn grpc_health(g: &Grpc) -> Option<bool> {
    let tcp = connect(port(&g.port)).await?;
    let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
        .await
        .ok()?;
    tokio::spawn(conn);
    let service = g.service.clone().unwrap_or_default();
    // HealthCheckRequest { string service = 1; } in a gRPC length-prefixed frame.
    let mut msg = BytesMut::new();
    if !service.is_empty() {
        msg.put_u8(0x0a);
        put_varint(&mut msg, service.len() as u64);
        msg.put_slice(service.as_bytes());
    }
    let mut frame = BytesMut::with_capacity(5 + msg.len());
    frame.put_u8(0);
    frame.put_u32(msg.len() as u32);
    frame.put_slice(&msg);
    let req = Request::post("http://127.0.0.1/grpc.health.v1.Health/Check")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(frame.freeze()))
        .ok()?;
    let resp = sender.send_request(req).await.ok()?;
    if resp.headers().get("grpc-status").is_some_and(|v| v != "0") {
        return Some(false);
    }
    let collected = resp.into_body().collect().await.ok()?;
    if collected
        .trailers()
        .and_then(|t| t.get("grpc-status"))
        .is_some_and(|v| v != "0")
    {
        return Some(false);
    }
    let body = collected.to_bytes();
    // HealthCheckResponse { ServingStatus status = 1; }: SERVING = 1.
    Some(body.len() >= 7 && body[5] == 0x08 && body[6] == 1)
}

fn put_varint(buf: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

mod insecure {
    //! Kubelet does not verify app certificates in HTTPS probes; neither do we.
    use rustls::DigitallySignedStruct;
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

    #[derive(Debug)]
    pub struct AcceptAny;

    impl ServerCertVerifier for AcceptAny {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }

        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }

        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            crate::tls::identity::provider()
                .signature_verification_algorithms
                .supported_schemes()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn tcp_and_http_probes_and_unlisted_paths() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let p = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let Ok((s, _)) = l.accept().await else { return };
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                        let ok = req.uri().path() == "/healthz" && req.headers().get("x-probe").is_some();
                        let mut r = http::Response::new(Full::new(Bytes::new()));
                        *r.status_mut() = if ok {
                            StatusCode::NO_CONTENT
                        } else {
                            StatusCode::IM_A_TEAPOT
                        };
                        Ok::<_, std::convert::Infallible>(r)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(s), svc)
                        .await;
                });
            }
        });
        let json = format!(
            r#"{{"/app-probe/web/livez": {{"tcpSocket": {{"port": {p}}}}},
                "/app-probe/web/readyz": {{"httpGet": {{"port": "{p}", "path": "/healthz?x=1",
                    "httpHeaders": [{{"name": "X-Probe", "value": "1"}}]}}, "timeoutSeconds": 2}},
                "/app-probe/web/startupz": {{"tcpSocket": {{"port": 1}}}},
                "/app-probe/grpc/readyz": {{"grpc": {{"port": 1}}}}}}"#
        );
        let probes = AppProbes::from_json(&json).unwrap();
        assert_eq!(probes.run("/app-probe/web/livez").await, Some(StatusCode::OK));
        assert_eq!(
            probes.run("/app-probe/web/readyz").await,
            Some(StatusCode::NO_CONTENT)
        );
        assert_eq!(
            probes.run("/app-probe/web/startupz").await,
            Some(StatusCode::SERVICE_UNAVAILABLE)
        );
        assert_eq!(
            probes.run("/app-probe/grpc/readyz").await,
            Some(StatusCode::SERVICE_UNAVAILABLE)
        );
        assert_eq!(probes.run("/app-probe/other").await, None);
    }

    #[tokio::test]
    async fn grpc_health_probe() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let p = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let Ok((s, _)) = l.accept().await else { return };
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        // Service "ready" is SERVING (1), anything else NOT_SERVING (2).
                        let status = if body.ends_with(b"ready") { 1 } else { 2 };
                        let r = http::Response::builder()
                            .header("content-type", "application/grpc")
                            .header("grpc-status", "0")
                            .body(Full::new(Bytes::from(vec![0, 0, 0, 0, 2, 0x08, status])))
                            .unwrap();
                        Ok::<_, std::convert::Infallible>(r)
                    });
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(s), svc)
                        .await;
                });
            }
        });
        let json = format!(
            r#"{{"/app-probe/g/readyz": {{"grpc": {{"port": {p}, "service": "ready"}}}},
                "/app-probe/g/livez": {{"grpc": {{"port": {p}}}}}}}"#
        );
        let probes = AppProbes::from_json(&json).unwrap();
        assert_eq!(probes.run("/app-probe/g/readyz").await, Some(StatusCode::OK));
        assert_eq!(
            probes.run("/app-probe/g/livez").await,
            Some(StatusCode::SERVICE_UNAVAILABLE)
        );
    }
}
