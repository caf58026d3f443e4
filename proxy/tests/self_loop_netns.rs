//! Real network-namespace test of the self-connection guard (issue 14, item 2):
//! with `weft-proxy init` rules and `weft-proxy run` (UID 2102) in a "pod"
//! namespace, connections addressed to the proxy's own ports — from the app to
//! `127.0.0.1` or the pod IP, and from another pod to the pod IP — are closed at
//! once instead of being forwarded back into the proxy again and again. The
//! proxy's open sockets stay at their baseline (+1), `/ready` stays 200 and the
//! rejections are counted.
//!
//! Layout: netns `pod` (198.18.252.2/24) and netns `peer` (198.18.252.1/24)
//! joined by a veth pair (see `netns/mod.rs`). The proxy runs under
//! `prlimit --nofile=2048` so that, were the loop back, it could not take more
//! fds than that. Skips only when not root or when `ip netns` is unavailable.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod netns;

use netns::{Pod, admin_get, sockets};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::time::{Duration, Instant};

const POD_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 252, 2);
const PEER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 252, 1);

/// Connects to `target`, sends a request and returns how long the proxy took to
/// close the connection (`None`: still open after 2 s, or never connected).
fn time_to_close(target: SocketAddrV4) -> Option<Duration> {
    let mut s = TcpStream::connect_timeout(&target.into(), Duration::from_secs(2)).ok()?;
    let t0 = Instant::now();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let _ = s.write_all(b"GET / HTTP/1.1\r\nhost: loop\r\n\r\n");
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Some(t0.elapsed()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Some(t0.elapsed()),
            Err(_) => return None,
        }
    }
}

#[test]
fn connections_to_the_proxy_ports_close_at_once() {
    if !netns::supported() {
        eprintln!("SKIP: needs root and `ip netns`");
        return;
    }
    let p = Pod::start("wl", POD_IP, PEER_IP);
    let pid = p.pid();
    let baseline = sockets(pid);

    let mut probes = Vec::new();
    // The admin port reached directly is the admin server itself: only the
    // listeners that forward (15001, 15006) can loop.
    for port in [15001, 15006] {
        for ip in [Ipv4Addr::LOCALHOST, POD_IP] {
            probes.push(("pod", SocketAddrV4::new(ip, port)));
        }
        // Another pod reaching the pod IP on a proxy port is redirected to :15006.
        probes.push(("peer", SocketAddrV4::new(POD_IP, port)));
    }
    for (from, target) in &probes {
        let ns = if *from == "pod" { &p.pod } else { &p.peer };
        let took = ns.run(|| time_to_close(*target));
        assert!(
            took.is_some_and(|t| t < Duration::from_millis(500)),
            "{target} from {from}: closed after {took:?} (want at once); proxy sockets {} (baseline {baseline})",
            sockets(pid)
        );
        std::thread::sleep(Duration::from_millis(100));
        let open = sockets(pid).saturating_sub(baseline);
        assert!(
            open <= 1,
            "{target} from {from}: {open} extra sockets in the proxy"
        );
        let (status, _) = p.pod.run(|| admin_get("/ready")).expect("admin answers");
        assert!(status.contains(" 200 "), "/ready after {target}: {status}");
    }

    let (_, metrics) = p.pod.run(|| admin_get("/metrics")).unwrap();
    let rejected: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("proxy_self_connection_rejected_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(
        rejected,
        probes.len() as f64,
        "every loop was counted:\n{metrics}"
    );
}
