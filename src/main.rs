//! `weft-controller`: operator + admission webhook in one process.
//!
//! Every replica serves health (`--health-port`: `/healthz`, `/readyz`),
//! metrics (`--metrics-port`: `/metrics`) and the injection webhook
//! (`--webhook-port`) and the identity endpoint (`--identity-port`, CSR signing);
//! only the replica holding the leader Lease reconciles.

use anyhow::Context;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use clap::Parser;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::Duration;
use weft_controller::identity;
use weft_controller::operator::{self, Handles, Options, leader::LeaseConfig};
use weft_controller::webhook::{
    self, InjectConfig, certgen::ServingIdentity, certmgr::CertManagerConfig, mesh_config,
    run::WebhookOptions, server::SharedConfig,
};

#[derive(Debug, Parser)]
#[command(
    name = "weft-controller",
    version,
    about = "weft control plane: SMI operator and injection webhook"
)]
struct Args {
    /// Port of `/metrics`.
    #[arg(long, default_value_t = 9090)]
    metrics_port: u16,
    /// Port of `/healthz` and `/readyz`.
    #[arg(long, default_value_t = 8080)]
    health_port: u16,
    /// Port of the admission webhook (HTTPS).
    #[arg(long, default_value_t = 9443)]
    webhook_port: u16,
    /// Port of the webhook's own plain health endpoints (certificate loaded).
    #[arg(long, default_value_t = 8081)]
    webhook_health_port: u16,
    /// Service the API server calls the webhook through (serving-cert DNS names).
    #[arg(long, default_value = "weft-controller")]
    webhook_service: String,
    /// Do not serve the admission webhook.
    #[arg(long)]
    disable_webhook: bool,
    /// Port of the identity endpoint (HTTPS; sidecars send CSRs here).
    #[arg(long, default_value_t = weft_controller::identity::DEFAULT_PORT)]
    identity_port: u16,
    /// Service the sidecars reach the identity endpoint through (serving-cert DNS names).
    #[arg(long, default_value = weft_controller::identity::SERVICE)]
    identity_service: String,
    /// Do not serve the identity endpoint.
    #[arg(long)]
    disable_identity: bool,
    /// Namespace of the controller (CA Secret, leader Lease).
    #[arg(long, env = "POD_NAMESPACE", default_value = "weft-system")]
    namespace: String,
    /// This replica's name (Lease holder, Event reporter); defaults to the hostname.
    #[arg(long, env = "POD_NAME")]
    pod_name: Option<String>,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "weft-controller")]
    lease_name: String,
    /// Lease duration, seconds.
    #[arg(long, default_value_t = 15)]
    lease_duration_secs: u64,
    /// Reconcile without leader election (single replica only).
    #[arg(long)]
    disable_leader_election: bool,
    /// Quiet period after a change before re-rendering, milliseconds.
    #[arg(long, default_value_t = 75)]
    debounce_ms: u64,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
}

fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only on a terminal: container logs (kubectl logs, collectors) stay plain.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn serve(port: u16, app: Router, what: &'static str) -> anyhow::Result<()> {
    let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {what} on {addr}"))?;
    tracing::info!(%addr, what, "listening");
    axum::serve(listener, app)
        .await
        .with_context(|| format!("serving {what}"))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = term => {} }
    tracing::info!("shutting down");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_tracing(args.log_json);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = kube::Client::try_default()
        .await
        .context("building the Kubernetes client")?;
    let instance = args
        .pod_name
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("weft-controller-{}", std::process::id()));

    let handles = Handles::default();
    let mut opts = Options::new(&args.namespace, &instance);
    opts.debounce = Duration::from_millis(args.debounce_ms);
    opts.lease = (!args.disable_leader_election).then(|| {
        let mut l = LeaseConfig::new(&args.namespace, &instance);
        l.name = args.lease_name.clone();
        l.lease_duration = Duration::from_secs(args.lease_duration_secs.max(2));
        l.renew_interval = l.lease_duration / 3;
        l
    });

    let ready = handles.ready.clone();
    let health = Router::new().route("/healthz", get(|| async { "ok" })).route(
        "/readyz",
        get(move || {
            let ready = ready.load(Ordering::SeqCst);
            async move {
                if ready {
                    (StatusCode::OK, "ready")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "caches syncing")
                }
            }
        }),
    );
    let metrics = handles.metrics.clone();
    let metrics_app = Router::new().route(
        "/metrics",
        get(move || {
            let body = metrics.encode();
            async move {
                (
                    [(
                        "content-type",
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    body,
                )
            }
        }),
    );

    let mut servers = tokio::task::JoinSet::new();
    servers.spawn(serve(args.health_port, health, "health"));
    servers.spawn(serve(args.metrics_port, metrics_app, "metrics"));
    // Shutdown fans out to the operator and the webhook.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopping = stop_rx.clone();
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    // Admission webhook: every replica serves it, leader or not.
    if args.disable_webhook {
        tracing::info!("admission webhook disabled by flag");
    } else {
        let shared = SharedConfig::new(InjectConfig::default());
        tokio::spawn(mesh_config::follow(client.clone(), shared.clone()));
        let certs = CertManagerConfig::new(ServingIdentity::for_service(
            &args.webhook_service,
            &args.namespace,
            vec![],
        ));
        let webhook_opts = WebhookOptions {
            https_addr: SocketAddr::from((Ipv4Addr::UNSPECIFIED, args.webhook_port)),
            health_addr: SocketAddr::from((Ipv4Addr::UNSPECIFIED, args.webhook_health_port)),
            certs,
            cert_check_interval: Duration::from_secs(30),
        };
        let client = client.clone();
        let stop = stopped();
        servers.spawn(async move {
            webhook::run::run(client, webhook_opts, shared, stop)
                .await
                .context("admission webhook")
        });
    }

    // Identity endpoint: every replica signs CSRs (no leader needed: the CA is read-only).
    if args.disable_identity {
        tracing::info!("identity endpoint disabled by flag");
    } else {
        let identity_opts = identity::run::IdentityOptions {
            addr: SocketAddr::from((Ipv4Addr::UNSPECIFIED, args.identity_port)),
            namespace: args.namespace.clone(),
            service: args.identity_service.clone(),
        };
        let client = client.clone();
        let stop = stopped();
        servers.spawn(async move {
            identity::run::run(client, identity_opts, stop, None)
                .await
                .context("identity endpoint")
        });
    }

    let op = operator::run(client, opts, handles, stopped());
    tokio::pin!(op);
    let result = tokio::select! {
        () = &mut op => return Ok(()),
        Some(r) = servers.join_next() => match r {
            Ok(Ok(())) if *stopping.borrow() => Ok(()),
            Ok(Ok(())) => Err(anyhow::anyhow!("a server stopped unexpectedly")),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(e).context("server task failed"),
        },
    };
    if *stopping.borrow() {
        // The webhook stops first; let the operator finish too: it gives the leader Lease
        // up on the way out, so another replica takes over at once instead of waiting for
        // the lease to expire.
        if tokio::time::timeout(Duration::from_secs(5), op).await.is_err() {
            tracing::warn!("operator did not stop within 5 s");
        }
    }
    result
}
