//! Real network-namespace test of the transparent data path: `weft-proxy init`
//! rules plus `weft-proxy run` (as UID 2102) in a "pod" namespace intercept an
//! app's plain call to a Service ClusterIP and load-balance it to pod IPs, with no
//! kube-proxy anywhere. Without the rules the same call fails, which proves the
//! interception.
//!
//! Layout: netns `pod` (198.18.251.2/24, default route via .1) and netns `peer`
//! (198.18.251.1/24 plus the two "pod IPs" 198.18.251.11 and .12, each serving
//! HTTP on :8080). The ClusterIP 198.19.0.10:80 exists only in the proxy config.
//! Skips only when not root or when `ip netns` is unavailable.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// `setns` has no safe std wrapper.
#![allow(unsafe_code)]

mod netns;

use netns::{Netns, Proc, in_netns, must, serve};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use netns::BIN;
const CLUSTER_IP: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 10);
const BACKENDS: [Ipv4Addr; 2] = [Ipv4Addr::new(198, 18, 251, 11), Ipv4Addr::new(198, 18, 251, 12)];

/// One plain HTTP request from the app's point of view (root, not the proxy UID).
fn app_get(target: SocketAddrV4) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&target.into(), Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET / HTTP/1.1\r\nhost: web.t.svc.cluster.local\r\nconnection: close\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

fn config_json() -> String {
    let endpoints: Vec<_> = BACKENDS
        .iter()
        .map(|ip| serde_json::json!({"ip": ip.to_string(), "port": 8080}))
        .collect();
    serde_json::json!({
        "schemaVersion": weft_proxy_config::SCHEMA_VERSION,
        "identity": {"namespace": "t", "serviceAccount": "client", "spiffeId": "spiffe://cluster.local/ns/t/sa/client"},
        "mesh": {"trustDomain": "cluster.local", "accessMode": "permissive", "mtlsMode": "permissive"},
        "services": {"t/web": {"namespace": "t", "name": "web", "clusterIps": [CLUSTER_IP.to_string()],
            "ports": [{"port": 80, "protocol": "http1", "endpoints": endpoints}],
            "loadBalancer": {"kind": "roundRobin"}}},
    })
    .to_string()
}

#[test]
fn clusterip_call_is_intercepted_and_balanced_to_pod_ips() {
    if !netns::supported() {
        eprintln!("SKIP: needs root and `ip netns`");
        return;
    }
    weft_proxy_config::ProxyConfig::from_json(&config_json()).expect("test config is valid");
    let tag = format!("wt{}", std::process::id());
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
    pod.exec(&["ip", "addr", "add", "198.18.251.2/24", "dev", &veth_pod]);
    pod.exec(&["ip", "link", "set", &veth_pod, "up"]);
    pod.exec(&["ip", "route", "add", "default", "via", "198.18.251.1"]);
    for cidr in ["198.18.251.1/24", "198.18.251.11/24", "198.18.251.12/24"] {
        peer.exec(&["ip", "addr", "add", cidr, "dev", &veth_peer]);
    }
    peer.exec(&["ip", "link", "set", &veth_peer, "up"]);
    for ip in BACKENDS {
        let listener = in_netns(&peer.0, || TcpListener::bind((ip, 8080)).unwrap());
        serve(listener, ip.to_string());
    }

    let svc = SocketAddrV4::new(CLUSTER_IP, 80);
    // Without redirection nothing answers on the ClusterIP.
    assert!(
        in_netns(&pod.0, || app_get(svc)).is_err(),
        "ClusterIP reachable without the proxy?"
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = dir.path().join("config.json");
    std::fs::write(&config, config_json()).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    pod.exec(&[BIN, "init"]);
    let _proxy = Proc(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &pod.0,
                "setpriv",
                "--reuid=2102",
                "--regid=2102",
                "--clear-groups",
            ])
            .args([BIN, "run", "--workers", "1", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let admin = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 15020);
    let deadline = Instant::now() + Duration::from_secs(20);
    let ready = || {
        let mut s = TcpStream::connect(admin)?;
        s.write_all(b"GET /ready HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n")?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok::<bool, std::io::Error>(out.starts_with("HTTP/1.1 200"))
    };
    while !in_netns(&pod.0, || ready().unwrap_or(false)) {
        assert!(Instant::now() < deadline, "proxy never became ready");
        std::thread::sleep(Duration::from_millis(100));
    }

    let mut hits: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..40 {
        let resp = in_netns(&pod.0, || app_get(svc)).expect("call through the proxy");
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        let body = resp.rsplit("\r\n\r\n").next().unwrap().to_string();
        *hits.entry(body).or_default() += 1;
    }
    let want: Vec<String> = BACKENDS.iter().map(|ip| ip.to_string()).collect();
    assert_eq!(
        hits.keys().cloned().collect::<Vec<_>>(),
        want,
        "both pod IPs serve: {hits:?}"
    );
    assert_eq!(hits.values().sum::<usize>(), 40);
    assert!(
        hits.values().all(|&n| n >= 10),
        "round robin spreads the load: {hits:?}"
    );

    let metrics = in_netns(&pod.0, || {
        let mut s = TcpStream::connect(admin).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    });
    let outbound_ok: f64 = metrics
        .lines()
        .filter(|l| {
            l.starts_with("response_total{")
                && l.contains("direction=\"outbound\"")
                && l.contains("status_code=\"200\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(
        outbound_ok, 40.0,
        "the proxy counted every intercepted request:\n{metrics}"
    );

    pod.exec(&[BIN, "init", "--cleanup"]);
}
