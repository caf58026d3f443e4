//! Real network-namespace test of the self-connection guard (issue 14, item 2):
//! with `weft-proxy init` rules and `weft-proxy run` (UID 2102) in a "pod"
//! namespace, connections addressed to the proxy's own ports — from the app to
//! `127.0.0.1` or the pod IP, and from another pod to the pod IP — are closed at
//! once instead of being forwarded back into the proxy again and again. The
//! proxy's open sockets stay at their baseline (+1), `/ready` stays 200 and the
//! rejections are counted.
//!
//! Layout: netns `pod` (198.18.252.2/24) and netns `peer` (198.18.252.1/24)
//! joined by a veth pair. The proxy runs under `prlimit --nofile` so that, were
//! the loop back, it could not take more than a few thousand fds.
//! Skips only when not root or when `ip netns` is unavailable.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// `setns` has no safe std wrapper.
#![allow(unsafe_code)]

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_weft-proxy");
const POD_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 252, 2);
const PEER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 252, 1);
const ADMIN: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 15020);

fn must(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().expect("spawn");
    assert!(
        out.status.success(),
        "{program} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A named network namespace, removed with its interfaces on drop.
struct Netns(String);

impl Netns {
    fn new(name: String) -> Self {
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        must("ip", &["netns", "add", &name]);
        let ns = Netns(name);
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }
    fn exec(&self, args: &[&str]) -> String {
        let mut full = vec!["netns", "exec", &self.0];
        full.extend_from_slice(args);
        must("ip", &full)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Kills the proxy on drop, even when an assertion fails.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `f` on a thread inside netns `ns`; sockets it creates stay there.
fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = File::open(format!("/var/run/netns/{ns}")).unwrap();
            // SAFETY: a valid netns fd; affects only this thread.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns({ns}): {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .unwrap()
    })
}

/// One admin GET from inside the pod; `(status line, whole response)`.
fn admin_get(path: &str) -> std::io::Result<(String, String)> {
    let mut s = TcpStream::connect_timeout(&ADMIN.into(), Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    write!(s, "GET {path} HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok((out.lines().next().unwrap_or_default().to_string(), out))
}

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

/// Sockets the process holds (listeners, connections, its own helpers).
fn sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| {
                    std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().starts_with("socket:"))
                })
                .count()
        })
        .unwrap_or(0)
}

fn config_json() -> String {
    serde_json::json!({
        "schemaVersion": weft_proxy_config::SCHEMA_VERSION,
        "identity": {"namespace": "t", "serviceAccount": "app", "spiffeId": "spiffe://cluster.local/ns/t/sa/app"},
        "mesh": {"trustDomain": "cluster.local", "accessMode": "permissive", "mtlsMode": "permissive"},
        "services": {},
        "inbound": {"ports": [], "grants": []},
    })
    .to_string()
}

#[test]
fn connections_to_the_proxy_ports_close_at_once() {
    if unsafe { libc::geteuid() } != 0 || Command::new("ip").args(["netns", "list"]).output().is_err() {
        eprintln!("SKIP: needs root and `ip netns`");
        return;
    }
    weft_proxy_config::ProxyConfig::from_json(&config_json()).expect("test config is valid");
    let tag = format!("wl{}", std::process::id());
    let pod = Netns::new(format!("{tag}-pod"));
    let peer = Netns::new(format!("{tag}-peer"));
    let (veth_pod, veth_peer) = (format!("{tag}p"), format!("{tag}q"));
    must(
        "ip",
        &[
            "link", "add", &veth_pod, "netns", &pod.0, "type", "veth", "peer", "name", &veth_peer, "netns",
            &peer.0,
        ],
    );
    pod.exec(&["ip", "addr", "add", &format!("{POD_IP}/24"), "dev", &veth_pod]);
    pod.exec(&["ip", "link", "set", &veth_pod, "up"]);
    peer.exec(&["ip", "addr", "add", &format!("{PEER_IP}/24"), "dev", &veth_peer]);
    peer.exec(&["ip", "link", "set", &veth_peer, "up"]);

    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = dir.path().join("config.json");
    std::fs::write(&config, config_json()).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    pod.exec(&[BIN, "init"]);
    // `ip netns exec`, `prlimit` and `setpriv` all exec: the child is the proxy.
    let proxy = Proc(
        Command::new("ip")
            .args(["netns", "exec", &pod.0, "prlimit", "--nofile=2048", "--"])
            .args(["setpriv", "--reuid=2102", "--regid=2102", "--clear-groups"])
            .args([BIN, "run", "--workers", "1", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let pid = proxy.0.id();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !in_netns(&pod.0, || {
        admin_get("/ready").is_ok_and(|(s, _)| s.contains(" 200 "))
    }) {
        assert!(Instant::now() < deadline, "proxy never became ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        std::fs::read_link(format!("/proc/{pid}/exe"))
            .is_ok_and(|p| p.to_string_lossy().contains("weft-proxy")),
        "pid {pid} is the proxy"
    );
    let baseline = sockets(pid);

    let mut probes = Vec::new();
    for port in [15001, 15006, 15020] {
        for ip in [Ipv4Addr::LOCALHOST, POD_IP] {
            // The admin port is the admin server itself when reached directly: only
            // the listeners that forward can loop.
            if port != 15020 {
                probes.push(("pod", SocketAddrV4::new(ip, port)));
            }
        }
    }
    // Another pod reaching the pod IP on a proxy port is redirected to :15006.
    probes.push(("peer", SocketAddrV4::new(POD_IP, 15001)));
    probes.push(("peer", SocketAddrV4::new(POD_IP, 15006)));
    for (from, target) in &probes {
        let ns = if *from == "pod" { &pod.0 } else { &peer.0 };
        let took = in_netns(ns, || time_to_close(*target));
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
        let (status, _) = in_netns(&pod.0, || admin_get("/ready")).expect("admin answers");
        assert!(status.contains(" 200 "), "/ready after {target}: {status}");
    }

    let (_, metrics) = in_netns(&pod.0, || admin_get("/metrics")).unwrap();
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

    pod.exec(&[BIN, "init", "--cleanup"]);
}
