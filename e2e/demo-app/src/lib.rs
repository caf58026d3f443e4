//! The demo app that e2e pods run (`weft-demo-app`): a small hyper server reporting who
//! answered (`{service, version, pod, headers}`), with routes to force a status code, add
//! latency, call a downstream, and a configurable random failure rate; plus a TCP echo
//! listener and an "exit" mode for failing init containers.
//!
//! Routing and response shaping are pure ([`route`], [`Identity::report`],
//! [`call_target_allowed`]); [`server`] holds the I/O.

pub mod server;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use serde::Serialize;

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/healthz`: always 200 (never subject to the failure rate).
    Healthz,
    /// `/status/{code}`: answer with that status.
    Status(u16),
    /// `/delay/{ms}`: wait, then answer like `/`.
    Delay(Duration),
    /// `/call?url=…`: call the downstream and return its answer.
    Call(String),
    /// Anything else: the identity report.
    Report,
    /// A malformed request (bad code, bad delay, missing url).
    BadRequest(String),
}

/// Longest `/delay` honoured (bounded, so a test cannot hang a server forever).
pub const MAX_DELAY: Duration = Duration::from_secs(60);

/// Parses a request path (with query) into a [`Route`].
pub fn route(path: &str, query: Option<&str>) -> Route {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["healthz"] => Route::Healthz,
        ["status", code] => match code.parse::<u16>() {
            Ok(c) if (100..=599).contains(&c) => Route::Status(c),
            _ => Route::BadRequest(format!("invalid status code {code:?}")),
        },
        ["delay", ms] => match ms.parse::<u64>() {
            Ok(ms) if Duration::from_millis(ms) <= MAX_DELAY => Route::Delay(Duration::from_millis(ms)),
            _ => Route::BadRequest(format!("invalid delay {ms:?} (max {} ms)", MAX_DELAY.as_millis())),
        },
        ["call"] => match query_param(query.unwrap_or(""), "url") {
            Some(url) if !url.is_empty() => Route::Call(url),
            _ => Route::BadRequest("missing url query parameter".into()),
        },
        _ => Route::Report,
    }
}

/// The (percent-decoded) value of `key` in a query string.
pub fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Who this instance is (from `SERVICE`, `VERSION`, `POD_NAME`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// Service name.
    pub service: String,
    /// Version label (e.g. `v1`, `v2` for traffic splits).
    pub version: String,
    /// Pod name.
    pub pod: String,
}

/// The JSON body of the identity report.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Report {
    /// Service name.
    pub service: String,
    /// Version.
    pub version: String,
    /// Pod name.
    pub pod: String,
    /// Request method.
    pub method: String,
    /// Request path (with query).
    pub path: String,
    /// Request headers (lower-case names; repeated headers joined with `, `).
    pub headers: BTreeMap<String, String>,
}

impl Identity {
    /// The report for one request.
    pub fn report<'a>(
        &self,
        method: &str,
        path: &str,
        headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> Report {
        let mut map: BTreeMap<String, String> = BTreeMap::new();
        for (name, value) in headers {
            let value = String::from_utf8_lossy(value).into_owned();
            map.entry(name.to_ascii_lowercase())
                .and_modify(|v| {
                    v.push_str(", ");
                    v.push_str(&value);
                })
                .or_insert(value);
        }
        Report {
            service: self.service.clone(),
            version: self.version.clone(),
            pod: self.pod.clone(),
            method: method.to_string(),
            path: path.to_string(),
            headers: map,
        }
    }
}

/// `/call` may only reach loopback, the pod CIDR (198.18.0.0/16) and the service CIDR
/// (198.19.0.0/16): the project's rule for traffic targets.
pub fn call_target_allowed(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || matches!(v4.octets(), [198, 18 | 19, _, _]),
        IpAddr::V6(v6) => v6.is_loopback(),
    }
}

/// Whether a request fails given the configured rate and a uniform sample in `[0, 1)`.
pub fn should_fail(fail_rate: f64, sample: f64) -> bool {
    fail_rate > 0.0 && sample < fail_rate
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route("/healthz", None), Route::Healthz);
        assert_eq!(route("/status/503", None), Route::Status(503));
        assert!(matches!(route("/status/abc", None), Route::BadRequest(_)));
        assert!(matches!(route("/status/99", None), Route::BadRequest(_)));
        assert_eq!(
            route("/delay/250", None),
            Route::Delay(Duration::from_millis(250))
        );
        assert!(matches!(route("/delay/600001", None), Route::BadRequest(_)));
        assert_eq!(
            route("/call", Some("x=1&url=http%3A%2F%2Fb.ns%3A8080%2Fstatus%2F200")),
            Route::Call("http://b.ns:8080/status/200".into())
        );
        assert!(matches!(route("/call", None), Route::BadRequest(_)));
        assert!(matches!(route("/call", Some("url=")), Route::BadRequest(_)));
        assert_eq!(route("/", None), Route::Report);
        assert_eq!(route("/anything/else", Some("q=1")), Route::Report);
    }

    #[test]
    fn percent_decoding_handles_edge_cases() {
        assert_eq!(percent_decode("a%20b+c"), "a b c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(query_param("a=1&b", "b"), Some(String::new()));
        assert_eq!(query_param("a=1", "c"), None);
    }

    #[test]
    fn report_merges_repeated_headers() {
        let id = Identity {
            service: "s".into(),
            version: "v2".into(),
            pod: "p-1".into(),
        };
        let r = id.report(
            "GET",
            "/x",
            [
                ("X-A", b"1".as_slice()),
                ("x-a", b"2".as_slice()),
                ("Host", b"h".as_slice()),
            ],
        );
        assert_eq!(r.headers.get("x-a").map(String::as_str), Some("1, 2"));
        assert_eq!(r.headers.get("host").map(String::as_str), Some("h"));
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["service"], "s");
        assert_eq!(json["version"], "v2");
        assert_eq!(json["pod"], "p-1");
    }

    #[test]
    fn call_targets_are_limited_to_project_addresses() {
        for ok in ["127.0.0.1", "127.5.0.1", "198.18.3.4", "198.19.0.10", "::1"] {
            assert!(call_target_allowed(ok.parse().unwrap()), "{ok}");
        }
        for bad in ["10.0.0.1", "8.8.8.8", "198.20.0.1", "198.17.255.255", "::2"] {
            assert!(!call_target_allowed(bad.parse().unwrap()), "{bad}");
        }
    }

    #[test]
    fn failure_rate() {
        assert!(!should_fail(0.0, 0.0));
        assert!(should_fail(0.3, 0.29));
        assert!(!should_fail(0.3, 0.3));
        assert!(should_fail(1.0, 0.999));
    }
}
