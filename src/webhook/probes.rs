//! Kubelet probes under strict mTLS and deny-by-default: the app's `httpGet`,
//! `tcpSocket` and `grpc` probes are rewritten to plain `httpGet` probes on the
//! sidecar's admin port (never redirected, no mTLS) at
//! `/app-probe/<container>/<livez|readyz|startupz>`; the original probe goes into the
//! sidecar's `WEFT_APP_PROBES` env (JSON map path → [`AppProbe`]) and the proxy
//! performs it against `127.0.0.1`. Only probes listed there are served, so the admin
//! port cannot be used to reach arbitrary local ports.
//!
//! Left untouched: `exec` probes, probes with an explicit `host` (they do not target
//! the pod), probes on a named port the container does not declare, and probes on the
//! admin port or on a port skipped from inbound redirection (already reachable).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, HTTPGetAction, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::{Deserialize, Serialize};

use super::exclusions::port_listed;
use super::names::APP_PROBE_PREFIX;

/// One original app probe, as the proxy must perform it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppProbe {
    /// HTTP(S) GET; success = status 200-399 (like kubelet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_get: Option<HttpProbe>,
    /// TCP connect; success = connection established.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_socket: Option<PortProbe>,
    /// `grpc.health.v1.Health/Check`; success = `SERVING`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<GrpcProbe>,
    /// Timeout for the proxy's call (the probe's `timeoutSeconds`, default 1).
    pub timeout_seconds: i32,
}

/// An HTTP probe target on `127.0.0.1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpProbe {
    /// Container port.
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
    /// `HTTP` or `HTTPS` (HTTPS: certificate not verified, as kubelet does).
    pub scheme: String,
    /// Extra request headers (a `Host` entry sets the Host header).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http_headers: Vec<Header>,
}

/// One HTTP header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Header name.
    pub name: String,
    /// Header value.
    pub value: String,
}

/// A TCP probe target on `127.0.0.1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortProbe {
    /// Container port.
    pub port: u16,
}

/// A gRPC health probe target on `127.0.0.1` (h2c).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrpcProbe {
    /// Container port.
    pub port: u16,
    /// `HealthCheckRequest.service` (empty when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

fn resolve_port(c: &Container, port: &IntOrString) -> Option<u16> {
    let n = match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(name) => match name.parse::<i32>() {
            Ok(n) => n,
            Err(_) => {
                c.ports
                    .iter()
                    .flatten()
                    .find(|p| p.name.as_deref() == Some(name))?
                    .container_port
            }
        },
    };
    u16::try_from(n).ok().filter(|p| *p != 0)
}

/// What the proxy must do for `probe`, or `None` if it stays as it is.
fn original(c: &Container, probe: &Probe) -> Option<(u16, AppProbe)> {
    let timeout_seconds = probe.timeout_seconds.unwrap_or(1);
    let mut out = AppProbe {
        http_get: None,
        tcp_socket: None,
        grpc: None,
        timeout_seconds,
    };
    let port = if let Some(h) = &probe.http_get {
        if h.host.as_deref().is_some_and(|s| !s.is_empty()) {
            return None;
        }
        let port = resolve_port(c, &h.port)?;
        let path = h.path.clone().unwrap_or_default();
        out.http_get = Some(HttpProbe {
            port,
            path: if path.starts_with('/') {
                path
            } else {
                format!("/{path}")
            },
            scheme: h.scheme.clone().unwrap_or_else(|| "HTTP".into()).to_uppercase(),
            http_headers: (h.http_headers.iter().flatten())
                .map(|h| Header {
                    name: h.name.clone(),
                    value: h.value.clone(),
                })
                .collect(),
        });
        port
    } else if let Some(t) = &probe.tcp_socket {
        if t.host.as_deref().is_some_and(|s| !s.is_empty()) {
            return None;
        }
        let port = resolve_port(c, &t.port)?;
        out.tcp_socket = Some(PortProbe { port });
        port
    } else if let Some(g) = &probe.grpc {
        let port = u16::try_from(g.port).ok().filter(|p| *p != 0)?;
        out.grpc = Some(GrpcProbe {
            port,
            service: g.service.clone(),
        });
        port
    } else {
        return None;
    };
    Some((port, out))
}

/// Rewrites the probes of `containers` in place and returns path → original probe.
pub fn rewrite_probes(
    containers: &mut [Container],
    admin_port: u16,
    skip_inbound_ports: &str,
) -> BTreeMap<String, AppProbe> {
    let mut originals = BTreeMap::new();
    for c in containers.iter_mut() {
        let name = c.name.clone();
        let snapshot = c.clone();
        let slots = [
            ("livez", &mut c.liveness_probe),
            ("readyz", &mut c.readiness_probe),
            ("startupz", &mut c.startup_probe),
        ];
        for (kind, slot) in slots {
            let Some(probe) = slot.as_mut() else { continue };
            let Some((port, orig)) = original(&snapshot, probe) else {
                continue;
            };
            if port == admin_port || port_listed(skip_inbound_ports, port) {
                continue;
            }
            let path = format!("{APP_PROBE_PREFIX}{name}/{kind}");
            probe.tcp_socket = None;
            probe.grpc = None;
            probe.http_get = Some(HTTPGetAction {
                port: IntOrString::Int(i32::from(admin_port)),
                path: Some(path.clone()),
                scheme: Some("HTTP".into()),
                ..Default::default()
            });
            originals.insert(path, orig);
        }
    }
    originals
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn container(probe: serde_json::Value) -> Container {
        serde_json::from_value(
            json!({"name": "app", "ports": [{"name": "web", "containerPort": 8443}],
            "livenessProbe": probe}),
        )
        .unwrap()
    }

    fn rewrite(probe: serde_json::Value) -> (Container, BTreeMap<String, AppProbe>) {
        let mut cs = vec![container(probe)];
        let map = rewrite_probes(&mut cs, 15020, "9000-9100");
        (cs.remove(0), map)
    }

    #[test]
    fn https_probe_with_headers_is_recorded_exactly() {
        let (c, map) = rewrite(
            json!({"httpGet": {"port": "web", "scheme": "HTTPS", "path": "/h?x=1",
            "httpHeaders": [{"name": "Host", "value": "app.local"}]}, "timeoutSeconds": 4, "periodSeconds": 7}),
        );
        let p = c.liveness_probe.unwrap();
        assert_eq!(p.period_seconds, Some(7));
        let h = p.http_get.unwrap();
        assert_eq!(
            (h.port, h.path.as_deref(), h.http_headers),
            (IntOrString::Int(15020), Some("/app-probe/app/livez"), None)
        );
        let want = AppProbe {
            http_get: Some(HttpProbe {
                port: 8443,
                path: "/h?x=1".into(),
                scheme: "HTTPS".into(),
                http_headers: vec![Header {
                    name: "Host".into(),
                    value: "app.local".into(),
                }],
            }),
            tcp_socket: None,
            grpc: None,
            timeout_seconds: 4,
        };
        assert_eq!(map["/app-probe/app/livez"], want);
    }

    #[test]
    fn probes_that_need_no_proxy_are_left_alone() {
        for probe in [
            json!({"exec": {"command": ["true"]}}),
            json!({"httpGet": {"port": 8080, "host": "198.19.0.10"}}),
            json!({"httpGet": {"port": "missing"}}),
            json!({"tcpSocket": {"port": 15020}}),
            json!({"grpc": {"port": 9050}}),
        ] {
            let (c, map) = rewrite(probe.clone());
            assert!(map.is_empty(), "{probe} was rewritten");
            assert_eq!(c, container(probe));
        }
    }
}
