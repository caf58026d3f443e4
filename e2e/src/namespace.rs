//! Per-test namespaces on a shared control plane: unique name, ready to hold pods (its
//! `default` service account exists), deleted when the test ends. A failing test (panic)
//! marks the control plane's logs to be kept and prints where they are.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::{Api, Client};

use crate::control_plane::ControlPlane;

/// Label on every namespace made by [`TestNamespace`].
pub const TEST_LABEL: &str = "weft.dev/e2e-test";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A namespace owned by one test.
#[derive(Debug)]
pub struct TestNamespace<'a> {
    name: String,
    cp: &'a ControlPlane,
    deleted: bool,
}

/// A DNS-label namespace name: `<prefix>-<pid>-<n>`, prefix sanitized and shortened.
pub fn unique_name(prefix: &str) -> String {
    let clean: String = prefix
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(40)
        .collect();
    let clean = clean.trim_matches('-');
    let clean = if clean.is_empty() { "t" } else { clean };
    format!(
        "{clean}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

impl<'a> TestNamespace<'a> {
    /// Creates a fresh namespace and waits (up to 60 s) for its `default` service account,
    /// without which pods are rejected.
    pub async fn create(cp: &'a ControlPlane, prefix: &str) -> Result<Self, kube::Error> {
        let client = cp.client()?;
        let name = unique_name(prefix);
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some([(TEST_LABEL.to_string(), "true".to_string())].into()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await?;
        let this = Self {
            name,
            cp,
            deleted: false,
        };
        let sa: Api<ServiceAccount> = Api::namespaced(client, &this.name);
        let deadline = Instant::now() + Duration::from_secs(60);
        while sa.get_opt("default").await?.is_none() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(this)
    }

    /// The namespace name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A new admin client (on the current runtime).
    pub fn client(&self) -> Result<Client, kube::Error> {
        self.cp.client()
    }

    /// Deletes the namespace and waits until it is gone. `on_poll` runs every poll (a test
    /// standing in for the kubelet finishes pod deletions there). Returns how long it took.
    pub async fn delete_and_wait<F, Fut>(
        mut self,
        timeout: Duration,
        mut on_poll: F,
    ) -> Result<Duration, String>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = ()>,
    {
        let began = Instant::now();
        let client = self.cp.client().map_err(|e| e.to_string())?;
        let api = Api::<Namespace>::all(client.clone());
        api.delete(&self.name, &DeleteParams::default())
            .await
            .map_err(|e| e.to_string())?;
        self.deleted = true;
        loop {
            match api.get_opt(&self.name).await.map_err(|e| e.to_string())? {
                None => return Ok(began.elapsed()),
                Some(ns) if began.elapsed() > timeout => {
                    return Err(format!(
                        "namespace {} still present after {timeout:?}: {:?}",
                        self.name, ns.status
                    ));
                }
                Some(_) => {}
            }
            on_poll(client.clone()).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for TestNamespace<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.cp.keep_logs();
            eprintln!(
                "weft-e2e: test in namespace {} failed; control-plane logs: {} (kubeconfig {})",
                self.name,
                self.cp.logs_dir().display(),
                self.cp.kubeconfig_path().display()
            );
        }
        if self.deleted {
            return;
        }
        // Best effort, on a thread with its own runtime: Drop cannot await, and the test's
        // runtime may already be shutting down.
        let (config, name) = (self.cp.config().clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            rt.block_on(async {
                if let Ok(client) = Client::try_from(config) {
                    let _ = Api::<Namespace>::all(client)
                        .delete(&name, &DeleteParams::default())
                        .await;
                }
            });
        })
        .join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_are_dns_labels() {
        let a = unique_name("CRD_validation test");
        let b = unique_name("CRD_validation test");
        assert_ne!(a, b);
        for n in [&a, &b, &unique_name("--"), &unique_name(&"x".repeat(100))] {
            assert!(n.len() <= 63, "{n}");
            assert!(
                n.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "{n}"
            );
            assert!(!n.starts_with('-') && !n.ends_with('-'), "{n}");
        }
        assert!(a.starts_with("crd-validation-test-"));
    }
}
