//! The upstream Gateway API conformance suite (`sigs.k8s.io/gateway-api/conformance`)
//! run against weft on the real test node (docs/conformance.md), as two runs: the mesh
//! profiles (MESH-HTTP, MESH-GRPC) and the gateway profile (GATEWAY-HTTP, weft's ingress
//! gateway). Here: which run claims what ([`Suite`]) and where `make conformance-tools` put
//! the suite binary and the images; [`run`] runs the binary bounded in time, [`pods`]
//! watches the suite's pods, [`report`] reads its report.

mod pods;
mod report;
mod run;
pub use pods::*;
pub use report::*;
pub use run::*;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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

/// The gateway profiles weft runs (HTTP and gRPC routes at the gateway).
pub const GATEWAY_PROFILES: &str = "GATEWAY-HTTP,GATEWAY-GRPC";

/// The gateway features weft claims: the profiles' core (Gateway, HTTPRoute, GRPCRoute,
/// ReferenceGrant) and the extended features weft's gateway implements
/// (`pkg/features/{gateway,httproute}.go`).
pub const GATEWAY_FEATURES: &[&str] = &[
    "Gateway",
    "HTTPRoute",
    "GRPCRoute",
    "ReferenceGrant",
    "GatewayPort8080",
    "GatewayHTTPListenerIsolation",
    "HTTPRouteQueryParamMatching",
    "HTTPRouteMethodMatching",
    "HTTPRouteResponseHeaderModification",
    "HTTPRouteBackendRequestHeaderModification",
    "HTTPRoutePortRedirect",
    "HTTPRouteSchemeRedirect",
    "HTTPRoutePathRedirect",
    "HTTPRouteHostRewrite",
    "HTTPRoutePathRewrite",
    "HTTPRouteRequestMirror",
    "HTTPRouteRequestMultipleMirrors",
    "HTTPRouteRequestPercentageMirror",
    "HTTPRouteRequestTimeout",
    "HTTPRouteBackendTimeout",
    "HTTPRouteParentRefPort",
    "HTTPRouteNamedRouteRule",
    "HTTPRoute303RedirectStatusCode",
    "HTTPRoute307RedirectStatusCode",
    "HTTPRoute308RedirectStatusCode",
];

/// GATEWAY-HTTP's core features only.
pub const CORE_GATEWAY_FEATURES: &[&str] = &["Gateway", "HTTPRoute", "GRPCRoute", "ReferenceGrant"];

/// The namespaces the suite's mesh manifests create (`conformance/mesh/manifests.yaml`).
pub const MESH_NAMESPACES: &[&str] = &["gateway-conformance-mesh", "gateway-conformance-mesh-consumer"];

/// The namespaces the suite's base manifests create (`conformance/base/manifests.yaml`).
pub const GATEWAY_NAMESPACES: &[&str] = &[
    "gateway-conformance-infra",
    "gateway-conformance-app-backend",
    "gateway-conformance-web-backend",
];

/// One of weft's two conformance runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suite {
    /// MESH-HTTP + MESH-GRPC (GAMMA: routes on Services, through the sidecars).
    Mesh,
    /// GATEWAY-HTTP (weft's ingress gateway, GatewayClass `weft`).
    Gateway,
}

impl Suite {
    /// `mesh` / `gateway` (report file names).
    pub fn name(self) -> &'static str {
        match self {
            Suite::Mesh => "mesh",
            Suite::Gateway => "gateway",
        }
    }

    /// `-conformance-profiles`.
    pub fn profiles(self) -> &'static str {
        match self {
            Suite::Mesh => ALL_PROFILES,
            Suite::Gateway => GATEWAY_PROFILES,
        }
    }

    /// Every feature weft claims (`core_only`: the profiles' core features).
    pub fn features(self, core_only: bool) -> &'static [&'static str] {
        match (self, core_only) {
            (Suite::Mesh, false) => ALL_FEATURES,
            (Suite::Mesh, true) => CORE_HTTP_FEATURES,
            (Suite::Gateway, false) => GATEWAY_FEATURES,
            (Suite::Gateway, true) => CORE_GATEWAY_FEATURES,
        }
    }

    /// `-gateway-class`: the mesh profiles run no Gateway test but the suite wants a name.
    pub fn gateway_class(self) -> &'static str {
        match self {
            Suite::Mesh => "weft-unused",
            Suite::Gateway => "weft",
        }
    }

    /// The namespaces the run's manifests create.
    pub fn namespaces(self) -> &'static [&'static str] {
        match self {
            Suite::Mesh => MESH_NAMESPACES,
            Suite::Gateway => GATEWAY_NAMESPACES,
        }
    }
}

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
    /// The gateway profile's image archives (echo-basic under each tag, CoreDNS).
    pub gateway_images: Vec<PathBuf>,
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
            gateway_images: get("WEFT_CONFORMANCE_GATEWAY_IMAGES")?
                .split_whitespace()
                .map(PathBuf::from)
                .collect(),
            gateway_api_version: get("WEFT_CONFORMANCE_GATEWAY_API_VERSION")?,
        };
        for f in [&tools.suite, &tools.echo_image]
            .into_iter()
            .chain(&tools.gateway_images)
        {
            if !f.is_file() {
                return Err(ConformanceError::Missing(format!("{} is missing", f.display())));
            }
        }
        Ok(tools)
    }
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
    fn the_gateway_run_names_weft_s_class_and_the_gateway_profile() {
        let run = SuiteRun::for_suite(
            Suite::Gateway,
            Path::new("/x/conformance.test"),
            Path::new("/k"),
            false,
            Path::new("/r/gw.yaml"),
        );
        let args = run.args();
        for want in [
            "-gateway-class=weft",
            "-conformance-profiles=GATEWAY-HTTP,GATEWAY-GRPC",
        ] {
            assert!(args.iter().any(|a| a == want), "{want} missing in {args:?}");
        }
        let features = args
            .iter()
            .find_map(|a| a.strip_prefix("-supported-features="))
            .unwrap();
        for core in CORE_GATEWAY_FEATURES {
            assert!(features.split(',').any(|f| f == *core), "{core} in {features}");
        }
        let mesh = SuiteRun::for_suite(
            Suite::Mesh,
            Path::new("/s"),
            Path::new("/k"),
            true,
            Path::new("/r"),
        );
        assert!(mesh.args().iter().any(|a| a == "-gateway-class=weft-unused"));
        assert_eq!(Suite::Gateway.namespaces(), GATEWAY_NAMESPACES);
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
