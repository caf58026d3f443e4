//! Container environment like the kubelet builds it: the `KUBERNETES_SERVICE_*` variables,
//! `envFrom` ConfigMaps/Secrets, then `env` with `$(VAR)` expansion, `fieldRef`,
//! `resourceFieldRef`, `configMapKeyRef` and `secretKeyRef`. Also the downward-API field
//! paths shared with downwardAPI volumes, and a per-sync cache of fetched objects.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddrV4};

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use kube::{Api, Client};

/// Why the environment (or a volume) could not be built: the kubelet's
/// `CreateContainerConfigError`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A referenced object or key is missing and not optional.
    #[error("{0}")]
    Missing(String),
    /// The API call failed.
    #[error("reading {what}: {source}")]
    Api {
        /// What was read.
        what: String,
        /// The cause.
        source: kube::Error,
    },
    /// A field path or value is not supported.
    #[error("{0}")]
    Unsupported(String),
}

/// The pod-level facts env vars and downward-API files can refer to.
#[derive(Debug, Clone)]
pub struct PodFacts<'a> {
    /// The pod object.
    pub pod: &'a Pod,
    /// Its IP.
    pub pod_ip: Ipv4Addr,
    /// The node's address.
    pub host_ip: Ipv4Addr,
    /// The API server as pods reach it (its `kubernetes` Service ClusterIP:443 normally).
    pub kubernetes_service: Option<SocketAddrV4>,
}

fn map_entry(map: Option<&BTreeMap<String, String>>, key: &str) -> String {
    map.and_then(|m| m.get(key)).cloned().unwrap_or_default()
}

fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v:?}\n"))
        .collect()
}

/// The value of a downward-API field path.
pub fn field_value(facts: &PodFacts<'_>, path: &str) -> Result<String, ConfigError> {
    let m = &facts.pod.metadata;
    let spec = facts.pod.spec.as_ref();
    let keyed = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|r| r.strip_suffix("']"))
            .map(str::to_string)
    };
    Ok(match path {
        "metadata.name" => m.name.clone().unwrap_or_default(),
        "metadata.namespace" => m.namespace.clone().unwrap_or_default(),
        "metadata.uid" => m.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(m.labels.as_ref()),
        "metadata.annotations" => format_map(m.annotations.as_ref()),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into()),
        "status.podIP" | "status.podIPs" => facts.pod_ip.to_string(),
        "status.hostIP" | "status.hostIPs" => facts.host_ip.to_string(),
        _ => {
            if let Some(k) = keyed("metadata.labels['") {
                map_entry(m.labels.as_ref(), &k)
            } else if let Some(k) = keyed("metadata.annotations['") {
                map_entry(m.annotations.as_ref(), &k)
            } else {
                return Err(ConfigError::Unsupported(format!("unsupported fieldRef {path:?}")));
            }
        }
    })
}

/// ConfigMaps and Secrets of one namespace, fetched once per sync.
pub struct ObjectCache {
    client: Client,
    namespace: String,
    config_maps: HashMap<String, Option<ConfigMap>>,
    secrets: HashMap<String, Option<Secret>>,
}

impl std::fmt::Debug for ObjectCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectCache")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl ObjectCache {
    /// An empty cache for `namespace`.
    pub fn new(client: Client, namespace: &str) -> Self {
        Self {
            client,
            namespace: namespace.into(),
            config_maps: HashMap::new(),
            secrets: HashMap::new(),
        }
    }

    /// The client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// A ConfigMap's data (text and binary), `None` if it does not exist.
    pub async fn config_map(&mut self, name: &str) -> Result<Option<BTreeMap<String, Vec<u8>>>, ConfigError> {
        if !self.config_maps.contains_key(name) {
            let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace);
            let cm = api.get_opt(name).await.map_err(|source| ConfigError::Api {
                what: format!("configmap {name}"),
                source,
            })?;
            self.config_maps.insert(name.into(), cm);
        }
        Ok(self.config_maps.get(name).and_then(Option::as_ref).map(|cm| {
            let mut out: BTreeMap<String, Vec<u8>> = cm
                .data
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
                .collect();
            out.extend(
                cm.binary_data
                    .iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), v.0.clone())),
            );
            out
        }))
    }

    /// A Secret's data, `None` if it does not exist.
    pub async fn secret(&mut self, name: &str) -> Result<Option<BTreeMap<String, Vec<u8>>>, ConfigError> {
        if !self.secrets.contains_key(name) {
            let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
            let s = api.get_opt(name).await.map_err(|source| ConfigError::Api {
                what: format!("secret {name}"),
                source,
            })?;
            self.secrets.insert(name.into(), s);
        }
        Ok(self.secrets.get(name).and_then(Option::as_ref).map(|s| {
            s.data
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.0.clone()))
                .collect()
        }))
    }

    async fn key(
        &mut self,
        secret: bool,
        name: &str,
        key: &str,
        optional: bool,
    ) -> Result<Option<String>, ConfigError> {
        let kind = if secret { "secret" } else { "configmap" };
        let data = if secret {
            self.secret(name).await?
        } else {
            self.config_map(name).await?
        };
        match data.map(|d| d.get(key).cloned()) {
            Some(Some(v)) => Ok(Some(String::from_utf8_lossy(&v).into_owned())),
            _ if optional => Ok(None),
            None => Err(ConfigError::Missing(format!("{kind} \"{name}\" not found"))),
            Some(None) => Err(ConfigError::Missing(format!(
                "couldn't find key {key} in {kind} {}/{name}",
                self.namespace
            ))),
        }
    }
}

/// Expands `$(VAR)` references to already defined variables; `$$` escapes `$`; unknown
/// references stay as written (the kubelet's rules).
pub fn expand(value: &str, defined: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
        {
            let name = &inner[..end];
            match defined.get(name) {
                Some(v) => out.push_str(v),
                None => out.push_str(&format!("$({name})")),
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The full environment of `container`, in the order the kubelet applies it.
pub async fn container_env(
    container: &Container,
    facts: &PodFacts<'_>,
    cache: &mut ObjectCache,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut set = |vars: &mut BTreeMap<String, String>, k: String, v: String| {
        if !vars.contains_key(&k) {
            order.push(k.clone());
        }
        vars.insert(k, v);
    };
    set(
        &mut vars,
        "PATH".into(),
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
    );
    set(
        &mut vars,
        "HOSTNAME".into(),
        facts.pod.metadata.name.clone().unwrap_or_default(),
    );
    if let Some(k) = facts.kubernetes_service {
        set(&mut vars, "KUBERNETES_SERVICE_HOST".into(), k.ip().to_string());
        set(&mut vars, "KUBERNETES_SERVICE_PORT".into(), k.port().to_string());
        set(
            &mut vars,
            "KUBERNETES_SERVICE_PORT_HTTPS".into(),
            k.port().to_string(),
        );
    }
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let (data, optional, kind, name) = if let Some(r) = &from.config_map_ref {
            (
                cache.config_map(&r.name).await?,
                r.optional.unwrap_or(false),
                "configmap",
                r.name.clone(),
            )
        } else if let Some(r) = &from.secret_ref {
            (
                cache.secret(&r.name).await?,
                r.optional.unwrap_or(false),
                "secret",
                r.name.clone(),
            )
        } else {
            continue;
        };
        match data {
            Some(d) => {
                for (k, v) in d {
                    set(
                        &mut vars,
                        format!("{prefix}{k}"),
                        String::from_utf8_lossy(&v).into_owned(),
                    );
                }
            }
            None if optional => {}
            None => return Err(ConfigError::Missing(format!("{kind} \"{name}\" not found"))),
        }
    }
    for e in container.env.iter().flatten() {
        let value = if let Some(v) = &e.value {
            Some(expand(v, &vars))
        } else if let Some(src) = &e.value_from {
            if let Some(f) = &src.field_ref {
                Some(field_value(facts, &f.field_path)?)
            } else if let Some(r) = &src.config_map_key_ref {
                cache
                    .key(false, &r.name, &r.key, r.optional.unwrap_or(false))
                    .await?
            } else if let Some(r) = &src.secret_key_ref {
                cache
                    .key(true, &r.name, &r.key, r.optional.unwrap_or(false))
                    .await?
            } else if let Some(r) = &src.resource_field_ref {
                Some(resource_value(container, &r.resource))
            } else {
                return Err(ConfigError::Unsupported(format!(
                    "unsupported valueFrom for env {}",
                    e.name
                )));
            }
        } else {
            Some(String::new())
        };
        if let Some(v) = value {
            set(&mut vars, e.name.clone(), v);
        }
    }
    Ok(order
        .into_iter()
        .filter_map(|k| vars.get(&k).map(|v| (k, v.clone())))
        .collect())
}

/// `resourceFieldRef`: the container's request/limit as written, or the node's capacity.
fn resource_value(container: &Container, resource: &str) -> String {
    let r = container.resources.as_ref();
    let (kind, name) = resource.split_once('.').unwrap_or(("limits", resource));
    let set = if kind == "requests" {
        r.and_then(|r| r.requests.as_ref())
    } else {
        r.and_then(|r| r.limits.as_ref())
    };
    match set.and_then(|s| s.get(name)) {
        Some(q) => q.0.clone(),
        None if name == "cpu" => super::node_status::CAPACITY_CPU.into(),
        None => super::node_status::CAPACITY_MEMORY_BYTES.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_follows_kubelet_rules() {
        let defined: BTreeMap<String, String> = [("A".to_string(), "1".to_string())].into();
        assert_eq!(expand("x$(A)y", &defined), "x1y");
        assert_eq!(expand("$(B)", &defined), "$(B)");
        assert_eq!(expand("$$(A)", &defined), "$(A)");
        assert_eq!(expand("cost $5", &defined), "cost $5");
        assert_eq!(expand("$(unclosed", &defined), "$(unclosed");
    }

    #[test]
    fn field_paths() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "n", "uid": "u", "labels": {"app": "web"}},
            "spec": {"containers": [], "serviceAccountName": "sa", "nodeName": "weft-node-0"}
        }))
        .unwrap();
        let facts = PodFacts {
            pod: &pod,
            pod_ip: Ipv4Addr::new(198, 18, 0, 7),
            host_ip: Ipv4Addr::new(198, 18, 0, 1),
            kubernetes_service: None,
        };
        let f = |p: &str| field_value(&facts, p).unwrap();
        assert_eq!(f("metadata.name"), "p");
        assert_eq!(f("metadata.namespace"), "n");
        assert_eq!(f("spec.serviceAccountName"), "sa");
        assert_eq!(f("status.podIP"), "198.18.0.7");
        assert_eq!(f("metadata.labels['app']"), "web");
        assert_eq!(f("metadata.labels"), "app=\"web\"\n");
        assert!(field_value(&facts, "spec.bogus").is_err());
    }
}
