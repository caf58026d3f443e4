//! The API config source: follows the identity's own ConfigMap and, while its
//! config references the shared service catalog, the catalog's index; fetches
//! the shards the index lists and applies one assembled config. Invalid
//! documents are rejected by the store (the last good config stays); a shard
//! that cannot be fetched keeps the last good config too and is retried with
//! backoff (0.5 s doubling to 30 s).

use super::catalog::ShardCache;
use super::kube::{ConfigMapRef, Version, Which, follow};
use super::kube_http::{KubeError, KubeHttp};
use super::store::{ApplyError, ConfigStore};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use weft_proxy_config::{
    CONFIG_KEY, CatalogIndex, CatalogRef, INDEX_KEY, ParseError, ProxyConfig, catalog_ref,
};

/// Aborts the follower task when replaced or dropped.
struct Task(JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The latest versions and what is needed to assemble them.
struct Assembler {
    store: Arc<ConfigStore>,
    http: KubeHttp,
    cm: ConfigMapRef,
    tx: mpsc::Sender<Version>,
    identity: Option<String>,
    /// The index being followed and its latest version.
    index: Option<(ConfigMapRef, Task, Option<String>)>,
    shards: ShardCache,
}

fn invalid(e: weft_proxy_config::ValidationError) -> ApplyError {
    ApplyError::Parse(ParseError::Invalid(e))
}

impl Assembler {
    fn source(&self) -> String {
        format!("configmap {}/{}", self.cm.namespace, self.cm.name)
    }

    /// Records a version; starts or stops following the index it references.
    fn record(&mut self, v: Version) {
        match v.which {
            Which::Identity => {
                if v.text.is_none() {
                    tracing::warn!(source = %self.source(), key = CONFIG_KEY, "config map has no config key; keeping current config");
                }
                let wanted =
                    v.text
                        .as_deref()
                        .and_then(catalog_ref)
                        .map(|CatalogRef { namespace, index }| ConfigMapRef {
                            namespace,
                            name: index,
                        });
                if self.index.as_ref().map(|(r, _, _)| r) != wanted.as_ref() {
                    self.index = wanted.map(|r| {
                        let task = tokio::spawn(follow(
                            self.http.clone(),
                            r.clone(),
                            INDEX_KEY,
                            Which::Index,
                            self.tx.clone(),
                            None,
                        ));
                        (r, Task(task), None)
                    });
                }
                if v.text.is_some() {
                    self.identity = v.text;
                }
            }
            Which::Index => {
                if let Some((r, _, text)) = &mut self.index
                    && *r == v.from
                {
                    *text = v.text;
                }
            }
        }
    }

    /// Applies what the latest versions make. `Err` only when shards could not be
    /// fetched (retry later); bad documents are the store's to reject.
    async fn apply(&mut self) -> Result<(), KubeError> {
        let Some(identity) = self.identity.clone() else {
            return Ok(());
        };
        let index = self.index.as_ref().and_then(|(_, _, t)| t.clone());
        let combined = match &index {
            Some(ix) => format!("{identity}\n{ix}"),
            None => identity.clone(),
        };
        if self.store.is_current(&combined) {
            return Ok(());
        }
        let source = self.source();
        let cfg: ProxyConfig = match serde_json::from_str(&identity) {
            Ok(cfg) => cfg,
            Err(e) => {
                drop(
                    self.store
                        .apply_built(&combined, &source, || Err(ApplyError::Parse(ParseError::Json(e)))),
                );
                return Ok(());
            }
        };
        if cfg.catalog.is_none() {
            drop(self.store.apply_built(&combined, &source, || {
                cfg.validate().map_err(invalid)?;
                Ok(cfg)
            }));
            return Ok(());
        }
        let Some(index) = index else {
            tracing::debug!(%source, "waiting for the service catalog index");
            return Ok(());
        };
        let (namespace, parsed) = match (&self.index, CatalogIndex::from_json(&index)) {
            (Some((r, _, _)), Ok(ix)) => (r.namespace.clone(), ix),
            (_, Err(e)) => {
                drop(self.store.apply_built(&combined, &source, || Err(e.into())));
                return Ok(());
            }
            (None, Ok(_)) => return Ok(()),
        };
        let shards = self
            .shards
            .resolve(&self.http, &namespace, &parsed.shards)
            .await?;
        drop(
            self.store
                .apply_built(&combined, &source, || cfg.assemble(shards).map_err(invalid)),
        );
        Ok(())
    }
}

async fn run(store: Arc<ConfigStore>, http: KubeHttp, cm: ConfigMapRef) {
    let (tx, mut rx) = mpsc::channel::<Version>(16);
    let _identity = Task(tokio::spawn(follow(
        http.clone(),
        cm.clone(),
        CONFIG_KEY,
        Which::Identity,
        tx.clone(),
        Some(Arc::clone(&store)),
    )));
    let mut a = Assembler {
        store,
        http,
        cm,
        tx,
        identity: None,
        index: None,
        shards: ShardCache::default(),
    };
    let mut retry: Option<(Instant, Duration)> = None;
    let mut logged: Option<String> = None;
    loop {
        let next = match retry {
            Some((at, _)) => tokio::select! {
                v = rx.recv() => v.map(Some),
                () = tokio::time::sleep_until(at) => Some(None),
            },
            None => rx.recv().await.map(Some),
        };
        match next {
            None => return,
            Some(Some(v)) => a.record(v),
            Some(None) => {}
        }
        match a.apply().await {
            Ok(()) => {
                retry = None;
                logged = None;
            }
            Err(error) => {
                let backoff = retry.map_or(Duration::from_millis(500), |(_, b)| {
                    (b * 2).min(Duration::from_secs(30))
                });
                let msg = error.to_string();
                if logged.as_deref() != Some(msg.as_str()) {
                    tracing::warn!(%error, retry_in_ms = backoff.as_millis() as u64, "cannot fetch the service catalog; keeping the last good config");
                    logged = Some(msg);
                }
                retry = Some((Instant::now() + backoff, backoff));
            }
        }
    }
}

/// Follows the identity's ConfigMap (and the catalog it references) until
/// `shutdown` flips.
pub async fn watch_configmap(
    store: Arc<ConfigStore>,
    http: KubeHttp,
    cm: ConfigMapRef,
    mut shutdown: watch::Receiver<bool>,
) {
    tokio::select! {
        () = run(store, http, cm) => {}
        _ = shutdown.changed() => {}
    }
}
