//! Serving HTTP on an accepted (and detected) connection with hyper, and the
//! per-request handlers for both directions. Draining turns into hyper's
//! graceful shutdown (HTTP/1: close after the in-flight response; HTTP/2: GOAWAY).

use super::access_log::Entry;
use super::activity::{Activity, Served};
use super::body::Body;
use super::errors::ProxyError;
use super::forward::{self, Call};
use super::hooks::Peer;
use super::{Proto, Shared};
use crate::endpoint::Endpoint;
use crate::routing::InboundPort;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite};

/// Which side of the proxy a connection is on.
#[derive(Debug)]
pub enum Side {
    /// From the local app to `dst` (original destination).
    Outbound { dst: SocketAddr },
    /// From a peer to the local app on `port`.
    Inbound {
        port: u16,
        app: Arc<Endpoint>,
        info: Arc<InboundPort>,
        peer: Peer,
    },
    /// From a client to a gateway listener `port` (`tls`: an `Https` port).
    Gateway { port: u16, tls: bool },
}

/// One downstream connection.
#[derive(Debug)]
pub struct ConnCtx {
    pub shared: Arc<Shared>,
    pub side: Side,
    pub peer: SocketAddr,
    pub proto: Proto,
}

/// Runs a hyper connection until it ends; draining or the connection idle
/// timeout turn into a graceful shutdown (HTTP/1: close after the in-flight
/// response; HTTP/2: GOAWAY, then the in-flight streams finish).
macro_rules! drive {
    ($conn:expr, $drain:ident, $idle:ident, $ctx:ident) => {{
        let mut conn = std::pin::pin!($conn);
        let idle = $idle;
        tokio::pin!(idle);
        tokio::select! {
            r = conn.as_mut() => r,
            () = crate::drain::Drain::started(&mut $drain) => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
            () = &mut idle => {
                tracing::debug!(peer = %$ctx.peer, "closing idle downstream connection");
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        }
    }};
}

/// Serves HTTP on `io` until the peer closes, an error, drain completes or the
/// connection has been idle for the idle timeout.
pub async fn serve<I>(ctx: Arc<ConnCtx>, io: I)
where
    I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let mut drain = ctx.shared.drain.watcher();
    let settings = &ctx.shared.settings;
    let activity = Arc::new(Activity::default());
    let svc_ctx = Arc::clone(&ctx);
    let svc_activity = Arc::clone(&activity);
    let stream_idle = settings.stream_idle_timeout;
    let svc = service_fn(move |req| {
        let guard = svc_activity.start();
        let ctx = Arc::clone(&svc_ctx);
        async move {
            let resp = handle(ctx, req).await?;
            Ok::<_, Infallible>(resp.map(|b| Served::new(b, guard, stream_idle)))
        }
    });
    let idle = activity.idle_expired(settings.http_idle_timeout);
    let result = match ctx.proto {
        Proto::Http1 => {
            let mut b = hyper::server::conn::http1::Builder::new();
            b.timer(TokioTimer::new())
                .header_read_timeout(settings.header_read_timeout)
                .max_header_size(settings.max_header_bytes)
                .max_headers(settings.max_headers);
            let conn = b.serve_connection(TokioIo::new(io), svc).with_upgrades();
            drive!(conn, drain, idle, ctx)
        }
        Proto::Http2 => {
            let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
            b.timer(TokioTimer::new())
                .max_header_list_size(settings.max_header_bytes as u32);
            if let Some((interval, timeout)) = settings.h2_keepalive {
                b.keep_alive_interval(interval).keep_alive_timeout(timeout);
            }
            let conn = b.serve_connection(TokioIo::new(io), svc);
            drive!(conn, drain, idle, ctx)
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, peer = %ctx.peer, "downstream connection ended with an error");
    }
}

async fn handle(ctx: Arc<ConnCtx>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let start = Instant::now();
    if req.headers().len() > ctx.shared.settings.max_headers {
        // HTTP/1 heads are capped by hyper (`max_headers`); HTTP/2 ones here.
        return Ok(ProxyError::TooManyHeaders.response(None));
    }
    let mut req = req.map(Body::Incoming);
    let log = ctx.shared.settings.access_log.then(|| Entry::new(&req));
    let direction = match ctx.side {
        Side::Outbound { .. } | Side::Gateway { .. } => "outbound",
        Side::Inbound { .. } => "inbound",
    };
    if let Some(refused) = super::tunnel::screen(&ctx.shared, direction, &mut req) {
        return Ok(refused);
    }
    let (resp, direction, target) = match &ctx.side {
        Side::Outbound { dst } => (
            super::outbound_http::handle(&ctx.shared, *dst, ctx.proto, ctx.peer, start, req).await,
            "outbound",
            dst.to_string(),
        ),
        Side::Inbound {
            port,
            app,
            info,
            peer,
        } => (
            inbound(&ctx, *port, app, info, peer, start, req).await,
            "inbound",
            app.addr.to_string(),
        ),
        Side::Gateway { port, tls } => (
            crate::gateway::http::handle(&ctx.shared, *port, *tls, ctx.proto, ctx.peer, start, req).await,
            "gateway",
            format!("listener:{port}"),
        ),
    };
    if let Some(entry) = log {
        entry.emit(&resp, direction, ctx.peer, &target, start.elapsed());
    }
    Ok(resp)
}

async fn inbound(
    ctx: &ConnCtx,
    port: u16,
    app: &Arc<Endpoint>,
    info: &InboundPort,
    peer: &Peer,
    start: Instant,
    req: Request<Body>,
) -> Response<Body> {
    let metrics = &info.http_metrics;
    metrics.request();
    let (mut parts, body) = req.into_parts();
    // Path rules see, and the app receives, the normalized path (issue 14 item 3).
    let bad_path = ctx
        .shared
        .store
        .load()
        .is_some_and(|s| s.authz.normalizes_paths())
        && crate::routing::path::normalize_uri(&mut parts.uri).is_err();
    if !ctx.shared.inbound_security.allow_http(peer, port, &parts) {
        metrics.latency(start.elapsed());
        let e = if bad_path {
            ProxyError::BadPath
        } else {
            ProxyError::Forbidden
        };
        return e.response(Some(metrics));
    }
    let settings = &ctx.shared.settings;
    let call = Call {
        proto: ctx.proto,
        metrics,
        connector: &*ctx.shared.app_connector,
        connect_timeout: settings.connect_timeout,
        response_timeout: settings.response_timeout,
        tunnel_idle: settings.tcp_idle_timeout,
        max_requests_per_connection: None,
        start,
        drain: &ctx.shared.drain,
    };
    let result = forward::send(&call, app, Request::from_parts(parts, body)).await;
    metrics.latency(start.elapsed());
    match result {
        Ok(resp) => resp,
        Err(e) => e.response(Some(metrics)),
    }
}
