//! The control plane's PKI, made with rcgen: a cluster CA, the API server's serving
//! certificate, the service-account signing key, and client certificates for the admin
//! (group `system:masters`), the controller-manager, the scheduler and the API server's
//! own client identity towards kubelets (`kubectl logs`/`exec`/`port-forward`).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// Addresses every API server serving certificate carries: loopback, the test node's
/// address on the pod bridge (where pods reach the API server through the `kubernetes`
/// Service endpoint) and the first service IP (the `kubernetes` ClusterIP).
pub const DEFAULT_SERVING_IPS: [&str; 3] = ["127.0.0.1", "198.18.0.1", "198.19.0.1"];

const SERVING_DNS: [&str; 5] = [
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
];

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone)]
pub struct CertPair {
    /// PEM certificate.
    pub cert: String,
    /// PEM (PKCS#8) private key.
    pub key: String,
}

/// All key material of one control plane (PEM strings; nothing touches disk here).
#[derive(Debug, Clone)]
pub struct Pki {
    /// The cluster CA (signs every other certificate; also the CSR signer).
    pub ca: CertPair,
    /// kube-apiserver serving certificate.
    pub serving: CertPair,
    /// Service-account token signing key (private, PKCS#8).
    pub sa_private: String,
    /// Its public key (PKIX).
    pub sa_public: String,
    /// Admin client certificate (`system:masters`).
    pub admin: CertPair,
    /// kube-controller-manager client certificate.
    pub controller_manager: CertPair,
    /// kube-scheduler client certificate.
    pub scheduler: CertPair,
    /// The API server's client certificate for kubelets (`system:masters`, as kubeadm's
    /// `apiserver-kubelet-client`).
    pub kubelet_client: CertPair,
}

/// Where [`Pki::write_to`] put the files.
#[derive(Debug, Clone)]
pub struct PkiPaths {
    /// CA certificate.
    pub ca_cert: PathBuf,
    /// CA key.
    pub ca_key: PathBuf,
    /// Serving certificate.
    pub serving_cert: PathBuf,
    /// Serving key.
    pub serving_key: PathBuf,
    /// SA private key.
    pub sa_private: PathBuf,
    /// SA public key.
    pub sa_public: PathBuf,
    /// The API server's kubelet client certificate.
    pub kubelet_client_cert: PathBuf,
    /// Its key.
    pub kubelet_client_key: PathBuf,
}

/// The user name of the admin client certificate.
pub const ADMIN_USER: &str = "weft-e2e-admin";
/// The user name the API server presents to kubelets.
pub const KUBELET_CLIENT_USER: &str = "kube-apiserver-kubelet-client";

impl Pki {
    /// Generates fresh key material. `extra_ips` are added to the serving certificate's SANs.
    pub fn generate(extra_ips: &[IpAddr]) -> Result<Self, rcgen::Error> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "weft-e2e-cluster-ca");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let ca = CertPair {
            cert: ca_cert.pem(),
            key: ca_key.serialize_pem(),
        };
        let issuer = Issuer::new(ca_params, ca_key);

        let mut sans: Vec<String> = SERVING_DNS.iter().map(|s| s.to_string()).collect();
        sans.extend(DEFAULT_SERVING_IPS.iter().map(|s| s.to_string()));
        for ip in extra_ips {
            let ip = ip.to_string();
            if !sans.contains(&ip) {
                sans.push(ip);
            }
        }
        let serving = leaf(
            sans,
            "kube-apiserver",
            None,
            ExtendedKeyUsagePurpose::ServerAuth,
            &issuer,
        )?;
        let admin = client(ADMIN_USER, Some("system:masters"), &issuer)?;
        let controller_manager = client("system:kube-controller-manager", None, &issuer)?;
        let scheduler = client("system:kube-scheduler", None, &issuer)?;
        let kubelet_client = client(KUBELET_CLIENT_USER, Some("system:masters"), &issuer)?;
        let sa = KeyPair::generate()?;
        Ok(Self {
            ca,
            serving,
            sa_private: sa.serialize_pem(),
            sa_public: sa.public_key_pem(),
            admin,
            controller_manager,
            scheduler,
            kubelet_client,
        })
    }

    /// Writes the files the server processes read (keys with mode 0600) into `dir`.
    pub fn write_to(&self, dir: &Path) -> std::io::Result<PkiPaths> {
        std::fs::create_dir_all(dir)?;
        let paths = PkiPaths {
            ca_cert: dir.join("ca.crt"),
            ca_key: dir.join("ca.key"),
            serving_cert: dir.join("apiserver.crt"),
            serving_key: dir.join("apiserver.key"),
            sa_private: dir.join("sa.key"),
            sa_public: dir.join("sa.pub"),
            kubelet_client_cert: dir.join("apiserver-kubelet-client.crt"),
            kubelet_client_key: dir.join("apiserver-kubelet-client.key"),
        };
        write(&paths.ca_cert, &self.ca.cert, false)?;
        write(&paths.ca_key, &self.ca.key, true)?;
        write(&paths.serving_cert, &self.serving.cert, false)?;
        write(&paths.serving_key, &self.serving.key, true)?;
        write(&paths.sa_private, &self.sa_private, true)?;
        write(&paths.sa_public, &self.sa_public, false)?;
        write(&paths.kubelet_client_cert, &self.kubelet_client.cert, false)?;
        write(&paths.kubelet_client_key, &self.kubelet_client.key, true)?;
        Ok(paths)
    }
}

pub(crate) fn client(
    user: &str,
    group: Option<&str>,
    issuer: &Issuer<'_, KeyPair>,
) -> Result<CertPair, rcgen::Error> {
    leaf(
        Vec::new(),
        user,
        group,
        ExtendedKeyUsagePurpose::ClientAuth,
        issuer,
    )
}

pub(crate) fn leaf(
    sans: Vec<String>,
    common_name: &str,
    organization: Option<&str>,
    usage: ExtendedKeyUsagePurpose,
    issuer: &Issuer<'_, KeyPair>,
) -> Result<CertPair, rcgen::Error> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(sans)?;
    params.distinguished_name.push(DnType::CommonName, common_name);
    if let Some(org) = organization {
        params.distinguished_name.push(DnType::OrganizationName, org);
    }
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(&key, issuer)?;
    Ok(CertPair {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

pub(crate) fn write(path: &Path, contents: &str, secret: bool) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = std::fs::File::options();
    opts.write(true)
        .create(true)
        .truncate(true)
        .mode(if secret { 0o600 } else { 0o644 });
    std::io::Write::write_all(&mut opts.open(path)?, contents.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::*;

    fn parse(pem_text: &str) -> Vec<u8> {
        let (_, pem) = x509_parser::pem::parse_x509_pem(pem_text.as_bytes()).unwrap();
        pem.contents
    }

    #[test]
    fn serving_cert_has_sans_and_chains_to_ca() {
        let pki = Pki::generate(&["10.1.2.3".parse().unwrap()]).unwrap();
        let ca_der = parse(&pki.ca.cert);
        let (_, ca) = X509Certificate::from_der(&ca_der).unwrap();
        assert!(ca.is_ca());
        let der = parse(&pki.serving.cert);
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        cert.verify_signature(Some(ca.public_key())).unwrap();
        let san = cert.subject_alternative_name().unwrap().unwrap();
        let ips: Vec<String> = san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::IPAddress(b) if b.len() == 4 => {
                    Some(format!("{}.{}.{}.{}", b[0], b[1], b[2], b[3]))
                }
                _ => None,
            })
            .collect();
        for ip in ["127.0.0.1", "198.18.0.1", "198.19.0.1", "10.1.2.3"] {
            assert!(ips.contains(&ip.to_string()), "{ip} missing from {ips:?}");
        }
        let dns = san
            .value
            .general_names
            .iter()
            .any(|n| matches!(n, GeneralName::DNSName("kubernetes.default.svc")));
        assert!(dns);
    }

    #[test]
    fn admin_is_in_system_masters() {
        let pki = Pki::generate(&[]).unwrap();
        let der = parse(&pki.admin.cert);
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        let org: Vec<&str> = cert
            .subject()
            .iter_organization()
            .filter_map(|o| o.as_str().ok())
            .collect();
        assert_eq!(org, ["system:masters"]);
        let cn: Vec<&str> = cert
            .subject()
            .iter_common_name()
            .filter_map(|o| o.as_str().ok())
            .collect();
        assert_eq!(cn, [ADMIN_USER]);
        assert!(cert.extended_key_usage().unwrap().unwrap().value.client_auth);
    }

    #[test]
    fn keys_are_private_on_disk() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let paths = Pki::generate(&[]).unwrap().write_to(dir.path()).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&paths.ca_key), 0o600);
        assert_eq!(mode(&paths.sa_private), 0o600);
        assert_eq!(mode(&paths.ca_cert), 0o644);
        assert!(
            std::fs::read_to_string(&paths.sa_public)
                .unwrap()
                .contains("BEGIN PUBLIC KEY")
        );
    }
}
