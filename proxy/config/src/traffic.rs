//! Traffic policies applied in the calling sidecar before a request leaves:
//! fault injection (from `FaultInjection`) and mirroring (from `TrafficMirror`),
//! already resolved to one destination service.

use crate::validate::{err, validate_matches};
use crate::{HashKey, HttpMatch, LoadBalancer, ProxyConfig, ValidationError};
use serde::{Deserialize, Serialize};

/// Largest request body a mirror copies (bigger bodies are not mirrored).
pub const MAX_MIRROR_BODY_BYTES: u64 = 1024 * 1024;

/// Faults injected into calls to one service; the first policy whose matches
/// hold applies (at most one per request).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultPolicy {
    /// `namespace/name` of the FaultInjection object.
    pub source: String,
    /// Requests must match one of these (OR); empty = every request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<HttpMatch>,
    /// Delay a share of requests before they are sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<FaultDelay>,
    /// Answer a share of requests locally instead of sending them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<FaultAbort>,
}

/// A fixed delay for `percent` of requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultDelay {
    pub delay_ms: u64,
    /// Share of requests delayed, 0–100.
    pub percent: f64,
}

/// A local error answer for `percent` of requests: an HTTP status, or for gRPC
/// requests (`content-type: application/grpc*`) a gRPC status when set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultAbort {
    /// HTTP status answered (for gRPC requests too when `grpc_status` is unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// gRPC status code (1–16) answered to gRPC requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_status: Option<u32>,
    /// Share of requests aborted, 0–100.
    pub percent: f64,
}

/// Copies of a share of a service's requests sent to another service,
/// fire-and-forget (the copy's answer is discarded).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MirrorPolicy {
    /// `namespace/name` of the TrafficMirror (or route) that asked for it.
    pub source: String,
    /// Key (`namespace/name`) of the service receiving the copies, in
    /// [`crate::ProxyConfig::services`].
    pub service: String,
    /// Port of the mirror service; `None` = the port the request was sent to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Share of requests copied, 0–100.
    pub percent: f64,
    /// Requests whose body is bigger are not copied (counted as dropped).
    pub max_body_bytes: u64,
}

fn validate_percent(path: &str, percent: f64) -> Result<(), ValidationError> {
    if percent.is_finite() && (0.0..=100.0).contains(&percent) {
        Ok(())
    } else {
        Err(err(format!("{path}.percent"), "must be within 0..=100"))
    }
}

/// Checks the fault policies of one destination.
pub(crate) fn validate_faults(path: &str, faults: &[FaultPolicy]) -> Result<(), ValidationError> {
    for (i, f) in faults.iter().enumerate() {
        let fp = format!("{path}[{i}]");
        if f.delay.is_none() && f.abort.is_none() {
            return Err(err(fp, "must set delay, abort or both"));
        }
        validate_matches(&format!("{fp}.matches"), &f.matches)?;
        if let Some(d) = &f.delay {
            validate_percent(&format!("{fp}.delay"), d.percent)?;
            if d.delay_ms == 0 || d.delay_ms > 3_600_000 {
                return Err(err(format!("{fp}.delay.delayMs"), "must be within 1..=3600000"));
            }
        }
        if let Some(a) = &f.abort {
            validate_percent(&format!("{fp}.abort"), a.percent)?;
            match (a.http_status, a.grpc_status) {
                (None, None) => return Err(err(format!("{fp}.abort"), "must set httpStatus or grpcStatus")),
                (Some(s), _) if !(200..=599).contains(&s) => {
                    return Err(err(format!("{fp}.abort.httpStatus"), "must be within 200..=599"));
                }
                (_, Some(g)) if !(1..=16).contains(&g) => {
                    return Err(err(format!("{fp}.abort.grpcStatus"), "must be within 1..=16"));
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// Checks the mirrors of the service `key`.
pub(crate) fn validate_mirrors(
    cfg: &ProxyConfig,
    path: &str,
    key: &str,
    mirrors: &[MirrorPolicy],
) -> Result<(), ValidationError> {
    for (i, m) in mirrors.iter().enumerate() {
        let mp = format!("{path}[{i}]");
        validate_percent(&mp, m.percent)?;
        if m.service == key {
            return Err(err(format!("{mp}.service"), "a service cannot mirror to itself"));
        }
        let Some(target) = cfg.services.get(&m.service) else {
            return Err(err(
                format!("{mp}.service"),
                format!("{} is not a known service", m.service),
            ));
        };
        if let Some(port) = m.port
            && !target.ports.iter().any(|p| p.port == port)
        {
            return Err(err(
                format!("{mp}.port"),
                format!("{} has no port {port}", m.service),
            ));
        }
        if m.max_body_bytes > MAX_MIRROR_BODY_BYTES {
            return Err(err(
                format!("{mp}.maxBodyBytes"),
                format!("must be at most {MAX_MIRROR_BODY_BYTES}"),
            ));
        }
    }
    Ok(())
}

/// Checks a balancer choice (hash keys must be usable header/cookie names).
pub(crate) fn validate_balancer(path: &str, lb: &LoadBalancer) -> Result<(), ValidationError> {
    let LoadBalancer::ConsistentHash { key, cookie, .. } = lb else {
        return Ok(());
    };
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
    };
    match key {
        HashKey::Header(h) if !token(h) || h.chars().any(|c| c.is_ascii_uppercase()) => {
            return Err(err(
                format!("{path}.key"),
                "header names must be lower-case tokens",
            ));
        }
        HashKey::Cookie(c) if !token(c) => {
            return Err(err(format!("{path}.key"), "cookie names must be tokens"));
        }
        _ => {}
    }
    if let Some(generated) = cookie {
        if !matches!(key, HashKey::Cookie(_)) {
            return Err(err(
                format!("{path}.cookie"),
                "a generated cookie needs a cookie key",
            ));
        }
        if let Some(p) = &generated.path
            && (!p.starts_with('/') || p.bytes().any(|b| b == b';' || b.is_ascii_control()))
        {
            return Err(err(
                format!("{path}.cookie.path"),
                "must start with / and hold no ; or controls",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::tests::{referencing, svc};
    use crate::validate::tests::minimal;
    use crate::{CatalogShard, GeneratedCookie, HashAlgorithm, SCHEMA_VERSION, Service};

    fn abort(percent: f64) -> FaultPolicy {
        FaultPolicy {
            source: "shop/fi".into(),
            matches: vec![],
            delay: None,
            abort: Some(FaultAbort {
                http_status: Some(503),
                grpc_status: None,
                percent,
            }),
        }
    }

    fn mirror(service: &str) -> MirrorPolicy {
        MirrorPolicy {
            source: "shop/tm".into(),
            service: service.into(),
            port: None,
            percent: 100.0,
            max_body_bytes: 65_536,
        }
    }

    fn config(a: Service, b: Service) -> ProxyConfig {
        let mut c = minimal();
        c.services.insert("shop/a".into(), a);
        c.services.insert("shop/b".into(), b);
        c
    }

    #[test]
    fn faults_are_checked_with_paths() {
        let mut a = svc("shop", "a");
        a.faults = vec![abort(10.0)];
        config(a.clone(), svc("shop", "b")).validate().unwrap();
        a.faults = vec![abort(100.5)];
        let e = config(a.clone(), svc("shop", "b")).validate().unwrap_err();
        assert_eq!(e.path, "services[\"shop/a\"].faults[0].abort.percent");
        a.faults = vec![abort(f64::NAN)];
        assert!(config(a.clone(), svc("shop", "b")).validate().is_err());
        let mut f = abort(1.0);
        f.abort = None;
        a.faults = vec![f];
        let e = config(a.clone(), svc("shop", "b")).validate().unwrap_err();
        assert_eq!(e.path, "services[\"shop/a\"].faults[0]");
        let mut f = abort(1.0);
        f.abort = Some(FaultAbort {
            http_status: None,
            grpc_status: Some(17),
            percent: 1.0,
        });
        a.faults = vec![f];
        let e = config(a.clone(), svc("shop", "b")).validate().unwrap_err();
        assert_eq!(e.path, "services[\"shop/a\"].faults[0].abort.grpcStatus");
        let mut f = abort(1.0);
        f.delay = Some(FaultDelay {
            delay_ms: 0,
            percent: 5.0,
        });
        a.faults = vec![f];
        let e = config(a, svc("shop", "b")).validate().unwrap_err();
        assert_eq!(e.path, "services[\"shop/a\"].faults[0].delay.delayMs");
    }

    #[test]
    fn mirrors_must_name_another_known_service() {
        let mut a = svc("shop", "a");
        a.mirrors = vec![mirror("shop/b")];
        config(a.clone(), svc("shop", "b")).validate().unwrap();
        a.mirrors = vec![mirror("shop/a")];
        let e = config(a.clone(), svc("shop", "b")).validate().unwrap_err();
        assert_eq!(e.path, "services[\"shop/a\"].mirrors[0].service");
        a.mirrors = vec![mirror("shop/gone")];
        assert!(config(a.clone(), svc("shop", "b")).validate().is_err());
        let mut m = mirror("shop/b");
        m.port = Some(81);
        a.mirrors = vec![m];
        let e = config(a.clone(), svc("shop", "b")).validate().unwrap_err();
        assert_eq!(e.path, "services[\"shop/a\"].mirrors[0].port");
        let mut m = mirror("shop/b");
        m.max_body_bytes = MAX_MIRROR_BODY_BYTES + 1;
        a.mirrors = vec![m];
        let e = config(a, svc("shop", "b")).validate().unwrap_err();
        assert_eq!(e.path, "services[\"shop/a\"].mirrors[0].maxBodyBytes");
    }

    #[test]
    fn balancers_per_port_and_generated_cookies_are_checked() {
        let sticky = LoadBalancer::ConsistentHash {
            key: HashKey::Cookie("session".into()),
            algorithm: HashAlgorithm::Ring,
            cookie: Some(GeneratedCookie {
                ttl_ms: 3_600_000,
                path: Some("/".into()),
            }),
        };
        let mut a = svc("shop", "a");
        a.ports[0].load_balancer = Some(sticky.clone());
        let c = config(a.clone(), svc("shop", "b"));
        c.validate().unwrap();
        let back = ProxyConfig::from_json(&c.to_json().unwrap()).unwrap();
        assert_eq!(back.services["shop/a"].ports[0].load_balancer, Some(sticky));
        a.ports[0].load_balancer = Some(LoadBalancer::ConsistentHash {
            key: HashKey::Header("x-user".into()),
            algorithm: HashAlgorithm::Maglev,
            cookie: Some(GeneratedCookie {
                ttl_ms: 0,
                path: None,
            }),
        });
        let e = config(a.clone(), svc("shop", "b")).validate().unwrap_err();
        assert_eq!(e.path, "services[\"shop/a\"].ports[0].loadBalancer.cookie");
        a.ports[0].load_balancer = None;
        a.load_balancer = LoadBalancer::ConsistentHash {
            key: HashKey::Header("X-User".into()),
            algorithm: HashAlgorithm::Ring,
            cookie: None,
        };
        let e = config(a, svc("shop", "b")).validate().unwrap_err();
        assert_eq!(e.path, "services[\"shop/a\"].loadBalancer.key");
    }

    #[test]
    fn catalog_faults_are_merged_per_identity() {
        let mut inline = minimal();
        inline.faults.insert("shop/a".into(), vec![abort(5.0)]);
        assert_eq!(inline.validate().unwrap_err().path, "faults");
        let mut c = referencing();
        c.faults.insert("shop/a".into(), vec![abort(5.0)]);
        c.validate_unassembled(|k| k == "shop/a").unwrap();
        assert_eq!(
            c.validate_unassembled(|_| false).unwrap_err().path,
            "faults[\"shop/a\"]"
        );
        let shard = CatalogShard {
            schema_version: SCHEMA_VERSION,
            services: [("shop/a".to_string(), svc("shop", "a"))].into(),
        };
        let full = c.assemble(vec![shard]).unwrap();
        assert_eq!(full.services["shop/a"].faults, vec![abort(5.0)]);
        assert!(full.faults.is_empty());
    }
}
