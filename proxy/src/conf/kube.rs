//! Config from the workload's own ConfigMap (`weft-proxy-<sa>`), fetched with a
//! GET and then followed with a watch (field selector on the name, so RBAC can
//! limit the proxy to that one object). Watch errors and `410 Gone` fall back
//! to a fresh GET; failures back off up to 30 s. A deleted ConfigMap keeps the
//! last good config in force. A config that references the shared service
//! catalog is applied only once all its shards are fetched and assembled; until
//! then the last good config stays and the fetch is retried.

use super::catalog::ShardCache;
use super::kube_http::{KubeError, KubeHttp};
use super::store::{ApplyError, ConfigStore};
use bytes::{Buf, BytesMut};
use http::StatusCode;
use http_body_util::BodyExt;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use weft_proxy_config::{CONFIG_KEY, ParseError, ProxyConfig};

/// The ConfigMap to follow.
#[derive(Debug, Clone)]
pub struct ConfigMapRef {
    pub namespace: String,
    pub name: String,
}

/// What one watch event asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// Apply this config document (may be absent if the key is missing); new version.
    Apply {
        config: Option<String>,
        resource_version: Option<String>,
    },
    /// Progress marker.
    Bookmark(Option<String>),
    Deleted,
    /// Watch expired or failed: start over with a GET.
    Restart,
}

fn resource_version(obj: &Value) -> Option<String> {
    obj.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .map(String::from)
}

fn config_of(obj: &Value) -> Option<String> {
    obj.get("data")
        .and_then(|d| d.get(CONFIG_KEY))
        .and_then(Value::as_str)
        .map(String::from)
}

/// Parses one line of a watch stream.
pub fn parse_event(line: &[u8]) -> Option<Event> {
    let v: Value = serde_json::from_slice(line).ok()?;
    let obj = v.get("object")?;
    Some(match v.get("type")?.as_str()? {
        "ADDED" | "MODIFIED" => Event::Apply {
            config: config_of(obj),
            resource_version: resource_version(obj),
        },
        "BOOKMARK" => Event::Bookmark(resource_version(obj)),
        "DELETED" => Event::Deleted,
        _ => Event::Restart,
    })
}

/// What the watch loop shares between events.
struct Source<'a> {
    store: &'a ConfigStore,
    http: &'a KubeHttp,
    cm: &'a ConfigMapRef,
    shards: ShardCache,
}

impl Source<'_> {
    /// Applies one version of the document. Invalid documents are rejected by
    /// the store (logged and counted once); an error is returned only when the
    /// catalog could not be fetched, so the caller retries.
    async fn apply(&mut self, config: Option<String>) -> Result<(), KubeError> {
        let source = format!("configmap {}/{}", self.cm.namespace, self.cm.name);
        let Some(text) = config else {
            tracing::warn!(%source, key = CONFIG_KEY, "config map has no config key; keeping current config");
            return Ok(());
        };
        if self.store.is_current(&text) {
            return Ok(());
        }
        let parsed: Result<ProxyConfig, ApplyError> =
            serde_json::from_str(&text).map_err(|e| ApplyError::Parse(ParseError::Json(e)));
        let built = match parsed {
            Ok(cfg) => match &cfg.catalog {
                Some(catalog) => {
                    let shards = self.shards.resolve(self.http, catalog).await?;
                    cfg.assemble(shards)
                        .map_err(|e| ApplyError::Parse(ParseError::Invalid(e)))
                }
                None => cfg
                    .validate()
                    .map(|()| cfg)
                    .map_err(|e| ApplyError::Parse(ParseError::Invalid(e))),
            },
            Err(e) => Err(e),
        };
        // Rejections are logged and counted by the store.
        drop(self.store.apply_built(&text, &source, || built));
        Ok(())
    }
}

/// Fetches the object; returns its resourceVersion.
async fn initial_get(src: &mut Source<'_>) -> Result<String, KubeError> {
    let path = format!(
        "/api/v1/namespaces/{}/configmaps/{}",
        src.cm.namespace, src.cm.name
    );
    let (status, body) = src.http.get_bytes(&path).await?;
    if status != StatusCode::OK {
        return Err(KubeError::Status(status));
    }
    let obj: Value = serde_json::from_slice(&body).map_err(|e| KubeError::Decode(e.to_string()))?;
    src.store.set_api_live(true);
    src.apply(config_of(&obj)).await?;
    Ok(resource_version(&obj).unwrap_or_default())
}

/// Follows a watch from `rv` until it ends; returns the last version seen, or
/// `None` when the caller must GET again.
async fn watch_once(src: &mut Source<'_>, rv: String) -> Result<Option<String>, KubeError> {
    let path = format!(
        "/api/v1/namespaces/{}/configmaps?fieldSelector=metadata.name%3D{}&watch=true&allowWatchBookmarks=true&timeoutSeconds=290&resourceVersion={rv}",
        src.cm.namespace, src.cm.name
    );
    let (status, mut body) = src.http.get(&path).await?;
    if status != StatusCode::OK {
        return Err(KubeError::Status(status));
    }
    let mut rv = rv;
    let mut buf = BytesMut::new();
    loop {
        let frame = match tokio::time::timeout(Duration::from_secs(330), body.frame()).await {
            Err(_) => return Ok(Some(rv)),
            Ok(None) => return Ok(Some(rv)),
            Ok(Some(f)) => f?,
        };
        let Ok(data) = frame.into_data() else { continue };
        buf.extend_from_slice(&data);
        while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
            let line = buf.split_to(nl + 1);
            match parse_event(&line[..nl]) {
                Some(Event::Apply {
                    config,
                    resource_version,
                }) => {
                    src.apply(config).await?;
                    rv = resource_version.unwrap_or(rv);
                }
                Some(Event::Bookmark(v)) => rv = v.unwrap_or(rv),
                Some(Event::Deleted) => {
                    tracing::warn!(configmap = %src.cm.name, "config map deleted; keeping the last good config");
                }
                Some(Event::Restart) => return Ok(None),
                None => tracing::debug!("ignoring unparsable watch line"),
            }
        }
        if buf.len() > 8 * 1024 * 1024 {
            buf.advance(buf.len());
            return Ok(None);
        }
    }
}

async fn run(store: &ConfigStore, http: &KubeHttp, cm: &ConfigMapRef) {
    let mut backoff = Duration::from_millis(500);
    let mut logged: Option<String> = None;
    let mut src = Source {
        store,
        http,
        cm,
        shards: ShardCache::default(),
    };
    loop {
        let mut rv = match initial_get(&mut src).await {
            Ok(rv) => rv,
            Err(error) => {
                // A missing shard is not a lost watch: the mounted file (which
                // cannot carry the catalog) must not take over then.
                if !matches!(error, KubeError::Shard { .. }) {
                    store.set_api_live(false);
                }
                let msg = error.to_string();
                if logged.as_deref() != Some(msg.as_str()) {
                    tracing::warn!(namespace = %cm.namespace, name = %cm.name, %error, "cannot read config map; retrying");
                    logged = Some(msg);
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        backoff = Duration::from_millis(500);
        logged = None;
        loop {
            match watch_once(&mut src, rv.clone()).await {
                Ok(Some(next)) => rv = next,
                Ok(None) => break,
                Err(error @ KubeError::Shard { .. }) => {
                    tracing::warn!(%error, "cannot fetch the service catalog; keeping the last good config and retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    break;
                }
                Err(error) => {
                    tracing::debug!(%error, "config map watch failed; starting over");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    break;
                }
            }
        }
    }
}

/// Follows the ConfigMap until `shutdown` flips.
pub async fn watch_configmap(
    store: Arc<ConfigStore>,
    http: KubeHttp,
    cm: ConfigMapRef,
    mut shutdown: watch::Receiver<bool>,
) {
    tokio::select! {
        () = run(&store, &http, &cm) => {}
        _ = shutdown.changed() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_watch_events() {
        let line = br#"{"type":"MODIFIED","object":{"metadata":{"resourceVersion":"42"},"data":{"config.json":"{}"}}}"#;
        assert_eq!(
            parse_event(line),
            Some(Event::Apply {
                config: Some("{}".into()),
                resource_version: Some("42".into())
            })
        );
        let bm = br#"{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"50"}}}"#;
        assert_eq!(parse_event(bm), Some(Event::Bookmark(Some("50".into()))));
        let gone = br#"{"type":"ERROR","object":{"kind":"Status","code":410}}"#;
        assert_eq!(parse_event(gone), Some(Event::Restart));
        assert_eq!(
            parse_event(br#"{"type":"DELETED","object":{}}"#),
            Some(Event::Deleted)
        );
        assert_eq!(parse_event(b"garbage"), None);
    }
}
