//! The shared service catalog. In `permissive` access mode every identity may
//! call every service, so copying every service into every identity's config
//! grows as identities × services (over the 1 MiB ConfigMap limit at about
//! 1,000 services). Instead the operator writes the services once, split into
//! content-addressed shards (ConfigMaps `weft-catalog-<hash>`, key
//! [`CATALOG_KEY`]), and each identity's config names the shards it was rendered
//! against ([`CatalogRef`]) and carries only what is its own (identity, inbound
//! table, retry policies). The proxy fetches the shards and
//! [assembles](ProxyConfig::assemble) one complete config that is validated like
//! an inline one. Shards are immutable (new content, new name), so a config can
//! never be combined with shards of another render.

use crate::validate::err;
use crate::{ParseError, ProxyConfig, SCHEMA_VERSION, Service, ValidationError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// ConfigMap data key holding a shard's JSON document.
pub const CATALOG_KEY: &str = "catalog.json";

/// Where an identity's services are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CatalogRef {
    /// Namespace of the shard ConfigMaps (the mesh's own namespace).
    pub namespace: String,
    /// Names of the shard ConfigMaps; together they hold every service.
    pub shards: Vec<String>,
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

impl ProxyConfig {
    /// Merges the referenced catalog's shards (in [`CatalogRef::shards`] order)
    /// and this identity's retry policies into one complete config, then
    /// validates it. A config without a catalog is only validated.
    pub fn assemble(mut self, shards: Vec<CatalogShard>) -> Result<Self, ValidationError> {
        let Some(catalog) = self.catalog.take() else {
            self.validate()?;
            return Ok(self);
        };
        if shards.len() != catalog.shards.len() {
            return Err(err(
                "catalog.shards",
                format!(
                    "{} shards referenced, {} supplied",
                    catalog.shards.len(),
                    shards.len()
                ),
            ));
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
            let Some(svc) = self.services.get_mut(&key) else {
                return Err(err(format!("retries[\"{key}\"]"), "not a service of the catalog"));
            };
            svc.retry = Some(retry);
        }
        self.validate()?;
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::tests::minimal;
    use crate::{Backoff, Endpoint, RetryBudget, RetryOn, RetryPolicy, ServicePort, Split, WeightedBackend};

    fn svc(ns: &str, name: &str) -> Service {
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
            }],
            load_balancer: Default::default(),
            split: None,
            retry: None,
            circuit_breaker: None,
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

    fn referencing(shards: &[&str]) -> ProxyConfig {
        let mut c = minimal();
        c.catalog = Some(CatalogRef {
            namespace: "weft-system".into(),
            shards: shards.iter().map(|s| s.to_string()).collect(),
        });
        c
    }

    #[test]
    fn assembles_shards_and_retries_into_a_complete_config() {
        let mut c = referencing(&["weft-catalog-a", "weft-catalog-b"]);
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
    fn assembly_refuses_missing_duplicate_and_dangling_parts() {
        let c = referencing(&["x", "y"]);
        let e = c.clone().assemble(vec![shard(&[svc("a", "a")])]).unwrap_err();
        assert_eq!(e.path, "catalog.shards");
        let e = c
            .clone()
            .assemble(vec![shard(&[svc("a", "a")]), shard(&[svc("a", "a")])])
            .unwrap_err();
        assert_eq!(e.path, "catalog.shards[1]");
        let mut r = referencing(&["x"]);
        r.retries.insert("a/gone".into(), retry());
        assert!(r.assemble(vec![shard(&[svc("a", "a")])]).is_err());
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
        let e = referencing(&["x"]).assemble(vec![shard(&[root])]).unwrap_err();
        assert!(e.path.ends_with(".split.backends"), "{e}");
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
