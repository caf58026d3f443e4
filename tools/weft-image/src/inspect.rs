//! Reads an image archive back and checks it the way its consumers will: every blob's
//! name is its sha256, `index.json`, the manifest, the config's `diff_ids` and Docker's
//! `manifest.json` all agree. Reports the names, digests and sizes, and lists layer files.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use flate2::read::GzDecoder;
use serde::Serialize;

use crate::oci::{
    ANNOTATION_CONTAINERD_NAME, ANNOTATION_REF_NAME, DockerManifest, ImageConfig, Index, Manifest, blob_path,
    sha256_digest,
};

/// The archive is unreadable or inconsistent.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// Reading the file or a tar entry failed.
    #[error("reading {0}: {1}")]
    Io(String, std::io::Error),
    /// A required member is missing.
    #[error("archive has no {0}")]
    Missing(String),
    /// A JSON document does not parse.
    #[error("{0} is not valid: {1}")]
    Json(String, serde_json::Error),
    /// Two parts of the archive disagree.
    #[error("inconsistent archive: {0}")]
    Inconsistent(String),
}

/// One layer of an inspected image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LayerSummary {
    /// Digest of the compressed blob.
    pub digest: String,
    /// Compressed size.
    pub size: u64,
    /// Digest of the uncompressed tar.
    pub diff_id: String,
    /// Sum of its regular files' sizes.
    pub unpacked_size: u64,
}

/// What `weft-image inspect` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// `io.containerd.image.name` (`docker.io/weft/proxy:0.1.0`).
    pub reference: String,
    /// `org.opencontainers.image.ref.name`.
    pub ref_name: String,
    /// Docker `RepoTags`.
    pub repo_tags: Vec<String>,
    /// Manifest digest.
    pub manifest_digest: String,
    /// Config digest (image id).
    pub config_digest: String,
    /// Layers.
    pub layers: Vec<LayerSummary>,
    /// Sum of the compressed layer sizes.
    pub compressed_size: u64,
    /// Sum of the layers' file sizes.
    pub unpacked_size: u64,
    /// Size of the archive file.
    pub archive_size: u64,
    /// sha256 of the archive file.
    pub archive_sha256: String,
    /// The image config.
    pub config: ImageConfig,
}

/// One entry of a layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileEntry {
    /// Absolute path in the image.
    pub path: String,
    /// `file`, `dir`, `symlink` or `other`.
    pub kind: &'static str,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
    /// Size (files).
    pub size: u64,
    /// Link target (symlinks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

/// An archive read into memory.
#[derive(Debug, Clone)]
pub struct Archive {
    members: BTreeMap<String, Vec<u8>>,
    size: u64,
    sha256: String,
}

fn io(what: &str) -> impl FnOnce(std::io::Error) -> InspectError + '_ {
    move |e| InspectError::Io(what.to_string(), e)
}

fn inconsistent(msg: String) -> InspectError {
    InspectError::Inconsistent(msg)
}

impl Archive {
    /// Reads the archive at `path`.
    pub fn open(path: &Path) -> Result<Self, InspectError> {
        let bytes = std::fs::read(path).map_err(io(&path.display().to_string()))?;
        Self::from_bytes(&bytes)
    }

    /// Reads an archive from memory.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, InspectError> {
        let mut members = BTreeMap::new();
        let mut ar = tar::Archive::new(bytes);
        for entry in ar.entries().map_err(io("archive"))? {
            let mut entry = entry.map_err(io("archive entry"))?;
            if entry.header().entry_type() != tar::EntryType::Regular {
                continue;
            }
            let name = entry
                .path()
                .map_err(io("entry path"))?
                .to_string_lossy()
                .into_owned();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).map_err(io(&name))?;
            members.insert(name.trim_start_matches("./").to_string(), data);
        }
        Ok(Archive {
            members,
            size: bytes.len() as u64,
            sha256: sha256_digest(bytes),
        })
    }

    fn member(&self, name: &str) -> Result<&[u8], InspectError> {
        self.members
            .get(name)
            .map(Vec::as_slice)
            .ok_or_else(|| InspectError::Missing(name.to_string()))
    }

    fn json<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<T, InspectError> {
        serde_json::from_slice(self.member(name)?).map_err(|e| InspectError::Json(name.to_string(), e))
    }

    /// A blob by digest, checked against its digest.
    pub fn blob(&self, digest: &str) -> Result<&[u8], InspectError> {
        let data = self.member(&blob_path(digest))?;
        if sha256_digest(data) != digest {
            return Err(inconsistent(format!("blob {digest} does not hash to its name")));
        }
        Ok(data)
    }

    fn manifest(&self) -> Result<(Index, Manifest), InspectError> {
        self.json::<crate::oci::Layout>("oci-layout")?;
        let index: Index = self.json("index.json")?;
        let [entry] = index.manifests.as_slice() else {
            return Err(inconsistent(format!(
                "index.json lists {} manifests, expected one",
                index.manifests.len()
            )));
        };
        let data = self.blob(&entry.digest)?;
        if data.len() as u64 != entry.size {
            return Err(inconsistent("manifest size differs from index.json".into()));
        }
        let manifest: Manifest =
            serde_json::from_slice(data).map_err(|e| InspectError::Json("manifest".into(), e))?;
        Ok((index, manifest))
    }

    fn decompressed_layers(&self, manifest: &Manifest) -> Result<Vec<Vec<u8>>, InspectError> {
        manifest
            .layers
            .iter()
            .map(|l| {
                let gz = self.blob(&l.digest)?;
                if gz.len() as u64 != l.size {
                    return Err(inconsistent(format!(
                        "layer {} size differs from manifest",
                        l.digest
                    )));
                }
                let mut tar = Vec::new();
                GzDecoder::new(gz).read_to_end(&mut tar).map_err(io(&l.digest))?;
                Ok(tar)
            })
            .collect()
    }

    /// Verifies the archive and summarises it.
    pub fn summary(&self) -> Result<Summary, InspectError> {
        let (index, manifest) = self.manifest()?;
        let entry = &index.manifests[0];
        let config_data = self.blob(&manifest.config.digest)?;
        let config: ImageConfig =
            serde_json::from_slice(config_data).map_err(|e| InspectError::Json("config".into(), e))?;
        let tars = self.decompressed_layers(&manifest)?;
        let diff_ids: Vec<String> = tars.iter().map(|t| sha256_digest(t)).collect();
        if diff_ids != config.rootfs.diff_ids {
            return Err(inconsistent("config diff_ids do not match the layers".into()));
        }
        let docker: Vec<DockerManifest> = self.json("manifest.json")?;
        let [docker] = docker.as_slice() else {
            return Err(inconsistent("manifest.json must have exactly one entry".into()));
        };
        let want_layers: Vec<String> = manifest.layers.iter().map(|l| blob_path(&l.digest)).collect();
        if docker.config != blob_path(&manifest.config.digest) || docker.layers != want_layers {
            return Err(inconsistent(
                "manifest.json and the OCI manifest name different blobs".into(),
            ));
        }
        let mut layers = Vec::new();
        for ((desc, tar), diff_id) in manifest.layers.iter().zip(&tars).zip(diff_ids) {
            let unpacked_size = list_tar(tar)?
                .iter()
                .filter(|f| f.kind == "file")
                .map(|f| f.size)
                .sum();
            layers.push(LayerSummary {
                digest: desc.digest.clone(),
                size: desc.size,
                diff_id,
                unpacked_size,
            });
        }
        let annotation = |k: &str| entry.annotations.get(k).cloned().unwrap_or_default();
        Ok(Summary {
            reference: annotation(ANNOTATION_CONTAINERD_NAME),
            ref_name: annotation(ANNOTATION_REF_NAME),
            repo_tags: docker.repo_tags.clone(),
            manifest_digest: entry.digest.clone(),
            config_digest: manifest.config.digest.clone(),
            compressed_size: layers.iter().map(|l| l.size).sum(),
            unpacked_size: layers.iter().map(|l| l.unpacked_size).sum(),
            layers,
            archive_size: self.size,
            archive_sha256: self.sha256.clone(),
            config,
        })
    }

    /// Every entry of every layer, in layer order.
    pub fn files(&self) -> Result<Vec<FileEntry>, InspectError> {
        let (_, manifest) = self.manifest()?;
        let mut out = Vec::new();
        for tar in self.decompressed_layers(&manifest)? {
            out.extend(list_tar(&tar)?);
        }
        Ok(out)
    }
}

fn list_tar(tar: &[u8]) -> Result<Vec<FileEntry>, InspectError> {
    let mut out = Vec::new();
    let mut ar = tar::Archive::new(tar);
    for entry in ar.entries().map_err(io("layer"))? {
        let entry = entry.map_err(io("layer entry"))?;
        let h = entry.header();
        let kind = match h.entry_type() {
            tar::EntryType::Regular => "file",
            tar::EntryType::Directory => "dir",
            tar::EntryType::Symlink => "symlink",
            _ => "other",
        };
        let path = entry
            .path()
            .map_err(io("layer path"))?
            .to_string_lossy()
            .into_owned();
        let link = entry
            .link_name()
            .map_err(io("link name"))?
            .map(|l| l.to_string_lossy().into_owned());
        out.push(FileEntry {
            path: format!("/{}", path.trim_start_matches("./").trim_end_matches('/')),
            kind,
            mode: h.mode().map_err(io("mode"))?,
            uid: h.uid().map_err(io("uid"))?,
            gid: h.gid().map_err(io("gid"))?,
            size: h.size().map_err(io("size"))?,
            link,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::write;
    use crate::image::{Image, ImageSpec, build};
    use crate::layer::{Layer, Owner};
    use crate::oci::RunConfig;
    use crate::reference::ImageRef;

    fn image() -> Image {
        let mut l = Layer::new();
        l.add_file(
            "/usr/local/bin/weft-proxy",
            vec![7; 1000],
            0o755,
            Owner::default(),
        )
        .unwrap();
        l.add_symlink("/usr/sbin/iptables-nft-save", "xtables-nft-multi")
            .unwrap();
        let spec = ImageSpec {
            reference: ImageRef::parse("weft/proxy:0.1.0").unwrap(),
            run: RunConfig {
                user: Some("2102:2102".into()),
                ..Default::default()
            },
            epoch: 0,
            architecture: "amd64".into(),
        };
        build(&spec, &l).unwrap()
    }

    #[test]
    fn summary_reports_what_was_built() {
        let img = image();
        let bytes = write(&img, 0, Vec::new()).unwrap();
        let s = Archive::from_bytes(&bytes).unwrap().summary().unwrap();
        assert_eq!(s.reference, "docker.io/weft/proxy:0.1.0");
        assert_eq!(s.ref_name, "0.1.0");
        assert_eq!(s.repo_tags, ["weft/proxy:0.1.0"]);
        assert_eq!(s.manifest_digest, img.manifest_digest);
        assert_eq!(s.config_digest, img.config_digest);
        assert_eq!((s.compressed_size, s.unpacked_size), (img.compressed_size, 1000));
        assert_eq!(s.archive_sha256, sha256_digest(&bytes));
        assert_eq!(s.config.config.user.as_deref(), Some("2102:2102"));
        let files = Archive::from_bytes(&bytes).unwrap().files().unwrap();
        let link = files.iter().find(|f| f.kind == "symlink").unwrap();
        assert_eq!(link.path, "/usr/sbin/iptables-nft-save");
        assert_eq!(link.link.as_deref(), Some("xtables-nft-multi"));
    }

    #[test]
    fn detects_tampering() {
        let mut img = image();
        let layer = img
            .blobs
            .keys()
            .find(|d| img.blobs[*d].len() > 100)
            .cloned()
            .unwrap();
        img.blobs.get_mut(&layer).unwrap()[20] ^= 1;
        let bytes = write(&img, 0, Vec::new()).unwrap();
        let err = Archive::from_bytes(&bytes).unwrap().summary().unwrap_err();
        assert!(err.to_string().contains("does not hash to its name"), "{err}");

        let mut img = image();
        img.docker_manifest_json = b"[]".to_vec();
        let bytes = write(&img, 0, Vec::new()).unwrap();
        let err = Archive::from_bytes(&bytes).unwrap().summary().unwrap_err();
        assert!(matches!(err, InspectError::Inconsistent(_)), "{err}");

        let mut img = image();
        img.oci_layout = b"nope".to_vec();
        let bytes = write(&img, 0, Vec::new()).unwrap();
        assert!(matches!(
            Archive::from_bytes(&bytes).unwrap().summary(),
            Err(InspectError::Json(..))
        ));
    }
}
