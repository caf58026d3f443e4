//! One run of the suite binary: its flags, bounded in time, output to a log.

use super::{ConformanceError, NAMESPACE_LABELS, Suite};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

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
    /// `-gateway-class`.
    pub gateway_class: String,
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
            gateway_class: Suite::Mesh.gateway_class().to_string(),
        }
    }

    /// The run of `kind` with the flags `make conformance` uses.
    pub fn for_suite(kind: Suite, suite: &Path, kubeconfig: &Path, core_only: bool, report: &Path) -> Self {
        let mut run = Self::new(
            suite,
            kubeconfig,
            kind.profiles(),
            kind.features(core_only),
            report,
        );
        run.gateway_class = kind.gateway_class().to_string();
        run
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
            format!("-gateway-class={}", self.gateway_class),
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
