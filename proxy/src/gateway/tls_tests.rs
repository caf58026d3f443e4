//! Unit tests for listener certificates and the SNI choice.

use super::*;
use crate::metrics::Metrics;
use crate::ready::Readiness;
use serde_json::json;

/// A PEM certificate and its key.
type Pair = (Vec<u8>, Vec<u8>);

fn self_signed(names: &[&str]) -> Pair {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let c = rcgen::generate_simple_self_signed(names).unwrap();
    (
        c.cert.pem().into_bytes(),
        c.signing_key.serialize_pem().into_bytes(),
    )
}

fn files(pairs: &[(&str, &Pair)]) -> BTreeMap<String, Vec<u8>> {
    let mut m = BTreeMap::new();
    for (name, (crt, key)) in pairs {
        m.insert(format!("{name}.crt"), crt.clone());
        m.insert(format!("{name}.key"), key.clone());
    }
    m
}

fn leaf_names(k: &CertifiedKey) -> Vec<String> {
    dns_names(k.cert[0].as_ref())
}

#[test]
fn loads_pairs_keeps_last_good_and_drops_removed() {
    let shop = self_signed(&["shop.example.test"]);
    let wild = self_signed(&["*.example.test"]);
    let store = CertStore::default();
    assert_eq!(store.update(&files(&[("shop", &shop), ("wild", &wild)])), 2);
    assert_eq!(store.load()["wild"].names, vec!["*.example.test"]);
    // A broken version of `shop` keeps the good one; a key without a pair is skipped.
    let mut broken = files(&[("shop", &(b"garbage".to_vec(), shop.1.clone())), ("wild", &wild)]);
    broken.insert("lonely.crt".into(), wild.0.clone());
    assert_eq!(store.update(&broken), 2);
    assert_eq!(store.load()["shop"].names, vec!["shop.example.test"]);
    // A mismatched key is refused too.
    let mismatched = files(&[("other", &(shop.0.clone(), wild.1.clone()))]);
    assert_eq!(store.update(&mismatched), 0);
    assert!(store.load().is_empty());
}

fn listener(name: &str, hostname: Option<&str>, certs: &[&str]) -> GatewayListener {
    serde_json::from_value(json!({
        "name": name, "port": 443, "protocol": "https", "hostname": hostname, "certificates": certs,
    }))
    .unwrap()
}

#[test]
fn sni_picks_the_listener_then_the_covering_certificate() {
    let store = CertStore::default();
    let (shop, wild, other) = (
        self_signed(&["shop.example.test"]),
        self_signed(&["*.example.test"]),
        self_signed(&["other.test"]),
    );
    store.update(&files(&[("shop", &shop), ("wild", &wild), ("other", &other)]));
    let certs = store.load();
    let exact = listener("exact", Some("shop.example.test"), &["shop"]);
    let any = listener("any", Some("*.example.test"), &["other", "wild"]);
    let fallback = listener("fallback", None, &["other"]);
    let ls = vec![&any, &exact, &fallback];

    let pick = |sni: Option<&str>| {
        let l = listener_for_sni(&ls, sni)?;
        let k = cert_for(l, sni, &certs)?;
        Some((l.name.clone(), leaf_names(&k)))
    };
    assert_eq!(
        pick(Some("shop.example.test")),
        Some(("exact".into(), vec!["shop.example.test".into()]))
    );
    // The wildcard listener serves its certificate covering the SNI, not its first.
    assert_eq!(
        pick(Some("a.example.test")),
        Some(("any".into(), vec!["*.example.test".into()]))
    );
    assert_eq!(
        pick(Some("unrelated.org")),
        Some(("fallback".into(), vec!["other.test".into()]))
    );
    assert_eq!(pick(None), Some(("fallback".into(), vec!["other.test".into()])));
    // No covering certificate: the listener's first one.
    let first = listener("first", None, &["other", "wild"]);
    let k = cert_for(&first, Some("nothing.example"), &certs).unwrap();
    assert_eq!(leaf_names(&k), vec!["other.test"]);
    // Without a hostname-less listener an unmatched SNI gets nothing.
    let named = vec![&exact];
    assert!(listener_for_sni(&named, Some("x.org")).is_none());
    assert_eq!(
        listener_for_sni(&named, None).map(|l| l.name.as_str()),
        Some("exact")
    );
    // Certificates that are not loaded are skipped.
    let missing = listener("missing", None, &["nope"]);
    assert!(cert_for(&missing, None, &certs).is_none());
}

#[test]
fn resolver_reads_the_current_config() {
    let metrics = Arc::new(Metrics::default());
    let store = Arc::new(ConfigStore::new(
        Arc::clone(&metrics),
        Arc::new(Readiness::default()),
    ));
    let certs = Arc::new(CertStore::default());
    let resolver = SniResolver {
        port: 443,
        store: Arc::clone(&store),
        certs: Arc::clone(&certs),
    };
    assert!(resolver.choose(Some("shop.example.test")).is_none());
    let cfg = json!({
        "schemaVersion": 1,
        "identity": {"namespace": "shop", "serviceAccount": "gw", "spiffeId": "spiffe://cluster.local/ns/shop/sa/gw"},
        "mesh": {"trustDomain": "cluster.local", "accessMode": "permissive", "mtlsMode": "permissive"},
        "gateway": {"gateway": "shop/gw", "tlsSecret": "gw-tls", "listeners": [
            {"name": "web", "port": 80, "protocol": "http"},
            {"name": "shop", "port": 443, "protocol": "https", "hostname": "shop.example.test", "certificates": ["shop"]},
        ]},
    });
    store.apply_json(&cfg.to_string(), "test").unwrap();
    // The certificate is not loaded yet.
    assert!(resolver.choose(Some("shop.example.test")).is_none());
    let shop = self_signed(&["shop.example.test"]);
    certs.update(&files(&[("shop", &shop)]));
    let k = resolver.choose(Some("shop.example.test")).unwrap();
    assert_eq!(leaf_names(&k), vec!["shop.example.test"]);
    assert!(resolver.choose(Some("other.example.test")).is_none());
    // Another port has no Https listeners.
    let plain = SniResolver {
        port: 80,
        store,
        certs,
    };
    assert!(plain.choose(Some("shop.example.test")).is_none());
    assert!(server_config(plain).is_ok());
}
