//! Loading YAML manifests (every `*.yaml` in a directory, multi-document) and applying them
//! to a cluster with server-side apply, the way `kubectl apply --server-side` does; CRDs
//! are additionally awaited until `Established`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{self, Scope};
use kube::runtime::wait::{await_condition, conditions};

/// Field manager of everything the harness applies.
pub const FIELD_MANAGER: &str = "weft-e2e";

/// Why loading or applying failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A document is not a Kubernetes object.
    #[error("{path}: document {index}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 0-based document index.
        index: usize,
        /// What is wrong.
        message: String,
    },
    /// The API server refused an object (or its kind is unknown).
    #[error("applying {kind} {name}: {source}")]
    Api {
        /// The object's kind.
        kind: String,
        /// Its name.
        name: String,
        /// The cause.
        source: kube::Error,
    },
    /// A CRD did not become Established.
    #[error("CRD {0} not Established within the timeout")]
    NotEstablished(String),
}

/// One object from a manifest file.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The file it came from.
    pub path: PathBuf,
    /// The object.
    pub object: DynamicObject,
}

impl Manifest {
    /// Its group/version/kind.
    pub fn gvk(&self) -> Result<GroupVersionKind, ApplyError> {
        let types = self
            .object
            .types
            .as_ref()
            .ok_or_else(|| self.parse_error("no apiVersion/kind"))?;
        GroupVersionKind::try_from(types).map_err(|e| self.parse_error(&e.to_string()))
    }

    /// Its name (empty if missing).
    pub fn name(&self) -> &str {
        self.object.metadata.name.as_deref().unwrap_or_default()
    }

    fn parse_error(&self, message: &str) -> ApplyError {
        ApplyError::Parse {
            path: self.path.clone(),
            index: 0,
            message: message.to_string(),
        }
    }
}

/// The repository root (parent of `e2e/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Every object in every `*.yaml` file of `dir` (files sorted by name, documents in file
/// order, empty documents skipped). A missing directory yields nothing.
pub fn load_dir(dir: &Path) -> Result<Vec<Manifest>, ApplyError> {
    let read_err = |source| ApplyError::Read {
        path: dir.to_path_buf(),
        source,
    };
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(read_err(e)),
    };
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).map_err(|source| ApplyError::Read {
            path: path.clone(),
            source,
        })?;
        out.extend(parse_docs(&path, &text)?);
    }
    Ok(out)
}

/// The objects of one multi-document YAML text.
pub fn parse_docs(path: &Path, text: &str) -> Result<Vec<Manifest>, ApplyError> {
    let mut out = Vec::new();
    for (index, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let parse = |message: String| ApplyError::Parse {
            path: path.to_path_buf(),
            index,
            message,
        };
        let value =
            <serde_yaml::Value as serde::Deserialize>::deserialize(doc).map_err(|e| parse(e.to_string()))?;
        if value.is_null() {
            continue;
        }
        let object: DynamicObject = serde_yaml::from_value(value).map_err(|e| parse(e.to_string()))?;
        if object.types.is_none() || object.metadata.name.is_none() {
            return Err(parse("missing apiVersion, kind or metadata.name".into()));
        }
        out.push(Manifest {
            path: path.to_path_buf(),
            object,
        });
    }
    Ok(out)
}

/// Server-side applies `manifests` in order. Kinds the API server does not know yet (a CRD
/// just established, discovery catching up) and namespaces not yet visible are retried for
/// up to `retry_for`.
pub async fn apply_all(
    client: &kube::Client,
    manifests: &[Manifest],
    retry_for: Duration,
) -> Result<(), ApplyError> {
    for m in manifests {
        let deadline = Instant::now() + retry_for;
        loop {
            match apply_one(client, m).await {
                Ok(()) => break,
                Err(ApplyError::Api { source, .. }) if retryable(&source) && Instant::now() < deadline => {
                    tracing::debug!(kind = ?m.object.types, name = m.name(), error = %source, "retrying apply");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

fn retryable(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => s.code == 404,
        kube::Error::Discovery(_) => true,
        _ => false,
    }
}

async fn apply_one(client: &kube::Client, m: &Manifest) -> Result<(), ApplyError> {
    let gvk = m.gvk()?;
    let api_err = |source| ApplyError::Api {
        kind: gvk.kind.clone(),
        name: m.name().to_string(),
        source,
    };
    let (resource, caps) = discovery::pinned_kind(client, &gvk).await.map_err(api_err)?;
    let api: Api<DynamicObject> = match (caps.scope, m.object.metadata.namespace.as_deref()) {
        (Scope::Cluster, _) => Api::all_with(client.clone(), &resource),
        (Scope::Namespaced, Some(ns)) => Api::namespaced_with(client.clone(), ns, &resource),
        (Scope::Namespaced, None) => Api::default_namespaced_with(client.clone(), &resource),
    };
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(m.name(), &params, &Patch::Apply(&m.object))
        .await
        .map_err(api_err)?;
    Ok(())
}

/// Applies the CRDs in `manifests` (other kinds are an error) and waits until each is
/// `Established`. Returns the CRD names.
pub async fn install_crds(
    client: &kube::Client,
    manifests: &[Manifest],
    timeout: Duration,
) -> Result<Vec<String>, ApplyError> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut names = Vec::new();
    for m in manifests {
        let crd: CustomResourceDefinition = serde_json::to_value(&m.object)
            .and_then(serde_json::from_value)
            .map_err(|e| m.parse_error(&format!("not a CustomResourceDefinition: {e}")))?;
        let name = m.name().to_string();
        let params = PatchParams::apply(FIELD_MANAGER).force();
        api.patch(&name, &params, &Patch::Apply(&crd))
            .await
            .map_err(|source| ApplyError::Api {
                kind: "CustomResourceDefinition".into(),
                name: name.clone(),
                source,
            })?;
        names.push(name);
    }
    for name in &names {
        let established = await_condition(api.clone(), name, conditions::is_crd_established());
        match tokio::time::timeout(timeout, established).await {
            Ok(Ok(Some(_))) => {}
            _ => return Err(ApplyError::NotEstablished(name.clone())),
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_document_yaml_with_comments_and_empty_docs() {
        let text = "# header\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n---\n# only a comment\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d, namespace: a}\nspec: {replicas: 1}\n";
        let docs = parse_docs(Path::new("x.yaml"), text).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(
            docs[0].gvk().unwrap(),
            GroupVersionKind::gvk("", "v1", "Namespace")
        );
        assert_eq!(
            docs[1].gvk().unwrap(),
            GroupVersionKind::gvk("apps", "v1", "Deployment")
        );
        assert_eq!(docs[1].object.metadata.namespace.as_deref(), Some("a"));
        assert_eq!(docs[1].object.data["spec"]["replicas"], 1);
    }

    #[test]
    fn objects_without_kind_or_name_are_rejected() {
        let err = parse_docs(Path::new("x.yaml"), "apiVersion: v1\nmetadata: {name: a}\n").unwrap_err();
        assert!(matches!(err, ApplyError::Parse { index: 0, .. }), "{err}");
        let err = parse_docs(Path::new("x.yaml"), "---\napiVersion: v1\nkind: Namespace\n").unwrap_err();
        assert!(err.to_string().contains("metadata.name"), "{err}");
    }

    #[test]
    fn load_dir_reads_yaml_files_sorted_and_tolerates_missing_dir() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("b.yaml"),
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: b}\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("a.yaml"),
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not yaml").unwrap();
        let names: Vec<String> = load_dir(dir.path())
            .unwrap()
            .iter()
            .map(|m| m.name().to_string())
            .collect();
        assert_eq!(names, ["a", "b"]);
        assert!(load_dir(&dir.path().join("missing")).unwrap().is_empty());
    }

    #[test]
    fn the_repository_manifests_parse() {
        for sub in ["crds", "manifests"] {
            for m in load_dir(&repo_root().join(sub)).unwrap() {
                m.gvk().unwrap();
            }
        }
    }
}
