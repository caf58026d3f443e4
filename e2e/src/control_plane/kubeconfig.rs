//! Kubeconfig files for the admin, the controller-manager and the scheduler (certificates
//! embedded, so a copied file keeps working), and the `kube::Config` built from one.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use kube::config::{KubeConfigOptions, Kubeconfig};

use super::certs::CertPair;

/// Name of the cluster, context and user entries.
pub const CONTEXT: &str = "weft-e2e";

/// Renders a kubeconfig for `server` trusting `ca_pem` and authenticating with `client`.
pub fn render(server: &str, ca_pem: &str, client: &CertPair) -> Result<String, serde_yaml::Error> {
    let doc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CONTEXT, "cluster": {
            "server": server,
            "certificate-authority-data": STANDARD.encode(ca_pem),
        }}],
        "users": [{"name": CONTEXT, "user": {
            "client-certificate-data": STANDARD.encode(&client.cert),
            "client-key-data": STANDARD.encode(&client.key),
        }}],
        "contexts": [{"name": CONTEXT, "context": {"cluster": CONTEXT, "user": CONTEXT, "namespace": "default"}}],
        "current-context": CONTEXT,
    });
    serde_yaml::to_string(&doc)
}

/// The client configuration for a kubeconfig produced by [`render`].
pub async fn client_config(kubeconfig_yaml: &str) -> Result<kube::Config, kube::config::KubeconfigError> {
    let kc = Kubeconfig::from_yaml(kubeconfig_yaml)?;
    kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn rendered_kubeconfig_round_trips_through_kube() {
        let pki = super::super::certs::Pki::generate(&[]).unwrap();
        let yaml = render("https://127.0.0.1:6443", &pki.ca.cert, &pki.admin).unwrap();
        let cfg = client_config(&yaml).await.unwrap();
        assert_eq!(cfg.cluster_url.to_string(), "https://127.0.0.1:6443/");
        assert_eq!(cfg.default_namespace, "default");
        assert_eq!(cfg.root_cert.as_ref().map(Vec::len), Some(1));
        assert!(cfg.auth_info.client_certificate_data.is_some());
    }
}
