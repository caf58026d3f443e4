//! The accept loop shared by the inbound and outbound listeners: one task per
//! connection, each tracked by the drain so shutdown waits for it; at most
//! `max_connections` open per listener (more are closed at once, counted and
//! logged at a bounded rate); TCP keepalive on every accepted socket; stops
//! accepting when draining starts.

use super::Shared;
use crate::log_limit::LogLimit;
use crate::metrics::Kind;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// Accepts on `listener` until draining starts. `handle` gets the connection, the
/// peer address and the listener's own address.
pub async fn accept_loop<F, Fut>(listener: TcpListener, shared: Arc<Shared>, side: &'static str, handle: F)
where
    F: Fn(Arc<Shared>, TcpStream, SocketAddr, Option<SocketAddr>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    accept_loop_on(listener, shared, side, None, handle).await;
}

/// [`accept_loop`] for one of several listeners of a side, told apart in the
/// connection metrics by `port` (gateway listener ports).
pub async fn accept_loop_on<F, Fut>(
    listener: TcpListener,
    shared: Arc<Shared>,
    side: &'static str,
    port: Option<u16>,
    handle: F,
) where
    F: Fn(Arc<Shared>, TcpStream, SocketAddr, Option<SocketAddr>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let local = listener.local_addr().ok();
    let mut drain = shared.drain.watcher();
    let max = shared.settings.max_connections;
    let slots = Arc::new(Semaphore::new(max));
    let port_label = port.map(|p| p.to_string());
    let labels = match &port_label {
        Some(p) => crate::metrics::labels(&[("side", side), ("port", p)]),
        None => crate::metrics::labels(&[("side", side)]),
    };
    let f = &shared.metrics.families;
    let open = f.series(
        "listener_connections_open",
        Kind::Gauge,
        "Connections open on a listener.",
        &labels,
    );
    let rejected = f.series(
        "listener_connections_rejected_total",
        Kind::Counter,
        "Connections closed at accept because the listener was at its connection limit.",
        &labels,
    );
    let reject_log = LogLimit::default();
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
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            rejected.inc();
            if let Some(suppressed) = reject_log.admit() {
                tracing::warn!(side, %peer, limit = max, suppressed,
                    "connection refused: listener at its connection limit");
            }
            drop(stream);
            continue;
        };
        set_keepalive(&stream, shared.settings.tcp_keepalive);
        let guard = shared.drain.track();
        let conn = handle(Arc::clone(&shared), stream, peer, local);
        let open = Arc::clone(&open);
        let slots = Arc::clone(&slots);
        open.set((max - slots.available_permits()) as i64);
        tokio::spawn(async move {
            let _guard = guard;
            conn.await;
            drop(slot);
            open.set((max - slots.available_permits()) as i64);
        });
    }
}

/// Enables TCP keepalive probes after `idle` without traffic (then every 10 s,
/// 6 probes), so dead peers do not hold connections for hours.
pub fn set_keepalive(stream: &TcpStream, idle: Option<Duration>) {
    let Some(idle) = idle else { return };
    let ka = socket2::TcpKeepalive::new()
        .with_time(idle)
        .with_interval(Duration::from_secs(10))
        .with_retries(6);
    if let Err(error) = socket2::SockRef::from(stream).set_tcp_keepalive(&ka) {
        tracing::debug!(%error, "could not enable TCP keepalive");
    }
}
