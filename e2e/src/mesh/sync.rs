//! Knowing when a config change is in force: the operator's per-identity ConfigMap
//! (`weft-proxy-<sa>`, hash annotation `weft.dev/config-hash`) and what a pod's sidecar
//! reports on its admin port (`GET 127.0.0.1:15020/config`, asked from inside the pod's
//! network namespace: beyond probes and metrics the admin API answers loopback peers only,
//! and loopback is never redirected).

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::Api;
use weft_proxy_config::{CATALOG_KEY, CatalogIndex, CatalogShard, INDEX_KEY, ProxyConfig};

use super::{MeshError, wait_for};
use crate::worker::pods::Cri;

/// Annotation holding the rendered config's hash.
pub const HASH_ANNOTATION: &str = "weft.dev/config-hash";

/// The identity's ConfigMap: (version, parsed `config.json`), if present. The version is
/// its hash annotation; a config that references the shared service catalog
/// (`permissive` mode) is assembled with its shards, as the sidecar does, so it compares
/// equal to what the sidecar runs, and its version includes the catalog index's hash.
pub async fn identity_config(
    client: &kube::Client,
    namespace: &str,
    service_account: &str,
) -> Result<Option<(String, serde_json::Value)>, String> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let Some(cm) = api
        .get_opt(&format!("weft-proxy-{service_account}"))
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(None);
    };
    let hash = cm
        .metadata
        .annotations
        .and_then(|a| a.get(HASH_ANNOTATION).cloned())
        .unwrap_or_default();
    let json = cm
        .data
        .and_then(|d| d.get("config.json").cloned())
        .unwrap_or_default();
    let value: serde_json::Value = serde_json::from_str(&json).map_err(|e| format!("config.json: {e}"))?;
    let (value, index_hash) = assemble_versioned(client, value).await?;
    // The catalog moves without the identity's ConfigMap: both make the version.
    let hash = match index_hash {
        Some(ix) => format!("{hash}+{ix}"),
        None => hash,
    };
    Ok(Some((hash, value)))
}

/// A rendered config document as the sidecar runs it: if it references the shared
/// service catalog (`permissive` mode), the shards its index lists are fetched and
/// assembled in.
pub async fn assembled(client: &kube::Client, value: serde_json::Value) -> Result<serde_json::Value, String> {
    Ok(assemble_versioned(client, value).await?.0)
}

/// [`assembled`], plus the hash annotation of the catalog index it used (if any).
async fn assemble_versioned(
    client: &kube::Client,
    value: serde_json::Value,
) -> Result<(serde_json::Value, Option<String>), String> {
    if value.get("catalog").is_none() {
        return Ok((value, None));
    }
    let cfg: ProxyConfig = serde_json::from_value(value).map_err(|e| format!("config.json: {e}"))?;
    let Some(catalog) = cfg.catalog.clone() else {
        return Err("config.json: catalog vanished".into());
    };
    let shards_api: Api<ConfigMap> = Api::namespaced(client.clone(), &catalog.namespace);
    let index_cm = shards_api
        .get(&catalog.index)
        .await
        .map_err(|e| format!("index {}: {e}", catalog.index))?;
    let index_hash = index_cm
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(HASH_ANNOTATION).cloned())
        .unwrap_or_default();
    let index = index_cm
        .data
        .and_then(|d| d.get(INDEX_KEY).cloned())
        .ok_or_else(|| format!("index: no {INDEX_KEY}"))?;
    let index = CatalogIndex::from_json(&index).map_err(|e| format!("index: {e}"))?;
    let mut shards = Vec::with_capacity(index.shards.len());
    for name in &index.shards {
        let cm = shards_api
            .get(name)
            .await
            .map_err(|e| format!("shard {name}: {e}"))?;
        let text = cm
            .data
            .and_then(|d| d.get(CATALOG_KEY).cloned())
            .ok_or_else(|| format!("shard {name}: no {CATALOG_KEY}"))?;
        shards.push(CatalogShard::from_json(&text).map_err(|e| format!("shard {name}: {e}"))?);
    }
    let full = cfg.assemble(shards).map_err(|e| e.to_string())?;
    let value = serde_json::to_value(&full).map_err(|e| e.to_string())?;
    Ok((value, Some(index_hash)))
}

/// The config the sidecar of `pod` has loaded (`GET http://127.0.0.1:15020/config` from
/// inside the pod's network namespace).
pub async fn proxy_config(cri: &Cri, pod: &Pod) -> Result<serde_json::Value, String> {
    let uid = pod.metadata.uid.as_deref().ok_or("pod without uid")?;
    let netns = cri.pod_network(uid)?.netns;
    let out = tokio::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &netns,
            "curl",
            "-sS",
            "-m",
            "5",
            "-w",
            "\n%{http_code}",
        ])
        .arg("http://127.0.0.1:15020/config")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(8), out)
        .await
        .map_err(|_| "admin /config timed out".to_string())?
        .map_err(|e| format!("running curl in {netns}: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let (body, code) = text.trim_end().rsplit_once('\n').unwrap_or(("", text.trim()));
    if code != "200" {
        return Err(format!(
            "admin /config: HTTP {code} {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    serde_json::from_str(body).map_err(|e| format!("admin /config body: {e}"))
}

/// The hash of the pod's identity ConfigMap now (empty if none).
pub async fn current_hash(client: &kube::Client, pod: &Pod) -> Result<String, MeshError> {
    let (ns, sa) = pod_identity(pod)?;
    let cfg = identity_config(client, &ns, &sa)
        .await
        .map_err(MeshError::Traffic)?;
    Ok(cfg.map(|(h, _)| h).unwrap_or_default())
}

fn pod_identity(pod: &Pod) -> Result<(String, String), MeshError> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let sa = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_else(|| "default".into());
    Ok((ns, sa))
}

/// Waits until the pod's identity ConfigMap no longer has hash `before` and the pod's
/// sidecar serves exactly that new config. Returns how long it took.
pub async fn wait_in_force(
    client: &kube::Client,
    cri: &Cri,
    pod: &Pod,
    before: &str,
    timeout: Duration,
) -> Result<Duration, MeshError> {
    let began = Instant::now();
    let (ns, sa) = pod_identity(pod)?;
    wait_for(
        &format!("the new config of {ns}/{sa} in its sidecar"),
        timeout,
        || {
            let (ns, sa) = (ns.clone(), sa.clone());
            async move {
                let Some((hash, rendered)) = identity_config(client, &ns, &sa).await? else {
                    return Err("no ConfigMap yet".into());
                };
                if hash == before {
                    return Err("ConfigMap unchanged".into());
                }
                let loaded = proxy_config(cri, pod).await?;
                if loaded == rendered {
                    Ok(Some(()))
                } else {
                    Err("sidecar still on the old config".into())
                }
            }
        },
    )
    .await?;
    Ok(began.elapsed())
}

/// The current ConfigMap hash of each pod's identity.
pub async fn hashes(client: &kube::Client, pods: &[Pod]) -> Result<Vec<String>, MeshError> {
    let mut out = Vec::with_capacity(pods.len());
    for p in pods {
        out.push(current_hash(client, p).await?);
    }
    Ok(out)
}

/// [`wait_in_force`] for every pod (with its hash from [`hashes`]). Returns the total time.
pub async fn wait_all(
    client: &kube::Client,
    cri: &Cri,
    pods: &[Pod],
    before: &[String],
    timeout: Duration,
) -> Result<Duration, MeshError> {
    let began = Instant::now();
    for (p, h) in pods.iter().zip(before) {
        wait_in_force(client, cri, p, h, timeout).await?;
    }
    Ok(began.elapsed())
}

/// The split of service `root_key` (`namespace/name`) in a loaded proxy config, as
/// (backend service name, weight) pairs; `None` when the service has no split.
pub fn split_weights(config: &serde_json::Value, root_key: &str) -> Option<Vec<(String, u64)>> {
    let backends = config
        .get("services")?
        .get(root_key)?
        .get("split")?
        .get("backends")?
        .as_array()?;
    backends
        .iter()
        .map(|b| {
            let key = b.get("service")?.as_str()?;
            let name = key.rsplit('/').next().unwrap_or(key);
            Some((name.to_string(), b.get("weight")?.as_u64()?))
        })
        .collect()
}

/// Whether `got` splits in the same proportions as `want` (same backends, weights
/// proportional: the config stores milli-units).
pub fn same_proportions(got: &[(String, u64)], want: &[(&str, u64)]) -> bool {
    let gsum: u64 = got.iter().map(|g| g.1).sum();
    let wsum: u64 = want.iter().map(|w| w.1).sum();
    got.len() == want.len()
        && gsum > 0
        && wsum > 0
        && want.iter().all(|(name, w)| {
            got.iter().find(|(g, _)| g == name).is_some_and(|(_, gw)| {
                u128::from(*gw) * u128::from(wsum) == u128::from(*w) * u128::from(gsum)
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_split_weights_and_compares_proportions() {
        let cfg = json!({"services": {"ns/root": {"split": {"source": "ns/s", "backends": [
            {"service": "ns/b", "weight": 1000}, {"service": "ns/c", "weight": 0}]}}}});
        let got = split_weights(&cfg, "ns/root").unwrap();
        assert_eq!(got, vec![("b".to_string(), 1000), ("c".to_string(), 0)]);
        assert!(same_proportions(&got, &[("b", 1), ("c", 0)]));
        assert!(!same_proportions(&got, &[("b", 0), ("c", 1)]));
        assert!(!same_proportions(&got, &[("b", 1), ("c", 1)]));
        assert!(split_weights(&cfg, "ns/other").is_none());
        let even = vec![("b".to_string(), 750), ("c".to_string(), 250)];
        assert!(same_proportions(&even, &[("b", 75), ("c", 25)]));
    }
}
