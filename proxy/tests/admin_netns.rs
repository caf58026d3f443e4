//! Real network-namespace test of the admin port's peer check (issue 14, item 10):
//! another pod reaching `<podIP>:15020` gets `/live`, `/ready`, `/metrics` and the
//! probe paths, but 403 on `/config`, `/breakers` and anything else, while the
//! same paths answer 200 on loopback inside the pod (as `kubectl exec` or
//! `kubectl port-forward` would ask). Skips only when not root or when `ip netns`
//! is unavailable.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod netns;

use netns::{Pod, admin_get, http_get};
use std::net::{Ipv4Addr, SocketAddrV4};

const POD_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 253, 2);
const PEER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 253, 1);

#[test]
fn admin_port_serves_config_and_breakers_on_loopback_only() {
    if !netns::supported() {
        eprintln!("SKIP: needs root and `ip netns`");
        return;
    }
    let p = Pod::start("wa", POD_IP, PEER_IP);
    let off_host = SocketAddrV4::new(p.pod_ip, 15020);
    for (path, want) in [
        ("/live", "200"),
        ("/ready", "200"),
        ("/metrics", "200"),
        ("/app-probe/web/readyz", "404"),
        ("/config", "403"),
        ("/breakers", "403"),
        ("/config?pretty", "403"),
        ("/nope", "403"),
    ] {
        let (status, resp) = p.peer.run(|| http_get(off_host, path)).unwrap();
        assert!(
            status.contains(&format!(" {want} ")),
            "{path} from the peer: {resp}"
        );
        if want == "403" {
            assert!(resp.contains("x-weft-error: admin-loopback-only"), "{resp}");
        }
    }
    for path in ["/config", "/breakers", "/ready"] {
        let (status, resp) = p.pod.run(|| admin_get(path)).unwrap();
        assert!(status.contains(" 200 "), "{path} on loopback: {resp}");
    }
}
