//! Helpers of the gateway-mode tests: a gateway proxy started in-process with
//! a config file and a certificate directory, readiness and polling.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use super::{get, h1_client, test_settings};
use rustls::pki_types::CertificateDer;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use weft_proxy::gateway::GatewayOptions;
use weft_proxy::gateway::secret::TlsSource;
use weft_proxy::run::{Options, Running, start};

/// The HTTPS listener's hostname in the tests.
pub const SHOP: &str = "shop.example.test";

/// A free loopback port (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Writes a self-signed certificate for `SHOP` as `shop.crt` / `shop.key`; returns its DER.
pub fn write_cert(dir: &Path) -> CertificateDer<'static> {
    let c = rcgen::generate_simple_self_signed(vec![SHOP.to_string()]).unwrap();
    std::fs::write(dir.join("shop.crt"), c.cert.pem()).unwrap();
    std::fs::write(dir.join("shop.key"), c.signing_key.serialize_pem()).unwrap();
    c.cert.der().clone()
}

/// Starts a gateway proxy on loopback following `cfg_path` and the certificates in `tls_dir`.
pub async fn gateway(cfg_path: &Path, tls_dir: &Path) -> Running {
    let opts = Options {
        settings: test_settings(),
        admin: Some("127.0.0.1:0".parse().unwrap()),
        config_file: Some((cfg_path.to_path_buf(), Duration::from_millis(50))),
        gateway: Some(GatewayOptions {
            bind: "127.0.0.1".parse().unwrap(),
            tls: TlsSource::Dir(tls_dir.to_path_buf(), Duration::from_millis(50)),
        }),
        ..Options::default()
    };
    start(opts).await.unwrap()
}

/// The status of the admin `/ready`.
pub async fn ready(admin: SocketAddr) -> u16 {
    get(&h1_client(), admin, "/ready", &[]).await.0
}

/// Polls `f` until it holds (5 s at most).
pub async fn eventually(what: &str, mut f: impl AsyncFnMut() -> bool) {
    for _ in 0..100 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}
