//! Following one ConfigMap key through the API: a GET, then a watch (field
//! selector on the name, so RBAC can limit the reader to that one object). Every
//! version of the key is sent to the consumer; watch errors and `410 Gone` fall
//! back to a fresh GET; failures back off up to 30 s. A deleted ConfigMap is
//! reported and otherwise ignored (the last good config stays in force). What the
//! versions are assembled into is [`super::source`]'s job.

use super::kube_http::{KubeError, KubeHttp};
use super::store::ConfigStore;
use bytes::{Buf, BytesMut};
use http::StatusCode;
use http_body_util::BodyExt;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

pub use super::source::watch_configmap;

/// The ConfigMap to follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigMapRef {
    pub namespace: String,
    pub name: String,
}

/// Which followed document a version belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// The identity's own config (`weft-proxy-<sa>`).
    Identity,
    /// The service catalog's index.
    Index,
}

/// One version of a followed key (`None`: the ConfigMap lacks the key).
#[derive(Debug)]
pub struct Version {
    pub which: Which,
    pub from: ConfigMapRef,
    pub text: Option<String>,
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

fn key_of(obj: &Value, key: &str) -> Option<String> {
    obj.get("data")
        .and_then(|d| d.get(key))
        .and_then(Value::as_str)
        .map(String::from)
}

/// Parses one line of a watch stream for data key `key`.
pub fn parse_event(line: &[u8], key: &str) -> Option<Event> {
    let v: Value = serde_json::from_slice(line).ok()?;
    let obj = v.get("object")?;
    Some(match v.get("type")?.as_str()? {
        "ADDED" | "MODIFIED" => Event::Apply {
            config: key_of(obj, key),
            resource_version: resource_version(obj),
        },
        "BOOKMARK" => Event::Bookmark(resource_version(obj)),
        "DELETED" => Event::Deleted,
        _ => Event::Restart,
    })
}

/// Where versions go, and whose liveness they report.
struct Follow<'a> {
    http: &'a KubeHttp,
    cm: &'a ConfigMapRef,
    key: &'static str,
    which: Which,
    tx: &'a mpsc::Sender<Version>,
    /// Set for the identity's config: the file source defers while the API holds it.
    live: Option<&'a ConfigStore>,
}

impl Follow<'_> {
    /// Hands a version on; `false` once the consumer is gone.
    async fn send(&self, text: Option<String>) -> bool {
        let v = Version {
            which: self.which,
            from: self.cm.clone(),
            text,
        };
        self.tx.send(v).await.is_ok()
    }

    fn set_live(&self, live: bool) {
        if let Some(store) = self.live {
            store.set_api_live(live);
        }
    }
}

/// Fetches the object; returns its resourceVersion, or `None` once the consumer is gone.
async fn initial_get(f: &Follow<'_>) -> Result<Option<String>, KubeError> {
    let path = format!("/api/v1/namespaces/{}/configmaps/{}", f.cm.namespace, f.cm.name);
    let (status, body) = f.http.get_bytes(&path).await?;
    if status != StatusCode::OK {
        return Err(KubeError::Status(status));
    }
    let obj: Value = serde_json::from_slice(&body).map_err(|e| KubeError::Decode(e.to_string()))?;
    f.set_live(true);
    if !f.send(key_of(&obj, f.key)).await {
        return Ok(None);
    }
    Ok(Some(resource_version(&obj).unwrap_or_default()))
}

/// Follows a watch from `rv` until it ends; returns the last version seen, or
/// `None` when the caller must GET again.
async fn watch_once(f: &Follow<'_>, rv: String) -> Result<Option<String>, KubeError> {
    let path = format!(
        "/api/v1/namespaces/{}/configmaps?fieldSelector=metadata.name%3D{}&watch=true&allowWatchBookmarks=true&timeoutSeconds=290&resourceVersion={rv}",
        f.cm.namespace, f.cm.name
    );
    let (status, mut body) = f.http.get(&path).await?;
    if status != StatusCode::OK {
        return Err(KubeError::Status(status));
    }
    let mut rv = rv;
    let mut buf = BytesMut::new();
    loop {
        let frame = match tokio::time::timeout(Duration::from_secs(330), body.frame()).await {
            Err(_) => return Ok(Some(rv)),
            Ok(None) => return Ok(Some(rv)),
            Ok(Some(frame)) => frame?,
        };
        let Ok(data) = frame.into_data() else { continue };
        buf.extend_from_slice(&data);
        while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
            let line = buf.split_to(nl + 1);
            match parse_event(&line[..nl], f.key) {
                Some(Event::Apply {
                    config,
                    resource_version,
                }) => {
                    if !f.send(config).await {
                        return Ok(None);
                    }
                    rv = resource_version.unwrap_or(rv);
                }
                Some(Event::Bookmark(v)) => rv = v.unwrap_or(rv),
                Some(Event::Deleted) => {
                    tracing::warn!(namespace = %f.cm.namespace, name = %f.cm.name, "config map deleted; keeping the last good config");
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

/// Follows `key` of `cm` until the consumer behind `tx` is gone, sending every
/// version. With `live`, marks whether the API currently holds the ConfigMap.
pub async fn follow(
    http: KubeHttp,
    cm: ConfigMapRef,
    key: &'static str,
    which: Which,
    tx: mpsc::Sender<Version>,
    live: Option<Arc<ConfigStore>>,
) {
    let f = Follow {
        http: &http,
        cm: &cm,
        key,
        which,
        tx: &tx,
        live: live.as_deref(),
    };
    let mut backoff = Duration::from_millis(500);
    let mut logged: Option<String> = None;
    loop {
        let mut rv = match initial_get(&f).await {
            Ok(Some(rv)) => rv,
            Ok(None) => return,
            Err(error) => {
                f.set_live(false);
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
            if tx.is_closed() {
                return;
            }
            match watch_once(&f, rv.clone()).await {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_watch_events() {
        let line = br#"{"type":"MODIFIED","object":{"metadata":{"resourceVersion":"42"},"data":{"config.json":"{}"}}}"#;
        assert_eq!(
            parse_event(line, "config.json"),
            Some(Event::Apply {
                config: Some("{}".into()),
                resource_version: Some("42".into())
            })
        );
        let bm = br#"{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"50"}}}"#;
        assert_eq!(
            parse_event(bm, "config.json"),
            Some(Event::Bookmark(Some("50".into())))
        );
        let gone = br#"{"type":"ERROR","object":{"kind":"Status","code":410}}"#;
        assert_eq!(parse_event(gone, "config.json"), Some(Event::Restart));
        assert_eq!(
            parse_event(br#"{"type":"DELETED","object":{}}"#, "config.json"),
            Some(Event::Deleted)
        );
        assert_eq!(parse_event(b"garbage", "config.json"), None);
    }
}
