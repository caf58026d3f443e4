//! TLS termination for `Https` (and terminating `Tls`) gateway listeners: the listener certificates
//! (PEM pairs `<name>.crt` / `<name>.key` from the TLS Secret or a directory),
//! kept in a [`CertStore`] that keeps the last good version of a certificate
//! when a new one fails to parse, and an SNI [`ResolvesServerCert`] that picks,
//! among the listeners of one port, the one whose hostname matches the SNI most
//! specifically, then the listener certificate whose names cover the SNI (else
//! the listener's first). ALPN offers `h2` and `http/1.1`.

use crate::conf::ConfigStore;
use crate::tls::identity::{ALPN_H2, ALPN_HTTP1, provider};
use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use weft_proxy_config::gateway::hostname_matches;
use weft_proxy_config::{GatewayListener, ListenerProtocol};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Why a listener certificate could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("certificate chain: {0}")]
    Chain(String),
    #[error("no certificate in the chain")]
    Empty,
    #[error("private key: {0}")]
    Key(String),
    #[error("unsupported private key: {0}")]
    Unsupported(rustls::Error),
    #[error("the key does not match the certificate: {0}")]
    Mismatch(rustls::Error),
    #[error("tls setup: {0}")]
    Setup(#[from] rustls::Error),
}

/// One usable listener certificate.
#[derive(Debug)]
pub struct Loaded {
    pub key: Arc<CertifiedKey>,
    /// Lower-case DNS names of the leaf (SANs, else the subject CN).
    pub names: Vec<String>,
    /// Hash of the PEM pair it was made from (to skip unchanged re-reads).
    source_hash: u64,
}

impl Loaded {
    /// Whether one of the certificate's names covers `sni`.
    pub fn covers(&self, sni: &str) -> bool {
        self.names.iter().any(|n| hostname_matches(n, sni))
    }
}

fn hash_pair(crt: &[u8], key: &[u8]) -> u64 {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut h = DefaultHasher::new();
    crt.hash(&mut h);
    key.hash(&mut h);
    h.finish()
}

/// DNS names of a DER certificate: its DNS SANs, else its subject CN.
fn dns_names(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return Vec::new();
    };
    let sans: Vec<String> = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    if !sans.is_empty() {
        return sans;
    }
    cert.subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok())
        .map(str::to_ascii_lowercase)
        .collect()
}

/// Parses a PEM chain and key into a usable certificate.
pub fn load_pair(crt: &[u8], key: &[u8]) -> Result<Loaded, CertError> {
    let chain = CertificateDer::pem_slice_iter(crt)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::Chain(e.to_string()))?;
    let leaf = chain.first().ok_or(CertError::Empty)?;
    let names = dns_names(leaf);
    let key_der = PrivateKeyDer::from_pem_slice(key).map_err(|e| CertError::Key(e.to_string()))?;
    let signing = provider()
        .key_provider
        .load_private_key(key_der)
        .map_err(CertError::Unsupported)?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(CertError::Mismatch)?;
    Ok(Loaded {
        key: Arc::new(certified),
        names,
        source_hash: hash_pair(crt, key),
    })
}

/// The current listener certificates by name.
#[derive(Debug, Default)]
pub struct CertStore {
    certs: ArcSwap<HashMap<String, Arc<Loaded>>>,
}

impl CertStore {
    /// The certificates in force.
    pub fn load(&self) -> Arc<HashMap<String, Arc<Loaded>>> {
        self.certs.load_full()
    }

    /// Replaces the certificates with the pairs in `files` (key = file or
    /// Secret key name, `<name>.crt` / `<name>.key`). A pair that fails to parse
    /// is logged by name and the last good version of it stays; a name no
    /// longer present is dropped. Returns how many certificates are in force.
    pub fn update(&self, files: &BTreeMap<String, Vec<u8>>) -> usize {
        use weft_proxy_config::gateway::{CERT_SUFFIX, KEY_SUFFIX};
        let old = self.load();
        let mut next = HashMap::new();
        for (file, crt) in files {
            let Some(name) = file.strip_suffix(CERT_SUFFIX) else {
                continue;
            };
            let Some(key) = files.get(&format!("{name}{KEY_SUFFIX}")) else {
                tracing::warn!(certificate = name, "listener certificate has no key; skipped");
                continue;
            };
            let prev = old.get(name);
            if let Some(p) = prev
                && p.source_hash == hash_pair(crt, key)
            {
                next.insert(name.to_string(), Arc::clone(p));
                continue;
            }
            match load_pair(crt, key) {
                Ok(l) => {
                    tracing::info!(certificate = name, names = ?l.names, "listener certificate loaded");
                    next.insert(name.to_string(), Arc::new(l));
                }
                Err(error) => {
                    tracing::warn!(certificate = name, %error, kept_previous = prev.is_some(),
                        "listener certificate does not parse; skipped");
                    if let Some(p) = prev {
                        next.insert(name.to_string(), Arc::clone(p));
                    }
                }
            }
        }
        let n = next.len();
        self.certs.store(Arc::new(next));
        n
    }
}

/// The listener among one port's `Https` (or `Tls`) listeners for `sni`: the most specific
/// hostname match; without SNI the listener without a hostname, else the first.
pub fn listener_for_sni<'l>(
    listeners: &[&'l GatewayListener],
    sni: Option<&str>,
) -> Option<&'l GatewayListener> {
    match sni {
        Some(host) => crate::routing::gateway::select_listener(listeners.iter().copied(), host),
        None => listeners
            .iter()
            .find(|l| l.hostname.is_none())
            .or_else(|| listeners.first())
            .copied(),
    }
}

/// The certificate `listener` serves for `sni`: the first of its certificates
/// whose names cover the SNI, else its first loaded one.
pub fn cert_for(
    listener: &GatewayListener,
    sni: Option<&str>,
    certs: &HashMap<String, Arc<Loaded>>,
) -> Option<Arc<CertifiedKey>> {
    let loaded: Vec<&Arc<Loaded>> = listener
        .certificates
        .iter()
        .filter_map(|c| certs.get(c))
        .collect();
    sni.and_then(|s| loaded.iter().find(|l| l.covers(s)))
        .or_else(|| loaded.first())
        .map(|l| Arc::clone(&l.key))
}

/// Picks the certificate for a handshake on `port` from the current config.
#[derive(Debug)]
pub struct SniResolver {
    pub port: u16,
    pub store: Arc<ConfigStore>,
    pub certs: Arc<CertStore>,
}

impl SniResolver {
    /// The certificate for `sni` (lower-case) on this resolver's port.
    pub fn choose(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let snap = self.store.load()?;
        let gw = snap.config.gateway.as_ref()?;
        let listeners: Vec<&GatewayListener> = gw
            .listeners
            .iter()
            .filter(|l| {
                l.port == self.port
                    && matches!(l.protocol, ListenerProtocol::Https | ListenerProtocol::Tls)
                    && !l.certificates.is_empty()
            })
            .collect();
        let listener = listener_for_sni(&listeners, sni)?;
        let certs = self.certs.load();
        let chosen = cert_for(listener, sni, &certs);
        if chosen.is_none() {
            tracing::debug!(port = self.port, listener = %listener.name, sni = sni.unwrap_or(""),
                "no loaded certificate for the listener");
        }
        chosen
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let sni = hello
            .server_name()
            .map(|s| s.trim_end_matches('.').to_ascii_lowercase());
        self.choose(sni.as_deref())
    }
}

/// The server config of one `Https` port (certificates chosen per handshake).
pub fn server_config(resolver: SniResolver) -> Result<Arc<ServerConfig>, CertError> {
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    cfg.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP1.to_vec()];
    Ok(Arc::new(cfg))
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
