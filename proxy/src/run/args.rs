//! The flags of `weft-proxy run` and `weft-proxy gateway` (clap), with their
//! parsers; [`super::cli`] turns them into [`super::Options`].

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// Flags of `weft-proxy run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Config file (JSON), re-read when it changes.
    #[arg(long, env = "WEFT_CONFIG")]
    pub config: Option<PathBuf>,
    /// How often the config file is checked, in ms.
    #[arg(long, default_value_t = 1000)]
    pub config_poll_ms: u64,
    /// Service account whose ConfigMap `weft-proxy-<sa>` is watched through the API.
    #[arg(long, env = "WEFT_SERVICE_ACCOUNT")]
    pub service_account: Option<String>,
    /// Namespace of the ConfigMap (default: the token directory's `namespace` file).
    #[arg(long, env = "POD_NAMESPACE")]
    pub namespace: Option<String>,
    /// Projected service-account token; `ca.crt` is read from the same directory.
    #[arg(
        long,
        env = "WEFT_TOKEN_PATH",
        default_value = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    )]
    pub token_path: PathBuf,
    /// API server URL (default: https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT).
    #[arg(long, env = "WEFT_KUBE_API")]
    pub kube_api: Option<String>,
    /// Identity Secret mount (`tls.crt`, `tls.key`, `ca.crt`): enables mTLS.
    #[arg(long, env = "WEFT_IDENTITY_DIR")]
    pub identity_dir: Option<PathBuf>,
    /// Identity endpoint `host:port` of the controller: the sidecar generates its key
    /// in memory and obtains its certificate by CSR (takes precedence over --identity-dir).
    #[arg(long, env = "WEFT_IDENTITY_ENDPOINT")]
    pub identity_endpoint: Option<String>,
    /// Name the identity endpoint's certificate must carry (default: the endpoint host).
    #[arg(long, env = "WEFT_IDENTITY_SERVER_NAME")]
    pub identity_server_name: Option<String>,
    /// Projected ServiceAccount token with audience `weft.dev/identity`, sent with CSRs.
    #[arg(
        long,
        env = "WEFT_IDENTITY_TOKEN",
        default_value = "/var/run/weft/identity-token/token"
    )]
    pub identity_token: PathBuf,
    /// Mesh trust bundle (PEM) used to verify the identity endpoint; a change triggers renewal.
    #[arg(long, env = "WEFT_CA_BUNDLE")]
    pub ca_bundle: Option<PathBuf>,
    /// How often the identity directory (or the CA bundle) is checked for a change, in ms.
    #[arg(long, default_value_t = 1000)]
    pub identity_poll_ms: u64,
    /// JSON map of admin paths to the app's original probes (set by the injector).
    #[arg(long, env = "WEFT_APP_PROBES")]
    pub app_probes: Option<String>,
    /// Address the transparent listeners bind to.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind: IpAddr,
    #[arg(long, default_value_t = 15001)]
    pub outbound_port: u16,
    #[arg(long, default_value_t = 15006)]
    pub inbound_port: u16,
    #[arg(long, default_value_t = 15020)]
    pub admin_port: u16,
    /// Explicit-listener mode: listen here and proxy to --upstream (no iptables).
    #[arg(long, requires = "upstream")]
    pub listen: Option<SocketAddr>,
    /// Upstream for --listen; without a config a one-service config is synthesized.
    #[arg(long, requires = "listen")]
    pub upstream: Option<SocketAddr>,
    /// Extra outbound listener `LISTEN=DEST`: connections count as addressed to DEST.
    #[arg(long, value_parser = parse_map::<SocketAddr>)]
    pub outbound_map: Vec<(SocketAddr, SocketAddr)>,
    /// Extra inbound listener `LISTEN=PORT`: connections go to the app on 127.0.0.1:PORT.
    #[arg(long, value_parser = parse_map::<u16>)]
    pub inbound_map: Vec<(SocketAddr, u16)>,
    /// Also start the transparent :15001/:15006 listeners when explicit ones are given.
    #[arg(long)]
    pub transparent: bool,
    /// Runtime worker threads.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    #[arg(long, default_value_t = 1000)]
    pub connect_timeout_ms: u64,
    /// Time allowed for response headers; 0 = unlimited.
    #[arg(long, default_value_t = 60_000)]
    pub response_timeout_ms: u64,
    #[arg(long, default_value_t = 3600)]
    pub tcp_idle_timeout_s: u64,
    #[arg(long, default_value_t = 300)]
    pub detect_timeout_ms: u64,
    #[arg(long, default_value_t = 64 * 1024)]
    pub max_header_bytes: usize,
    /// JSON access log on stdout.
    #[arg(long)]
    pub access_log: bool,
    /// HTTP/1 upgrade protocols that may become raw tunnels (comma-separated; replaces
    /// the default, `--allow-upgrade=` allows none). Others get 403 (`h2c` is ignored).
    #[arg(
        long,
        env = "WEFT_ALLOW_UPGRADE",
        value_delimiter = ',',
        default_value = "websocket"
    )]
    pub allow_upgrade: Vec<String>,
    /// Forward CONNECT requests (raw tunnels past per-request authorization); otherwise 405.
    #[arg(long, env = "WEFT_ALLOW_CONNECT")]
    pub allow_connect: bool,
    /// Open connections per listener; more are closed at once (counted).
    #[arg(long, default_value_t = 10_000)]
    pub max_connections: usize,
    /// Time a peer has to finish a TLS handshake it started, in ms.
    #[arg(long, default_value_t = 5000)]
    pub tls_handshake_timeout_ms: u64,
    /// An HTTP connection with no request in flight is closed after this long, in s.
    #[arg(long, default_value_t = 3600)]
    pub http_idle_timeout_s: u64,
    /// A response stream that sends nothing for this long is aborted, in s.
    #[arg(long, default_value_t = 300)]
    pub stream_idle_timeout_s: u64,
    /// HTTP/2 keep-alive PING interval on served connections, in s (0 = off).
    #[arg(long, default_value_t = 60)]
    pub h2_keepalive_s: u64,
    /// Most request header fields accepted (more → 431).
    #[arg(long, default_value_t = 100)]
    pub max_headers: usize,
    /// TCP keepalive idle time on accepted sockets, in s (0 = off).
    #[arg(long, default_value_t = 60)]
    pub tcp_keepalive_s: u64,
    /// Seconds to drain in-flight requests after SIGTERM.
    #[arg(long, default_value_t = 25)]
    pub drain_grace_s: u64,
    /// Log as JSON lines.
    #[arg(long)]
    pub log_json: bool,
}

/// Flags of `weft-proxy gateway`: those of `run`, plus where listener
/// certificates come from when not from the API.
#[derive(Debug, Clone, clap::Args)]
pub struct GatewayArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Directory of listener certificates `<name>.crt` / `<name>.key` (PEM),
    /// polled for changes, instead of the TLS Secret through the API.
    #[arg(long, env = "WEFT_GATEWAY_TLS_DIR")]
    pub gateway_tls_dir: Option<PathBuf>,
}

fn parse_map<T: std::str::FromStr>(s: &str) -> Result<(SocketAddr, T), String>
where
    T::Err: std::fmt::Display,
{
    let (l, r) = s.split_once('=').ok_or("expected LISTEN=VALUE")?;
    Ok((
        l.parse().map_err(|e| format!("{l}: {e}"))?,
        r.parse().map_err(|e| format!("{r}: {e}"))?,
    ))
}
