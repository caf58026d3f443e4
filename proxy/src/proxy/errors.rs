//! Responses the proxy synthesizes itself. Each carries `x-weft-error` with a
//! short machine-readable reason and is counted as a failure.

use super::body::Body;
use crate::metrics::{Class, HttpMetrics};
use http::{HeaderValue, Response, StatusCode};

/// Header naming why the proxy answered instead of the upstream.
pub const ERROR_HEADER: &str = "x-weft-error";

/// Why the proxy answered itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyError {
    NoHealthyEndpoints,
    UnknownDestination,
    ConnectFailed,
    ConnectTimeout,
    ConnectRejected,
    ResponseTimeout,
    UpstreamError,
    Forbidden,
    /// Denied, and the path cannot be normalized (`%2F`, `%5C`, a backslash, a bad `%`).
    BadPath,
    /// The overall request deadline (Retry `timeout`) passed.
    Timeout,
    /// The service's circuit breaker is open (no fallback configured).
    CircuitOpen,
    /// Connection-pool limits: too many requests, queue full, too many connections.
    MaxRequests,
    PendingOverflow,
    MaxConnections,
    /// More request header fields than the proxy accepts.
    TooManyHeaders,
    /// The dialled port has Gateway API routes and none matches the request.
    NoRoute,
    /// The matched route has no backend, or picked one whose reference did not resolve.
    NoBackend,
    /// The request is malformed (for example an invalid `Host`).
    BadRequest,
}

impl ProxyError {
    /// The `x-weft-error` value.
    pub fn reason(self) -> &'static str {
        match self {
            Self::NoHealthyEndpoints => "no-healthy-endpoints",
            Self::UnknownDestination => "unknown-destination",
            Self::ConnectFailed => "connect-failed",
            Self::ConnectTimeout => "connect-timeout",
            Self::ConnectRejected => "connect-rejected",
            Self::ResponseTimeout => "response-timeout",
            Self::UpstreamError => "upstream-error",
            Self::Forbidden => "forbidden",
            Self::BadPath => "bad-path",
            Self::Timeout => "timeout",
            Self::CircuitOpen => "circuit-open",
            Self::MaxRequests => "max-requests",
            Self::PendingOverflow => "pending-overflow",
            Self::MaxConnections => "max-connections",
            Self::TooManyHeaders => "too-many-headers",
            Self::NoRoute => "no-route",
            Self::NoBackend => "no-backend",
            Self::BadRequest => "bad-request",
        }
    }

    /// The status returned downstream.
    pub fn status(self) -> StatusCode {
        match self {
            Self::NoHealthyEndpoints
            | Self::UnknownDestination
            | Self::ConnectFailed
            | Self::ConnectTimeout
            | Self::ConnectRejected
            | Self::CircuitOpen
            | Self::MaxRequests
            | Self::PendingOverflow
            | Self::MaxConnections => StatusCode::SERVICE_UNAVAILABLE,
            Self::ResponseTimeout | Self::Timeout => StatusCode::GATEWAY_TIMEOUT,
            Self::UpstreamError => StatusCode::BAD_GATEWAY,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::BadPath | Self::BadRequest => StatusCode::BAD_REQUEST,
            Self::TooManyHeaders => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::NoRoute => StatusCode::NOT_FOUND,
            Self::NoBackend => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The response, counted in `metrics` when given.
    pub fn response(self, metrics: Option<&HttpMetrics>) -> Response<Body> {
        let status = self.status();
        if let Some(m) = metrics {
            let class = if status.is_server_error() {
                Class::Failure
            } else {
                Class::Success
            };
            m.response(status.as_u16(), class);
        }
        let mut resp = Response::new(Body::full(self.reason()));
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(ERROR_HEADER, HeaderValue::from_static(self.reason()));
        h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_responses_are_counted_failures() {
        let m = HttpMetrics::new(String::new());
        let r = ProxyError::NoHealthyEndpoints.response(Some(&m));
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()[ERROR_HEADER], "no-healthy-endpoints");
        assert_eq!(m.responses(), vec![("503".to_string(), true, 1)]);
        assert_eq!(ProxyError::ResponseTimeout.status(), 504);
        assert_eq!(ProxyError::NoRoute.status(), 404);
        assert_eq!(ProxyError::NoRoute.reason(), "no-route");
        assert_eq!(ProxyError::NoBackend.status(), 500);
        assert_eq!(ProxyError::NoBackend.reason(), "no-backend");
    }
}
