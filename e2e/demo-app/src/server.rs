//! The demo app's listeners: the HTTP server (HTTP/1.1 and h2c via hyper-util's auto
//! builder) and the TCP echo server.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{Identity, Route, call_target_allowed, route, should_fail};

/// How long `/call` waits for the downstream (connect + response).
const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What the demo app serves.
#[derive(Debug, Clone)]
pub struct Config {
    /// Who answers.
    pub identity: Identity,
    /// HTTP listen address, if any.
    pub http: Option<SocketAddr>,
    /// TCP echo listen address, if any.
    pub echo: Option<SocketAddr>,
    /// Fraction of requests (0..=1) answered with 500 (never `/healthz`).
    pub fail_rate: f64,
    /// Wait added before answering every request but `/healthz` (a slow service).
    pub delay: std::time::Duration,
}

/// Binds the configured listeners and serves until `shutdown` completes.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
    let config = Arc::new(config);
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(addr) = config.http {
        let listener = TcpListener::bind(addr).await?;
        tracing::info!(addr = %listener.local_addr()?, "demo app serving HTTP");
        tasks.spawn(serve_http(listener, config.clone()));
    }
    if let Some(addr) = config.echo {
        let listener = TcpListener::bind(addr).await?;
        tracing::info!(addr = %listener.local_addr()?, "demo app serving TCP echo");
        tasks.spawn(serve_echo(listener));
    }
    shutdown.await;
    tasks.abort_all();
    Ok(())
}

async fn serve_http(listener: TcpListener, config: Arc<Config>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let config = config.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(req, config.clone()));
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(e) = builder.serve_connection(TokioIo::new(stream), service).await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
}

async fn serve_echo(listener: TcpListener) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if stream.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
    }
}

fn json(status: StatusCode, body: &impl serde::Serialize) -> Response<Full<Bytes>> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut resp = Response::new(Full::new(Bytes::from(bytes)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    json(status, &serde_json::json!({ "error": message }))
}

async fn handle(req: Request<Incoming>, config: Arc<Config>) -> Result<Response<Full<Bytes>>, Infallible> {
    let uri = req.uri().clone();
    let r = route(uri.path(), uri.query());
    if r != Route::Healthz && !config.delay.is_zero() {
        tokio::time::sleep(config.delay).await;
    }
    if r != Route::Healthz && should_fail(config.fail_rate, rand::random::<f64>()) {
        return Ok(error(StatusCode::INTERNAL_SERVER_ERROR, "injected failure"));
    }
    let path = uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .to_string();
    let report = config.identity.report(
        req.method().as_str(),
        &path,
        req.headers().iter().map(|(k, v)| (k.as_str(), v.as_bytes())),
    );
    let resp = match r {
        Route::Healthz => json(StatusCode::OK, &serde_json::json!({ "status": "ok" })),
        Route::Status(code) => json(StatusCode::from_u16(code).unwrap_or(StatusCode::OK), &report),
        Route::Delay(d) => {
            tokio::time::sleep(d).await;
            json(StatusCode::OK, &report)
        }
        Route::Report => json(StatusCode::OK, &report),
        Route::BadRequest(msg) => error(StatusCode::BAD_REQUEST, &msg),
        Route::Call(url) => match tokio::time::timeout(CALL_TIMEOUT, call(&url, req.headers())).await {
            Ok(Ok(resp)) => resp,
            Ok(Err(msg)) => error(StatusCode::BAD_GATEWAY, &msg),
            Err(_) => error(StatusCode::GATEWAY_TIMEOUT, "downstream timed out"),
        },
    };
    Ok(resp)
}

/// Calls `url` (plain HTTP/1.1), forwarding the caller's `x-*` headers, and returns the
/// downstream's status, content type and body.
async fn call(url: &str, incoming: &http::HeaderMap) -> Result<Response<Full<Bytes>>, String> {
    let uri: Uri = url.parse().map_err(|e| format!("invalid url {url:?}: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!("only http:// urls are supported, got {url:?}"));
    }
    let host = uri
        .host()
        .ok_or_else(|| format!("url {url:?} has no host"))?
        .to_string();
    let port = uri.port_u16().unwrap_or(80);
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| format!("resolving {host}: {e}"))?
        .collect();
    let addr = addrs
        .iter()
        .copied()
        .find(|a| call_target_allowed(a.ip()))
        .ok_or_else(|| format!("{host} resolves to {addrs:?}, outside loopback and 198.18/15"))?;
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake with {addr}: {e}"))?;
    tokio::spawn(conn);
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut builder = Request::builder()
        .method(Method::GET)
        .uri(path)
        .header(header::HOST, authority(&uri));
    for (name, value) in incoming {
        if name.as_str().starts_with("x-") {
            builder = builder.header(name, value);
        }
    }
    let req = builder.body(Full::new(Bytes::new())).map_err(|e| e.to_string())?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("calling {url}: {e}"))?;
    let status = resp.status();
    let content_type = resp.headers().get(header::CONTENT_TYPE).cloned();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("reading {url}: {e}"))?
        .to_bytes();
    let mut out = Response::new(Full::new(body));
    *out.status_mut() = status;
    if let Some(ct) = content_type {
        out.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    Ok(out)
}

fn authority(uri: &Uri) -> String {
    uri.authority()
        .map(|a| a.as_str().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(addr: SocketAddr, path: &str) -> (u16, serde_json::Value) {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = Request::builder()
            .uri(path)
            .header("host", "demo")
            .header("x-trace", "abc")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&body).unwrap())
    }

    async fn start(
        fail_rate: f64,
        delay: std::time::Duration,
    ) -> (SocketAddr, SocketAddr, tokio::sync::oneshot::Sender<()>) {
        // Reserve free ports, then let the server bind them.
        let http = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let echo = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let config = Config {
            identity: Identity {
                service: "svc".into(),
                version: "v1".into(),
                pod: "pod-a".into(),
            },
            http: Some(http),
            echo: Some(echo),
            fail_rate,
            delay,
        };
        tokio::spawn(run(config, async move {
            let _ = rx.await;
        }));
        for _ in 0..100 {
            if TcpStream::connect(http).await.is_ok() && TcpStream::connect(echo).await.is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        (http, echo, tx)
    }

    #[tokio::test]
    async fn serves_report_status_delay_and_call() {
        let (http, echo, _stop) = start(0.0, std::time::Duration::ZERO).await;
        let (status, body) = get(http, "/hello?x=1").await;
        assert_eq!(status, 200);
        assert_eq!(body["service"], "svc");
        assert_eq!(body["version"], "v1");
        assert_eq!(body["pod"], "pod-a");
        assert_eq!(body["path"], "/hello?x=1");
        assert_eq!(body["headers"]["x-trace"], "abc");
        assert_eq!(get(http, "/status/418").await.0, 418);
        let began = std::time::Instant::now();
        assert_eq!(get(http, "/delay/150").await.0, 200);
        assert!(began.elapsed() >= std::time::Duration::from_millis(150));
        // /call reaches a downstream (itself) and returns its answer, forwarding x- headers.
        let (status, body) = get(http, &format!("/call?url=http://{http}/status/503")).await;
        assert_eq!(status, 503);
        assert_eq!(body["path"], "/status/503");
        assert_eq!(body["headers"]["x-trace"], "abc");
        let (status, body) = get(http, "/call?url=http://10.1.2.3/").await;
        assert_eq!(status, 502, "{body}");
        assert!(body["error"].as_str().unwrap().contains("outside"), "{body}");

        let mut s = TcpStream::connect(echo).await.unwrap();
        s.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
    }

    #[tokio::test]
    async fn fail_rate_one_fails_everything_but_healthz() {
        let (http, _, _stop) = start(1.0, std::time::Duration::ZERO).await;
        assert_eq!(get(http, "/").await.0, 500);
        assert_eq!(get(http, "/status/200").await.0, 500);
        assert_eq!(get(http, "/healthz").await.0, 200);
    }

    #[tokio::test]
    async fn delay_slows_everything_but_healthz() {
        let delay = std::time::Duration::from_millis(300);
        let (http, _, _stop) = start(0.0, delay).await;
        let began = std::time::Instant::now();
        assert_eq!(get(http, "/healthz").await.0, 200);
        assert!(began.elapsed() < delay, "healthz must stay fast for probes");
        let began = std::time::Instant::now();
        assert_eq!(get(http, "/").await.0, 200);
        assert!(began.elapsed() >= delay);
    }
}
