//! The upstream Gateway API conformance suite (sigs.k8s.io/gateway-api/conformance v1.6.3)
//! against weft on the real test node (docs/conformance.md): profile MESH-HTTP with only
//! its core features claimed (Mesh, HTTPRoute), so exactly the core mesh tests run. The
//! suite's own pods (Istio's echo app, image built by `make conformance-tools`) run
//! injected in namespaces labelled `weft.dev/inject=enabled`; the MeshConfig is
//! `accessMode: permissive` (the suite creates no TrafficTargets).
//!
//! Two different failures: the harness's (the suite's pods not injected or not Ready,
//! MeshBasic — plain calls through the sidecars, no route — failing, no report) and the
//! routes' (the report's MESH-HTTP core result is not `success`; its failed tests are
//! listed). Report and suite output: target/conformance/gamma-core.{yaml,log}.
//!
//! Needs root (skips otherwise, saying so), weft's images (`make images`) and the suite
//! (`make conformance-tools`, found through `$WEFT_CONFORMANCE_DIR`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use weft_e2e::conformance::{self, Report, SuiteRun, Tools};
use weft_e2e::shared;

fn root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

#[test]
fn mesh_http_core_conformance() {
    let tools = Tools::locate().unwrap_or_else(|e| panic!("{e}"));
    if !root() {
        eprintln!("SKIPPED mesh_http_core_conformance: needs root (the real test node)");
        return;
    }
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "weft_e2e=info".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
    let (cp, node) = shared::node_with_images(vec![tools.echo_image.clone()]).unwrap();
    assert!(
        node.report().imported.contains(&tools.echo_ref),
        "the node did not import {} (imported {:?})",
        tools.echo_ref,
        node.report().imported
    );
    let out_dir = weft_e2e::apply::repo_root().join("target/conformance");
    std::fs::create_dir_all(&out_dir).unwrap();
    let report_path = out_dir.join("gamma-core.yaml");
    let mut run = SuiteRun::new(
        &tools.suite,
        cp.kubeconfig_path(),
        "MESH-HTTP",
        conformance::CORE_HTTP_FEATURES,
        &report_path,
    );
    run.timeout = Duration::from_secs(30 * 60);
    let log_path = run.log.clone();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (outcome, seen) = rt.block_on(async {
        let client = cp.client().unwrap();
        conformance::install_weft(&client).await.unwrap();
        conformance::run_watched(&client, conformance::Suite::Mesh, run.clone()).await
    });
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let (status, took) = outcome.unwrap_or_else(|e| {
        node.keep_logs();
        panic!("{e}")
    });
    eprintln!(
        "the suite ran {:.0}s, exit {status}; output in {}",
        took.as_secs_f64(),
        log_path.display()
    );
    let report = Report::load(&report_path).ok();
    let problems = conformance::harness_problems(conformance::Suite::Mesh, &seen, report.as_ref(), &log);
    assert!(
        problems.is_empty(),
        "HARNESS failure (not a route failure): {}; suite output in {}",
        problems.join("; "),
        log_path.display()
    );
    let report = report.unwrap();
    eprintln!("{}", report.summary());
    let core = &report
        .profile("MESH-HTTP")
        .expect("the report has a MESH-HTTP profile")
        .core;
    assert_eq!(
        core.result,
        "success",
        "MESH-HTTP core conformance: {} (passed {}, failed {}, skipped {}); failed tests: {}; \
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
