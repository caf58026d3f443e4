//! Where the listener certificates come from: the TLS Secret named by the
//! applied config ([`weft_proxy_config::GatewayConfig::tls_secret`], in the
//! pod's namespace), followed through the API with the same GET + watch as the
//! ConfigMap ([`crate::conf::kube::follow_object`]; a change of the name
//! switches the watch), or a directory of `<name>.crt` / `<name>.key` files
//! polled for changes (`--gateway-tls-dir`, for tests). Every version goes to
//! the [`CertStore`], which keeps the last good version of a pair that fails to
//! parse. Key material is never logged.

use super::tls::CertStore;
use crate::conf::ConfigStore;
use crate::conf::kube::{ObjectRef, follow_object};
use crate::conf::kube_http::KubeHttp;
use serde_json::Value;
use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Where the listener certificates are read from.
#[derive(Debug, Clone, Default)]
pub enum TlsSource {
    /// No certificates (Https listeners fail their handshakes).
    #[default]
    None,
    /// A directory of `<name>.crt` / `<name>.key` files and its poll interval.
    Dir(PathBuf, Duration),
    /// The TLS Secret through the API, in `namespace`.
    Api { http: KubeHttp, namespace: String },
}

/// Decodes standard base64 (padding optional, whitespace ignored).
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    let body = digits
        .strip_suffix(b"==")
        .or_else(|| digits.strip_suffix(b"="))
        .unwrap_or(&digits);
    if body.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    for chunk in body.chunks(4) {
        let mut acc = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            acc |= value(*c)? << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

/// A Secret's `data`, base64-decoded (values that do not decode are logged by key and left out).
pub fn secret_data(obj: &Value) -> BTreeMap<String, Vec<u8>> {
    let Some(data) = obj.get("data").and_then(Value::as_object) else {
        return BTreeMap::new();
    };
    data.iter()
        .filter_map(|(k, v)| match v.as_str().and_then(base64_decode) {
            Some(bytes) => Some((k.clone(), bytes)),
            None => {
                tracing::warn!(key = %k, "secret value is not base64; skipped");
                None
            }
        })
        .collect()
}

/// The `.crt` / `.key` files of `dir`.
pub fn read_dir(dir: &Path) -> std::io::Result<BTreeMap<String, Vec<u8>>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(String::from) else {
            continue;
        };
        if !(name.ends_with(".crt") || name.ends_with(".key")) {
            continue;
        }
        // A file removed between the listing and the read is simply left out.
        if let Ok(bytes) = std::fs::read(entry.path()) {
            out.insert(name, bytes);
        }
    }
    Ok(out)
}

fn hash_files(files: &BTreeMap<String, Vec<u8>>) -> u64 {
    let mut h = DefaultHasher::new();
    files.hash(&mut h);
    h.finish()
}

/// Polls `dir` every `every` and loads changed certificates.
pub async fn watch_dir(certs: Arc<CertStore>, dir: PathBuf, every: Duration) {
    let mut last: Option<u64> = None;
    let mut logged = false;
    loop {
        match read_dir(&dir) {
            Ok(files) => {
                logged = false;
                let h = hash_files(&files);
                if last != Some(h) {
                    last = Some(h);
                    let n = certs.update(&files);
                    tracing::info!(dir = %dir.display(), certificates = n, "listener certificates read");
                }
            }
            Err(error) => {
                if !logged {
                    tracing::warn!(dir = %dir.display(), %error, "cannot read the certificate directory; retrying");
                    logged = true;
                }
            }
        }
        tokio::time::sleep(every).await;
    }
}

/// Files by name (Secret keys or directory entries).
pub type Files = BTreeMap<String, Vec<u8>>;

/// Aborts the follower when replaced or dropped.
struct Follower(JoinHandle<()>);

impl Drop for Follower {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The TLS Secret name of the applied config.
fn wanted_secret(store: &ConfigStore) -> Option<String> {
    store.load()?.config.gateway.as_ref()?.tls_secret.clone()
}

/// Follows the TLS Secret the applied config names (switching when the name
/// changes) and loads every version into `certs`.
pub async fn watch_secret(certs: Arc<CertStore>, store: Arc<ConfigStore>, http: KubeHttp, namespace: String) {
    let mut applied: watch::Receiver<u64> = store.subscribe();
    let mut current: Option<(String, Follower, mpsc::Receiver<Files>)> = None;
    loop {
        let wanted = wanted_secret(&store);
        if current.as_ref().map(|(n, _, _)| n) != wanted.as_ref() {
            current = wanted.map(|name| {
                tracing::info!(%namespace, secret = %name, "following the gateway TLS secret");
                let (tx, rx) = mpsc::channel(4);
                let obj = ObjectRef {
                    resource: "secrets",
                    namespace: namespace.clone(),
                    name: name.clone(),
                };
                let task = tokio::spawn(follow_object(http.clone(), obj, secret_data, tx, None));
                (name, Follower(task), rx)
            });
        }
        match &mut current {
            Some((name, _, rx)) => tokio::select! {
                r = applied.changed() => if r.is_err() { return },
                v = rx.recv() => match v {
                    Some(files) => {
                        let n = certs.update(&files);
                        tracing::info!(secret = %name, certificates = n, "listener certificates read");
                    }
                    None => current = None,
                },
            },
            None => {
                if applied.changed().await.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGVsbG8h").unwrap(), b"hello!");
        assert_eq!(base64_decode("aGk=").unwrap(), b"hi");
        assert_eq!(base64_decode("aGk").unwrap(), b"hi");
        assert_eq!(base64_decode("aG\nVs bG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("").unwrap(), b"");
        assert!(base64_decode("a").is_none());
        assert!(base64_decode("a$==").is_none());
    }

    #[test]
    fn secret_data_is_decoded() {
        let obj = serde_json::json!({"data": {"a.crt": "aGk=", "bad": "%%%"}});
        let d = secret_data(&obj);
        assert_eq!(d.get("a.crt").map(Vec::as_slice), Some(&b"hi"[..]));
        assert!(!d.contains_key("bad"));
        assert!(secret_data(&serde_json::json!({})).is_empty());
    }
}
