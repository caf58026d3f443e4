//! A test mesh CA made exactly like the operator's (`src/certs/ca.rs` in the
//! root crate, which this crate must not depend on): ECDSA P-256 keys, a CA
//! with `pathlen 0` and URI SAN `spiffe://<td>`, workload leaves with only the
//! SPIFFE URI SAN, serverAuth + clientAuth, AKI, random positive serials and
//! `notBefore` backdated 60 s. Plus identity directories like the Secret mount.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use std::path::{Path, PathBuf};
use std::time::Duration;
use time::OffsetDateTime;

const CLOCK_SKEW: Duration = Duration::from_secs(60);

fn serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f;
    SerialNumber::from_slice(&bytes)
}

/// A mesh CA.
pub struct TestCa {
    pub cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A workload certificate and key (PEM).
#[derive(Clone)]
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
}

impl TestCa {
    pub fn new(trust_domain: &str) -> Self {
        let now = OffsetDateTime::now_utc();
        let key = KeyPair::generate().unwrap();
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
        params.not_after = now + Duration::from_secs(3600 * 24);
        params.serial_number = Some(serial());
        params.subject_alt_names = vec![SanType::URI(
            format!("spiffe://{trust_domain}").try_into().unwrap(),
        )];
        let cert = params.self_signed(&key).unwrap();
        Self {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    pub fn issue(&self, spiffe_id: &str) -> Leaf {
        let now = OffsetDateTime::now_utc();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "weft");
        params.distinguished_name = dn;
        params.subject_alt_names = vec![SanType::URI(spiffe_id.try_into().unwrap())];
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
        params.not_before = now - CLOCK_SKEW;
        params.not_after = now + Duration::from_secs(3600);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// An identity directory (`tls.crt`, `tls.key`, `ca.crt`), removed on drop.
pub struct IdentityDir {
    dir: tempfile::TempDir,
}

impl IdentityDir {
    pub fn new(leaf: &Leaf, ca_pem: &str) -> Self {
        let d = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        d.write(leaf, ca_pem);
        d
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Replaces the files, each atomically (write + rename).
    pub fn write(&self, leaf: &Leaf, ca_pem: &str) {
        for (name, text) in [
            ("ca.crt", ca_pem),
            ("tls.key", &leaf.key_pem),
            ("tls.crt", &leaf.cert_pem),
        ] {
            atomic_write(self.dir.path(), name, text);
        }
    }
}

fn atomic_write(dir: &Path, name: &str, text: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(tmp, dir.join(name)).unwrap();
}
