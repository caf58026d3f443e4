//! `images.json`: the stable index other make targets and test harnesses read to find
//! built archives — image name → reference, archive path, digests, sizes, and the
//! recipe that packed it (`<archive stem>.recipe` beside the archive, when present).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::inspect::{Archive, InspectError};

/// Reading or writing the catalog failed.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// A `NAME=ARCHIVE` argument is malformed.
    #[error("expected NAME=ARCHIVE, got {0:?}")]
    Spec(String),
    /// An archive does not verify.
    #[error("{0}: {1}")]
    Archive(PathBuf, InspectError),
    /// File I/O.
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    /// JSON.
    #[error("{0}: {1}")]
    Json(PathBuf, serde_json::Error),
}

/// One image in the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Fully qualified name (`docker.io/weft/proxy:0.1.0`).
    pub reference: String,
    /// Docker `RepoTags`.
    pub repo_tags: Vec<String>,
    /// Absolute path of the archive.
    pub archive: PathBuf,
    /// Absolute path of its recipe, if one sits beside it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipe: Option<PathBuf>,
    /// Manifest digest.
    pub manifest_digest: String,
    /// Config digest (image id).
    pub config_digest: String,
    /// sha256 of the archive file.
    pub archive_sha256: String,
    /// Compressed layer bytes.
    pub compressed_size: u64,
    /// Unpacked file bytes.
    pub unpacked_size: u64,
}

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    /// Free-form facts about the build (version, source hash, cache directory).
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
    /// Images by short name (`proxy`).
    pub images: BTreeMap<String, Entry>,
}

impl Catalog {
    /// Verifies each `NAME=ARCHIVE` and records it.
    pub fn build(specs: &[String], meta: BTreeMap<String, String>) -> Result<Self, CatalogError> {
        let mut images = BTreeMap::new();
        for spec in specs {
            let (name, path) = spec
                .split_once('=')
                .filter(|(n, p)| !n.is_empty() && !p.is_empty())
                .ok_or_else(|| CatalogError::Spec(spec.clone()))?;
            let archive = std::path::absolute(path).map_err(|e| CatalogError::Io(path.into(), e))?;
            let summary = Archive::open(&archive)
                .and_then(|a| a.summary())
                .map_err(|e| CatalogError::Archive(archive.clone(), e))?;
            let recipe = archive.with_extension("recipe");
            images.insert(
                name.to_string(),
                Entry {
                    reference: summary.reference,
                    repo_tags: summary.repo_tags,
                    recipe: recipe.is_file().then_some(recipe),
                    archive,
                    manifest_digest: summary.manifest_digest,
                    config_digest: summary.config_digest,
                    archive_sha256: summary.archive_sha256,
                    compressed_size: summary.compressed_size,
                    unpacked_size: summary.unpacked_size,
                },
            );
        }
        Ok(Catalog { meta, images })
    }

    /// Reads a catalog.
    pub fn load(path: &Path) -> Result<Self, CatalogError> {
        let text = std::fs::read(path).map_err(|e| CatalogError::Io(path.into(), e))?;
        serde_json::from_slice(&text).map_err(|e| CatalogError::Json(path.into(), e))
    }

    /// Writes it (pretty JSON, trailing newline).
    pub fn save(&self, path: &Path) -> Result<(), CatalogError> {
        let mut text = serde_json::to_vec_pretty(self).map_err(|e| CatalogError::Json(path.into(), e))?;
        text.push(b'\n');
        std::fs::write(path, text).map_err(|e| CatalogError::Io(path.into(), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{ImageSpec, build};
    use crate::layer::{Layer, Owner};
    use crate::oci::RunConfig;
    use crate::reference::ImageRef;

    #[test]
    fn records_verified_archives_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = Layer::new();
        l.add_file("/pause", b"ELF".to_vec(), 0o755, Owner::default())
            .unwrap();
        let spec = ImageSpec {
            reference: ImageRef::parse("weft.local/pause:3.10").unwrap(),
            run: RunConfig::default(),
            epoch: 0,
            architecture: "amd64".into(),
        };
        let img = build(&spec, &l).unwrap();
        let tar = dir.path().join("pause.tar");
        crate::archive::write_file(&img, 0, &tar).unwrap();
        std::fs::write(dir.path().join("pause.recipe"), "--ref weft.local/pause:3.10\n").unwrap();
        let meta = BTreeMap::from([("version".to_string(), "0.1.0".to_string())]);
        let cat = Catalog::build(&[format!("pause={}", tar.display())], meta).unwrap();
        let e = &cat.images["pause"];
        assert_eq!(e.reference, "weft.local/pause:3.10");
        assert_eq!(e.manifest_digest, img.manifest_digest);
        assert_eq!(
            e.recipe.as_deref(),
            Some(dir.path().join("pause.recipe").as_path())
        );
        let out = dir.path().join("images.json");
        cat.save(&out).unwrap();
        assert_eq!(Catalog::load(&out).unwrap(), cat);

        assert!(matches!(
            Catalog::build(&["pause".into()], BTreeMap::new()),
            Err(CatalogError::Spec(_))
        ));
        std::fs::write(dir.path().join("bad.tar"), b"not a tar").unwrap();
        let bad = format!("bad={}", dir.path().join("bad.tar").display());
        assert!(matches!(
            Catalog::build(&[bad], BTreeMap::new()),
            Err(CatalogError::Archive(..))
        ));
    }
}
