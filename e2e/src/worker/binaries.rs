//! Finding what the test node runs: kubelet and kube-proxy (built by `make kube-bins` from
//! the pinned k8s.io/kubernetes module), containerd, runc and the CNI plugins (Debian
//! packages, installed by `make deps`), and crictl plus the pause and CoreDNS images
//! (built by `make node-tools`, e2e/node-tools/build.sh).

use std::path::{Path, PathBuf};

use crate::control_plane::binaries::kube_version;

const COREDNS_GO_MOD: &str = include_str!("../../node-tools/coredns/go.mod");
const CRICTL_GO_MOD: &str = include_str!("../../node-tools/crictl/go.mod");

/// The pause version built from the pinned Kubernetes module (`PAUSE_VERSION` in
/// mk/node.mk; upstream's build/pause/Makefile `TAG` for 1.34).
pub const PAUSE_VERSION: &str = "3.10.1";
/// Image reference of the locally built pause image (the CRI sandbox image).
pub fn pause_image() -> String {
    format!("localhost/weft-node/pause:{PAUSE_VERSION}")
}
/// Image reference of the locally built CoreDNS image (as in e2e/node-tools/coredns.yaml).
pub fn coredns_image() -> String {
    format!("localhost/weft-node/coredns:{}", coredns_version())
}

fn pinned(go_mod: &'static str, module: &str) -> &'static str {
    go_mod
        .lines()
        .find_map(|l| {
            let l = l.trim().strip_prefix("require ").unwrap_or(l.trim());
            l.strip_prefix(module)
                .and_then(|rest| rest.strip_prefix(' '))
                .and_then(|v| v.split_whitespace().next())
        })
        .unwrap_or("unknown")
}

/// CoreDNS version pinned by e2e/node-tools/coredns/go.mod.
pub fn coredns_version() -> &'static str {
    pinned(COREDNS_GO_MOD, "github.com/coredns/coredns")
}

/// cri-tools version pinned by e2e/node-tools/crictl/go.mod.
pub fn crictl_version() -> &'static str {
    pinned(CRICTL_GO_MOD, "sigs.k8s.io/cri-tools")
}

/// Everything the node runs, by path.
#[derive(Debug, Clone)]
pub struct NodeBinaries {
    /// kubelet.
    pub kubelet: PathBuf,
    /// kube-proxy.
    pub kube_proxy: PathBuf,
    /// containerd.
    pub containerd: PathBuf,
    /// runc (containerd's shim finds it on PATH; checked here for a clear error).
    pub runc: PathBuf,
    /// ctr (image import).
    pub ctr: PathBuf,
    /// crictl.
    pub crictl: PathBuf,
    /// The CNI plugin directory (bridge, host-local, loopback, portmap).
    pub cni_bin_dir: PathBuf,
    /// The pause image archive.
    pub pause_archive: PathBuf,
    /// The CoreDNS image archive.
    pub coredns_archive: PathBuf,
}

/// Something the node needs is missing.
#[derive(Debug, thiserror::Error)]
#[error("{what} not found at {path}; {fix}")]
pub struct Missing {
    /// Which thing.
    pub what: String,
    /// Where it was expected.
    pub path: PathBuf,
    /// How to get it.
    pub fix: &'static str,
}

fn env_path(key: &str) -> Option<PathBuf> {
    std::env::var_os(key).filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// `$WEFT_CACHE`, else `~/.cache/weft`.
pub fn cache_dir() -> PathBuf {
    env_path("WEFT_CACHE").unwrap_or_else(|| {
        env_path("HOME")
            .unwrap_or_else(|| PathBuf::from("/root"))
            .join(".cache")
            .join("weft")
    })
}

/// Where `make node-tools` puts crictl and the pause/CoreDNS binaries and images.
pub fn node_tools_dir() -> PathBuf {
    env_path("WEFT_NODE_TOOLS_DIR").unwrap_or_else(|| {
        cache_dir().join("node-tools").join(format!(
            "pause-{PAUSE_VERSION}-coredns-{}-crictl-{}",
            coredns_version(),
            crictl_version()
        ))
    })
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

impl NodeBinaries {
    /// Locates everything, failing with what is missing and which make target provides it.
    pub fn locate() -> Result<Self, Missing> {
        let kube_dir =
            env_path("WEFT_KUBE_BIN_DIR").unwrap_or_else(|| cache_dir().join("kube").join(kube_version()));
        let tools = node_tools_dir();
        let debian = |name: &str| {
            on_path(name).ok_or_else(|| Missing {
                what: name.to_string(),
                path: PathBuf::from(format!("$PATH/{name}")),
                fix: "install the Debian packages with `make deps` (containerd, runc, containernetworking-plugins)",
            })
        };
        let cni_bin_dir = env_path("WEFT_CNI_BIN_DIR").unwrap_or_else(|| PathBuf::from("/usr/lib/cni"));
        let b = Self {
            kubelet: kube_dir.join("kubelet"),
            kube_proxy: kube_dir.join("kube-proxy"),
            containerd: debian("containerd")?,
            runc: debian("runc")?,
            ctr: debian("ctr")?,
            crictl: tools.join("crictl"),
            pause_archive: tools.join("pause.tar"),
            coredns_archive: tools.join("coredns.tar"),
            cni_bin_dir,
        };
        let check = |what: &str, path: &Path, fix: &'static str| {
            if path.is_file() {
                Ok(())
            } else {
                Err(Missing {
                    what: what.to_string(),
                    path: path.to_path_buf(),
                    fix,
                })
            }
        };
        check("kubelet", &b.kubelet, "build it with `make kube-bins`")?;
        check("kube-proxy", &b.kube_proxy, "build it with `make kube-bins`")?;
        for plugin in ["bridge", "host-local", "loopback", "portmap"] {
            check(
                &format!("CNI plugin {plugin}"),
                &b.cni_bin_dir.join(plugin),
                "install containernetworking-plugins with `make deps`",
            )?;
        }
        check("crictl", &b.crictl, "build it with `make node-tools`")?;
        check(
            "the pause image",
            &b.pause_archive,
            "build it with `make node-tools`",
        )?;
        check(
            "the CoreDNS image",
            &b.coredns_archive,
            "build it with `make node-tools`",
        )?;
        Ok(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_come_from_the_wrapper_modules_and_match_the_makefile() {
        assert!(coredns_version().starts_with("v1."), "{}", coredns_version());
        assert!(crictl_version().starts_with("v1."), "{}", crictl_version());
        let mk = include_str!("../../../mk/node.mk");
        for (var, value) in [
            ("PAUSE_VERSION", PAUSE_VERSION),
            ("COREDNS_VERSION", coredns_version()),
            ("CRICTL_VERSION", crictl_version()),
        ] {
            assert!(
                mk.contains(&format!("{var} ?= {value}")),
                "mk/node.mk must pin {var} ?= {value}"
            );
        }
        let dns = include_str!("../../node-tools/coredns.yaml");
        assert!(
            dns.contains(&format!("image: {}", coredns_image())),
            "coredns.yaml image"
        );
    }
}
