//! Pod volumes, materialised under the pod's directory like the kubelet does: emptyDir (a
//! world-writable dir), hostPath, and the data volumes (ConfigMap, Secret, downwardAPI and
//! projected — incl. ServiceAccount tokens from the TokenRequest API) written with the
//! [`atomic_writer`](super::atomic_writer) and re-synced periodically, so updates reach
//! running containers through their bind mounts.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    DownwardAPIProjection, KeyToPath, ServiceAccount, Volume, VolumeProjection,
};
use kube::Api;
use kube::api::PostParams;

use super::atomic_writer::{self, Files};
use super::env::{ConfigError, ObjectCache, PodFacts, field_value};

const DEFAULT_MODE: u32 = 0o644;
const DEFAULT_TOKEN_SECONDS: i64 = 3600;

/// Cached ServiceAccount tokens of one pod: (audience, expiry seconds, path) → token.
#[derive(Debug, Default)]
pub struct TokenCache {
    tokens: HashMap<(String, i64), (String, Instant)>,
}

impl TokenCache {
    /// A token for the pod's ServiceAccount, requested again after 80% of its lifetime
    /// (the kubelet's rule).
    async fn token(
        &mut self,
        cache: &ObjectCache,
        facts: &PodFacts<'_>,
        audience: &str,
        seconds: i64,
    ) -> Result<String, ConfigError> {
        let key = (audience.to_string(), seconds);
        if let Some((token, refresh_at)) = self.tokens.get(&key)
            && Instant::now() < *refresh_at
        {
            return Ok(token.clone());
        }
        let pod = facts.pod;
        let sa_name = pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into());
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let api: Api<ServiceAccount> = Api::namespaced(cache.client().clone(), &ns);
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: if audience.is_empty() {
                    Vec::new()
                } else {
                    vec![audience.to_string()]
                },
                expiration_seconds: Some(seconds),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: pod.metadata.name.clone(),
                    uid: pod.metadata.uid.clone(),
                }),
            },
            ..TokenRequest::default()
        };
        let issued = Instant::now();
        let resp = api
            .create_token_request(&sa_name, &PostParams::default(), &request)
            .await
            .map_err(|source| ConfigError::Api {
                what: format!("token for serviceaccount {ns}/{sa_name}"),
                source,
            })?;
        let token = resp.status.map(|s| s.token).unwrap_or_default();
        let ttl = u64::try_from(seconds).unwrap_or(600);
        self.tokens
            .insert(key, (token.clone(), issued + Duration::from_secs(ttl * 8 / 10)));
        Ok(token)
    }
}

fn mode_of(item_mode: Option<i32>, default: u32) -> u32 {
    item_mode.and_then(|m| u32::try_from(m).ok()).unwrap_or(default)
}

/// Selects keys of `data` into `files` per `items` (all keys when `items` is empty).
fn project(
    files: &mut Files,
    data: Option<std::collections::BTreeMap<String, Vec<u8>>>,
    items: Option<&Vec<KeyToPath>>,
    optional: bool,
    what: &str,
    default_mode: u32,
) -> Result<(), ConfigError> {
    let Some(data) = data else {
        return if optional {
            Ok(())
        } else {
            Err(ConfigError::Missing(format!("{what} not found")))
        };
    };
    match items.filter(|i| !i.is_empty()) {
        None => {
            for (k, v) in data {
                files.insert(k, (v, default_mode));
            }
        }
        Some(items) => {
            for item in items {
                match data.get(&item.key) {
                    Some(v) => {
                        files.insert(item.path.clone(), (v.clone(), mode_of(item.mode, default_mode)));
                    }
                    None if optional => {}
                    None => {
                        return Err(ConfigError::Missing(format!(
                            "key {} not found in {what}",
                            item.key
                        )));
                    }
                }
            }
        }
    }
    Ok(())
}

async fn projection_files(
    sources: &[VolumeProjection],
    default_mode: u32,
    facts: &PodFacts<'_>,
    cache: &mut ObjectCache,
    tokens: &mut TokenCache,
) -> Result<Files, ConfigError> {
    let mut files = Files::new();
    for src in sources {
        if let Some(t) = &src.service_account_token {
            let seconds = t.expiration_seconds.unwrap_or(DEFAULT_TOKEN_SECONDS).max(600);
            let token = tokens
                .token(cache, facts, t.audience.as_deref().unwrap_or(""), seconds)
                .await?;
            files.insert(t.path.clone(), (token.into_bytes(), default_mode));
        }
        if let Some(c) = &src.config_map {
            let data = cache.config_map(&c.name).await?;
            let what = format!("configmap \"{}\"", c.name);
            project(
                &mut files,
                data,
                c.items.as_ref(),
                c.optional.unwrap_or(false),
                &what,
                default_mode,
            )?;
        }
        if let Some(s) = &src.secret {
            let data = cache.secret(&s.name).await?;
            let what = format!("secret \"{}\"", s.name);
            project(
                &mut files,
                data,
                s.items.as_ref(),
                s.optional.unwrap_or(false),
                &what,
                default_mode,
            )?;
        }
        if let Some(d) = &src.downward_api {
            for item in d.items.iter().flatten() {
                let Some(f) = &item.field_ref else {
                    return Err(ConfigError::Unsupported(
                        "downwardAPI resourceFieldRef is not supported".into(),
                    ));
                };
                let v = field_value(facts, &f.field_path)?;
                files.insert(
                    item.path.clone(),
                    (v.into_bytes(), mode_of(item.mode, default_mode)),
                );
            }
        }
    }
    Ok(files)
}

/// Creates or refreshes `volume` under `volumes_dir` and returns the host path to bind.
/// `owner` (uid, gid) owns data files (the pod's `fsGroup` / single `runAsUser`).
pub async fn sync(
    volume: &Volume,
    volumes_dir: &Path,
    facts: &PodFacts<'_>,
    cache: &mut ObjectCache,
    tokens: &mut TokenCache,
    owner: Option<(u32, u32)>,
) -> Result<PathBuf, ConfigError> {
    let dir = volumes_dir.join(&volume.name);
    let io = |e: std::io::Error| ConfigError::Unsupported(format!("volume {}: {e}", volume.name));
    if volume.empty_dir.is_some() {
        if !dir.exists() {
            std::fs::create_dir_all(&dir).map_err(io)?;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).map_err(io)?;
        }
        return Ok(dir);
    }
    if let Some(h) = &volume.host_path {
        let path = PathBuf::from(&h.path);
        if !path.exists() && h.type_.as_deref() == Some("DirectoryOrCreate") {
            std::fs::create_dir_all(&path).map_err(io)?;
        }
        return Ok(path);
    }
    let files = if let Some(c) = &volume.config_map {
        let mut files = Files::new();
        let data = cache.config_map(&c.name).await?;
        let mode = mode_of(c.default_mode, DEFAULT_MODE);
        let what = format!("configmap \"{}\"", c.name);
        project(
            &mut files,
            data,
            c.items.as_ref(),
            c.optional.unwrap_or(false),
            &what,
            mode,
        )?;
        files
    } else if let Some(s) = &volume.secret {
        let mut files = Files::new();
        let name = s.secret_name.clone().unwrap_or_default();
        let data = cache.secret(&name).await?;
        let mode = mode_of(s.default_mode, DEFAULT_MODE);
        project(
            &mut files,
            data,
            s.items.as_ref(),
            s.optional.unwrap_or(false),
            &format!("secret \"{name}\""),
            mode,
        )?;
        files
    } else if let Some(p) = &volume.projected {
        let mode = mode_of(p.default_mode, DEFAULT_MODE);
        projection_files(p.sources.as_deref().unwrap_or(&[]), mode, facts, cache, tokens).await?
    } else if let Some(d) = &volume.downward_api {
        let projection = DownwardAPIProjection {
            items: d.items.clone(),
        };
        let source = VolumeProjection {
            downward_api: Some(projection),
            ..Default::default()
        };
        projection_files(
            &[source],
            mode_of(d.default_mode, DEFAULT_MODE),
            facts,
            cache,
            tokens,
        )
        .await?
    } else {
        return Err(ConfigError::Unsupported(format!(
            "volume {}: only emptyDir, hostPath, configMap, secret, downwardAPI and projected volumes are supported",
            volume.name
        )));
    };
    let changed = atomic_writer::write(&dir, &files, owner).map_err(io)?;
    if changed {
        tracing::debug!(volume = %volume.name, files = files.len(), "volume written");
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projection_selects_items_and_modes() {
        let data: std::collections::BTreeMap<String, Vec<u8>> =
            [("a".to_string(), b"1".to_vec()), ("b".to_string(), b"2".to_vec())].into();
        let mut files = Files::new();
        project(&mut files, Some(data.clone()), None, false, "cm", 0o644).unwrap();
        assert_eq!(files.len(), 2);
        let items = vec![KeyToPath {
            key: "b".into(),
            path: "dir/b.txt".into(),
            mode: Some(0o600),
        }];
        let mut files = Files::new();
        project(&mut files, Some(data.clone()), Some(&items), false, "cm", 0o644).unwrap();
        assert_eq!(files.get("dir/b.txt"), Some(&(b"2".to_vec(), 0o600)));
        let missing = vec![KeyToPath {
            key: "zz".into(),
            path: "zz".into(),
            mode: None,
        }];
        assert!(project(&mut Files::new(), Some(data), Some(&missing), false, "cm", 0o644).is_err());
        assert!(project(&mut Files::new(), None, None, true, "cm", 0o644).is_ok());
        let err = project(&mut Files::new(), None, None, false, "configmap \"x\"", 0o644).unwrap_err();
        assert_eq!(err.to_string(), "configmap \"x\" not found");
    }
}
