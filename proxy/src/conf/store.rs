//! The current config and its routing table, swapped atomically. Readers take
//! a lock-free snapshot per request; an invalid update is rejected, counted and
//! logged once, and the last good config stays in force.

use crate::authz::Authz;
use crate::endpoint::EndpointRegistry;
use crate::metrics::Metrics;
use crate::ready::{Gate, Readiness};
use crate::resilience::Resilience;
use crate::routing::RouteTable;
use crate::routing::table::BuildError;
use arc_swap::ArcSwapOption;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use weft_proxy_config::{ParseError, ProxyConfig};

/// One applied config.
#[derive(Debug)]
pub struct Snapshot {
    pub config: ProxyConfig,
    pub table: RouteTable,
    /// Inbound authorization compiled from the grants.
    pub authz: Authz,
    /// Increments with every applied change.
    pub generation: u64,
    content_hash: u64,
}

/// Why an update was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error(transparent)]
    Build(#[from] BuildError),
}

/// What an accepted update did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// A new generation is in force.
    Swapped(u64),
    /// Same content as the current config; nothing changed.
    Unchanged,
}

/// Holder of the current config.
#[derive(Debug)]
pub struct ConfigStore {
    current: ArcSwapOption<Snapshot>,
    registry: EndpointRegistry,
    resilience: Resilience,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    generation: AtomicU64,
    last_rejected: Mutex<Option<u64>>,
    /// The API watch has the ConfigMap (it is authoritative; the mounted file only
    /// stands in while it is not, because kubelet-style volume sync lags behind the
    /// watch and would otherwise roll a newer config back to an older one).
    api_live: AtomicBool,
    /// The generation in force, for tasks that follow config changes.
    applied: tokio::sync::watch::Sender<u64>,
}

fn hash_text(text: &str) -> u64 {
    let mut h = DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

impl ConfigStore {
    /// An empty store (not ready until the first config is applied).
    pub fn new(metrics: Arc<Metrics>, readiness: Arc<Readiness>) -> Self {
        Self {
            current: ArcSwapOption::empty(),
            registry: EndpointRegistry::default(),
            resilience: Resilience::new(Arc::clone(&metrics)),
            metrics,
            readiness,
            generation: AtomicU64::new(0),
            last_rejected: Mutex::new(None),
            api_live: AtomicBool::new(false),
            applied: tokio::sync::watch::Sender::new(0),
        }
    }

    /// The current snapshot (cheap, lock-free), `None` before the first config.
    pub fn load(&self) -> Option<Arc<Snapshot>> {
        self.current.load_full()
    }

    /// Follows config changes: the receiver sees the generation of every
    /// applied config (0 before the first).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// Marks whether the API watch currently holds the ConfigMap.
    pub fn set_api_live(&self, live: bool) {
        self.api_live.store(live, Ordering::Release);
    }

    /// Whether the API watch currently holds the ConfigMap (the file source then defers).
    pub fn api_live(&self) -> bool {
        self.api_live.load(Ordering::Acquire)
    }

    /// The endpoint registry (shared with inbound app endpoints).
    pub fn registry(&self) -> &EndpointRegistry {
        &self.registry
    }

    /// Per-service resilience state (breakers, outliers, budgets, limits).
    pub fn resilience(&self) -> &Resilience {
        &self.resilience
    }

    /// Validates and applies a JSON document from `source` (for logs).
    pub fn apply_json(&self, text: &str, source: &str) -> Result<Applied, ApplyError> {
        self.apply_built(text, source, || {
            ProxyConfig::from_json(text).map_err(ApplyError::from)
        })
    }

    /// Whether `text` is the document currently in force.
    pub fn is_current(&self, text: &str) -> bool {
        let hash = hash_text(text);
        self.current
            .load()
            .as_ref()
            .is_some_and(|s| s.content_hash == hash)
    }

    /// Applies the complete config `build` makes from the document `text` (for
    /// example by assembling the catalog it references); `build` runs only when
    /// `text` differs from the document in force. Rejections are logged and
    /// counted once per distinct document.
    pub fn apply_built(
        &self,
        text: &str,
        source: &str,
        build: impl FnOnce() -> Result<ProxyConfig, ApplyError>,
    ) -> Result<Applied, ApplyError> {
        if self.is_current(text) {
            return Ok(Applied::Unchanged);
        }
        let hash = hash_text(text);
        let result = build().and_then(|cfg| self.install(cfg, hash));
        if let Err(error) = &result {
            let mut last = self.last_rejected.lock().unwrap_or_else(|p| p.into_inner());
            // Log and count each distinct bad document once, however often it is re-read.
            if *last != Some(hash) {
                *last = Some(hash);
                self.metrics.reload_failed();
                tracing::warn!(%source, %error, "rejected config update; keeping the last good config");
            }
        }
        result
    }

    /// Applies an already-parsed config (validated here too).
    pub fn apply_config(&self, cfg: ProxyConfig) -> Result<Applied, ApplyError> {
        cfg.validate()
            .map_err(|e| ApplyError::Parse(ParseError::Invalid(e)))?;
        let text = cfg
            .to_json()
            .map_err(|e| ApplyError::Parse(ParseError::Json(e)))?;
        self.install(cfg, hash_text(&text))
    }

    fn install(&self, config: ProxyConfig, content_hash: u64) -> Result<Applied, ApplyError> {
        let table = RouteTable::build(&config, &self.registry, &self.metrics, &self.resilience)?;
        let authz = Authz::build(&config, &self.metrics).map_err(BuildError::from)?;
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let snap = Arc::new(Snapshot {
            config,
            table,
            authz,
            generation,
            content_hash,
        });
        self.current.store(Some(snap));
        self.registry.sweep();
        self.resilience.sweep();
        self.metrics.reload_ok();
        self.readiness.open(Gate::Config);
        self.applied.send_replace(generation);
        tracing::info!(generation, "applied config");
        Ok(Applied::Swapped(generation))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const GOOD: &str = r#"{"schemaVersion":1,
        "identity":{"namespace":"default","serviceAccount":"a","spiffeId":"spiffe://cluster.local/ns/default/sa/a"},
        "mesh":{"trustDomain":"cluster.local","accessMode":"permissive","mtlsMode":"permissive"}}"#;

    #[test]
    fn applies_dedups_and_keeps_last_good() {
        let metrics = Arc::new(Metrics::default());
        let ready = Arc::new(Readiness::default());
        let store = ConfigStore::new(Arc::clone(&metrics), Arc::clone(&ready));
        assert!(store.load().is_none());
        assert!(ready.check().is_err());
        assert_eq!(store.apply_json(GOOD, "test").unwrap(), Applied::Swapped(1));
        assert!(ready.check().is_ok());
        assert_eq!(store.apply_json(GOOD, "test").unwrap(), Applied::Unchanged);
        let bad = GOOD.replace("\"schemaVersion\":1", "\"schemaVersion\":9");
        assert!(store.apply_json(&bad, "test").is_err());
        assert!(store.apply_json(&bad, "test").is_err());
        assert!(store.apply_json("{not json", "test").is_err());
        assert_eq!(store.load().unwrap().generation, 1);
        // Two distinct bad documents, each counted once.
        assert_eq!(metrics.reloads(), (1, 2));
    }
}
