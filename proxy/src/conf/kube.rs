//! Following one API object through the API: a GET, then a watch (field
//! selector on the name, so RBAC can limit the reader to that one object).
//! What a version carries is the caller's extractor's choice: one ConfigMap key
//! ([`follow`]) or a whole Secret's data ([`follow_object`], used by the gateway
//! for its listener certificates). Every version is sent to the consumer; watch
//! errors and `410 Gone` fall back to a fresh GET; failures back off up to 30 s.
//! A deleted object is reported and otherwise ignored (the last good version
//! stays in force). What ConfigMap versions are assembled into is
//! [`super::source`]'s job.

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

/// An API object to follow: `resource` is the plural (`configmaps`, `secrets`)
/// of a core (`/api/v1`) namespaced kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    pub resource: &'static str,
    pub namespace: String,
    pub name: String,
}

impl ObjectRef {
    /// The ConfigMap `cm`.
    pub fn configmap(cm: &ConfigMapRef) -> Self {
        Self {
            resource: "configmaps",
            namespace: cm.namespace.clone(),
            name: cm.name.clone(),
        }
    }
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
pub enum Event<T = Option<String>> {
    /// Apply this version (what the extractor made of the object); new resourceVersion.
    Apply {
        config: T,
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

/// The string value of data key `key` of an object (ConfigMap `data`).
pub fn key_of(obj: &Value, key: &str) -> Option<String> {
    obj.get("data")
        .and_then(|d| d.get(key))
        .and_then(Value::as_str)
        .map(String::from)
}

/// Parses one line of a watch stream for data key `key`.
pub fn parse_event(line: &[u8], key: &str) -> Option<Event> {
    parse_event_with(line, &|obj: &Value| key_of(obj, key))
}

/// Parses one line of a watch stream, extracting versions with `extract`.
pub fn parse_event_with<T>(line: &[u8], extract: &dyn Fn(&Value) -> T) -> Option<Event<T>> {
    let v: Value = serde_json::from_slice(line).ok()?;
    let obj = v.get("object")?;
    Some(match v.get("type")?.as_str()? {
        "ADDED" | "MODIFIED" => Event::Apply {
            config: extract(obj),
            resource_version: resource_version(obj),
        },
        "BOOKMARK" => Event::Bookmark(resource_version(obj)),
        "DELETED" => Event::Deleted,
        _ => Event::Restart,
    })
}

/// Where versions go, and whose liveness they report.
struct Follow<'a, T> {
    http: &'a KubeHttp,
    obj: &'a ObjectRef,
    extract: &'a (dyn Fn(&Value) -> T + Send + Sync),
    tx: &'a mpsc::Sender<T>,
    /// Set for the identity's config: the file source defers while the API holds it.
    live: Option<&'a ConfigStore>,
}

impl<T: Send> Follow<'_, T> {
    /// Hands a version on; `false` once the consumer is gone.
    async fn send(&self, v: T) -> bool {
        self.tx.send(v).await.is_ok()
    }

    fn set_live(&self, live: bool) {
        if let Some(store) = self.live {
            store.set_api_live(live);
        }
    }
}

/// Fetches the object; returns its resourceVersion, or `None` once the consumer is gone.
async fn initial_get<T: Send>(f: &Follow<'_, T>) -> Result<Option<String>, KubeError> {
    let path = format!(
        "/api/v1/namespaces/{}/{}/{}",
        f.obj.namespace, f.obj.resource, f.obj.name
    );
    let (status, body) = f.http.get_bytes(&path).await?;
    if status != StatusCode::OK {
        return Err(KubeError::Status(status));
    }
    let obj: Value = serde_json::from_slice(&body).map_err(|e| KubeError::Decode(e.to_string()))?;
    f.set_live(true);
    if !f.send((f.extract)(&obj)).await {
        return Ok(None);
    }
    Ok(Some(resource_version(&obj).unwrap_or_default()))
}

/// Follows a watch from `rv` until it ends; returns the last version seen, or
/// `None` when the caller must GET again.
async fn watch_once<T: Send>(f: &Follow<'_, T>, rv: String) -> Result<Option<String>, KubeError> {
    let path = format!(
        "/api/v1/namespaces/{}/{}?fieldSelector=metadata.name%3D{}&watch=true&allowWatchBookmarks=true&timeoutSeconds=290&resourceVersion={rv}",
        f.obj.namespace, f.obj.resource, f.obj.name
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
            match parse_event_with(&line[..nl], f.extract) {
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
                    tracing::warn!(resource = f.obj.resource, namespace = %f.obj.namespace, name = %f.obj.name,
                        "object deleted; keeping the last good version");
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
    let obj = ObjectRef::configmap(&cm);
    let extract = move |o: &Value| Version {
        which,
        from: cm.clone(),
        text: key_of(o, key),
    };
    follow_object(http, obj, extract, tx, live).await;
}

/// Follows the object `obj` until the consumer behind `tx` is gone, sending
/// what `extract` makes of every version. With `live`, marks whether the API
/// currently holds the object.
pub async fn follow_object<T: Send>(
    http: KubeHttp,
    obj: ObjectRef,
    extract: impl Fn(&Value) -> T + Send + Sync,
    tx: mpsc::Sender<T>,
    live: Option<Arc<ConfigStore>>,
) {
    let f = Follow {
        http: &http,
        obj: &obj,
        extract: &extract,
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
                    tracing::warn!(resource = obj.resource, namespace = %obj.namespace, name = %obj.name, %error,
                        "cannot read the object; retrying");
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
                    tracing::debug!(resource = obj.resource, %error, "watch failed; starting over");
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
