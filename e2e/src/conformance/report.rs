//! The suite's own report (ConformanceReport YAML) and its log: the fields weft reads,
//! a summary, and the failed tests.

use super::ConformanceError;
use serde::Deserialize;
use std::path::Path;

/// The suite's report (`conformance/apis/v1` ConformanceReport), the fields weft reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// `gatewayAPIVersion`.
    #[serde(rename = "gatewayAPIVersion", default)]
    pub gateway_api_version: String,
    /// `mode`.
    #[serde(default)]
    pub mode: String,
    /// One per profile.
    #[serde(default)]
    pub profiles: Vec<ProfileReport>,
}

/// One profile's results.
#[derive(Debug, Clone, Deserialize)]
pub struct ProfileReport {
    /// e.g. `MESH-HTTP`.
    pub name: String,
    /// The suite's one-line summary.
    #[serde(default)]
    pub summary: String,
    /// Core tests.
    pub core: Status,
    /// Extended tests (when extended features were claimed).
    #[serde(default)]
    pub extended: Option<ExtendedStatus>,
}

/// A result with its statistics and test names.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// `success`, `partial` or `failure`.
    pub result: String,
    /// Passed / skipped / failed counts.
    #[serde(default)]
    pub statistics: Statistics,
    /// Failed tests.
    #[serde(default)]
    pub failed_tests: Vec<String>,
    /// Skipped tests.
    #[serde(default)]
    pub skipped_tests: Vec<String>,
}

/// Extended results plus the features they cover.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExtendedStatus {
    /// The result.
    #[serde(flatten)]
    pub status: Status,
    /// Claimed extended features.
    #[serde(default)]
    pub supported_features: Vec<String>,
    /// Extended features not claimed.
    #[serde(default)]
    pub unsupported_features: Vec<String>,
}

/// The suite's counts (Go field names: the struct has no JSON tags).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Statistics {
    /// Passed tests.
    #[serde(rename = "Passed", default)]
    pub passed: u32,
    /// Skipped tests.
    #[serde(rename = "Skipped", default)]
    pub skipped: u32,
    /// Failed tests.
    #[serde(rename = "Failed", default)]
    pub failed: u32,
}

impl Report {
    /// Parses the YAML the suite writes.
    pub fn parse(text: &str) -> Result<Self, String> {
        serde_yaml::from_str(text).map_err(|e| e.to_string())
    }

    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<Self, ConformanceError> {
        let err = |detail: String| ConformanceError::Report {
            path: path.to_path_buf(),
            detail,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        Self::parse(&text).map_err(err)
    }

    /// The profile named `name`.
    pub fn profile(&self, name: &str) -> Option<&ProfileReport> {
        self.profiles.iter().find(|p| p.name == name)
    }

    /// A few lines per profile: results, counts, failed tests.
    pub fn summary(&self) -> String {
        let mut out = format!(
            "Gateway API {} conformance (mode {}):\n",
            self.gateway_api_version, self.mode
        );
        for p in &self.profiles {
            out.push_str(&format!("  {}: {}\n", p.name, p.summary));
            let mut line = |kind: &str, s: &Status| {
                out.push_str(&format!(
                    "    {kind}: {} (passed {}, failed {}, skipped {})\n",
                    s.result, s.statistics.passed, s.statistics.failed, s.statistics.skipped
                ));
                if !s.failed_tests.is_empty() {
                    out.push_str(&format!("      failed: {}\n", s.failed_tests.join(", ")));
                }
            };
            line("core", &p.core);
            if let Some(e) = &p.extended {
                line("extended", &e.status);
            }
        }
        out
    }
}

/// The tests the suite's log reports as failed (`--- FAIL: TestConformance/<name>`), top
/// level only, in order.
pub fn failed_in_log(log: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for l in log.lines() {
        let Some(rest) = l.trim_start().strip_prefix("--- FAIL: TestConformance/") else {
            continue;
        };
        let name = rest.split_whitespace().next().unwrap_or_default();
        if !name.contains('/') && !out.iter().any(|n| n == name) {
            out.push(name.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const SAMPLE: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
date: "2026-12-04T02:50:00Z"
gatewayAPIChannel: standard
gatewayAPIVersion: v1.6.3
implementation:
  contact:
  - https://weft.dev
  organization: weft
  project: weft
  url: https://weft.dev
  version: 0.1.0
kind: ConformanceReport
mode: default
profiles:
- core:
    failedTests:
    - MeshFrontend
    result: failure
    statistics:
      Failed: 1
      Passed: 2
      Skipped: 0
  extended:
    result: success
    statistics:
      Failed: 0
      Passed: 1
      Skipped: 0
    supportedFeatures:
    - MeshConsumerRoute
  name: MESH-HTTP
  summary: Core tests failed with 1 test failures.
"#;

    #[test]
    fn reads_the_suites_report() {
        let r = Report::parse(SAMPLE).unwrap();
        assert_eq!(r.gateway_api_version, "v1.6.3");
        let p = r.profile("MESH-HTTP").unwrap();
        assert_eq!(p.core.result, "failure");
        assert_eq!(p.core.failed_tests, ["MeshFrontend"]);
        assert_eq!(p.core.statistics.passed, 2);
        let e = p.extended.as_ref().unwrap();
        assert_eq!(e.status.result, "success");
        assert_eq!(e.supported_features, ["MeshConsumerRoute"]);
        let s = r.summary();
        assert!(s.contains("core: failure (passed 2, failed 1, skipped 0)"), "{s}");
        assert!(s.contains("failed: MeshFrontend"), "{s}");
    }

    #[test]
    fn finds_failed_tests_in_the_log() {
        let log = "=== RUN   TestConformance/MeshBasic\n\
                   --- FAIL: TestConformance (1.00s)\n\
                   \x20   --- FAIL: TestConformance/MeshFrontend (30.00s)\n\
                   \x20       --- FAIL: TestConformance/MeshFrontend/0 (30.00s)\n\
                   \x20   --- PASS: TestConformance/MeshBasic (2.00s)\n";
        assert_eq!(failed_in_log(log), ["MeshFrontend"]);
    }
}
