//! The Gateway API standard-channel CRDs (GAMMA, docs/gamma.md), installed next to weft's
//! own: read from the file `make gateway-api-crds` writes (`$WEFT_GATEWAY_API_CRDS`, from
//! the published Go module), and applied only where the cluster has no newer bundle
//! (annotation `gateway.networking.k8s.io/bundle-version`), so weft never downgrades an
//! installation another project made.

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;

use crate::apply::{self, ApplyError, Manifest};

/// The bundle version annotation on every Gateway API CRD.
pub const BUNDLE_VERSION: &str = "gateway.networking.k8s.io/bundle-version";
/// The version `mk/gateway.mk` pins (the file's default location uses it).
pub const VERSION: &str = "v1.6.3";

/// Where the CRDs are: `$WEFT_GATEWAY_API_CRDS`, else the cache path the make target uses.
pub fn crds_path() -> PathBuf {
    if let Some(p) = std::env::var_os("WEFT_GATEWAY_API_CRDS") {
        return PathBuf::from(p);
    }
    let cache = std::env::var_os("WEFT_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/weft"));
    cache
        .join("gateway-api")
        .join(VERSION)
        .join("standard-install.yaml")
}

/// The CRD manifests, or an error naming `make gateway-api-crds` when the file is missing.
pub fn crds() -> Result<Vec<Manifest>, ApplyError> {
    let path = crds_path();
    let text = std::fs::read_to_string(&path).map_err(|source| ApplyError::Read {
        path: path.clone(),
        source: std::io::Error::new(source.kind(), format!("{source} (run `make gateway-api-crds`)")),
    })?;
    apply::parse_docs(&path, &text)
}

/// `v1.6.3` → `(1, 6, 3)`; anything else → `None` (treated as unknown, never "newer").
fn parse_version(v: &str) -> Option<(u64, u64, u64)> {
    let core = v.strip_prefix('v')?.split(['-', '+']).next()?;
    let mut it = core.split('.').map(|p| p.parse::<u64>().ok());
    Some((it.next()??, it.next()??, it.next().flatten().unwrap_or(0)))
}

/// Whether the installed bundle `installed` is newer than `ours`.
pub fn is_newer(installed: &str, ours: &str) -> bool {
    matches!((parse_version(installed), parse_version(ours)), (Some(a), Some(b)) if a > b)
}

/// Applies the Gateway API CRDs except those the cluster already has at a newer bundle
/// version; waits until each applied one is Established. Returns the names applied.
pub async fn install(client: &kube::Client, timeout: Duration) -> Result<Vec<String>, ApplyError> {
    // The bundle also carries the `safe-upgrades` ValidatingAdmissionPolicy and its binding
    // (config/crd/standard/gateway.networking.k8s.io_vap_safeupgrades.yaml): applied after
    // the CRDs, like `kubectl apply -f standard-install.yaml`.
    let (manifests, others): (Vec<Manifest>, Vec<Manifest>) = crds()?
        .into_iter()
        .partition(|m| m.gvk().is_ok_and(|g| g.kind == "CustomResourceDefinition"));
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut todo = Vec::new();
    for m in manifests {
        let ours = m
            .object
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(BUNDLE_VERSION))
            .cloned()
            .unwrap_or_default();
        let installed = api
            .get_opt(m.name())
            .await
            .map_err(|source| ApplyError::Api {
                kind: "CustomResourceDefinition".into(),
                name: m.name().to_string(),
                source,
            })?
            .and_then(|crd| {
                crd.metadata
                    .annotations
                    .and_then(|mut a| a.remove(BUNDLE_VERSION))
            });
        if installed.as_deref().is_some_and(|v| is_newer(v, &ours)) {
            continue;
        }
        todo.push(m);
    }
    let applied = apply::install_crds(client, &todo, timeout).await?;
    if !todo.is_empty() {
        apply::apply_all(client, &others, timeout).await?;
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_bundles_are_kept_and_the_file_parses() {
        assert!(is_newer("v1.7.0", "v1.6.3"));
        assert!(is_newer("v1.6.10", "v1.6.3"));
        assert!(!is_newer("v1.6.3", "v1.6.3"));
        assert!(!is_newer("v1.5.1", "v1.6.3"));
        assert!(!is_newer("garbage", "v1.6.3"));
        assert!(is_newer("v2.0.0-rc.1", "v1.6.3"));
    }
}
