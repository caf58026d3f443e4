//! A throwaway test CA and the two leaf certificates for the mTLS hop (client side and server
//! side), written as PEM files into a directory. Both proxies (weft and Envoy) use the same files.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use std::path::{Path, PathBuf};

/// The DNS name the server certificate carries (and the client verifies / sends as SNI).
pub const SERVER_NAME: &str = "backend.bench.svc.cluster.local";
/// SPIFFE identities of the two sides.
pub const SERVER_ID: &str = "spiffe://cluster.local/ns/bench/sa/server";
pub const CLIENT_ID: &str = "spiffe://cluster.local/ns/bench/sa/client";

/// Paths of the generated PEM files.
#[derive(Debug, Clone)]
pub struct Pki {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// weft identity mounts (`tls.crt`, `tls.key`, `ca.crt`) of the two sides.
    pub server_dir: PathBuf,
    pub client_dir: PathBuf,
}

fn identity_dir(dir: &Path, ca: &str, cert: &str, key: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("ca.crt"), ca)?;
    std::fs::write(dir.join("tls.crt"), cert)?;
    std::fs::write(dir.join("tls.key"), key)
}

fn leaf(spiffe: &str, dns: Option<&str>, issuer: &Issuer<'_, KeyPair>) -> anyhow::Result<(String, String)> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::OrganizationName, "weft-bench");
    params.subject_alt_names = vec![SanType::URI(spiffe.try_into()?)];
    if let Some(d) = dns {
        params.subject_alt_names.push(SanType::DnsName(d.try_into()?));
    }
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
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Creates the CA, a server and a client certificate, and writes them into `dir`.
pub fn generate(dir: &Path) -> anyhow::Result<Pki> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "weft-bench test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let (server_pem, server_key) = leaf(SERVER_ID, Some(SERVER_NAME), &issuer)?;
    let (client_pem, client_key) = leaf(CLIENT_ID, None, &issuer)?;
    let pki = Pki {
        ca: dir.join("ca.pem"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server.key"),
        client_cert: dir.join("client.pem"),
        client_key: dir.join("client.key"),
        server_dir: dir.join("server-identity"),
        client_dir: dir.join("client-identity"),
    };
    identity_dir(&pki.server_dir, &ca_cert.pem(), &server_pem, &server_key)?;
    identity_dir(&pki.client_dir, &ca_cert.pem(), &client_pem, &client_key)?;
    std::fs::write(&pki.ca, ca_cert.pem())?;
    std::fs::write(&pki.server_cert, server_pem)?;
    std::fs::write(&pki.server_key, server_key)?;
    std::fs::write(&pki.client_cert, client_pem)?;
    std::fs::write(&pki.client_key, client_key)?;
    Ok(pki)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_pem_files() {
        let dir = tempfile::tempdir().unwrap();
        let pki = generate(dir.path()).unwrap();
        for p in [&pki.ca, &pki.server_cert, &pki.client_cert] {
            assert!(
                std::fs::read_to_string(p)
                    .unwrap()
                    .starts_with("-----BEGIN CERTIFICATE-----")
            );
        }
        for d in [&pki.server_dir, &pki.client_dir] {
            for f in ["ca.crt", "tls.crt", "tls.key"] {
                assert!(d.join(f).is_file(), "{} missing", d.join(f).display());
            }
        }
        for p in [&pki.server_key, &pki.client_key] {
            assert!(std::fs::read_to_string(p).unwrap().contains("PRIVATE KEY"));
        }
    }
}
