//! Installing weft the way `make install` does: the CRDs in `crds/` and the Gateway API
//! CRDs (`crate::gateway_api`; all awaited until `Established`), then everything in
//! `manifests/`, then the controller Deployment awaited until Available and the injector's
//! CA bundle written; plus a check that the API server really reaches the webhook through
//! its Service.

use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::PostParams;

use super::image_refs::ImageOverride;
use super::{MeshError, wait_for};
use crate::apply;

/// The controller's namespace and Deployment.
pub const SYSTEM_NAMESPACE: &str = "weft-system";
/// The controller Deployment (and Service) name.
pub const CONTROLLER: &str = "weft-controller";
/// The injector configuration.
pub const INJECTOR: &str = "weft-injector";

/// How long each install phase took.
#[derive(Debug, Clone, Default)]
pub struct InstallReport {
    /// CRDs applied and Established.
    pub crds: Vec<String>,
    /// Objects applied from `manifests/`.
    pub objects: usize,
    /// Applying CRDs + manifests.
    pub apply: Duration,
    /// Until the Deployment was Available and the CA bundle present.
    pub available: Duration,
}

/// Applies `<root>/crds` then `<root>/manifests`, waits for the controller to be Available
/// (all replicas) and for the injector's `caBundle`. `progress` gets one line per phase.
pub async fn install(
    client: &kube::Client,
    root: &Path,
    timeout: Duration,
    progress: &dyn Fn(&str),
) -> Result<InstallReport, MeshError> {
    install_with(client, root, &ImageOverride::default(), timeout, progress).await
}

/// [`install`] with weft's image references rewritten by `images` (registry and/or tag;
/// nothing else in `manifests/` changes).
pub async fn install_with(
    client: &kube::Client,
    root: &Path,
    images: &ImageOverride,
    timeout: Duration,
    progress: &dyn Fn(&str),
) -> Result<InstallReport, MeshError> {
    let began = Instant::now();
    let crds = apply::load_dir(&root.join("crds"))?;
    progress(&format!("applying {} CRDs from crds/", crds.len()));
    let mut crds = apply::install_crds(client, &crds, Duration::from_secs(60)).await?;
    progress("applying the Gateway API CRDs (unless a newer bundle is installed)");
    crds.extend(crate::gateway_api::install(client, Duration::from_secs(60)).await?);
    let mut manifests = apply::load_dir(&root.join("manifests"))?;
    if !images.is_empty() {
        let changed = override_images(&mut manifests, images)?;
        progress(&format!("image references rewritten: {changed}"));
    }
    progress(&format!("applying {} objects from manifests/", manifests.len()));
    apply::apply_all(client, &manifests, Duration::from_secs(30)).await?;
    let apply = began.elapsed();
    progress("waiting for deployment weft-system/weft-controller to be Available");
    wait_available(client, SYSTEM_NAMESPACE, CONTROLLER, timeout).await?;
    wait_ca_bundle(client, timeout).await?;
    Ok(InstallReport {
        crds,
        objects: manifests.len(),
        apply,
        available: began.elapsed() - apply,
    })
}

/// Rewrites weft's image references in `manifests` (see [`ImageOverride`]).
pub fn override_images(
    manifests: &mut [apply::Manifest],
    images: &ImageOverride,
) -> Result<usize, MeshError> {
    let mut changed = 0;
    for m in manifests.iter_mut() {
        let mut value = serde_json::to_value(&m.object).map_err(|e| MeshError::Invalid(e.to_string()))?;
        let n = images.apply(&mut value);
        if n > 0 {
            m.object = serde_json::from_value(value).map_err(|e| MeshError::Invalid(e.to_string()))?;
            changed += n;
        }
    }
    Ok(changed)
}

/// Waits until every replica of a Deployment is updated and available.
pub async fn wait_available(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    timeout: Duration,
) -> Result<(), MeshError> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    wait_for(
        &format!("deployment {namespace}/{name} Available"),
        timeout,
        || {
            let api = api.clone();
            async move {
                let d = api.get_opt(name).await.map_err(|e| e.to_string())?;
                let Some(d) = d else {
                    return Err("not found".into());
                };
                let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                let st = d.status.unwrap_or_default();
                let (avail, updated) = (
                    st.available_replicas.unwrap_or(0),
                    st.updated_replicas.unwrap_or(0),
                );
                if avail >= want && updated >= want && st.observed_generation >= d.metadata.generation {
                    Ok(Some(()))
                } else {
                    Err(format!("{avail}/{want} available, {updated}/{want} updated"))
                }
            }
        },
    )
    .await
}

async fn wait_ca_bundle(client: &kube::Client, timeout: Duration) -> Result<(), MeshError> {
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    wait_for("the injector's caBundle", timeout, || {
        let api = api.clone();
        async move {
            let c = api.get_opt(INJECTOR).await.map_err(|e| e.to_string())?;
            let set = c
                .and_then(|c| c.webhooks)
                .is_some_and(|w| !w.is_empty() && w.iter().all(|w| w.client_config.ca_bundle.is_some()));
            Ok(set.then_some(()))
        }
    })
    .await
}

/// Proves the API server calls the webhook through the `weft-controller` Service: a
/// server-side dry-run pod create in `namespace` (labelled for injection) must come back
/// injected. Retries until `timeout` (the Service's endpoints may still be settling).
pub async fn webhook_answers(
    client: &kube::Client,
    namespace: &str,
    timeout: Duration,
) -> Result<Duration, MeshError> {
    let began = Instant::now();
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "weft-injection-probe"},
        "spec": {"containers": [{"name": "app", "image": "weft/demo-app:0.1.0"}]}
    }))
    .map_err(|e| MeshError::Invalid(e.to_string()))?;
    let params = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    wait_for("the API server to call the injection webhook", timeout, || {
        let (api, pod, params) = (api.clone(), pod.clone(), params.clone());
        async move {
            let created = api.create(&params, &pod).await.map_err(|e| e.to_string())?;
            let injected = created
                .metadata
                .annotations
                .is_some_and(|a| a.contains_key("weft.dev/injected"));
            if injected {
                Ok(Some(()))
            } else {
                Err("pod came back without injection".into())
            }
        }
    })
    .await?;
    Ok(began.elapsed())
}

/// Sets the mesh-wide access and mTLS modes (MeshConfig `default`, server-side apply).
pub async fn set_mesh_modes(client: &kube::Client, access: &str, mtls: &str) -> Result<(), MeshError> {
    super::workload::apply_value(client, mesh_config(access, mtls)).await
}

/// MeshConfig `default` with these access and mTLS modes (other fields untouched on apply).
pub fn mesh_config(access: &str, mtls: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "policy.weft.dev/v1alpha1", "kind": "MeshConfig",
        "metadata": {"name": "default"},
        "spec": {"accessMode": access, "mtlsMode": mtls}
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::Value;

    fn shipped(kind: &str) -> Vec<Value> {
        crate::apply::load_dir(&crate::apply::repo_root().join("manifests"))
            .unwrap()
            .iter()
            .map(|m| serde_json::to_value(&m.object).unwrap())
            .filter(|v| v["kind"] == kind)
            .collect()
    }

    /// Issue 14 item 12: a drain never evicts both replicas at once, and the scheduler
    /// spreads them over nodes without refusing a 1-node cluster.
    #[test]
    fn the_controller_has_a_disruption_budget_and_spreads_over_nodes() {
        let deploy = shipped("Deployment")
            .into_iter()
            .find(|d| d["metadata"]["name"] == super::CONTROLLER)
            .unwrap();
        let labels = &deploy["spec"]["template"]["metadata"]["labels"];
        let replicas = deploy["spec"]["replicas"].as_i64().unwrap();
        let pdbs: Vec<Value> = shipped("PodDisruptionBudget")
            .into_iter()
            .filter(|p| {
                p["metadata"]["namespace"] == deploy["metadata"]["namespace"]
                    && p["spec"]["selector"]["matchLabels"]
                        .as_object()
                        .is_some_and(|sel| sel.iter().all(|(k, v)| labels[k] == *v))
            })
            .collect();
        assert_eq!(
            pdbs.len(),
            1,
            "one PodDisruptionBudget selects the controller pods"
        );
        let pdb = &pdbs[0];
        assert_eq!(pdb["apiVersion"], "policy/v1");
        let spec = &pdb["spec"];
        let keeps_one = spec["maxUnavailable"] == 1 || spec["minAvailable"] == 1;
        assert!(keeps_one && replicas >= 2, "{spec} with {replicas} replicas");

        let spread = deploy["spec"]["template"]["spec"]["topologySpreadConstraints"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let by_host = spread
            .iter()
            .find(|c| c["topologyKey"] == "kubernetes.io/hostname")
            .unwrap_or_else(|| panic!("no hostname spread in {spread:?}"));
        assert_eq!(
            by_host["whenUnsatisfiable"], "ScheduleAnyway",
            "a 1-node cluster still schedules"
        );
        assert_eq!(by_host["maxSkew"], 1);
        let sel = by_host["labelSelector"]["matchLabels"].as_object().unwrap();
        assert!(
            !sel.is_empty() && sel.iter().all(|(k, v)| labels[k] == *v),
            "{sel:?}"
        );
    }
}
