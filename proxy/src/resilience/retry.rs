//! Retry decisions (pure): how an attempt ended, whether a Retry policy's
//! `retryOn` conditions make it retryable, and the exponential backoff with
//! full jitter between attempts.

use std::time::Duration;
use weft_proxy_config::{Backoff, RetryOn, RetryPolicy};

/// How one attempt ended, as far as retries, outlier detection and the
/// breaker care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// Response headers arrived; `grpc` is a `grpc-status` found in the headers
    /// (trailers-only gRPC responses).
    Response { status: u16, grpc: Option<u32> },
    /// No connection could be opened (refused, timeout, TLS or identity failure).
    ConnectFailure,
    /// The connection failed after the request was (partly) sent.
    Reset,
    /// The per-try timeout fired before response headers.
    Timeout,
}

impl Attempt {
    /// A gateway error: 502/503/504 or a transport failure.
    pub fn is_gateway_error(self) -> bool {
        match self {
            Self::Response { status, .. } => matches!(status, 502..=504),
            Self::ConnectFailure | Self::Reset | Self::Timeout => true,
        }
    }

    /// A server error: any 5xx or a transport failure.
    pub fn is_server_error(self) -> bool {
        match self {
            Self::Response { status, .. } => status >= 500,
            _ => true,
        }
    }

    /// Failure for the breaker: a server error or a failed gRPC status.
    pub fn is_failure(self) -> bool {
        match self {
            Self::Response { grpc: Some(code), .. } if code != 0 => true,
            _ => self.is_server_error(),
        }
    }
}

/// Why an attempt is retried (the `reason` label of the retry counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    ServerError,
    GatewayError,
    ConnectFailure,
    Reset,
    Status,
    Grpc,
}

impl Reason {
    /// All reasons (bounded metric labels).
    pub const ALL: [Reason; 6] = [
        Self::ServerError,
        Self::GatewayError,
        Self::ConnectFailure,
        Self::Reset,
        Self::Status,
        Self::Grpc,
    ];

    /// Label value, spelled like the `retryOn` condition.
    pub fn label(self) -> &'static str {
        match self {
            Self::ServerError => "5xx",
            Self::GatewayError => "gateway-error",
            Self::ConnectFailure => "connect-failure",
            Self::Reset => "reset",
            Self::Status => "retriable-status-codes",
            Self::Grpc => "grpc",
        }
    }
}

/// The first `retryOn` condition (in the policy's order) that `attempt` meets.
pub fn retry_reason(policy: &RetryPolicy, attempt: Attempt) -> Option<Reason> {
    policy.retry_on.iter().find_map(|cond| {
        let hit = match cond {
            RetryOn::ServerError => attempt.is_server_error(),
            RetryOn::GatewayError => attempt.is_gateway_error(),
            RetryOn::ConnectFailure => attempt == Attempt::ConnectFailure,
            RetryOn::Reset => attempt == Attempt::Reset,
            RetryOn::RetriableStatusCodes => matches!(attempt,
                Attempt::Response { status, .. } if policy.retriable_status_codes.contains(&status)),
            RetryOn::Grpc => matches!(attempt,
                Attempt::Response { grpc: Some(code), .. } if policy.retriable_grpc_codes.contains(&code)),
        };
        hit.then_some(match cond {
            RetryOn::ServerError => Reason::ServerError,
            RetryOn::GatewayError => Reason::GatewayError,
            RetryOn::ConnectFailure => Reason::ConnectFailure,
            RetryOn::Reset => Reason::Reset,
            RetryOn::RetriableStatusCodes => Reason::Status,
            RetryOn::Grpc => Reason::Grpc,
        })
    })
}

/// Backoff before retry number `retry` (1-based): uniform in
/// `[0, min(max, base × 2^(retry-1))]` ("full jitter"). `unit` is a uniform
/// random number in `[0, 1)`.
pub fn backoff(b: &Backoff, retry: u32, unit: f64) -> Duration {
    let exp = b.base_ms.saturating_mul(1u64 << retry.saturating_sub(1).min(30));
    let cap = exp.min(b.max_ms);
    Duration::from_micros((cap as f64 * 1000.0 * unit.clamp(0.0, 1.0)) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_proxy_config::RetryBudget;

    fn policy(on: &[RetryOn]) -> RetryPolicy {
        RetryPolicy {
            source: "t/r".into(),
            retry_on: on.to_vec(),
            retriable_status_codes: vec![409],
            retriable_grpc_codes: vec![14],
            num_retries: 2,
            per_try_timeout_ms: None,
            timeout_ms: None,
            backoff: Backoff {
                base_ms: 10,
                max_ms: 100,
            },
            budget: RetryBudget {
                ratio: 0.2,
                min_per_second: 10,
                window_ms: 10_000,
            },
        }
    }

    fn resp(status: u16) -> Attempt {
        Attempt::Response { status, grpc: None }
    }

    #[test]
    fn conditions() {
        let p = policy(&[RetryOn::GatewayError]);
        assert_eq!(retry_reason(&p, resp(503)), Some(Reason::GatewayError));
        assert_eq!(retry_reason(&p, resp(500)), None);
        assert_eq!(retry_reason(&p, Attempt::Timeout), Some(Reason::GatewayError));
        let p = policy(&[RetryOn::ServerError]);
        assert_eq!(retry_reason(&p, resp(500)), Some(Reason::ServerError));
        assert_eq!(retry_reason(&p, resp(404)), None);
        let p = policy(&[RetryOn::ConnectFailure, RetryOn::Reset]);
        assert_eq!(
            retry_reason(&p, Attempt::ConnectFailure),
            Some(Reason::ConnectFailure)
        );
        assert_eq!(retry_reason(&p, Attempt::Reset), Some(Reason::Reset));
        assert_eq!(retry_reason(&p, resp(503)), None);
        let p = policy(&[RetryOn::RetriableStatusCodes, RetryOn::Grpc]);
        assert_eq!(retry_reason(&p, resp(409)), Some(Reason::Status));
        assert_eq!(retry_reason(&p, resp(500)), None);
        let unavailable = Attempt::Response {
            status: 200,
            grpc: Some(14),
        };
        assert_eq!(retry_reason(&p, unavailable), Some(Reason::Grpc));
        assert!(unavailable.is_failure());
        let ok = Attempt::Response {
            status: 200,
            grpc: Some(0),
        };
        assert_eq!(retry_reason(&p, ok), None);
        assert!(!ok.is_failure());
    }

    #[test]
    fn full_jitter_backoff_is_bounded_and_exponential() {
        let b = Backoff {
            base_ms: 10,
            max_ms: 100,
        };
        assert_eq!(backoff(&b, 1, 0.999_999), Duration::from_micros(9_999));
        assert_eq!(backoff(&b, 2, 0.5), Duration::from_millis(10));
        assert_eq!(backoff(&b, 3, 0.5), Duration::from_millis(20));
        // Capped at max.
        assert_eq!(backoff(&b, 10, 0.5), Duration::from_millis(50));
        assert_eq!(backoff(&b, 64, 0.0), Duration::ZERO);
    }
}
