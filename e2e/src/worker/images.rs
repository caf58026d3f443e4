//! Images on the test node: every image a pod may run is imported into containerd's
//! `k8s.io` namespace from an archive built on this machine (`make images` for weft's,
//! `make node-tools` for pause and CoreDNS) — nothing is ever pulled. The kubelet then
//! finds them like pulled images (`imagePullPolicy: IfNotPresent`).

use std::path::{Path, PathBuf};
use std::process::Command;

/// containerd namespace the CRI plugin uses.
pub const CRI_NAMESPACE: &str = "k8s.io";

/// An image could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// No archives where expected.
    #[error("no image archives in {0}; build them with `make images`")]
    NoArchives(PathBuf),
    /// The archives were built from other sources than this tree's.
    #[error(
        "weft's images in {dir} were built from other sources (cache key {built}, this tree {tree}); \
         rebuild them with `make images` (or set WEFT_IMAGES_DIR to use other archives as they are)"
    )]
    Stale {
        /// The images dir.
        dir: PathBuf,
        /// The key recorded in images.json.
        built: String,
        /// This tree's key.
        tree: String,
    },
    /// The freshness check itself failed.
    #[error("checking weft's images: {0}")]
    Check(String),
    /// ctr failed.
    #[error("importing {archive}: {detail}")]
    Import {
        /// The archive.
        archive: PathBuf,
        /// ctr's complaint.
        detail: String,
    },
}

/// The directory `make images` writes weft's archives to: `$WEFT_IMAGES_DIR`, else
/// `<repo>/target/images`.
pub fn weft_images_dir(repo_root: &Path) -> PathBuf {
    std::env::var_os("WEFT_IMAGES_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root.join("target").join("images"))
}

/// Fails with [`ImageError::Stale`] unless the images in `<repo>/target/images` were built
/// from this tree (the cache key `make images` computes, `tools/images/build.sh
/// --print-key`, equals `meta.source_hash` in images.json). Skipped when
/// `WEFT_IMAGES_DIR` names other archives.
pub fn check_fresh(repo_root: &Path) -> Result<(), ImageError> {
    if std::env::var_os("WEFT_IMAGES_DIR").is_some_and(|v| !v.is_empty()) {
        return Ok(());
    }
    let dir = weft_images_dir(repo_root);
    let index = std::fs::read(dir.join("images.json")).map_err(|_| ImageError::NoArchives(dir.clone()))?;
    let index: serde_json::Value =
        serde_json::from_slice(&index).map_err(|e| ImageError::Check(format!("images.json: {e}")))?;
    let built = index["meta"]["source_hash"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let out = Command::new("bash")
        .arg(repo_root.join("tools/images/build.sh"))
        .arg("--print-key")
        .current_dir(repo_root)
        .output()
        .map_err(|e| ImageError::Check(format!("tools/images/build.sh --print-key: {e}")))?;
    if !out.status.success() {
        return Err(ImageError::Check(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    let tree = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if built == tree {
        Ok(())
    } else {
        Err(ImageError::Stale { dir, built, tree })
    }
}

/// Environment variable naming extra image archives every node start imports besides
/// pause, CoreDNS and weft's images: paths separated by `:` (e.g. the conformance suite's
/// echo image, `make conformance-tools`). Unset or empty = none.
pub const EXTRA_IMAGES_ENV: &str = "WEFT_NODE_EXTRA_IMAGES";

/// The archives `$WEFT_NODE_EXTRA_IMAGES` names ([`EXTRA_IMAGES_ENV`]); a named archive
/// that does not exist is an error (a typo must not silently leave the image out).
pub fn extra_archives() -> Result<Vec<PathBuf>, ImageError> {
    parse_extra(std::env::var(EXTRA_IMAGES_ENV).unwrap_or_default().as_str())
}

fn parse_extra(value: &str) -> Result<Vec<PathBuf>, ImageError> {
    value
        .split(':')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            let path = PathBuf::from(p);
            if path.is_file() {
                Ok(path)
            } else {
                Err(ImageError::Import {
                    archive: path,
                    detail: format!("named in ${EXTRA_IMAGES_ENV} but not a file"),
                })
            }
        })
        .collect()
}

/// The `*.tar` archives in `dir`, sorted.
pub fn archives_in(dir: &Path) -> Result<Vec<PathBuf>, ImageError> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|_| ImageError::NoArchives(dir.to_path_buf()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "tar"))
        .collect();
    found.sort();
    if found.is_empty() {
        return Err(ImageError::NoArchives(dir.to_path_buf()));
    }
    Ok(found)
}

/// Image references in `ctr images import` output (`unpacking <ref> (sha256:…)...done`).
pub fn imported_refs(ctr_output: &str) -> Vec<String> {
    ctr_output
        .lines()
        .filter_map(|l| l.trim().strip_prefix("unpacking "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|r| !r.starts_with("sha256:"))
        .map(str::to_string)
        .collect()
}

/// Imports `archive` into containerd (at `socket`) and returns the references it added.
pub fn import(ctr: &Path, socket: &Path, archive: &Path) -> Result<Vec<String>, ImageError> {
    let out = Command::new(ctr)
        .arg("--address")
        .arg(socket)
        .args(["-n", CRI_NAMESPACE, "images", "import"])
        .arg(archive)
        .output()
        .map_err(|e| ImageError::Import {
            archive: archive.to_path_buf(),
            detail: e.to_string(),
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(ImageError::Import {
            archive: archive.to_path_buf(),
            detail: format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim()),
        });
    }
    let refs = imported_refs(&text);
    if refs.is_empty() {
        return Err(ImageError::Import {
            archive: archive.to_path_buf(),
            detail: format!("ctr imported no named image: {}", text.trim()),
        });
    }
    Ok(refs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_refs_ctr_imported() {
        let out = "unpacking docker.io/weft/proxy:0.1.0 (sha256:cf12)...done\n\
                   unpacking sha256:7ff2 (sha256:cf12)...done\n";
        assert_eq!(imported_refs(out), ["docker.io/weft/proxy:0.1.0"]);
        assert!(imported_refs("").is_empty());
    }

    #[test]
    fn extra_archives_are_colon_separated_and_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.tar");
        std::fs::write(&a, "").unwrap();
        assert!(parse_extra("").unwrap().is_empty());
        assert_eq!(
            parse_extra(&format!("{}:", a.display())).unwrap(),
            std::slice::from_ref(&a)
        );
        let missing = dir.path().join("missing.tar");
        let err = parse_extra(&format!("{}:{}", a.display(), missing.display())).unwrap_err();
        assert!(err.to_string().contains("missing.tar"), "{err}");
    }

    #[test]
    fn lists_only_tar_archives() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(archives_in(dir.path()), Err(ImageError::NoArchives(_))));
        std::fs::write(dir.path().join("b.tar"), "").unwrap();
        std::fs::write(dir.path().join("a.tar"), "").unwrap();
        std::fs::write(dir.path().join("images.json"), "{}").unwrap();
        let got = archives_in(dir.path()).unwrap();
        assert_eq!(got, [dir.path().join("a.tar"), dir.path().join("b.tar")]);
    }
}
