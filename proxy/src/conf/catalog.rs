//! The shared service catalog's shards (`permissive` access mode): fetched from
//! the API by name and cached. Shards are content-addressed and immutable, so a
//! cached shard never goes stale; the cache keeps only what the current config
//! references.

use super::kube_http::{KubeError, KubeHttp};
use http::StatusCode;
use serde_json::Value;
use std::collections::HashMap;
use weft_proxy_config::{CATALOG_KEY, CatalogShard};

/// Shards by ConfigMap name.
#[derive(Debug, Default)]
pub struct ShardCache {
    shards: HashMap<String, CatalogShard>,
}

impl ShardCache {
    /// The shards `names` (in `namespace`) in order, fetching those not cached yet.
    pub async fn resolve(
        &mut self,
        http: &KubeHttp,
        namespace: &str,
        names: &[String],
    ) -> Result<Vec<CatalogShard>, KubeError> {
        for name in names {
            if !self.shards.contains_key(name) {
                let shard = fetch(http, namespace, name).await?;
                self.shards.insert(name.clone(), shard);
            }
        }
        self.shards.retain(|name, _| names.contains(name));
        names
            .iter()
            .map(|name| {
                self.shards.get(name).cloned().ok_or_else(|| KubeError::Shard {
                    name: name.clone(),
                    reason: "not in the cache after fetching".into(),
                })
            })
            .collect()
    }
}

async fn fetch(http: &KubeHttp, namespace: &str, name: &str) -> Result<CatalogShard, KubeError> {
    let shard_error = |reason: String| KubeError::Shard {
        name: format!("{namespace}/{name}"),
        reason,
    };
    let path = format!("/api/v1/namespaces/{namespace}/configmaps/{name}");
    let (status, body) = http.get_bytes(&path).await?;
    if status != StatusCode::OK {
        return Err(shard_error(format!("API server answered {status}")));
    }
    let obj: Value = serde_json::from_slice(&body).map_err(|e| shard_error(e.to_string()))?;
    let text = obj
        .get("data")
        .and_then(|d| d.get(CATALOG_KEY))
        .and_then(Value::as_str)
        .ok_or_else(|| shard_error(format!("no {CATALOG_KEY} key")))?;
    CatalogShard::from_json(text).map_err(|e| shard_error(e.to_string()))
}
