//! Probes as the kubelet runs them: `httpGet` and `tcpSocket` from the root namespace to
//! the pod IP (`exec` runs inside the container's namespaces, see the pod worker), with
//! initial delay, period, timeout and success/failure thresholds. Parsing and the
//! threshold logic are pure.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What a probe does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// HTTP GET; success = status 200..=399.
    Http {
        /// Target host (pod IP unless `host` is set).
        host: String,
        /// Port.
        port: u16,
        /// Path and query.
        path: String,
        /// Extra headers.
        headers: Vec<(String, String)>,
    },
    /// TCP connect.
    Tcp {
        /// Target host.
        host: String,
        /// Port.
        port: u16,
    },
    /// Command in the container; success = exit 0.
    Exec(Vec<String>),
}

/// A parsed probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSpec {
    /// What to do.
    pub action: Action,
    /// Delay before the first probe.
    pub initial_delay: Duration,
    /// Interval.
    pub period: Duration,
    /// Per-attempt timeout.
    pub timeout: Duration,
    /// Consecutive successes to flip to success.
    pub success_threshold: u32,
    /// Consecutive failures to flip to failure.
    pub failure_threshold: u32,
}

fn secs(v: Option<i32>, default: u64) -> Duration {
    Duration::from_secs(
        v.and_then(|v| u64::try_from(v).ok())
            .filter(|v| *v > 0)
            .unwrap_or(default),
    )
}

fn resolve_port(container: &Container, port: &IntOrString) -> Result<u16, String> {
    match port {
        IntOrString::Int(p) => u16::try_from(*p).map_err(|_| format!("invalid port {p}")),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .ok_or_else(|| format!("port {name:?} is not declared by container {}", container.name)),
    }
}

/// Parses a probe of `container` in a pod at `pod_ip`.
pub fn parse(probe: &Probe, container: &Container, pod_ip: &str) -> Result<ProbeSpec, String> {
    let action = if let Some(h) = &probe.http_get {
        if h.scheme
            .as_deref()
            .unwrap_or("HTTP")
            .eq_ignore_ascii_case("HTTPS")
        {
            return Err("HTTPS probes are not supported by the e2e node agent".into());
        }
        Action::Http {
            host: h
                .host
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| pod_ip.to_string()),
            port: resolve_port(container, &h.port)?,
            path: h
                .path
                .clone()
                .filter(|p| p.starts_with('/'))
                .unwrap_or_else(|| "/".into()),
            headers: h
                .http_headers
                .iter()
                .flatten()
                .map(|x| (x.name.clone(), x.value.clone()))
                .collect(),
        }
    } else if let Some(t) = &probe.tcp_socket {
        Action::Tcp {
            host: t
                .host
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| pod_ip.to_string()),
            port: resolve_port(container, &t.port)?,
        }
    } else if let Some(e) = &probe.exec {
        Action::Exec(e.command.clone().unwrap_or_default())
    } else {
        return Err("only httpGet, tcpSocket and exec probes are supported by the e2e node agent".into());
    };
    Ok(ProbeSpec {
        action,
        initial_delay: Duration::from_secs(
            probe
                .initial_delay_seconds
                .and_then(|v| u64::try_from(v).ok())
                .unwrap_or(0),
        ),
        period: secs(probe.period_seconds, 10),
        timeout: secs(probe.timeout_seconds, 1),
        success_threshold: probe
            .success_threshold
            .and_then(|v| u32::try_from(v).ok())
            .filter(|v| *v > 0)
            .unwrap_or(1),
        failure_threshold: probe
            .failure_threshold
            .and_then(|v| u32::try_from(v).ok())
            .filter(|v| *v > 0)
            .unwrap_or(3),
    })
}

/// Consecutive-result bookkeeping of one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeState {
    /// The current verdict.
    pub ok: bool,
    successes: u32,
    failures: u32,
}

impl ProbeState {
    /// A probe whose verdict starts as `initial`.
    pub fn new(initial: bool) -> Self {
        Self {
            ok: initial,
            successes: 0,
            failures: 0,
        }
    }

    /// Whether the consecutive failures reached the failure threshold (a startup or
    /// liveness probe then restarts the container).
    pub fn exhausted(&self, spec: &ProbeSpec) -> bool {
        self.failures >= spec.failure_threshold
    }

    /// Records one attempt; returns the verdict (flips only at the thresholds).
    pub fn record(&mut self, success: bool, spec: &ProbeSpec) -> bool {
        if success {
            self.failures = 0;
            self.successes += 1;
            if self.successes >= spec.success_threshold {
                self.ok = true;
            }
        } else {
            self.successes = 0;
            self.failures += 1;
            if self.failures >= spec.failure_threshold {
                self.ok = false;
            }
        }
        self.ok
    }
}

/// One HTTP GET; success = a 2xx/3xx status line within `timeout`.
pub async fn http_get(
    host: &str,
    port: u16,
    path: &str,
    headers: &[(String, String)],
    timeout: Duration,
) -> bool {
    let attempt = async {
        let mut s = TcpStream::connect((host, port)).await.ok()?;
        let has_host = headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host"));
        let mut req = format!(
            "GET {path} HTTP/1.1\r\nUser-Agent: kube-probe/1.34\r\nAccept: */*\r\nConnection: close\r\n"
        );
        if !has_host {
            req.push_str(&format!("Host: {host}:{port}\r\n"));
        }
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut buf = [0u8; 64];
        let mut got = 0;
        while got < 12 {
            let n = s.read(&mut buf[got..]).await.ok()?;
            if n == 0 {
                break;
            }
            got += n;
        }
        let line = std::str::from_utf8(&buf[..got]).ok()?;
        let code: u16 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some((200..400).contains(&code))
    };
    matches!(tokio::time::timeout(timeout, attempt).await, Ok(Some(true)))
}

/// One TCP connect within `timeout`.
pub async fn tcp_connect(host: &str, port: u16, timeout: Duration) -> bool {
    matches!(
        tokio::time::timeout(timeout, TcpStream::connect((host, port))).await,
        Ok(Ok(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container() -> Container {
        serde_json::from_value(
            serde_json::json!({"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}),
        )
        .unwrap()
    }

    #[test]
    fn parses_with_kubelet_defaults() {
        let p: Probe =
            serde_json::from_value(serde_json::json!({"httpGet": {"port": "http", "path": "/ready"}}))
                .unwrap();
        let s = parse(&p, &container(), "198.18.0.9").unwrap();
        assert_eq!(
            s.action,
            Action::Http {
                host: "198.18.0.9".into(),
                port: 8080,
                path: "/ready".into(),
                headers: vec![]
            }
        );
        assert_eq!(
            (s.period, s.timeout, s.success_threshold, s.failure_threshold),
            (Duration::from_secs(10), Duration::from_secs(1), 1, 3)
        );
        let p: Probe = serde_json::from_value(serde_json::json!({"tcpSocket": {"port": "nope"}})).unwrap();
        assert!(parse(&p, &container(), "x").unwrap_err().contains("not declared"));
        let p: Probe =
            serde_json::from_value(serde_json::json!({"exec": {"command": ["true"]}, "periodSeconds": 2}))
                .unwrap();
        assert_eq!(
            parse(&p, &container(), "x").unwrap().action,
            Action::Exec(vec!["true".into()])
        );
        let p: Probe = serde_json::from_value(serde_json::json!({"grpc": {"port": 1}})).unwrap();
        assert!(parse(&p, &container(), "x").is_err());
    }

    #[test]
    fn thresholds() {
        let p: Probe = serde_json::from_value(
            serde_json::json!({"exec": {"command": ["x"]}, "successThreshold": 2, "failureThreshold": 2}),
        )
        .unwrap();
        let spec = parse(&p, &container(), "x").unwrap();
        let mut s = ProbeState::new(false);
        assert!(!s.record(true, &spec));
        assert!(s.record(true, &spec));
        assert!(s.record(false, &spec), "one failure is below the threshold");
        assert!(!s.exhausted(&spec));
        assert!(!s.record(false, &spec));
        assert!(s.exhausted(&spec));
        assert!(!s.record(true, &spec));
        assert!(!s.exhausted(&spec));
    }

    #[tokio::test]
    async fn http_and_tcp_probes_against_a_local_listener() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let mut n = 0;
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let status = if n == 0 {
                    "204 No Content"
                } else {
                    "503 Unavailable"
                };
                n += 1;
                let _ = s
                    .write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n").as_bytes())
                    .await;
            }
        });
        let t = Duration::from_secs(2);
        assert!(http_get("127.0.0.1", port, "/", &[], t).await);
        assert!(!http_get("127.0.0.1", port, "/", &[], t).await);
        assert!(tcp_connect("127.0.0.1", port, t).await);
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        assert!(!tcp_connect("127.0.0.1", closed, t).await);
    }
}
