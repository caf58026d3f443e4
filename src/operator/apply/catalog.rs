//! Writes the shared service catalog (`permissive` mode) into the mesh namespace:
//! its shard ConfigMaps, a Role `weft-catalog` allowing `get` on exactly those
//! shards and `get`/`list`/`watch` on the index, a RoleBinding granting it to
//! every identity whose config references the catalog, and then the index
//! ConfigMap `weft-catalog` listing the shards. The index never names a shard
//! that is not written yet, and a shard is deleted only after it has been out of
//! the index for a grace period (and after a round without errors): a sidecar
//! still fetching it finds it, and content that comes back soon (a canary
//! flipped back) reuses it.

use super::objects::{ANN_CONFIG_HASH, hash_of};
use super::{Applier, ManagedStores, at};
use crate::certs::store::{LABEL_MANAGED_BY, MANAGED_BY};
use crate::operator::render::catalog::INDEX_NAME;
use crate::operator::render::content_hash;
use crate::operator::render::{Catalog, IdentityKey, RenderedShard};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::api::ObjectMeta;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Label marking the catalog's objects: value `shard`, `index` or `rbac`.
pub const LABEL_CATALOG: &str = "weft.dev/catalog";
/// Name of the Role and RoleBinding giving identities read access to the shards.
pub const CATALOG_ROLE: &str = "weft-catalog";
/// How long an unreferenced shard is kept by default.
pub const DEFAULT_CATALOG_GRACE: Duration = Duration::from_secs(30);

/// Since when each existing shard has been unreferenced.
#[derive(Debug)]
pub(super) struct Pruning {
    grace: Duration,
    since: Mutex<HashMap<(String, String), Instant>>,
}

impl Pruning {
    pub(super) fn new(grace: Duration) -> Self {
        Self {
            grace,
            since: Mutex::new(HashMap::new()),
        }
    }

    /// Of the unreferenced shards `candidates`, those whose grace is over (they
    /// are forgotten here), and when the next one's ends. Shards referenced again
    /// or gone start over.
    fn due(&self, candidates: &[(String, String)], now: Instant) -> (Vec<(String, String)>, Option<Instant>) {
        let mut since = self.since.lock().unwrap_or_else(|p| p.into_inner());
        since.retain(|k, _| candidates.contains(k));
        let mut ready = Vec::new();
        let mut next: Option<Instant> = None;
        for c in candidates {
            let at = *since.entry(c.clone()).or_insert(now);
            let end = at + self.grace;
            if end <= now {
                ready.push(c.clone());
            } else {
                next = Some(next.map_or(end, |n| n.min(end)));
            }
        }
        for r in &ready {
            since.remove(r);
        }
        (ready, next)
    }
}

fn meta(namespace: &str, name: &str, part: &str, hash: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(namespace.into()),
        labels: Some(
            [
                (LABEL_MANAGED_BY.to_string(), MANAGED_BY.to_string()),
                (LABEL_CATALOG.to_string(), part.to_string()),
            ]
            .into(),
        ),
        annotations: Some([(ANN_CONFIG_HASH.to_string(), hash)].into()),
        ..ObjectMeta::default()
    }
}

/// One shard's ConfigMap (key [`weft_proxy_config::CATALOG_KEY`]).
pub fn shard_config_map(namespace: &str, shard: &RenderedShard) -> ConfigMap {
    ConfigMap {
        metadata: meta(namespace, &shard.name, "shard", shard.hash.clone()),
        data: Some(BTreeMap::from([(
            weft_proxy_config::CATALOG_KEY.to_string(),
            shard.json.clone(),
        )])),
        // Content-addressed: a shard never changes, so the API server may cache it as such.
        immutable: Some(true),
        ..ConfigMap::default()
    }
}

/// The index ConfigMap `weft-catalog` (key [`weft_proxy_config::INDEX_KEY`]).
/// Serializing a list of names cannot fail; an empty document would be refused
/// by every sidecar, never half-applied.
pub fn index_config_map(catalog: &Catalog) -> ConfigMap {
    let json = catalog.index().to_json().unwrap_or_default();
    let hash = content_hash(json.as_bytes());
    ConfigMap {
        metadata: meta(&catalog.namespace, INDEX_NAME, "index", hash),
        data: Some(BTreeMap::from([(weft_proxy_config::INDEX_KEY.to_string(), json)])),
        ..ConfigMap::default()
    }
}

/// Role: `get` on exactly the current shards; `get`/`list`/`watch` on the index
/// (a watch must select it with `fieldSelector=metadata.name=weft-catalog`).
pub fn role(catalog: &Catalog) -> Role {
    let rule = |names: Vec<String>, verbs: &[&str]| PolicyRule {
        api_groups: Some(vec![String::new()]),
        resources: Some(vec!["configmaps".into()]),
        resource_names: Some(names),
        verbs: verbs.iter().map(|v| v.to_string()).collect(),
        non_resource_urls: None,
    };
    let rules = vec![
        rule(catalog.names(), &["get"]),
        rule(vec![INDEX_NAME.to_string()], &["get", "list", "watch"]),
    ];
    let hash = content_hash(serde_json::to_string(&rules).unwrap_or_default().as_bytes());
    Role {
        metadata: meta(&catalog.namespace, CATALOG_ROLE, "rbac", hash),
        rules: Some(rules),
    }
}

/// RoleBinding of [`role`] to every reader identity.
pub fn role_binding(namespace: &str, readers: &BTreeSet<&IdentityKey>) -> RoleBinding {
    let subjects: Vec<Subject> = readers
        .iter()
        .map(|(ns, sa)| Subject {
            kind: "ServiceAccount".into(),
            name: sa.clone(),
            namespace: Some(ns.clone()),
            api_group: None,
        })
        .collect();
    let role_ref = RoleRef {
        api_group: "rbac.authorization.k8s.io".into(),
        kind: "Role".into(),
        name: CATALOG_ROLE.into(),
    };
    let hash = content_hash(serde_json::to_string(&subjects).unwrap_or_default().as_bytes());
    RoleBinding {
        metadata: meta(namespace, CATALOG_ROLE, "rbac", hash),
        role_ref,
        subjects: Some(subjects),
    }
}

impl Applier {
    /// Writes the shards, the Role and RoleBinding, then (only if all of that
    /// succeeded) the index. Returns `(writes, errors)`.
    pub(super) async fn apply_catalog(
        &self,
        catalog: &Catalog,
        readers: &BTreeSet<&IdentityKey>,
        stores: &ManagedStores,
    ) -> (usize, usize) {
        let ns = catalog.namespace.as_str();
        let mut results = Vec::with_capacity(catalog.shards.len() + 2);
        for shard in &catalog.shards {
            let cm = shard_config_map(ns, shard);
            let cached = stores.config_maps.get(&at(ns, &shard.name));
            results.push(
                self.apply_obj("catalog-shard", ns, &cm, &shard.hash, cached)
                    .await,
            );
        }
        let r = role(catalog);
        let h = hash_of(&r.metadata).unwrap_or_default().to_string();
        let cached = stores.roles.get(&at(ns, CATALOG_ROLE));
        results.push(self.apply_obj("role", ns, &r, &h, cached).await);
        let rb = role_binding(ns, readers);
        let h = hash_of(&rb.metadata).unwrap_or_default().to_string();
        let cached = stores.role_bindings.get(&at(ns, CATALOG_ROLE));
        results.push(self.apply_obj("rolebinding", ns, &rb, &h, cached).await);
        if !results.contains(&usize::MAX) {
            let index = index_config_map(catalog);
            let h = hash_of(&index.metadata).unwrap_or_default().to_string();
            let cached = stores.config_maps.get(&at(ns, INDEX_NAME));
            results.push(self.apply_obj("catalog-index", ns, &index, &h, cached).await);
        }
        let errors = results.iter().filter(|r| **r == usize::MAX).count();
        let writes = results.iter().filter(|r| **r != usize::MAX).sum();
        (writes, errors)
    }

    /// Deletes shards the current index no longer lists once their grace is
    /// over, and the index, Role and RoleBinding when there is no catalog.
    /// Returns `(writes, errors, when the next grace ends)`.
    pub(super) async fn prune_catalog(
        &self,
        keep: Option<&Catalog>,
        stores: &ManagedStores,
    ) -> (usize, usize, Option<Instant>) {
        let keep_names: BTreeSet<String> = keep.map(|c| c.names().into_iter().collect()).unwrap_or_default();
        let part = |m: &ObjectMeta, want: &str| {
            m.labels
                .as_ref()
                .and_then(|l| l.get(LABEL_CATALOG))
                .is_some_and(|v| v == want)
        };
        let unreferenced: Vec<(String, String)> = stores
            .config_maps
            .state()
            .iter()
            .filter(|c| part(&c.metadata, "shard"))
            .filter_map(|c| Some((c.metadata.namespace.clone()?, c.metadata.name.clone()?)))
            .filter(|(ns, name)| keep.is_none_or(|c| c.namespace != *ns) || !keep_names.contains(name))
            .collect();
        let (due, next) = self.pruning.due(&unreferenced, Instant::now());
        let mut stale: Vec<(&'static str, String, String)> = due
            .into_iter()
            .map(|(ns, name)| ("configmap", ns, name))
            .collect();
        let in_use = |ns: &str| keep.is_some_and(|c| c.namespace == ns);
        stale.extend(
            stores
                .config_maps
                .state()
                .iter()
                .filter(|c| part(&c.metadata, "index"))
                .filter_map(|c| c.metadata.namespace.clone())
                .filter(|ns| !in_use(ns))
                .map(|ns| ("configmap", ns, INDEX_NAME.to_string())),
        );
        stale.extend(
            stores
                .roles
                .state()
                .iter()
                .filter(|r| part(&r.metadata, "rbac"))
                .filter_map(|r| r.metadata.namespace.clone())
                .filter(|ns| !in_use(ns))
                .map(|ns| ("role", ns, CATALOG_ROLE.to_string())),
        );
        stale.extend(
            stores
                .role_bindings
                .state()
                .iter()
                .filter(|r| part(&r.metadata, "rbac"))
                .filter_map(|r| r.metadata.namespace.clone())
                .filter(|ns| !in_use(ns))
                .map(|ns| ("rolebinding", ns, CATALOG_ROLE.to_string())),
        );
        let (mut writes, mut errors) = (0, 0);
        for (kind, ns, name) in stale {
            let r = self.delete(kind, &ns, &name).await;
            if kind == "configmap" {
                // Same content may come back later: it must be written again then.
                let key = super::memo_key("catalog-shard", &ns, &name);
                self.memo.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
            }
            match r {
                Ok(()) => {
                    tracing::info!(kind, namespace = %ns, name = %name, "deleted: no longer part of the service catalog");
                    self.metrics.wrote("delete");
                    writes += 1;
                }
                Err(e) => {
                    tracing::warn!(kind, namespace = %ns, name = %name, error = %e, "delete failed");
                    errors += 1;
                }
            }
        }
        (writes, errors, next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_pruned_only_after_their_grace() {
        let p = Pruning::new(Duration::from_secs(30));
        let t0 = Instant::now();
        let a = ("weft-system".to_string(), "weft-catalog-a".to_string());
        let b = ("weft-system".to_string(), "weft-catalog-b".to_string());
        let (ready, next) = p.due(std::slice::from_ref(&a), t0);
        assert!(ready.is_empty());
        assert_eq!(next, Some(t0 + Duration::from_secs(30)));
        let (ready, _) = p.due(&[a.clone(), b.clone()], t0 + Duration::from_secs(10));
        assert!(ready.is_empty());
        // `a` referenced again (not a candidate): its clock starts over.
        let (ready, next) = p.due(std::slice::from_ref(&b), t0 + Duration::from_secs(31));
        assert!(ready.is_empty());
        assert_eq!(next, Some(t0 + Duration::from_secs(40)));
        let (ready, next) = p.due(&[a.clone(), b.clone()], t0 + Duration::from_secs(40));
        assert_eq!((ready, next), (vec![b], Some(t0 + Duration::from_secs(70))));
    }

    #[test]
    fn objects_grant_exactly_the_shards_to_exactly_the_readers() {
        let catalog = Catalog {
            namespace: "weft-system".into(),
            shards: vec![RenderedShard {
                name: "weft-catalog-0123456789abcdef".into(),
                json: "{}".into(),
                hash: "h".into(),
            }],
        };
        let cm = shard_config_map("weft-system", &catalog.shards[0]);
        assert_eq!(cm.immutable, Some(true));
        assert_eq!(hash_of(&cm.metadata), Some("h"));
        assert!(cm.data.unwrap().contains_key(weft_proxy_config::CATALOG_KEY));
        let r = role(&catalog);
        let rules = r.rules.unwrap();
        assert_eq!(rules[0].verbs, ["get"]);
        assert_eq!(rules[0].resource_names.as_deref(), Some(&catalog.names()[..]));
        assert_eq!(rules[1].verbs, ["get", "list", "watch"]);
        assert_eq!(
            rules[1].resource_names.as_deref(),
            Some(&[INDEX_NAME.to_string()][..])
        );
        let index = index_config_map(&catalog);
        let text = &index.data.unwrap()[weft_proxy_config::INDEX_KEY];
        assert_eq!(
            weft_proxy_config::CatalogIndex::from_json(text).unwrap().shards,
            catalog.names()
        );
        let (a, b) = (
            ("shop".to_string(), "a".to_string()),
            ("web".to_string(), "b".to_string()),
        );
        let rb = role_binding("weft-system", &[&a, &b].into_iter().collect());
        let subjects = rb.subjects.unwrap();
        assert_eq!(subjects.len(), 2);
        assert_eq!(
            (subjects[1].namespace.as_deref(), subjects[1].name.as_str()),
            (Some("web"), "b")
        );
        assert_eq!(rb.role_ref.name, CATALOG_ROLE);
    }
}
