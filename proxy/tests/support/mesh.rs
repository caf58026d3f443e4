//! Two proxies on loopback joined by mesh mTLS: a client proxy whose outbound
//! listener targets service `test/server` (ClusterIP 198.19.0.30:80), and a
//! server proxy whose inbound listener fronts the app. Each has its own
//! identity directory with certificates from one test CA.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use super::pki::{IdentityDir, TestCa};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::Duration;
use weft_proxy::proxy::inbound::InboundTarget;
use weft_proxy::proxy::outbound::OrigDst;
use weft_proxy::run::{Options, Running, start};

pub const CLIENT_ID: &str = "spiffe://cluster.local/ns/test/sa/client";
pub const SERVER_ID: &str = "spiffe://cluster.local/ns/test/sa/server";
pub const SVC: &str = "198.19.0.30:80";

pub struct Mesh {
    pub ca: TestCa,
    pub client: Running,
    pub server: Running,
    pub client_dir: IdentityDir,
    pub server_dir: IdentityDir,
    pub app: SocketAddr,
}

/// Server-side config: modes, the app port with `protocol`, and `grants`.
pub fn server_config(access: &str, mtls: &str, app: SocketAddr, protocol: &str, grants: Value) -> String {
    json!({
        "schemaVersion": 1,
        "identity": {"namespace": "test", "serviceAccount": "server", "spiffeId": SERVER_ID},
        "mesh": {"trustDomain": "cluster.local", "accessMode": access, "mtlsMode": mtls},
        "inbound": {"ports": [{"port": app.port(), "protocol": protocol}], "grants": grants},
    })
    .to_string()
}

/// Client-side config: `test/server` whose one endpoint is the server proxy,
/// expected to present `identity`.
pub fn client_config(server_inbound: SocketAddr, protocol: &str, identity: &str) -> String {
    json!({
        "schemaVersion": 1,
        "identity": {"namespace": "test", "serviceAccount": "client", "spiffeId": CLIENT_ID},
        "mesh": {"trustDomain": "cluster.local", "accessMode": "permissive", "mtlsMode": "strict"},
        "services": {"test/server": {
            "namespace": "test", "name": "server", "clusterIps": ["198.19.0.30"],
            "ports": [{"port": 80, "protocol": protocol, "endpoints": [
                {"ip": server_inbound.ip().to_string(), "port": server_inbound.port(), "identity": identity}]}],
        }},
    })
    .to_string()
}

async fn proxy(
    outbound: Vec<(SocketAddr, OrigDst)>,
    inbound: Vec<(SocketAddr, InboundTarget)>,
    dir: &IdentityDir,
) -> Running {
    start(Options {
        settings: super::test_settings(),
        outbound,
        inbound,
        admin: Some("127.0.0.1:0".parse().unwrap()),
        identity: Some((dir.path(), Duration::from_millis(20))),
        ..Options::default()
    })
    .await
    .unwrap()
}

impl Mesh {
    /// Starts both proxies; `protocol` is the service/app port protocol.
    pub async fn start(app: SocketAddr, protocol: &str, access: &str, mtls: &str, grants: Value) -> Self {
        let ca = TestCa::new("cluster.local");
        let client_dir = IdentityDir::new(&ca.issue(CLIENT_ID), &ca.cert_pem);
        let server_dir = IdentityDir::new(&ca.issue(SERVER_ID), &ca.cert_pem);
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let server = proxy(vec![], vec![(any, InboundTarget::Fixed(app.port()))], &server_dir).await;
        server
            .store
            .apply_json(&server_config(access, mtls, app, protocol, grants), "test")
            .unwrap();
        let client = proxy(
            vec![(any, OrigDst::Fixed(SVC.parse().unwrap()))],
            vec![],
            &client_dir,
        )
        .await;
        client
            .store
            .apply_json(
                &client_config(server.inbound_addrs[0], protocol, SERVER_ID),
                "test",
            )
            .unwrap();
        Self {
            ca,
            client,
            server,
            client_dir,
            server_dir,
            app,
        }
    }

    pub fn outbound(&self) -> SocketAddr {
        self.client.outbound_addrs[0]
    }

    pub fn inbound(&self) -> SocketAddr {
        self.server.inbound_addrs[0]
    }

    /// Replaces the server's access mode, mTLS mode and grants.
    pub fn set_server(&self, access: &str, mtls: &str, protocol: &str, grants: Value) {
        self.server
            .store
            .apply_json(&server_config(access, mtls, self.app, protocol, grants), "test")
            .unwrap();
    }
}

/// One TrafficTarget grant for the client identity.
pub fn grant(rules: Value) -> Value {
    json!([{"source": "test/tt", "sources": [CLIENT_ID], "rules": rules}])
}
