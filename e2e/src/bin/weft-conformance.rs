//! `weft-conformance`: runs the upstream Gateway API conformance suite against weft on the
//! real test node (`make conformance`, docs/conformance.md), as two runs in one cluster: the
//! mesh profiles (MESH-HTTP, MESH-GRPC) and the gateway profile (GATEWAY-HTTP, GatewayClass
//! `weft`). Starts the control plane and the node (weft's images plus the suite's images
//! imported into containerd), installs weft as `make install` does, sets the MeshConfig to
//! `accessMode: permissive` (the suite creates no TrafficTargets), runs the suite binary
//! per run, writes each report and prints a summary. Everything it started is torn down
//! when it exits, also on failure (the shared harness's exit hook; the suite removes its
//! own namespaces).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use weft_e2e::conformance::{self, Report, Suite, SuiteRun, Tools};
use weft_e2e::shared;

#[derive(Debug, Parser)]
#[command(
    about = "Run the Gateway API conformance suite (mesh and gateway profiles) against weft on the real test node"
)]
struct Cli {
    /// Which runs: `mesh`, `gateway` or `all`.
    #[arg(long, default_value = "all")]
    suite: String,
    /// Reports go here as `weft-<version>-<mesh|gateway>-report.yaml`.
    #[arg(long, default_value = "docs/conformance")]
    report_dir: PathBuf,
    /// The report file of a single run (instead of --report-dir; only with one --suite).
    #[arg(long)]
    report: Option<PathBuf>,
    /// The suite's output (`go test -v`) goes here as `<mesh|gateway>.log`.
    #[arg(long, default_value = "target/conformance")]
    log_dir: PathBuf,
    /// Claim only the profiles' core features.
    #[arg(long)]
    core_only: bool,
    /// Run only this suite test (e.g. MeshBasic, HTTPRouteSimpleSameNamespace).
    #[arg(long)]
    run_test: Option<String>,
    /// Kill each run of the suite after this many minutes.
    #[arg(long, default_value_t = 45)]
    timeout_mins: u64,
    /// Exit non-zero when a test failed (default: only when the harness failed).
    #[arg(long)]
    strict: bool,
}

impl Cli {
    fn suites(&self) -> anyhow::Result<Vec<Suite>> {
        let suites = match self.suite.as_str() {
            "mesh" => vec![Suite::Mesh],
            "gateway" => vec![Suite::Gateway],
            "all" => vec![Suite::Mesh, Suite::Gateway],
            other => bail!("--suite must be mesh, gateway or all, not {other:?}"),
        };
        if self.report.is_some() && suites.len() != 1 {
            bail!("--report names one report: pick one --suite (or use --report-dir)");
        }
        Ok(suites)
    }

    fn report_path(&self, kind: Suite) -> PathBuf {
        self.report.clone().unwrap_or_else(|| {
            self.report_dir.join(format!(
                "weft-{}-{}-report.yaml",
                env!("CARGO_PKG_VERSION"),
                kind.name()
            ))
        })
    }
}

fn main() -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "weft_e2e=info,kube_client::client::builder=off".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let suites = cli.suites()?;
    let tools = Tools::locate()?;
    if !nix_root() {
        bail!("needs root (the test node runs kubelet, containerd and iptables)");
    }
    let began = Instant::now();
    let mut images = vec![tools.echo_image.clone()];
    if suites.contains(&Suite::Gateway) {
        images.extend(tools.gateway_images.iter().cloned());
    }
    eprintln!("==> starting the control plane and the node (importing {images:?})");
    let (cp, node) = shared::node_with_images(images)?;
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
    let result = rt.block_on(run_all(&cli, &suites, &tools, cp));
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

/// Installs weft once and runs each suite; returns whether any suite test failed.
async fn run_all(
    cli: &Cli,
    suites: &[Suite],
    tools: &Tools,
    cp: &'static weft_e2e::ControlPlane,
) -> anyhow::Result<bool> {
    let client = cp.client()?;
    let t = Instant::now();
    conformance::install_weft(&client)
        .await
        .context("installing weft with MeshConfig accessMode: permissive")?;
    eprintln!(
        "==> weft installed in {:.0}s; MeshConfig default: accessMode permissive, mtlsMode strict",
        t.elapsed().as_secs_f64()
    );
    let mut failed = false;
    for kind in suites {
        failed |= run(cli, *kind, tools, cp, &client).await?;
    }
    Ok(failed)
}

/// One run; returns whether any of its tests failed.
async fn run(
    cli: &Cli,
    kind: Suite,
    tools: &Tools,
    cp: &'static weft_e2e::ControlPlane,
    client: &kube::Client,
) -> anyhow::Result<bool> {
    let report_path = std::path::absolute(cli.report_path(kind))?;
    let mut run = SuiteRun::for_suite(
        kind,
        &tools.suite,
        cp.kubeconfig_path(),
        cli.core_only,
        &report_path,
    );
    run.log = std::path::absolute(cli.log_dir.join(format!("{}.log", kind.name())))?;
    if let Some(dir) = run.log.parent() {
        std::fs::create_dir_all(dir)?;
    }
    run.timeout = Duration::from_secs(cli.timeout_mins * 60);
    run.only = cli.run_test.clone();
    eprintln!(
        "==> [{}] running {} {}",
        kind.name(),
        tools.suite.display(),
        run.args().join(" ")
    );
    eprintln!("    output: {}", run.log.display());
    let log_path = run.log.clone();
    let (outcome, seen) = conformance::run_watched(client, kind, run).await;
    let (status, took) = outcome?;
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let report = Report::load(&report_path).ok();
    eprintln!(
        "==> [{}] the suite ran {:.0}s and exited with {status}",
        kind.name(),
        took.as_secs_f64()
    );
    eprintln!("==> suite pods seen (weft, ready):");
    for (pod, (weft, ready)) in &seen {
        eprintln!("    {pod}: weft={weft} ready={ready}");
    }
    let problems = conformance::harness_problems(kind, &seen, report.as_ref(), &log);
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
            "the harness did not run the {} suite properly: {}",
            kind.name(),
            problems.join("; ")
        );
    }
    Ok(report.profiles.iter().any(|p| {
        p.core.result != "success" || p.extended.as_ref().is_some_and(|e| e.status.result != "success")
    }))
}

fn nix_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}
