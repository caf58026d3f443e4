//! Hop-by-hop header handling (RFC 9110 §7.6.1): connection-specific headers,
//! and headers named by `Connection`, are not forwarded, except that an upgrade
//! (WebSocket) keeps `Connection: upgrade` + `Upgrade`, and `te: trailers`
//! (required by gRPC) is kept.

use http::HeaderMap;
use http::header::{CONNECTION, HeaderName, HeaderValue, TE, TRANSFER_ENCODING, UPGRADE};

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Whether the message asks for a protocol upgrade.
pub fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(UPGRADE) && connection_has(headers, "upgrade")
}

fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Removes hop-by-hop headers in place; `upgrade` keeps the upgrade handshake.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    if let Some(conn) = headers.get(CONNECTION) {
        if headers.get_all(CONNECTION).iter().count() > 1
            || conn.as_bytes().contains(&b',')
            || !is_basic(conn)
        {
            let named: Vec<HeaderName> = headers
                .get_all(CONNECTION)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
                .collect();
            for name in named {
                if !(upgrade && name == UPGRADE) && name != TE {
                    headers.remove(&name);
                }
            }
        }
        headers.remove(CONNECTION);
    }
    headers.remove(KEEP_ALIVE);
    headers.remove(PROXY_CONNECTION);
    headers.remove(TRANSFER_ENCODING);
    // Every `te` value, not just the first: `te: trailers` + `te: gzip` is not forwarded.
    if headers
        .get_all(TE)
        .iter()
        .any(|te| !te.as_bytes().eq_ignore_ascii_case(b"trailers"))
    {
        headers.remove(TE);
    }
    if upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(UPGRADE);
    }
}

/// `keep-alive`/`close`/`upgrade` alone name no extra header.
fn is_basic(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    b.eq_ignore_ascii_case(b"keep-alive")
        || b.eq_ignore_ascii_case(b"close")
        || b.eq_ignore_ascii_case(b"upgrade")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, HeaderValue::from_static(v));
        }
        m
    }

    #[test]
    fn strips_standard_and_named_headers() {
        let mut m = h(&[
            ("connection", "keep-alive, x-secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("te", "gzip"),
            ("upgrade", "h2c"),
            ("host", "a"),
        ]);
        strip_hop_by_hop(&mut m, false);
        assert_eq!(m.len(), 1, "{m:?}");
        assert!(m.contains_key("host"));
    }

    #[test]
    fn keeps_te_trailers_and_upgrade_handshake() {
        let mut m = h(&[
            ("te", "trailers"),
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
        ]);
        assert!(wants_upgrade(&m));
        strip_hop_by_hop(&mut m, true);
        assert_eq!(m.get("te").unwrap(), "trailers");
        assert_eq!(m.get("upgrade").unwrap(), "websocket");
        assert_eq!(m.get("connection").unwrap(), "upgrade");
        assert!(!wants_upgrade(&h(&[("upgrade", "websocket")])));
    }
}
