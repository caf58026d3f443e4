//! weft proxy configs for the two-sidecar mTLS hop: the client side's config names one service
//! whose only endpoint is the server-side proxy, with the server's SPIFFE ID (so the connection
//! is mTLS); the server side's config serves the backend port inbound, mTLS strict. The
//! protocol is a parameter: `Detect` for the HTTP runs (what a sidecar does by default), `Tcp`
//! for the bulk-throughput runs (opaque bytes, like Envoy's `tcp_proxy`). [`plain_config`] is
//! the one-hop plaintext variant.

use crate::pki::{CLIENT_ID, SERVER_ID};
use std::net::SocketAddr;
use weft_proxy_config::{
    AccessMode, Endpoint, Identity, Inbound, InboundPort, MeshSettings, MtlsMode, Protocol, ProxyConfig,
    SCHEMA_VERSION, Service, ServicePort,
};

fn identity(sa: &str, spiffe: &str) -> Identity {
    Identity {
        namespace: "bench".into(),
        service_account: sa.into(),
        spiffe_id: spiffe.into(),
    }
}

fn mesh() -> MeshSettings {
    MeshSettings {
        trust_domain: "cluster.local".into(),
        // Like the Envoy pair (no RBAC filter): any mesh identity may call.
        access_mode: AccessMode::Permissive,
        mtls_mode: MtlsMode::Strict,
    }
}

/// Client side: traffic addressed to `server` goes to the server-side proxy over mTLS.
pub fn client_config(server: SocketAddr, protocol: Protocol) -> ProxyConfig {
    forward_config(server, protocol, Some(SERVER_ID))
}

/// One plaintext hop: traffic addressed to `upstream` goes straight there (no identity, no TLS).
pub fn plain_config(upstream: SocketAddr, protocol: Protocol) -> ProxyConfig {
    let mut c = forward_config(upstream, protocol, None);
    c.mesh.mtls_mode = MtlsMode::Permissive;
    c
}

fn forward_config(server: SocketAddr, protocol: Protocol, peer: Option<&str>) -> ProxyConfig {
    let service = Service {
        namespace: "bench".into(),
        name: "backend".into(),
        cluster_ips: vec![server.ip()],
        ports: vec![ServicePort {
            port: server.port(),
            name: None,
            protocol,
            endpoints: vec![Endpoint {
                ip: server.ip(),
                port: server.port(),
                ready: true,
                zone: None,
                identity: peer.map(str::to_string),
                pod: None,
            }],
            load_balancer: None,
        }],
        load_balancer: Default::default(),
        split: None,
        retry: None,
        circuit_breaker: None,
        faults: Default::default(),
        mirrors: Vec::new(),
        routes: Vec::new(),
    };
    ProxyConfig {
        schema_version: SCHEMA_VERSION,
        identity: identity("client", CLIENT_ID),
        mesh: mesh(),
        services: [("bench/backend".to_string(), service)].into(),
        inbound: Inbound::default(),
        catalog: None,
        retries: Default::default(),
        faults: Default::default(),
        routes: Default::default(),
        gateway: None,
    }
}

/// Server side: serves the app (backend) port inbound.
pub fn server_config(app_port: u16, protocol: Protocol) -> ProxyConfig {
    ProxyConfig {
        schema_version: SCHEMA_VERSION,
        identity: identity("server", SERVER_ID),
        mesh: mesh(),
        services: Default::default(),
        inbound: Inbound {
            ports: vec![InboundPort {
                port: app_port,
                protocol,
            }],
            grants: Vec::new(),
        },
        catalog: None,
        retries: Default::default(),
        faults: Default::default(),
        routes: Default::default(),
        gateway: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_validate_and_round_trip() {
        let c = client_config(SocketAddr::from(([127, 0, 0, 1], 4000)), Protocol::Detect);
        let json = c.to_json().unwrap();
        let back = ProxyConfig::from_json(&json).unwrap();
        let ep = &back.services["bench/backend"].ports[0].endpoints[0];
        assert_eq!(ep.identity.as_deref(), Some(SERVER_ID));
        let s = server_config(5000, Protocol::Tcp);
        let back = ProxyConfig::from_json(&s.to_json().unwrap()).unwrap();
        assert_eq!(back.inbound.ports[0].port, 5000);
        assert_eq!(back.inbound.ports[0].protocol, Protocol::Tcp);
        assert_eq!(back.mesh.mtls_mode, MtlsMode::Strict);
        let p = plain_config(SocketAddr::from(([127, 0, 0, 1], 4000)), Protocol::Tcp);
        let back = ProxyConfig::from_json(&p.to_json().unwrap()).unwrap();
        let port = &back.services["bench/backend"].ports[0];
        assert_eq!(
            (port.protocol, port.endpoints[0].identity.clone()),
            (Protocol::Tcp, None)
        );
        assert_eq!(back.mesh.mtls_mode, MtlsMode::Permissive);
    }
}
