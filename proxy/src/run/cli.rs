//! `weft-proxy run` and `weft-proxy gateway`: options from the flags
//! ([`super::args`]), logging, runtime and signal handling.

pub use super::args::{GatewayArgs, RunArgs};
use super::{Options, start};
use crate::conf::kube::ConfigMapRef;
use crate::conf::kube_http::{ApiEndpoint, KubeHttp};
use crate::gateway::GatewayOptions;
use crate::gateway::secret::TlsSource;
use crate::probes::AppProbes;
use crate::proxy::Settings;
use crate::proxy::inbound::InboundTarget;
use crate::proxy::outbound::OrigDst;
use crate::proxy::tunnel::TunnelPolicy;
use crate::tls::csr::CsrClient;
use anyhow::{Context, bail};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use weft_proxy_config::{
    AccessMode, Endpoint, Identity, MeshSettings, MtlsMode, Protocol, ProxyConfig, SCHEMA_VERSION, Service,
    ServicePort,
};

/// Which proxy a command starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The sidecar: transparent listeners.
    Sidecar,
    /// The ingress gateway: the config's listener ports, no transparent listeners.
    Gateway,
}

/// How long a served HTTP/2 connection may leave a keep-alive PING unanswered.
const H2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// A one-service config for explicit-listener mode: `upstream` is both the
/// service address and its only endpoint.
pub fn explicit_config(upstream: SocketAddr) -> ProxyConfig {
    let service = Service {
        namespace: "weft-explicit".into(),
        name: "upstream".into(),
        cluster_ips: vec![upstream.ip()],
        ports: vec![ServicePort {
            port: upstream.port(),
            name: None,
            protocol: Protocol::Detect,
            load_balancer: None,
            endpoints: vec![Endpoint {
                ip: upstream.ip(),
                port: upstream.port(),
                ready: true,
                zone: None,
                identity: None,
                pod: None,
            }],
        }],
        load_balancer: Default::default(),
        split: None,
        retry: None,
        circuit_breaker: None,
        faults: Vec::new(),
        mirrors: Vec::new(),
        routes: Vec::new(),
    };
    ProxyConfig {
        schema_version: SCHEMA_VERSION,
        identity: Identity {
            namespace: "weft-explicit".into(),
            service_account: "proxy".into(),
            spiffe_id: "spiffe://cluster.local/ns/weft-explicit/sa/proxy".into(),
        },
        mesh: MeshSettings {
            trust_domain: "cluster.local".into(),
            access_mode: AccessMode::Permissive,
            mtls_mode: MtlsMode::Permissive,
        },
        services: [("weft-explicit/upstream".to_string(), service)].into(),
        inbound: Default::default(),
        catalog: None,
        retries: Default::default(),
        faults: Default::default(),
        routes: Default::default(),
        gateway: None,
    }
}

fn kube_source(args: &RunArgs) -> anyhow::Result<Option<(KubeHttp, ConfigMapRef)>> {
    let Some(sa) = &args.service_account else {
        return Ok(None);
    };
    let base = match &args.kube_api {
        Some(u) => u.clone(),
        None => match (
            std::env::var("KUBERNETES_SERVICE_HOST"),
            std::env::var("KUBERNETES_SERVICE_PORT"),
        ) {
            (Ok(h), Ok(p)) if h.contains(':') => format!("https://[{h}]:{p}"),
            (Ok(h), Ok(p)) => format!("https://{h}:{p}"),
            _ => bail!("--service-account needs --kube-api or KUBERNETES_SERVICE_HOST/PORT"),
        },
    };
    let dir = args.token_path.parent().map(PathBuf::from).unwrap_or_default();
    let namespace = match &args.namespace {
        Some(ns) => ns.clone(),
        None => std::fs::read_to_string(dir.join("namespace"))
            .context("no --namespace and no namespace file next to the token")?
            .trim()
            .to_string(),
    };
    let api = ApiEndpoint {
        base: base.parse().context("API server URL")?,
        token_path: args.token_path.clone(),
        ca_path: dir.join("ca.crt"),
    };
    let http = KubeHttp::new(api)?;
    Ok(Some((
        http,
        ConfigMapRef {
            namespace,
            name: format!("weft-proxy-{sa}"),
        },
    )))
}

fn options(args: &RunArgs) -> anyhow::Result<Options> {
    options_for(args, Mode::Sidecar)
}

/// The options of `weft-proxy gateway`.
fn gateway_options(args: &GatewayArgs) -> anyhow::Result<Options> {
    let mut opts = options_for(&args.run, Mode::Gateway)?;
    let tls = match (&args.gateway_tls_dir, &opts.kube) {
        (Some(dir), _) => TlsSource::Dir(
            dir.clone(),
            Duration::from_millis(args.run.config_poll_ms.max(10)),
        ),
        (None, Some((http, cm))) => TlsSource::Api {
            http: http.clone(),
            namespace: cm.namespace.clone(),
        },
        (None, None) => TlsSource::None,
    };
    opts.gateway = Some(GatewayOptions {
        bind: args.run.bind,
        tls,
    });
    Ok(opts)
}

fn options_for(args: &RunArgs, mode: Mode) -> anyhow::Result<Options> {
    let settings = Settings {
        connect_timeout: Duration::from_millis(args.connect_timeout_ms),
        response_timeout: (args.response_timeout_ms > 0)
            .then(|| Duration::from_millis(args.response_timeout_ms)),
        tcp_idle_timeout: Duration::from_secs(args.tcp_idle_timeout_s),
        detect_timeout: Duration::from_millis(args.detect_timeout_ms),
        header_read_timeout: Duration::from_secs(30),
        max_header_bytes: args.max_header_bytes,
        access_log: args.access_log,
        tunnels: TunnelPolicy {
            upgrades: args
                .allow_upgrade
                .iter()
                .filter(|p| !p.is_empty())
                .cloned()
                .collect(),
            connect: args.allow_connect,
        },
        max_connections: args.max_connections,
        tls_handshake_timeout: Duration::from_millis(args.tls_handshake_timeout_ms),
        http_idle_timeout: Duration::from_secs(args.http_idle_timeout_s),
        stream_idle_timeout: Duration::from_secs(args.stream_idle_timeout_s),
        h2_keepalive: (args.h2_keepalive_s > 0)
            .then(|| (Duration::from_secs(args.h2_keepalive_s), H2_KEEPALIVE_TIMEOUT)),
        max_headers: args.max_headers,
        tcp_keepalive: (args.tcp_keepalive_s > 0).then(|| Duration::from_secs(args.tcp_keepalive_s)),
    };
    let mut opts = Options {
        settings,
        ..Options::default()
    };
    let explicit = args.listen.is_some() || !args.outbound_map.is_empty() || !args.inbound_map.is_empty();
    if mode == Mode::Sidecar && (!explicit || args.transparent) {
        opts.outbound
            .push((SocketAddr::new(args.bind, args.outbound_port), OrigDst::Kernel));
        opts.inbound.push((
            SocketAddr::new(args.bind, args.inbound_port),
            InboundTarget::Kernel,
        ));
    }
    if let (Some(listen), Some(upstream)) = (args.listen, args.upstream) {
        opts.outbound.push((listen, OrigDst::Fixed(upstream)));
    }
    opts.outbound
        .extend(args.outbound_map.iter().map(|(l, d)| (*l, OrigDst::Fixed(*d))));
    opts.inbound.extend(
        args.inbound_map
            .iter()
            .map(|(l, p)| (*l, InboundTarget::Fixed(*p))),
    );
    opts.admin = Some(SocketAddr::new(args.bind, args.admin_port));
    opts.config_file = args
        .config
        .clone()
        .map(|p| (p, Duration::from_millis(args.config_poll_ms.max(10))));
    opts.kube = kube_source(args)?;
    if let Some(text) = &args.app_probes {
        opts.app_probes = AppProbes::from_json(text).context("WEFT_APP_PROBES")?;
    }
    opts.identity_csr = args.identity_endpoint.as_ref().map(|ep| {
        let mut c = CsrClient::new(ep, args.identity_token.clone(), args.ca_bundle.clone());
        if let Some(name) = &args.identity_server_name {
            c = c.with_server_name(name);
        }
        (c, Duration::from_millis(args.identity_poll_ms.max(10)))
    });
    opts.identity = args
        .identity_dir
        .clone()
        .map(|d| (d, Duration::from_millis(args.identity_poll_ms.max(10))));
    if opts.config_file.is_none() && opts.kube.is_none() {
        match args.upstream {
            Some(up) => opts.initial = Some(explicit_config(up)),
            None => bail!("no config source: give --config, --service-account, or --listen/--upstream"),
        }
    }
    Ok(opts)
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only on a terminal: container logs (kubectl logs, collectors) stay plain.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

async fn wait_for_signal() -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}

/// Runs the sidecar until SIGTERM/SIGINT, then drains.
pub fn run(args: RunArgs) -> anyhow::Result<()> {
    init_logging(args.log_json);
    let opts = options(&args)?;
    serve(&args, opts)
}

/// Runs the ingress gateway until SIGTERM/SIGINT, then drains.
pub fn gateway(args: GatewayArgs) -> anyhow::Result<()> {
    init_logging(args.run.log_json);
    let opts = gateway_options(&args)?;
    serve(&args.run, opts)
}

fn serve(args: &RunArgs, opts: Options) -> anyhow::Result<()> {
    let workers = args.workers;
    let grace = args.drain_grace_s;
    let runtime = if workers <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()?
    };
    runtime.block_on(async move {
        let running = start(opts).await.context("starting listeners")?;
        tracing::info!(outbound = ?running.outbound_addrs, inbound = ?running.inbound_addrs,
            admin = ?running.admin_addr, workers, gateway = running.gateway.is_some(), "weft-proxy running");
        let sig = wait_for_signal().await?;
        tracing::info!(signal = sig, grace_s = grace, "draining");
        let left = running.shutdown(Duration::from_secs(grace)).await;
        tracing::info!(open_connections = left, "stopped");
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    fn tunnels(args: &[&str]) -> TunnelPolicy {
        let mut argv = vec![
            "weft-proxy",
            "--listen",
            "127.0.0.1:1",
            "--upstream",
            "127.0.0.1:2",
        ];
        argv.extend_from_slice(args);
        options(&Cli::parse_from(argv).run).unwrap().settings.tunnels
    }

    #[derive(Debug, Parser)]
    struct GwCli {
        #[command(flatten)]
        gateway: GatewayArgs,
    }

    #[test]
    fn gateway_mode_binds_no_transparent_listeners() {
        let argv = [
            "weft-proxy",
            "--config",
            "/tmp/c.json",
            "--gateway-tls-dir",
            "/tmp/tls",
        ];
        let opts = gateway_options(&GwCli::parse_from(argv).gateway).unwrap();
        assert!(opts.outbound.is_empty() && opts.inbound.is_empty());
        assert!(opts.admin.is_some());
        let gw = opts.gateway.unwrap();
        assert!(matches!(gw.tls, TlsSource::Dir(ref d, _) if d.as_os_str() == "/tmp/tls"));
        let sidecar = options(&Cli::parse_from(["weft-proxy", "--config", "/tmp/c.json"]).run).unwrap();
        assert_eq!((sidecar.outbound.len(), sidecar.inbound.len()), (1, 1));
        assert!(sidecar.gateway.is_none());
    }

    #[test]
    fn tunnel_flags() {
        assert_eq!(tunnels(&[]), TunnelPolicy::default());
        assert_eq!(
            tunnels(&["--allow-upgrade=websocket,echo", "--allow-connect"]),
            TunnelPolicy {
                upgrades: vec!["websocket".into(), "echo".into()],
                connect: true
            }
        );
        assert_eq!(
            tunnels(&["--allow-upgrade="]),
            TunnelPolicy {
                upgrades: vec![],
                connect: false
            }
        );
    }
}
