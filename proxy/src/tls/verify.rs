//! Certificate checks for mesh mTLS: reading the SPIFFE ID (URI SAN) of a
//! certificate, and the client-side server verifier that accepts a server only
//! if its chain ends at the mesh trust bundle and its SPIFFE ID is exactly the
//! one the config expects for that endpoint (DNS names play no part).

use rustls::DigitallySignedStruct;
use rustls::RootCertStore;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use std::sync::Arc;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The first `spiffe://` URI SAN of a DER certificate.
pub fn spiffe_id(der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|n| match n {
        GeneralName::URI(u) if u.starts_with("spiffe://") => Some((*u).to_string()),
        _ => None,
    })
}

/// Whether `spiffe_id` (`spiffe://<trust domain>/…`) belongs to `trust_domain`
/// (compared ASCII case-insensitively, as SPIFFE trust domains are host names).
pub fn in_trust_domain(spiffe_id: &str, trust_domain: &str) -> bool {
    spiffe_id
        .strip_prefix("spiffe://")
        .and_then(|rest| rest.split_once('/'))
        .is_some_and(|(td, _)| !td.is_empty() && td.eq_ignore_ascii_case(trust_domain))
}

/// `notAfter` of a DER certificate, as Unix seconds.
pub fn not_after(der: &[u8]) -> Option<i64> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    Some(cert.validity().not_after.timestamp())
}

/// Verifies a peer proxy's server certificate against the trust bundle and an
/// expected SPIFFE ID.
#[derive(Debug)]
pub struct SpiffeServerVerifier {
    roots: Arc<RootCertStore>,
    expected: Arc<str>,
    provider: Arc<CryptoProvider>,
}

impl SpiffeServerVerifier {
    /// A verifier for servers that must present `expected`.
    pub fn new(roots: Arc<RootCertStore>, expected: Arc<str>, provider: Arc<CryptoProvider>) -> Self {
        Self {
            roots,
            expected,
            provider,
        }
    }
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let parsed = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        match spiffe_id(end_entity) {
            Some(id) if *id == *self.expected => Ok(ServerCertVerified::assertion()),
            other => Err(rustls::Error::General(format!(
                "peer identity {} is not the expected {}",
                other.as_deref().unwrap_or("<none>"),
                self.expected
            ))),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::in_trust_domain;

    #[test]
    fn trust_domain_is_the_whole_authority() {
        assert!(in_trust_domain(
            "spiffe://cluster.local/ns/a/sa/b",
            "cluster.local"
        ));
        assert!(in_trust_domain(
            "spiffe://Cluster.Local/ns/a/sa/b",
            "cluster.local"
        ));
        for foreign in [
            "spiffe://evil.example/ns/a/sa/b",
            "spiffe://cluster.local.evil/ns/a/sa/b",
            "spiffe://evil/cluster.local/ns/a",
            "spiffe://cluster.local",
            "spiffe:///ns/a/sa/b",
            "https://cluster.local/ns/a/sa/b",
        ] {
            assert!(!in_trust_domain(foreign, "cluster.local"), "{foreign}");
        }
    }
}
