//! Command lines of etcd, kube-apiserver, kube-controller-manager and kube-scheduler
//! (pure: paths and ports in, argument lists out).

use std::net::IpAddr;

use super::certs::PkiPaths;
use super::layout::Layout;

/// Service CIDR of every weft cluster (DESIGN.md).
pub const SERVICE_CIDR: &str = "198.19.0.0/16";

/// The loopback ports one control plane listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    /// etcd client port.
    pub etcd_client: u16,
    /// etcd peer port (single member, but etcd always listens on one).
    pub etcd_peer: u16,
    /// kube-apiserver secure port.
    pub apiserver: u16,
}

/// etcd: single member, loopback only, no fsync (test data is disposable), and periodic
/// watch progress notifications (kube-apiserver relies on them).
pub fn etcd(layout: &Layout, ports: Ports) -> Vec<String> {
    let client = format!("http://127.0.0.1:{}", ports.etcd_client);
    let peer = format!("http://127.0.0.1:{}", ports.etcd_peer);
    vec![
        "--name=default".into(),
        format!("--data-dir={}", layout.etcd_data.display()),
        format!("--listen-client-urls={client}"),
        format!("--advertise-client-urls={client}"),
        format!("--listen-peer-urls={peer}"),
        format!("--initial-advertise-peer-urls={peer}"),
        format!("--initial-cluster=default={peer}"),
        "--unsafe-no-fsync=true".into(),
        "--experimental-watch-progress-notify-interval=5s".into(),
        "--log-level=warn".into(),
    ]
}

/// kube-apiserver with client-certificate auth, Node+RBAC authorization and weft's service
/// CIDR. Without a node (`node_address: None`) there is no endpoint reconciler, so
/// 127.0.0.1 is never published as the `kubernetes` endpoint. With a node, the API server
/// advertises `node_address` (the node's address on the pod bridge, where pods reach it
/// through the `kubernetes` Service), reaches kubelets at their InternalIP with its own
/// client certificate and verifies their serving certificates against the cluster CA, and
/// NodeRestriction limits each kubelet to its own Node and pods.
pub fn apiserver(pki: &PkiPaths, ports: Ports, bind: IpAddr, node_address: Option<IpAddr>) -> Vec<String> {
    let p = |path: &std::path::Path| path.display().to_string();
    let advertise = node_address.map_or_else(|| "127.0.0.1".to_string(), |a| a.to_string());
    let mut args = vec![
        format!("--etcd-servers=http://127.0.0.1:{}", ports.etcd_client),
        format!("--bind-address={bind}"),
        format!("--advertise-address={advertise}"),
        format!("--secure-port={}", ports.apiserver),
        format!("--tls-cert-file={}", p(&pki.serving_cert)),
        format!("--tls-private-key-file={}", p(&pki.serving_key)),
        format!("--client-ca-file={}", p(&pki.ca_cert)),
        "--authorization-mode=Node,RBAC".into(),
        format!("--service-account-issuer=https://127.0.0.1:{}", ports.apiserver),
        format!("--service-account-key-file={}", p(&pki.sa_public)),
        format!("--service-account-signing-key-file={}", p(&pki.sa_private)),
        format!("--service-cluster-ip-range={SERVICE_CIDR}"),
        "--allow-privileged=true".into(),
        "--profiling=false".into(),
    ];
    if node_address.is_some() {
        args.extend([
            "--enable-admission-plugins=NodeRestriction".to_string(),
            format!("--kubelet-client-certificate={}", p(&pki.kubelet_client_cert)),
            format!("--kubelet-client-key={}", p(&pki.kubelet_client_key)),
            format!("--kubelet-certificate-authority={}", p(&pki.ca_cert)),
            "--kubelet-preferred-address-types=InternalIP".to_string(),
        ]);
    } else {
        args.push("--endpoint-reconciler-type=none".into());
    }
    args
}

/// kube-controller-manager with the default controllers, each using its own service
/// account (as kubeadm does), signing CSRs with the cluster CA.
pub fn controller_manager(layout: &Layout, pki: &PkiPaths) -> Vec<String> {
    let p = |path: &std::path::Path| path.display().to_string();
    vec![
        format!("--kubeconfig={}", p(&layout.controller_manager_kubeconfig)),
        "--secure-port=0".into(),
        "--leader-elect=false".into(),
        "--use-service-account-credentials=true".into(),
        format!("--service-account-private-key-file={}", p(&pki.sa_private)),
        format!("--root-ca-file={}", p(&pki.ca_cert)),
        format!("--cluster-signing-cert-file={}", p(&pki.ca_cert)),
        format!("--cluster-signing-key-file={}", p(&pki.ca_key)),
        format!("--service-cluster-ip-range={SERVICE_CIDR}"),
        "--profiling=false".into(),
    ]
}

/// kube-scheduler with the default profile.
pub fn scheduler(layout: &Layout) -> Vec<String> {
    vec![
        format!("--kubeconfig={}", layout.scheduler_kubeconfig.display()),
        "--secure-port=0".into(),
        "--leader-elect=false".into(),
        "--profiling=false".into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn fixture() -> (Layout, PkiPaths, Ports) {
        let layout = Layout::new(Path::new("/s"));
        let pki = PkiPaths {
            ca_cert: "/s/pki/ca.crt".into(),
            ca_key: "/s/pki/ca.key".into(),
            serving_cert: "/s/pki/apiserver.crt".into(),
            serving_key: "/s/pki/apiserver.key".into(),
            sa_private: "/s/pki/sa.key".into(),
            sa_public: "/s/pki/sa.pub".into(),
            kubelet_client_cert: "/s/pki/kc.crt".into(),
            kubelet_client_key: "/s/pki/kc.key".into(),
        };
        (
            layout,
            pki,
            Ports {
                etcd_client: 1001,
                etcd_peer: 1002,
                apiserver: 1003,
            },
        )
    }

    #[test]
    fn etcd_is_fast_and_loopback_only() {
        let (layout, _, ports) = fixture();
        let a = etcd(&layout, ports);
        assert!(a.contains(&"--unsafe-no-fsync=true".into()));
        assert!(a.contains(&"--listen-client-urls=http://127.0.0.1:1001".into()));
        assert!(a.contains(&"--initial-cluster=default=http://127.0.0.1:1002".into()));
        assert!(a.contains(&"--data-dir=/s/etcd".into()));
        assert!(a.contains(&"--experimental-watch-progress-notify-interval=5s".into()));
    }

    #[test]
    fn apiserver_flags_follow_the_design() {
        let (_, pki, ports) = fixture();
        let a = apiserver(&pki, ports, "127.0.0.1".parse().unwrap(), None);
        for want in [
            "--etcd-servers=http://127.0.0.1:1001",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            "--secure-port=1003",
            "--authorization-mode=Node,RBAC",
            "--service-cluster-ip-range=198.19.0.0/16",
            "--endpoint-reconciler-type=none",
            "--allow-privileged=true",
            "--client-ca-file=/s/pki/ca.crt",
            "--service-account-issuer=https://127.0.0.1:1003",
        ] {
            assert!(a.contains(&want.to_string()), "missing {want}");
        }
        assert!(!a.iter().any(|f| f.starts_with("--kubelet-")), "{a:?}");
    }

    #[test]
    fn with_a_node_the_apiserver_is_published_on_the_bridge_and_reaches_kubelets() {
        let (_, pki, ports) = fixture();
        let a = apiserver(
            &pki,
            ports,
            "0.0.0.0".parse().unwrap(),
            Some("198.18.0.1".parse().unwrap()),
        );
        for want in [
            "--bind-address=0.0.0.0",
            "--advertise-address=198.18.0.1",
            "--enable-admission-plugins=NodeRestriction",
            "--kubelet-client-certificate=/s/pki/kc.crt",
            "--kubelet-client-key=/s/pki/kc.key",
            "--kubelet-certificate-authority=/s/pki/ca.crt",
            "--kubelet-preferred-address-types=InternalIP",
        ] {
            assert!(a.contains(&want.to_string()), "missing {want}");
        }
        // The lease reconciler publishes the advertised address as the `kubernetes` endpoint.
        assert!(
            !a.iter().any(|f| f.starts_with("--endpoint-reconciler-type")),
            "{a:?}"
        );
    }

    #[test]
    fn controllers_do_not_serve_or_elect() {
        let (layout, pki, _) = fixture();
        let cm = controller_manager(&layout, &pki);
        let sched = scheduler(&layout);
        for a in [&cm, &sched] {
            assert!(a.contains(&"--secure-port=0".into()));
            assert!(a.contains(&"--leader-elect=false".into()));
        }
        assert!(cm.contains(&"--kubeconfig=/s/pki/controller-manager.kubeconfig".into()));
        assert!(cm.contains(&"--root-ca-file=/s/pki/ca.crt".into()));
        assert!(sched.contains(&"--kubeconfig=/s/pki/scheduler.kubeconfig".into()));
    }
}
