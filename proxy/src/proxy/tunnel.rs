//! Which requests may turn a connection into a raw byte tunnel. An HTTP/1
//! `Upgrade` answered `101`, or a `CONNECT` answered `2xx`, hands the connection
//! to the two peers: what flows after it is never seen, routed or authorized per
//! request again. So only WebSocket upgrades are allowed by default; other
//! upgrade protocols and `CONNECT` need [`TunnelPolicy`] (`--allow-upgrade`,
//! `--allow-connect`). An `h2c` upgrade that is not allowed is dropped and the
//! request served as plain HTTP/1.1, as a server without h2c support would
//! (RFC 9110 §7.8). Any other refusal is answered by the proxy (`405` for
//! CONNECT, `403` for an upgrade, with `x-weft-error`), counted in
//! `proxy_tunnel_refused_total{reason}` and logged rate-limited ([`LogLimit`]).

use super::Shared;
use super::body::Body;
use super::errors::ERROR_HEADER;
use super::headers::wants_upgrade;
use crate::log_limit::LogLimit;
use crate::metrics::{Kind, labels};
use http::header::{CONTENT_TYPE, HeaderValue, UPGRADE};
use http::{Method, Request, Response, StatusCode};
use std::sync::LazyLock;

/// The upgrade protocol allowed by default.
pub const WEBSOCKET: &str = "websocket";
const METRIC: &str = "proxy_tunnel_refused_total";
const HELP: &str = "Upgrade and CONNECT requests refused because the protocol may not become a tunnel.";

static REFUSED_LOG: LazyLock<LogLimit> = LazyLock::new(LogLimit::default);

/// What may become a tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelPolicy {
    /// Upgrade protocol names (case-insensitive, without `/version`).
    pub upgrades: Vec<String>,
    /// Whether `CONNECT` requests are forwarded.
    pub connect: bool,
}

impl Default for TunnelPolicy {
    fn default() -> Self {
        Self {
            upgrades: vec![WEBSOCKET.to_string()],
            connect: false,
        }
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Connect,
    Upgrade,
}

impl Refusal {
    /// The `x-weft-error` value and metric label.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Connect => "connect-not-allowed",
            Refusal::Upgrade => "upgrade-not-allowed",
        }
    }

    /// The proxy's answer.
    pub fn response(self) -> Response<Body> {
        let status = match self {
            Refusal::Connect => StatusCode::METHOD_NOT_ALLOWED,
            Refusal::Upgrade => StatusCode::FORBIDDEN,
        };
        let mut r = Response::new(Body::full(format!("{}\n", self.reason())));
        *r.status_mut() = status;
        let h = r.headers_mut();
        h.insert(ERROR_HEADER, HeaderValue::from_static(self.reason()));
        h.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        r
    }
}

/// The protocol name of one `Upgrade` list entry (`websocket/13` → `websocket`).
fn protocol(entry: &str) -> &str {
    entry.split('/').next().unwrap_or_default().trim()
}

impl TunnelPolicy {
    /// Whether upgrade protocol `name` may become a tunnel.
    pub fn allows(&self, name: &str) -> bool {
        self.upgrades.iter().any(|p| p.eq_ignore_ascii_case(name))
    }

    /// Checks `req`. An `Upgrade` keeps only its allowed protocols. When none is
    /// left and only `h2c` was offered, the header is removed and the request
    /// goes on as plain HTTP/1.1.
    pub fn admit<B>(&self, req: &mut Request<B>) -> Result<(), Refusal> {
        if req.method() == Method::CONNECT {
            return if self.connect {
                Ok(())
            } else {
                Err(Refusal::Connect)
            };
        }
        if !wants_upgrade(req.headers()) {
            return Ok(());
        }
        let offered: Vec<String> = req
            .headers()
            .get_all(UPGRADE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|e| e.trim().to_string())
            .filter(|e| !e.is_empty())
            .collect();
        let allowed: Vec<&str> = offered
            .iter()
            .map(String::as_str)
            .filter(|e| self.allows(protocol(e)))
            .collect();
        if !allowed.is_empty() {
            if allowed.len() < offered.len()
                && let Ok(v) = HeaderValue::from_str(&allowed.join(", "))
            {
                req.headers_mut().insert(UPGRADE, v);
            }
            return Ok(());
        }
        if offered.iter().all(|e| protocol(e).eq_ignore_ascii_case("h2c")) {
            req.headers_mut().remove(UPGRADE);
            return Ok(());
        }
        Err(Refusal::Upgrade)
    }
}

/// Applies the proxy's tunnel policy to a request from `peer`; the refusal to
/// answer with, if any.
pub fn screen<B>(shared: &Shared, direction: &'static str, req: &mut Request<B>) -> Option<Response<Body>> {
    let refusal = shared.settings.tunnels.admit(req).err()?;
    shared
        .metrics
        .families
        .series(
            METRIC,
            Kind::Counter,
            HELP,
            &labels(&[("reason", refusal.reason())]),
        )
        .inc();
    if let Some(suppressed) = REFUSED_LOG.admit() {
        let upgrade = req
            .headers()
            .get(UPGRADE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        tracing::warn!(direction, reason = refusal.reason(), method = %req.method(), upgrade,
            suppressed, "refused a request that would become a tunnel");
    }
    Some(refusal.response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, upgrade: Option<&str>) -> Request<()> {
        let mut b = Request::builder().method(method).uri("/");
        if let Some(u) = upgrade {
            b = b.header("connection", "Upgrade").header("upgrade", u);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn websocket_by_default_others_by_config() {
        let p = TunnelPolicy::default();
        assert_eq!(p.admit(&mut req("GET", None)), Ok(()));
        assert_eq!(p.admit(&mut req("GET", Some("websocket"))), Ok(()));
        assert_eq!(p.admit(&mut req("GET", Some("WebSocket/13"))), Ok(()));
        assert_eq!(p.admit(&mut req("GET", Some("echo"))), Err(Refusal::Upgrade));
        assert_eq!(
            p.admit(&mut req("GET", Some("tls/1.2, spdy"))),
            Err(Refusal::Upgrade)
        );
        assert_eq!(p.admit(&mut req("CONNECT", None)), Err(Refusal::Connect));
        // Mixed offers keep only what is allowed.
        let mut r = req("GET", Some("echo, websocket"));
        assert_eq!(p.admit(&mut r), Ok(()));
        assert_eq!(r.headers()["upgrade"], "websocket");
        // h2c is ignored, not refused: the request goes on as HTTP/1.1.
        let mut r = req("GET", Some("h2c"));
        assert_eq!(p.admit(&mut r), Ok(()));
        assert!(r.headers().get("upgrade").is_none());
        // An Upgrade header without `Connection: upgrade` is no upgrade.
        let mut r = Request::get("/").header("upgrade", "echo").body(()).unwrap();
        assert_eq!(p.admit(&mut r), Ok(()));

        let open = TunnelPolicy {
            upgrades: vec!["echo".into()],
            connect: true,
        };
        assert_eq!(open.admit(&mut req("GET", Some("echo"))), Ok(()));
        assert_eq!(open.admit(&mut req("CONNECT", None)), Ok(()));
        assert_eq!(
            open.admit(&mut req("GET", Some("websocket"))),
            Err(Refusal::Upgrade)
        );
    }

    #[test]
    fn refusals_carry_status_and_reason() {
        let r = Refusal::Connect.response();
        assert_eq!(r.status(), 405);
        assert_eq!(r.headers()[ERROR_HEADER], "connect-not-allowed");
        let r = Refusal::Upgrade.response();
        assert_eq!(r.status(), 403);
        assert_eq!(r.headers()[ERROR_HEADER], "upgrade-not-allowed");
    }
}
