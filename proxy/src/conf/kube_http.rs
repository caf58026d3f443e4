//! A minimal Kubernetes API client: one HTTP/1.1 request per connection over
//! rustls (CA from the service-account directory) with a bearer token read
//! fresh for every request (projected tokens rotate). Deliberately not kube-rs:
//! the sidecar stays small and needs exactly a GET and a watch.

use bytes::Bytes;
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

/// Errors talking to the API server.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("reading {path}: {source}")]
    File { path: String, source: std::io::Error },
    #[error("tls setup: {0}")]
    Tls(String),
    #[error("invalid API server URL: {0}")]
    Url(String),
    #[error("connect: {0}")]
    Io(#[from] std::io::Error),
    #[error("http: {0}")]
    Http(#[from] hyper::Error),
    #[error("request: {0}")]
    Request(#[from] http::Error),
    #[error("API server answered {0}")]
    Status(StatusCode),
    #[error("timed out")]
    Timeout,
    #[error("unexpected API response: {0}")]
    Decode(String),
    #[error("service catalog shard {name}: {reason}")]
    Shard { name: String, reason: String },
}

/// Where and how to reach the API server.
#[derive(Debug, Clone)]
pub struct ApiEndpoint {
    /// `https://host:port` (or `http://` for tests against a fake server).
    pub base: Uri,
    pub token_path: PathBuf,
    pub ca_path: PathBuf,
}

/// A connected client for one request.
#[derive(Debug, Clone)]
pub struct KubeHttp {
    api: ApiEndpoint,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl KubeHttp {
    /// Prepares TLS from the CA file (when the base is https).
    pub fn new(api: ApiEndpoint) -> Result<Self, KubeError> {
        let tls = if api.base.scheme_str() == Some("https") {
            Some(Arc::new(tls_config(&api)?))
        } else {
            None
        };
        Ok(Self { api, tls })
    }

    /// Sends `GET path_and_query`; returns the status and the streaming body.
    pub async fn get(&self, path_and_query: &str) -> Result<(StatusCode, Incoming), KubeError> {
        let host = self
            .api
            .base
            .host()
            .ok_or_else(|| KubeError::Url(self.api.base.to_string()))?
            .to_string();
        let https = self.tls.is_some();
        let port = self.api.base.port_u16().unwrap_or(if https { 443 } else { 80 });
        let token = tokio::fs::read_to_string(&self.api.token_path)
            .await
            .map_err(|source| KubeError::File {
                path: self.api.token_path.display().to_string(),
                source,
            })?;
        let host_for_connect = host.trim_start_matches('[').trim_end_matches(']').to_string();
        let tcp = tokio::time::timeout(
            Duration::from_secs(10),
            TcpStream::connect((host_for_connect.as_str(), port)),
        )
        .await
        .map_err(|_| KubeError::Timeout)??;
        tcp.set_nodelay(true)?;
        let req = Request::get(path_and_query)
            .header(http::header::HOST, format!("{host}:{port}"))
            .header(http::header::AUTHORIZATION, format!("Bearer {}", token.trim()))
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::<Bytes>::new())?;
        let resp = match &self.tls {
            Some(cfg) => {
                let name = ServerName::try_from(host_for_connect.clone())
                    .map_err(|e| KubeError::Tls(e.to_string()))?;
                let stream = tokio_rustls::TlsConnector::from(Arc::clone(cfg))
                    .connect(name, tcp)
                    .await?;
                send(TokioIo::new(stream), req).await?
            }
            None => send(TokioIo::new(tcp), req).await?,
        };
        Ok((resp.status(), resp.into_body()))
    }

    /// GET and read the whole body (non-2xx is an error).
    pub async fn get_bytes(&self, path_and_query: &str) -> Result<(StatusCode, Bytes), KubeError> {
        let (status, body) = self.get(path_and_query).await?;
        let bytes = tokio::time::timeout(Duration::from_secs(30), body.collect())
            .await
            .map_err(|_| KubeError::Timeout)??
            .to_bytes();
        Ok((status, bytes))
    }
}

async fn send<T>(io: TokioIo<T>, req: Request<Empty<Bytes>>) -> Result<http::Response<Incoming>, KubeError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(async move {
        if let Err(error) = conn.await {
            tracing::debug!(%error, "kube API connection ended");
        }
    });
    let resp = tokio::time::timeout(Duration::from_secs(30), sender.send_request(req))
        .await
        .map_err(|_| KubeError::Timeout)??;
    Ok(resp)
}

fn tls_config(api: &ApiEndpoint) -> Result<rustls::ClientConfig, KubeError> {
    let pem = std::fs::read(&api.ca_path).map_err(|source| KubeError::File {
        path: api.ca_path.display().to_string(),
        source,
    })?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert = cert.map_err(|e| KubeError::Tls(e.to_string()))?;
        roots.add(cert).map_err(|e| KubeError::Tls(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(KubeError::Tls(format!(
            "no certificates in {}",
            api.ca_path.display()
        )));
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| KubeError::Tls(e.to_string()))
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
}
