//! The node's identities, issued by the cluster CA: the kubelet's client certificate
//! (`system:node:<name>` in `system:nodes`, so the Node authorizer and NodeRestriction
//! apply), its serving certificate (IP SAN = the node address, which the API server
//! verifies for logs/exec/port-forward), and kube-proxy's client certificate
//! (`system:kube-proxy`, bound to `system:node-proxier` by the default RBAC policy).

use std::net::IpAddr;

use rcgen::{ExtendedKeyUsagePurpose, Issuer, KeyPair};

use super::layout::NodeLayout;
use crate::control_plane::certs::{self, CertPair};
use crate::control_plane::kubeconfig;

/// Why the node's identities could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// Reading the CA or writing a file failed.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    /// Certificate generation failed.
    #[error("node certificates: {0}")]
    Cert(#[from] rcgen::Error),
    /// A kubeconfig could not be rendered.
    #[error("node kubeconfig: {0}")]
    Kubeconfig(#[from] serde_yaml::Error),
}

/// The node's certificates (PEM).
#[derive(Debug, Clone)]
pub struct NodePki {
    /// The kubelet's client certificate.
    pub kubelet_client: CertPair,
    /// The kubelet's serving certificate.
    pub kubelet_serving: CertPair,
    /// kube-proxy's client certificate.
    pub kube_proxy: CertPair,
}

impl NodePki {
    /// Issues the node's certificates with the CA whose PEM files are given.
    pub fn issue(
        ca_cert_pem: &str,
        ca_key_pem: &str,
        node_name: &str,
        node_ip: IpAddr,
    ) -> Result<Self, PkiError> {
        let key = KeyPair::from_pem(ca_key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(ca_cert_pem, key)?;
        Ok(Self {
            kubelet_client: certs::client(
                &format!("system:node:{node_name}"),
                Some("system:nodes"),
                &issuer,
            )?,
            kubelet_serving: certs::leaf(
                vec![node_ip.to_string(), node_name.to_string()],
                &format!("system:node:{node_name}"),
                Some("system:nodes"),
                ExtendedKeyUsagePurpose::ServerAuth,
                &issuer,
            )?,
            kube_proxy: certs::client("system:kube-proxy", None, &issuer)?,
        })
    }

    /// Writes the kubelet's serving pair and both kubeconfigs (talking to `server`).
    pub fn write(&self, layout: &NodeLayout, server: &str, ca_cert_pem: &str) -> Result<(), PkiError> {
        let io = |what: &str| {
            let what = what.to_string();
            move |e| PkiError::Io(what, e)
        };
        certs::write(&layout.pki.join("kubelet.crt"), &self.kubelet_serving.cert, false)
            .map_err(io("writing kubelet.crt"))?;
        certs::write(&layout.pki.join("kubelet.key"), &self.kubelet_serving.key, true)
            .map_err(io("writing kubelet.key"))?;
        let kubelet = kubeconfig::render(server, ca_cert_pem, &self.kubelet_client)?;
        certs::write(&layout.kubelet_kubeconfig, &kubelet, true)
            .map_err(io("writing the kubelet kubeconfig"))?;
        let proxy = kubeconfig::render(server, ca_cert_pem, &self.kube_proxy)?;
        certs::write(&layout.kube_proxy_kubeconfig, &proxy, true)
            .map_err(io("writing the kube-proxy kubeconfig"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::*;

    fn names(pem_text: &str) -> (Vec<String>, Vec<String>, Vec<String>) {
        let (_, pem) = x509_parser::pem::parse_x509_pem(pem_text.as_bytes()).unwrap();
        let (_, cert) = X509Certificate::from_der(&pem.contents).unwrap();
        let cn = cert
            .subject()
            .iter_common_name()
            .map(|a| a.as_str().unwrap().to_string())
            .collect();
        let org = cert
            .subject()
            .iter_organization()
            .map(|a| a.as_str().unwrap().to_string())
            .collect();
        let sans = cert
            .subject_alternative_name()
            .unwrap()
            .map(|s| {
                s.value
                    .general_names
                    .iter()
                    .map(|n| match n {
                        GeneralName::IPAddress(b) => {
                            b.iter().map(u8::to_string).collect::<Vec<_>>().join(".")
                        }
                        GeneralName::DNSName(d) => d.to_string(),
                        other => format!("{other:?}"),
                    })
                    .collect()
            })
            .unwrap_or_default();
        (cn, org, sans)
    }

    #[test]
    fn node_identities_follow_the_node_authorizer_naming() {
        let cp = crate::control_plane::certs::Pki::generate(&[]).unwrap();
        let pki = NodePki::issue(
            &cp.ca.cert,
            &cp.ca.key,
            "weft-node-0",
            "198.18.0.1".parse().unwrap(),
        )
        .unwrap();
        let (cn, org, _) = names(&pki.kubelet_client.cert);
        assert_eq!(
            (cn, org),
            (
                vec!["system:node:weft-node-0".to_string()],
                vec!["system:nodes".to_string()]
            )
        );
        let (_, _, sans) = names(&pki.kubelet_serving.cert);
        assert_eq!(sans, ["198.18.0.1", "weft-node-0"]);
        let (cn, _, _) = names(&pki.kube_proxy.cert);
        assert_eq!(cn, ["system:kube-proxy"]);
    }
}
