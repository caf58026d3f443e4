//! Checks one converted policy with the config crate's own validator before it
//! is attached to any config: the services it touches are put into a throwaway
//! config (endpoints and other policies left out) and validated, so a policy
//! the proxy would refuse is reported on its object instead of making every
//! config that would carry it invalid.

use weft_proxy_config::{
    AccessMode, GatewayConfig, Identity, Inbound, MeshSettings, MtlsMode, ProxyConfig, SCHEMA_VERSION,
    Service, ValidationError,
};

const TRUST_DOMAIN: &str = "probe.invalid";

/// `svc` without endpoints or policies: only ports and names.
pub fn bare(svc: &Service) -> Service {
    Service {
        namespace: svc.namespace.clone(),
        name: svc.name.clone(),
        cluster_ips: Vec::new(),
        ports: svc
            .ports
            .iter()
            .map(|p| weft_proxy_config::ServicePort {
                endpoints: Vec::new(),
                load_balancer: None,
                ..p.clone()
            })
            .collect(),
        load_balancer: Default::default(),
        split: None,
        retry: None,
        circuit_breaker: None,
        faults: Vec::new(),
        mirrors: Vec::new(),
        routes: Vec::new(),
    }
}

/// Validates a config holding exactly `services`.
pub fn validate(services: Vec<Service>) -> Result<(), ValidationError> {
    validate_gateway(services, None)
}

/// Validates a config holding exactly `services` and the gateway section `gateway`.
pub fn validate_gateway(
    services: Vec<Service>,
    gateway: Option<GatewayConfig>,
) -> Result<(), ValidationError> {
    let config = ProxyConfig {
        schema_version: SCHEMA_VERSION,
        identity: Identity {
            namespace: "probe".into(),
            service_account: "probe".into(),
            spiffe_id: format!("spiffe://{TRUST_DOMAIN}/ns/probe/sa/probe"),
        },
        mesh: MeshSettings {
            trust_domain: TRUST_DOMAIN.into(),
            access_mode: AccessMode::Permissive,
            mtls_mode: MtlsMode::Strict,
        },
        services: services
            .into_iter()
            .map(|s| (format!("{}/{}", s.namespace, s.name), s))
            .collect(),
        inbound: Inbound::default(),
        catalog: None,
        retries: Default::default(),
        faults: Default::default(),
        routes: Default::default(),
        gateway,
    };
    config.validate()
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_proxy_config::{HashAlgorithm, HashKey, LoadBalancer, Protocol, ServicePort};

    fn svc() -> Service {
        let mut s = bare(&Service {
            namespace: "shop".into(),
            name: "a".into(),
            cluster_ips: Vec::new(),
            ports: vec![ServicePort {
                port: 80,
                name: None,
                protocol: Protocol::Http1,
                load_balancer: None,
                endpoints: Vec::new(),
            }],
            load_balancer: Default::default(),
            split: None,
            retry: None,
            circuit_breaker: None,
            faults: Vec::new(),
            mirrors: Vec::new(),
            routes: Vec::new(),
        });
        s.load_balancer = LoadBalancer::RoundRobin;
        s
    }

    #[test]
    fn the_validator_decides() {
        validate(vec![svc()]).unwrap();
        let mut bad = svc();
        bad.load_balancer = LoadBalancer::ConsistentHash {
            key: HashKey::Header("X-Upper".into()),
            algorithm: HashAlgorithm::Ring,
            cookie: None,
        };
        let e = validate(vec![bad]).unwrap_err();
        assert!(e.path.ends_with("loadBalancer.key"), "{e}");
    }
}
