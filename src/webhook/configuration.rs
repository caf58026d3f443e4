//! The `weft-injector` MutatingWebhookConfiguration, built in code so manifests,
//! the e2e tests and the certificate manager agree on it.
//!
//! `failurePolicy: Fail`: while no webhook replica answers, pod creation in meshed
//! namespaces is refused (controllers retry) instead of silently starting pods
//! without a sidecar. `weft-system` and `kube-system` are excluded by the
//! namespaceSelector, so the controller itself can always be (re)started.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations, ServiceReference, WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement, ObjectMeta};

use super::names::{ANN_INJECT, SYSTEM_NAMESPACE};
use super::server::INJECT_PATH;

/// Name of the MutatingWebhookConfiguration (and of the Service in front of the webhook).
pub const CONFIGURATION_NAME: &str = "weft-injector";
/// Name of the one webhook entry.
pub const WEBHOOK_NAME: &str = "inject.weft.dev";

/// How the API server reaches the webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A Service (in-cluster deployment).
    Service {
        /// Service namespace.
        namespace: String,
        /// Service name.
        name: String,
        /// Service port.
        port: i32,
    },
    /// A URL such as `https://127.0.0.1:9443/inject` (local control planes, e2e).
    Url(String),
}

/// Builds the configuration; `ca_bundle_pem` is the CA the API server must trust.
pub fn webhook_configuration(
    endpoint: &Endpoint,
    ca_bundle_pem: Option<&str>,
) -> MutatingWebhookConfiguration {
    let (service, url) = match endpoint {
        Endpoint::Service {
            namespace,
            name,
            port,
        } => (
            Some(ServiceReference {
                namespace: namespace.clone(),
                name: name.clone(),
                path: Some(INJECT_PATH.into()),
                port: Some(*port),
            }),
            None,
        ),
        Endpoint::Url(u) => (None, Some(u.clone())),
    };
    let webhook = MutatingWebhook {
        name: WEBHOOK_NAME.into(),
        admission_review_versions: vec!["v1".into()],
        side_effects: "None".into(),
        failure_policy: Some("Fail".into()),
        match_policy: Some("Equivalent".into()),
        reinvocation_policy: Some("Never".into()),
        timeout_seconds: Some(10),
        client_config: WebhookClientConfig {
            ca_bundle: ca_bundle_pem.map(|p| ByteString(p.as_bytes().to_vec())),
            service,
            url,
        },
        rules: Some(vec![RuleWithOperations {
            api_groups: Some(vec!["".into()]),
            api_versions: Some(vec!["v1".into()]),
            operations: Some(vec!["CREATE".into()]),
            resources: Some(vec!["pods".into()]),
            scope: Some("Namespaced".into()),
        }]),
        namespace_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(ANN_INJECT.to_string(), "enabled".to_string())])),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "kubernetes.io/metadata.name".into(),
                operator: "NotIn".into(),
                values: Some(vec![SYSTEM_NAMESPACE.into(), "kube-system".into()]),
            }]),
        }),
        ..Default::default()
    };
    MutatingWebhookConfiguration {
        metadata: ObjectMeta {
            name: Some(CONFIGURATION_NAME.into()),
            ..Default::default()
        },
        webhooks: Some(vec![webhook]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_configuration_has_selector_policy_and_bundle() {
        let c = webhook_configuration(
            &Endpoint::Url("https://127.0.0.1:9443/inject".into()),
            Some("PEM"),
        );
        let v = serde_json::to_value(&c).unwrap();
        let w = &v["webhooks"][0];
        assert_eq!(w["failurePolicy"], "Fail");
        assert_eq!(w["sideEffects"], "None");
        assert_eq!(w["clientConfig"]["url"], "https://127.0.0.1:9443/inject");
        assert_eq!(w["clientConfig"]["caBundle"], "UEVN");
        assert_eq!(
            w["namespaceSelector"]["matchLabels"]["weft.dev/inject"],
            "enabled"
        );
        assert_eq!(w["rules"][0]["operations"][0], "CREATE");
        let s = webhook_configuration(
            &Endpoint::Service {
                namespace: "weft-system".into(),
                name: "weft-injector".into(),
                port: 443,
            },
            None,
        );
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["webhooks"][0]["clientConfig"]["service"]["path"], "/inject");
        assert!(v["webhooks"][0]["clientConfig"].get("caBundle").is_none());
    }
}
