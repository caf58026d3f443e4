//! Property tests for hop-by-hop header stripping (issue 14, fuzz and property
//! tests): after stripping, no hop-by-hop header and no header named by
//! `Connection` remains (except `te: trailers` and, for upgrades, the handshake),
//! and every other header is kept with all its values in order.

use http::HeaderMap;
use http::header::{CONNECTION, HeaderName, HeaderValue, TE, UPGRADE};
use proptest::prelude::*;
use weft_proxy::proxy::headers::strip_hop_by_hop;

const HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
];

fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(HOP).prop_map(str::to_string),
        prop::sample::select(&["x-a", "x-b", "x-c", "host", "content-length", "cookie", "accept"][..])
            .prop_map(str::to_string),
        "[a-z][a-z0-9-]{0,8}",
    ]
}

fn header_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("trailers".to_string()),
        Just("close".to_string()),
        Just("keep-alive".to_string()),
        Just("upgrade".to_string()),
        "[ -~]{0,16}",
    ]
}

/// A Connection value listing some names, with odd spacing and case.
fn connection_value() -> impl Strategy<Value = String> {
    prop::collection::vec((header_name(), any::<bool>(), " {0,2}"), 0..4).prop_map(|names| {
        names
            .into_iter()
            .map(|(n, upper, sp)| format!("{sp}{}{sp}", if upper { n.to_uppercase() } else { n }))
            .collect::<Vec<_>>()
            .join(",")
    })
}

fn headers() -> impl Strategy<Value = HeaderMap> {
    (
        prop::collection::vec((header_name(), header_value()), 0..12),
        prop::collection::vec(connection_value(), 0..3),
    )
        .prop_map(|(pairs, conns)| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(&v)) {
                    m.append(k, v);
                }
            }
            for c in conns {
                if let Ok(v) = HeaderValue::from_str(&c) {
                    m.append(CONNECTION, v);
                }
            }
            m
        })
}

fn connection_named(m: &HeaderMap) -> Vec<HeaderName> {
    m.get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect()
}

fn values(m: &HeaderMap, name: &HeaderName) -> Vec<HeaderValue> {
    m.get_all(name).iter().cloned().collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn stripping_removes_hop_by_hop_and_keeps_the_rest(before in headers(), upgrade in any::<bool>()) {
        let named = connection_named(&before);
        let mut after = before.clone();
        strip_hop_by_hop(&mut after, upgrade);
        let dropped = |n: &HeaderName| HOP.contains(&n.as_str()) || named.contains(n);
        for name in after.keys() {
            let kept_by_rule = (*name == TE && values(&after, name).iter().all(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers")))
                || (upgrade && (*name == UPGRADE || *name == CONNECTION));
            prop_assert!(!dropped(name) || kept_by_rule, "{name} survived: {after:?}");
        }
        if upgrade {
            prop_assert_eq!(values(&after, &CONNECTION), vec![HeaderValue::from_static("upgrade")]);
        }
        for name in before.keys() {
            if !dropped(name) {
                prop_assert_eq!(values(&after, name), values(&before, name), "{} changed", name);
            }
        }
    }

    #[test]
    fn stripping_is_idempotent(before in headers()) {
        let mut once = before.clone();
        strip_hop_by_hop(&mut once, false);
        let mut twice = once.clone();
        strip_hop_by_hop(&mut twice, false);
        prop_assert_eq!(once, twice);
    }
}
