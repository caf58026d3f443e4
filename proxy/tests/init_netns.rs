//! Real network-namespace test of `weft-proxy init`.
//!
//! Two fresh namespaces joined by a veth pair: the "pod" (198.18.250.2/24, default
//! route via the peer) and the "peer" (198.18.250.1/24, plus 198.19.0.10/32 and
//! 198.19.7.10/32 on its loopback standing in for services). Tagging listeners in
//! both answer every connection with a line naming the listener (and, for the
//! redirect listeners on 15006/15001, the `SO_ORIGINAL_DST` they read back), so each
//! probe shows exactly where a connection landed. Skips only when not root or when
//! `ip netns` is unavailable.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// `setns`, `setfsuid` and `getsockopt(SO_ORIGINAL_DST)` have no safe std wrapper.
#![allow(unsafe_code)]

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_weft-proxy");
const POD_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 250, 2);
const PEER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 250, 1);
const SVC_IP: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 10);
const SKIPPED_SVC_IP: Ipv4Addr = Ipv4Addr::new(198, 19, 7, 10);

fn cmd(program: &str, args: &[&str]) -> std::process::Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {program} {args:?}: {e}"))
}

fn must(program: &str, args: &[&str]) -> String {
    let out = cmd(program, args);
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A named network namespace, deleted (with its interfaces) on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn new(name: String) -> Self {
        must("ip", &["netns", "add", &name]);
        let ns = Netns { name };
        ns.exec("ip", &["link", "set", "lo", "up"]);
        ns
    }

    fn exec(&self, program: &str, args: &[&str]) -> String {
        let mut full = vec!["netns", "exec", &self.name, program];
        full.extend_from_slice(args);
        must("ip", &full)
    }

    /// `iptables-save -t nat` without comment lines (which carry timestamps).
    fn nat(&self, save: &str) -> String {
        self.exec(save, &["-t", "nat"])
            .lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn init(&self, args: &[&str]) -> String {
        let mut full = vec![BIN, "init"];
        full.extend_from_slice(args);
        self.exec(full[0], &full[1..])
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// Runs `f` on a thread that has joined network namespace `ns` (sockets it creates
/// stay in that namespace), optionally with filesystem UID `uid` (the socket owner
/// iptables' `-m owner` sees).
fn in_netns<T: Send>(ns: &str, uid: Option<u32>, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = File::open(format!("/var/run/netns/{ns}")).unwrap();
            // SAFETY: valid fd of a netns file; affects only this thread.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns({ns}): {}", std::io::Error::last_os_error());
            if let Some(uid) = uid {
                // SAFETY: plain syscall changing this thread's fsuid only.
                unsafe { libc::setfsuid(uid) };
            }
            f()
        })
        .join()
        .unwrap()
    })
}

/// The pre-NAT destination of a redirected connection.
fn original_dst(s: &TcpStream) -> Option<SocketAddrV4> {
    // SAFETY: zeroed sockaddr_in is valid; getsockopt writes at most `len` bytes.
    let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_IP,
            libc::SO_ORIGINAL_DST,
            (&mut addr as *mut libc::sockaddr_in).cast(),
            &mut len,
        )
    };
    (rc == 0).then(|| {
        SocketAddrV4::new(
            Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr)),
            u16::from_be(addr.sin_port),
        )
    })
}

/// Listeners answering each connection with `<label>` or `<label> <original dst>`.
struct Tagger {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Tagger {
    fn start(ns: &str, specs: &[(u16, &'static str, bool)]) -> Self {
        let listeners: Vec<(TcpListener, &'static str, bool)> = in_netns(ns, None, || {
            specs
                .iter()
                .map(|&(port, label, orig)| {
                    let l = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).unwrap();
                    l.set_nonblocking(true).unwrap();
                    (l, label, orig)
                })
                .collect()
        });
        let stop = Arc::new(AtomicBool::new(false));
        let threads = listeners
            .into_iter()
            .map(|(l, label, orig)| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        match l.accept() {
                            Ok((mut s, _)) => {
                                let line = match (orig, original_dst(&s)) {
                                    (true, Some(d)) => format!("{label} {d}\n"),
                                    (true, None) => format!("{label} no-original-dst\n"),
                                    (false, _) => format!("{label}\n"),
                                };
                                let _ = s.set_nonblocking(false);
                                let _ = s.write_all(line.as_bytes());
                            }
                            Err(_) => std::thread::sleep(Duration::from_millis(5)),
                        }
                    }
                })
            })
            .collect();
        Tagger { stop, threads }
    }
}

impl Drop for Tagger {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Connects from `ns` (as `uid`) to `dst` and returns the tag line it gets back.
fn probe(ns: &str, uid: Option<u32>, dst: SocketAddrV4) -> String {
    in_netns(ns, uid, || {
        let mut s = match TcpStream::connect_timeout(&SocketAddr::V4(dst), Duration::from_secs(2)) {
            Ok(s) => s,
            Err(e) => return format!("connect error: {e}"),
        };
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut out = String::new();
        match s.read_to_string(&mut out) {
            Ok(_) => out.trim().to_string(),
            Err(e) => format!("read error: {e}"),
        }
    })
}

fn skip_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not running as root".into());
    }
    match Command::new("ip").args(["netns", "list"]).output() {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!(
            "`ip netns list` failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Some(format!("`ip` not available: {e}")),
    }
}

struct Topology {
    pod: Netns,
    peer: Netns,
}

fn topology(tag: &str) -> Topology {
    let id = format!("{}{tag}", std::process::id() % 100_000);
    let pod = Netns::new(format!("weft-it-pod-{id}"));
    let peer = Netns::new(format!("weft-it-peer-{id}"));
    let (va, vb) = (format!("wpa{id}"), format!("wpb{id}"));
    must(
        "ip",
        &[
            "link", "add", &va, "netns", &pod.name, "type", "veth", "peer", "name", &vb, "netns", &peer.name,
        ],
    );
    pod.exec("ip", &["addr", "add", "198.18.250.2/24", "dev", &va]);
    pod.exec("ip", &["link", "set", &va, "up"]);
    pod.exec("ip", &["route", "add", "default", "via", &PEER_IP.to_string()]);
    peer.exec("ip", &["addr", "add", "198.18.250.1/24", "dev", &vb]);
    peer.exec("ip", &["link", "set", &vb, "up"]);
    peer.exec("ip", &["addr", "add", "198.19.0.10/32", "dev", "lo"]);
    peer.exec("ip", &["addr", "add", "198.19.7.10/32", "dev", "lo"]);
    Topology { pod, peer }
}

fn sa(ip: Ipv4Addr, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(ip, port)
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.lines().filter(|l| *l == needle).count()
}

/// The full scenario on one backend (`nft` or `legacy`).
fn scenario(backend: &str) {
    let save = format!("iptables-{backend}-save");
    let t = topology(&backend[..1]);
    let (pod, peer) = (&t.pod.name, &t.peer.name);
    let _pod_listeners = Tagger::start(
        pod,
        &[
            (15006, "inbound", true),
            (15001, "outbound", true),
            (15020, "admin", false),
            (8080, "app", false),
        ],
    );
    let _peer_listeners = Tagger::start(
        peer,
        &[(80, "peer", false), (5432, "peer", false), (15020, "peer", false)],
    );
    // Before init: nothing is redirected.
    assert_eq!(probe(pod, None, sa(SVC_IP, 80)), "peer");
    assert_eq!(probe(peer, None, sa(POD_IP, 8080)), "app");

    let before = t.pod.nat(&save);
    let args = [
        "--backend",
        backend,
        "--skip-inbound-ports",
        "8081",
        "--skip-outbound-ports",
        "5432",
        "--skip-outbound-cidrs",
        "198.19.7.0/24",
    ];
    t.pod.init(&args);
    t.pod.init(&args); // idempotent re-run
    let installed = t.pod.nat(&save);
    assert_eq!(
        count(&installed, "-A PREROUTING -p tcp -j WEFT_INBOUND"),
        1,
        "{installed}"
    );
    assert_eq!(
        count(&installed, "-A OUTPUT -p tcp -j WEFT_OUTBOUND"),
        1,
        "{installed}"
    );
    assert_eq!(installed.matches("198.19.7.0/24").count(), 1, "{installed}");

    // Outbound from the app is redirected to 15001 with the original destination.
    assert_eq!(probe(pod, None, sa(SVC_IP, 80)), "outbound 198.19.0.10:80");
    assert_eq!(probe(pod, None, sa(PEER_IP, 80)), "outbound 198.18.250.1:80");
    // ... but not from the proxy UID, nor to excluded ports / CIDRs / admin ports.
    assert_eq!(probe(pod, Some(2102), sa(SVC_IP, 80)), "peer");
    assert_eq!(probe(pod, None, sa(SVC_IP, 5432)), "peer");
    assert_eq!(probe(pod, None, sa(SKIPPED_SVC_IP, 80)), "peer");
    assert_eq!(probe(pod, None, sa(SVC_IP, 15020)), "peer");
    // Inbound to the pod is redirected to 15006 with the original destination ...
    assert_eq!(probe(peer, None, sa(POD_IP, 8080)), "inbound 198.18.250.2:8080");
    // ... except the admin port and skipped inbound ports (nothing listens on 8081
    // in the pod, so a refused connection proves it was not redirected).
    assert_eq!(probe(peer, None, sa(POD_IP, 15020)), "admin");
    assert!(
        probe(peer, None, sa(POD_IP, 8081)).starts_with("connect error"),
        "8081 was redirected"
    );
    // Loopback: app ↔ localhost and proxy → app stay direct ...
    assert_eq!(probe(pod, None, sa(Ipv4Addr::LOCALHOST, 8080)), "app");
    assert_eq!(probe(pod, Some(2102), sa(Ipv4Addr::LOCALHOST, 8080)), "app");
    // ... while the proxy calling its own pod IP (hairpin) re-enters inbound.
    assert_eq!(
        probe(pod, Some(2102), sa(POD_IP, 8080)),
        "inbound 198.18.250.2:8080"
    );

    t.pod.init(&["--backend", backend, "--cleanup"]);
    assert_eq!(t.pod.nat(&save), before, "cleanup did not restore the nat table");
    assert_eq!(probe(pod, None, sa(SVC_IP, 80)), "peer");
    assert_eq!(probe(peer, None, sa(POD_IP, 8080)), "app");
    t.pod.init(&["--backend", backend, "--cleanup"]); // cleanup of a clean table is a no-op
}

#[test]
fn init_redirects_in_a_real_network_namespace() {
    if let Some(reason) = skip_reason() {
        println!("SKIPPED init_redirects_in_a_real_network_namespace: {reason}");
        eprintln!("SKIPPED init_redirects_in_a_real_network_namespace: {reason}");
        return;
    }
    scenario("nft");
    let probe_ns = Netns::new(format!("weft-it-probe-{}", std::process::id() % 100_000));
    let legacy = cmd(
        "ip",
        &[
            "netns",
            "exec",
            &probe_ns.name,
            "iptables-legacy-save",
            "-t",
            "nat",
        ],
    );
    drop(probe_ns);
    if legacy.status.success() {
        scenario("legacy");
    } else {
        println!("legacy backend not usable on this kernel, only nft tested");
    }
}

#[test]
fn ipv6_rules_install_and_clean_up() {
    if let Some(reason) = skip_reason() {
        println!("SKIPPED ipv6_rules_install_and_clean_up: {reason}");
        return;
    }
    let ns = Netns::new(format!("weft-it-v6-{}", std::process::id() % 100_000));
    let before = ns.nat("ip6tables-nft-save");
    ns.init(&[
        "--backend",
        "nft",
        "--ipv6",
        "on",
        "--skip-outbound-cidrs",
        "198.19.0.0/16,fd00::/8",
    ]);
    let v6 = ns.nat("ip6tables-nft-save");
    assert!(v6.contains(":WEFT_OUTBOUND"), "{v6}");
    assert!(v6.contains("-A WEFT_OUTBOUND -d fd00::/8 -j RETURN"), "{v6}");
    assert!(
        v6.contains("! -d ::1/128 -o lo -m owner --uid-owner 2102 -j WEFT_INBOUND"),
        "{v6}"
    );
    assert!(!v6.contains("198.19.0.0"), "{v6}");
    let v4 = ns.nat("iptables-nft-save");
    assert!(
        v4.contains("-A WEFT_OUTBOUND -d 198.19.0.0/16 -j RETURN") && !v4.contains("fd00"),
        "{v4}"
    );
    ns.init(&["--backend", "nft", "--cleanup"]);
    assert_eq!(ns.nat("ip6tables-nft-save"), before);
    assert!(!ns.nat("iptables-nft-save").contains("WEFT"));
}
