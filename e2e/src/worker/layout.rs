//! Where the test node keeps its files: one state directory holds containerd's root and
//! state, runc's state, the CNI config and IPAM, the kubelet's root dir and pod logs, the
//! node's keys and the component logs, so cleanup is "unmount and remove one directory".

use std::path::{Path, PathBuf};

/// Paths inside a node's state directory.
#[derive(Debug, Clone)]
pub struct NodeLayout {
    /// The state directory.
    pub root: PathBuf,
    /// Component logs (containerd, kubelet, kube-proxy).
    pub logs: PathBuf,
    /// Node keys, certificates and kubeconfigs.
    pub pki: PathBuf,
    /// The cluster CA certificate (the control plane's).
    pub cluster_ca: PathBuf,
    /// containerd's config file.
    pub containerd_config: PathBuf,
    /// containerd's persistent root (images, snapshots).
    pub containerd_root: PathBuf,
    /// containerd's runtime state.
    pub containerd_state: PathBuf,
    /// containerd's gRPC socket (the CRI endpoint).
    pub containerd_socket: PathBuf,
    /// runc's state (`--root`).
    pub runc_root: PathBuf,
    /// CNI network configs.
    pub cni_conf_dir: PathBuf,
    /// host-local IPAM allocations.
    pub cni_ipam_dir: PathBuf,
    /// The kubelet's `--root-dir` (pod volumes, plugins).
    pub kubelet_root: PathBuf,
    /// KubeletConfiguration file.
    pub kubelet_config: PathBuf,
    /// The kubelet's kubeconfig (node identity).
    pub kubelet_kubeconfig: PathBuf,
    /// Container logs (`podLogsDir`).
    pub pod_logs: PathBuf,
    /// resolv.conf for `dnsPolicy: Default` pods.
    pub resolv_conf: PathBuf,
    /// KubeProxyConfiguration file.
    pub kube_proxy_config: PathBuf,
    /// kube-proxy's kubeconfig.
    pub kube_proxy_kubeconfig: PathBuf,
    /// crictl's config.
    pub crictl_config: PathBuf,
    /// Host state to restore at teardown (sysctls we changed, dirs we created).
    pub host_state: PathBuf,
}

impl NodeLayout {
    /// The layout under `root`; `cluster_ca` is the control plane's CA certificate file.
    pub fn new(root: &Path, cluster_ca: &Path) -> Self {
        let pki = root.join("pki");
        Self {
            root: root.to_path_buf(),
            logs: root.join("logs"),
            cluster_ca: cluster_ca.to_path_buf(),
            containerd_config: root.join("containerd.toml"),
            containerd_root: root.join("containerd").join("root"),
            containerd_state: root.join("containerd").join("state"),
            containerd_socket: root.join("containerd.sock"),
            runc_root: root.join("runc"),
            cni_conf_dir: root.join("cni").join("net.d"),
            cni_ipam_dir: root.join("cni").join("ipam"),
            kubelet_root: root.join("kubelet"),
            kubelet_config: root.join("kubelet.yaml"),
            kubelet_kubeconfig: pki.join("kubelet.kubeconfig"),
            pod_logs: root.join("pod-logs"),
            resolv_conf: root.join("resolv.conf"),
            kube_proxy_config: root.join("kube-proxy.yaml"),
            kube_proxy_kubeconfig: pki.join("kube-proxy.kubeconfig"),
            crictl_config: root.join("crictl.yaml"),
            host_state: root.join("host-state.json"),
            pki,
        }
    }

    /// Creates the directories.
    pub fn create_dirs(&self) -> std::io::Result<()> {
        for d in [
            &self.logs,
            &self.pki,
            &self.containerd_root,
            &self.containerd_state,
            &self.runc_root,
            &self.cni_conf_dir,
            &self.cni_ipam_dir,
            &self.kubelet_root,
            &self.pod_logs,
        ] {
            std::fs::create_dir_all(d)?;
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&self.pki, std::fs::Permissions::from_mode(0o700))
    }
}
