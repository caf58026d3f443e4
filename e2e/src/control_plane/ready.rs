//! Readiness waits during startup. Each poll first checks that no component has exited,
//! so a crash fails fast with the end of its log instead of a timeout.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Api;

use super::{ControlPlane, Error};

const POLL: Duration = Duration::from_millis(250);

fn timeout(cp: &ControlPlane, what: &str, deadline: Instant, began: Instant) -> Result<(), Error> {
    if Instant::now() >= deadline {
        return Err(Error::Timeout {
            what: what.to_string(),
            after: began.elapsed(),
            logs: cp.logs_dir().display().to_string(),
        });
    }
    Ok(())
}

/// Until something accepts TCP connections on 127.0.0.1:`port`.
pub(super) async fn tcp(cp: &ControlPlane, port: u16, deadline: Instant) -> Result<(), Error> {
    let began = Instant::now();
    loop {
        cp.check_alive()?;
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Ok(());
        }
        timeout(cp, &format!("waiting for port {port}"), deadline, began)?;
        tokio::time::sleep(POLL).await;
    }
}

/// Until kube-apiserver's `/readyz` answers 200 to the admin.
pub(super) async fn readyz(cp: &ControlPlane, deadline: Instant) -> Result<(), Error> {
    let began = Instant::now();
    let client = cp.client().map_err(|e| Error::Kubeconfig(e.to_string()))?;
    loop {
        cp.check_alive()?;
        let req = http::Request::get("/readyz")
            .body(Vec::new())
            .map_err(|e| Error::Kubeconfig(e.to_string()))?;
        let last = match client.request_text(req).await {
            Ok(_) => {
                tracing::debug!(
                    after_ms = began.elapsed().as_millis() as u64,
                    "kube-apiserver ready"
                );
                return Ok(());
            }
            Err(e) => e.to_string(),
        };
        timeout(cp, &format!("kube-apiserver /readyz: {last}"), deadline, began)?;
        tokio::time::sleep(POLL).await;
    }
}

/// Until the controller-manager's serviceaccount controller created `default/default`
/// (proves the controller-manager runs and can write).
pub(super) async fn default_service_account(cp: &ControlPlane, deadline: Instant) -> Result<(), Error> {
    let began = Instant::now();
    let client = cp.client().map_err(|e| Error::Kubeconfig(e.to_string()))?;
    let api: Api<ServiceAccount> = Api::namespaced(client, "default");
    loop {
        cp.check_alive()?;
        if let Ok(Some(_)) = api.get_opt("default").await {
            return Ok(());
        }
        timeout(
            cp,
            "the default service account (kube-controller-manager)",
            deadline,
            began,
        )?;
        tokio::time::sleep(POLL).await;
    }
}
