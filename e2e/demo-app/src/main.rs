//! `weft-demo-app`: the small app e2e pods and the demo run (see the library).
//!
//! `weft-demo-app [--http-port 8080] [--echo-port 9000] [--fail-rate 0.3]` serves until
//! SIGTERM/SIGINT; `weft-demo-app --exit-code 3 --message "boom"` prints the message to
//! stderr and exits with that code (a failing — or, with 0, succeeding — init container).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::Context;
use clap::Parser;
use weft_demo_app::Identity;
use weft_demo_app::server::{Config, run};

#[derive(Debug, Parser)]
#[command(
    name = "weft-demo-app",
    about = "weft's demo/test app: HTTP identity server and TCP echo"
)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "LISTEN_ADDRESS", default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
    listen: IpAddr,
    /// HTTP port (0 disables HTTP).
    #[arg(long, env = "HTTP_PORT", default_value_t = 8080)]
    http_port: u16,
    /// TCP echo port (unset = no echo server).
    #[arg(long, env = "ECHO_PORT")]
    echo_port: Option<u16>,
    /// Fraction of requests answered with 500 (0.0–1.0; `/healthz` never fails).
    #[arg(long, env = "FAIL_RATE", default_value_t = 0.0)]
    fail_rate: f64,
    /// Milliseconds every request but `/healthz` waits before it is answered (at most 60,000).
    #[arg(long, env = "DELAY_MS", default_value_t = 0)]
    delay_ms: u64,
    /// Service name reported.
    #[arg(long, env = "SERVICE", default_value = "demo")]
    service: String,
    /// Version reported.
    #[arg(long = "app-version", env = "VERSION", default_value = "v1")]
    app_version: String,
    /// Pod name reported.
    #[arg(long, env = "POD_NAME", default_value = "")]
    pod: String,
    /// Exit immediately with this code instead of serving.
    #[arg(long)]
    exit_code: Option<i32>,
    /// Message printed to stderr in `--exit-code` mode.
    #[arg(long, default_value = "")]
    message: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(code) = args.exit_code {
        if !args.message.is_empty() {
            eprintln!("{}", args.message);
        }
        std::process::exit(code);
    }
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.fail_rate),
        "--fail-rate must be within 0.0..=1.0"
    );
    anyhow::ensure!(
        std::time::Duration::from_millis(args.delay_ms) <= weft_demo_app::MAX_DELAY,
        "--delay-ms must be at most 60000"
    );
    let config = Config {
        identity: Identity {
            service: args.service,
            version: args.app_version,
            pod: args.pod,
        },
        http: (args.http_port != 0).then_some(SocketAddr::new(args.listen, args.http_port)),
        echo: args.echo_port.map(|p| SocketAddr::new(args.listen, p)),
        fail_rate: args.fail_rate,
        delay: std::time::Duration::from_millis(args.delay_ms),
    };
    anyhow::ensure!(config.http.is_some() || config.echo.is_some(), "nothing to serve");
    run(config, shutdown_signal()).await.context("serving")
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("shutting down");
}
