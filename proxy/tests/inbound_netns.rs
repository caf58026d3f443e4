//! Real network-namespace test of inbound forwarding (issue 14 item 1): with
//! `weft-proxy init` rules and `weft-proxy run` (UID 2102) in a "pod" namespace, a
//! peer reaches the app's `0.0.0.0:8080` listener through the sidecar, but not its
//! localhost-only `127.0.0.1:6060` listener (the sidecar forwards to the pod IP the
//! peer dialled, never to `127.0.0.1`), even in `accessMode: permissive` where every
//! port is allowed. The app sees the forwarded connection from `127.0.0.6`, and the
//! hairpin (the app calling a Service whose endpoint is its own pod) still goes through
//! outbound and inbound without looping.
//!
//! Layout: netns `pod` (198.18.252.2/24) and netns `peer` (198.18.252.1/24); the
//! ClusterIP 198.19.0.20:80 exists only in the proxy config, its endpoint is the pod.
//! Skips only when not root or when `ip netns` is unavailable.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod netns;

use netns::{Pod, admin_get, serve};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::time::{Duration, Instant};

const POD_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 252, 2);
const PEER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 252, 1);
const SELF_SVC: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 20);

/// One HTTP/1.1 GET; the answer (head and `content-length` body) as text. The test
/// server keeps connections open, so this reads only as far as the body ends.
fn get(target: SocketAddrV4) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&target.into(), Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET / HTTP/1.1\r\nhost: app\r\n\r\n")?;
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let text = String::from_utf8_lossy(&out).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")?
                        .parse::<usize>()
                        .ok()
                })
                .unwrap_or(0);
            if body.len() >= len {
                return Ok(text);
            }
        }
        match s.read(&mut buf)? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => out.extend_from_slice(&buf[..n]),
        }
    }
}

fn config_json() -> String {
    serde_json::json!({
        "schemaVersion": weft_proxy_config::SCHEMA_VERSION,
        "identity": {"namespace": "t", "serviceAccount": "app", "spiffeId": "spiffe://cluster.local/ns/t/sa/app"},
        "mesh": {"trustDomain": "cluster.local", "accessMode": "permissive", "mtlsMode": "permissive"},
        "services": {"t/self": {"namespace": "t", "name": "self", "clusterIps": [SELF_SVC.to_string()],
            "ports": [{"port": 80, "protocol": "http1",
                "endpoints": [{"ip": POD_IP.to_string(), "port": 8080}]}]}},
    })
    .to_string()
}

fn metric_sum(text: &str, name: &str, filter: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn loopback_listeners_stay_private_while_pod_ip_listeners_answer() {
    if !netns::supported() {
        eprintln!("SKIP: needs root and `ip netns`");
        return;
    }
    weft_proxy_config::ProxyConfig::from_json(&config_json()).expect("test config is valid");
    let app = SocketAddrV4::new(POD_IP, 8080);
    let pprof = SocketAddrV4::new(POD_IP, 6060);
    let p = Pod::start_with("wi", POD_IP, PEER_IP, &config_json(), |pod| {
        // The ClusterIP needs a route to be dialled at all.
        pod.exec(&["ip", "route", "add", "default", "via", &PEER_IP.to_string()]);
        // The app: a public listener and a localhost-only one (pprof, a local Redis…).
        let public = pod.run(|| TcpListener::bind((Ipv4Addr::UNSPECIFIED, 8080)).unwrap());
        serve(public, "app".into());
        let private = pod.run(|| TcpListener::bind((Ipv4Addr::LOCALHOST, 6060)).unwrap());
        serve(private, "pprof".into());
    });
    let (pod, peer) = (&p.pod, &p.peer);

    // The public listener answers through the sidecar, from the inbound source address.
    let resp = peer.run(|| get(app)).expect("8080 through the sidecar");
    assert!(
        resp.starts_with("HTTP/1.1 200") && resp.ends_with("app"),
        "{resp}"
    );
    assert!(
        resp.contains("x-peer: 127.0.0.6"),
        "the app sees 127.0.0.6: {resp}"
    );
    // The localhost-only listener is not reachable: the sidecar accepts (iptables sends
    // every port to it) but forwarding to 198.18.252.2:6060 is refused, so the peer gets
    // no answer from pprof.
    for _ in 0..3 {
        if let Ok(resp) = peer.run(|| get(pprof)) {
            assert!(
                resp.starts_with("HTTP/1.1 503") && !resp.contains("pprof"),
                "loopback listener reached from a peer: {resp}"
            );
        }
    }
    // Hairpin: the app calls a Service whose only endpoint is its own pod; outbound and
    // inbound both see it once (the outbound side must not reuse the connection the
    // inbound side keeps to the app), and the app answers.
    let resp = pod
        .run(|| get(SocketAddrV4::new(SELF_SVC, 80)))
        .expect("hairpin call");
    assert!(
        resp.starts_with("HTTP/1.1 200") && resp.ends_with("app"),
        "{resp}"
    );
    assert!(
        resp.contains("x-peer: 127.0.0.6"),
        "the hairpin went through inbound: {resp}"
    );
    // Responses are counted when their bodies end, which may be just after the client
    // read the last byte: poll briefly.
    let counts = |metrics: &str| {
        let n = |dir: &str, class: &str| {
            metric_sum(
                metrics,
                "response_total",
                &format!("direction=\"{dir}\",classification=\"{class}\""),
            ) + metric_sum(
                metrics,
                "response_total",
                &format!(
                    "direction=\"{dir}\",authority=\"self.t.svc.cluster.local:80\",dst_namespace=\"t\",dst_service=\"self\",classification=\"{class}\""
                ),
            )
        };
        // The peer's GET and the hairpin succeed inbound; the 6060 attempts fail there
        // (the app refused the forward); the hairpin is the one outbound request.
        (
            n("inbound", "success"),
            n("inbound", "failure"),
            n("outbound", "success"),
        )
    };
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let metrics = pod.run(|| admin_get("/metrics")).unwrap().1;
        if counts(&metrics) == (2.0, 3.0, 1.0) {
            break;
        }
        assert!(Instant::now() < deadline, "{:?}\n{metrics}", counts(&metrics));
        std::thread::sleep(Duration::from_millis(50));
    }
}
