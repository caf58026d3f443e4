//! The shared service catalog of `permissive` access mode (schema in
//! [`weft_proxy_config::CatalogShard`]): every service rendered and serialized
//! once, instead of once per identity, and split into content-addressed shards
//! that each fit a ConfigMap with room to grow.
//!
//! Sharding is by a stable hash of the service key into a power-of-two number of
//! buckets sized for about [`SHARD_TARGET`] bytes each, so an endpoint change
//! rewrites one shard, not all of them; a bucket that would still exceed
//! [`MAX_CONFIG_BYTES`] doubles the bucket count. A shard's name is the hash of
//! its content; the index ConfigMap [`INDEX_NAME`] lists the current shards, and
//! identity configs name only the index, so they do not change with the catalog.

use super::MAX_CONFIG_BYTES;
use sha2::Digest;
use std::collections::BTreeMap;
use weft_proxy_config::{
    AccessMode, CatalogIndex, CatalogRef, Identity, MeshSettings, MtlsMode, ProxyConfig, SCHEMA_VERSION,
    Service, ValidationError,
};

/// Prefix of shard ConfigMap names: `weft-catalog-<16 hex of the content hash>`.
pub const SHARD_PREFIX: &str = "weft-catalog-";
/// Name of the index ConfigMap listing the current shards.
pub const INDEX_NAME: &str = "weft-catalog";
/// Average shard payload aimed for: half the limit, so shards absorb growth.
pub const SHARD_TARGET: usize = MAX_CONFIG_BYTES / 2;

/// One shard, ready to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedShard {
    /// ConfigMap name (content-addressed).
    pub name: String,
    /// The [`weft_proxy_config::CatalogShard`] JSON.
    pub json: String,
    /// Hex SHA-256 of `json`.
    pub hash: String,
}

/// The whole catalog of one render.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    /// Namespace the shards are written to.
    pub namespace: String,
    /// Shards in bucket order (the order identity configs list them).
    pub shards: Vec<RenderedShard>,
}

impl Catalog {
    /// Shard names in order.
    pub fn names(&self) -> Vec<String> {
        self.shards.iter().map(|s| s.name.clone()).collect()
    }

    /// The index document listing the shards.
    pub fn index(&self) -> CatalogIndex {
        CatalogIndex {
            schema_version: SCHEMA_VERSION,
            shards: self.names(),
        }
    }

    /// What identity configs reference.
    pub fn reference(&self) -> CatalogRef {
        CatalogRef {
            namespace: self.namespace.clone(),
            index: INDEX_NAME.to_string(),
        }
    }
}

/// Why no catalog could be built.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("service {key} alone is {bytes} bytes, over the {MAX_CONFIG_BYTES}-byte shard limit")]
    TooLarge { key: String, bytes: usize },
    #[error("serializing: {0}")]
    Json(#[from] serde_json::Error),
}

/// Validates `services` as a whole (split backends and fallbacks resolve within
/// it) and shards it. `services` is borrowed back unchanged.
pub fn build(
    services: &mut BTreeMap<String, Service>,
    trust_domain: &str,
    namespace: &str,
) -> Result<Catalog, CatalogError> {
    validate_whole(services, trust_domain)?;
    let mut pieces: Vec<(u64, String)> = Vec::with_capacity(services.len());
    let mut total = 0;
    for (key, svc) in services.iter() {
        let piece = format!("{}:{}", serde_json::to_string(key)?, serde_json::to_string(svc)?);
        if piece.len() + 64 > MAX_CONFIG_BYTES {
            return Err(CatalogError::TooLarge {
                key: key.clone(),
                bytes: piece.len(),
            });
        }
        total += piece.len() + 1;
        pieces.push((bucket_hash(key), piece));
    }
    let mut buckets = total.div_ceil(SHARD_TARGET).max(1).next_power_of_two();
    loop {
        let mut parts: Vec<Vec<&str>> = vec![Vec::new(); buckets];
        let mut sizes = vec![0usize; buckets];
        for (h, piece) in &pieces {
            // `buckets` is a power of two, so the mask is a modulo.
            let b = (*h as usize) & (buckets - 1);
            parts[b].push(piece);
            sizes[b] += piece.len() + 1;
        }
        if sizes.iter().any(|s| s + 64 > MAX_CONFIG_BYTES) {
            buckets *= 2;
            continue;
        }
        let shards = parts
            .iter()
            .filter(|p| !p.is_empty() || buckets == 1)
            .map(|p| shard(p))
            .collect();
        return Ok(Catalog {
            namespace: namespace.to_string(),
            shards,
        });
    }
}

/// Serializes one shard from its `"key":{service}` pieces (already in key
/// order), byte for byte what `CatalogShard::to_json` writes.
fn shard(pieces: &[&str]) -> RenderedShard {
    let mut json = String::with_capacity(pieces.iter().map(|p| p.len() + 1).sum::<usize>() + 48);
    json.push_str("{\"schemaVersion\":");
    json.push_str(&SCHEMA_VERSION.to_string());
    json.push_str(",\"services\":{");
    json.push_str(&pieces.join(","));
    json.push_str("}}");
    let hash = super::content_hash(json.as_bytes());
    RenderedShard {
        name: format!("{SHARD_PREFIX}{}", &hash[..16]),
        json,
        hash,
    }
}

fn bucket_hash(key: &str) -> u64 {
    let d = sha2::Sha256::digest(key.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_be_bytes(b)
}

/// Runs the proxy's own validation over every service at once.
fn validate_whole(
    services: &mut BTreeMap<String, Service>,
    trust_domain: &str,
) -> Result<(), ValidationError> {
    let probe = ProxyConfig {
        schema_version: SCHEMA_VERSION,
        identity: Identity {
            namespace: "catalog".into(),
            service_account: "catalog".into(),
            spiffe_id: format!("spiffe://{trust_domain}/ns/catalog/sa/catalog"),
        },
        mesh: MeshSettings {
            trust_domain: trust_domain.into(),
            access_mode: AccessMode::Permissive,
            mtls_mode: MtlsMode::Permissive,
        },
        services: std::mem::take(services),
        inbound: Default::default(),
        catalog: None,
        retries: Default::default(),
        faults: Default::default(),
        routes: Default::default(),
        gateway: None,
    };
    let result = probe.validate();
    *services = probe.services;
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_proxy_config::{CatalogShard, Endpoint, ServicePort};

    fn services(n: usize, endpoints: usize) -> BTreeMap<String, Service> {
        (0..n)
            .map(|i| {
                let svc = Service {
                    namespace: format!("ns{}", i % 7),
                    name: format!("svc-{i}"),
                    cluster_ips: vec![format!("198.19.{}.{}", i / 250, i % 250).parse().unwrap()],
                    ports: vec![ServicePort {
                        port: 8080,
                        name: Some("http".into()),
                        protocol: Default::default(),
                        endpoints: (0..endpoints)
                            .map(|e| Endpoint {
                                ip: format!(
                                    "198.18.{}.{}",
                                    (i * endpoints + e) / 250,
                                    (i * endpoints + e) % 250
                                )
                                .parse()
                                .unwrap(),
                                port: 8080,
                                ready: true,
                                zone: None,
                                identity: Some(format!("spiffe://cluster.local/ns/ns{}/sa/sa-{i}", i % 7)),
                                pod: Some(format!("pod-{i}-{e}")),
                            })
                            .collect(),
                        load_balancer: None,
                    }],
                    load_balancer: Default::default(),
                    split: None,
                    retry: None,
                    circuit_breaker: None,
                    faults: Default::default(),
                    mirrors: Vec::new(),
                    routes: Vec::new(),
                };
                (format!("{}/{}", svc.namespace, svc.name), svc)
            })
            .collect()
    }

    fn reassemble(c: &Catalog) -> BTreeMap<String, Service> {
        let mut all = BTreeMap::new();
        for s in &c.shards {
            let parsed = CatalogShard::from_json(&s.json).unwrap();
            assert_eq!(parsed.to_json().unwrap(), s.json, "hand-built JSON is canonical");
            assert_eq!(s.name, format!("{SHARD_PREFIX}{}", &s.hash[..16]));
            for (k, v) in parsed.services {
                assert!(all.insert(k, v).is_none(), "shards are disjoint");
            }
        }
        all
    }

    #[test]
    fn small_catalog_is_one_shard_and_round_trips() {
        let mut svcs = services(20, 3);
        let before = svcs.clone();
        let c = build(&mut svcs, "cluster.local", "weft-system").unwrap();
        assert_eq!(svcs, before, "services are handed back unchanged");
        assert_eq!(c.shards.len(), 1);
        assert_eq!(reassemble(&c), before);
        let empty = build(&mut BTreeMap::new(), "cluster.local", "weft-system").unwrap();
        assert_eq!(empty.shards.len(), 1, "an empty mesh still has a (empty) catalog");
    }

    #[test]
    fn large_catalog_is_split_under_the_limit_and_changes_stay_local() {
        let mut svcs = services(3000, 10);
        let c = build(&mut svcs, "cluster.local", "weft-system").unwrap();
        assert!(c.shards.len() > 2, "{} shards", c.shards.len());
        assert!(c.shards.iter().all(|s| s.json.len() < MAX_CONFIG_BYTES));
        assert_eq!(reassemble(&c), svcs);
        // Deterministic, and one service's change rewrites only its own shard.
        assert_eq!(
            build(&mut svcs.clone(), "cluster.local", "weft-system").unwrap(),
            c
        );
        svcs.get_mut("ns6/svc-1000").unwrap().ports[0].endpoints.pop();
        let after = build(&mut svcs, "cluster.local", "weft-system").unwrap();
        let changed = c
            .shards
            .iter()
            .zip(&after.shards)
            .filter(|(a, b)| a.name != b.name)
            .count();
        assert_eq!((after.shards.len(), changed), (c.shards.len(), 1));
    }

    #[test]
    fn invalid_services_and_oversized_ones_are_refused() {
        let mut svcs = services(3, 1);
        svcs.get_mut("ns0/svc-0").unwrap().ports[0].port = 0;
        assert!(matches!(
            build(&mut svcs, "cluster.local", "x"),
            Err(CatalogError::Invalid(e)) if e.path.contains("ns0/svc-0")
        ));
        let mut huge = services(1, 12_000);
        assert!(matches!(
            build(&mut huge, "cluster.local", "x"),
            Err(CatalogError::TooLarge { .. })
        ));
    }
}
