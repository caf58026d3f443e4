//! Static Envoy bootstrap configs equivalent to the weft topologies: one listener → HTTP
//! connection manager → router → one STATIC cluster; for the mesh hop, a client-side Envoy
//! whose cluster speaks TLS (client certificate) to a server-side Envoy whose listener requires
//! a client certificate from the same CA. The TCP variants swap the HTTP connection manager
//! for the `tcp_proxy` network filter (opaque bytes, no HTTP parsing), keeping the TLS.

use crate::pki::{CLIENT_ID, Pki, SERVER_ID, SERVER_NAME};
use serde_json::{Value, json};
use std::net::SocketAddr;

/// Which side of a hop one Envoy plays.
#[derive(Debug, Clone)]
pub enum Role<'a> {
    /// Plaintext in, plaintext out (one proxy hop).
    Plain,
    /// Plaintext in, mTLS out (the client-side sidecar).
    MeshClient(&'a Pki),
    /// mTLS in, plaintext out (the server-side sidecar).
    MeshServer(&'a Pki),
}

fn addr(a: SocketAddr) -> Value {
    json!({ "socket_address": { "address": a.ip().to_string(), "port_value": a.port() } })
}

fn pem(path: &std::path::Path) -> Value {
    json!({ "filename": path.display().to_string() })
}

fn san_uri(id: &str) -> Value {
    json!([{ "san_type": "URI", "matcher": { "exact": id } }])
}

/// Which network filter the listener runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// HTTP connection manager + router (HTTP/1.1 and HTTP/2).
    Http,
    /// `tcp_proxy`: opaque bytes to the cluster.
    Tcp,
}

fn tcp_proxy() -> Value {
    json!({
        "name": "envoy.filters.network.tcp_proxy",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
            "stat_prefix": "bench",
            "cluster": "upstream"
        }
    })
}

fn hcm() -> Value {
    json!({
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": "bench",
            "codec_type": "AUTO",
            "route_config": {
                "name": "local",
                "virtual_hosts": [{
                    "name": "all",
                    "domains": ["*"],
                    "routes": [{ "match": { "prefix": "/" }, "route": { "cluster": "upstream" } }]
                }]
            },
            "http_filters": [{
                "name": "envoy.filters.http.router",
                "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" }
            }]
        }
    })
}

/// The bootstrap config for one Envoy listening on `listen` and forwarding to `upstream`.
pub fn bootstrap(
    role: &Role<'_>,
    filter: Filter,
    listen: SocketAddr,
    upstream: SocketAddr,
    admin: SocketAddr,
) -> Value {
    let network = match filter {
        Filter::Http => hcm(),
        Filter::Tcp => tcp_proxy(),
    };
    let mut chain = json!({ "filters": [network] });
    let mut cluster = json!({
        "name": "upstream",
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": "upstream",
            "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": addr(upstream) } }] }]
        }
    });
    match role {
        Role::Plain => {}
        Role::MeshClient(pki) => {
            cluster["transport_socket"] = json!({
                "name": "envoy.transport_sockets.tls",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                    "sni": SERVER_NAME,
                    "common_tls_context": {
                        "tls_certificates": [{
                            "certificate_chain": pem(&pki.client_cert),
                            "private_key": pem(&pki.client_key)
                        }],
                        "validation_context": {
                            "trusted_ca": pem(&pki.ca),
                            "match_typed_subject_alt_names": san_uri(SERVER_ID)
                        }
                    }
                }
            });
        }
        Role::MeshServer(pki) => {
            chain["transport_socket"] = json!({
                "name": "envoy.transport_sockets.tls",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                    "require_client_certificate": true,
                    "common_tls_context": {
                        "tls_certificates": [{
                            "certificate_chain": pem(&pki.server_cert),
                            "private_key": pem(&pki.server_key)
                        }],
                        "validation_context": {
                            "trusted_ca": pem(&pki.ca),
                            "match_typed_subject_alt_names": san_uri(CLIENT_ID)
                        }
                    }
                }
            });
        }
    }
    json!({
        "admin": { "address": addr(admin) },
        "static_resources": {
            "listeners": [{ "name": "bench", "address": addr(listen), "filter_chains": [chain] }],
            "clusters": [cluster]
        }
    })
}

/// The bootstrap as YAML text.
pub fn bootstrap_yaml(
    role: &Role<'_>,
    filter: Filter,
    listen: SocketAddr,
    upstream: SocketAddr,
    admin: SocketAddr,
) -> String {
    serde_yaml::to_string(&bootstrap(role, filter, listen, upstream, admin)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn a(p: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], p))
    }

    fn pki() -> Pki {
        let p = |s: &str| PathBuf::from(format!("/tmp/x/{s}"));
        Pki {
            ca: p("ca.pem"),
            server_cert: p("server.pem"),
            server_key: p("server.key"),
            client_cert: p("client.pem"),
            client_key: p("client.key"),
            server_dir: p("server-identity"),
            client_dir: p("client-identity"),
        }
    }

    #[test]
    fn plain_hop_routes_listener_to_static_cluster() {
        let v = bootstrap(&Role::Plain, Filter::Http, a(1000), a(2000), a(3000));
        let l = &v["static_resources"]["listeners"][0];
        assert_eq!(l["address"]["socket_address"]["port_value"], 1000);
        assert!(l["filter_chains"][0].get("transport_socket").is_none());
        let c = &v["static_resources"]["clusters"][0];
        assert_eq!(c["type"], "STATIC");
        let ep = &c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"];
        assert_eq!(ep["address"]["socket_address"]["port_value"], 2000);
        assert!(c.get("transport_socket").is_none());
        assert_eq!(v["admin"]["address"]["socket_address"]["port_value"], 3000);
        let route = &l["filter_chains"][0]["filters"][0]["typed_config"]["route_config"];
        assert_eq!(
            route["virtual_hosts"][0]["routes"][0]["route"]["cluster"],
            c["name"]
        );
    }

    #[test]
    fn mesh_sides_carry_client_and_server_tls() {
        let pki = pki();
        let c = bootstrap(&Role::MeshClient(&pki), Filter::Http, a(1), a(2), a(3));
        let tls = &c["static_resources"]["clusters"][0]["transport_socket"]["typed_config"];
        assert!(tls["@type"].as_str().unwrap().ends_with("UpstreamTlsContext"));
        assert_eq!(
            tls["common_tls_context"]["tls_certificates"][0]["certificate_chain"]["filename"],
            "/tmp/x/client.pem"
        );
        let s = bootstrap(&Role::MeshServer(&pki), Filter::Http, a(1), a(2), a(3));
        let tls =
            &s["static_resources"]["listeners"][0]["filter_chains"][0]["transport_socket"]["typed_config"];
        assert!(tls["@type"].as_str().unwrap().ends_with("DownstreamTlsContext"));
        assert_eq!(tls["require_client_certificate"], true);
        let yaml = bootstrap_yaml(&Role::MeshServer(&pki), Filter::Http, a(1), a(2), a(3));
        assert!(yaml.contains("require_client_certificate: true"), "{yaml}");
    }

    #[test]
    fn tcp_filter_replaces_http_manager_and_keeps_tls() {
        let pki = pki();
        let s = bootstrap(&Role::MeshServer(&pki), Filter::Tcp, a(1), a(2), a(3));
        let chain = &s["static_resources"]["listeners"][0]["filter_chains"][0];
        assert_eq!(chain["filters"][0]["name"], "envoy.filters.network.tcp_proxy");
        assert_eq!(chain["filters"][0]["typed_config"]["cluster"], "upstream");
        assert!(chain.get("transport_socket").is_some());
        let p = bootstrap(&Role::Plain, Filter::Tcp, a(1), a(2), a(3));
        let f = &p["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0];
        assert_eq!(f["name"], "envoy.filters.network.tcp_proxy");
    }
}
