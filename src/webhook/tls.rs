//! The webhook's TLS: a rustls server config whose certificate can be swapped at any
//! time ([`CertStore`]); new handshakes use the new certificate, open connections
//! keep theirs.

use std::sync::{Arc, RwLock};

use rustls::ServerConfig;
use rustls::crypto::ring::{default_provider, sign::any_supported_type};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Why a PEM certificate/key pair could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The PEM could not be read.
    #[error("invalid PEM: {0}")]
    Pem(#[from] std::io::Error),
    /// No certificate in the chain PEM.
    #[error("no certificate in PEM")]
    NoCertificate,
    /// No private key in the key PEM.
    #[error("no private key in PEM")]
    NoKey,
    /// rustls refused the key or config.
    #[error("rustls: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Parses a PEM chain and key into a rustls [`CertifiedKey`].
pub fn certified_key(chain_pem: &str, key_pem: &str) -> Result<CertifiedKey, TlsError> {
    let chain = rustls_pemfile::certs(&mut chain_pem.as_bytes()).collect::<Result<Vec<_>, _>>()?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())?.ok_or(TlsError::NoKey)?;
    Ok(CertifiedKey::new(chain, any_supported_type(&key)?))
}

/// The PEM chain served and its parsed form.
type Current = Option<(String, Arc<CertifiedKey>)>;

/// The current serving certificate; cheap to clone, shared with the TLS config.
#[derive(Debug, Clone, Default)]
pub struct CertStore {
    inner: Arc<RwLock<Current>>,
}

impl CertStore {
    /// Installs a new certificate (PEM chain and key). Returns whether it changed.
    pub fn set(&self, chain_pem: &str, key_pem: &str) -> Result<bool, TlsError> {
        if self.current_pem().as_deref() == Some(chain_pem) {
            return Ok(false);
        }
        let ck = Arc::new(certified_key(chain_pem, key_pem)?);
        let mut guard = self
            .inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *guard = Some((chain_pem.to_string(), ck));
        Ok(true)
    }

    /// The PEM chain currently served, if any.
    pub fn current_pem(&self) -> Option<String> {
        let guard = self
            .inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        guard.as_ref().map(|(pem, _)| pem.clone())
    }

    /// Whether a certificate is installed (the webhook is not ready before).
    pub fn is_loaded(&self) -> bool {
        self.current_pem().is_some()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let guard = self
            .inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        guard.as_ref().map(|(_, ck)| ck.clone())
    }
}

/// A rustls server config (TLS 1.2/1.3, ring, h2 + http/1.1) serving from `store`.
pub fn server_config(store: CertStore) -> Result<Arc<ServerConfig>, TlsError> {
    let mut cfg = ServerConfig::builder_with_provider(Arc::new(default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(store));
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
