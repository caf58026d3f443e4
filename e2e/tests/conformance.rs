//! The upstream Gateway API conformance suite (sigs.k8s.io/gateway-api/conformance v1.6.3)
//! against weft on the real test node (docs/conformance.md), core features only, in one
//! test (one node per machine): first profile MESH-HTTP (GAMMA: routes through the
//! sidecars; the suite's echo pods, image built by `make conformance-tools`, run injected
//! in namespaces labelled `weft.dev/inject=enabled`), then profiles GATEWAY-HTTP and
//! GATEWAY-GRPC against weft's ingress gateway (GatewayClass `weft`; the base manifests'
//! backends are meshed, so the gateway reaches them over mTLS). The MeshConfig is
//! `accessMode: permissive` (the suite creates no TrafficTargets).
//!
//! Two different failures: the harness's (the suite's pods not injected or not Ready,
//! MeshBasic — plain calls through the sidecars, no route — failing, no gateway pod Ready,
//! no report) and the routes' (a profile's core result is not `success`; its failed tests
//! are listed). Reports and suite output: target/conformance/{gamma,gateway}-core.{yaml,log}.
//!
//! Needs root (skips otherwise, saying so), weft's images (`make images`) and the suite
//! (`make conformance-tools`, found through `$WEFT_CONFORMANCE_DIR`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use weft_e2e::conformance::{self, Report, Suite, SuiteRun, Tools};
use weft_e2e::shared;
use weft_e2e::worker::WorkerNode;

fn root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// Runs one suite invocation and asserts a clean harness and `success` for the core of
/// every profile in `profiles`.
async fn run_core(client: &kube::Client, node: &WorkerNode, kind: Suite, run: SuiteRun, profiles: &[&str]) {
    let (log_path, report_path) = (run.log.clone(), run.report.clone());
    let (outcome, seen) = conformance::run_watched(client, kind, run).await;
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let (status, took) = outcome.unwrap_or_else(|e| {
        node.keep_logs();
        panic!("{e}")
    });
    eprintln!(
        "[{}] the suite ran {:.0}s, exit {status}; output in {}",
        kind.name(),
        took.as_secs_f64(),
        log_path.display()
    );
    let report = Report::load(&report_path).ok();
    let problems = conformance::harness_problems(kind, &seen, report.as_ref(), &log);
    assert!(
        problems.is_empty(),
        "[{}] HARNESS failure (not a route failure): {}; suite output in {}",
        kind.name(),
        problems.join("; "),
        log_path.display()
    );
    let report = report.unwrap();
    eprintln!("{}", report.summary());
    for name in profiles {
        let core = &report
            .profile(name)
            .unwrap_or_else(|| panic!("the report has a {name} profile"))
            .core;
        assert_eq!(
            core.result,
            "success",
            "{name} core conformance: {} (passed {}, failed {}, skipped {}); failed tests: {}; \
             report {}, suite output {}",
            core.result,
            core.statistics.passed,
            core.statistics.failed,
            core.statistics.skipped,
            core.failed_tests.join(", "),
            report_path.display(),
            log_path.display()
        );
    }
}

#[test]
fn mesh_and_gateway_core_conformance() {
    let tools = Tools::locate().unwrap_or_else(|e| panic!("{e}"));
    if !root() {
        eprintln!("SKIPPED mesh_and_gateway_core_conformance: needs root (the real test node)");
        return;
    }
    shared::init_test_logging();
    let mut images = vec![tools.echo_image.clone()];
    images.extend(tools.gateway_images.iter().cloned());
    let (cp, node) = shared::node_with_images(images).unwrap();
    assert!(
        node.report().imported.contains(&tools.echo_ref),
        "the node did not import {} (imported {:?})",
        tools.echo_ref,
        node.report().imported
    );
    let out_dir = weft_e2e::apply::repo_root().join("target/conformance");
    std::fs::create_dir_all(&out_dir).unwrap();
    let kubeconfig: &Path = cp.kubeconfig_path();
    let mut mesh = SuiteRun::new(
        &tools.suite,
        kubeconfig,
        "MESH-HTTP",
        conformance::CORE_HTTP_FEATURES,
        &out_dir.join("gamma-core.yaml"),
    );
    mesh.timeout = Duration::from_secs(30 * 60);
    let mut gateway = SuiteRun::for_suite(
        Suite::Gateway,
        &tools.suite,
        kubeconfig,
        true,
        &out_dir.join("gateway-core.yaml"),
    );
    gateway.timeout = Duration::from_secs(30 * 60);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = cp.client().unwrap();
        conformance::install_weft(&client).await.unwrap();
        run_core(&client, node, Suite::Mesh, mesh, &["MESH-HTTP"]).await;
        run_core(
            &client,
            node,
            Suite::Gateway,
            gateway,
            &["GATEWAY-HTTP", "GATEWAY-GRPC"],
        )
        .await;
    });
}
