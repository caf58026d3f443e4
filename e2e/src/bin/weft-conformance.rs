//! `weft-conformance`: runs the upstream Gateway API conformance suite (profiles MESH-HTTP
//! and MESH-GRPC, `make conformance`, docs/conformance.md) against weft on the real test
//! node: starts the control plane and the node (weft's images plus the suite's echo image
//! imported into containerd), installs weft as `make install` does, sets the MeshConfig to
//! `accessMode: permissive` (the suite creates no TrafficTargets), runs the suite binary,
//! writes its report and prints a summary. Everything it started is torn down when it
//! exits, also on failure (the shared harness's exit hook; the suite removes its own
//! namespaces).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use weft_e2e::conformance::{self, Report, SuiteRun, Tools};
use weft_e2e::shared;

#[derive(Debug, Parser)]
#[command(about = "Run the Gateway API mesh conformance suite against weft on the real test node")]
struct Cli {
    /// Where the suite writes its report (YAML).
    #[arg(long)]
    report: PathBuf,
    /// The suite's output (`go test -v`).
    #[arg(long, default_value = "target/conformance/suite.log")]
    log: PathBuf,
    /// Conformance profiles.
    #[arg(long, default_value = conformance::ALL_PROFILES)]
    profiles: String,
    /// Claim only MESH-HTTP's core features (Mesh, HTTPRoute) instead of every mesh feature.
    #[arg(long)]
    core_only: bool,
    /// Run only this suite test (e.g. MeshBasic).
    #[arg(long)]
    run_test: Option<String>,
    /// Kill the suite after this many minutes.
    #[arg(long, default_value_t = 45)]
    timeout_mins: u64,
    /// Exit non-zero when a test failed (default: only when the harness failed).
    #[arg(long)]
    strict: bool,
}

fn main() -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "weft_e2e=info,kube_client::client::builder=off".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let tools = Tools::locate()?;
    if !nix_root() {
        bail!("needs root (the test node runs kubelet, containerd and iptables)");
    }
    let began = Instant::now();
    eprintln!(
        "==> starting the control plane and the node (importing {})",
        tools.echo_ref
    );
    let (cp, node) = shared::node_with_images(vec![tools.echo_image.clone()])?;
    let want = &tools.echo_ref;
    if !node.report().imported.iter().any(|r| r == want) {
        bail!(
            "the node did not import {want} (imported: {:?})",
            node.report().imported
        );
    }
    let node_secs = began.elapsed();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = rt.block_on(run(&cli, &tools, cp));
    eprintln!(
        "==> node up in {:.0}s; total {:.0}s; tearing down",
        node_secs.as_secs_f64(),
        began.elapsed().as_secs_f64()
    );
    // The shared harness's exit hook stops the node and the control plane.
    match result {
        Ok(failed) if failed && cli.strict => std::process::exit(1),
        Ok(_) => Ok(()),
        Err(e) => {
            node.keep_logs();
            Err(e)
        }
    }
}

/// Returns whether any suite test failed.
async fn run(cli: &Cli, tools: &Tools, cp: &'static weft_e2e::ControlPlane) -> anyhow::Result<bool> {
    let client = cp.client()?;
    let t = Instant::now();
    conformance::install_weft(&client)
        .await
        .context("installing weft with MeshConfig accessMode: permissive")?;
    eprintln!(
        "==> weft installed in {:.0}s; MeshConfig default: accessMode permissive, mtlsMode strict",
        t.elapsed().as_secs_f64()
    );

    let features: &[&str] = if cli.core_only {
        conformance::CORE_HTTP_FEATURES
    } else {
        conformance::ALL_FEATURES
    };
    let report_path = std::path::absolute(&cli.report)?;
    let mut run = SuiteRun::new(
        &tools.suite,
        cp.kubeconfig_path(),
        &cli.profiles,
        features,
        &report_path,
    );
    run.log = std::path::absolute(&cli.log)?;
    if let Some(dir) = run.log.parent() {
        std::fs::create_dir_all(dir)?;
    }
    run.timeout = Duration::from_secs(cli.timeout_mins * 60);
    run.only = cli.run_test.clone();
    eprintln!("==> running {} {}", tools.suite.display(), run.args().join(" "));
    eprintln!("    output: {}", run.log.display());
    let log_path = run.log.clone();
    let (outcome, seen) = conformance::run_watched(&client, run).await;
    let (status, took) = outcome?;
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let report = Report::load(&report_path).ok();
    eprintln!(
        "==> the suite ran {:.0}s and exited with {status}",
        took.as_secs_f64()
    );
    eprintln!("==> suite pods seen (injected, ready):");
    for (pod, (injected, ready)) in &seen {
        eprintln!("    {pod}: injected={injected} ready={ready}");
    }
    let problems = conformance::harness_problems(&seen, report.as_ref(), &log);
    let Some(report) = report else {
        bail!(
            "no report at {}; {problems:?}; output in {}",
            report_path.display(),
            log_path.display()
        );
    };
    println!("{}", report.summary());
    println!("report: {}", report_path.display());
    if !problems.is_empty() {
        bail!(
            "the harness did not run the suite properly: {}",
            problems.join("; ")
        );
    }
    let failed = report.profiles.iter().any(|p| {
        p.core.result != "success" || p.extended.as_ref().is_some_and(|e| e.status.result != "success")
    });
    Ok(failed)
}

fn nix_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}
