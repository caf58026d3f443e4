//! The upstream Gateway API conformance suite (`sigs.k8s.io/gateway-api/conformance`,
//! profiles MESH-HTTP and MESH-GRPC) run against weft on the real test node
//! (docs/conformance.md): where `make conformance-tools` put the suite binary and the echo
//! image, the suite's flags, running it bounded in time, and reading its report
//! ([`report`]).

mod report;
pub use report::*;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Environment variable naming the conformance tools' cache entry (`make` exports it).
pub const DIR_ENV: &str = "WEFT_CONFORMANCE_DIR";

/// The label the suite puts on the namespaces it creates so weft injects their pods.
pub const NAMESPACE_LABELS: &str = "weft.dev/inject=enabled";

/// The MESH-HTTP and MESH-GRPC profiles.
pub const ALL_PROFILES: &str = "MESH-HTTP,MESH-GRPC";

/// The mesh features weft claims: the profiles' core features (Mesh, HTTPRoute, GRPCRoute),
/// every `MeshExtendedFeatures` entry of `pkg/features/mesh.go`, and the HTTPRoute extended
/// features the tests in `conformance/tests/mesh/` also require.
pub const ALL_FEATURES: &[&str] = &[
    "Mesh",
    "HTTPRoute",
    "GRPCRoute",
    "MeshClusterIPMatching",
    "MeshConsumerRoute",
    "MeshHTTPRouteRewritePath",
    "MeshHTTPRouteSchemeRedirect",
    "MeshHTTPRouteRedirectPort",
    "MeshHTTPRouteRedirectPath",
    "MeshHTTPRouteBackendRequestHeaderModification",
    "MeshHTTPRouteQueryParamMatching",
    "MeshHTTPRouteNamedRouteRule",
    "HTTPRouteResponseHeaderModification",
    "HTTPRouteParentRefPort",
    "HTTPRoute303RedirectStatusCode",
    "HTTPRoute307RedirectStatusCode",
    "HTTPRoute308RedirectStatusCode",
];

/// MESH-HTTP's core features only: exactly the profile's core tests run.
pub const CORE_HTTP_FEATURES: &[&str] = &["Mesh", "HTTPRoute"];

/// Why the tools or a run failed.
#[derive(Debug, thiserror::Error)]
pub enum ConformanceError {
    /// `make conformance-tools` has not run (or `WEFT_CONFORMANCE_DIR` is wrong).
    #[error("conformance tools not found ({0}); run `make conformance-tools`")]
    Missing(String),
    /// Running the suite failed before it could report.
    #[error("running the conformance suite: {0}")]
    Run(String),
    /// The report could not be read.
    #[error("reading the conformance report {path}: {detail}")]
    Report {
        /// The report file.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
}

/// What `make conformance-tools` built (`e2e/conformance/build.sh`).
#[derive(Debug, Clone)]
pub struct Tools {
    /// The cache entry.
    pub dir: PathBuf,
    /// The suite's test binary (`go test -c sigs.k8s.io/gateway-api/conformance`).
    pub suite: PathBuf,
    /// The echo image archive (reference `registry.k8s.io/gateway-api/echo-advanced:…`).
    pub echo_image: PathBuf,
    /// Its reference.
    pub echo_ref: String,
    /// The Gateway API version of the suite.
    pub gateway_api_version: String,
}

impl Tools {
    /// Reads `$WEFT_CONFORMANCE_DIR/env`.
    pub fn locate() -> Result<Self, ConformanceError> {
        let dir = std::env::var_os(DIR_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .ok_or_else(|| ConformanceError::Missing(format!("${DIR_ENV} is not set")))?;
        Self::load(&dir)
    }

    /// Reads `<dir>/env` (written last by the build, so its presence marks a complete entry).
    pub fn load(dir: &Path) -> Result<Self, ConformanceError> {
        let env_file = dir.join("env");
        let text = std::fs::read_to_string(&env_file)
            .map_err(|e| ConformanceError::Missing(format!("{}: {e}", env_file.display())))?;
        let vars: BTreeMap<&str, &str> = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim(), v.trim()))
            .collect();
        let get = |k: &str| {
            vars.get(k)
                .map(|v| v.to_string())
                .ok_or_else(|| ConformanceError::Missing(format!("{k} missing in {}", env_file.display())))
        };
        let tools = Self {
            dir: dir.to_path_buf(),
            suite: PathBuf::from(get("WEFT_CONFORMANCE_SUITE")?),
            echo_image: PathBuf::from(get("WEFT_CONFORMANCE_ECHO_IMAGE")?),
            echo_ref: get("WEFT_CONFORMANCE_ECHO_REF")?,
            gateway_api_version: get("WEFT_CONFORMANCE_GATEWAY_API_VERSION")?,
        };
        for f in [&tools.suite, &tools.echo_image] {
            if !f.is_file() {
                return Err(ConformanceError::Missing(format!("{} is missing", f.display())));
            }
        }
        Ok(tools)
    }
}

/// One run of the suite binary.
#[derive(Debug, Clone)]
pub struct SuiteRun {
    /// The suite binary.
    pub suite: PathBuf,
    /// The cluster's admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// `-conformance-profiles`.
    pub profiles: String,
    /// `-supported-features`.
    pub features: Vec<String>,
    /// `-report-output`.
    pub report: PathBuf,
    /// The suite's output (`-test.v`) goes here.
    pub log: PathBuf,
    /// `-version`: weft's version.
    pub version: String,
    /// Killed (by its PID) after this long; `-test.timeout` is a minute less.
    pub timeout: Duration,
    /// `-run-test`: only this test (None = all the profiles' tests).
    pub only: Option<String>,
}

impl SuiteRun {
    /// A run with the flags `make conformance` uses; `features` picks what weft claims.
    pub fn new(suite: &Path, kubeconfig: &Path, profiles: &str, features: &[&str], report: &Path) -> Self {
        let log = report.with_extension("log");
        Self {
            suite: suite.to_path_buf(),
            kubeconfig: kubeconfig.to_path_buf(),
            profiles: profiles.to_string(),
            features: features.iter().map(|f| f.to_string()).collect(),
            report: report.to_path_buf(),
            log,
            version: env!("CARGO_PKG_VERSION").to_string(),
            timeout: Duration::from_secs(45 * 60),
            only: None,
        }
    }

    /// The suite's command-line arguments.
    pub fn args(&self) -> Vec<String> {
        let test_timeout = self
            .timeout
            .saturating_sub(Duration::from_secs(60))
            .max(Duration::from_secs(60));
        let mut args = vec![
            "-test.run=^TestConformance$".to_string(),
            "-test.v".to_string(),
            format!("-test.timeout={}s", test_timeout.as_secs()),
            // No Gateway test runs in the mesh profiles; the suite still wants a name.
            "-gateway-class=weft-unused".to_string(),
            format!("-conformance-profiles={}", self.profiles),
            format!("-supported-features={}", self.features.join(",")),
            format!("-namespace-labels={NAMESPACE_LABELS}"),
            format!("-report-output={}", self.report.display()),
            "-organization=weft".to_string(),
            "-project=weft".to_string(),
            "-url=https://weft.dev".to_string(),
            format!("-version={}", self.version),
            "-contact=https://weft.dev".to_string(),
            "-mode=default".to_string(),
            "-cleanup-base-resources=true".to_string(),
        ];
        if let Some(t) = &self.only {
            args.push(format!("-run-test={t}"));
        }
        args
    }

    /// Runs the suite (its output to [`SuiteRun::log`]), killing it by PID if it outlives
    /// [`SuiteRun::timeout`]. Returns its exit status and how long it ran; failed tests make
    /// the status non-zero but still write the report.
    pub fn run(&self) -> Result<(ExitStatus, Duration), ConformanceError> {
        let run_err = |what: &str, e: std::io::Error| ConformanceError::Run(format!("{what}: {e}"));
        if let Some(parent) = self.report.parent() {
            std::fs::create_dir_all(parent).map_err(|e| run_err("creating the report dir", e))?;
        }
        let _ = std::fs::remove_file(&self.report);
        let log = std::fs::File::create(&self.log).map_err(|e| run_err("creating the log", e))?;
        let log_err = log.try_clone().map_err(|e| run_err("the log", e))?;
        // The suite resolves the cluster through controller-runtime: $KUBECONFIG.
        let work = tempfile::Builder::new()
            .prefix("weft-conformance-")
            .tempdir()
            .map_err(|e| run_err("creating a work dir", e))?;
        let began = Instant::now();
        let mut child = Command::new(&self.suite)
            .args(self.args())
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", work.path())
            .current_dir(work.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| run_err(&self.suite.display().to_string(), e))?;
        loop {
            match child
                .try_wait()
                .map_err(|e| run_err("waiting for the suite", e))?
            {
                Some(status) => return Ok((status, began.elapsed())),
                None if began.elapsed() > self.timeout => {
                    // Our own child, by its PID.
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(ConformanceError::Run(format!(
                        "the suite ran longer than {:?} and was killed; output in {}",
                        self.timeout,
                        self.log.display()
                    )));
                }
                None => std::thread::sleep(Duration::from_millis(500)),
            }
        }
    }
}

/// The namespaces the suite's mesh manifests create (`conformance/mesh/manifests.yaml`).
pub const MESH_NAMESPACES: &[&str] = &["gateway-conformance-mesh", "gateway-conformance-mesh-consumer"];

/// What the suite's pods looked like while it ran: per pod (`<ns>/<name>`), whether weft
/// injected it (weft-init + weft-proxy) and whether it was seen Ready.
pub type PodsSeen = BTreeMap<String, (bool, bool)>;

/// Watches the suite's namespaces until `stop` fires (or is dropped), recording every pod
/// it sees ([`PodsSeen`]): evidence that the suite's workloads ran meshed.
pub async fn watch_mesh_pods(client: kube::Client, mut stop: tokio::sync::oneshot::Receiver<()>) -> PodsSeen {
    use k8s_openapi::api::core::v1::Pod;
    let mut seen = PodsSeen::new();
    loop {
        for ns in MESH_NAMESPACES {
            let api: kube::Api<Pod> = kube::Api::namespaced(client.clone(), ns);
            let Ok(list) = api.list(&kube::api::ListParams::default()).await else {
                continue;
            };
            for p in list {
                let key = format!("{ns}/{}", p.metadata.name.clone().unwrap_or_default());
                let entry = seen.entry(key).or_insert((false, false));
                entry.0 |= crate::mesh::workload::injected(&p);
                entry.1 |= crate::mesh::workload::ready(&p);
            }
        }
        tokio::select! {
            _ = &mut stop => return seen,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

/// Installs weft (crds/, the Gateway API CRDs, manifests/) and sets the MeshConfig the suite
/// needs: `accessMode: permissive` (it creates no SMI TrafficTargets) with strict mTLS.
pub async fn install_weft(client: &kube::Client) -> Result<(), crate::mesh::MeshError> {
    crate::mesh::install::install(
        client,
        &crate::apply::repo_root(),
        Duration::from_secs(180),
        &|s| eprintln!("install: {s}"),
    )
    .await?;
    crate::mesh::install::set_mesh_modes(client, "permissive", "strict").await
}

/// Runs the suite (blocking, on a worker thread) while [`watch_mesh_pods`] records the
/// suite's pods, then removes the namespaces a killed run leaves. Returns the run's outcome
/// (exit status and duration) and the pods seen.
pub async fn run_watched(
    client: &kube::Client,
    run: SuiteRun,
) -> (Result<(ExitStatus, Duration), ConformanceError>, PodsSeen) {
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let watcher = tokio::spawn(watch_mesh_pods(client.clone(), stopped));
    let outcome = tokio::task::spawn_blocking(move || run.run())
        .await
        .unwrap_or_else(|e| Err(ConformanceError::Run(format!("the suite's thread: {e}"))));
    let _ = stop.send(());
    let seen = watcher.await.unwrap_or_default();
    delete_mesh_namespaces(client, Duration::from_secs(120)).await;
    (outcome, seen)
}

/// Deletes the suite's namespaces if a run left them (it removes them itself when it
/// finishes; a killed run does not) and waits up to `timeout` for them to go. Best effort.
pub async fn delete_mesh_namespaces(client: &kube::Client, timeout: Duration) {
    use k8s_openapi::api::core::v1::Namespace;
    let api: kube::Api<Namespace> = kube::Api::all(client.clone());
    for ns in MESH_NAMESPACES {
        let _ = api.delete(ns, &kube::api::DeleteParams::default()).await;
    }
    let began = Instant::now();
    while began.elapsed() < timeout {
        let mut left = 0;
        for ns in MESH_NAMESPACES {
            if matches!(api.get_opt(ns).await, Ok(Some(_))) {
                left += 1;
            }
        }
        if left == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The harness's own checks of a finished run, apart from route behaviour: the suite's pods
/// were all injected and became Ready, and MeshBasic (calls through the sidecars with no
/// route at all, `client` exec'd in the echo pods through the kubelet) did not fail.
/// Returns the problems; empty = the harness ran the suite properly.
pub fn harness_problems(seen: &PodsSeen, report: Option<&Report>, log: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if seen.is_empty() {
        problems.push(format!(
            "no pod was seen in {MESH_NAMESPACES:?} (did the suite apply its mesh manifests?)"
        ));
    }
    for (pod, (injected, ready)) in seen {
        if !injected {
            problems.push(format!("{pod} was not injected by weft"));
        }
        if !ready {
            problems.push(format!("{pod} never became Ready"));
        }
    }
    let basic_ran = log.contains("TestConformance/MeshBasic");
    if basic_ran && failed_in_log(log).iter().any(|t| t == "MeshBasic") {
        problems.push("MeshBasic failed: plain calls through the sidecars (no route) do not work".into());
    }
    if report.is_none() {
        problems.push("the suite wrote no report".into());
    }
    problems
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn flags_name_the_profiles_features_and_labels() {
        let run = SuiteRun::new(
            Path::new("/x/conformance.test"),
            Path::new("/k"),
            "MESH-HTTP",
            CORE_HTTP_FEATURES,
            Path::new("/r/report.yaml"),
        );
        let args = run.args();
        for want in [
            "-conformance-profiles=MESH-HTTP",
            "-supported-features=Mesh,HTTPRoute",
            "-namespace-labels=weft.dev/inject=enabled",
            "-report-output=/r/report.yaml",
            "-mode=default",
        ] {
            assert!(args.iter().any(|a| a == want), "{want} missing in {args:?}");
        }
        assert_eq!(run.log, Path::new("/r/report.log"));
    }

    #[test]
    fn claims_every_mesh_extended_feature() {
        // pkg/features/mesh.go (v1.6.3) MeshExtendedFeatures.
        for f in [
            "MeshClusterIPMatching",
            "MeshConsumerRoute",
            "MeshHTTPRouteRewritePath",
            "MeshHTTPRouteSchemeRedirect",
            "MeshHTTPRouteRedirectPort",
            "MeshHTTPRouteRedirectPath",
            "MeshHTTPRouteBackendRequestHeaderModification",
            "MeshHTTPRouteQueryParamMatching",
            "MeshHTTPRouteNamedRouteRule",
        ] {
            assert!(ALL_FEATURES.contains(&f), "{f}");
        }
    }

    /// mk/conformance.mk, mk/gateway.mk and the wrapper modules pin the same versions.
    #[test]
    fn versions_agree_across_make_and_the_wrapper_modules() {
        let root = crate::apply::repo_root();
        let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
        let pinned = |text: &str, var: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{var} ?= ")))
                .unwrap_or_else(|| panic!("{var} not pinned"))
                .trim()
                .to_string()
        };
        let conf = read("mk/conformance.mk");
        let gw = pinned(&conf, "GATEWAY_API_VERSION");
        assert_eq!(gw, pinned(&read("mk/gateway.mk"), "GATEWAY_API_VERSION"));
        let suite = read("e2e/conformance/suite/go.mod");
        assert!(
            suite.contains(&format!("sigs.k8s.io/gateway-api {gw}")),
            "{suite}"
        );
        assert!(
            suite.contains(&format!("sigs.k8s.io/gateway-api/conformance {gw}")),
            "{suite}"
        );
        let istio = pinned(&conf, "ISTIO_ECHO_VERSION");
        assert!(read("e2e/conformance/echo/go.mod").contains(&format!("istio.io/istio {istio}")));
    }

    #[test]
    fn missing_tools_say_how_to_build_them() {
        let dir = tempfile::tempdir().unwrap();
        let err = Tools::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("run `make conformance-tools`"), "{err}");
    }
}
