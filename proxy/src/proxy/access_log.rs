//! Optional JSON access log: one line per request on stdout, written when the
//! response head is ready.

use http::{Method, Request, Response, Uri};
use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

/// What is remembered from a request for its log line.
#[derive(Debug)]
pub struct Entry {
    method: Method,
    uri: Uri,
    authority: Option<String>,
}

impl Entry {
    /// Captures the request line and authority.
    pub fn new<B>(req: &Request<B>) -> Self {
        let authority = req.uri().authority().map(|a| a.to_string()).or_else(|| {
            req.headers()
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(String::from)
        });
        Self {
            method: req.method().clone(),
            uri: req.uri().clone(),
            authority,
        }
    }

    /// Writes the line.
    pub fn emit<B>(
        self,
        resp: &Response<B>,
        direction: &str,
        peer: SocketAddr,
        target: &str,
        elapsed: Duration,
    ) {
        let line = serde_json::json!({
            "direction": direction,
            "peer": peer.to_string(),
            "method": self.method.as_str(),
            "path": self.uri.path(),
            "authority": self.authority,
            "target": target,
            "status": resp.status().as_u16(),
            "weft_error": resp.headers().get(super::errors::ERROR_HEADER).and_then(|v| v.to_str().ok()),
            "duration_ms": elapsed.as_secs_f64() * 1000.0,
        });
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
    }
}
