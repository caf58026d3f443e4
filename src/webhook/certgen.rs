//! The webhook's own PKI (rcgen): a self-signed CA and a serving certificate for the
//! injector's Service names (and optional IPs), plus what the renewal logic needs to
//! know about an existing certificate (expiry, names). Separate from the mesh CA.

use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};
use x509_parser::extensions::GeneralName;

/// Certificate generation or parsing failed.
#[derive(Debug, thiserror::Error)]
pub enum CertGenError {
    /// rcgen refused the parameters or key.
    #[error("rcgen: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// An existing certificate could not be parsed.
    #[error("cannot parse certificate: {0}")]
    Parse(String),
}

/// Names the serving certificate must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServingIdentity {
    /// DNS SANs (the first is also the common name).
    pub dns: Vec<String>,
    /// IP SANs (e.g. 127.0.0.1 when the API server calls a `url`).
    pub ips: Vec<IpAddr>,
}

impl ServingIdentity {
    /// The in-cluster names of Service `service` in `namespace`, plus `ips`.
    pub fn for_service(service: &str, namespace: &str, ips: Vec<IpAddr>) -> Self {
        let dns = vec![
            format!("{service}.{namespace}.svc"),
            format!("{service}.{namespace}.svc.cluster.local"),
            format!("{service}.{namespace}"),
            service.to_string(),
        ];
        ServingIdentity { dns, ips }
    }
}

/// A PEM certificate and its PEM (PKCS#8) key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    /// Certificate PEM.
    pub cert: String,
    /// Private key PEM.
    pub key: String,
}

/// Creates a self-signed CA valid from `now` for `validity`.
pub fn new_ca(now: OffsetDateTime, validity: Duration) -> Result<Pair, CertGenError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, "weft-injector-ca");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + validity;
    let cert = params.self_signed(&key)?;
    Ok(Pair {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// Issues a serving certificate for `id`, signed by `ca`, valid from `now` for `validity`.
pub fn issue_serving(
    ca: &Pair,
    id: &ServingIdentity,
    now: OffsetDateTime,
    validity: Duration,
) -> Result<Pair, CertGenError> {
    let ca_key = KeyPair::from_pem(&ca.key)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert, ca_key)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(id.dns.clone())?;
    params
        .subject_alt_names
        .extend(id.ips.iter().map(|ip| SanType::IpAddress(*ip)));
    if let Some(cn) = id.dns.first() {
        params.distinguished_name.push(DnType::CommonName, cn.as_str());
    }
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + validity;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(Pair {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// What renewal needs to know about a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// DNS SANs.
    pub dns: Vec<String>,
    /// IP SANs.
    pub ips: Vec<IpAddr>,
}

impl CertInfo {
    /// Whether the certificate is in its last third of life (or expired) at `now`.
    pub fn needs_renewal(&self, now: OffsetDateTime) -> bool {
        let life = self.not_after - self.not_before;
        now >= self.not_after - life / 3
    }

    /// Whether every name of `id` is in the certificate.
    pub fn covers(&self, id: &ServingIdentity) -> bool {
        id.dns.iter().all(|d| self.dns.contains(d)) && id.ips.iter().all(|i| self.ips.contains(i))
    }
}

fn ip_from(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

/// Reads validity and SANs of the first certificate in `pem`.
pub fn cert_info(pem: &str) -> Result<CertInfo, CertGenError> {
    let (_, pem) =
        x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| CertGenError::Parse(e.to_string()))?;
    let cert = pem.parse_x509().map_err(|e| CertGenError::Parse(e.to_string()))?;
    let validity = cert.validity();
    let mut info = CertInfo {
        not_before: validity.not_before.to_datetime(),
        not_after: validity.not_after.to_datetime(),
        dns: vec![],
        ips: vec![],
    };
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => info.dns.push((*d).to_string()),
                GeneralName::IPAddress(b) => info.ips.extend(ip_from(b)),
                _ => {}
            }
        }
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_serving_cert_with_names_and_renewal_window() {
        let now = OffsetDateTime::now_utc();
        let ca = new_ca(now, Duration::days(3650)).unwrap();
        let id =
            ServingIdentity::for_service("weft-injector", "weft-system", vec!["127.0.0.1".parse().unwrap()]);
        let serving = issue_serving(&ca, &id, now, Duration::days(90)).unwrap();
        let info = cert_info(&serving.cert).unwrap();
        assert!(info.covers(&id), "{info:?}");
        assert!(info.dns.contains(&"weft-injector.weft-system.svc".to_string()));
        assert!(!info.needs_renewal(now));
        assert!(!info.needs_renewal(now + Duration::days(59)));
        assert!(info.needs_renewal(now + Duration::days(61)));
        let other = ServingIdentity::for_service("other", "weft-system", vec![]);
        assert!(!info.covers(&other));
        assert!(cert_info("garbage").is_err());
    }

    #[test]
    fn serving_pair_loads_into_rustls_and_ca_lives_long() {
        let now = OffsetDateTime::now_utc();
        let ca = new_ca(now, Duration::days(10)).unwrap();
        let id = ServingIdentity::for_service("weft-injector", "weft-system", vec![]);
        let serving = issue_serving(&ca, &id, now, Duration::days(1)).unwrap();
        assert!(super::super::tls::certified_key(&serving.cert, &serving.key).is_ok());
        let ca_info = cert_info(&ca.cert).unwrap();
        assert!(ca_info.not_after > now + Duration::days(9));
    }
}
