//! Semantic validation of a [`ProxyConfig`], shared by the operator (before it
//! writes) and the proxy (before it applies). Errors name the offending path.

use crate::{
    AccessRule, CircuitBreakerPolicy, Fallback, HttpMatch, ProxyConfig, RetryPolicy, SCHEMA_VERSION, Service,
    compile_full,
};

/// A config that parsed but must not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid proxy config at {path}: {reason}")]
pub struct ValidationError {
    /// JSON-ish path of the offending field, e.g. `services["ns/a"].split.backends`.
    pub path: String,
    /// What is wrong.
    pub reason: String,
}

pub(crate) fn err(path: impl Into<String>, reason: impl Into<String>) -> ValidationError {
    ValidationError {
        path: path.into(),
        reason: reason.into(),
    }
}

impl ProxyConfig {
    /// Checks every rule the data plane relies on. A config that still references
    /// an unassembled catalog is refused: its services are elsewhere.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.catalog.is_some() {
            return Err(err(
                "catalog",
                "the service catalog has not been assembled into this config",
            ));
        }
        if !self.retries.is_empty() {
            return Err(err(
                "retries",
                "per-destination retries are only valid with a catalog (inline services carry their own)",
            ));
        }
        if !self.faults.is_empty() {
            return Err(err(
                "faults",
                "per-destination faults are only valid with a catalog (inline services carry their own)",
            ));
        }
        if !self.routes.is_empty() {
            return Err(err(
                "routes",
                "per-destination routes are only valid with a catalog (inline services carry their own)",
            ));
        }
        self.validate_identity_parts()?;
        for (key, svc) in &self.services {
            validate_service(self, &format!("services[\"{key}\"]"), key, svc)?;
        }
        if let Some(g) = &self.gateway {
            g.validate(self)?;
        }
        Ok(())
    }

    /// Checks a config that references a catalog, before assembly: everything
    /// except the catalog's services (validated once, as a whole, by the
    /// operator and again by the proxy after assembly). `catalog_has` says
    /// whether the catalog holds a service key. Configs without a catalog get
    /// the full [`ProxyConfig::validate`].
    pub fn validate_unassembled(&self, catalog_has: impl Fn(&str) -> bool) -> Result<(), ValidationError> {
        let Some(catalog) = &self.catalog else {
            return self.validate();
        };
        if catalog.namespace.is_empty() || catalog.index.is_empty() {
            return Err(err("catalog", "namespace and index must be set"));
        }
        if !self.services.is_empty() {
            return Err(err("services", "must be empty when a catalog is referenced"));
        }
        self.validate_identity_parts()?;
        for (key, retry) in &self.retries {
            let path = format!("retries[\"{key}\"]");
            if !catalog_has(key) {
                return Err(err(path, "not a service of the catalog"));
            }
            validate_retry(&path, retry)?;
        }
        for (key, faults) in &self.faults {
            let path = format!("faults[\"{key}\"]");
            if !catalog_has(key) {
                return Err(err(path, "not a service of the catalog"));
            }
            crate::traffic::validate_faults(&path, faults)?;
        }
        for key in self.routes.keys() {
            if !catalog_has(key) {
                return Err(err(format!("routes[\"{key}\"]"), "not a service of the catalog"));
            }
        }
        Ok(())
    }

    /// Schema version, identity and the inbound authorization table.
    fn validate_identity_parts(&self) -> Result<(), ValidationError> {
        if self.schema_version != SCHEMA_VERSION {
            return Err(err(
                "schemaVersion",
                format!(
                    "unsupported version {} (this build reads {SCHEMA_VERSION})",
                    self.schema_version
                ),
            ));
        }
        let prefix = format!("spiffe://{}/ns/", self.mesh.trust_domain);
        if !self.identity.spiffe_id.starts_with(&prefix) {
            return Err(err("identity.spiffeId", format!("must start with {prefix}")));
        }
        for (i, grant) in self.inbound.grants.iter().enumerate() {
            let path = format!("inbound.grants[{i}]");
            if grant.sources.iter().any(|s| !s.starts_with("spiffe://")) {
                return Err(err(
                    format!("{path}.sources"),
                    "every source must be a spiffe:// ID",
                ));
            }
            for (j, rule) in grant.rules.iter().enumerate() {
                if let AccessRule::Http { matches, .. } = rule {
                    validate_matches(&format!("{path}.rules[{j}].matches"), matches)?;
                }
            }
        }
        Ok(())
    }
}

fn validate_service(cfg: &ProxyConfig, path: &str, key: &str, svc: &Service) -> Result<(), ValidationError> {
    if key != format!("{}/{}", svc.namespace, svc.name) {
        return Err(err(path, "key must be <namespace>/<name> of the service"));
    }
    let mut last = 0u16;
    for (i, port) in svc.ports.iter().enumerate() {
        if port.port == 0 || port.port <= last {
            return Err(err(
                format!("{path}.ports[{i}].port"),
                "ports must be non-zero and strictly increasing",
            ));
        }
        last = port.port;
        if let Some(j) = port.endpoints.iter().position(|e| e.port == 0) {
            return Err(err(
                format!("{path}.ports[{i}].endpoints[{j}].port"),
                "must be non-zero",
            ));
        }
    }
    if let Some(split) = &svc.split {
        let sp = format!("{path}.split");
        if split.backends.is_empty() {
            return Err(err(format!("{sp}.backends"), "must not be empty"));
        }
        if split.backends.iter().all(|b| b.weight == 0) {
            return Err(err(format!("{sp}.backends"), "weights must not all be zero"));
        }
        if let Some(b) = split
            .backends
            .iter()
            .find(|b| !cfg.services.contains_key(&b.service))
        {
            return Err(err(
                format!("{sp}.backends"),
                format!("backend {} is not a known service", b.service),
            ));
        }
        validate_matches(&format!("{sp}.matches"), &split.matches)?;
    }
    if let Some(retry) = &svc.retry {
        validate_retry(&format!("{path}.retry"), retry)?;
    }
    if let Some(cb) = &svc.circuit_breaker {
        validate_breaker(cfg, &format!("{path}.circuitBreaker"), cb)?;
    }
    crate::traffic::validate_balancer(&format!("{path}.loadBalancer"), &svc.load_balancer)?;
    for (i, port) in svc.ports.iter().enumerate() {
        if let Some(lb) = &port.load_balancer {
            crate::traffic::validate_balancer(&format!("{path}.ports[{i}].loadBalancer"), lb)?;
        }
    }
    crate::traffic::validate_faults(&format!("{path}.faults"), &svc.faults)?;
    crate::traffic::validate_mirrors(cfg, &format!("{path}.mirrors"), key, &svc.mirrors)?;
    crate::route::validate_routes(cfg, &format!("{path}.routes"), &svc.routes)?;
    Ok(())
}

pub(crate) fn validate_matches(path: &str, matches: &[HttpMatch]) -> Result<(), ValidationError> {
    for (i, m) in matches.iter().enumerate() {
        if let Some(re) = &m.path_regex {
            compile_full(re).map_err(|e| err(format!("{path}[{i}].pathRegex"), e.to_string()))?;
        }
        for (name, re) in &m.headers {
            if name.chars().any(|c| c.is_ascii_uppercase()) {
                return Err(err(
                    format!("{path}[{i}].headers.{name}"),
                    "header names must be lower-case",
                ));
            }
            compile_full(re).map_err(|e| err(format!("{path}[{i}].headers.{name}"), e.to_string()))?;
        }
        if let Some(bad) = m
            .methods
            .iter()
            .find(|x| x.as_str() != "*" && !x.chars().all(|c| c.is_ascii_uppercase()))
        {
            return Err(err(
                format!("{path}[{i}].methods"),
                format!("{bad:?} is not an upper-case method or *"),
            ));
        }
    }
    Ok(())
}

fn validate_retry(path: &str, r: &RetryPolicy) -> Result<(), ValidationError> {
    if r.num_retries > 10 {
        return Err(err(format!("{path}.numRetries"), "must be at most 10"));
    }
    if r.backoff.base_ms == 0 || r.backoff.max_ms < r.backoff.base_ms {
        return Err(err(format!("{path}.backoff"), "base must be > 0 and max >= base"));
    }
    if !(0.0..=10.0).contains(&r.budget.ratio) || r.budget.window_ms == 0 {
        return Err(err(
            format!("{path}.budget"),
            "ratio must be within 0..=10 and window > 0",
        ));
    }
    if matches!(r.per_try_timeout_ms, Some(0)) || matches!(r.timeout_ms, Some(0)) {
        return Err(err(path, "timeouts must be > 0 when set"));
    }
    Ok(())
}

fn validate_breaker(cfg: &ProxyConfig, path: &str, cb: &CircuitBreakerPolicy) -> Result<(), ValidationError> {
    if let Some(o) = &cb.outlier_detection
        && (o.max_ejection_percent > 100 || o.interval_ms == 0 || o.base_ejection_ms == 0)
    {
        return Err(err(
            format!("{path}.outlierDetection"),
            "maxEjectionPercent must be <= 100 and interval/baseEjection > 0",
        ));
    }
    if let Some(b) = &cb.breaker
        && (!(1..=100).contains(&b.failure_rate_threshold)
            || b.window_ms == 0
            || b.open_duration_ms == 0
            || b.half_open_requests == 0)
    {
        return Err(err(
            format!("{path}.breaker"),
            "failureRateThreshold must be 1..=100; window, openDuration and halfOpenRequests > 0",
        ));
    }
    match &cb.fallback {
        Some(Fallback::Static { status, .. }) if !(100..=599).contains(status) => Err(err(
            format!("{path}.fallback.status"),
            "must be an HTTP status 100..=599",
        )),
        Some(Fallback::Service { service }) if !cfg.services.contains_key(service) => Err(err(
            format!("{path}.fallback.service"),
            format!("{service} is not a known service"),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use crate::*;

    pub(crate) fn minimal() -> ProxyConfig {
        ProxyConfig {
            schema_version: SCHEMA_VERSION,
            identity: Identity {
                namespace: "ns".into(),
                service_account: "sa".into(),
                spiffe_id: "spiffe://cluster.local/ns/ns/sa/sa".into(),
            },
            mesh: MeshSettings {
                trust_domain: "cluster.local".into(),
                access_mode: AccessMode::Smi,
                mtls_mode: MtlsMode::Strict,
            },
            services: Default::default(),
            inbound: Default::default(),
            catalog: None,
            retries: Default::default(),
            faults: Default::default(),
            routes: Default::default(),
            gateway: None,
        }
    }

    #[test]
    fn minimal_round_trips() {
        let c = minimal();
        let text = c.to_json().unwrap();
        assert_eq!(ProxyConfig::from_json(&text).unwrap(), c);
    }

    #[test]
    fn wrong_schema_version_is_rejected_with_path() {
        let mut c = minimal();
        c.schema_version = 99;
        let e = c.validate().unwrap_err();
        assert_eq!(e.path, "schemaVersion");
    }

    #[test]
    fn bad_header_regex_is_rejected() {
        let mut c = minimal();
        c.inbound.grants.push(AccessGrant {
            source: "ns/tt".into(),
            sources: vec!["spiffe://cluster.local/ns/ns/sa/a".into()],
            rules: vec![AccessRule::Http {
                ports: vec![],
                matches: vec![HttpMatch {
                    name: "g/m".into(),
                    headers: [("x".to_string(), "(".to_string())].into(),
                    ..Default::default()
                }],
            }],
        });
        let e = c.validate().unwrap_err();
        assert!(e.path.contains("headers.x"), "{e}");
    }

    #[test]
    fn path_regex_is_validated_as_the_proxy_compiles_it() {
        // Valid on its own, but a verbose-mode comment would swallow the `)$` the
        // proxy appends to anchor it: refused, not anchored differently.
        let mut c = minimal();
        c.inbound.grants.push(AccessGrant {
            source: "ns/tt".into(),
            sources: vec!["spiffe://cluster.local/ns/ns/sa/a".into()],
            rules: vec![AccessRule::Http {
                ports: vec![8080],
                matches: vec![HttpMatch {
                    name: "g/m".into(),
                    path_regex: Some("(?x)/metrics#".into()),
                    ..Default::default()
                }],
            }],
        });
        let e = c.validate().unwrap_err();
        assert!(e.path.ends_with("pathRegex"), "{e}");
    }

    #[test]
    fn http_rule_ports_round_trip_and_default_to_every_port() {
        let rule: AccessRule = serde_json::from_str(r#"{"kind":"http","matches":[]}"#).unwrap();
        assert_eq!(
            rule,
            AccessRule::Http {
                ports: vec![],
                matches: vec![]
            }
        );
        let with = AccessRule::Http {
            ports: vec![8080],
            matches: vec![],
        };
        let text = serde_json::to_string(&with).unwrap();
        assert_eq!(text, r#"{"kind":"http","ports":[8080],"matches":[]}"#);
        assert_eq!(serde_json::from_str::<AccessRule>(&text).unwrap(), with);
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let text = minimal().to_json().unwrap().replacen('{', "{\"bogus\":1,", 1);
        assert!(matches!(ProxyConfig::from_json(&text), Err(ParseError::Json(_))));
    }
}
