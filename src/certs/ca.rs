//! Pure certificate operations: a self-signed mesh CA and SPIFFE workload
//! certificates (URI SAN `spiffe://<td>/ns/<ns>/sa/<sa>`, ECDSA P-256, server
//! and client auth). No I/O; time is passed in so callers and tests control it.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use std::time::Duration;
use time::OffsetDateTime;

/// Lifetime of a generated mesh CA.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Backdating of `notBefore` to tolerate clock skew between nodes (at most a
/// tenth of the validity, so short-lived certificates keep a sane renewal point).
pub const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// Why a certificate operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// rcgen refused (bad key, bad name, ...).
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// A PEM certificate could not be parsed.
    #[error("parsing certificate: {0}")]
    Parse(String),
}

/// A mesh CA able to issue workload certificates.
pub struct MeshCa {
    cert_pem: String,
    key_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for MeshCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshCa")
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

/// A freshly issued workload certificate.
#[derive(Clone)]
pub struct IssuedCert {
    /// Leaf certificate, PEM.
    pub cert_pem: String,
    /// Private key, PKCS#8 PEM.
    pub key_pem: String,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
}

impl std::fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCert")
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

fn serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f; // positive
    SerialNumber::from_slice(&bytes)
}

impl MeshCa {
    /// Creates a new self-signed CA for `trust_domain`, valid from `now`.
    pub fn generate(trust_domain: &str, now: OffsetDateTime) -> Result<Self, CertError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "weft");
        dn.push(
            DnType::CommonName,
            format!("weft mesh CA {trust_domain} {}", now.unix_timestamp()),
        );
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = now - CLOCK_SKEW;
        params.not_after = now + CA_VALIDITY;
        params.serial_number = Some(serial());
        params.subject_alt_names = vec![SanType::URI(format!("spiffe://{trust_domain}").try_into()?)];
        let cert = params.self_signed(&key)?;
        let (cert_pem, key_pem) = (cert.pem(), key.serialize_pem());
        Ok(Self {
            cert_pem,
            key_pem,
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads a CA from its PEM certificate and key.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, CertError> {
        let key = KeyPair::from_pem(key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)?;
        Ok(Self {
            cert_pem: cert_pem.to_string(),
            key_pem: key_pem.to_string(),
            issuer,
        })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA private key, PEM.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// Hex SHA-256 of the CA certificate PEM (identifies the signing CA).
    pub fn fingerprint(&self) -> String {
        crate::operator::render::content_hash(self.cert_pem.as_bytes())
    }

    /// Issues a workload certificate for `spiffe_id`, valid `validity` from `now`
    /// (backdated by [`CLOCK_SKEW`] or a tenth of `validity`, whichever is less).
    pub fn issue(
        &self,
        spiffe_id: &str,
        validity: Duration,
        now: OffsetDateTime,
    ) -> Result<IssuedCert, CertError> {
        let key = KeyPair::generate()?;
        let (params, not_before, not_after) = leaf_params(spiffe_id, validity, now)?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            not_before,
            not_after,
        })
    }

    /// Signs the public key of a PEM certificate signing request (its signature is
    /// checked) as a workload certificate for `spiffe_id`. Everything else the CSR asks
    /// for (subject, SANs, key usages, CA flag) is ignored: the caller decides the
    /// identity. The returned [`IssuedCert`] has an empty `key_pem` (the key stays with
    /// the requester).
    pub fn sign_csr(
        &self,
        csr_pem: &str,
        spiffe_id: &str,
        validity: Duration,
        now: OffsetDateTime,
    ) -> Result<IssuedCert, CertError> {
        let mut csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)?;
        let (params, not_before, not_after) = leaf_params(spiffe_id, validity, now)?;
        csr.params = params;
        let cert = csr.signed_by(&self.issuer)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: String::new(),
            not_before,
            not_after,
        })
    }

    /// Issues a TLS server certificate for `dns_names` (the controller's identity
    /// endpoint), so workloads verify it with the mesh trust bundle they already hold.
    pub fn issue_server(
        &self,
        dns_names: &[String],
        validity: Duration,
        now: OffsetDateTime,
    ) -> Result<IssuedCert, CertError> {
        let key = KeyPair::generate()?;
        let (mut params, not_before, not_after) =
            leaf_params("spiffe://weft.invalid/controller", validity, now)?;
        params.subject_alt_names = dns_names
            .iter()
            .map(|d| Ok(SanType::DnsName(d.as_str().try_into()?)))
            .collect::<Result<_, rcgen::Error>>()?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            not_before,
            not_after,
        })
    }
}

/// Parameters of a workload leaf for `spiffe_id` and its validity window.
fn leaf_params(
    spiffe_id: &str,
    validity: Duration,
    now: OffsetDateTime,
) -> Result<(CertificateParams, OffsetDateTime, OffsetDateTime), CertError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "weft");
    params.distinguished_name = dn;
    params.subject_alt_names = vec![SanType::URI(spiffe_id.try_into()?)];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(serial());
    // X.509 times have whole seconds: round here so the returned times equal the encoded ones.
    let now = now.replace_nanosecond(0).unwrap_or(now);
    let skew = Duration::from_secs(CLOCK_SKEW.min(validity / 10).as_secs());
    let not_before = now - skew;
    let not_after = now + Duration::from_secs(validity.as_secs().max(1));
    params.not_before = not_before;
    params.not_after = not_after;
    Ok((params, not_before, not_after))
}

/// `(notBefore, notAfter)` of the first certificate in a PEM text.
pub fn validity(cert_pem: &str) -> Result<(OffsetDateTime, OffsetDateTime), CertError> {
    let (_, pem) =
        x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).map_err(|e| CertError::Parse(e.to_string()))?;
    let cert = pem.parse_x509().map_err(|e| CertError::Parse(e.to_string()))?;
    let v = cert.validity();
    Ok((v.not_before.to_datetime(), v.not_after.to_datetime()))
}

/// URI SANs of the first certificate in a PEM text.
pub fn uri_sans(cert_pem: &str) -> Result<Vec<String>, CertError> {
    let (_, pem) =
        x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).map_err(|e| CertError::Parse(e.to_string()))?;
    let cert = pem.parse_x509().map_err(|e| CertError::Parse(e.to_string()))?;
    let sans = cert
        .subject_alternative_name()
        .map_err(|e| CertError::Parse(e.to_string()))?;
    Ok(sans
        .into_iter()
        .flat_map(|s| s.value.general_names.iter())
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::URI(u) => Some(u.to_string()),
            _ => None,
        })
        .collect())
}

/// When a certificate valid `[not_before, not_after]` is due for renewal: at
/// 2/3 of its life.
pub fn renewal_due(not_before: OffsetDateTime, not_after: OffsetDateTime) -> OffsetDateTime {
    not_before + (not_after - not_before) * 2 / 3
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    #[test]
    fn issues_spiffe_certs_that_round_trip() {
        let ca = MeshCa::generate("cluster.local", now()).unwrap();
        let id = "spiffe://cluster.local/ns/shop/sa/frontend";
        let cert = ca.issue(id, Duration::from_secs(24 * 3600), now()).unwrap();
        assert_eq!(uri_sans(&cert.cert_pem).unwrap(), [id]);
        let (nb, na) = validity(&cert.cert_pem).unwrap();
        assert_eq!(nb, now() - CLOCK_SKEW);
        assert_eq!(na, now() + Duration::from_secs(24 * 3600));
        assert!(cert.key_pem.contains("PRIVATE KEY"));
        // A CA reloaded from PEM keeps issuing under the same name.
        let again = MeshCa::from_pem(ca.cert_pem(), ca.key_pem()).unwrap();
        assert_eq!(again.fingerprint(), ca.fingerprint());
        let c2 = again.issue(id, Duration::from_secs(60), now()).unwrap();
        let issuer = |pem: &str| {
            let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
            p.parse_x509().unwrap().issuer().to_string()
        };
        assert_eq!(issuer(&c2.cert_pem), issuer(&cert.cert_pem));
    }

    #[test]
    fn certs_verify_against_the_ca_with_rustls() {
        use rustls::pki_types::{CertificateDer, UnixTime, pem::PemObject};
        let ca = MeshCa::generate("cluster.local", OffsetDateTime::now_utc()).unwrap();
        let leaf = ca
            .issue(
                "spiffe://cluster.local/ns/a/sa/b",
                Duration::from_secs(3600),
                OffsetDateTime::now_utc(),
            )
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(ca.cert_pem().as_bytes()).unwrap())
            .unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
            .build()
            .unwrap();
        let der = CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes()).unwrap();
        verifier.verify_client_cert(&der, &[], UnixTime::now()).unwrap();
    }

    #[test]
    fn renewal_is_at_two_thirds() {
        let nb = now();
        assert_eq!(
            renewal_due(nb, nb + Duration::from_secs(24 * 3600)),
            nb + Duration::from_secs(16 * 3600)
        );
    }
}
