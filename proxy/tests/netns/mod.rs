//! Shared fixture of the proxy's network-namespace tests: a "pod" namespace with
//! `weft-proxy init` rules and `weft-proxy run` as UID 2102 (under
//! `prlimit --nofile=2048`), and a "peer" namespace on the same veth link.
//! Everything is removed on drop, also when a test fails.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]
// `setns` has no safe std wrapper.
#![allow(unsafe_code)]

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_weft-proxy");
pub const ADMIN: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 15020);

/// Whether the host can run these tests (root and `ip netns`).
pub fn supported() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    root && Command::new("ip").args(["netns", "list"]).output().is_ok()
}

pub fn must(program: &str, args: &[&str]) -> String {
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
pub struct Netns(pub String);

impl Netns {
    pub fn new(name: String) -> Self {
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        must("ip", &["netns", "add", &name]);
        let ns = Netns(name);
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }
    pub fn exec(&self, args: &[&str]) -> String {
        let mut full = vec!["netns", "exec", &self.0];
        full.extend_from_slice(args);
        must("ip", &full)
    }
    /// Runs `f` on a thread inside this namespace; sockets it creates stay there.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        in_netns(&self.0, f)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Kills the proxy on drop, even when an assertion fails.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `f` on a thread inside netns `ns`; sockets it creates stay there.
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
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

/// Minimal keep-alive HTTP/1.1 server answering every request with `label` (and the
/// peer's IP in `x-peer`).
pub fn serve(listener: TcpListener, label: String) {
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let label = label.clone();
            let peer = conn.peer_addr().map(|a| a.ip().to_string()).unwrap_or_default();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut writer = conn;
                loop {
                    // Read one request head (GETs without bodies); EOF ends the connection.
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nx-peer: {peer}\r\ncontent-length: {}\r\n\r\n{label}",
                        label.len()
                    );
                    if writer.write_all(resp.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
}

/// One HTTP/1.1 GET; `(status line, whole response)`.
pub fn http_get(target: SocketAddrV4, path: &str) -> std::io::Result<(String, String)> {
    let mut s = TcpStream::connect_timeout(&target.into(), Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    write!(s, "GET {path} HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok((out.lines().next().unwrap_or_default().to_string(), out))
}

/// One admin GET from inside the pod (loopback).
pub fn admin_get(path: &str) -> std::io::Result<(String, String)> {
    http_get(ADMIN, path)
}

/// Sockets the process holds (listeners, connections, its own helpers).
pub fn sockets(pid: u32) -> usize {
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

/// A permissive config without services.
pub fn config_json() -> String {
    serde_json::json!({
        "schemaVersion": weft_proxy_config::SCHEMA_VERSION,
        "identity": {"namespace": "t", "serviceAccount": "app", "spiffeId": "spiffe://cluster.local/ns/t/sa/app"},
        "mesh": {"trustDomain": "cluster.local", "accessMode": "permissive", "mtlsMode": "permissive"},
        "services": {},
        "inbound": {"ports": [], "grants": []},
    })
    .to_string()
}

/// A meshed pod at `pod_ip` and a peer at `peer_ip` (same /24), proxy ready.
/// Field order is drop order: the proxy dies before its namespaces go.
pub struct Pod {
    pub proxy: Proc,
    pub pod: Netns,
    pub peer: Netns,
    pub pod_ip: Ipv4Addr,
    _dir: tempfile::TempDir,
}

impl Pod {
    pub fn start(tag: &str, pod_ip: Ipv4Addr, peer_ip: Ipv4Addr) -> Self {
        Self::start_with(tag, pod_ip, peer_ip, &config_json(), |_| {})
    }

    /// Like [`Pod::start`] with the proxy config `config_text`; `before` runs once the namespaces exist and
    /// before the rules and the proxy (e.g. to bind app listeners in the pod).
    pub fn start_with(
        tag: &str,
        pod_ip: Ipv4Addr,
        peer_ip: Ipv4Addr,
        config_text: &str,
        before: impl FnOnce(&Netns),
    ) -> Self {
        let tag = format!("{tag}{}", std::process::id());
        let pod = Netns::new(format!("{tag}-pod"));
        let peer = Netns::new(format!("{tag}-peer"));
        let (veth_pod, veth_peer) = (format!("{tag}p"), format!("{tag}q"));
        must(
            "ip",
            &[
                "link", "add", &veth_pod, "netns", &pod.0, "type", "veth", "peer", "name", &veth_peer,
                "netns", &peer.0,
            ],
        );
        pod.exec(&["ip", "addr", "add", &format!("{pod_ip}/24"), "dev", &veth_pod]);
        pod.exec(&["ip", "link", "set", &veth_pod, "up"]);
        peer.exec(&["ip", "addr", "add", &format!("{peer_ip}/24"), "dev", &veth_peer]);
        peer.exec(&["ip", "link", "set", &veth_peer, "up"]);

        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let config = dir.path().join("config.json");
        std::fs::write(&config, config_text).unwrap();
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
        before(&pod);
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
        let deadline = Instant::now() + Duration::from_secs(20);
        while !pod.run(|| admin_get("/ready").is_ok_and(|(s, _)| s.contains(" 200 "))) {
            assert!(Instant::now() < deadline, "proxy never became ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        let pid = proxy.0.id();
        assert!(
            std::fs::read_link(format!("/proc/{pid}/exe"))
                .is_ok_and(|p| p.to_string_lossy().contains("weft-proxy")),
            "pid {pid} is the proxy"
        );
        Pod {
            proxy,
            pod,
            peer,
            pod_ip,
            _dir: dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.proxy.0.id()
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        let _ = self.proxy.0.kill();
        let _ = self.proxy.0.wait();
        let _ = Command::new("ip")
            .args(["netns", "exec", &self.pod.0, BIN, "init", "--cleanup"])
            .output();
    }
}
