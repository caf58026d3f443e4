//! Exposes the API server to pods: a TCP relay on the bridge address (same port as the API
//! server) to the API server's own (loopback) address, so in-cluster clients reach it via
//! the `kubernetes` Service. Skipped when the API server already listens there itself.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Starts the relay; returns the address pods use and the relay task (if one was needed).
pub async fn start(
    gateway: Ipv4Addr,
    api_server: SocketAddr,
) -> (Option<SocketAddrV4>, Option<JoinHandle<()>>) {
    let public = SocketAddrV4::new(gateway, api_server.port());
    match TcpListener::bind(public).await {
        Ok(listener) => {
            tracing::info!(listen = %public, upstream = %api_server, "relaying the API server to pods");
            (Some(public), Some(tokio::spawn(serve(listener, api_server))))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            tracing::info!(addr = %public, "API server already reachable on the bridge address");
            (Some(public), None)
        }
        Err(e) => {
            tracing::warn!(error = %e, addr = %public, "cannot relay the API server to pods");
            (None, None)
        }
    }
}

async fn serve(listener: TcpListener, upstream: SocketAddr) {
    loop {
        let Ok((mut down, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            if let Ok(mut up) = TcpStream::connect(upstream).await {
                let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
            }
        });
    }
}
