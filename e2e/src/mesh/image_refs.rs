//! `make install IMAGE_REGISTRY=… IMAGE_TAG=…`: rewrites the references to weft's own
//! images (`weft/controller`, `weft/proxy`, `weft/demo-app`) in manifests about to be
//! applied — container images and the MeshConfig's `spec.proxy.image` — and nothing else.

use serde_json::Value;

/// Where to take weft's images from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageOverride {
    /// Registry (and optional path) prefixed to `weft/<name>`, e.g. `registry.local:5000`.
    pub registry: Option<String>,
    /// Tag replacing the manifests' tag.
    pub tag: Option<String>,
}

/// The repositories weft publishes.
pub const WEFT_REPOSITORIES: [&str; 3] = ["weft/controller", "weft/proxy", "weft/demo-app"];

impl ImageOverride {
    /// Whether anything is overridden.
    pub fn is_empty(&self) -> bool {
        self.registry.as_deref().is_none_or(str::is_empty) && self.tag.as_deref().is_none_or(str::is_empty)
    }

    /// `reference` rewritten if it names one of weft's repositories (with or without a
    /// registry, tag or digest); `None` for any other image.
    pub fn rewrite(&self, reference: &str) -> Option<String> {
        let (name, tag) = split_reference(reference);
        let repo = WEFT_REPOSITORIES
            .iter()
            .find(|r| name == **r || name.ends_with(&format!("/{r}")))?;
        let registry = self
            .registry
            .as_deref()
            .filter(|r| !r.is_empty())
            .map(|r| r.trim_end_matches('/'));
        let base = match registry {
            Some(r) => format!("{r}/{repo}"),
            None => name.to_string(),
        };
        let tag = self
            .tag
            .as_deref()
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .or(tag);
        Some(match tag {
            Some(t) if t.starts_with("sha256:") => format!("{base}@{t}"),
            Some(t) => format!("{base}:{t}"),
            None => base,
        })
    }

    /// Rewrites weft's image references inside `object` (a Deployment, DaemonSet, Pod, Job,
    /// … or the MeshConfig). Returns how many were changed.
    pub fn apply(&self, object: &mut Value) -> usize {
        if self.is_empty() {
            return 0;
        }
        let mut changed = 0;
        if object["kind"] == "MeshConfig"
            && let Some(image) = object.pointer_mut("/spec/proxy/image")
        {
            changed += self.rewrite_value(image);
        }
        let spec = if object["kind"] == "Pod" {
            object.pointer_mut("/spec")
        } else {
            object.pointer_mut("/spec/template/spec")
        };
        if let Some(spec) = spec {
            for list in ["containers", "initContainers"] {
                if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
                    for c in cs {
                        if let Some(image) = c.get_mut("image") {
                            changed += self.rewrite_value(image);
                        }
                    }
                }
            }
        }
        changed
    }

    fn rewrite_value(&self, image: &mut Value) -> usize {
        match image.as_str().and_then(|s| self.rewrite(s)) {
            Some(new) if image.as_str() != Some(new.as_str()) => {
                *image = Value::String(new);
                1
            }
            _ => 0,
        }
    }
}

/// `(name, tag-or-digest)`: `reg:5000/weft/proxy:0.1.0` → (`reg:5000/weft/proxy`, `0.1.0`).
fn split_reference(reference: &str) -> (&str, Option<String>) {
    if let Some((name, digest)) = reference.split_once('@') {
        return (name, Some(digest.to_string()));
    }
    match reference.rsplit_once(':') {
        // A colon after the last slash is a tag; before it, a registry port.
        Some((name, tag)) if !tag.contains('/') => (name, Some(tag.to_string())),
        _ => (reference, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ov(registry: Option<&str>, tag: Option<&str>) -> ImageOverride {
        ImageOverride {
            registry: registry.map(str::to_string),
            tag: tag.map(str::to_string),
        }
    }

    #[test]
    fn rewrites_only_weft_repositories() {
        let o = ov(Some("registry.local:5000"), Some("dev"));
        assert_eq!(
            o.rewrite("weft/proxy:0.1.0").as_deref(),
            Some("registry.local:5000/weft/proxy:dev")
        );
        assert_eq!(
            o.rewrite("ghcr.io/me/weft/controller:0.1.0").as_deref(),
            Some("registry.local:5000/weft/controller:dev")
        );
        assert_eq!(o.rewrite("localhost/weft-node/coredns:v1.12.1"), None);
        assert_eq!(o.rewrite("nginx:1.27"), None);
        assert_eq!(
            ov(None, Some("0.2.0"))
                .rewrite("registry.local:5000/weft/demo-app")
                .as_deref(),
            Some("registry.local:5000/weft/demo-app:0.2.0")
        );
        assert_eq!(
            ov(Some("r.io/"), None).rewrite("weft/proxy@sha256:ab").as_deref(),
            Some("r.io/weft/proxy@sha256:ab")
        );
    }

    #[test]
    fn only_image_fields_change() {
        let o = ov(Some("r.io"), Some("t1"));
        let mut deploy = json!({"kind": "Deployment", "metadata": {"name": "weft-controller", "annotations": {"a": "weft/proxy:0.1.0"}},
            "spec": {"template": {"spec": {
                "initContainers": [{"name": "x", "image": "busybox:1"}],
                "containers": [{"name": "controller", "image": "weft/controller:0.1.0", "args": ["weft/proxy:0.1.0"]}]}}}});
        let before = deploy.clone();
        assert_eq!(o.apply(&mut deploy), 1);
        assert_eq!(
            deploy["spec"]["template"]["spec"]["containers"][0]["image"],
            "r.io/weft/controller:t1"
        );
        deploy["spec"]["template"]["spec"]["containers"][0]["image"] =
            before["spec"]["template"]["spec"]["containers"][0]["image"].clone();
        assert_eq!(deploy, before, "nothing but the image changed");

        let mut mesh = json!({"kind": "MeshConfig", "spec": {"proxy": {"image": "weft/proxy:0.1.0", "logLevel": "info"}}});
        assert_eq!(o.apply(&mut mesh), 1);
        assert_eq!(
            mesh["spec"]["proxy"],
            json!({"image": "r.io/weft/proxy:t1", "logLevel": "info"})
        );
        assert_eq!(ImageOverride::default().apply(&mut mesh), 0);
    }

    #[test]
    fn in_the_shipped_manifests_exactly_the_two_weft_images_change() {
        let root = crate::apply::repo_root();
        let mut manifests = crate::apply::load_dir(&root.join("manifests")).unwrap();
        let before: Vec<Value> = manifests
            .iter()
            .map(|m| serde_json::to_value(&m.object).unwrap())
            .collect();
        let o = ov(Some("registry.local:5000"), Some("dev"));
        let changed = crate::mesh::install::override_images(&mut manifests, &o).unwrap();
        assert_eq!(
            changed, 2,
            "the controller Deployment and the MeshConfig proxy image"
        );
        let after: Vec<Value> = manifests
            .iter()
            .map(|m| serde_json::to_value(&m.object).unwrap())
            .collect();
        let diffs: Vec<(usize, String)> = before
            .iter()
            .zip(&after)
            .enumerate()
            .filter(|(_, (b, a))| b != a)
            .map(|(i, (_, a))| (i, a["kind"].as_str().unwrap_or_default().to_string()))
            .collect();
        assert_eq!(
            diffs.iter().map(|d| d.1.as_str()).collect::<Vec<_>>(),
            ["Deployment", "MeshConfig"]
        );
        let text = serde_json::to_string(&after).unwrap();
        assert!(text.contains("registry.local:5000/weft/controller:dev"), "{text}");
        assert!(text.contains("registry.local:5000/weft/proxy:dev"), "{text}");
    }
}
