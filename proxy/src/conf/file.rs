//! Config from a mounted file, re-checked every interval by modification time
//! and size (no inotify: ConfigMap volumes swap a symlink, which `metadata`
//! follows, and polling works the same on every filesystem). While the API watch
//! holds the ConfigMap the file defers to it (volume sync lags the watch, so the
//! file may still hold the previous config); it applies again once the watch is lost.
//! A file config that references the shared service catalog is left to the API
//! source (only it can fetch the shards).

use super::store::ConfigStore;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

/// Polls `path` until `shutdown` flips, applying every change to `store`.
pub async fn watch_file(
    store: Arc<ConfigStore>,
    path: PathBuf,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut last: Option<(SystemTime, u64)> = None;
    let mut missing_logged = false;
    let source = path.display().to_string();
    loop {
        match tokio::fs::metadata(&path).await {
            Ok(meta) => {
                missing_logged = false;
                let stamp = (meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), meta.len());
                if last != Some(stamp) && !store.api_live() {
                    match tokio::fs::read_to_string(&path).await {
                        Ok(text) if references_catalog(&text) => {
                            last = Some(stamp);
                            tracing::info!(path = %source, "file config references the service catalog; the API source applies it");
                        }
                        Ok(text) => {
                            last = Some(stamp);
                            // Errors are logged and counted by the store.
                            let _ = store.apply_json(&text, &source);
                        }
                        Err(error) => tracing::warn!(path = %source, %error, "cannot read config file"),
                    }
                }
            }
            Err(error) => {
                if !missing_logged {
                    tracing::warn!(path = %source, %error, "config file not readable; will keep polling");
                    missing_logged = true;
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
    }
}

fn references_catalog(text: &str) -> bool {
    weft_proxy_config::catalog_ref(text).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::ready::Readiness;

    const GOOD: &str = r#"{"schemaVersion":1,
        "identity":{"namespace":"default","serviceAccount":"a","spiffeId":"spiffe://cluster.local/ns/default/sa/a"},
        "mesh":{"trustDomain":"cluster.local","accessMode":"permissive","mtlsMode":"permissive"}}"#;

    async fn wait_for(cond: impl Fn() -> bool) -> bool {
        for _ in 0..100 {
            if cond() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// A store and a file source polling `config.json` in a temp dir every 10 ms
    /// (`prepare` runs on the store before the source starts).
    struct Rig {
        _dir: tempfile::TempDir,
        path: PathBuf,
        metrics: Arc<Metrics>,
        store: Arc<ConfigStore>,
        stop: watch::Sender<bool>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Rig {
        fn start(initial: Option<&str>, prepare: impl FnOnce(&ConfigStore)) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("config.json");
            if let Some(text) = initial {
                std::fs::write(&path, text).unwrap();
            }
            let metrics = Arc::new(Metrics::default());
            let store = Arc::new(ConfigStore::new(
                Arc::clone(&metrics),
                Arc::new(Readiness::default()),
            ));
            prepare(&store);
            let (stop, rx) = watch::channel(false);
            let task = tokio::spawn(watch_file(
                Arc::clone(&store),
                path.clone(),
                Duration::from_millis(10),
                rx,
            ));
            Self {
                _dir: dir,
                path,
                metrics,
                store,
                stop,
                task,
            }
        }

        async fn stop(self) {
            self.stop.send(true).unwrap();
            self.task.await.unwrap();
        }
    }

    #[tokio::test]
    async fn picks_up_changes_and_survives_bad_ones() {
        let rig = Rig::start(None, |_| {});
        let (store, metrics) = (&rig.store, &rig.metrics);
        tokio::time::sleep(Duration::from_millis(30)).await;
        std::fs::write(&rig.path, GOOD).unwrap();
        assert!(wait_for(|| store.load().is_some()).await);
        std::fs::write(&rig.path, "{broken").unwrap();
        assert!(wait_for(|| metrics.reloads().1 == 1).await);
        assert_eq!(store.load().unwrap().generation, 1);
        std::fs::write(&rig.path, GOOD.replace("\"a\"", "\"b\"").replace("sa/a", "sa/b")).unwrap();
        assert!(wait_for(|| store.load().is_some_and(|s| s.generation == 2)).await);
        assert_eq!(store.load().unwrap().config.identity.service_account, "b");
        rig.stop().await;
    }

    #[tokio::test]
    async fn defers_to_the_api_watch_while_it_is_live() {
        let newer = GOOD.replace("\"a\"", "\"b\"").replace("sa/a", "sa/b");
        let rig = Rig::start(Some(GOOD), |store| {
            store.apply_json(&newer, "api").unwrap();
            store.set_api_live(true);
        });
        let store = &rig.store;
        // The lagging file holds the older config: it must not roll the store back.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(store.load().unwrap().config.identity.service_account, "b");
        // Once the watch is lost the file stands in again.
        store.set_api_live(false);
        assert!(wait_for(|| store.load().unwrap().config.identity.service_account == "a").await);
        rig.stop().await;
    }

    #[tokio::test]
    async fn leaves_catalog_configs_to_the_api_source() {
        let with_catalog = GOOD.replacen(
            "\"schemaVersion\":1,",
            "\"schemaVersion\":1,\"catalog\":{\"namespace\":\"weft-system\",\"index\":\"weft-catalog\"},",
            1,
        );
        assert!(references_catalog(&with_catalog) && !references_catalog(GOOD));
        let rig = Rig::start(Some(&with_catalog), |_| {});
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            rig.store.load().is_none(),
            "an unassembled config is never applied"
        );
        assert_eq!(
            rig.metrics.reloads(),
            (0, 0),
            "and not counted as a bad one either"
        );
        rig.stop().await;
    }
}
