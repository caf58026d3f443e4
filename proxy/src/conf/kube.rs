//! Config from the workload's own ConfigMap (`weft-proxy-<sa>`), fetched with a
//! GET and then followed with a watch (field selector on the name, so RBAC can
//! limit the proxy to that one object). Watch errors and `410 Gone` fall back
//! to a fresh GET; failures back off up to 30 s. A deleted ConfigMap keeps the
//! last good config in force.

use super::kube_http::{KubeError, KubeHttp};
use super::store::ConfigStore;
use bytes::{Buf, BytesMut};
use http::StatusCode;
use http_body_util::BodyExt;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use weft_proxy_config::CONFIG_KEY;

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

fn apply(store: &ConfigStore, cm: &ConfigMapRef, config: Option<String>) {
    let source = format!("configmap {}/{}", cm.namespace, cm.name);
    match config {
        // Errors are logged once and counted by the store.
        Some(text) => drop(store.apply_json(&text, &source)),
        None => {
            tracing::warn!(%source, key = CONFIG_KEY, "config map has no config key; keeping current config")
        }
    }
}

/// Fetches the object; returns its resourceVersion.
async fn initial_get(store: &ConfigStore, http: &KubeHttp, cm: &ConfigMapRef) -> Result<String, KubeError> {
    let path = format!("/api/v1/namespaces/{}/configmaps/{}", cm.namespace, cm.name);
    let (status, body) = http.get_bytes(&path).await?;
    if status != StatusCode::OK {
        return Err(KubeError::Status(status));
    }
    let obj: Value = serde_json::from_slice(&body).map_err(|e| KubeError::Decode(e.to_string()))?;
    apply(store, cm, config_of(&obj));
    Ok(resource_version(&obj).unwrap_or_default())
}

/// Follows a watch from `rv` until it ends; returns the last version seen, or
/// `None` when the caller must GET again.
async fn watch_once(
    store: &ConfigStore,
    http: &KubeHttp,
    cm: &ConfigMapRef,
    rv: String,
) -> Result<Option<String>, KubeError> {
    let path = format!(
        "/api/v1/namespaces/{}/configmaps?fieldSelector=metadata.name%3D{}&watch=true&allowWatchBookmarks=true&timeoutSeconds=290&resourceVersion={rv}",
        cm.namespace, cm.name
    );
    let (status, mut body) = http.get(&path).await?;
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
                    apply(store, cm, config);
                    rv = resource_version.unwrap_or(rv);
                }
                Some(Event::Bookmark(v)) => rv = v.unwrap_or(rv),
                Some(Event::Deleted) => {
                    tracing::warn!(configmap = %cm.name, "config map deleted; keeping the last good config");
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
    loop {
        let mut rv = match initial_get(store, http, cm).await {
            Ok(rv) => {
                store.set_api_live(true);
                rv
            }
            Err(error) => {
                store.set_api_live(false);
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
            match watch_once(store, http, cm, rv.clone()).await {
                Ok(Some(next)) => rv = next,
                Ok(None) => break,
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
