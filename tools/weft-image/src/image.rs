//! Assembles an image from one layer and its runtime settings: the gzip layer blob,
//! the config, the manifest, and the two indexes of the archive (`index.json` with the
//! names containerd reads, `manifest.json` with Docker's `RepoTags`). Pure: no I/O.

use std::collections::BTreeMap;

use crate::layer::{Layer, LayerError, gzip};
use crate::oci::{
    ANNOTATION_CONTAINERD_NAME, ANNOTATION_REF_NAME, Descriptor, DockerManifest, History, ImageConfig, Index,
    Layout, MEDIA_CONFIG, MEDIA_INDEX, MEDIA_LAYER_GZIP, MEDIA_MANIFEST, Manifest, Platform, RootFs,
    RunConfig, blob_path, rfc3339, sha256_digest,
};
use crate::reference::ImageRef;

/// `PATH` set when the caller gives none (Docker's default).
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What `created_by` says in the history.
pub const CREATED_BY: &str = "weft-image pack";

/// Runtime settings of an image.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    /// Its name.
    pub reference: ImageRef,
    /// Entrypoint, user, env, workdir, labels, cmd.
    pub run: RunConfig,
    /// Timestamp for `created` and every file (seconds since the epoch).
    pub epoch: u64,
    /// `amd64`.
    pub architecture: String,
}

/// Building failed.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The layer could not be encoded.
    #[error(transparent)]
    Layer(#[from] LayerError),
    /// Compression or JSON encoding failed.
    #[error("encoding the image: {0}")]
    Encode(String),
}

/// An image ready to be written: every blob plus the archive's index files.
#[derive(Debug, Clone)]
pub struct Image {
    /// Blobs by digest (layer, config, manifest).
    pub blobs: BTreeMap<String, Vec<u8>>,
    /// `index.json` bytes.
    pub index_json: Vec<u8>,
    /// `manifest.json` bytes.
    pub docker_manifest_json: Vec<u8>,
    /// `oci-layout` bytes.
    pub oci_layout: Vec<u8>,
    /// Manifest digest (what a registry reports as the image digest).
    pub manifest_digest: String,
    /// Config digest (the image id of Docker and containerd).
    pub config_digest: String,
    /// Compressed layer size.
    pub compressed_size: u64,
    /// Sum of the regular files' sizes.
    pub unpacked_size: u64,
}

fn json<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, ImageError> {
    serde_json::to_vec(v).map_err(|e| ImageError::Encode(e.to_string()))
}

/// Adds the default `PATH` unless `env` sets one.
pub fn with_default_path(mut env: Vec<String>) -> Vec<String> {
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.to_string());
    }
    env
}

/// Builds the blobs and indexes of `spec` with `layer` as its only layer.
pub fn build(spec: &ImageSpec, layer: &Layer) -> Result<Image, ImageError> {
    let tar = layer.to_tar(spec.epoch)?;
    let diff_id = sha256_digest(&tar);
    let layer_gz = gzip(&tar).map_err(|e| ImageError::Encode(e.to_string()))?;
    let created = rfc3339(spec.epoch);
    let config = ImageConfig {
        created: created.clone(),
        architecture: spec.architecture.clone(),
        os: "linux".into(),
        config: RunConfig {
            env: with_default_path(spec.run.env.clone()),
            ..spec.run.clone()
        },
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids: vec![diff_id],
        },
        history: vec![History {
            created,
            created_by: CREATED_BY.into(),
        }],
    };
    let config_json = json(&config)?;
    let config_desc = Descriptor::of(MEDIA_CONFIG, &config_json);
    let layer_desc = Descriptor::of(MEDIA_LAYER_GZIP, &layer_gz);
    let manifest = Manifest {
        schema_version: 2,
        media_type: MEDIA_MANIFEST.into(),
        config: config_desc.clone(),
        layers: vec![layer_desc.clone()],
    };
    let manifest_json = json(&manifest)?;
    let mut manifest_desc = Descriptor::of(MEDIA_MANIFEST, &manifest_json);
    manifest_desc.annotations = BTreeMap::from([
        (ANNOTATION_CONTAINERD_NAME.to_string(), spec.reference.qualified()),
        (ANNOTATION_REF_NAME.to_string(), spec.reference.tag().to_string()),
    ]);
    manifest_desc.platform = Some(Platform {
        architecture: spec.architecture.clone(),
        os: "linux".into(),
    });
    let index = Index {
        schema_version: 2,
        media_type: MEDIA_INDEX.into(),
        manifests: vec![manifest_desc.clone()],
    };
    let docker = vec![DockerManifest {
        config: blob_path(&config_desc.digest),
        repo_tags: vec![spec.reference.familiar()],
        layers: vec![blob_path(&layer_desc.digest)],
    }];
    let layout = Layout {
        image_layout_version: "1.0.0".into(),
    };
    let blobs = BTreeMap::from([
        (layer_desc.digest.clone(), layer_gz),
        (config_desc.digest.clone(), config_json),
        (manifest_desc.digest.clone(), manifest_json),
    ]);
    Ok(Image {
        blobs,
        index_json: json(&index)?,
        docker_manifest_json: json(&docker)?,
        oci_layout: json(&layout)?,
        manifest_digest: manifest_desc.digest,
        config_digest: config_desc.digest,
        compressed_size: layer_desc.size,
        unpacked_size: layer.content_size(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::Owner;

    pub(crate) fn spec() -> ImageSpec {
        ImageSpec {
            reference: ImageRef::parse("weft/proxy:0.1.0").unwrap(),
            run: RunConfig {
                user: Some("2102:2102".into()),
                entrypoint: vec!["/usr/local/bin/weft-proxy".into()],
                labels: BTreeMap::from([("org.opencontainers.image.version".into(), "0.1.0".into())]),
                ..Default::default()
            },
            epoch: 0,
            architecture: "amd64".into(),
        }
    }

    fn layer() -> Layer {
        let mut l = Layer::new();
        l.add_file(
            "/usr/local/bin/weft-proxy",
            b"ELF".to_vec(),
            0o755,
            Owner::default(),
        )
        .unwrap();
        l
    }

    #[test]
    fn digests_name_their_blobs_and_the_documents_agree() {
        let img = build(&spec(), &layer()).unwrap();
        for (digest, data) in &img.blobs {
            assert_eq!(&sha256_digest(data), digest);
        }
        let index: Index = serde_json::from_slice(&img.index_json).unwrap();
        let entry = &index.manifests[0];
        assert_eq!(entry.digest, img.manifest_digest);
        assert_eq!(
            entry.annotations[ANNOTATION_CONTAINERD_NAME],
            "docker.io/weft/proxy:0.1.0"
        );
        assert_eq!(entry.annotations[ANNOTATION_REF_NAME], "0.1.0");
        let manifest: Manifest = serde_json::from_slice(&img.blobs[&img.manifest_digest]).unwrap();
        assert_eq!(manifest.config.digest, img.config_digest);
        assert_eq!(manifest.config.size, img.blobs[&img.config_digest].len() as u64);
        let docker: Vec<DockerManifest> = serde_json::from_slice(&img.docker_manifest_json).unwrap();
        assert_eq!(docker[0].repo_tags, ["weft/proxy:0.1.0"]);
        assert_eq!(docker[0].config, blob_path(&manifest.config.digest));
        assert_eq!(docker[0].layers, [blob_path(&manifest.layers[0].digest)]);
        let config: ImageConfig = serde_json::from_slice(&img.blobs[&img.config_digest]).unwrap();
        assert_eq!(
            config.rootfs.diff_ids,
            [sha256_digest(&layer().to_tar(0).unwrap())]
        );
        assert_eq!(config.config.env, [DEFAULT_PATH]);
        assert_eq!(config.created, "1970-01-01T00:00:00Z");
        assert_eq!(img.unpacked_size, 3);
    }

    #[test]
    fn deterministic_and_sensitive_to_every_input() {
        let a = build(&spec(), &layer()).unwrap();
        let b = build(&spec(), &layer()).unwrap();
        assert_eq!(a.blobs, b.blobs);
        assert_eq!(a.index_json, b.index_json);
        assert_eq!(a.docker_manifest_json, b.docker_manifest_json);
        let mut later = spec();
        later.epoch = 1;
        assert_ne!(
            build(&later, &layer()).unwrap().manifest_digest,
            a.manifest_digest
        );
        let mut root = spec();
        root.run.user = None;
        assert_ne!(build(&root, &layer()).unwrap().config_digest, a.config_digest);
    }

    #[test]
    fn explicit_path_is_kept() {
        let env = with_default_path(vec!["A=1".into(), "PATH=/bin".into()]);
        assert_eq!(env, ["A=1", "PATH=/bin"]);
        assert_eq!(with_default_path(vec!["A=1".into()]), [DEFAULT_PATH, "A=1"]);
    }
}
