//! The shared service catalog. In `permissive` access mode every identity may
//! call every service, so copying every service into every identity's config
//! grows as identities × services (over the 1 MiB ConfigMap limit at about
//! 1,000 services). Instead the operator writes the services once, split into
//! content-addressed, immutable shards (ConfigMaps `weft-catalog-<hash>`, key
//! [`CATALOG_KEY`]) listed by one small index (ConfigMap `weft-catalog`, key
//! [`INDEX_KEY`], a [`CatalogIndex`]). Each identity's config names the index
//! ([`CatalogRef`]) and carries only what is its own (identity, inbound table,
//! retry policies), so a catalog change rewrites one shard and the index, never
//! the identities' configs. The proxy follows the index, fetches the shards and
//! [assembles](ProxyConfig::assemble) one complete config that is validated like
//! an inline one. An index only ever lists shards that exist.

use crate::validate::err;
use crate::{ParseError, ProxyConfig, SCHEMA_VERSION, Service, ValidationError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// ConfigMap data key holding a shard's JSON document.
pub const CATALOG_KEY: &str = "catalog.json";
/// ConfigMap data key holding the index's JSON document.
pub const INDEX_KEY: &str = "index.json";

/// Where an identity's services are: the catalog index ConfigMap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CatalogRef {
    /// Namespace of the index and shard ConfigMaps (the mesh's own namespace).
    pub namespace: String,
    /// Name of the index ConfigMap.
    pub index: String,
}

/// The catalog index: which shards make up the current catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CatalogIndex {
    /// Must equal [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Names of the shard ConfigMaps (same namespace); together they hold every service.
    pub shards: Vec<String>,
}

impl CatalogIndex {
    /// Parses an index and checks its version and that it lists shards.
    pub fn from_json(text: &str) -> Result<Self, ParseError> {
        let index: Self = serde_json::from_str(text)?;
        if index.schema_version != SCHEMA_VERSION {
            return Err(ParseError::Invalid(err(
                "schemaVersion",
                format!(
                    "unsupported catalog index version {} (this build reads {SCHEMA_VERSION})",
                    index.schema_version
                ),
            )));
        }
        if index.shards.is_empty() {
            return Err(ParseError::Invalid(err("shards", "must not be empty")));
        }
        Ok(index)
    }

    /// Serializes to the canonical JSON form written into the ConfigMap.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }
}

/// One shard of the catalog: a disjoint part of the services.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CatalogShard {
    /// Must equal [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Services keyed by `namespace/name`, as in [`ProxyConfig::services`].
    #[serde(default)]
    pub services: BTreeMap<String, Service>,
}

impl CatalogShard {
    /// Parses a shard and checks its schema version (its services are validated
    /// after assembly, where split backends and fallbacks can be resolved).
    pub fn from_json(text: &str) -> Result<Self, ParseError> {
        let shard: Self = serde_json::from_str(text)?;
        if shard.schema_version != SCHEMA_VERSION {
            return Err(ParseError::Invalid(err(
                "schemaVersion",
                format!(
                    "unsupported catalog shard version {} (this build reads {SCHEMA_VERSION})",
                    shard.schema_version
                ),
            )));
        }
        Ok(shard)
    }

    /// Serializes to the canonical JSON form written into ConfigMaps.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }
}

/// Only the `catalog` field of a config document.
#[derive(Deserialize)]
struct CatalogPeek {
    #[serde(default)]
    catalog: Option<CatalogRef>,
}

/// The catalog a config document references, without parsing the rest of it
/// (`None` when it references none or is not a JSON object of that shape).
pub fn catalog_ref(text: &str) -> Option<CatalogRef> {
    serde_json::from_str::<CatalogPeek>(text).ok()?.catalog
}

impl ProxyConfig {
    /// Merges the catalog's shards (in [`CatalogIndex::shards`] order) and this
    /// identity's retry and fault policies into one complete config, then validates it. A
    /// retry for a service the catalog does not hold is dropped: the index moves
    /// independently of the identity's config, so a service may be gone from one
    /// a moment before the other. A config without a catalog is only validated.
    pub fn assemble(mut self, shards: Vec<CatalogShard>) -> Result<Self, ValidationError> {
        if self.catalog.take().is_none() {
            self.validate()?;
            return Ok(self);
        }
        if !self.services.is_empty() {
            return Err(err("services", "must be empty when a catalog is referenced"));
        }
        for (i, shard) in shards.into_iter().enumerate() {
            for (key, svc) in shard.services {
                if self.services.insert(key.clone(), svc).is_some() {
                    return Err(err(
                        format!("catalog.shards[{i}]"),
                        format!("service {key} is in more than one shard"),
                    ));
                }
            }
        }
        for (key, retry) in std::mem::take(&mut self.retries) {
            if let Some(svc) = self.services.get_mut(&key) {
                svc.retry = Some(retry);
            }
        }
        for (key, faults) in std::mem::take(&mut self.faults) {
            if let Some(svc) = self.services.get_mut(&key) {
                svc.faults = faults;
            }
        }
        for (key, routes) in std::mem::take(&mut self.routes) {
            if let Some(svc) = self.services.get_mut(&key) {
                svc.routes = routes;
            }
        }
        self.validate()?;
        Ok(self)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::validate::tests::minimal;
    use crate::{Backoff, Endpoint, RetryBudget, RetryOn, RetryPolicy, ServicePort, Split, WeightedBackend};

    pub(crate) fn svc(ns: &str, name: &str) -> Service {
        Service {
            namespace: ns.into(),
            name: name.into(),
            cluster_ips: vec!["198.19.0.10".parse().unwrap()],
            ports: vec![ServicePort {
                port: 80,
                name: None,
                protocol: Default::default(),
                endpoints: vec![Endpoint {
                    ip: "198.18.0.5".parse().unwrap(),
                    port: 8080,
                    ready: true,
                    zone: None,
                    identity: None,
                    pod: None,
                }],
                load_balancer: None,
            }],
            load_balancer: Default::default(),
            split: None,
            retry: None,
            circuit_breaker: None,
            faults: Default::default(),
            mirrors: Vec::new(),
            routes: Vec::new(),
        }
    }

    fn shard(services: &[Service]) -> CatalogShard {
        CatalogShard {
            schema_version: SCHEMA_VERSION,
            services: services
                .iter()
                .map(|s| (format!("{}/{}", s.namespace, s.name), s.clone()))
                .collect(),
        }
    }

    fn retry() -> RetryPolicy {
        RetryPolicy {
            source: "shop/retry".into(),
            retry_on: vec![RetryOn::ServerError],
            retriable_status_codes: vec![],
            retriable_grpc_codes: vec![],
            num_retries: 2,
            per_try_timeout_ms: None,
            timeout_ms: None,
            backoff: Backoff {
                base_ms: 25,
                max_ms: 250,
            },
            budget: RetryBudget {
                ratio: 0.2,
                min_per_second: 10,
                window_ms: 10_000,
            },
        }
    }

    pub(crate) fn referencing() -> ProxyConfig {
        let mut c = minimal();
        c.catalog = Some(CatalogRef {
            namespace: "weft-system".into(),
            index: "weft-catalog".into(),
        });
        c
    }

    #[test]
    fn assembles_shards_and_retries_into_a_complete_config() {
        let mut c = referencing();
        c.retries.insert("shop/b".into(), retry());
        let mut root = svc("shop", "root");
        root.split = Some(Split {
            source: "shop/ts".into(),
            backends: vec![WeightedBackend {
                service: "shop/b".into(),
                weight: 1000,
            }],
            matches: vec![],
        });
        assert!(c.validate().is_err(), "an unassembled config is never applied");
        c.validate_unassembled(|k| k == "shop/b").unwrap();
        assert_eq!(
            c.validate_unassembled(|_| false).unwrap_err().path,
            "retries[\"shop/b\"]"
        );
        let text = c.to_json().unwrap();
        let parsed: ProxyConfig = serde_json::from_str(&text).unwrap();
        let full = parsed
            .assemble(vec![shard(&[svc("shop", "a"), root]), shard(&[svc("shop", "b")])])
            .unwrap();
        assert_eq!(full.services.len(), 3);
        assert_eq!(full.services["shop/b"].retry, Some(retry()));
        assert!(full.catalog.is_none() && full.retries.is_empty());
        full.validate().unwrap();
    }

    #[test]
    fn assembly_refuses_duplicate_and_dangling_parts() {
        let c = referencing();
        let e = c
            .clone()
            .assemble(vec![shard(&[svc("a", "a")]), shard(&[svc("a", "a")])])
            .unwrap_err();
        assert_eq!(e.path, "catalog.shards[1]");
        // A retry for a service the catalog no longer holds is dropped, not fatal.
        let mut r = referencing();
        r.retries.insert("a/gone".into(), retry());
        let full = r.assemble(vec![shard(&[svc("a", "a")])]).unwrap();
        assert!(full.services["a/a"].retry.is_none());
        // A split backend missing from every shard fails the full validation.
        let mut root = svc("a", "root");
        root.split = Some(Split {
            source: "a/ts".into(),
            backends: vec![WeightedBackend {
                service: "a/missing".into(),
                weight: 1,
            }],
            matches: vec![],
        });
        let e = referencing().assemble(vec![shard(&[root])]).unwrap_err();
        assert!(e.path.ends_with(".split.backends"), "{e}");
    }

    #[test]
    fn peeks_at_the_catalog_reference_only() {
        let with = referencing().to_json().unwrap();
        assert_eq!(catalog_ref(&with), referencing().catalog);
        assert_eq!(catalog_ref(&minimal().to_json().unwrap()), None);
        assert_eq!(catalog_ref("{not json"), None);
    }

    #[test]
    fn index_round_trips_and_checks_its_version() {
        let i = CatalogIndex {
            schema_version: SCHEMA_VERSION,
            shards: vec!["weft-catalog-a".into()],
        };
        assert_eq!(CatalogIndex::from_json(&i.to_json().unwrap()).unwrap(), i);
        assert!(CatalogIndex::from_json("{\"schemaVersion\":2,\"shards\":[\"a\"]}").is_err());
        assert!(CatalogIndex::from_json("{\"schemaVersion\":1,\"shards\":[]}").is_err());
    }

    #[test]
    fn shard_round_trips_and_checks_its_version() {
        let s = shard(&[svc("a", "a")]);
        let text = s.to_json().unwrap();
        assert_eq!(CatalogShard::from_json(&text).unwrap(), s);
        let old = text.replace("\"schemaVersion\":1", "\"schemaVersion\":7");
        assert!(matches!(
            CatalogShard::from_json(&old),
            Err(ParseError::Invalid(_))
        ));
        assert!(CatalogShard::from_json("{\"schemaVersion\":1,\"extra\":0}").is_err());
    }
}
