//! Unit tests of the Service table and its renderings.

use super::*;
use serde_json::json;

fn svc(ns: &str, name: &str, ip: &str, ports: serde_json::Value) -> Service {
    serde_json::from_value(json!({
        "metadata": {"namespace": ns, "name": name},
        "spec": {"clusterIP": ip, "ports": ports}
    }))
    .unwrap()
}

fn slice(ns: &str, svc: &str, port_name: &str, port: i32, eps: &[(&str, Option<bool>)]) -> EndpointSlice {
    let endpoints: Vec<_> = eps
        .iter()
        .map(|(ip, ready)| json!({"addresses": [ip], "conditions": {"ready": ready}}))
        .collect();
    serde_json::from_value(json!({
        "metadata": {"namespace": ns, "name": format!("{svc}-x"), "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4",
        "ports": [{"name": port_name, "port": port, "protocol": "TCP"}],
        "endpoints": endpoints
    }))
    .unwrap()
}

#[test]
fn table_keeps_only_ready_backends_of_matching_ports() {
    let services = vec![
        svc(
            "a",
            "web",
            "198.19.0.10",
            json!([{"name": "http", "port": 80, "targetPort": 8080}]),
        ),
        svc("a", "headless", "None", json!([{"port": 80}])),
        svc(
            "default",
            "kubernetes",
            "198.19.0.1",
            json!([{"name": "https", "port": 443}]),
        ),
    ];
    let slices = vec![
        slice(
            "a",
            "web",
            "http",
            8080,
            &[
                ("198.18.0.2", Some(true)),
                ("198.18.0.3", Some(false)),
                ("198.18.0.4", None),
            ],
        ),
        slice("a", "web", "other", 9000, &[("198.18.0.9", Some(true))]),
        slice("b", "web", "http", 8080, &[("198.18.0.8", Some(true))]),
    ];
    let api: SocketAddrV4 = "198.18.0.1:6443".parse().unwrap();
    let t = build_table(&services, &slices, Some(api));
    assert_eq!(t.len(), 2, "headless skipped");
    let web = &t[&("a".to_string(), "web".to_string())];
    assert_eq!(web.ports[0].port, 80);
    assert_eq!(
        web.ports[0].backends,
        vec![
            "198.18.0.2:8080".parse().unwrap(),
            "198.18.0.4:8080".parse().unwrap()
        ]
    );
    let k = &t[&("default".to_string(), "kubernetes".to_string())];
    assert_eq!(k.ports[0].backends, vec![api]);
}

#[test]
fn nat_payload_spreads_load_marks_hairpin_and_deletes_stale_chains() {
    let services = vec![svc(
        "a",
        "web",
        "198.19.0.10",
        json!([{"name": "http", "port": 80}]),
    )];
    let slices = vec![slice(
        "a",
        "web",
        "http",
        8080,
        &[("198.18.0.2", Some(true)), ("198.18.0.3", Some(true))],
    )];
    let t = build_table(&services, &slices, None);
    let previous: BTreeSet<String> = ["WEFT-SEP-OLD".to_string()].into();
    let (payload, chains) = render_nat(&t, &previous);
    assert_eq!(chains.len(), 2);
    assert!(
        payload.starts_with("*nat\n:WEFT-SERVICES - [0:0]\n:WEFT-POSTROUTING - [0:0]\n"),
        "{payload}"
    );
    assert!(
        payload.contains("-m statistic --mode random --probability 0.5000000000"),
        "{payload}"
    );
    assert_eq!(
        payload.matches("--probability").count(),
        1,
        "last backend takes the rest"
    );
    assert!(payload.contains("-j DNAT --to-destination 198.18.0.2:8080"));
    assert!(payload.contains("-s 198.18.0.3/32 -j MARK --set-xmark 0x4000/0x4000"));
    assert!(payload.contains("-d 198.19.0.10/32 -p tcp -m tcp --dport 80"));
    assert!(payload.contains("-A WEFT-POSTROUTING -m mark --mark 0x4000/0x4000 -j MASQUERADE"));
    assert!(
        payload.contains(":WEFT-SEP-OLD - [0:0]\n"),
        "stale chains are flushed first"
    );
    assert!(payload.contains("-X WEFT-SEP-OLD\n"));
    assert!(payload.ends_with("COMMIT\n"));
    // Deterministic: same input, same output; no stale chains the second time.
    let (again, _) = render_nat(&t, &chains);
    assert!(!again.contains("-X "));
    assert_eq!(again, render_nat(&t, &chains).0);
}

#[test]
fn hosts_give_short_names_only_in_the_pods_namespace() {
    let services = vec![
        svc("a", "web", "198.19.0.10", json!([{"port": 80}])),
        svc("b", "db", "198.19.0.11", json!([{"port": 5432}])),
    ];
    let t = build_table(&services, &[], None);
    let hosts = render_hosts(&t, "a", "web-1", "198.18.0.5".parse().unwrap());
    assert!(hosts.contains("198.18.0.5\tweb-1\n"));
    assert!(
        hosts.contains("198.19.0.10\tweb web.a web.a.svc web.a.svc.cluster.local\n"),
        "{hosts}"
    );
    assert!(
        hosts.contains("198.19.0.11\tdb.b db.b.svc db.b.svc.cluster.local\n"),
        "{hosts}"
    );
    assert!(hosts.contains("127.0.0.1\tlocalhost"));
}

/// A throwaway network namespace, deleted on drop.
struct ScratchNetns(String);

impl Drop for ScratchNetns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}

fn restore_in(netns: &str, payload: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = std::process::Command::new("ip")
        .args(["netns", "exec", netns, "iptables-restore", "-w", "--noflush"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(payload.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// The real kernel accepts the payload sequence the agent produces when an endpoint goes
/// away: its backend chain must be flushed before it is deleted (else EBUSY fails the whole
/// transaction and every Service keeps stale DNAT rules).
#[test]
fn nat_payloads_apply_in_a_real_netns_when_endpoints_go_away() {
    if !std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
    {
        eprintln!("SKIPPED: needs root (network namespaces, iptables)");
        return;
    }
    let ns = ScratchNetns(format!("weft-svc-test-{}", std::process::id()));
    let ok = std::process::Command::new("ip")
        .args(["netns", "add", &ns.0])
        .status()
        .unwrap();
    assert!(ok.success());
    let services = vec![svc(
        "a",
        "web",
        "198.19.0.10",
        json!([{"name": "http", "port": 80}]),
    )];
    let both = vec![slice(
        "a",
        "web",
        "http",
        8080,
        &[("198.18.0.2", Some(true)), ("198.18.0.3", Some(true))],
    )];
    let one = vec![slice("a", "web", "http", 8080, &[("198.18.0.2", Some(true))])];
    let (first, chains) = render_nat(&build_table(&services, &both, None), &BTreeSet::new());
    let out = restore_in(&ns.0, &first);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (second, left) = render_nat(&build_table(&services, &one, None), &chains);
    let out = restore_in(&ns.0, &second);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listing = std::process::Command::new("ip")
        .args(["netns", "exec", &ns.0, "iptables", "-t", "nat", "-S"])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    for gone in chains.difference(&left) {
        assert!(
            !listing.contains(gone.as_str()),
            "{gone} still present:\n{listing}"
        );
    }
    assert!(listing.contains("198.18.0.2:8080"), "{listing}");
    assert!(!listing.contains("198.18.0.3:8080"), "{listing}");
}
