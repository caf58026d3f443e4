//! The workload identity: certificate, key and trust bundle — obtained from the
//! controller by CSR ([`super::csr`], [`super::renew`]: the key never leaves memory)
//! or read from a mounted directory (`tls.crt`, `tls.key`, `ca.crt`) — turned into rustls
//! server and client configs, and re-read by polling so a rotated certificate
//! is used by new connections (established ones keep theirs). A bad or partial
//! update keeps the last good identity.

use super::verify::{SpiffeServerVerifier, not_after, spiffe_id};
use crate::metrics::{Kind, Metrics, Series};
use crate::proxy::connect::Alpn;
use crate::ready::{Gate, Readiness};
use arc_swap::ArcSwapOption;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// ALPN ids offered between proxies.
pub const ALPN_H2: &[u8] = b"h2";
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// Why an identity could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("reading {0}: {1}")]
    Read(String, std::io::Error),
    #[error("parsing {0}: {1}")]
    Pem(&'static str, String),
    #[error("certificate has no spiffe:// URI SAN")]
    NoSpiffeId,
    #[error("tls config: {0}")]
    Tls(#[from] rustls::Error),
    #[error("client verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// The TLS crypto provider (ring).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Client configs by expected peer identity and ALPN.
type ClientCache = HashMap<(Arc<str>, Alpn), Arc<ClientConfig>>;

/// One loaded identity and the TLS configs built from it.
#[derive(Debug)]
pub struct Material {
    pub spiffe_id: String,
    /// `notAfter` of the leaf, Unix seconds.
    pub not_after: i64,
    pub server: Arc<ServerConfig>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    roots: Arc<RootCertStore>,
    clients: Mutex<ClientCache>,
}

impl Material {
    /// Builds an identity from PEM texts.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8], ca_pem: &[u8]) -> Result<Self, IdentityError> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| IdentityError::Pem("tls.crt", e.to_string()))?;
        let leaf = chain
            .first()
            .ok_or(IdentityError::Pem("tls.crt", "no certificate".into()))?;
        let spiffe = spiffe_id(leaf).ok_or(IdentityError::NoSpiffeId)?;
        let not_after = not_after(leaf).unwrap_or(0);
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| IdentityError::Pem("tls.key", e.to_string()))?;
        let mut roots = RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(ca_pem) {
            let c = c.map_err(|e| IdentityError::Pem("ca.crt", e.to_string()))?;
            roots.add(c)?;
        }
        let roots = Arc::new(roots);
        let p = provider();
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::clone(&roots), Arc::clone(&p)).build()?;
        let mut server = ServerConfig::builder_with_provider(p)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())?;
        server.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP1.to_vec()];
        Ok(Self {
            spiffe_id: spiffe,
            not_after,
            server: Arc::new(server),
            chain,
            key,
            roots,
            clients: Mutex::new(HashMap::new()),
        })
    }

    /// Client config for connecting to a peer that must be `expected`,
    /// offering ALPN for `alpn` (cached per pair).
    pub fn client(&self, expected: &Arc<str>, alpn: Alpn) -> Result<Arc<ClientConfig>, IdentityError> {
        let mut cache = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cache.get(&(Arc::clone(expected), alpn)) {
            return Ok(Arc::clone(c));
        }
        let p = provider();
        let verifier =
            SpiffeServerVerifier::new(Arc::clone(&self.roots), Arc::clone(expected), Arc::clone(&p));
        let mut cfg = ClientConfig::builder_with_provider(p)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())?;
        cfg.alpn_protocols = match alpn {
            Alpn::Http2 => vec![ALPN_H2.to_vec()],
            Alpn::Http1 => vec![ALPN_HTTP1.to_vec()],
            Alpn::Opaque => Vec::new(),
        };
        let cfg = Arc::new(cfg);
        cache.insert((Arc::clone(expected), alpn), Arc::clone(&cfg));
        Ok(cfg)
    }
}

/// The current identity of this proxy, installed by the CSR renewer or reloaded
/// from a directory.
#[derive(Debug)]
pub struct IdentityStore {
    dir: PathBuf,
    current: ArcSwapOption<Material>,
    readiness: Arc<Readiness>,
    last_seen: Mutex<Option<u64>>,
    expiry: Arc<Series>,
    refreshes: Arc<Series>,
    failures: Arc<Series>,
}

impl IdentityStore {
    /// A store for `dir`; `/ready` waits for its first successful load.
    pub fn new(dir: PathBuf, readiness: Arc<Readiness>, metrics: &Metrics) -> Self {
        readiness.require(Gate::Identity);
        let f = &metrics.families;
        Self {
            dir,
            current: ArcSwapOption::empty(),
            readiness,
            last_seen: Mutex::new(None),
            expiry: f.series(
                "identity_cert_expiration_timestamp_seconds",
                Kind::Gauge,
                "notAfter of the workload certificate in use (Unix seconds).",
                "",
            ),
            refreshes: f.series(
                "identity_cert_refresh_total",
                Kind::Counter,
                "Workload certificates loaded (initial load and rotations).",
                "",
            ),
            failures: f.series(
                "identity_cert_refresh_failed_total",
                Kind::Counter,
                "Identity updates rejected (the last good certificate stays in use).",
                "",
            ),
        }
    }

    /// The identity in use, if one was loaded.
    pub fn current(&self) -> Option<Arc<Material>> {
        self.current.load_full()
    }

    /// Reads the directory; installs the identity if the files changed.
    /// Returns whether a new identity was installed.
    pub fn reload(&self) -> Result<bool, IdentityError> {
        let read = |name: &str| {
            let p = self.dir.join(name);
            std::fs::read(&p).map_err(|e| IdentityError::Read(p.display().to_string(), e))
        };
        let (cert, key, ca) = (read("tls.crt")?, read("tls.key")?, read("ca.crt")?);
        let mut h = DefaultHasher::new();
        (&cert, &key, &ca).hash(&mut h);
        let hash = h.finish();
        let mut last = self.last_seen.lock().unwrap_or_else(|p| p.into_inner());
        if *last == Some(hash) {
            return Ok(false);
        }
        *last = Some(hash);
        match Material::from_pem(&cert, &key, &ca) {
            Ok(m) => {
                tracing::info!(identity = %m.spiffe_id, not_after = m.not_after, "loaded workload certificate");
                self.install(m);
                Ok(true)
            }
            Err(e) => {
                self.record_failure();
                Err(e)
            }
        }
    }

    /// Makes `m` the identity of new connections (open ones keep theirs) and opens
    /// the readiness gate.
    pub fn install(&self, m: Material) {
        self.expiry.set(m.not_after);
        self.refreshes.inc();
        self.current.store(Some(Arc::new(m)));
        self.readiness.open(Gate::Identity);
    }

    /// Counts an update that was rejected (the last good identity stays).
    pub fn record_failure(&self) {
        self.failures.inc();
    }

    /// Polls the directory every `every` until draining starts.
    pub async fn watch(self: Arc<Self>, every: Duration, mut drain: watch::Receiver<bool>) {
        let mut logged: Option<String> = None;
        loop {
            match self.reload() {
                Ok(_) => logged = None,
                Err(error) => {
                    let msg = error.to_string();
                    // Missing files are normal until the Secret exists; log each new problem once.
                    if logged.as_ref() != Some(&msg) {
                        tracing::warn!(%error, dir = %self.dir.display(), "identity not (re)loaded; keeping the last good one");
                        logged = Some(msg);
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = crate::drain::Drain::started(&mut drain) => return,
            }
        }
    }
}
