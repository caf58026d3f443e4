//! Obtaining the workload certificate from the controller: a fresh ECDSA P-256 key
//! generated in memory (it is never written anywhere), a CSR over it, and one HTTPS
//! `POST /v1/certificate` to the identity endpoint with the projected ServiceAccount
//! token (audience `weft.dev/identity`) as bearer. The endpoint's certificate is
//! verified against the mesh trust bundle (the mounted `weft-ca-bundle` ConfigMap,
//! or the bundle of the last answer when no file is mounted).

use super::identity::{IdentityError, Material, provider};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use weft_proxy_config::identity::{CERTIFICATE_PATH, CertificateRequest, CertificateResponse};

/// Largest answer read (a chain and a bundle of a few roots).
const MAX_RESPONSE: usize = 256 * 1024;

/// Why no certificate was obtained.
#[derive(Debug, thiserror::Error)]
pub enum CsrError {
    #[error("generating the key or CSR: {0}")]
    Key(#[from] rcgen::Error),
    #[error("reading {0}: {1}")]
    File(String, std::io::Error),
    #[error("no trust bundle to verify the identity endpoint with")]
    NoBundle,
    #[error("trust bundle: {0}")]
    Bundle(String),
    #[error("tls: {0}")]
    Tls(#[from] rustls::Error),
    #[error("invalid server name {0:?}")]
    ServerName(String),
    #[error("connecting to {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("http: {0}")]
    Http(String),
    #[error("identity endpoint answered {0}: {1}")]
    Status(StatusCode, String),
    #[error("unexpected answer: {0}")]
    Decode(String),
    #[error("signed certificate unusable: {0}")]
    Identity(#[from] IdentityError),
    #[error("endpoint said {said} but the certificate is for {cert}")]
    Mismatch { said: String, cert: String },
    #[error("timed out")]
    Timeout,
}

/// A certificate obtained by CSR, ready to install.
#[derive(Debug)]
pub struct Obtained {
    pub material: Material,
    /// Validity of the leaf, Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
}

/// How to reach the identity endpoint.
#[derive(Debug)]
pub struct CsrClient {
    /// `host:port` to connect to.
    pub endpoint: String,
    /// Name the endpoint's certificate must carry (DNS SAN).
    pub server_name: String,
    /// Projected token with the weft audience, re-read for every request.
    pub token_path: PathBuf,
    /// Mounted trust bundle (PEM), re-read for every request.
    pub bundle_path: Option<PathBuf>,
    /// Per-request timeout (connect + TLS + answer).
    pub timeout: Duration,
    last_bundle: Mutex<Option<Vec<u8>>>,
}

impl CsrClient {
    /// A client for `endpoint` (`host:port`); the server name is the host.
    pub fn new(endpoint: &str, token_path: PathBuf, bundle_path: Option<PathBuf>) -> Self {
        let host = endpoint
            .rsplit_once(':')
            .map_or(endpoint, |(h, _)| h)
            .trim_start_matches('[')
            .trim_end_matches(']');
        Self {
            endpoint: endpoint.to_string(),
            server_name: host.to_string(),
            token_path,
            bundle_path,
            timeout: Duration::from_secs(10),
            last_bundle: Mutex::new(None),
        }
    }

    /// Overrides the name checked in the endpoint's certificate.
    pub fn with_server_name(mut self, name: &str) -> Self {
        self.server_name = name.to_string();
        self
    }

    /// Seeds the bundle used when no bundle file is mounted (tests, bootstrap).
    pub fn with_bundle(self, pem: &[u8]) -> Self {
        *self.last_bundle.lock().unwrap_or_else(|p| p.into_inner()) = Some(pem.to_vec());
        self
    }

    /// The bundle used to verify the endpoint: the mounted file, else the last answer's.
    pub fn bundle(&self) -> Result<Vec<u8>, CsrError> {
        if let Some(p) = &self.bundle_path {
            match std::fs::read(p) {
                Ok(b) if !b.is_empty() => return Ok(b),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(CsrError::File(p.display().to_string(), e)),
            }
        }
        self.last_bundle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or(CsrError::NoBundle)
    }

    fn tls(&self) -> Result<Arc<rustls::ClientConfig>, CsrError> {
        let pem = self.bundle()?;
        let mut roots = RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(&pem) {
            roots
                .add(c.map_err(|e| CsrError::Bundle(e.to_string()))?)
                .map_err(|e| CsrError::Bundle(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(CsrError::NoBundle);
        }
        let cfg = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Arc::new(cfg))
    }

    /// Generates a key, sends a CSR and returns the signed identity.
    pub async fn obtain(&self) -> Result<Obtained, CsrError> {
        tokio::time::timeout(self.timeout, self.obtain_inner())
            .await
            .map_err(|_| CsrError::Timeout)?
    }

    async fn obtain_inner(&self) -> Result<Obtained, CsrError> {
        let key = rcgen::KeyPair::generate()?;
        let csr = rcgen::CertificateParams::default()
            .serialize_request(&key)?
            .pem()?;
        let answer = self.request(&csr).await?;
        let material = Material::from_pem(
            answer.certificate_chain.as_bytes(),
            key.serialize_pem().as_bytes(),
            answer.trust_bundle.as_bytes(),
        )?;
        if material.spiffe_id != answer.spiffe_id {
            return Err(CsrError::Mismatch {
                said: answer.spiffe_id,
                cert: material.spiffe_id,
            });
        }
        *self.last_bundle.lock().unwrap_or_else(|p| p.into_inner()) = Some(answer.trust_bundle.into_bytes());
        Ok(Obtained {
            material,
            not_before: answer.not_before,
            not_after: answer.not_after,
        })
    }

    /// Sends one signing request for `csr_pem` (PEM PKCS#10) with the token.
    pub async fn request(&self, csr_pem: &str) -> Result<CertificateResponse, CsrError> {
        let token = tokio::fs::read_to_string(&self.token_path)
            .await
            .map_err(|e| CsrError::File(self.token_path.display().to_string(), e))?;
        let tls = self.tls()?;
        let name = ServerName::try_from(self.server_name.clone())
            .map_err(|_| CsrError::ServerName(self.server_name.clone()))?;
        let tcp = tokio::net::TcpStream::connect(&self.endpoint)
            .await
            .map_err(|e| CsrError::Connect(self.endpoint.clone(), e))?;
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .map_err(|e| CsrError::Connect(self.endpoint.clone(), e))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| CsrError::Http(e.to_string()))?;
        let conn = tokio::spawn(conn);
        let body = CertificateRequest {
            csr: csr_pem.to_string(),
        };
        let body = serde_json::to_vec(&body).map_err(|e| CsrError::Decode(e.to_string()))?;
        let req = Request::post(CERTIFICATE_PATH)
            .header(http::header::HOST, self.server_name.as_str())
            .header(http::header::AUTHORIZATION, format!("Bearer {}", token.trim()))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| CsrError::Http(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| CsrError::Http(e.to_string()))?;
        let status = resp.status();
        let bytes = Limited::new(resp.into_body(), MAX_RESPONSE)
            .collect()
            .await
            .map_err(|e| CsrError::Http(e.to_string()))?
            .to_bytes();
        conn.abort();
        if !status.is_success() {
            let text: String = String::from_utf8_lossy(&bytes).chars().take(300).collect();
            return Err(CsrError::Status(status, text));
        }
        serde_json::from_slice(&bytes).map_err(|e| CsrError::Decode(e.to_string()))
    }
}
