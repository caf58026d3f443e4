//! The accept loop shared by the inbound and outbound listeners: one task per
//! connection, each tracked by the drain so shutdown waits for it; stops accepting
//! when draining starts.

use super::Shared;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};

/// Accepts on `listener` until draining starts. `handle` gets the connection, the
/// peer address and the listener's own address.
pub async fn accept_loop<F, Fut>(listener: TcpListener, shared: Arc<Shared>, side: &'static str, handle: F)
where
    F: Fn(Arc<Shared>, TcpStream, SocketAddr, Option<SocketAddr>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let local = listener.local_addr().ok();
    let mut drain = shared.drain.watcher();
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(error) => {
                    tracing::warn!(%error, side, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = crate::drain::Drain::started(&mut drain) => return,
        };
        let guard = shared.drain.track();
        let conn = handle(Arc::clone(&shared), stream, peer, local);
        tokio::spawn(async move {
            let _guard = guard;
            conn.await;
        });
    }
}
